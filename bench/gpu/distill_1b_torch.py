#!/usr/bin/env python3
"""PyTorch baseline of subq's MOHAWK stage-3 step (end-to-end soft cross-entropy against the teacher).

  distill_1b_torch.py --teacher HF_DIR --out JSON [--device cuda] [--ssd auto|triton|torch]
                      [--mamba-src DIR] [--seq-len 2048 --micro-batch 2 --accum 4 --steps 6] [student dims]

The same step as `subq distill` stage 3 (src/train/distill.cc, recipes/llamba-1b-scale.yaml), written the
way a PyTorch user would: the teacher is transformers' LlamaForCausalLM with bf16 weights and SDPA
attention, run without grad; the student is a Llamba-style Discrete Mamba-2 (embedding and MLPs copied
from the teacher, tied LM head) with f32 master weights under bf16 autocast; loss = cross-entropy of the
student against softmax(teacher logits / T) in f32; gradient accumulation, global-norm clipping at 1.0,
torch.optim.AdamW(fused=True). The student's scan is mamba_ssm's Triton SSD kernel
`mamba_chunk_scan_combined` (python sources from the mamba-ssm sdist in --mamba-src: a stub package
without its CUDA extensions), checked first against a chunked pure-torch SSD; when it does not import or
run (or disagrees), the pure-torch SSD runs instead and the JSON says so. Token ids are random in
[0, 512) (the ids subq's run reads are TinyStories under a 512-token tokenizer; compute does not depend
on the values). Writes one JSON object: per-step seconds, tokens/s (steps after --warmup-steps), peak
CUDA memory, which SSD ran and the kernel check.
"""
import argparse
import json
import math
import os
import sys
import time


def log(msg):
    print(f"[distill_1b_torch] {msg}", file=sys.stderr, flush=True)


# ---------------- the SSD (scalar decay per head and token) ----------------
def ssd_recurrent(x, loga, B, C):
    """Oracle: h_t = exp(loga_t) h_{t-1} + x_t B_t^T, y_t = h_t C_t. x [b,l,h,p], loga [b,l,h], B/C [b,l,h,n]."""
    import torch
    b, l, h, p = x.shape
    state = torch.zeros(b, h, p, B.shape[-1], dtype=torch.float32, device=x.device)
    ys = []
    for t in range(l):
        state = loga[:, t].exp()[..., None, None] * state + x[:, t, :, :, None] * B[:, t, :, None, :]
        ys.append(torch.einsum("bhpn,bhn->bhp", state, C[:, t]))
    return torch.stack(ys, 1)


def ssd_chunked(x, loga, B, C, chunk):
    """The chunked SSD in plain torch (as mamba's ssd_minimal_discrete): intra-chunk quadratic form plus
    states passed between chunks. Same arguments as ssd_recurrent; L must be a multiple of chunk."""
    import torch
    from torch.nn import functional as F
    b, l, h, p = x.shape
    n, q = B.shape[-1], chunk
    c = l // q
    xc = x.reshape(b, c, q, h, p)                      # [b, c, q, h, p]
    Bc, Cc = B.reshape(b, c, q, h, n), C.reshape(b, c, q, h, n)
    a = loga.float().reshape(b, c, q, h).permute(0, 3, 1, 2)  # [b, h, c, q]
    acum = a.cumsum(-1)
    seg = acum[..., :, None] - acum[..., None, :]     # [b, h, c, q, q]: sum of a over (s, t]
    causal = torch.ones(q, q, dtype=torch.bool, device=x.device).tril()
    decay = seg.masked_fill(~causal, float("-inf")).exp().to(x.dtype)
    scores = torch.einsum("bcqhn,bcshn->bhcqs", Cc, Bc) * decay
    y = torch.einsum("bhcqs,bcshp->bcqhp", scores, xc)  # intra-chunk
    to_end = (acum[..., -1:] - acum).exp().to(x.dtype)  # [b, h, c, q]
    states = torch.einsum("bcqhn,bhcq,bcqhp->bchpn", Bc, to_end, xc)  # state each chunk adds
    totals = F.pad(acum[..., -1], (1, 0))              # [b, h, c+1]
    tc = totals.cumsum(-1)
    chunk_decay = (tc[..., :, None] - tc[..., None, :]).masked_fill(
        ~torch.ones(c + 1, c + 1, dtype=torch.bool, device=x.device).tril(), float("-inf")).exp().to(x.dtype)
    states = torch.cat([torch.zeros_like(states[:, :1]), states], 1)   # [b, c+1, h, p, n]
    entering = torch.einsum("bhzc,bchpn->bzhpn", chunk_decay, states)[:, :-1]  # state entering each chunk
    y = y + torch.einsum("bcqhn,bchpn,bhcq->bcqhp", Cc, entering, acum.exp().to(x.dtype))
    return y.reshape(b, l, h, p)


def load_mamba_ssd(mamba_src):
    """mamba_ssm's mamba_chunk_scan_combined from its python sources, or raise."""
    if mamba_src:
        sys.path.insert(0, mamba_src)
    from mamba_ssm.ops.triton.ssd_combined import mamba_chunk_scan_combined
    return mamba_chunk_scan_combined


def dm2_scan_triton(kernel, x, loga_logits, B, C, chunk):
    """Discrete Mamba-2 through the Mamba-2 kernel as goombalab's phi-mamba calls it: dt = softplus(A_log),
    A = -1 (so dt * A = log decay), x divided by dt (the kernel multiplies it back)."""
    import torch
    from torch.nn import functional as F
    dt = F.softplus(loga_logits.float())
    A = -torch.ones(x.shape[2], device=x.device, dtype=torch.float32)
    return kernel(x / dt.to(x.dtype).unsqueeze(-1), loga_logits, A, B, C, chunk_size=chunk, dt_softplus=True)


def check_kernel(kernel, device, chunk, heads, head_dim, d_state, dtype):
    """Triton kernel vs the chunked torch SSD (in f32 on the same inputs) at the run's head shape and dtype,
    so the check also compiles and autotunes the kernels the run uses: forward and input gradients."""
    import torch
    from torch.nn import functional as F
    g = torch.Generator(device="cpu").manual_seed(0)
    b, l, h, p, n = 2, 4 * chunk, heads, head_dim, d_state
    mk = lambda *s: torch.randn(*s, generator=g).to(device=device, dtype=dtype)  # noqa: E731
    x, A_log, B, C = mk(b, l, h, p), mk(b, l, h), mk(b, l, h, n) / math.sqrt(n), mk(b, l, h, n)
    out, grads = {}, {}
    for name, fn, cast in [("triton", lambda *t: dm2_scan_triton(kernel, *t, chunk), lambda t: t),
                           ("torch", lambda x_, a_, b_, c_: ssd_chunked(x_, -F.softplus(a_), b_, c_, chunk),
                            lambda t: t.float())]:
        ins = [cast(t).clone().requires_grad_(True) for t in (x, A_log, B, C)]
        y = fn(*ins)
        y.float().backward(torch.ones_like(y, dtype=torch.float32) / y.numel() ** 0.5)
        out[name] = y.detach().float()
        grads[name] = [t.grad.float() for t in ins]
    rel = lambda u, v: ((u - v).abs().max() / v.abs().max().clamp_min(1e-12)).item()  # noqa: E731
    errs = {"y": rel(out["triton"], out["torch"])}
    for k, gt, gr in zip(["dx", "dA_log", "dB", "dC"], grads["triton"], grads["torch"]):
        errs[k] = rel(gt, gr)
    return errs


# ---------------- student ----------------
def build_student(teacher_cfg, teacher, heads, head_dim, d_state, conv, chunk, ssd, kernel, rmsnorm="fused"):
    import torch
    from torch import nn
    from torch.nn import functional as F

    D, eps = teacher_cfg.hidden_size, teacher_cfg.rms_norm_eps
    if rmsnorm == "fused":
        norm = lambda x, w: F.rms_norm(x, (D,), w, eps)  # noqa: E731
    else:  # as subq's trainer writes it (src/train/modules.cc RmsNorm): separate elementwise ops
        norm = lambda x, w: x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w  # noqa: E731

    class Dm2Mixer(nn.Module):
        def __init__(self):
            super().__init__()
            self.d_inner, self.conv_dim = heads * head_dim, heads * head_dim + 2 * heads * d_state
            self.in_proj = nn.Linear(D, 2 * self.d_inner + 2 * heads * d_state + heads, bias=False)
            self.conv1d = nn.Conv1d(self.conv_dim, self.conv_dim, conv, groups=self.conv_dim, padding=conv - 1)
            self.z_bias = nn.Parameter(torch.zeros(self.d_inner))
            self.D = nn.Parameter(torch.ones(heads))
            self.out_proj = nn.Linear(self.d_inner, D, bias=False)

        def forward(self, u):  # [b, l, D]
            b, l, _ = u.shape
            xbc, z, a = self.in_proj(u).split([self.conv_dim, self.d_inner, heads], -1)
            xbc = self.conv1d(xbc.transpose(1, 2))[..., :l].transpose(1, 2)  # identity activation
            x, Bm, Cm = xbc.split([self.d_inner, heads * d_state, heads * d_state], -1)
            x = x.reshape(b, l, heads, head_dim)
            Bm, Cm = Bm.reshape(b, l, heads, d_state), Cm.reshape(b, l, heads, d_state)
            if ssd == "triton":
                y = dm2_scan_triton(kernel, x, a, Bm, Cm, chunk)
            else:
                y = ssd_chunked(x, -F.softplus(a.float()), Bm, Cm, chunk)
            y = (y + x * self.D[:, None]).reshape(b, l, self.d_inner) * F.silu(z + self.z_bias)
            return self.out_proj(y)

    class Layer(nn.Module):
        def __init__(self, tl):
            super().__init__()
            self.in_norm = nn.Parameter(tl.input_layernorm.weight.detach().float().clone())
            self.mlp_norm = nn.Parameter(tl.post_attention_layernorm.weight.detach().float().clone())
            self.mixer = Dm2Mixer()
            self.gate, self.up, self.down = (nn.Parameter(w.weight.detach().float().clone()) for w in
                                             (tl.mlp.gate_proj, tl.mlp.up_proj, tl.mlp.down_proj))

        def forward(self, x):
            h = x + self.mixer(norm(x, self.in_norm))
            m = norm(h, self.mlp_norm)
            return h + F.linear(F.silu(F.linear(m, self.gate)) * F.linear(m, self.up), self.down)

    class Student(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Parameter(teacher.model.embed_tokens.weight.detach().float().clone())  # tied head
            self.layers = nn.ModuleList(Layer(tl) for tl in teacher.model.layers)
            self.final_norm = nn.Parameter(teacher.model.norm.weight.detach().float().clone())

        def forward(self, ids):
            x = F.embedding(ids, self.embed)
            for layer in self.layers:
                x = layer(x)
            return F.linear(norm(x, self.final_norm), self.embed)  # [b, l, vocab]

    return Student()


def soft_cross_entropy(student_logits, teacher_logits, T=1.0):
    import torch
    target = torch.softmax(teacher_logits.float() / T, -1)
    return -(target * torch.log_softmax(student_logits.float() / T, -1)).sum(-1).mean()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--teacher", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--ssd", choices=["auto", "triton", "torch"], default="auto")
    ap.add_argument("--mamba-src", default="")
    ap.add_argument("--seq-len", type=int, default=2048)
    ap.add_argument("--micro-batch", type=int, default=2)
    ap.add_argument("--accum", type=int, default=4)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--warmup-steps", type=int, default=1)
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--head-dim", type=int, default=64)
    ap.add_argument("--d-state", type=int, default=64)
    ap.add_argument("--conv", type=int, default=4)
    ap.add_argument("--chunk", type=int, default=64)
    ap.add_argument("--adamw", choices=["fused", "plain"], default="fused",
                    help="plain: foreach=False, fused=False (a loop over parameters, like libtorch's AdamW)")
    ap.add_argument("--rmsnorm", choices=["fused", "composite"], default="fused",
                    help="composite: x * rsqrt(mean(x^2) + eps) * w in separate ops, as subq's trainer")
    ap.add_argument("--vocab-ids", type=int, default=512, help="token ids are drawn from [0, this)")
    a = ap.parse_args()
    t0 = time.time()
    import torch
    from transformers import LlamaForCausalLM

    dev = torch.device(a.device)
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    res = {"device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu", "torch": torch.__version__,
           "seq_len": a.seq_len, "micro_batch": a.micro_batch, "accum": a.accum,
           "tokens_per_step": a.seq_len * a.micro_batch * a.accum, "data": f"random ids in [0, {a.vocab_ids})"}

    # Which SSD runs: the Triton kernel when it imports, runs and agrees with the torch SSD.
    ssd, kernel = a.ssd, None
    if ssd in ("auto", "triton"):
        try:
            kernel = load_mamba_ssd(a.mamba_src)
            import triton
            res["triton"] = triton.__version__
            tk = time.time()
            errs = check_kernel(kernel, dev, a.chunk, a.heads, a.head_dim, a.d_state, torch.bfloat16)
            res["kernel_check"] = {"inputs": "bf16, batch 2, 4 chunks, the run's heads", "max_rel_err": errs,
                                   "seconds_incl_compile_and_autotune": round(time.time() - tk, 1)}
            worst = max(errs.values())
            if not worst < 5e-2:  # bf16 inputs and outputs; a wrong formula is off by O(1)
                raise RuntimeError(f"Triton SSD disagrees with the torch SSD (max rel err {worst:.3g})")
            ssd = "triton"
        except Exception as e:  # noqa: BLE001 - any failure means the fallback, recorded
            if a.ssd == "triton":
                raise
            res["triton_unavailable"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            log(f"Triton SSD not used: {res['triton_unavailable']}")
            ssd = "torch"
    res["ssd"] = {"triton": "mamba_ssm mamba_chunk_scan_combined (Triton)", "torch": "chunked pure-torch SSD"}[ssd]
    log(f"SSD: {res['ssd']}")

    teacher = LlamaForCausalLM.from_pretrained(a.teacher, dtype=torch.bfloat16, attn_implementation="sdpa")
    teacher = teacher.to(dev).eval().requires_grad_(False)
    student = build_student(teacher.config, teacher, a.heads, a.head_dim, a.d_state, a.conv, a.chunk, ssd,
                            kernel, a.rmsnorm).to(dev)
    params = [p for p in student.parameters()]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=1e-4, betas=(0.9, 0.95), eps=1e-8,
                            **({"fused": dev.type == "cuda"} if a.adamw == "fused" else {"foreach": False, "fused": False}))
    res["adamw"], res["rmsnorm"] = a.adamw, a.rmsnorm
    res["student_params"] = sum(p.numel() for p in params)
    res["teacher_params"] = sum(p.numel() for p in teacher.parameters())
    res["setup_seconds"] = round(time.time() - t0, 1)
    write_results(a.out, res, [], a.warmup_steps, dev)
    log(f"teacher {res['teacher_params']:,} params (bf16), student {res['student_params']:,} params (f32 + "
        f"bf16 autocast), {res['tokens_per_step']} tokens per step")

    gen = torch.Generator(device="cpu").manual_seed(1)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    steps = []
    for step in range(a.warmup_steps + a.steps):
        sync()
        ts = time.time()
        opt.zero_grad(set_to_none=True)
        loss_sum = torch.zeros((), device=dev)
        for _ in range(a.accum):
            ids = torch.randint(0, a.vocab_ids, (a.micro_batch, a.seq_len), generator=gen).pin_memory() \
                if dev.type == "cuda" else torch.randint(0, a.vocab_ids, (a.micro_batch, a.seq_len), generator=gen)
            ids = ids.to(dev, non_blocking=True)
            with torch.no_grad():
                t_logits = teacher(input_ids=ids, use_cache=False).logits  # [b, l, vocab] bf16
            with torch.autocast(dev.type, dtype=torch.bfloat16):
                loss = soft_cross_entropy(student(ids), t_logits) / a.accum
            loss.backward()
            loss_sum += loss.detach()
            del t_logits, loss
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        loss_v = loss_sum.item()  # the one host sync per step, as in subq
        sync()
        steps.append({"step": step + 1, "seconds": time.time() - ts, "loss": loss_v})
        log(f"step {step + 1}/{a.warmup_steps + a.steps} {steps[-1]['seconds']:.3f} s loss {loss_v:.4f}")
        write_results(a.out, res, steps, a.warmup_steps, dev)  # after every step: a killed run keeps its steps
        if not math.isfinite(loss_v):
            sys.exit(f"distill_1b_torch.py: loss is {loss_v} at step {step + 1}")
    res["seconds"] = round(time.time() - t0, 1)
    write_results(a.out, res, steps, a.warmup_steps, dev)
    log(f"{res['tokens_per_s']:.0f} tokens/s over {len(steps) - a.warmup_steps} steps")


def write_results(path, res, steps, warmup_steps, dev):
    import torch
    timed = steps[warmup_steps:]
    res["steps"] = steps
    if timed:
        res["tokens_per_s"] = res["tokens_per_step"] * len(timed) / sum(s["seconds"] for s in timed)
    if dev.type == "cuda":
        res["cuda_max_memory_allocated"] = torch.cuda.max_memory_allocated(dev)
        res["cuda_max_memory_reserved"] = torch.cuda.max_memory_reserved(dev)
    with open(path + ".tmp", "w") as f:
        json.dump(res, f, indent=2)
    os.replace(path + ".tmp", path)


if __name__ == "__main__":
    main()
