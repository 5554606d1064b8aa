#!/usr/bin/env python3
"""A randomly initialised Llama teacher in the Hugging Face layout (transformers' own init and writer).

  make_random_llama.py --out DIR [--shape llama-3.2-1b | tiny] [--dtype bf16|f32] [--device cuda|cpu]

llama-3.2-1b: hidden 2048, 16 layers, 32 query / 8 key-value heads of 64, MLP 8192, vocab 128256, tied
embeddings, RoPE theta 500000 with llama3 scaling (factor 32, low 1, high 4, original context 8192),
RMSNorm eps 1e-5, context 131072: the config of meta-llama/Llama-3.2-1B, with random weights.
tiny: the same kinds of settings at hidden 64 (tests on CPU). Weights are made on --device (a 1B model
initialises in seconds on a GPU, much slower on a loaded CPU) and written as --dtype safetensors.
Prints one JSON line: the folder, parameter count, and seconds.
"""
import argparse
import json
import pathlib
import sys
import time

SHAPES = {
    "llama-3.2-1b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
                         num_key_value_heads=8, head_dim=64, vocab_size=128256, max_position_embeddings=131072),
    "tiny": dict(hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, head_dim=16, vocab_size=1024, max_position_embeddings=16384),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--shape", choices=sorted(SHAPES), default="llama-3.2-1b")
    ap.add_argument("--dtype", choices=["bf16", "f32"], default="bf16")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    t0 = time.time()
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    if a.device == "cuda" and not torch.cuda.is_available():
        sys.exit("make_random_llama.py: --device cuda but torch sees no GPU")
    cfg = LlamaConfig(**SHAPES[a.shape], rms_norm_eps=1e-5, tie_word_embeddings=True, bos_token_id=128000 if
                      a.shape != "tiny" else 1, eos_token_id=128001 if a.shape != "tiny" else 2,
                      rope_theta=500000.0, attention_bias=False, mlp_bias=False, hidden_act="silu",
                      rope_scaling={"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                                    "high_freq_factor": 4.0, "original_max_position_embeddings": 8192})
    torch.manual_seed(a.seed)
    dtype = torch.bfloat16 if a.dtype == "bf16" else torch.float32
    with torch.device(a.device):
        model = LlamaForCausalLM(cfg).to(dtype)
    out = pathlib.Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)  # config.json + model.safetensors (tied lm_head stored once)
    n = sum(p.numel() for p in model.parameters())
    print(json.dumps({"out": str(out), "shape": a.shape, "params": n, "dtype": a.dtype,
                      "seconds": round(time.time() - t0, 1)}), flush=True)


if __name__ == "__main__":
    main()
