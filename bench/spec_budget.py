#!/usr/bin/env python3
"""The two benches of issue 9 for teacher + student (and other) model pairs, through the CLI:

1. Speculative decoding (`subq serve --draft-model`): for each (target, draft) pair, the same greedy
   completions are requested one at a time from a server without and with the draft. Reported: whether the
   texts are identical (they must be), the acceptance rate (accepted / proposed draft tokens, from the
   server's /metrics), and the wall-time speed-up (plain / speculative).
2. Sample budget (`subq sample --time-budget`): for each model, how many complete samples of one prompt it
   produces within the same wall-clock budget (N samples decoded as one batch).

Times are wall-clock on whatever machine runs this: on a loaded machine they are noisy (the JSON records
the load average); acceptance rates and sample counts are the figures to compare.

Usage: bench/spec_budget.py [--teacher PATH] [--student PATH]... [--draft PATH]... [--prompts 12]
                            [--max-tokens 64] [--spec-k 4] [--budget 1,2,4] [--samples 256] [--threads 1]
                            [--subq build/subq] [--out bench/results/spec_budget]
Pairs: the teacher drafted by itself (acceptance must be 1), by each --draft and each --student, and each
student drafted by the teacher.
"""
import argparse
import http.client
import json
import os
import pathlib
import re
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
DATA = pathlib.Path(os.environ.get("SUBQ_DATA", ROOT.parent / "shared" / "data"))


def prompts_from_text(n):
    """The first words of n TinyStories stories (the end of the sample file)."""
    stories = (DATA / "text" / "tinystories-sample.txt").read_text(encoding="utf-8").split("<|endoftext|>")
    stories = [s.strip() for s in stories if len(s.split()) > 12]
    return [" ".join(s.split()[:8]) for s in stories[-n:]]


class Server:
    def __init__(self, subq, model, draft, spec_k, threads):
        cmd = [subq, "serve", "--model", model, "--port", "0", "--max-batch", "4", "--threads", str(threads),
               "--cache-bytes", "0"]
        if draft:
            cmd += ["--draft-model", draft, "--spec-k", str(spec_k)]
        self.proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
        line = self.proc.stderr.readline()
        m = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        if not m:
            self.proc.kill()
            raise RuntimeError(f"server did not start: {line}{self.proc.stderr.read()}")
        self.port = int(m.group(1))

    def request(self, method, path, body=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
        conn.request(method, path, json.dumps(body) if body else None, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        data = resp.read().decode()
        conn.close()
        if resp.status != 200:
            raise RuntimeError(f"{path}: HTTP {resp.status}: {data}")
        return data

    def complete(self, prompt, max_tokens):
        j = json.loads(self.request("POST", "/v1/completions",
                                    {"prompt": prompt, "max_tokens": max_tokens, "temperature": 0}))
        return j["choices"][0]["text"], j["usage"]["completion_tokens"]

    def spec_counters(self):
        """(proposed, accepted) draft tokens. The scheduler counts a round just after emitting its tokens, so a
        client can see its response first: wait until two reads 0.2 s apart agree."""
        def read():
            text = self.request("GET", "/metrics")
            get = lambda n: float(re.search(rf"^subq_{n} (\S+)$", text, re.M).group(1))
            return get("spec_proposed_tokens_total"), get("spec_accepted_tokens_total")
        last = read()
        while True:
            time.sleep(0.2)
            now = read()
            if now == last:
                return now
            last = now

    def close(self):
        self.proc.terminate()
        self.proc.wait(timeout=60)


def run_greedy(a, target, draft, prompts):
    srv = Server(a.subq, target, draft, a.spec_k, a.threads)
    try:
        srv.complete(prompts[0], 4)  # warm-up
        p0, acc0 = srv.spec_counters()
        texts, tokens, t0 = [], 0, time.monotonic()
        for p in prompts:
            text, n = srv.complete(p, a.max_tokens)
            texts.append(text)
            tokens += n
        wall = time.monotonic() - t0
        p1, acc1 = srv.spec_counters()
        proposed, accepted = p1 - p0, acc1 - acc0
    finally:
        srv.close()
    return {"texts": texts, "tokens": tokens, "wall_s": wall, "proposed": proposed, "accepted": accepted}


def bench_pair(a, target, draft, prompts):
    plain = run_greedy(a, target, None, prompts)
    spec = run_greedy(a, target, draft, prompts)
    return {"target": name_of(target), "draft": name_of(draft), "prompts": len(prompts),
            "generated_tokens": spec["tokens"], "identical_to_plain": spec["texts"] == plain["texts"],
            "proposed": int(spec["proposed"]), "accepted": int(spec["accepted"]),
            "acceptance_rate": round(spec["accepted"] / spec["proposed"], 4) if spec["proposed"] else None,
            "plain_wall_s": round(plain["wall_s"], 3), "spec_wall_s": round(spec["wall_s"], 3),
            "speedup": round(plain["wall_s"] / spec["wall_s"], 3) if spec["wall_s"] > 0 else None}


def bench_budget(a, model, prompt, budget):
    cmd = [a.subq, "sample", "--model", model, "--prompt", prompt, "--n", str(a.samples), "--time-budget",
           str(budget), "--max-tokens", str(a.max_tokens), "--threads", str(a.threads), "--seed", "1"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=budget * 20 + 120)
    m = re.search(r"(\d+) of (\d+) samples complete in ([\d.]+)s \((\d+) tokens", p.stderr)
    if p.returncode != 0 or not m:
        raise RuntimeError(f"{' '.join(cmd)} failed: {p.stderr}")
    return {"model": name_of(model), "samples": a.samples, "budget_s": budget, "max_tokens": a.max_tokens,
            "complete": int(m.group(1)), "wall_s": float(m.group(3)), "tokens": int(m.group(4))}


def name_of(path):
    p = pathlib.Path(path)
    return f"{p.parent.name}/{p.name}" if p.is_file() else p.name


def markdown(r):
    out = [f"# Speculative decoding and sample budget ({r['machine']})", "",
           f"Greedy completions, {r['max_tokens']} tokens each, one request at a time, --spec-k {r['spec_k']}, "
           f"{r['threads']} thread(s). Times measured under load average {r['loadavg']}: compare acceptance "
           "rates and counts; the speed-ups are indicative only.", "",
           f"Teacher {r['teacher']}; students {', '.join(r['students']) or '(none)'}; drafts {', '.join(r['drafts'])}. "
           f"{r['note']}", "",
           "| target | draft | identical | acceptance | proposed | accepted | plain s | spec s | speed-up |",
           "|---|---|---|---|---|---|---|---|---|"]
    for s in r["speculative"]:
        out.append(f"| {s['target']} | {s['draft']} | {s['identical_to_plain']} | {s['acceptance_rate']} | "
                   f"{s['proposed']} | {s['accepted']} | {s['plain_wall_s']} | {s['spec_wall_s']} | {s['speedup']} |")
    out += ["", f"Sample budget: `subq sample --n {r['samples']} --time-budget B --max-tokens {r['max_tokens']}`, "
            f"prompt \"{r['budget_prompt']}\" (the samples decode as one batch, so they finish together unless "
            "EOS ends some early).", "",
            "| model | budget s | complete samples | of | tokens | wall s |", "|---|---|---|---|---|---|"]
    for b in r["budget"]:
        out.append(f"| {b['model']} | {b['budget_s']} | {b['complete']} | {b['samples']} | {b['tokens']} | "
                   f"{b['wall_s']} |")
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--teacher", default=str(DATA / "stories260K" / "stories260K.bin"))
    ap.add_argument("--student", action="append", default=[], help="a distilled student (HF folder)")
    ap.add_argument("--draft", action="append", default=None, help="other draft models (default: llama2xs)")
    ap.add_argument("--prompts", type=int, default=12)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--spec-k", type=int, default=4)
    ap.add_argument("--budget", default="1,2,4", help="comma-separated time budgets in seconds")
    ap.add_argument("--samples", type=int, default=256)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--subq", default=str(ROOT / "build" / "subq"))
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "spec_budget"))
    ap.add_argument("--note", default="", help="a line for the report (e.g. where the student came from)")
    a = ap.parse_args()
    drafts = a.draft if a.draft is not None else [str(DATA / "llama2xs" / "model.bin")]
    prompts = prompts_from_text(a.prompts)
    pairs = [(a.teacher, a.teacher)] + [(a.teacher, d) for d in drafts + a.student]
    pairs += [(s, a.teacher) for s in a.student]
    r = {"machine": os.uname().nodename, "loadavg": os.getloadavg()[0], "cpus": os.cpu_count(),
         "threads": a.threads, "max_tokens": a.max_tokens, "spec_k": a.spec_k, "teacher": name_of(a.teacher),
         "students": [name_of(x) for x in a.student], "drafts": [name_of(x) for x in drafts], "note": a.note, "speculative": [], "budget": []}
    for target, draft in pairs:
        print(f"speculative: {name_of(target)} drafted by {name_of(draft)}", file=sys.stderr)
        r["speculative"].append(bench_pair(a, target, draft, prompts))
    r.update({"samples": a.samples, "budget_prompt": prompts[0]})
    for budget in [float(b) for b in a.budget.split(",")]:
        for model in [a.teacher] + a.student:
            print(f"budget {budget} s: {name_of(model)}", file=sys.stderr)
            r["budget"].append(bench_budget(a, model, prompts[0], budget))
    r["loadavg_end"] = os.getloadavg()[0]
    out = pathlib.Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(r, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(r))
    print(markdown(r))
    ok = all(s["identical_to_plain"] for s in r["speculative"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
