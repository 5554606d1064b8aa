"""Parity of subq's Llamba models (Discrete Mamba-2 mixer, SPEC section 3) with a plain PyTorch
transcription of the SPEC written here: the recurrence token by token in float64, Llama-style blocks.

Random weights are written as safetensors + config.json in the Llamba layout. Also covered: a layer-level
hybrid (full attention layers, rotate-half RoPE, GQA) and a head-level hybrid (attention heads kept inside
a Discrete Mamba-2 layer, mixers/head_hybrid.h).
"""
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from conftest import run_subq

TOL = 1e-4
D_MODEL, N_LAYER, VOCAB, HIDDEN = 32, 3, 61, 48  # vocab padded to 64
D_STATE, N_V, N_QK, D_CONV = 8, 4, 2, 4
HEAD = D_MODEL // N_V
ATTN = {"num_heads": 4, "num_key_value_heads": 2, "head_dim": 8, "rope_theta": 10000.0}
EPS = 1e-5


def _rms(x, w):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + EPS) * w


def _rope(x, pos, theta):
    """Rotate-half RoPE on x [L, heads, hd]."""
    hd = x.shape[-1]
    inv = 1.0 / theta ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd)
    ang = pos[:, None].double() * inv[None]  # [L, hd/2]
    cos, sin = torch.cos(ang)[:, None], torch.sin(ang)[:, None]
    x1, x2 = x[..., : hd // 2], x[..., hd // 2:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


def _attend(q, k, v):
    """Causal softmax attention, q [L, H, hd], k/v [L, KV, hd] (GQA) -> [L, H, hd]."""
    L, H, hd = q.shape
    rep = H // k.shape[1]
    k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
    s = torch.einsum("ihd,jhd->hij", q, k) / hd ** 0.5
    s = s.masked_fill(torch.triu(torch.ones(L, L, dtype=torch.bool), 1), float("-inf"))
    return torch.einsum("hij,jhd->ihd", torch.softmax(s, -1), v)


def _attention_layer(u, w, p):
    L = u.shape[0]
    pos = torch.arange(L)
    hd = ATTN["head_dim"]
    q = _rope((u @ w[p + "q_proj.weight"].T).view(L, -1, hd), pos, ATTN["rope_theta"])
    k = _rope((u @ w[p + "k_proj.weight"].T).view(L, -1, hd), pos, ATTN["rope_theta"])
    v = (u @ w[p + "v_proj.weight"].T).view(L, -1, hd)
    return _attend(q, k, v).reshape(L, -1) @ w[p + "o_proj.weight"].T


def _discrete_mamba2(u, w, p, kept):
    """SPEC section 3, token by token. kept: v-heads computed by attention instead (head-level hybrid)."""
    L, E, GN = u.shape[0], N_V * HEAD, N_QK * D_STATE
    proj = u @ w[p + "in_proj.weight"].T
    xbc, z, a_log = proj.split([E + 2 * GN, E, N_V], dim=-1)
    cd = xbc.shape[1]
    xbc = F.conv1d(xbc.T[None], w[p + "conv1d.weight"], w[p + "conv1d.bias"], padding=D_CONV - 1, groups=cd)
    xbc = xbc[0, :, :L].T  # identity activation
    x, B, C = xbc.split([E, GN, GN], dim=-1)
    x = x.view(L, N_V, HEAD)
    B = B.view(L, N_QK, D_STATE).repeat_interleave(N_V // N_QK, dim=1)
    C = C.view(L, N_QK, D_STATE).repeat_interleave(N_V // N_QK, dim=1)
    a = torch.exp(-F.softplus(a_log))  # [L, N_V]
    h = torch.zeros(N_V, HEAD, D_STATE, dtype=torch.float64)
    ys = []
    for t in range(L):
        h = a[t][:, None, None] * h + x[t][:, :, None] * B[t][:, None, :]
        ys.append(torch.einsum("hpn,hn->hp", h, C[t]) + w[p + "D"][:, None] * x[t])
    y = torch.stack(ys)  # [L, N_V, HEAD]
    if kept:
        pos = torch.arange(L)
        q = _rope((u @ w[p + "attn_q_proj.weight"].T).view(L, -1, HEAD), pos, ATTN["rope_theta"])
        k = _rope((u @ w[p + "attn_k_proj.weight"].T).view(L, -1, HEAD), pos, ATTN["rope_theta"])
        v = (u @ w[p + "attn_v_proj.weight"].T).view(L, -1, HEAD)
        att = _attend(q, k, v)
        y = y.clone()
        for i, hd in enumerate(kept):
            y[:, hd] = att[:, i]
    y = y.reshape(L, E) * F.silu(z + w[p + "z_bias"])
    return y @ w[p + "out_proj.weight"].T


def _reference_logits(w, ids, tie, attn_layers, kept_heads):
    x = w["backbone.embedding.weight"][torch.tensor(ids)]
    for i in range(N_LAYER):
        p = f"backbone.layers.{i}."
        u = _rms(x, w[p + "input_layernorm.weight"])
        if i in attn_layers:
            x = x + _attention_layer(u, w, p + "mixer.")
        else:
            x = x + _discrete_mamba2(u, w, p + "mixer.", kept_heads.get(i, []))
        u = _rms(x, w[p + "post_attention_layernorm.weight"])
        g, up = u @ w[p + "mlp.gate_proj.weight"].T, u @ w[p + "mlp.up_proj.weight"].T
        x = x + (F.silu(g) * up) @ w[p + "mlp.down_proj.weight"].T
    head = w["backbone.embedding.weight"] if tie else w["lm_head.weight"]
    return (_rms(x, w["backbone.final_layernorm.weight"]) @ head.T).numpy()


def _random_weights(seed, tie, attn_layers, kept_heads):
    g = torch.Generator().manual_seed(seed)
    V = 64
    E, GN, cd = N_V * HEAD, N_QK * D_STATE, N_V * HEAD + 2 * N_QK * D_STATE

    def rn(*shape, std=1.0, mean=0.0):
        return (mean + std * torch.randn(*shape, generator=g)).float()

    w = {"backbone.embedding.weight": rn(V, D_MODEL),
         "backbone.final_layernorm.weight": rn(D_MODEL, std=0.2, mean=1.0)}
    if not tie:
        w["lm_head.weight"] = rn(V, D_MODEL, std=D_MODEL ** -0.5)
    for i in range(N_LAYER):
        p = f"backbone.layers.{i}."
        w[p + "input_layernorm.weight"] = rn(D_MODEL, std=0.2, mean=1.0)
        w[p + "post_attention_layernorm.weight"] = rn(D_MODEL, std=0.2, mean=1.0)
        w[p + "mlp.gate_proj.weight"] = rn(HIDDEN, D_MODEL, std=D_MODEL ** -0.5)
        w[p + "mlp.up_proj.weight"] = rn(HIDDEN, D_MODEL, std=D_MODEL ** -0.5)
        w[p + "mlp.down_proj.weight"] = rn(D_MODEL, HIDDEN, std=HIDDEN ** -0.5)
        m = p + "mixer."
        if i in attn_layers:
            hd, H, KV = ATTN["head_dim"], ATTN["num_heads"], ATTN["num_key_value_heads"]
            w[m + "q_proj.weight"] = rn(H * hd, D_MODEL, std=D_MODEL ** -0.5)
            w[m + "k_proj.weight"] = rn(KV * hd, D_MODEL, std=D_MODEL ** -0.5)
            w[m + "v_proj.weight"] = rn(KV * hd, D_MODEL, std=D_MODEL ** -0.5)
            w[m + "o_proj.weight"] = rn(D_MODEL, H * hd, std=(H * hd) ** -0.5)
            continue
        in_proj = rn(2 * E + 2 * GN + N_V, D_MODEL, std=D_MODEL ** -0.5)
        in_proj[-N_V:] *= 0.5  # A_log rows: mostly slow decay, so long-range terms count
        w[m + "in_proj.weight"] = in_proj
        w[m + "z_bias"] = rn(E, std=0.3, mean=1.0)
        w[m + "conv1d.weight"] = rn(cd, 1, D_CONV, std=0.4)
        w[m + "conv1d.bias"] = rn(cd, std=0.1)
        w[m + "D"] = rn(N_V, std=0.3, mean=1.0)
        w[m + "out_proj.weight"] = rn(D_MODEL, E, std=E ** -0.5)
        kept = kept_heads.get(i, [])
        if kept:
            for n in ("attn_q_proj.weight", "attn_k_proj.weight", "attn_v_proj.weight"):
                w[m + n] = rn(len(kept) * HEAD, D_MODEL, std=D_MODEL ** -0.5)
    return w


def _write_model(folder, w, tie, attn_layers, kept_heads):
    folder.mkdir()
    save_file({k: v.contiguous() for k, v in w.items()}, str(folder / "model.safetensors"))
    cfg = {"model_type": "llamba", "d_model": D_MODEL, "n_layer": N_LAYER, "vocab_size": VOCAB,
           "pad_vocab_size_multiple": 8, "tie_embeddings": tie, "lm_head_bias": False, "norm_epsilon": EPS,
           "ssm_cfg": {"d_state": D_STATE, "n_v_heads": N_V, "n_qk_heads": N_QK, "d_conv": D_CONV, "expand": 1,
                       "chunk_size": 8, "activation": "identity", "bias": False, "conv_bias": True},
           "mlp_cfg": {"intermediate_size": HIDDEN, "bias": False, "act_fn": "silu"}}
    if attn_layers or kept_heads:
        cfg["attn_cfg"] = ATTN
    if attn_layers:
        cfg["attention_layers"] = sorted(attn_layers)
    if kept_heads:
        cfg["attention_heads"] = {str(k): v for k, v in kept_heads.items()}
    (folder / "config.json").write_text(json.dumps(cfg))


CASES = {
    "plain_untied": (False, set(), {}),
    "plain_tied": (True, set(), {}),
    "layer_hybrid": (False, {1}, {}),
    "head_hybrid": (False, set(), {2: [3, 0]}),
    "both_hybrids": (True, {0}, {1: [2], 2: [1]}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_llamba_matches_torch_transcription(subq_bin, tmp_path, case):
    tie, attn_layers, kept_heads = CASES[case]
    seed = sorted(CASES).index(case) + 1
    w = _random_weights(seed, tie, attn_layers, kept_heads)
    folder = tmp_path / "model"
    _write_model(folder, w, tie, attn_layers, kept_heads)
    L = 35
    ids = np.random.default_rng(seed).integers(0, VOCAB, size=L).tolist()
    with torch.no_grad():
        ref = _reference_logits({k: v.double() for k, v in w.items()}, ids, tie, attn_layers, kept_heads)
    for name, extra in [("prefill", []), ("step", ["--step"]), ("chunk3", ["--chunk", "3"]),
                        ("chunk64", ["--chunk", "64"])]:
        out = tmp_path / f"{name}.npy"
        run_subq(subq_bin, "logits", "--model", folder, "--ids", ",".join(map(str, ids)), "--out", out, *extra)
        got = np.load(out)
        assert got.shape == (L, 64), name
        err = np.abs(got - ref).max()
        assert err < TOL, f"{case}/{name}: max abs diff {err:.3g} (logit scale {np.abs(ref).max():.3g})"


def test_llamba_kept_head_without_weights_is_a_clear_error(subq_bin, tmp_path):
    w = _random_weights(1, False, set(), {})
    folder = tmp_path / "model"
    _write_model(folder, w, False, set(), {1: [2]})
    p = run_subq(subq_bin, "logits", "--model", folder, "--ids", "1,2", "--out", tmp_path / "x.npy", check=False)
    assert p.returncode != 0
    assert "backbone.layers.1.mixer.attn_q_proj.weight" in p.stderr, p.stderr
