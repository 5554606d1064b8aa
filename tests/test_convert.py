"""`subq convert`: students and teachers in formats other tools read.
  --to hf: Llama (llama2.c .bin / GGUF / HF) opens in transformers' LlamaForCausalLM (+ AutoTokenizer);
           Mamba-2 (mamba_ssm layout) in Mamba2ForCausalLM; distilled Mamba-2 students and Mamba-2 +
           attention hybrids in GraniteMoeHybridForCausalLM; Llamba students in cartesia's Llamba layout,
           checked with a float64 SPEC-3 reference (cartesia-pytorch on PyPI ships no model code: its 0.0.2
           wheel is empty and its sdist does not build). Logits equal subq's.
  --to gguf: Llama and Mamba-2 files whose structure the `gguf` PyPI package reads as llama.cpp's
           converter writes it, and that subq reads back with the same logits."""
import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from conftest import run_subq
from test_distill import llamba_reference
from test_mamba2_parity import _hf_logits, _hf_model

transformers = pytest.importorskip("transformers")
IDS = [1, 403, 407, 261, 378, 434, 375, 1, 29, 66, 303, 410, 319, 268, 395, 287, 259, 432, 442, 290]


def subq_logits(subq_bin, model, tmp_path, ids=IDS, name="s"):
    out = tmp_path / f"{name}.npy"
    run_subq(subq_bin, "logits", "--model", model, "--ids", ",".join(map(str, ids)), "--out", out)
    return np.load(out)


def hf_logits(folder, cls, ids=IDS):
    model = getattr(transformers, cls).from_pretrained(folder, dtype=torch.float32).eval()
    with torch.no_grad():
        return model(torch.tensor([ids]), use_cache=False).logits[0].float().numpy()


def convert(subq_bin, model, to, out, check=True):
    return run_subq(subq_bin, "convert", "--model", model, "--to", to, "--out", out, check=check)


@pytest.mark.parametrize("src", ["stories260K.bin", "stories260K.gguf", "hf"])
def test_llama_to_hf_opens_in_transformers(subq_bin, data_dir, tmp_path, src):
    model = data_dir / "stories260K" / src
    out = tmp_path / "hf"
    p = convert(subq_bin, model, "hf", out)
    assert "LlamaForCausalLM" in p.stdout
    ref = subq_logits(subq_bin, model, tmp_path)
    np.testing.assert_allclose(hf_logits(out, "LlamaForCausalLM"), ref, atol=1e-4)
    np.testing.assert_allclose(subq_logits(subq_bin, out, tmp_path, name="o"), ref, atol=1e-5)
    if src != "stories260K.gguf":  # the GGUF carries its vocabulary inside, not as tokenizer files
        tok = transformers.AutoTokenizer.from_pretrained(out)
        text = "Lily and Ben went to the park. They saw a big dog!"
        ids = json.loads(run_subq(subq_bin, "tokenize", "--tokenizer", out, "--text", text).stdout)
        assert tok(text)["input_ids"] == [1] + ids  # AutoTokenizer adds BOS


def test_mamba2_to_hf_opens_in_mamba2_for_causal_lm(subq_bin, tmp_path):
    model = _hf_model(n_groups=2, tie=True, seed=5, vocab=100)
    src = tmp_path / "mamba_ssm"
    src.mkdir()
    save_file({k.replace("backbone.embeddings.", "backbone.embedding."): v.contiguous()
               for k, v in model.state_dict().items() if k != "lm_head.weight"}, str(src / "model.safetensors"))
    (src / "config.json").write_text(json.dumps({
        "d_model": 32, "d_intermediate": 0, "n_layer": 2, "vocab_size": 97, "pad_vocab_size_multiple": 4,
        "ssm_cfg": {"layer": "Mamba2", "d_state": 16, "headdim": 8, "ngroups": 2, "d_conv": 4, "expand": 2,
                    "chunk_size": 8}, "rms_norm": True, "tie_embeddings": True}))
    out = tmp_path / "hf"
    assert "Mamba2ForCausalLM" in convert(subq_bin, src, "hf", out).stdout
    ids = np.random.default_rng(3).integers(0, 97, size=29).tolist()
    ref = _hf_logits(model, ids)
    np.testing.assert_allclose(hf_logits(out, "Mamba2ForCausalLM", ids), ref, atol=1e-4)
    np.testing.assert_allclose(subq_logits(subq_bin, out, tmp_path, ids), ref, atol=1e-4)
    # and to GGUF: the structure llama.cpp's converter writes, read back by subq
    gg = tmp_path / "m.gguf"
    p = run_subq(subq_bin, "convert", "--model", src, "--to", "gguf", "--out", gg,
                 "--tokenizer", tmp_path.parent / "none.model", check=False)
    assert p.returncode != 0 and "none.model" in p.stderr


def test_mamba2_student_opens_as_granite_moe_hybrid(subq_bin, students, tmp_path):
    """Mamba-2 layers with the teacher's MLPs, and two kept attention layers: one GraniteMoeHybrid."""
    out = tmp_path / "hf"
    assert "GraniteMoeHybridForCausalLM" in convert(subq_bin, students["mamba2_hybrid"], "hf", out).stdout
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["num_local_experts"] == 0 and cfg["shared_intermediate_size"] == 172
    assert cfg["layer_types"] == ["linear_attention", "full_attention"] * 2 + ["linear_attention"]
    ref = subq_logits(subq_bin, students["mamba2_hybrid"], tmp_path)
    np.testing.assert_allclose(hf_logits(out, "GraniteMoeHybridForCausalLM"), ref, atol=1e-4)
    p = convert(subq_bin, students["mamba2_hybrid"], "gguf", tmp_path / "x.gguf", check=False)
    assert p.returncode == 1 and "no llama.cpp arch" in p.stderr


def test_llamba_student_to_cartesia_layout(subq_bin, students, tmp_path):
    out = tmp_path / "llamba"
    assert "LlambaForCausalLM" in convert(subq_bin, students["llamba"], "hf", out).stdout
    cfg = json.loads((out / "config.json").read_text())
    assert {"d_model", "n_layer", "vocab_size", "ssm_cfg", "mlp_cfg", "tie_embeddings", "norm_epsilon"} <= set(cfg)
    assert cfg["ssm_cfg"]["activation"] == "identity" and cfg["ssm_cfg"]["n_qk_heads"] == 8
    ref = llamba_reference(out, IDS)
    np.testing.assert_allclose(subq_logits(subq_bin, out, tmp_path), ref, atol=1e-4)
    np.testing.assert_allclose(subq_logits(subq_bin, students["llamba"], tmp_path, name="src"), ref, atol=1e-4)
    p = convert(subq_bin, students["llamba"], "gguf", tmp_path / "x.gguf", check=False)
    assert p.returncode == 1 and "no llama.cpp arch" in p.stderr


@pytest.mark.parametrize("src", ["stories260K.bin", "hf"])
def test_llama_to_gguf(subq_bin, data_dir, tmp_path, src):
    gguf = pytest.importorskip("gguf")
    model = data_dir / "stories260K" / src
    out = tmp_path / "m.gguf"
    assert "arch llama" in convert(subq_bin, model, "gguf", out).stdout
    r = gguf.GGUFReader(str(out))
    f = {k: v.contents() for k, v in r.fields.items() if not k.startswith("GGUF.")}
    assert f["general.architecture"] == "llama" and f["llama.block_count"] == 5
    assert f["llama.embedding_length"] == 64 and f["llama.attention.head_count_kv"] == 4
    assert f["tokenizer.ggml.model"] == "llama" and len(f["tokenizer.ggml.tokens"]) == 512
    assert f["tokenizer.ggml.tokens"][1] == "<s>" and f["tokenizer.ggml.bos_token_id"] == 1
    names = {t.name: t for t in r.tensors}
    assert len(names) == 2 + 9 * 5 and "output.weight" not in names  # tied classifier: llama.cpp reuses token_embd
    assert [int(d) for d in names["blk.0.attn_k.weight"].shape] == [64, 32]  # GGUF dims innermost first
    assert names["token_embd.weight"].tensor_type == gguf.GGMLQuantizationType.F32
    # the q rows are the interleaved order of llama.cpp's converter (= the llama2.c file's own rows)
    ref_gguf = gguf.GGUFReader(str(data_dir / "stories260K" / "stories260K.gguf"))
    want = {t.name: np.asarray(t.data) for t in ref_gguf.tensors}
    np.testing.assert_allclose(np.asarray(names["blk.2.attn_q.weight"].data), want["blk.2.attn_q.weight"], atol=1e-6)
    ref = subq_logits(subq_bin, model, tmp_path)
    np.testing.assert_allclose(subq_logits(subq_bin, out, tmp_path, name="g"), ref, atol=1e-5)
    text = run_subq(subq_bin, "generate", "--model", out, "--prompt", "Once upon a time", "--max-tokens", "24").stdout
    assert text.startswith("Once upon a time, there was a little girl named Lily")


def test_mamba2_to_gguf(subq_bin, data_dir, tmp_path):
    gguf = pytest.importorskip("gguf")
    model = _hf_model(n_groups=2, tie=False, seed=3, vocab=512)
    src = tmp_path / "hf"
    model.save_pretrained(src)
    out = tmp_path / "m.gguf"
    p = run_subq(subq_bin, "convert", "--model", src, "--to", "gguf", "--out", out,
                 "--tokenizer", data_dir / "stories260K" / "tok512.model")
    assert "arch mamba2" in p.stdout
    r = gguf.GGUFReader(str(out))
    f = {k: v.contents() for k, v in r.fields.items() if not k.startswith("GGUF.")}
    assert f["general.architecture"] == "mamba2" and f["mamba2.ssm.time_step_rank"] == 8
    assert f["mamba2.ssm.group_count"] == 2 and f["mamba2.ssm.inner_size"] == 64
    names = {t.name: t for t in r.tensors}
    a = np.asarray(names["blk.0.ssm_a"].data).reshape(-1)
    np.testing.assert_allclose(a, -np.exp(model.state_dict()["backbone.layers.0.mixer.A_log"].numpy()), rtol=1e-6)
    assert [int(d) for d in names["blk.1.ssm_norm.weight"].shape] == [32, 2]  # [E/G, G], innermost first
    assert [int(d) for d in names["blk.0.ssm_conv1d.weight"].shape] == [4, 64 + 2 * 2 * 16]
    ids = np.random.default_rng(1).integers(0, 512, size=25).tolist()
    ref = _hf_logits(model, ids)
    np.testing.assert_allclose(subq_logits(subq_bin, out, tmp_path, ids, "g"), ref, atol=1e-4)


def test_convert_errors_are_clear(subq_bin, data_dir, tmp_path):
    src = data_dir / "stories260K" / "hf"
    p = convert(subq_bin, src, "hf", src, check=False)
    assert p.returncode == 1 and "must differ" in p.stderr
    p = convert(subq_bin, tmp_path / "nope", "hf", tmp_path / "o", check=False)
    assert p.returncode == 1 and "nope" in p.stderr
    p = run_subq(subq_bin, "convert", "--model", src, "--to", "onnx", "--out", tmp_path / "o", check=False)
    assert p.returncode != 0
