"""Engine logits of Mamba-3 models (mamba_ssm layout, SPEC section 4) vs a plain PyTorch transcription
of the SPEC recurrence, token by token in float64. Random weights are written as model.safetensors +
config.json; `subq logits` runs them as one prefill (several chunk lengths) and as decode steps."""
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from conftest import run_subq

D_MODEL, N_LAYER, VOCAB = 32, 2, 64
IDS = [3, 17, 42, 5, 9, 60, 1, 33, 28, 11, 50, 7, 2, 19, 44, 63, 0, 21, 36]  # 19 tokens


def rms(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rotate(v, phase, mimo):
    """v [..., N] rotated by phase [..., NA]: interleaved pairs (SISO) or half-split pairs (MIMO)."""
    v = v.clone()
    na, n = phase.shape[-1], v.shape[-1]
    ia = torch.arange(na) if mimo else 2 * torch.arange(na)
    ib = ia + (n // 2 if mimo else 1)
    a, b = v[..., ia], v[..., ib]
    c, s = torch.cos(phase), torch.sin(phase)
    v[..., ia], v[..., ib] = a * c - b * s, a * s + b * c
    return v


def mamba3_mixer(p, c, u):
    """u [L, d] -> [L, d]; p: the layer's tensors (float64), c: ssm_cfg with derived dims."""
    H, P, N, G, R, NA = c["H"], c["P"], c["N"], c["G"], c["R"], c["NA"]
    di, mimo = H * P, c["mimo"]
    L = u.shape[0]
    z, x, B, C, dd_dt, dd_a, trap, ang = torch.split(
        u @ p["in_proj.weight"].T, [di, di, G * R * N, G * R * N, H, H, H, NA], dim=-1)
    z, x = z.view(L, H, P), x.view(L, H, P)
    dt = F.softplus(dd_dt + p["dt_bias"])                                  # [L, H]
    A = torch.clamp(-torch.where(dd_a >= 0, 1 + dd_a, 1 / (1 - dd_a)), max=-1e-4)
    lam = torch.sigmoid(trap)
    theta = math.pi * torch.tanh(ang)                                       # [L, NA]
    Bn = rms(B.view(L, R, G, N), p["B_norm.weight"], 1e-5)
    Cn = rms(C.view(L, R, G, N), p["C_norm.weight"], 1e-5)
    grp = torch.arange(H) // (H // G)
    k = Bn[:, :, grp] + p["B_bias"].permute(1, 0, 2)                        # [L, R, H, N]
    q = Cn[:, :, grp] + p["C_bias"].permute(1, 0, 2)
    ones = torch.ones(H, R, P, dtype=u.dtype)
    mx, mz, mo = (p.get(n, ones).permute(1, 0, 2) for n in ("mimo_x", "mimo_z", "mimo_o"))  # [R, H, P]
    phase = torch.zeros(H, NA, dtype=u.dtype)
    S = torch.zeros(H, P, N, dtype=u.dtype)
    k_prev = torch.zeros(R, H, N, dtype=u.dtype)
    v_prev = torch.zeros(R, H, P, dtype=u.dtype)
    out = []
    for t in range(L):
        phase = phase + dt[t][:, None] * theta[t][None, :]
        kt, qt = rotate(k[t], phase, mimo), rotate(q[t], phase, mimo)      # [R, H, N]
        vt = x[t][None] * mx                                                # [R, H, P]
        alpha = torch.exp(A[t] * dt[t])
        beta, gamma = (1 - lam[t]) * dt[t] * alpha, lam[t] * dt[t]
        S = (alpha[:, None, None] * S + beta[:, None, None] * torch.einsum("rhp,rhn->hpn", v_prev, k_prev)
             + gamma[:, None, None] * torch.einsum("rhp,rhn->hpn", vt, kt))
        y = torch.einsum("hpn,rhn->rhp", S, qt) + p["D"][None, :, None] * vt
        if c["norm"]:
            y = rms(y, p["norm.weight"].view(H, P), 1e-5)
        y = (y * F.silu(z[t][None] * mz) * mo).sum(0)                       # [H, P]
        out.append(y.reshape(di))
        k_prev, v_prev = kt, vt
    return torch.stack(out) @ p["out_proj.weight"].T


def make_model(tmp_path, name, rank, rope_fraction, norm, groups=1, tie=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    H, P, N = 4, 8, 16
    d_inner = H * P
    NA = int(N * rope_fraction) // 2
    ssm_cfg = {"layer": "Mamba3", "d_state": N, "headdim": P, "expand": d_inner // D_MODEL, "ngroups": groups,
               "rope_fraction": rope_fraction, "chunk_size": 8, "is_outproj_norm": norm}
    if rank > 1:
        ssm_cfg.update(is_mimo=True, mimo_rank=rank)
    cfg = {"d_model": D_MODEL, "n_layer": N_LAYER, "vocab_size": VOCAB, "pad_vocab_size_multiple": 8,
           "tie_embeddings": tie, "rms_norm": True, "residual_in_fp32": True, "fused_add_norm": True,
           "d_intermediate": 0, "attn_layer_idx": [], "attn_cfg": {}, "ssm_cfg": ssm_cfg}

    def rnd(*shape, scale=1.0, mean=0.0):
        return (mean + scale * torch.randn(*shape, generator=g)).float()

    rows = 2 * d_inner + 2 * groups * rank * N + 3 * H + NA
    t = {"backbone.embedding.weight": rnd(VOCAB, D_MODEL), "backbone.norm_f.weight": rnd(D_MODEL, scale=0.1, mean=1)}
    if not tie:
        t["lm_head.weight"] = rnd(VOCAB, D_MODEL, scale=0.3)
    for i in range(N_LAYER):
        pre = f"backbone.layers.{i}."
        t[pre + "norm.weight"] = rnd(D_MODEL, scale=0.1, mean=1)
        m = pre + "mixer."
        t[m + "in_proj.weight"] = rnd(rows, D_MODEL, scale=0.5 / math.sqrt(D_MODEL) * 2)
        t[m + "dt_bias"] = rnd(H, scale=0.5, mean=-2.5)
        t[m + "D"] = rnd(H, scale=0.3, mean=1)
        t[m + "B_norm.weight"] = rnd(N, scale=0.1, mean=1)
        t[m + "C_norm.weight"] = rnd(N, scale=0.1, mean=1)
        t[m + "B_bias"] = rnd(H, rank, N, scale=0.3, mean=1)
        t[m + "C_bias"] = rnd(H, rank, N, scale=0.3, mean=1)
        if rank > 1:
            t[m + "mimo_x"] = rnd(H, rank, P, scale=0.2, mean=1 / rank)
            t[m + "mimo_z"] = rnd(H, rank, P, scale=0.2, mean=1)
            t[m + "mimo_o"] = rnd(H, rank, P, scale=0.2, mean=1 / rank)
        if norm:
            t[m + "norm.weight"] = rnd(d_inner, scale=0.1, mean=1)
        t[m + "out_proj.weight"] = rnd(D_MODEL, d_inner, scale=1 / math.sqrt(d_inner))
    d = tmp_path / name
    d.mkdir()
    (d / "config.json").write_text(json.dumps(cfg))
    save_file({k: v.contiguous() for k, v in t.items()}, str(d / "model.safetensors"))
    dims = dict(H=H, P=P, N=N, G=groups, R=rank, NA=NA, mimo=rank > 1, norm=norm)
    return d, {k: v.double() for k, v in t.items()}, dims


def reference_logits(t, dims, ids, tie, eps=1e-5):
    x = t["backbone.embedding.weight"][ids]
    for i in range(N_LAYER):
        pre = f"backbone.layers.{i}."
        p = {k[len(pre + "mixer."):]: v for k, v in t.items() if k.startswith(pre + "mixer.")}
        x = x + mamba3_mixer(p, dims, rms(x, t[pre + "norm.weight"], eps))
    x = rms(x, t["backbone.norm_f.weight"], eps)
    head = t["backbone.embedding.weight"] if tie else t["lm_head.weight"]
    return (x @ head.T).numpy()


def subq_logits(subq_bin, model, ids, tmp_path, *extra):
    out = tmp_path / "logits.npy"
    run_subq(subq_bin, "logits", "--model", model, "--ids", ",".join(map(str, ids)), "--out", out, *extra)
    return np.load(out)


CASES = {
    "siso_rf05": dict(rank=1, rope_fraction=0.5, norm=False),
    "siso_rf10_norm_g2_untied": dict(rank=1, rope_fraction=1.0, norm=True, groups=2, tie=False),
    "mimo2_rf05_norm": dict(rank=2, rope_fraction=0.5, norm=True),
    "mimo2_rf10_g2": dict(rank=2, rope_fraction=1.0, norm=False, groups=2, tie=False),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_mamba3_logits_match_torch_reference(subq_bin, tmp_path, name):
    kw = CASES[name]
    model, t, dims = make_model(tmp_path, name, **kw)
    ref = reference_logits(t, dims, IDS, kw.get("tie", True))
    assert ref.shape == (len(IDS), VOCAB)
    assert np.abs(ref).max() > 1.0  # the check below is not vacuous
    for extra in [(), ("--chunk", "3"), ("--chunk", "64"), ("--step",)]:
        got = subq_logits(subq_bin, model, IDS, tmp_path, *extra)
        assert got.shape == ref.shape, extra
        err = np.abs(got - ref).max()
        assert err < 1e-4, f"{name} {extra}: max abs diff {err}"


def test_mamba3_rejects_bad_tensor_shape(subq_bin, tmp_path):
    model, t, _ = make_model(tmp_path, "bad", rank=2, rope_fraction=0.5, norm=False)
    from safetensors.torch import load_file
    tensors = load_file(str(model / "model.safetensors"))
    tensors["backbone.layers.1.mixer.mimo_x"] = torch.zeros(4, 2, 7)
    save_file(tensors, str(model / "model.safetensors"))
    p = run_subq(subq_bin, "logits", "--model", model, "--ids", "1,2", "--out", tmp_path / "x.npy", check=False)
    assert p.returncode != 0
    assert "mimo_x" in p.stderr and "[4, 2, 8]" in p.stderr, p.stderr
