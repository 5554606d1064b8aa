#!/usr/bin/env python3
"""Bench models for bench/vs_llamacpp.sh, as Hugging Face folders (f32 safetensors) both engines read.

  make_bench_models.py --out DIR --stories HF_DIR --text FILE [FILE ...]

Writes DIR/tokenizer.model (a SentencePiece BPE of 32000 pieces trained on the given text; its ids
are <unk>=0, <s>=1, </s>=2 as in Llama) and, each with a copy of that tokenizer:
  DIR/mamba2-130m  random Mamba-2 of mamba2-130m's shape (d_model 768, 24 layers, state 128,
                   head dim 64, 1 group, tied embeddings)
  DIR/llama-110m   random Llama (768, 12 layers, 12/4 heads, MLP 2048, untied, context 8192)
  DIR/stories260K  links to the stories260K teacher's HF folder (its own 512-piece tokenizer)
A folder already complete (config.json and model.safetensors present) is kept.
"""
import argparse
import json
import math
import pathlib
import shutil
import sys

VOCAB = 32000
TOKENIZER_CONFIG = {"tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>",
                    "unk_token": "<unk>", "add_bos_token": True, "add_eos_token": False}


def log(msg):
    print(f"[make_bench_models] {msg}", file=sys.stderr, flush=True)


def train_tokenizer(out, texts):
    import sentencepiece as spm
    model = out / "tokenizer.model"
    if model.exists():
        return model
    log(f"training a {VOCAB}-piece SentencePiece BPE on {len(texts)} files")
    spm.SentencePieceTrainer.train(
        input=",".join(map(str, texts)), model_prefix=str(out / "tokenizer"), model_type="bpe", vocab_size=VOCAB,
        character_coverage=1.0, byte_fallback=True, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        input_sentence_size=400000, shuffle_input_sentence=True, num_threads=2, minloglevel=2)
    return model


def complete(folder):
    return (folder / "config.json").exists() and (folder / "model.safetensors").exists()


def randomize_mamba2(model, seed):
    """Sane SSM parameters (A_log, dt_bias in mamba_ssm's init ranges); other weights as initialised."""
    import torch
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("A_log"):
                p.copy_(torch.log(torch.empty_like(p).uniform_(1.0, 16.0, generator=g)))
            elif name.endswith("dt_bias"):
                dt = torch.exp(torch.empty_like(p).uniform_(math.log(1e-3), math.log(0.1), generator=g))
                p.copy_(dt + torch.log(-torch.expm1(-dt)))


def save(model, folder, tokenizer):
    model.save_pretrained(folder, safe_serialization=True)
    shutil.copy(tokenizer, folder / "tokenizer.model")
    (folder / "tokenizer_config.json").write_text(json.dumps(TOKENIZER_CONFIG, indent=2) + "\n")
    n = sum(p.numel() for p in model.parameters())
    log(f"wrote {folder} ({n / 1e6:.1f}M parameters)")


def make_mamba2(folder, tokenizer):
    import torch
    import transformers
    torch.manual_seed(0)
    cfg = transformers.Mamba2Config(
        vocab_size=VOCAB, hidden_size=768, num_hidden_layers=24, state_size=128, head_dim=64, num_heads=24,
        n_groups=1, expand=2, conv_kernel=4, chunk_size=256, tie_word_embeddings=True, layer_norm_epsilon=1e-5,
        bos_token_id=1, eos_token_id=2, pad_token_id=0)
    model = transformers.Mamba2ForCausalLM(cfg).eval()
    randomize_mamba2(model, seed=0)
    save(model, folder, tokenizer)


def make_llama(folder, tokenizer):
    import torch
    import transformers
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(
        vocab_size=VOCAB, hidden_size=768, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=12,
        num_key_value_heads=4, max_position_embeddings=8192, rms_norm_eps=1e-5, rope_theta=10000.0,
        tie_word_embeddings=False, bos_token_id=1, eos_token_id=2)
    save(transformers.LlamaForCausalLM(cfg).eval(), folder, tokenizer)


def link_stories(folder, src):
    folder.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        dst = folder / f.name
        if not dst.exists():
            dst.symlink_to(f.resolve())
    log(f"linked {folder} -> {src}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=pathlib.Path, required=True)
    ap.add_argument("--stories", type=pathlib.Path, required=True, help="the stories260K HF folder")
    ap.add_argument("--text", type=pathlib.Path, nargs="+", required=True, help="text to train the tokenizer on")
    a = ap.parse_args()
    for t in a.text:
        if not t.is_file():
            ap.error(f"--text {t}: no such file")
    if not (a.stories / "config.json").is_file():
        ap.error(f"--stories {a.stories}: no config.json there")
    a.out.mkdir(parents=True, exist_ok=True)
    tok = train_tokenizer(a.out, a.text)
    for name, make in (("mamba2-130m", make_mamba2), ("llama-110m", make_llama)):
        if not complete(a.out / name):
            make(a.out / name, tok)
    link_stories(a.out / "stories260K", a.stories)


if __name__ == "__main__":
    main()
