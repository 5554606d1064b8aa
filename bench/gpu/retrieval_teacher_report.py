#!/usr/bin/env python3
"""Table of the retrieval teachers bench/gpu/retrieval_teacher.sh trained: shape, tokens, time, held-out
perplexity, probe accuracies (95% Wilson CI) and the top heads of the kv-retrieval ranking.
Usage: retrieval_teacher_report.py OUT [--md FILE] [--json FILE]  (defaults OUT/teachers.{md,json});
OUT holds the run's NAME.tgz (unpacked here) or NAME/ folders."""
import argparse
import json
import re
import tarfile
from pathlib import Path


# Paths the runs recorded, as they read on any machine: the staged folder as $DEV, the run folders as $TMPDIR.
PORTABLE = [(re.compile(r"/\S*?/\.dev-[A-Za-z0-9_-]+"), "$DEV"), (re.compile(r"^(/tmp|/var/tmp)/"), "$TMPDIR/")]


def portable(x):
    """x with every recorded absolute path rewritten by PORTABLE (JSON values, recursively)."""
    if isinstance(x, dict):
        return {k: portable(v) for k, v in x.items()}
    if isinstance(x, list):
        return [portable(v) for v in x]
    if isinstance(x, str):
        for r, v in PORTABLE:
            x = r.sub(v, x)
    return x


def load(p):
    try:
        return json.loads(Path(p).read_text())
    except (OSError, ValueError):
        return None


def acc(r):
    if not r:
        return "-"
    lo, hi = r["ci95"]
    return f"{r['accuracy']:.3f} [{lo:.3f}, {hi:.3f}]"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--md", type=Path)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    for t in sorted(a.out.glob("*.tgz")):
        with tarfile.open(t) as tar:
            tar.extractall(a.out, filter="data")
    rows = []
    for v in sorted(a.out.glob("*/*.variant.json")):
        var = load(v)
        d = a.out / var["name"]
        summ, probes, heads = load(d / "summary.json"), load(d / "probes.json") or {}, load(d / "heads.json")
        cfg = load(d / "config.json") or {}
        rows.append({**var, "summary": summ, "probes": probes,
                     "heads_top": (heads or {}).get("heads", [])[:5] if heads else None,
                     "n_heads_total": cfg.get("num_hidden_layers", 0) * cfg.get("num_attention_heads", 0)})
    if not rows:
        raise SystemExit(f"{a.out}: no */*.variant.json (did the run train anything?)")
    gpu = (a.out / "gpu.txt").read_text().strip() if (a.out / "gpu.txt").exists() else "unknown"
    lines = [f"# Retrieval teachers on the GPU ({gpu})", "",
             "`bench/gpu/retrieval_teacher.sh run` (shapes trained at once on one GPU, tokens fitted to the same",
             "wall time); probes: `subq eval --probe ... --n 200` (seed 0), heads: `subq heads --probe kv-retrieval",
             "--pairs 6 --n 100`.", "",
             "| shape | params | heads | tokens | train s | held-out ppl | kv p2 | kv p4 | kv p6 | MQAR 6x6 | top heads |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        s, p = r["summary"] or {}, r["probes"]
        top = ", ".join(f"({h['layer']},{h['head']})" for h in (r["heads_top"] or [])) or "-"
        lines.append(f"| {r['name']} | {s.get('params', '-')} | {r['n_heads_total']} | {r['tokens']} | "
                     f"{s.get('train_seconds', 0):.0f} | {s.get('held_out_ppl', float('nan')):.3f} | "
                     f"{acc(p.get('kv2'))} | {acc(p.get('kv4'))} | {acc(p.get('kv6'))} | {acc(p.get('mqar6'))} | {top} |")
    md = a.md or a.out / "teachers.md"
    md.write_text("\n".join(lines) + "\n")
    (a.json or a.out / "teachers.json").write_text(json.dumps(portable({"gpu": gpu, "teachers": rows}), indent=1) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
