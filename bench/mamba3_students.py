"""Collects bench/mamba3_students.sh runs into bench/results/mamba3-students.{json,md}."""
import json
import pathlib
import sys

runs, s2, s3 = pathlib.Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
stem = sys.argv[4] if len(sys.argv) > 4 else "mamba3-students"
root = pathlib.Path(__file__).resolve().parent.parent
DESC = {
    "teacher": "Llama teacher (stories260K, attention)",
    "dm2": "Discrete Mamba-2 (recipe default: N 8, conv 4, attention init)",
    "m3-siso": "Mamba-3 SISO (N 8, attention init)",
    "m3-mimo2": "Mamba-3 MIMO R=2 (N 8, attention init)",
    "m3-siso-half": "Mamba-3 SISO (N 4, random init)",
    "m3-mimo2-half": "Mamba-3 MIMO R=2 (N 4, random init)",
}
rows = []
for name in DESC:
    e = runs / f"eval-{name}"
    if not (e / "ppl.json").exists():
        continue
    ppl = json.loads((e / "ppl.json").read_text())
    bench = json.loads((e / "bench.json").read_text())
    row = {"name": name, "model": DESC[name], "ppl": ppl.get("ppl", ppl.get("perplexity")),
           "ppl_tokens": ppl.get("tokens"),
           "state_bytes_per_seq": bench["models"][0]["prefill"][0]["state_bytes"]}
    for p in ("parity", "modular"):
        j = json.loads((e / f"{p}.json").read_text())
        row[p] = {"accuracy": j["accuracy"], "ci95": j["ci95"], "answer_nll": j["answer_nll"], "n": j["n"]}
    summ = runs / name / "summary.json"
    if summ.exists():
        s = json.loads(summ.read_text())
        row["distill_seconds"] = s["seconds"]
        row["distill_ppl_ratio"] = s["ppl_ratio"]
    rows.append(row)
teacher = next((r for r in rows if r["name"] == "teacher"), None)
dm2 = next((r for r in rows if r["name"] == "dm2"), None)
for r in rows:
    r["ppl_ratio_vs_teacher"] = r["ppl"] / teacher["ppl"] if teacher else None
    r["ppl_ratio_vs_dm2"] = r["ppl"] / dm2["ppl"] if dm2 else None
    r["state_vs_dm2"] = (r["state_bytes_per_seq"] / dm2["state_bytes_per_seq"]
                         if dm2 and r["state_bytes_per_seq"] else None)
out = {"budget_tokens": {"hidden_state": s2, "end_to_end": s3, "matrix_orientation": 0},
       "command": f"bench/mamba3_students.sh {runs} {s2} {s3}", "machine": "shared 2-core CPU (load ~10-14)",
       "rows": rows}
res = root / "bench" / "results"
(res / f"{stem}.json").write_text(json.dumps(out, indent=1) + "\n")
f = lambda x, d=3: "-" if x is None else f"{x:.{d}f}"
lines = [f"# Mamba-3 students vs Discrete Mamba-2 on Stories260K (short budgets: stage 2 {s2}, stage 3 {s3} tokens)",
         "", f"`{out['command']}`; perplexity: `subq eval --text held_out.txt --window 256 --max-tokens 16384` "
         "on the distill held-out split (tail 5% of tinystories-sample.txt documents); probes: `subq eval --probe "
         "parity|modular --n 100`; state bytes: `subq bench` (f32 state per sequence, 5 layers).", "",
         "The teacher's state is its KV cache at the bench's 20-token context (it grows with the context).", "",
         "| model | state bytes/seq | vs DM2 | ppl | ppl / teacher | ppl / DM2 | parity acc [95% CI] (answer NLL) "
         "| modular acc [95% CI] (answer NLL) | distill s |",
         "|---|---|---|---|---|---|---|---|---|"]
for r in rows:
    ci = lambda p: f"{r[p]['accuracy']:.2f} [{r[p]['ci95'][0]:.2f}, {r[p]['ci95'][1]:.2f}] ({r[p]['answer_nll']:.2f})"
    lines.append(f"| {r['model']} | {r['state_bytes_per_seq']} | {f(r['state_vs_dm2'], 2)} | {f(r['ppl'])} | "
                 f"{f(r['ppl_ratio_vs_teacher'])} | {f(r['ppl_ratio_vs_dm2'])} | {ci('parity')} | {ci('modular')} | "
                 f"{f(r.get('distill_seconds'), 0)} |")
(res / f"{stem}.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
