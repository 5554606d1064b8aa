"""`subq quantize` end to end on the real stories260K: the q8/q4/f16/bf16 folders load, name the matrices
left in f32, and stay close to the f32 model in perplexity and logits on real text."""
import json

import numpy as np
import pytest

from conftest import run_subq

# Perplexity on 1500 tokens may change by at most this fraction of f32's; largest logit error relative to the
# largest logit. Measured: q8 -0.3%, q4 +10% (2000 tokens); logits f16 5e-4, bf16 4e-3, q8 1.2e-2, q4 0.39 (the
# 64-wide rows of stories260K are 2 blocks: a 4-bit block scale costs much more here than in a 768-wide model).
PPL_SLACK = {"f16": 0.002, "bf16": 0.01, "q8": 0.01, "q4": 0.15}
LOGIT_TOL = {"f16": 2e-3, "bf16": 1e-2, "q8": 3e-2, "q4": 0.5}


@pytest.fixture(scope="module")
def folders(subq_bin, data_dir, tmp_path_factory):
    out = {}
    for t in PPL_SLACK:
        d = tmp_path_factory.mktemp(t)
        p = run_subq(subq_bin, "quantize", "--model", data_dir / "stories260K" / "hf", "--type", t, "--out", d)
        out[t] = (d, p.stdout)
    return out


def _ppl(subq_bin, model, text):
    p = run_subq(subq_bin, "eval", "--model", model, "--text", text, "--json", "--max-tokens", "1500")
    return json.loads(p.stdout)["perplexity"]


def test_report_names_the_f32_matrices(folders):
    for t, (d, stdout) in folders.items():
        assert (d / "tokenizer.model").exists()
        if t in ("q8", "q4"):
            assert "31 matrices as " + t in stdout
            assert "kept in f32 (columns not a multiple of 32): 5" in stdout  # mlp.down_proj [64, 172]
            assert stdout.count("mlp.down_proj.weight") == 5
        else:
            assert "36 matrices as " + t in stdout and "kept in f32" not in stdout


def test_perplexity_and_logits_close_to_f32(subq_bin, data_dir, folders, tmp_path):
    hf = data_dir / "stories260K" / "hf"
    text = data_dir / "text" / "tinystories-sample.txt"
    prompt = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park."
    base = _ppl(subq_bin, hf, text)
    run_subq(subq_bin, "logits", "--model", hf, "--prompt", prompt, "--out", tmp_path / "f32.npy")
    ref = np.load(tmp_path / "f32.npy")
    for t, (d, _) in folders.items():
        ppl = _ppl(subq_bin, d, text)
        print(f"stories260K perplexity f32 {base:.4f} {t} {ppl:.4f} ({(ppl / base - 1) * 100:+.2f}%)")
        assert abs(ppl / base - 1) <= PPL_SLACK[t], t
        run_subq(subq_bin, "logits", "--model", d, "--prompt", prompt, "--out", tmp_path / f"{t}.npy")
        got = np.load(tmp_path / f"{t}.npy")
        assert np.abs(got - ref).max() / np.abs(ref).max() < LOGIT_TOL[t], t
        assert (got.argmax(-1) == ref.argmax(-1)).mean() >= (0.95 if t != "q4" else 0.8), t  # greedy choices
