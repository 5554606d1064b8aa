#!/usr/bin/env python3
"""Recipe quality sweep, scored the engine's way: each row runs `subq distill` (recipe + --set overrides),
then `subq eval --text OUT/held_out.txt --json` (per-document BOS, sliding window) on the teacher and on
the exported student, and appends one JSON line per row to --log. Rows that already have a line in --log
are skipped, so a sweep can be rerun after an interruption. Slow (one distillation per row); not CI.

  python3 bench/quality_sweep.py --recipe recipes/stories260k-llamba.yaml --out runs/quality \
      --log runs/quality/rows.jsonl --scale 0.25 --threads 2 \
      --row 'base:' --row 'lr2e-3:stages.end_to_end.lr=2e-3,stages.hidden_state.lr=2e-3'

A row is NAME:KEY=VALUE,KEY=VALUE (recipe --set overrides). --scale multiplies every stage's token budget
(the recipe's, or the row's override) and rounds it down to whole batches, for proxy runs.
"""
import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

import yaml

STAGES = ["matrix_orientation", "hidden_state", "end_to_end"]


def load_avg():
    return os.getloadavg()


def eval_ppl(subq, model, text):
    p = subprocess.run([subq, "eval", "--model", str(model), "--text", str(text), "--json"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"subq eval {model}: {p.stderr.strip()[-500:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def stage_budgets(recipe, sets, scale):
    """Token budget per stage after overrides, scaled and rounded to whole batches."""
    st = recipe["stages"]
    out = {}
    for k in STAGES:
        tokens = int(sets.get(f"stages.{k}.tokens", st.get(k, {}).get("tokens", 0)))
        batch = int(sets.get(f"stages.{k}.batch_tokens", st.get(k, {}).get("batch_tokens", 8192)))
        out[k] = (int(tokens * scale) // batch) * batch
    return out


def parse_row(spec):
    name, _, rest = spec.partition(":")
    sets = {}
    for kv in filter(None, rest.split(",")):
        k, _, v = kv.partition("=")
        sets[k.strip()] = v.strip()
    return name, sets


def table(logs):
    """Markdown rows of every JSONL log given: name, stage tokens, ratios, ppl, wall, load."""
    lines = ["| row | overrides | tokens (2 / 3) | eval teacher ppl | eval student ppl | eval ratio | trainer ratio "
             "| wall s | load 1-min before/after |", "|---|---|---|---|---|---|---|---|---|"]
    for path in logs:
        for l in pathlib.Path(path).read_text().splitlines():
            r = json.loads(l)
            sets = ", ".join(f"{k}={v}" for k, v in r["sets"].items() if not k.endswith(".tokens"))
            st = r["stage_tokens"]
            toks = " / ".join(f"{st[k] / 1e6:.2f}M" for k in STAGES[1:])
            if st["matrix_orientation"]:
                toks = f"{st['matrix_orientation'] / 1e6:.2f}M + " + toks
            if "error" in r:
                lines.append(f"| {r['name']} | {sets} | {toks} | error: {r['error']} | | | | | |")
                continue
            lines.append(f"| {r['name']} | {sets or '-'} | {toks} | {r['eval_teacher_ppl']:.3f} | "
                         f"{r['eval_student_ppl']:.3f} | {r['eval_ratio']:.4f} | {r['trainer_ratio']:.4f} | "
                         f"{r['wall_s']:.0f} | {r['load_before'][0]:.1f} / {r['load_after'][0]:.1f} |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", default="recipes/stories260k-llamba.yaml")
    ap.add_argument("--out", default="runs/quality")
    ap.add_argument("--log", default="")
    ap.add_argument("--subq", default="build/subq")
    ap.add_argument("--teacher", default="")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--row", action="append", default=[], help="NAME:KEY=VALUE,... (repeatable)")
    ap.add_argument("--table", nargs="*", help="print a markdown table of these JSONL logs and exit")
    args = ap.parse_args()
    if args.table is not None:
        print(table(args.table))
        return

    data = os.environ.get("SUBQ_DATA", str(pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data"))
    os.environ["SUBQ_DATA"] = data
    recipe = yaml.safe_load(pathlib.Path(args.recipe).read_text())
    teacher = args.teacher or recipe["teacher"].replace("${SUBQ_DATA}", data)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = pathlib.Path(args.log or out / "rows.jsonl")
    done = set()
    if log.exists():
        done = {json.loads(l)["name"] for l in log.read_text().splitlines() if l.strip()}

    for spec in args.row:
        name, sets = parse_row(spec)
        if name in done:
            print(f"== {name}: already in {log}, skipped", flush=True)
            continue
        budgets = stage_budgets(recipe, sets, args.scale)
        for k, t in budgets.items():
            sets[f"stages.{k}.tokens"] = str(t)
        run_dir = out / name
        cmd = [args.subq, "distill", "--recipe", args.recipe, "--out", str(run_dir), "--device", "cpu",
               "--threads", str(args.threads)]
        for k, v in sets.items():
            cmd += ["--set", f"{k}={v}"]
        print(f"== {name}: {' '.join(cmd[1:])}", flush=True)
        la0, t0 = load_avg(), time.time()
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wall, la1 = time.time() - t0, load_avg()
        (out / f"{name}.log").write_text(p.stdout + p.stderr)
        row = {"name": name, "sets": sets, "scale": args.scale, "stage_tokens": budgets,
               "total_tokens": sum(budgets.values()), "wall_s": round(wall, 1),
               "load_before": [round(x, 2) for x in la0], "load_after": [round(x, 2) for x in la1],
               "command": " ".join(cmd)}
        if p.returncode != 0:
            row["error"] = (p.stderr.strip().splitlines() or ["?"])[-1]
            print(f"   error: {row['error']}", file=sys.stderr, flush=True)
        else:
            s = json.loads((run_dir / "summary.json").read_text())
            te = eval_ppl(args.subq, teacher, run_dir / "held_out.txt")
            se = eval_ppl(args.subq, run_dir, run_dir / "held_out.txt")
            row.update({"trainer_teacher_ppl": s["teacher_ppl"], "trainer_student_ppl": s["student_ppl"],
                        "trainer_ratio": s["ppl_ratio"], "eval_teacher_ppl": te["perplexity"],
                        "eval_student_ppl": se["perplexity"], "eval_ratio": se["perplexity"] / te["perplexity"],
                        "eval_tokens": se.get("tokens"), "eval_window": se.get("window"),
                        "eval_stride": se.get("stride")})
            print(f"   eval ratio {row['eval_ratio']:.4f} (teacher {te['perplexity']:.3f}, student "
                  f"{se['perplexity']:.3f}); trainer ratio {s['ppl_ratio']:.4f}; {wall:.0f} s, load "
                  f"{la0[0]:.2f}->{la1[0]:.2f}", flush=True)
        with log.open("a") as f:
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
