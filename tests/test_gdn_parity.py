"""Engine logits of Gated DeltaNet models (fla layout, SPEC section 5) vs plain PyTorch transcriptions of
the delta-rule recurrence, the fla block (attn_norm, mixer, mlp_norm, SwiGLU) and, for the hybrid, softmax
attention with rotate-half RoPE. Random weights are written as model.safetensors + config.json; `subq
logits` runs them as one prefill (several chunk lengths) and as decode steps."""
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from conftest import run_subq

D_MODEL, N_LAYER, VOCAB, EPS = 32, 2, 64, 1e-6
IDS = [3, 17, 42, 5, 9, 60, 1, 33, 28, 11, 50, 7, 2, 19, 44, 63, 0, 21, 36, 8, 14, 30]  # 22 tokens


def rms(x, w, eps=EPS):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def gdn_mixer(p, c, u):
    """fla GatedDeltaNet, token by token (naive recurrence)."""
    Hk, Hv, dk, dv, K = c["Hk"], c["Hv"], c["dk"], c["dv"], c["K"]
    L = u.shape[0]

    def conv(x, w):  # causal depthwise conv + SiLU; x [L, C], w [C, 1, K]
        return F.silu(F.conv1d(F.pad(x.T[None], (K - 1, 0)), w, groups=x.shape[1])[0].T)

    q = conv(u @ p["q_proj.weight"].T, p["q_conv1d.weight"]).view(L, Hk, dk)
    k = conv(u @ p["k_proj.weight"].T, p["k_conv1d.weight"]).view(L, Hk, dk)
    v = conv(u @ p["v_proj.weight"].T, p["v_conv1d.weight"]).view(L, Hv, dv)
    q = q * torch.rsqrt(q.pow(2).sum(-1, keepdim=True) + 1e-6) / math.sqrt(dk)
    k = k * torch.rsqrt(k.pow(2).sum(-1, keepdim=True) + 1e-6)
    rep = Hv // Hk
    q, k = q.repeat_interleave(rep, dim=1), k.repeat_interleave(rep, dim=1)  # v-head h reads q/k head h // rep
    g = -torch.exp(p["A_log"]) * F.softplus(u @ p["a_proj.weight"].T + p["dt_bias"])  # [L, Hv]
    beta = torch.sigmoid(u @ p["b_proj.weight"].T)
    S = torch.zeros(Hv, dk, dv, dtype=u.dtype)
    o = []
    for t in range(L):
        S = S * torch.exp(g[t])[:, None, None]
        upd = beta[t][:, None] * (v[t] - torch.einsum("hkv,hk->hv", S, k[t]))
        S = S + torch.einsum("hk,hv->hkv", k[t], upd)
        o.append(torch.einsum("hkv,hk->hv", S, q[t]))
    o = rms(torch.stack(o), p["o_norm.weight"]) * F.silu((u @ p["g_proj.weight"].T).view(L, Hv, dv))
    return o.reshape(L, Hv * dv) @ p["o_proj.weight"].T


def attention_mixer(p, c, u):
    """fla Attention: GQA softmax attention with rotate-half RoPE."""
    H, Hkv, theta = c["heads"], c["kv_heads"], c["theta"]
    hd = D_MODEL // H
    L = u.shape[0]
    q = (u @ p["q_proj.weight"].T).view(L, H, hd)
    k = (u @ p["k_proj.weight"].T).view(L, Hkv, hd)
    v = (u @ p["v_proj.weight"].T).view(L, Hkv, hd)
    inv = theta ** (-torch.arange(0, hd, 2, dtype=u.dtype) / hd)
    ang = torch.arange(L, dtype=u.dtype)[:, None] * inv[None]         # [L, hd/2]
    cos, sin = torch.cat([ang.cos()] * 2, -1)[:, None], torch.cat([ang.sin()] * 2, -1)[:, None]

    def rope(x):
        x1, x2 = x[..., : hd // 2], x[..., hd // 2:]
        return x * cos + torch.cat([-x2, x1], -1) * sin

    q, k = rope(q), rope(k)
    k, v = k.repeat_interleave(H // Hkv, dim=1), v.repeat_interleave(H // Hkv, dim=1)
    s = torch.einsum("qhd,khd->hqk", q, k) / math.sqrt(hd)
    s = s.masked_fill(torch.triu(torch.ones(L, L, dtype=torch.bool), 1), float("-inf"))
    o = torch.einsum("hqk,khd->qhd", s.softmax(-1), v)
    return o.reshape(L, H * hd) @ p["o_proj.weight"].T


def make_model(tmp_path, name, qk_heads, v_heads, attn_layers=(), tie=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    dk, expand_v, K, inter = 8, 1.5, 4, 48
    dv = int(dk * expand_v)
    cfg = {"model_type": "gated_deltanet", "architectures": ["GatedDeltaNetForCausalLM"], "attn_mode": "chunk",
           "hidden_size": D_MODEL, "num_hidden_layers": N_LAYER, "num_heads": qk_heads, "num_v_heads": v_heads,
           "head_dim": dk, "expand_v": expand_v, "conv_size": K, "norm_eps": EPS, "hidden_ratio": 4,
           "intermediate_size": inter, "hidden_act": "swish", "vocab_size": VOCAB, "tie_word_embeddings": tie,
           "use_gate": True, "use_short_conv": True, "allow_neg_eigval": False, "fuse_norm": True,
           "fuse_swiglu": True, "use_cache": True, "bos_token_id": 1, "eos_token_id": 2, "attn": None}
    attn = dict(heads=4, kv_heads=2, theta=1000.0)
    if attn_layers:
        cfg["attn"] = {"layers": list(attn_layers), "num_heads": attn["heads"], "num_kv_heads": attn["kv_heads"],
                       "qkv_bias": False, "window_size": None, "rope_theta": attn["theta"]}

    def rnd(*shape, scale=1.0, mean=0.0):
        return (mean + scale * torch.randn(*shape, generator=g)).float()

    s_in = 1 / math.sqrt(D_MODEL)
    Ck, Cv = qk_heads * dk, v_heads * dv
    t = {"model.embeddings.weight": rnd(VOCAB, D_MODEL), "model.norm.weight": rnd(D_MODEL, scale=0.1, mean=1)}
    if not tie:
        t["lm_head.weight"] = rnd(VOCAB, D_MODEL, scale=0.3)
    for i in range(N_LAYER):
        pre = f"model.layers.{i}."
        t[pre + "attn_norm.weight"] = rnd(D_MODEL, scale=0.1, mean=1)
        t[pre + "mlp_norm.weight"] = rnd(D_MODEL, scale=0.1, mean=1)
        t[pre + "mlp.gate_proj.weight"] = rnd(inter, D_MODEL, scale=s_in)
        t[pre + "mlp.up_proj.weight"] = rnd(inter, D_MODEL, scale=s_in)
        t[pre + "mlp.down_proj.weight"] = rnd(D_MODEL, inter, scale=1 / math.sqrt(inter))
        m = pre + "attn."
        if i in attn_layers:
            hd = D_MODEL // attn["heads"]
            t[m + "q_proj.weight"] = rnd(attn["heads"] * hd, D_MODEL, scale=2 * s_in)
            t[m + "k_proj.weight"] = rnd(attn["kv_heads"] * hd, D_MODEL, scale=2 * s_in)
            t[m + "v_proj.weight"] = rnd(attn["kv_heads"] * hd, D_MODEL, scale=s_in)
            t[m + "o_proj.weight"] = rnd(D_MODEL, attn["heads"] * hd, scale=s_in)
            continue
        t[m + "q_proj.weight"] = rnd(Ck, D_MODEL, scale=s_in)
        t[m + "k_proj.weight"] = rnd(Ck, D_MODEL, scale=s_in)
        t[m + "v_proj.weight"] = rnd(Cv, D_MODEL, scale=s_in)
        t[m + "a_proj.weight"] = rnd(v_heads, D_MODEL, scale=s_in)
        t[m + "b_proj.weight"] = rnd(v_heads, D_MODEL, scale=s_in)
        t[m + "A_log"] = rnd(v_heads, scale=0.3, mean=-0.5)
        t[m + "dt_bias"] = rnd(v_heads, scale=0.5, mean=-2.0)
        t[m + "q_conv1d.weight"] = rnd(Ck, 1, K, scale=0.5)
        t[m + "k_conv1d.weight"] = rnd(Ck, 1, K, scale=0.5)
        t[m + "v_conv1d.weight"] = rnd(Cv, 1, K, scale=0.5)
        t[m + "g_proj.weight"] = rnd(Cv, D_MODEL, scale=s_in)
        t[m + "o_norm.weight"] = rnd(dv, scale=0.1, mean=1)
        t[m + "o_proj.weight"] = rnd(D_MODEL, Cv, scale=1 / math.sqrt(Cv))
    d = tmp_path / name
    d.mkdir()
    (d / "config.json").write_text(json.dumps(cfg))
    save_file({k: v.contiguous() for k, v in t.items()}, str(d / "model.safetensors"))
    dims = dict(Hk=qk_heads, Hv=v_heads, dk=dk, dv=dv, K=K, attn_layers=tuple(attn_layers), tie=tie, **attn)
    return d, {k: v.double() for k, v in t.items()}, dims


def reference_logits(t, c, ids):
    x = t["model.embeddings.weight"][ids]
    for i in range(N_LAYER):
        pre = f"model.layers.{i}."
        p = {k[len(pre + "attn."):]: v for k, v in t.items() if k.startswith(pre + "attn.")}
        mixer = attention_mixer if i in c["attn_layers"] else gdn_mixer
        x = x + mixer(p, c, rms(x, t[pre + "attn_norm.weight"]))
        h = rms(x, t[pre + "mlp_norm.weight"])
        x = x + (F.silu(h @ t[pre + "mlp.gate_proj.weight"].T) * (h @ t[pre + "mlp.up_proj.weight"].T)) \
            @ t[pre + "mlp.down_proj.weight"].T
    x = rms(x, t["model.norm.weight"])
    head = t["model.embeddings.weight"] if c["tie"] else t["lm_head.weight"]
    return (x @ head.T).numpy()


def subq_logits(subq_bin, model, ids, tmp_path, *extra):
    out = tmp_path / "logits.npy"
    run_subq(subq_bin, "logits", "--model", model, "--ids", ",".join(map(str, ids)), "--out", out, *extra)
    return np.load(out)


CASES = {
    "mha": dict(qk_heads=2, v_heads=2),
    "gva_tied": dict(qk_heads=2, v_heads=4, tie=True),
    "hybrid_attn_layer1": dict(qk_heads=2, v_heads=4, attn_layers=(1,)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_gdn_logits_match_torch_reference(subq_bin, tmp_path, name):
    model, t, dims = make_model(tmp_path, name, **CASES[name])
    ref = reference_logits(t, dims, IDS)
    assert ref.shape == (len(IDS), VOCAB)
    assert np.abs(ref).max() > 1.0  # the check below is not vacuous
    for extra in [(), ("--chunk", "3"), ("--chunk", "8"), ("--chunk", "64"), ("--step",)]:
        got = subq_logits(subq_bin, model, IDS, tmp_path, *extra)
        assert got.shape == ref.shape, extra
        err = np.abs(got - ref).max()
        assert err < 1e-4, f"{name} {extra}: max abs diff {err}"


def test_gdn_rejects_missing_tensor(subq_bin, tmp_path):
    model, _, _ = make_model(tmp_path, "bad", qk_heads=2, v_heads=2)
    from safetensors.torch import load_file
    tensors = load_file(str(model / "model.safetensors"))
    del tensors["model.layers.0.attn.k_conv1d.weight"]
    save_file(tensors, str(model / "model.safetensors"))
    p = run_subq(subq_bin, "logits", "--model", model, "--ids", "1,2", "--out", tmp_path / "x.npy", check=False)
    assert p.returncode != 0
    assert "k_conv1d.weight" in p.stderr, p.stderr
