#!/usr/bin/env python3
"""Oryx on stories260K: distill recipes/stories260k-oryx.yaml (or reuse --run), then held-out-style
perplexity by `subq eval` on tinystories-sample.txt with every token in attention mode, every token
recurrent, and < 10% of each window's tokens in attention mode (a prefix span), against the teacher;
plus state bytes per sequence. Writes bench/results/oryx-stories260k.{json,md}.

    python3 bench/oryx_stories260k.py [--run runs/oryx] [--recurrence ssd|gdn] [--max-tokens 20000]
"""
import argparse
import json
import os
import pathlib
import subprocess
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
DATA = pathlib.Path(os.environ.get("SUBQ_DATA", ROOT.parent / "shared" / "data"))
SUBQ = ROOT / os.environ.get("SUBQ_BUILD", "build") / "subq"


def subq(*args):
    p = subprocess.run([str(SUBQ), *map(str, args)], capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"subq {' '.join(map(str, args))} failed:\n{p.stderr}")
    return p.stdout


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default="runs/oryx-stories260k")
    ap.add_argument("--recurrence", choices=["ssd", "gdn"], default="ssd")
    ap.add_argument("--max-tokens", type=int, default=20000)
    ap.add_argument("--window", type=int, default=256)
    ap.add_argument("--attention-prefix", type=int, default=20, help="attention tokens at the start of each window")
    ap.add_argument("--skip-distill", action="store_true")
    a = ap.parse_args()
    run = pathlib.Path(a.run)
    distill_s = None
    if not a.skip_distill:
        t0 = time.time()
        subq("distill", "--recipe", ROOT / "recipes" / "stories260k-oryx.yaml", "--out", run, "--threads", "2",
             "--set", f"student.oryx_recurrence={a.recurrence}")
        distill_s = time.time() - t0
    text = DATA / "text" / "tinystories-sample.txt"
    common = ["--text", text, "--max-tokens", a.max_tokens, "--window", a.window, "--json"]
    teacher = json.loads(subq("eval", "--model", DATA / "stories260K" / "hf", *common))
    rows = {}
    for name, spec in [("all_attention", "attention"), ("all_recurrent", "recurrent"),
                       ("attention_prefix", f"attention:0-{a.attention_prefix},recurrent:{a.attention_prefix}-")]:
        r = json.loads(subq("eval", "--model", run, *common, "--mode-schedule", spec))
        r["ratio_to_teacher"] = r["perplexity"] / teacher["perplexity"]
        rows[name] = r
    cfg = json.loads((run / "config.json").read_text())
    L, KV, H = cfg["num_hidden_layers"], cfg["num_key_value_heads"], cfg["num_attention_heads"]
    hd = cfg.get("head_dim", cfg["hidden_size"] // H)
    state = {"recurrent_state_bytes": L * H * hd * hd * 4, "kv_bytes_per_token": L * 2 * KV * hd * 4,
             "kv_bytes_at_window": L * 2 * KV * hd * 4 * a.window}
    summary = json.loads((run / "summary.json").read_text()) if (run / "summary.json").exists() else {}
    out = {"recipe": "recipes/stories260k-oryx.yaml", "recurrence": a.recurrence, "run": str(run),
           "distill_seconds": distill_s, "teacher": teacher, "student": rows, "state": state,
           "distill_summary": summary, "machine": os.uname().nodename + f" ({os.cpu_count()} cores)"}
    res = ROOT / "bench" / "results"
    (res / "oryx-stories260k.json").write_text(json.dumps(out, indent=2) + "\n")
    md = [f"# Oryx on stories260K ({a.recurrence} recurrence)", "",
          f"`python3 bench/oryx_stories260k.py --recurrence {a.recurrence}`: distil `recipes/stories260k-oryx.yaml` "
          f"(CPU), then `subq eval --window {a.window} --max-tokens {a.max_tokens}` on tinystories-sample.txt "
          "(the recipe's training text: not held out, the distill summary's held-out numbers are below).", "",
          "| mode schedule | attention tokens | perplexity | ratio to teacher |", "|---|---|---|---|",
          f"| teacher (Llama) | 100% | {teacher['perplexity']:.4f} | 1.000 |"]
    for name, r in rows.items():
        md.append(f"| `{r['mode_schedule']}` | {100 * r['attention_fraction']:.1f}% | {r['perplexity']:.4f} | "
                  f"{r['ratio_to_teacher']:.3f} |")
    md += ["", f"State per sequence: recurrent {state['recurrent_state_bytes']} bytes (all layers, constant); "
           f"KV cache {state['kv_bytes_per_token']} bytes per token ({state['kv_bytes_at_window']} at {a.window} "
           "tokens). Both are kept current whatever the mode.", ""]
    if summary:
        md.append(f"Distill summary (held-out, all-recurrent): {json.dumps(summary)}")
    (res / "oryx-stories260k.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
