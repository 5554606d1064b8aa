#!/usr/bin/env python3
"""subq's charts, drawn with matplotlib from the files the tools write. `subq` runs this script (built into
the binary) for its --png options and for the PNGs of `subq distill`; it can also be run by hand:

  plot.py heatmap --npy M.npy [--caption C ...] [--title T] [--separate-scales] --out P.png
      M is [L, L] or [N, L, L] (N panels, e.g. teacher/student mixing matrices, one caption each)
  plot.py loss --metrics RUN/metrics.jsonl --stage S [--title T] [--skip-empty] --out P.png
      training loss of stage S against tokens seen (log y), from `subq distill`'s metrics
  plot.py bench --json bench.json --out P.png
      `subq bench`: decode tok/s vs context (batch 1) and aggregate tok/s vs batch, one line per model

Exit status: 0 on success, 2 for bad input (message on stderr), 3 when matplotlib or numpy is missing."""
import argparse
import json
import math
import os
import sys


def _fail(msg, code=2):
    print(f"plot: {msg}", file=sys.stderr)
    sys.exit(code)


try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator
    import numpy as np
except ImportError as e:
    _fail(f"{e.name or e} is not installed for {sys.executable} (pip install matplotlib numpy)", 3)


def heatmap(a):
    try:
        m = np.load(a.npy)
    except (OSError, ValueError) as e:
        _fail(f"{a.npy}: cannot read as .npy: {e}")
    while m.ndim > 3 and m.shape[0] == 1:
        m = m[0]
    if m.ndim == 2:
        m = m[None]
    if m.ndim != 3 or m.size == 0:
        _fail(f"{a.npy}: expected a [L, L] or [N, L, L] array, got shape {list(m.shape)}")
    if a.caption and len(a.caption) != m.shape[0]:
        _fail(f"{len(a.caption)} captions for {m.shape[0]} panels")
    finite = m[np.isfinite(m)]
    if finite.size == 0:
        _fail(f"{a.npy}: no finite value")
    n = m.shape[0]
    cols = min(n, 4)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols + 0.8, 3.4 * rows + 0.6), squeeze=False)
    shared = None if a.separate_scales else (float(finite.min()), float(finite.max()))
    cmap = plt.get_cmap("viridis").copy()
    cmap.set_bad("0.6")  # non-finite cells grey
    for k, ax in enumerate(axes.flat):
        if k >= n:
            ax.axis("off")
            continue
        vmin, vmax = shared or (np.nanmin(np.where(np.isfinite(m[k]), m[k], np.nan)),
                                np.nanmax(np.where(np.isfinite(m[k]), m[k], np.nan)))
        im = ax.imshow(np.ma.masked_invalid(m[k]), cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("source position j")
        if k % cols == 0:
            ax.set_ylabel("target position i")
        if a.caption:
            ax.set_title(a.caption[k], fontsize=10)
        if a.separate_scales:
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    if not a.separate_scales:
        fig.colorbar(im, ax=axes.ravel().tolist(), fraction=0.03, pad=0.02)
    if a.title:
        fig.suptitle(a.title)
    save(fig, a.out)


def loss(a):
    tokens, values = [], []
    try:
        with open(a.metrics, encoding="utf-8") as f:
            for line in f:
                try:
                    j = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut by a crash
                if isinstance(j, dict) and j.get("stage") == a.stage and "loss" in j and "tokens" in j:
                    tokens.append(j["tokens"])
                    values.append(j["loss"])
    except OSError as e:
        _fail(f"{a.metrics}: {e.strerror}")
    ok = [(t, v) for t, v in zip(tokens, values) if v is not None and math.isfinite(v) and v > 0]
    if not ok:
        if a.skip_empty:
            return  # a stage the recipe skipped
        _fail(f"{a.metrics}: no finite positive loss for stage {a.stage}")
    fig, ax = plt.subplots(figsize=(8, 5))
    ax.plot([t for t, _ in ok], [v for _, v in ok], marker="o" if len(ok) <= 20 else None, label="loss")
    ax.set_yscale("log")
    ax.set_xlabel("tokens")
    ax.set_ylabel("loss")
    ax.grid(True, which="both", alpha=0.3)
    ax.set_title(a.title or f"stage {a.stage} loss")
    save(fig, a.out)


def _label(model):
    name = os.path.basename(model.rstrip("/"))
    return os.path.basename(os.path.dirname(model.rstrip("/"))) if name in ("hf", "") else name


def bench(a):
    try:
        with open(a.json, encoding="utf-8") as f:
            j = json.load(f)
        models = j["models"]
        batch_context = j["options"]["batch_context"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        _fail(f"{a.json}: not a subq bench JSON ({e})")
    fig, (ctx, bat) = plt.subplots(1, 2, figsize=(16, 5))
    for m in models:
        x = [c["length"] for c in m["prefill"]]
        y = [c.get("decode_tok_s", math.nan) for c in m["prefill"]]  # skipped cells break the line
        ctx.plot(x, y, marker="o", label=_label(m["model"]))
        x = [c["batch"] for c in m["batch"]]
        y = [c.get("aggregate_tok_s", math.nan) for c in m["batch"]]
        bat.plot(x, y, marker="o", label=_label(m["model"]))
    for ax, title, xl, yl in ((ctx, "decode tok/s vs context (batch 1)", "context length (tokens)", "decode tok/s"),
                              (bat, f"aggregate decode tok/s vs batch (context {batch_context})", "batch (sequences)",
                               "aggregate tok/s")):
        ax.set_xscale("log")
        ax.set_ylim(bottom=0)
        ax.set_title(title)
        ax.set_xlabel(xl)
        ax.set_ylabel(yl)
        ax.grid(True, which="both", alpha=0.3)
        if models:
            ax.legend()
    save(fig, a.out)


def save(fig, out):
    try:
        fig.savefig(out, dpi=100)
    except OSError as e:
        _fail(f"{out}: cannot write: {e.strerror}")
    plt.close(fig)


def main(argv):
    ap = argparse.ArgumentParser(prog="plot.py", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    h = sub.add_parser("heatmap")
    h.add_argument("--npy", required=True)
    h.add_argument("--caption", action="append", default=[])
    h.add_argument("--title", default="")
    h.add_argument("--separate-scales", action="store_true")
    h.add_argument("--out", required=True)
    lo = sub.add_parser("loss")
    lo.add_argument("--metrics", required=True)
    lo.add_argument("--stage", type=int, required=True)
    lo.add_argument("--title", default="")
    lo.add_argument("--skip-empty", action="store_true", help="no chart and no error when the stage has no loss")
    lo.add_argument("--out", required=True)
    b = sub.add_parser("bench")
    b.add_argument("--json", required=True)
    b.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    {"heatmap": heatmap, "loss": loss, "bench": bench}[a.cmd](a)


if __name__ == "__main__":
    main(sys.argv[1:])
