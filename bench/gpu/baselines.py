"""Recurrent-core kernels of subq vs their baselines on the same card, in one run (issue 8):
SSD chunked prefill of one Mamba-2-2.7B-shaped layer (H 80, P 64, N 128, G 1) vs mamba_ssm's Triton
mamba_chunk_scan_combined (bf16, chunk 256, final state returned); the one-token SSD state update vs
mamba_ssm's selective_state_update (f32 state, as subq keeps it; bf16 state too); Gated DeltaNet prefill and
one-token update (H 16, dk = dv = 128) vs flash-linear-attention's chunk_gated_delta_rule and
fused_recurrent_gated_delta_rule (f32 state, q/k L2 norm in the kernel). subq's numbers come from the
bench_cuda_kernels binary (CUDA graphs of calls, events). Baselines: triton.testing.do_bench (GPU time) and,
for the one-token updates, the wall time per eager call (what a decode loop pays). Prints a table and writes
OUT/cuda-kernels-<card>.{json,md}.

SSD TFLOP/s-equivalent counts the chunked algorithm's work at chunk Q = 256 for everyone:
2 (Q N + Q P + 2 P N) FLOPs per token and head (C B^T, its product with X, chunk states, state readout).

Usage: baselines.py --subq-bench ./bench_cuda_kernels [--out bench/results] [--ssd-lengths 2048,8192,32768]
       [--gdn-lengths 2048,8192] [--batches 1,64,256]   (mamba_ssm's Triton modules and fla on PYTHONPATH)"""
import argparse, json, re, subprocess, time

import torch
import triton

H, P, N, Q = 80, 64, 128, 256
GH, GK, GV = 16, 128, 128


def ssd_flops(L):
    return 2.0 * (Q * N + Q * P + 2 * P * N) * L * H


def wall_us(fn, calls=200):
    fn()
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(calls):
        fn()
    torch.cuda.synchronize()
    return 1e6 * (time.perf_counter() - t) / calls


def gpu_us(fn):
    return 1e3 * triton.testing.do_bench(fn, warmup=25, rep=200)


def mamba_rows(lengths, batches):
    from mamba_ssm.ops.triton.ssd_combined import mamba_chunk_scan_combined
    from mamba_ssm.ops.triton.selective_state_update import selective_state_update
    dev, bf = "cuda", torch.bfloat16
    A = -torch.rand(H, device=dev).mul(15).add(1)
    D, dt_bias = torch.ones(H, device=dev), torch.rand(H, device=dev).mul(-4).add(-2)
    pre = []
    for L in lengths:
        x = torch.randn(1, L, H, P, device=dev, dtype=bf)
        dt = torch.randn(1, L, H, device=dev, dtype=bf)
        B, C = (torch.randn(1, L, 1, N, device=dev, dtype=bf) for _ in range(2))
        with torch.no_grad():
            f = lambda: mamba_chunk_scan_combined(x, dt, A, B, C, Q, D=D, dt_bias=dt_bias, dt_softplus=True,
                                                  return_final_states=True)
            pre.append({"L": L, "us": gpu_us(f)})
        del x, dt, B, C
    step = []
    for Bt in batches:
        for sd in (torch.float32, bf):
            state = torch.randn(Bt, H, P, N, device=dev, dtype=sd) * 0.1
            x = torch.randn(Bt, H, P, device=dev, dtype=bf)
            dt = torch.randn(Bt, H, device=dev, dtype=bf)[:, :, None].expand(Bt, H, P)
            Am = A[:, None, None].expand(H, P, N)
            Bm, Cm = (torch.randn(Bt, 1, N, device=dev, dtype=bf) for _ in range(2))
            Dm, dtb = D[:, None].expand(H, P), dt_bias[:, None].expand(H, P)
            f = lambda: selective_state_update(state, x, dt, Am, Bm, Cm, Dm, dt_bias=dtb, dt_softplus=True)
            step.append({"batch": Bt, "state": str(sd).split(".")[-1], "gpu_us": gpu_us(f), "call_us": wall_us(f)})
    return pre, step


def fla_rows(lengths, batches):
    from fla.ops.gated_delta_rule import chunk_gated_delta_rule, fused_recurrent_gated_delta_rule
    dev, bf = "cuda", torch.bfloat16

    def inputs(Bt, T):
        q, k, v = (torch.randn(Bt, T, GH, d, device=dev, dtype=bf) for d in (GK, GK, GV))
        g = torch.nn.functional.logsigmoid(torch.randn(Bt, T, GH, device=dev)).mul(0.1)
        beta = torch.rand(Bt, T, GH, device=dev, dtype=bf)
        h0 = torch.randn(Bt, GH, GK, GV, device=dev) * 0.1
        return q, k, v, g, beta, h0

    pre, step = [], []
    with torch.no_grad():
        for L in lengths:
            q, k, v, g, beta, h0 = inputs(1, L)
            f = lambda: chunk_gated_delta_rule(q, k, v, g, beta, initial_state=h0, output_final_state=True,
                                               use_qk_l2norm_in_kernel=True)
            pre.append({"L": L, "us": gpu_us(f)})
        for Bt in batches:
            q, k, v, g, beta, h0 = inputs(Bt, 1)
            f = lambda: fused_recurrent_gated_delta_rule(q, k, v, g=g, beta=beta, initial_state=h0,
                                                         output_final_state=True, use_qk_l2norm_in_kernel=True)
            step.append({"batch": Bt, "gpu_us": gpu_us(f), "call_us": wall_us(f)})
    return pre, step


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--subq-bench", required=True)
    ap.add_argument("--out", default="bench/results")
    ap.add_argument("--ssd-lengths", default="2048,8192,32768")
    ap.add_argument("--gdn-lengths", default="2048,8192")
    ap.add_argument("--batches", default="1,64,256")
    a = ap.parse_args()
    ints = lambda s: [int(v) for v in s.split(",")]
    subq = json.loads(subprocess.run([a.subq_bench, "--ssd-lengths", a.ssd_lengths, "--gdn-lengths", a.gdn_lengths,
                                      "--batches", a.batches], check=True, capture_output=True, text=True).stdout)
    card = torch.cuda.get_device_name(0)
    r = {"device": card, "torch": torch.__version__, "triton": triton.__version__, "subq": subq}
    try:
        r["mamba_ssm_prefill"], r["mamba_ssm_step"] = mamba_rows(ints(a.ssd_lengths), ints(a.batches))
    except Exception as e:  # noqa: BLE001 -- report what could not run, keep the rest
        r["mamba_ssm_error"] = repr(e)
    try:
        import fla
        r["fla"] = fla.__version__
        r["fla_prefill"], r["fla_step"] = fla_rows(ints(a.gdn_lengths), ints(a.batches))
    except Exception as e:  # noqa: BLE001
        r["fla_error"] = repr(e)
    bw = subq["copy_bandwidth_GBps"]
    md = [f"# Recurrent kernels: subq CUDA vs mamba_ssm and fla, {card}", "",
          f"One run; torch {torch.__version__}, triton {triton.__version__}, fla {r.get('fla', '-')}; copy bandwidth "
          f"(read + write) {bw:.0f} GB/s. subq: f32 activations and state, CUDA graphs; baselines: bf16 activations, "
          "do_bench GPU time (and wall time per eager call for the one-token updates).", ""]
    md += ["## SSD chunked prefill, Mamba-2-2.7B layer (H 80, P 64, N 128, G 1)", "",
           "| L | subq us | subq TFLOP/s-eq | mamba_ssm us | mamba_ssm TFLOP/s-eq | subq speed / mamba_ssm |",
           "|---|---|---|---|---|---|"]
    ms = {x["L"]: x for x in r.get("mamba_ssm_prefill", [])}
    for x in subq["ssd_prefill"]:
        m = ms.get(x["L"])
        tf = ssd_flops(x["L"]) / (x["us"] * 1e-6) / 1e12
        mcell = f"{m['us']:.0f} | {ssd_flops(x['L']) / (m['us'] * 1e-6) / 1e12:.0f}" if m else "- | -"
        ratio = f"{m['us'] / x['us']:.2f}x" if m else "-"
        md.append(f"| {x['L']} | {x['us']:.0f} | {tf:.1f} | {mcell} | {ratio} |")
    md += ["", "## SSD one-token state update, same layer", "",
           "| batch | subq us (graph) | subq state GB/s (of copy bw) | selective_state_update f32 state: GPU us / call us | bf16 state: GPU us / call us | subq vs f32 call |",
           "|---|---|---|---|---|---|"]
    mst = {(x["batch"], x["state"]): x for x in r.get("mamba_ssm_step", [])}
    for x in subq["ssd_step"]:
        f32, b16 = mst.get((x["batch"], "float32")), mst.get((x["batch"], "bfloat16"))
        c = lambda m: f"{m['gpu_us']:.1f} / {m['call_us']:.1f}" if m else "-"
        ratio = f"{f32['call_us'] / x['us']:.1f}x" if f32 else "-"
        md.append(f"| {x['batch']} | {x['us']:.2f} | {x['state_GBps']:.0f} ({100 * x['state_GBps'] / bw:.0f}%) | "
                  f"{c(f32)} | {c(b16)} | {ratio} |")
    md += ["", "## Gated DeltaNet (H 16, dk = dv = 128)", "",
           "| phase | size | subq us | fla GPU us | fla call us | subq speed / fla (GPU) |", "|---|---|---|---|---|---|"]
    fp = {x["L"]: x for x in r.get("fla_prefill", [])}
    for x in subq["gdn_prefill"]:
        f = fp.get(x["L"])
        md.append(f"| prefill (chunk_gated_delta_rule) | L {x['L']} | {x['us']:.0f} | {f['us']:.0f} | - | "
                  f"{f['us'] / x['us']:.2f}x |" if f else f"| prefill | L {x['L']} | {x['us']:.0f} | - | - | - |")
    fs = {x["batch"]: x for x in r.get("fla_step", [])}
    for x in subq["gdn_step"]:
        f = fs.get(x["batch"])
        md.append(f"| step (fused_recurrent) | batch {x['batch']} | {x['us']:.2f} | {f['gpu_us']:.1f} | "
                  f"{f['call_us']:.1f} | {f['gpu_us'] / x['us']:.1f}x |" if f else
                  f"| step | batch {x['batch']} | {x['us']:.2f} | - | - | - |")
    for k in ("mamba_ssm_error", "fla_error"):
        if k in r:
            md += ["", f"{k}: {r[k]}"]
    slug = re.sub(r"[^a-z0-9]+", "-", card.lower().replace("nvidia", "")).strip("-")
    prefix = f"{a.out}/cuda-kernels-{slug}"
    json.dump(r, open(prefix + ".json", "w"), indent=2)
    open(prefix + ".md", "w").write("\n".join(md) + "\n")
    print("\n".join(md))
    print(f"wrote {prefix}.json and .md")


if __name__ == "__main__":
    main()
