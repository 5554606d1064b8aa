"""GGUF files written by llama.cpp's own converter (tests/gguf_convert.py) load in subq and give the same
logits as the HF folder they came from: Llama (stories260K) in f32/f16/q8_0/q4_0 and a random Mamba-2
(transformers Mamba2ForCausalLM) in f32/q8_0. Quantized GGUFs are compared with `subq quantize` of the
same folder, whose q8/q4 rules are llama.cpp's. Needs the llama.cpp source tree (the llama-cpp-python
sdist's vendor/llama.cpp, see tests/gguf_convert.py) in $SUBQ_LLAMA_CPP; skipped without it."""
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, run_subq

# llama.cpp sources from the llama-cpp-python sdist (see tests/gguf_convert.py); the tests skip without them.
LLAMA_CPP = pathlib.Path(os.environ.get("SUBQ_LLAMA_CPP", "")) if os.environ.get("SUBQ_LLAMA_CPP") else None
IDS = "1,403,407,261,378,434,375,1,29,66,303,410,319,268,395,287,259,432,442,290"

pytestmark = pytest.mark.skipif(
    LLAMA_CPP is None or not (LLAMA_CPP / "convert_hf_to_gguf.py").exists(),
    reason=f"llama.cpp source not found at {LLAMA_CPP} (set SUBQ_LLAMA_CPP; see tests/gguf_convert.py)")


def gguf(src, outtype, out):
    """Converts HF folder `src` (or, for q4_0 from a .gguf, that f32 GGUF) to `out`."""
    source = ["--from-f32" if str(src).endswith(".gguf") else "--model", str(src)]
    subprocess.run([sys.executable, str(ROOT / "tests" / "gguf_convert.py"), "--llama-cpp", str(LLAMA_CPP), *source,
                    "--outtype", outtype, "--out", str(out)], check=True, timeout=300)
    return out


def logits(subq_bin, model, tmp_path, name, *extra):
    out = tmp_path / f"{name}.npy"
    run_subq(subq_bin, "logits", "--model", model, "--ids", IDS, "--out", out, *extra)
    return np.load(out)


def rel_err(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.fixture(scope="module")
def mamba2_hf(data_dir, tmp_path_factory):
    """A random 2-layer Mamba-2 (grouped state, conv bias, untied head) with the stories260K tokenizer."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    d = tmp_path_factory.mktemp("mamba2_hf")
    torch.manual_seed(0)
    cfg = transformers.Mamba2Config(vocab_size=512, hidden_size=64, state_size=16, num_heads=4, head_dim=32,
                                    n_groups=2, expand=2, num_hidden_layers=2, conv_kernel=4, chunk_size=8,
                                    tie_word_embeddings=False, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    model = transformers.Mamba2ForCausalLM(cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():  # init leaves norms/D at 1, conv bias at 0
            if "norm" in name or name.endswith((".D", "conv1d.bias")):
                p.add_(0.3 * torch.randn_like(p))
    model.save_pretrained(d, safe_serialization=True)
    shutil.copy(data_dir / "stories260K" / "hf" / "tokenizer.model", d / "tokenizer.model")
    return d


@pytest.fixture(scope="module")
def mamba2_f32_gguf(mamba2_hf):
    return gguf(mamba2_hf, "f32", mamba2_hf.parent / "m2.gguf")


def test_llama_gguf_from_the_converter(subq_bin, data_dir, tmp_path):
    hf = data_dir / "stories260K" / "hf"
    ref = logits(subq_bin, hf, tmp_path, "hf")
    for outtype, tol in [("f32", 1e-5), ("f16", 2e-2)]:
        got = logits(subq_bin, gguf(hf, outtype, tmp_path / f"{outtype}.gguf"), tmp_path, outtype)
        assert rel_err(got, ref) < tol, outtype
    gguf(tmp_path / "f32.gguf", "q4_0", tmp_path / "q4_0.gguf")
    # q8_0 / q4_0: llama.cpp's blocks read back as the same weights `subq quantize` writes (ffn_down, with
    # rows of 172, is F16 in the converter's q8_0 and F32 in both q4_0 files and in subq's q8/q4).
    # q4_0 has the same blocks (gguf-py's reference quantizer is llama.cpp's rule): the logits differ only by
    # the order of float sums (GGUF keeps q/k rows interleaved, subq's folder rotate-half).
    gguf(hf, "q8_0", tmp_path / "q8_0.gguf")
    for outtype, ours, tol in [("q8_0", "q8", 2e-2), ("q4_0", "q4", 1e-5)]:
        got = logits(subq_bin, tmp_path / f"{outtype}.gguf", tmp_path, outtype)
        run_subq(subq_bin, "quantize", "--model", hf, "--type", ours, "--out", tmp_path / ours)
        mine = logits(subq_bin, tmp_path / ours, tmp_path, ours)
        assert rel_err(got, mine) < tol, outtype
        assert 1e-4 < rel_err(got, ref) < 0.5, outtype  # quantized, but still the same model


def test_mamba2_gguf_same_as_hf(subq_bin, mamba2_hf, mamba2_f32_gguf, tmp_path):
    ref = logits(subq_bin, mamba2_hf, tmp_path, "hf")
    f32 = mamba2_f32_gguf
    got = logits(subq_bin, f32, tmp_path, "gguf")
    assert rel_err(got, ref) < 1e-5
    step = logits(subq_bin, f32, tmp_path, "gguf_step", "--step")
    assert rel_err(step, ref) < 1e-4
    gen = ["generate", "--prompt", "Once upon a time", "--max-tokens", "24", "--temperature", "0"]
    a = run_subq(subq_bin, *gen, "--model", mamba2_hf).stdout
    b = run_subq(subq_bin, *gen, "--model", f32, "--tokenizer", mamba2_hf / "tokenizer.model").stdout
    assert a == b
    q8 = logits(subq_bin, gguf(mamba2_hf, "q8_0", tmp_path / "m2_q8.gguf"), tmp_path, "gguf_q8")
    run_subq(subq_bin, "quantize", "--model", mamba2_hf, "--type", "q8", "--out", tmp_path / "q8")
    mine = logits(subq_bin, tmp_path / "q8", tmp_path, "q8")
    assert rel_err(q8, mine) < 1e-4
    assert rel_err(q8, ref) < 0.05


def test_quantize_mamba2_gguf_to_hf(subq_bin, mamba2_hf, mamba2_f32_gguf, tmp_path):
    """A GGUF Mamba-2 written back as an HF folder (A_log, D, conv and norm shapes restored) is the same model."""
    run_subq(subq_bin, "quantize", "--model", mamba2_f32_gguf, "--type", "f16", "--out", tmp_path / "f16")
    run_subq(subq_bin, "quantize", "--model", mamba2_hf, "--type", "f16", "--out", tmp_path / "f16_hf")
    a = logits(subq_bin, tmp_path / "f16", tmp_path, "a")
    b = logits(subq_bin, tmp_path / "f16_hf", tmp_path, "b")
    assert rel_err(a, b) < 1e-5
