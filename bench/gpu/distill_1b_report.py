#!/usr/bin/env python3
"""Report of bench/gpu/distill_1b.sh: tokens/s per MOHAWK stage, peak GPU memory and model-FLOPs utilisation
for `subq distill`, and its stage 3 against the PyTorch baseline (bench/gpu/distill_1b_torch.py).

  distill_1b_report.py RUN_DIR [--name distill-1b-h200] [--results bench/results] [--notes NOTES.md]

RUN_DIR is what the run step left in OUT: env.json, subq_monitor.json, subq_metrics.jsonl,
subq_summary.json, student_config.json, torch_monitor.json, torch.json, recipe.yaml.

Tokens/s of a stage are steady-state: the stage's tokens after its first step over the time from the end
of the first step to the end of the last (step 1 pays for cuBLAS/Triton set-up and allocator growth; its
time is reported apart). Model FLOPs per token (2 per multiply-add, matmuls only; MFU counts the work the
objective needs, not recomputation):
  teacher forward   2 x (q, k, v, o, MLP weights) per layer + causal attention 2 x L x H x hd per layer
                    (QK^T and PV over L/2 keys on average) + 2 x lm_head (stage 3 only: stages 1-2 use the
                    hidden states, the trainer's logits there are waste and not counted)
  student forward   2 x (in_proj, out_proj, MLP) per layer + chunked SSD 2 x H x ((Q/2)(N+P) + 2NP) per
                    layer + 2 x lm_head; backward = 2 x forward for trained weights
  stage 3           teacher forward + 3 x student forward (every weight trained)
  stage 2           teacher trunk + per layer: in_proj 4x (forward + weight gradient; its input is the
                    teacher's stream), out_proj 6x, SSD 3x, MLP 4x (frozen: forward + input gradient)
  stage 1           teacher trunk + per layer: teacher q, k and causal QK^T for the probabilities, student
                    in_proj 4x, and the causal L x L x N mixing matrix per head 3x
MFU = model FLOPs/s over the H200's dense bf16 peak, 989 TFLOP/s (NVIDIA's datasheet figure for H100/H200
SXM; a plain 8192^3 bf16 torch.matmul measured ~790 on these machines, KINDS.md).
"""
import argparse
import json
import pathlib
import re
import sys

PEAK_BF16 = 989e12
STAGES = ["matrix_orientation", "hidden_state", "end_to_end"]


def teacher_dims(shape):
    sys.path.insert(0, str(pathlib.Path(__file__).parent))
    from make_random_llama import SHAPES
    s = SHAPES[shape]
    return dict(D=s["hidden_size"], F=s["intermediate_size"], n_layers=s["num_hidden_layers"],
                H=s["num_attention_heads"], Hkv=s["num_key_value_heads"], hd=s["head_dim"], V=s["vocab_size"])


def student_dims(cfg):
    ssm = cfg["ssm_cfg"]
    D = cfg["d_model"]
    return dict(D=D, n_layers=cfg["n_layer"], V=cfg["vocab_size"], F=cfg["mlp_cfg"]["intermediate_size"],
                nqk=ssm["n_qk_heads"], nv=ssm["n_v_heads"], N=ssm["d_state"], P=ssm["expand"] * D // ssm["n_v_heads"],
                Q=ssm["chunk_size"])


def matmul_weights(t, s):
    """Weights that multiply activations, per layer (teacher attention and MLP; student in_proj, out_proj and
    MLP) and the LM head (tied to the embedding in both models)."""
    return dict(t_attn=t["D"] * t["H"] * t["hd"] * 2 + 2 * t["D"] * t["Hkv"] * t["hd"], t_mlp=3 * t["D"] * t["F"],
                t_head=t["V"] * t["D"], in_proj=s["D"] * (2 * s["nv"] * s["P"] + 2 * s["nqk"] * s["N"] + s["nv"]),
                out_proj=s["nv"] * s["P"] * s["D"], mlp=3 * s["D"] * s["F"], head=s["V"] * s["D"])


def flops_per_token(stage, t, s, L):
    """Model FLOPs per token of one optimiser step's work in `stage` (see the module doc)."""
    w = matmul_weights(t, s)
    trunk = t["n_layers"] * (2 * (w["t_attn"] + w["t_mlp"]) + 2 * L * t["H"] * t["hd"])
    ssd = 2 * s["nv"] * ((s["Q"] / 2) * (s["N"] + s["P"]) + 2 * s["N"] * s["P"])
    if stage == "end_to_end":
        student = s["n_layers"] * (2 * (w["in_proj"] + w["out_proj"] + w["mlp"]) + ssd) + 2 * w["head"]
        return trunk + 2 * w["t_head"] + 3 * student
    if stage == "hidden_state":
        return trunk + s["n_layers"] * (4 * w["in_proj"] + 6 * w["out_proj"] + 3 * ssd + 4 * w["mlp"])
    probs = 2 * (t["D"] * t["H"] * t["hd"] + t["D"] * t["Hkv"] * t["hd"]) + L * t["H"] * t["hd"]
    return trunk + s["n_layers"] * (probs + 4 * w["in_proj"] + 3 * L * s["N"] * s["nv"])


def stage_windows(lines):
    """Wall-time window [start, end] of each stage from subq's timestamped log lines."""
    heads, last_step = {}, {}
    for t, text in lines:
        m = re.search(r"\[distill\] stage (\d)/3 (\w+): (\d+) steps x (\d+) tokens \(.* seqs of (\d+)\)", text)
        if m:
            heads[m.group(2)] = dict(start=t, steps=int(m.group(3)), batch_tokens=int(m.group(4)),
                                     seq_len=int(m.group(5)))
        m = re.search(r"\[distill\] stage \d/3 (\w+)\s+step", text)
        if m:
            last_step[m.group(1)] = t
    for name, h in heads.items():
        h["end"] = last_step.get(name, h["start"])
    return heads


def peak_in(samples, start, end):
    vals = [u for t, u, _ in samples if start <= t <= end]
    return max(vals) if vals else None


def base_ssd(torch_res):
    return torch_res.get("ssd") if torch_res else None


def gib(b):
    return None if b is None else round(b / 2**30, 1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir")
    ap.add_argument("--name", default="distill-1b-h200")
    ap.add_argument("--results", default=str(pathlib.Path(__file__).resolve().parents[1] / "results"))
    ap.add_argument("--notes", help="markdown appended to the report (what bounds the numbers)")
    a = ap.parse_args()
    run = pathlib.Path(a.run_dir)
    load = lambda n: json.loads((run / n).read_text()) if (run / n).exists() else None  # noqa: E731
    env, mon, tmon, torch_res = load("env.json"), load("subq_monitor.json"), load("torch_monitor.json"), load("torch.json")
    scfg = load("student_config.json")
    if env is None or mon is None:
        sys.exit(f"distill_1b_report.py: {run} lacks env.json or subq_monitor.json (did the run step run?)")
    metrics = [json.loads(l) for l in (run / "subq_metrics.jsonl").read_text().splitlines() if l.strip()] \
        if (run / "subq_metrics.jsonl").exists() else []
    windows = stage_windows(mon["lines"])
    L = next((w["seq_len"] for w in windows.values()), None)
    t = teacher_dims(env["shape"])
    s = student_dims(scfg) if scfg else None

    stages = []
    for i, name in enumerate(STAGES):
        rows = [m for m in metrics if m.get("stage_name") == name]
        w = windows.get(name)
        if not rows or not w:
            stages.append({"stage": i + 1, "name": name, "ran": False})
            continue
        first_s = rows[0]["tokens"] / rows[0]["tokens_per_s"]
        st = {"stage": i + 1, "name": name, "ran": True, "steps": len(rows), "steps_planned": w["steps"],
              "tokens_per_step": w["batch_tokens"], "first_step_seconds": round(first_s, 3),
              "loss_first": rows[0]["loss"], "loss_last": rows[-1]["loss"],
              "peak_gpu_memory_gib": gib(peak_in(mon["samples"], w["start"], w["end"]))}
        if len(rows) >= 2:
            dt = rows[-1]["train_seconds"] - rows[0]["train_seconds"]
            st["timed_steps"] = len(rows) - 1
            st["tokens_per_s"] = round((rows[-1]["tokens"] - rows[0]["tokens"]) / dt, 1)
            if s and L:
                f = flops_per_token(name, t, s, L)
                st["model_flop_per_token"] = int(f)
                st["model_tflop_per_s"] = round(st["tokens_per_s"] * f / 1e12, 1)
                st["mfu"] = round(st["tokens_per_s"] * f / PEAK_BF16, 4)
        stages.append(st)

    base = None
    if torch_res and torch_res.get("tokens_per_s"):
        base = {k: torch_res.get(k) for k in ("ssd", "triton", "triton_unavailable", "kernel_check", "tokens_per_s",
                                              "tokens_per_step", "micro_batch", "accum", "seq_len", "data",
                                              "teacher_params", "student_params", "torch", "setup_seconds")}
        base["steps"] = torch_res["steps"]
        base["cuda_max_memory_allocated_gib"] = gib(torch_res.get("cuda_max_memory_allocated"))
        base["cuda_max_memory_reserved_gib"] = gib(torch_res.get("cuda_max_memory_reserved"))
        base["peak_gpu_memory_gib"] = gib(tmon.get("peak_used_bytes")) if tmon else None
        if s and L:
            f = flops_per_token("end_to_end", t, s, torch_res["seq_len"])
            base["model_tflop_per_s"] = round(torch_res["tokens_per_s"] * f / 1e12, 1)
            base["mfu"] = round(torch_res["tokens_per_s"] * f / PEAK_BF16, 4)
    elif tmon:
        base = {"failed": f"exit {tmon['rc']}" + (" (killed at its time limit)" if tmon["rc"] == 124 else ""),
                "log_tail": [x[1] for x in tmon["lines"][-8:]]}

    # Baseline variants run on their own (torch-*.json: --ssd torch with subq's AdamW / RMSNorm choices).
    variants = []
    for vp in run.glob("torch-*.json"):
        v = json.loads(vp.read_text())
        if not v.get("tokens_per_s"):
            continue
        row = {"file": vp.name, "ssd": v["ssd"], "adamw": v.get("adamw", "fused"), "rmsnorm": v.get("rmsnorm", "fused"),
               "tokens_per_s": round(v["tokens_per_s"], 1),
               "cuda_max_memory_allocated_gib": gib(v.get("cuda_max_memory_allocated"))}
        if s and L:
            row["mfu"] = round(v["tokens_per_s"] * flops_per_token("end_to_end", t, s, v["seq_len"]) / PEAK_BF16, 4)
        variants.append(row)
    variants.sort(key=lambda v: (v["ssd"] != base_ssd(torch_res), v["adamw"] != "fused", v["rmsnorm"] != "fused"))
    if base and base.get("tokens_per_s"):
        base.setdefault("adamw", torch_res.get("adamw", "fused"))
        base.setdefault("rmsnorm", torch_res.get("rmsnorm", "fused"))

    s3 = stages[2]
    targets = {}
    if s3.get("tokens_per_s") and base and base.get("tokens_per_s"):
        targets["stage3_vs_pytorch"] = round(s3["tokens_per_s"] / base["tokens_per_s"], 3)
        targets["stage3_tokens_per_s_ge_pytorch"] = s3["tokens_per_s"] >= base["tokens_per_s"]
    if s3.get("mfu") is not None:
        targets["stage3_mfu_ge_35pct"] = s3["mfu"] >= 0.35
    out = {"gpu": env.get("gpu"), "shape": env["shape"], "seq_len": L, "teacher": env.get("teacher"),
           "teacher_dims": t, "student_dims": s, "subq_exit": mon["rc"],
           "subq_peak_gpu_memory_gib": gib(mon.get("peak_used_bytes")), "subq_summary": load("subq_summary.json"),
           "stages": stages, "pytorch_baseline": base, "baseline_variants": variants, "targets": targets, "peak_bf16_flops": PEAK_BF16,
           "memory_note": "GPU memory = NVML device memory in use minus the idle reading (CUDA context + "
                          "caching allocator), sampled every 50 ms"}
    res = pathlib.Path(a.results)
    res.mkdir(parents=True, exist_ok=True)
    (res / f"{a.name}.json").write_text(json.dumps(out, indent=2) + "\n")
    (res / f"{a.name}.md").write_text(markdown(out, a) + (pathlib.Path(a.notes).read_text() if a.notes else ""))
    print(f"wrote {res / a.name}.json and .md")


def markdown(o, a):
    fmt = lambda v, spec="{:,.0f}": "—" if v is None else spec.format(v)  # noqa: E731
    lines = [f"# `subq distill` at 1B scale on one GPU ({o['gpu'] or 'no GPU'})", "",
             f"Random Llama-3.2-1B-shaped teacher ({o['teacher'] and o['teacher'].get('params') and format(o['teacher']['params'], ',')} params, "
             f"shape `{o['shape']}`) -> Llamba-1B-shaped Discrete Mamba-2 student, seq {o['seq_len']}, bf16 autocast, "
             "recipe `recipes/llamba-1b-scale.yaml`, command `bench/gpu/distill_1b.sh` (stage / run / report). "
             "Data: TinyStories shards from `subq data prepare` with stories260K's 512-token tokenizer (subq); "
             "random ids in [0, 512) (PyTorch baseline).", "",
             "| stage | steps (timed) | tokens/step | tokens/s | model GFLOP/token | TFLOP/s | MFU | peak GPU memory | first step |",
             "|---|---|---|---|---|---|---|---|---|"]
    for st in o["stages"]:
        if not st["ran"]:
            lines.append(f"| {st['stage']} {st['name']} | did not run | | | | | | | |")
            continue
        lines.append(f"| {st['stage']} {st['name']} | {st['steps']} ({st.get('timed_steps', 0)}) | {st['tokens_per_step']:,} | "
                     f"{fmt(st.get('tokens_per_s'))} | {fmt(st.get('model_flop_per_token', 0) / 1e9, '{:.2f}')} | "
                     f"{fmt(st.get('model_tflop_per_s'), '{:.0f}')} | {fmt(st.get('mfu'), '{:.1%}')} | "
                     f"{fmt(st.get('peak_gpu_memory_gib'), '{:.1f} GiB')} | {fmt(st.get('first_step_seconds'), '{:.2f} s')} |")
    b = o["pytorch_baseline"]
    if b and b.get("tokens_per_s"):
        timed = len(b["steps"]) - 1
        first = b["steps"][0]["seconds"]
        lines.append(f"| 3 PyTorch baseline ({b['ssd']}) | {len(b['steps'])} ({timed}) | {b['tokens_per_step']:,} | "
                     f"{fmt(b['tokens_per_s'])} | {fmt(o['stages'][2].get('model_flop_per_token', 0) / 1e9, '{:.2f}')} | "
                     f"{fmt(b.get('model_tflop_per_s'), '{:.0f}')} | {fmt(b.get('mfu'), '{:.1%}')} | "
                     f"{fmt(b.get('peak_gpu_memory_gib'), '{:.1f} GiB')} | {first:.2f} s |")
    elif b:
        lines.append(f"| 3 PyTorch baseline | failed: {b.get('failed')} | | | | | | | |")
    if o["baseline_variants"]:
        lines += ["", "Stage 3, the PyTorch step with subq's choices one at a time (each a separate process on the "
                  "same kind of card; `distill_1b_torch.py --ssd torch --adamw plain --rmsnorm composite`), and subq:", "",
                  "| SSD | AdamW | RMSNorm | tokens/s | MFU | CUDA peak allocated |", "|---|---|---|---|---|---|"]
        rows = ([dict(b, tokens_per_s=b["tokens_per_s"])] if b and b.get("tokens_per_s") else []) + o["baseline_variants"]
        for v in rows:
            lines.append(f"| {v['ssd']} | {v.get('adamw', 'fused')} | {v.get('rmsnorm', 'fused')} | {fmt(v['tokens_per_s'])} | "
                         f"{fmt(v.get('mfu'), '{:.1%}')} | {fmt(v.get('cuda_max_memory_allocated_gib'), '{:.1f} GiB')} |")
        s3 = o["stages"][2]
        if s3.get("tokens_per_s"):
            lines.append(f"| subq: chunked torch SSD (libtorch) | fused (ATen _fused_adamw_) | fused (ATen rms_norm) | "
                         f"{fmt(s3['tokens_per_s'])} | {fmt(s3.get('mfu'), '{:.1%}')} | |")
    lines += ["", "Targets (stage 3): " + (", ".join(f"{k} = {v}" for k, v in o["targets"].items()) or "not measured"), ""]
    if b and b.get("tokens_per_s"):
        kc = b.get("kernel_check")
        lines += [f"Baseline: transformers LlamaForCausalLM teacher (bf16 weights, SDPA), torch Discrete Mamba-2 student "
                  f"(f32 weights, bf16 autocast, fused AdamW), SSD = {b['ssd']}"
                  + (f" (Triton {b['triton']}; checked against a chunked torch SSD, max rel. err "
                     + ", ".join(f"{k} {v:.1e}" for k, v in kc['max_rel_err'].items()) + ")" if kc else "")
                  + (f"; Triton not used: {b['triton_unavailable']}" if b.get("triton_unavailable") else "")
                  + f". PyTorch caching allocator peak: {b['cuda_max_memory_allocated_gib']} GiB allocated, "
                  f"{b['cuda_max_memory_reserved_gib']} GiB reserved.", ""]
    lines += ["Definitions: tokens/s are steady-state (after each stage's first step). Model FLOPs per token "
              "count matmuls at 2 FLOPs per multiply-add (teacher forward + student forward/backward; stage-specific "
              "terms in `bench/gpu/distill_1b_report.py`); MFU is over 989 TFLOP/s, the H200 SXM dense bf16 peak "
              "of NVIDIA's datasheet. " + o["memory_note"] + ".", ""]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
