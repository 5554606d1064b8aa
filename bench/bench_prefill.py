"""Runs bench_prefill (or reads its JSON) and plots prefill tokens/s against length, with the
token-by-token stepping rate as a dashed line per model.

    python3 bench/bench_prefill.py [--build build] [--json results.json] [--png prefill.png] [-- extra args]
"""
import argparse
import json
import pathlib
import subprocess
import sys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build", help="build folder holding bench_prefill")
    ap.add_argument("--json", default="bench_prefill.json", help="results file (reused if --no-run)")
    ap.add_argument("--png", default="bench_prefill.png")
    ap.add_argument("--no-run", action="store_true", help="only plot an existing JSON")
    ap.add_argument("extra", nargs="*", help="arguments passed to bench_prefill")
    a = ap.parse_args()
    if not a.no_run:
        exe = pathlib.Path(a.build) / "bench_prefill"
        subprocess.run([str(exe), "--json", a.json, *a.extra], check=True)
    res = json.loads(pathlib.Path(a.json).read_text())

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for m in res["models"]:
        label = f'{m["model"]} ({m["layers_run"]}/{m["layers_full_model"]} layers)'
        xs = [p["tokens"] for p in m["prefill"]]
        ys = [p["tokens_per_s"] for p in m["prefill"]]
        line, = ax.plot(xs, ys, marker="o", label=f"{label} prefill")
        if "step" in m:
            ax.axhline(m["step"]["tokens_per_s"], ls="--", color=line.get_color(), label=f"{label} step")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("prompt tokens")
    ax.set_ylabel("tokens / s")
    ax.set_title("subq CPU prefill vs decode (random ~100M models)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(a.png, dpi=120)
    print(f"wrote {a.png}", file=sys.stderr)


if __name__ == "__main__":
    main()
