"""Parity of subq's Mamba-2 models with transformers' Mamba2ForCausalLM (CPU torch path).

Random tiny models are saved with save_pretrained (HF layout) and, re-keyed, in the mamba_ssm layout
(config.json with ssm_cfg, key backbone.embedding.weight, padded vocabulary); `subq logits` must
reproduce the HF logits for one prefill pass and for token-by-token stepping, with several chunk lengths.
"""
import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from conftest import run_subq

transformers = pytest.importorskip("transformers")

TOL = 1e-4
L = 37


def _randomize(model, seed):
    """Moves every parameter away from its init so that each one matters (A_log, dt_bias stay sane)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("A_log"):
                p.copy_(torch.log(torch.empty_like(p).uniform_(1.0, 16.0, generator=g)))
            elif name.endswith("dt_bias"):
                dt = torch.exp(torch.empty_like(p).uniform_(np.log(1e-3), np.log(0.1), generator=g))
                p.copy_(dt + torch.log(-torch.expm1(-dt)))
            elif name.endswith("norm.weight") or name.endswith("norm_f.weight") or name.endswith(".D"):
                p.copy_(1.0 + 0.3 * torch.randn(p.shape, generator=g))
            else:
                p.add_(0.05 * torch.randn(p.shape, generator=g))


def _hf_model(n_groups, tie, seed, vocab=100, conv_bias=True):
    torch.manual_seed(seed)
    cfg = transformers.Mamba2Config(
        vocab_size=vocab, hidden_size=32, num_heads=8, head_dim=8, expand=2, state_size=16, n_groups=n_groups,
        num_hidden_layers=2, conv_kernel=4, chunk_size=8, tie_word_embeddings=tie, layer_norm_epsilon=1e-5,
        use_conv_bias=conv_bias)
    model = transformers.Mamba2ForCausalLM(cfg).eval()
    _randomize(model, seed)
    if tie:
        model.tie_weights()
    return model


def _hf_logits(model, ids):
    with torch.no_grad():
        return model(torch.tensor([ids]), use_cache=False).logits[0].float().numpy()


def _subq_logits(subq_bin, folder, ids, out, *extra):
    run_subq(subq_bin, "logits", "--model", folder, "--ids", ",".join(map(str, ids)), "--out", out, *extra)
    return np.load(out)


@pytest.mark.parametrize("n_groups,tie,conv_bias", [(1, False, True), (2, False, True), (2, True, True),
                                                    (1, True, False)])
def test_mamba2_matches_transformers(subq_bin, tmp_path, n_groups, tie, conv_bias):
    model = _hf_model(n_groups, tie, seed=10 * n_groups + tie, conv_bias=conv_bias)
    folder = tmp_path / "hf"
    model.save_pretrained(folder)
    ids = np.random.default_rng(n_groups).integers(0, 100, size=L).tolist()
    ref = _hf_logits(model, ids)
    runs = [("prefill", []), ("step", ["--step"])] + [(f"chunk{c}", ["--chunk", str(c)]) for c in (1, 3, 16, 64)]
    for name, extra in runs:
        got = _subq_logits(subq_bin, folder, ids, tmp_path / f"{name}.npy", *extra)
        assert got.shape == ref.shape, name
        err = np.abs(got - ref).max()
        assert err < TOL, f"{name}: max abs diff {err:.3g} (logit scale {np.abs(ref).max():.3g})"


def test_mamba2_mamba_ssm_layout(subq_bin, tmp_path):
    """The same weights in mamba_ssm's layout: ssm_cfg config, 'embedding' key, vocabulary padding."""
    model = _hf_model(n_groups=2, tie=True, seed=5, vocab=100)
    sd = {k.replace("backbone.embeddings.", "backbone.embedding."): v.contiguous()
          for k, v in model.state_dict().items() if k != "lm_head.weight"}
    folder = tmp_path / "mamba_ssm"
    folder.mkdir()
    save_file(sd, str(folder / "model.safetensors"))
    cfg = {"d_model": 32, "d_intermediate": 0, "n_layer": 2, "vocab_size": 97,  # padded to 100 by pad 4
           "ssm_cfg": {"layer": "Mamba2", "d_state": 16, "headdim": 8, "ngroups": 2, "d_conv": 4, "expand": 2,
                       "chunk_size": 8},
           "attn_layer_idx": [], "attn_cfg": {}, "rms_norm": True, "residual_in_fp32": True,
           "fused_add_norm": True, "pad_vocab_size_multiple": 4, "tie_embeddings": True}
    (folder / "config.json").write_text(json.dumps(cfg))
    ids = np.random.default_rng(3).integers(0, 97, size=L).tolist()
    ref = _hf_logits(model, ids)
    for name, extra in [("prefill", []), ("step", ["--step"]), ("chunk5", ["--chunk", "5"])]:
        got = _subq_logits(subq_bin, folder, ids, tmp_path / f"{name}.npy", *extra)
        assert got.shape == ref.shape, name
        err = np.abs(got - ref).max()
        assert err < TOL, f"{name}: max abs diff {err:.3g}"


def test_mamba2_bad_state_size_is_a_clear_error(subq_bin, tmp_path):
    model = _hf_model(n_groups=1, tie=False, seed=1)
    folder = tmp_path / "hf"
    model.save_pretrained(folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["state_size"] = 32
    (folder / "config.json").write_text(json.dumps(cfg))
    p = run_subq(subq_bin, "logits", "--model", folder, "--ids", "1,2", "--out", tmp_path / "x.npy", check=False)
    assert p.returncode != 0
    assert "in_proj.weight" in p.stderr and "state_size" in p.stderr, p.stderr
