#!/usr/bin/env python3
"""Report of bench/gpu/distill_scaling.sh: data-parallel scaling of `subq distill` on one host.

  distill_scaling_report.py OUT [--name NAME] [--results bench/results]

OUT holds scaling.tgz (or its unpacked res/ folder). Per world size N and MOHAWK stage: steady-state
tokens/s (the stage's tokens after its first step over the train time from the end of step 1 to the end
of the last step, from metrics.jsonl), scaling efficiency = tokens/s at N / (N x tokens/s at 1), peak
memory of every GPU (NVML, minus the idle reading), the final weights of each N against N = 1 (same
global batch: the ranks split each step's sequences), and the SIGKILL/resume check. Targets (issue 12):
stage-3 efficiency >= 90% at 2 GPUs and >= 85% at 4.
"""
import argparse
import json
import pathlib
import re
import sys
import tarfile
import tempfile

STAGES = {1: "matrix_orientation", 2: "hidden_state", 3: "end_to_end"}
TARGET_EFF = {2: 0.90, 4: 0.85}


def stage_rates(metrics_path):
    rows = [json.loads(l) for l in open(metrics_path) if l.strip()] if metrics_path.exists() else []
    out = {}
    for s, name in STAGES.items():
        r = sorted((x for x in rows if x.get("stage") == s), key=lambda x: x["step"])
        if len(r) < 2:
            out[name] = {"steps": len(r), "tokens_per_s": None}
            continue
        dt = r[-1]["train_seconds"] - r[0]["train_seconds"]
        out[name] = {"steps": len(r), "tokens_per_s": (r[-1]["tokens"] - r[0]["tokens"]) / dt if dt > 0 else None}
    return out


def load(res, name):
    p = res / name
    return json.loads(p.read_text()) if p.exists() else None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--name")
    ap.add_argument("--results", default=str(pathlib.Path(__file__).resolve().parents[2] / "bench" / "results"))
    a = ap.parse_args()
    out = pathlib.Path(a.out)
    tmp = None
    if (out / "scaling.tgz").exists():
        tmp = tempfile.mkdtemp()
        with tarfile.open(out / "scaling.tgz") as t:
            t.extractall(tmp, filter="data")
        res = pathlib.Path(tmp) / "res"
    else:
        res = out / "res"
    env = load(res, "env.json")
    if env is None:
        sys.exit(f"distill_scaling_report.py: no env.json under {res}")
    worlds = env["worlds"]
    runs = []
    for n in worlds:
        mon = load(res, f"w{n}.monitor.json") or {}
        rates = stage_rates(res / f"w{n}.metrics.jsonl")
        peaks = mon.get("peak_used_bytes_per_gpu")
        runs.append({"world": n, "exit": mon.get("rc"), "stages": rates,
                     "peak_gib_per_gpu": [round(p / 2**30, 2) for p in peaks[:n]] if peaks else None,
                     "weights_vs_w1": load(res, f"weights_w{n}_vs_w{worlds[0]}.json")})
    base = runs[0]["stages"]
    for r in runs:
        r["efficiency"] = {}
        for name in STAGES.values():
            t, t1 = r["stages"][name]["tokens_per_s"], base[name]["tokens_per_s"]
            r["efficiency"][name] = t / (r["world"] * t1) if t and t1 and worlds[0] == 1 else None
    resume = {"kill": load(res, "kill.json"), "weights_vs_uninterrupted": load(res, f"weights_resume_vs_w{worlds[-1]}.json")}
    targets = {}
    for r in runs:
        if r["world"] in TARGET_EFF and r["efficiency"]["end_to_end"] is not None:
            targets[f"stage3_efficiency_{r['world']}gpu_ge_{int(TARGET_EFF[r['world']] * 100)}pct"] = (
                r["efficiency"]["end_to_end"] >= TARGET_EFF[r["world"]])
    gpu = (env.get("gpu") or env["device"]).split(",")[0].strip()
    name = a.name or "distill-scaling-" + re.sub(r"[^a-z0-9]+", "-", gpu.lower()).strip("-")
    report = {"env": env, "runs": runs, "resume": resume, "targets": targets}
    resd = pathlib.Path(a.results)
    resd.mkdir(parents=True, exist_ok=True)
    (resd / f"{name}.json").write_text(json.dumps(report, indent=1) + "\n")
    lines = [f"# Data-parallel `subq distill` on {gpu} ({env['gpus']} GPUs on the host), shape `{env['shape']}`", "",
             "Command: `bench/gpu/distill_scaling.sh stage`, `run` on the GPU machine, `report`. Same recipe, seed",
             "and global batch at every world size (recipes/llamba-1b-scale.yaml; NCCL on GPUs with NVLink multicast off, Gloo on CPU).", "",
             "| world | stage | tokens/s | efficiency | peak GiB per GPU | exit |", "|---|---|---|---|---|---|"]
    for r in runs:
        for nm in STAGES.values():
            t, e = r["stages"][nm]["tokens_per_s"], r["efficiency"][nm]
            lines.append(f"| {r['world']} | {nm} | {t:,.0f} | {'' if e is None else f'{e:.1%}'} | "
                         f"{r['peak_gib_per_gpu'] or ''} | {r['exit']} |" if t else f"| {r['world']} | {nm} | — | | | {r['exit']} |")
    lines += ["", "| weights | same names | max abs diff | max rel diff (of the tensor's max) |", "|---|---|---|---|"]
    for r in runs[1:]:
        w = r["weights_vs_w1"] or {}
        lines.append(f"| world {r['world']} vs {worlds[0]} | {w.get('same_names_and_shapes')} | {w.get('max_abs_diff')} | {w.get('max_rel_diff')} |")
    w = resume["weights_vs_uninterrupted"] or {}
    k = resume["kill"] or {}
    lines.append(f"| killed (SIGKILL after stage-3 step {k.get('kill_after_stage3_step')}, killed={k.get('killed')}) and "
                 f"resumed vs uninterrupted, world {k.get('world')} | {w.get('same_names_and_shapes')} | "
                 f"{w.get('max_abs_diff')} | {w.get('max_rel_diff')} |")
    lines += ["", f"Targets: {targets or 'no multi-GPU world size ran'}", ""]
    (resd / f"{name}.md").write_text("\n".join(lines))
    print(f"wrote {resd / name}.json and .md")


if __name__ == "__main__":
    main()
