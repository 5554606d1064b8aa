#!/usr/bin/env python3
"""Issue 10's results table from bench/gpu/retrieval_students.sh: every student's held-out perplexity ratio,
probe accuracies (95% Wilson CI), recovery of the teacher's accuracy and state bytes per sequence, and the
issue's goals checked against them.
Usage: retrieval_students_report.py STUDENTS --teacher TEACHER [--md FILE] [--json FILE] [--png FILE]
  STUDENTS: the run's folder (students.tgz unpacked here when present), one NAME/ folder per student;
  TEACHER: the teacher's folder from retrieval_teacher.sh (probes.json, summary.json, heads*.json);
  the PNG (default beside the .md) plots kv-retrieval accuracy against state bytes (needs matplotlib)."""
import argparse
import json
import tarfile
from pathlib import Path

from retrieval_teacher_report import acc, load, portable  # same folder: shared by both tables

# name -> (what it is, retrieval-teacher student?)
ROWS = [
    ("rt-dm2", "Discrete Mamba-2 (pure)"),
    ("rt-m3-siso", "Mamba-3 SISO, d_state 16"),
    ("rt-m3-siso-half", "Mamba-3 SISO, d_state 8 (half)"),
    ("rt-m3-mimo2", "Mamba-3 MIMO rank 2, d_state 16"),
    ("rt-m3-mimo2-half", "Mamba-3 MIMO rank 2, d_state 8 (half)"),
    ("rt-gdn", "Gated DeltaNet"),
    ("rt-layer0", "layer hybrid: layer 0 attention (8 of 48 heads)"),
    ("rt-heads1", "head hybrid, top-1 ranked head (2.1%)"),
    ("rt-heads2", "head hybrid, top-2 ranked heads (4.2%)"),
    ("rt-heads5", "head hybrid, top-5 ranked heads (10.4%)"),
    ("rt-random1", "head hybrid, 1 random head (2.1%)"),
    ("rt-random2", "head hybrid, 2 random heads (4.2%)"),
    ("rt-random5", "head hybrid, 5 random heads (10.4%)"),
    ("rt-oryx", "Oryx (SSD recurrence), trained with 10% attention tokens"),
    ("s260-dm2", "Discrete Mamba-2"),
    ("s260-m3-siso", "Mamba-3 SISO, d_state 8"),
    ("s260-m3-siso-half", "Mamba-3 SISO, d_state 4 (half)"),
    ("s260-m3-mimo2", "Mamba-3 MIMO rank 2, d_state 8"),
    ("s260-m3-mimo2-half", "Mamba-3 MIMO rank 2, d_state 4 (half)"),
]


def num(x, fmt="{:.4f}"):
    return "-" if x is None else fmt.format(x)


def student(d):
    summ, bench, budget = load(d / "summary.json") or {}, load(d / "bench.json"), load(d / "budget.json") or {}
    state = None
    if bench:
        state = bench["models"][0]["prefill"][0]["state_bytes"]
    sets = (d / "sets.txt").read_text().split() if (d / "sets.txt").exists() else []
    tokens = sum(int(s.split("=")[1]) for s in sets if s.startswith("stages.") and ".tokens=" in s)
    oryx = {}
    for f in sorted(d.glob("kv6-attn*.json")):
        r = load(f)
        if r:
            oryx[f.stem.removeprefix("kv6-attn")] = r
    return {"ppl_ratio": summ.get("ppl_ratio"), "student_ppl": summ.get("student_ppl"),
            "teacher_ppl": summ.get("teacher_ppl"), "distill_seconds": summ.get("seconds"),
            "distill_tokens": tokens or None, "budget_factor": budget.get("budget_factor"), "state_bytes": state,
            "kv6": load(d / "kv6.json"), "mqar6": load(d / "mqar6.json"), "oryx_schedules": oryx,
            "exported": summ != {}}


def goals(res, teacher_kv6):
    def a(name, key="kv6"):
        r = res.get(name, {}).get(key)
        return r["accuracy"] if r else None

    def ppl(name):
        return res.get(name, {}).get("ppl_ratio")

    out = []
    best = max((a(n) or 0, n) for n in ("rt-heads1", "rt-heads2"))
    pure = a("rt-dm2")
    out.append({"goal": "head hybrid keeping <= 5% of heads recovers >= 95% of the teacher's kv-retrieval accuracy, "
                        "the pure student does not",
                "measured": f"best ranked <=5%: {best[1]} {best[0]:.3f} vs teacher {teacher_kv6:.3f}; "
                            f"pure {num(pure, '{:.3f}')}",
                "met": best[0] >= 0.95 * teacher_kv6 and (pure or 0) < 0.95 * teacher_kv6})
    pairs = [(f"rt-heads{k}", f"rt-random{k}") for k in (1, 2, 5)]
    out.append({"goal": "ranked heads beat random heads",
                "measured": "; ".join(f"{r}: {num(a(r), '{:.3f}')} vs {c}: {num(a(c), '{:.3f}')}" for r, c in pairs),
                "met": all((a(r) or 0) > (a(c) or 0) for r, c in pairs)})
    for t in ("rt", "s260"):
        d2 = ppl(f"{t}-dm2")
        halves = {n: ppl(f"{t}-m3-{n}-half") for n in ("siso", "mimo2")}
        ok = d2 is not None and any(h is not None and h <= d2 * 1.01 for h in halves.values())
        out.append({"goal": f"Mamba-3 at half state matches Mamba-2's perplexity within 1% ({t})",
                    "measured": f"ppl ratio Discrete Mamba-2 {num(d2, '{:.3f}')}; half-state Mamba-3 "
                                + ", ".join(f"{k} {num(v, '{:.3f}')}" for k, v in halves.items()), "met": ok})
    sched = res.get("rt-oryx", {}).get("oryx_schedules", {})
    under = [(r["accuracy"], r["attention_fraction"], k) for k, r in sched.items() if r["attention_fraction"] < 0.10]
    best_o = max(under) if under else None
    out.append({"goal": "Oryx with < 10% of tokens in attention mode within 5% of the teacher's retrieval accuracy",
                "measured": (f"best schedule under 10%: {best_o[0]:.3f} at {best_o[1]:.3f} attention tokens "
                             f"(--attention-before-answer {best_o[2]}) vs teacher {teacher_kv6:.3f}") if best_o else "-",
                "met": bool(best_o) and best_o[0] >= teacher_kv6 - 0.05})
    return out


def plot(res, tkv6, tstate, png):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(8, 5))
    for n, r in res.items():
        if n.startswith("rt-") and r["kv6"] and r["state_bytes"]:
            ax.errorbar(r["state_bytes"], r["kv6"]["accuracy"], fmt="o",
                        yerr=[[r["kv6"]["accuracy"] - r["kv6"]["ci95"][0]], [r["kv6"]["ci95"][1] - r["kv6"]["accuracy"]]])
            ax.annotate(n.removeprefix("rt-"), (r["state_bytes"], r["kv6"]["accuracy"]), fontsize=8,
                        xytext=(4, 4), textcoords="offset points")
    if tstate:
        ax.scatter([tstate], [tkv6], marker="*", s=150, color="k", label="teacher (full KV cache)")
        ax.legend(loc="lower right")
    ax.set_xscale("log")
    ax.set_xlabel("state bytes per sequence after 256 tokens")
    ax.set_ylabel("kv-retrieval accuracy, 6 pairs (95% CI)")
    ax.set_title("Students of the retrieval teacher")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    return True


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("students", type=Path)
    ap.add_argument("--teacher", type=Path, required=True)
    ap.add_argument("--md", type=Path)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--png", type=Path)
    a = ap.parse_args()
    tgz = a.students / "students.tgz"
    if tgz.exists():
        with tarfile.open(tgz) as tar:
            tar.extractall(a.students, filter="data")
    res = {n: student(a.students / n) for n, _ in ROWS if (a.students / n).is_dir()}
    if not res:
        raise SystemExit(f"{a.students}: no student folders")
    tprobes, tsumm = load(a.teacher / "probes.json") or {}, load(a.teacher / "summary.json") or {}
    tkv6 = tprobes["kv6"]["accuracy"]
    tbench = load(a.students / "teacher-bench.json")
    tstate = tbench["models"][0]["prefill"][0]["state_bytes"] if tbench else None
    gpu = (a.students / "gpu.txt").read_text().strip() if (a.students / "gpu.txt").exists() else "unknown"
    L = [f"# Issue 10 students ({gpu}; probes and state bytes on the CPU engine)", "",
         "Distilled at once on one GPU by `bench/gpu/retrieval_students.sh run` (equal token budgets within each",
         "comparison); probes `subq eval --probe kv-retrieval --pairs 6 --n 200` and `--probe mqar --pairs 6",
         "--queries 6 --n 200` (seed 0, 95% Wilson CI); recovery = student / teacher kv-retrieval accuracy; state",
         "bytes per sequence after a 256-token prompt (`subq bench --prompt-lengths 256`; attention heads hold",
         "their KV cache, which grows with the context).", "",
         f"Retrieval teacher: held-out ppl {tsumm.get('held_out_ppl', float('nan')):.3f}, kv-retrieval 6 pairs "
         f"{acc(tprobes.get('kv6'))}, MQAR 6x6 {acc(tprobes.get('mqar6'))}, state bytes {tstate}.", "",
         "| student | what | state bytes | ppl ratio | kv p6 | recovery | MQAR 6x6 | distill tokens |",
         "|---|---|---|---|---|---|---|---|"]
    for n, what in ROWS:
        r = res.get(n)
        if r is None or not n.startswith("rt-"):
            continue
        rec = r["kv6"]["accuracy"] / tkv6 if r["kv6"] and tkv6 > 0 else None  # a teacher at 0 has nothing to recover
        L.append(f"| {n} | {what} | {num(r['state_bytes'], '{}')} | {num(r['ppl_ratio'])} | {acc(r['kv6'])} | "
                 f"{num(rec, '{:.3f}')} | {acc(r['mqar6'])} | {num(r['distill_tokens'], '{}')} |")
    L += ["", "stories260K teacher (perplexity only: it has no retrieval skill to keep):", "",
          "| student | what | state bytes | ppl ratio | distill tokens |", "|---|---|---|---|---|"]
    for n, what in ROWS:
        r = res.get(n)
        if r is None or not n.startswith("s260-"):
            continue
        L.append(f"| {n} | {what} | {num(r['state_bytes'], '{}')} | {num(r['ppl_ratio'])} | "
                 f"{num(r['distill_tokens'], '{}')} |")
    sched = res.get("rt-oryx", {}).get("oryx_schedules", {})
    if sched:
        L += ["", "Oryx mode schedules (`subq eval --attention-before-answer N`: attention mode for the N tokens",
              "before each answer and on the answer, recurrence elsewhere):", "",
              "| N | attention tokens | kv p6 |", "|---|---|---|"]
        for k, r in sorted(sched.items(), key=lambda kv: int(kv[0])):
            L.append(f"| {k} | {r['attention_fraction']:.3f} | {acc(r)} |")
    g = goals(res, tkv6)
    L += ["", "| goal | measured | met |", "|---|---|---|"]
    L += [f"| {x['goal']} | {x['measured']} | {'yes' if x['met'] else 'NO'} |" for x in g]
    md = a.md or a.students / "retrieval-students.md"
    md.write_text("\n".join(L) + "\n")
    plot(res, tkv6, tstate, a.png or md.with_suffix(".png"))
    (a.json or a.students / "retrieval-students.json").write_text(
        json.dumps(portable({"gpu": gpu, "teacher": {"summary": tsumm, "probes": tprobes, "state_bytes": tstate},
                             "students": res, "goals": g}), indent=1) + "\n")
    print("\n".join(L))


if __name__ == "__main__":
    main()
