"""Merges bench_cuda_decode's and hf_generate.py's JSON (one device run) into bench/results/cuda-decode-<card>.json
and a markdown table. Usage: report.py RUN_DIR OUT_PREFIX (e.g. report.py out bench/results/cuda-decode-h200)"""
import json, sys


def main():
    run, prefix = sys.argv[1], sys.argv[2]
    subq = json.load(open(f"{run}/subq_decode.json"))
    hf = json.load(open(f"{run}/hf_decode.json"))
    merged = {"device": subq["device"], "copy_bandwidth_GBps": subq["copy_bandwidth_GBps"], "ssd_step": subq["ssd_step"],
              "subq": subq["decode"], "transformers": hf}
    json.dump(merged, open(prefix + ".json", "w"), indent=2)
    rows = {(r["model"], r["context"], r["batch"]): r for r in subq["decode"] if "batch" in r}
    fit = {(r["model"], r["context"]): r["max_batch_fit"] for r in subq["decode"] if "max_batch_fit" in r}
    hfr = {(r["context"], r["batch"]): r for r in hf["decode"]}
    out = [f"# GPU decode: subq CUDA vs transformers, {subq['device']}", "",
           f"One run; copy bandwidth (read + write) {subq['copy_bandwidth_GBps']:.0f} GB/s. Random bf16 weights; "
           "subq contexts set without a prefill (KV caches / states filled with random values). transformers: "
           f"{hf['transformers']} with torch {hf['torch']}, bf16, sdpa, greedy generate, prefill subtracted.", "",
           "## SSD one-token state update (f32 state, read + written once)", "",
           "| layer shape | batch | us/call | state GB/s | of copy bandwidth |", "|---|---|---|---|---|"]
    for r in subq["ssd_step"]:
        out.append(f"| {r['shape']} | {r['batch']} | {r['us']:.2f} | {r['GBps']:.0f} | {100 * r['frac_of_copy']:.0f}% |")
    out += ["", "## Aggregate decode tokens/s (ms per step; memory floor = weights + KV/state bytes at copy bandwidth)", "",
            "| context | batch | Llamba-1B student (subq) | Llama-3.2-1B teacher (subq) | teacher (transformers) | student / subq teacher | student / transformers |",
            "|---|---|---|---|---|---|---|"]
    ctxs = sorted({k[1] for k in rows})
    batches = sorted({k[2] for k in rows})
    for c in ctxs:
        for b in batches:
            s, t, h = rows.get(("llamba-1b", c, b)), rows.get(("llama-3.2-1b", c, b)), hfr.get((c, b))
            cell = lambda r: ("OOM" if r.get("oom") else f"{r['tok_per_s']:.0f} ({r['ms_per_step']:.2f} ms; floor {r['memory_floor_ms']:.2f})") if r else "-"
            hcell = ("OOM" if h.get("oom") else "not run" if h.get("skipped") else f"{h['tok_per_s']:.0f} ({h['ms_per_step']:.1f} ms)") if h else "not run"
            r1 = f"{s['tok_per_s'] / t['tok_per_s']:.1f}x" if s and t and "tok_per_s" in t else "-"
            r2 = f"{s['tok_per_s'] / h['tok_per_s']:.1f}x" if s and h and "tok_per_s" in h else "-"
            out.append(f"| {c} | {b} | {cell(s)} | {cell(t) if t else '-'} | {hcell} | {r1} | {r2} |")
    out += ["", "Largest batch that fits (computed from free memory after the weights, 4 GiB kept for the workspace):", ""]
    for (m, c), n in sorted(fit.items()):
        out.append(f"- {m} at context {c}: ~{n:.0f} sequences")
    open(prefix + ".md", "w").write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
