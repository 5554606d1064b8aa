#!/usr/bin/env python3
"""Runs and reports bench/vs_llamacpp.sh's measurement (see there): llama-bench and `subq bench`
alternately on the same files, then bench/results/vs_llamacpp.{json,md} from the raw outputs.

  vs_llamacpp.py run    --models DIR --llama-bin DIR --subq BIN --raw DIR [--bench-ops BIN] [...]
  vs_llamacpp.py report --raw DIR --gguf-py DIR --json F --md F
"""
import argparse
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import time

MODELS = ["llama-110m", "mamba2-130m", "stories260K"]


def log(msg):
    print(f"[vs_llamacpp {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def load_average():
    return [float(x) for x in open("/proc/loadavg").read().split()[:3]]


def lscpu_model():
    for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def first_line(text):
    lines = [l for l in text.strip().splitlines() if l.strip()]
    return lines[-1][:300] if lines else "no output"


def subq_file(subq, models, model, prec):
    """The file subq benchmarks for a row, or (None, reason): the HF folder for f32, else the same GGUF
    as llama.cpp or a `subq quantize` output; each candidate is probed with `subq inspect`."""
    cands = [models / model] if prec == "f32" else []
    cands += [models / f"{model}-{prec}.gguf", models / f"{model}-{prec}-subq"]
    reasons = []
    for c in cands:
        if not c.exists():
            continue
        p = subprocess.run([subq, "inspect", "--model", str(c)], capture_output=True, text=True, timeout=300)
        if p.returncode == 0:
            return c, None
        reasons.append(f"{c.name}: {first_line(p.stderr)}")
    return None, "subq cannot read this precision yet (" + "; ".join(reasons or ["no file"]) + ")"


def run_llama(a, gguf, out):
    cmd = [str(a.llama_bin / "llama-bench"), "-m", str(gguf), "-t", str(a.threads), "-p", a.prompts, "-n",
           str(a.gen), "-r", str(a.reps), "--repack", "0", "-o", "json"]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        return f"llama-bench failed ({p.returncode}): {first_line(p.stderr)}"
    out.write_text(p.stdout)
    return None


def run_subq(a, model, out):
    cmd = [a.subq, "bench", "--model", str(model), "--threads", str(a.threads), "--prompt-lengths", a.prompts,
           "--batch", "1", "--gen", str(a.gen), "--json", str(out)]
    p = subprocess.run(cmd, capture_output=True, text=True)
    return None if p.returncode == 0 else f"subq bench failed ({p.returncode}): {first_line(p.stderr)}"


def cmd_run(a):
    a.raw.mkdir(parents=True, exist_ok=True)
    meta = {"machine": {"cpu": lscpu_model(), "cores": os.cpu_count()}, "threads": a.threads, "prompts": a.prompts,
            "gen": a.gen, "rounds": a.rounds, "reps": a.reps, "subq_commit": a.commit, "rows": [],
            "load_before": load_average()}
    if a.bench_ops and pathlib.Path(a.bench_ops).exists():
        log("bench_ops: bandwidth and GEMM peak")
        p = subprocess.run([a.bench_ops, "--quick", "--threads", str(a.threads), "--json", str(a.raw / "bench_ops.json")],
                           capture_output=True, text=True)
        if p.returncode != 0:
            log(f"bench_ops failed: {first_line(p.stderr)}")
    else:
        log("no bench_ops binary: roofline fractions are left out")
    rows = []
    for model in MODELS:
        for prec in a.precisions.split(","):
            gguf = a.models / f"{model}-{prec}.gguf"
            row = {"model": model, "precision": prec, "gguf": gguf.name}
            if not gguf.exists():
                row["skipped"] = f"no {gguf.name} (conversion failed: see the script's log)"
            else:
                f, why = subq_file(a.subq, a.models, model, prec)
                row["subq_file"], row["subq_skipped"] = (f.name if f else None), why
                row["_subq_path"] = f
            if "skipped" in row or row["subq_skipped"]:
                log(f"{model} {prec}: subq skipped: {row.get('skipped') or row['subq_skipped']}")
            rows.append(row)
    for r in range(a.rounds):
        for row in rows:
            if "skipped" in row:
                continue
            tag = f"{row['model']}-{row['precision']}"
            engines = ["llama", "subq"] if r % 2 == 0 else ["subq", "llama"]
            for eng in engines:
                if eng == "subq" and row["subq_skipped"]:
                    continue
                if eng == "llama" and row["subq_skipped"] and r > 0:
                    continue  # a llama.cpp-only row: one round is its reference figure
                out = a.raw / f"{tag}-{eng}-r{r}.json"
                load = load_average()
                log(f"round {r + 1}/{a.rounds} {tag} {eng} (load {load[0]:.2f})")
                err = run_llama(a, a.models / row["gguf"], out) if eng == "llama" else run_subq(a, row["_subq_path"], out)
                row.setdefault("runs", []).append({"engine": eng, "round": r, "load": load, "file": out.name,
                                                   **({"error": err} if err else {})})
                if err:
                    log(err)
                write_meta(a.raw, meta, rows, r + 1)  # after every run: an interrupted run still reports
    log(f"wrote {a.raw / 'meta.json'}")


def write_meta(raw, meta, rows, rounds_done):
    meta["rows"] = [{k: v for k, v in row.items() if k != "_subq_path"} for row in rows]
    meta["rounds_done"], meta["load_after"] = rounds_done, load_average()
    (raw / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")


# ---------------------------------------------------------------- report

def llama_rates(path):
    out = {}
    for t in json.loads(path.read_text()):
        key = f"decode_{t['n_gen']}" if t["n_gen"] else f"prefill_{t['n_prompt']}"
        out[key] = t["avg_ts"]
        out["_build"] = t.get("build_commit")
    return out


def subq_rates(path):
    j = json.loads(path.read_text())
    m = j["models"][0]
    out = {f"prefill_{c['length']}": c["prefill_tok_s"] for c in m["prefill"] if "prefill_tok_s" in c}
    b1 = next((c for c in m["batch"] if c["batch"] == 1 and "tok_s_per_seq" in c), None)
    if b1:
        out[f"decode_{j['options']['gen']}"] = b1["tok_s_per_seq"]
    out["_state_bytes"] = b1["state_bytes_per_seq"] if b1 else 0
    return out


def gguf_costs(gguf_py, path):
    """(bytes one decode step reads, matrix parameters a prefill token multiplies by) from the GGUF:
    every tensor except the input embedding (read a row per token) unless it is also the output."""
    sys.path.insert(0, str(gguf_py))
    from gguf import GGUFReader
    ts = {t.name: t for t in GGUFReader(str(path)).tensors}
    tied = "output.weight" not in ts
    body = [t for n, t in ts.items() if n not in ("token_embd.weight", "output.weight")]
    out = ts["token_embd.weight"] if tied else ts["output.weight"]
    read = sum(int(t.n_bytes) for t in body) + int(out.n_bytes)
    body_params = sum(int(t.n_elements) for t in body if len(t.shape) >= 2 and min(t.shape) > 8)
    return read, body_params, int(out.n_elements)


def attention_flops(hf_config, L):
    """Causal attention FLOPs of an L-token prefill (QK^T and PV), 0 for attention-free models."""
    c = json.loads(hf_config.read_text())
    if c.get("model_type") != "llama":
        return 0
    hd = c.get("head_dim") or c["hidden_size"] // c["num_attention_heads"]
    return 2 * c["num_hidden_layers"] * c["num_attention_heads"] * hd * L * L


def median(xs):
    return statistics.median(xs) if xs else None


def cmd_report(a):
    meta = json.loads((a.raw / "meta.json").read_text())
    ops_path = a.raw / "bench_ops.json"
    ops = json.loads(ops_path.read_text()) if ops_path.exists() else None
    bw = ops and ops.get("read_gbs") * 1e9
    gemm = ops and max(v for k, v in ops["gemm"].items() if k.endswith("gflops")) * 1e9
    llama_build, rows_out = None, []
    for row in meta["rows"]:
        r = {k: row.get(k) for k in ("model", "precision", "gguf", "subq_file", "subq_skipped", "skipped")}
        r = {k: v.replace(f"{a.models}/", "") for k, v in r.items() if v is not None}  # no machine paths
        rows_out.append(r)
        if "skipped" in row:
            continue
        per = {"llama": {}, "subq": {}}
        for run in row.get("runs", []):
            if "error" in run:
                r.setdefault("errors", []).append(run["error"].replace(f"{a.models}/", ""))
                continue
            f = a.raw / run["file"]
            per[run["engine"]][run["round"]] = llama_rates(f) if run["engine"] == "llama" else subq_rates(f)
        llama_build = llama_build or next((v["_build"] for v in per["llama"].values()), None)
        read, body, head = gguf_costs(a.gguf_py, a.models / row["gguf"])
        phases = [f"decode_{meta['gen']}"] + [f"prefill_{p}" for p in meta["prompts"].split(",")]
        r["phases"] = {}
        for ph in phases:
            ll = [v[ph] for v in per["llama"].values() if ph in v]
            sq = [v[ph] for v in per["subq"].values() if ph in v]
            ratios = [per["subq"][k][ph] / per["llama"][k][ph] for k in per["subq"]
                      if k in per["llama"] and ph in per["subq"][k] and ph in per["llama"][k]]
            d = {"llamacpp_tok_s": median(ll), "subq_tok_s": median(sq), "ratio": median(ratios),
                 "llamacpp_rounds": ll, "subq_rounds": sq}
            if ph.startswith("decode"):
                state = next((v["_state_bytes"] for v in per["subq"].values()), 0)
                d["bytes_per_token"] = read + state
                cost, limit = read + state, bw
            else:
                L = int(ph.split("_")[1])
                d["flops_per_token"] = 2 * body + (2 * head + attention_flops(a.models / row["model"] / "config.json", L)) / L
                cost, limit = d["flops_per_token"], gemm
            if limit:
                for eng in ("llamacpp", "subq"):
                    if d[f"{eng}_tok_s"]:
                        d[f"{eng}_roofline"] = d[f"{eng}_tok_s"] * cost / limit
            r["phases"][ph] = d
    res = {"machine": meta["machine"], "threads": meta["threads"], "rounds": meta.get("rounds_done", meta["rounds"]),
           "llamacpp_reps_per_round": meta["reps"], "subq_commit": meta["subq_commit"],
           "llamacpp": {"source": "llama-cpp-python 0.3.36 sdist (vendor/llama.cpp)", "build_commit": llama_build},
           "load_average_before": meta["load_before"], "load_average_after": meta["load_after"],
           "load_average_per_run": [run["load"][0] for row in meta["rows"] for run in row.get("runs", [])],
           "bench_ops": ops, "note": a.note, "rows": rows_out}
    a.json.write_text(json.dumps(res, indent=2) + "\n")
    a.md.write_text(markdown(res))
    log(f"wrote {a.json} and {a.md}")


def fmt(v, spec=".1f"):
    return "-" if v is None else format(v, spec)


def markdown(res):
    m, ops, loads = res["machine"], res["bench_ops"], res["load_average_per_run"]
    out = [f"# subq vs llama.cpp on {m['cpu']} ({m['cores']} cores), {res['threads']} threads", ""]
    out += [res["note"], ""] if res.get("note") else []
    out += [f"subq commit {res['subq_commit']}; llama.cpp {res['llamacpp']['build_commit']} from the "
            f"{res['llamacpp']['source']}. Medians of {res['rounds']} alternating rounds (engine order flipped each "
            f"round; llama-bench {res['llamacpp_reps_per_round']} repetitions per round, warm-up first; subq bench "
            "warm-up first). Ratio: median over rounds of subq/llama.cpp measured in the same round.",
            f"Load average (1 min) before each run: min {min(loads, default=0):.2f}, max {max(loads, default=0):.2f}"
            " (other engineers build on this machine).", ""]
    if ops:
        g = ops["gemm"]
        out += [f"Machine limits (bench_ops, {ops.get('threads')} threads): read bandwidth {ops['read_gbs']:.1f} GB/s, "
                f"triad {ops['triad_gbs']:.1f} GB/s; f32 GEMM {g.get('ours_gflops', 0):.0f} GFLOP/s (ours), "
                f"{g.get('openblas_gflops', 0):.0f} (OpenBLAS), {g.get('openblas_skylakex_gflops', 0):.0f} "
                "(OpenBLAS SkylakeX). Roofline: decode = tok/s x bytes per token / read bandwidth; prefill = "
                "tok/s x GEMM FLOPs per token / best GEMM.", ""]
    else:
        out += ["No bench_ops binary in this build: roofline fractions left out.", ""]
    out += ["| model | precision | phase | llama.cpp tok/s | subq tok/s | subq/llama.cpp | llama.cpp roofline "
            "| subq roofline |", "|---|---|---|---|---|---|---|---|"]
    notes = []
    for r in res["rows"]:
        if "skipped" in r:
            notes.append(f"- {r['model']} {r['precision']}: {r['skipped']}")
            continue
        if r.get("subq_skipped"):
            notes.append(f"- {r['model']} {r['precision']}: subq skipped: {r['subq_skipped']}")
        for ph, d in r["phases"].items():
            out.append(f"| {r['model']} | {r['precision']} | {ph.replace('_', ' ')} | {fmt(d['llamacpp_tok_s'])} | "
                       f"{fmt(d['subq_tok_s'])} | {fmt(d['ratio'], '.2f')} | {fmt(d.get('llamacpp_roofline'), '.0%')} "
                       f"| {fmt(d.get('subq_roofline'), '.0%')} |")
        notes += [f"- {r['model']} {r['precision']}: {e}" for e in r.get("errors", [])]
    return "\n".join(out + ([""] + notes if notes else [])) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--models", type=pathlib.Path, required=True)
    r.add_argument("--llama-bin", type=pathlib.Path, required=True)
    r.add_argument("--subq", required=True)
    r.add_argument("--raw", type=pathlib.Path, required=True)
    r.add_argument("--bench-ops", default="")
    r.add_argument("--commit", default="unknown")
    r.add_argument("--threads", type=int, default=2)
    r.add_argument("--rounds", type=int, default=3)
    r.add_argument("--reps", type=int, default=2, help="llama-bench repetitions per round")
    r.add_argument("--prompts", default="128,512,4096")
    r.add_argument("--gen", type=int, default=128)
    r.add_argument("--precisions", default="f32,f16,q8_0,q4_0")
    p = sub.add_parser("report")
    p.add_argument("--raw", type=pathlib.Path, required=True)
    p.add_argument("--models", type=pathlib.Path, required=True)
    p.add_argument("--gguf-py", type=pathlib.Path, required=True)
    p.add_argument("--json", type=pathlib.Path, required=True)
    p.add_argument("--md", type=pathlib.Path, required=True)
    p.add_argument("--note", default="", help="a paragraph put under the markdown's title")
    a = ap.parse_args()
    cmd_run(a) if a.cmd == "run" else cmd_report(a)


if __name__ == "__main__":
    main()
