#!/usr/bin/env python3
"""MOHAWK stage ablation with `subq distill`: stage 3 only / 2+3 / 1+2+3 at equal total tokens, and
random vs attention mixer init. Prints a table and writes JSON. Slow (one full distillation per row);
not part of CI.

  python3 bench/ablate_stages.py --recipe recipes/stories260k-llamba.yaml --total-tokens 6000000 \
      --out runs/ablation [--subq build/subq] [--device cpu] [--threads 2]
"""
import argparse
import json
import pathlib
import subprocess
import sys
import time

# Fractions of the total budget per stage (SPEC 6 calibration: 1M + 2M + 9M of 12M for 1+2+3, 3M + 9M for 2+3).
SPLITS = {
    "3": (0.0, 0.0, 1.0),
    "2+3": (0.0, 0.25, 0.75),
    "1+2+3": (1 / 12, 1 / 6, 0.75),
}


def round_tokens(n, batch):
    return int(n // batch) * batch


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", default="recipes/stories260k-llamba.yaml")
    ap.add_argument("--total-tokens", type=int, default=6_000_000)
    ap.add_argument("--batch-tokens", type=int, default=8192)
    ap.add_argument("--out", default="runs/ablation")
    ap.add_argument("--subq", default="build/subq")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--inits", default="attention,random")
    ap.add_argument("--stages", default="3,2+3,1+2+3")
    args = ap.parse_args()

    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for init in args.inits.split(","):
        for name in args.stages.split(","):
            fr = SPLITS[name]
            toks = [round_tokens(f * args.total_tokens, args.batch_tokens) for f in fr]
            run_dir = out / f"{init}_stages{name.replace('+', '')}"
            sets = [f"student.init={init}"]
            for key, t in zip(["matrix_orientation", "hidden_state", "end_to_end"], toks):
                sets += [f"stages.{key}.tokens={t}", f"stages.{key}.batch_tokens={args.batch_tokens}"]
            cmd = [args.subq, "distill", "--recipe", args.recipe, "--out", str(run_dir), "--device", args.device]
            if args.threads:
                cmd += ["--threads", str(args.threads)]
            if (run_dir / "checkpoint.pt").exists():
                cmd.append("--resume")
            for s in sets:
                cmd += ["--set", s]
            t0 = time.time()
            print(f"== {init} init, stages {name}: tokens {toks}", flush=True)
            p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            if p.returncode != 0:
                print(p.stderr[-2000:], file=sys.stderr)
                rows.append({"init": init, "stages": name, "tokens": toks, "error": p.stderr.strip().splitlines()[-1]})
                continue
            s = json.loads((run_dir / "summary.json").read_text())
            rows.append({"init": init, "stages": name, "tokens": toks, "teacher_ppl": s["teacher_ppl"],
                         "student_ppl": s["student_ppl"], "ratio": s["ppl_ratio"], "seconds": time.time() - t0})
            print(f"   student ppl {s['student_ppl']:.3f} (teacher {s['teacher_ppl']:.3f}, ratio {s['ppl_ratio']:.3f})",
                  flush=True)

    print()
    print(f"{'init':<10} {'stages':<7} {'stage tokens (1/2/3)':<28} {'student ppl':>11} {'ratio':>7} {'time s':>7}")
    for r in rows:
        toks = "/".join(f"{t / 1e6:.2f}M" for t in r["tokens"])
        if "error" in r:
            print(f"{r['init']:<10} {r['stages']:<7} {toks:<28} error: {r['error']}")
        else:
            print(f"{r['init']:<10} {r['stages']:<7} {toks:<28} {r['student_ppl']:>11.3f} {r['ratio']:>7.3f} "
                  f"{r['seconds']:>7.0f}")
    (out / "ablation.json").write_text(json.dumps({"total_tokens": args.total_tokens, "recipe": args.recipe,
                                                   "rows": rows}, indent=2))
    print(f"\nwrote {out / 'ablation.json'}")


if __name__ == "__main__":
    main()
