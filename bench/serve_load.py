#!/usr/bin/env python3
"""Bounded loopback load test of `subq serve`: starts a server on 127.0.0.1 (a free port), sends a fixed
number of concurrent streaming completions (each with a timeout, the whole run with a time limit), and
writes p50/p99 latency, time to first token, aggregate tok/s, errors and the server's RSS to
bench/results/serve_load.json.

Usage: bench/serve_load.py [--requests 200] [--concurrency 200] [--max-tokens 32] [--time-limit 120]
                           [--model PATH] [--subq build/subq] [--device cpu|cuda] [--out bench/results/serve_load.json]
       bench/serve_load.py --sweep 1,32,256 --devices cuda,cpu [--out bench/results/serve_load-h200.json]
The sweep starts one server per device and, per concurrency level c, sends max(2c, --requests) streams with
at most c in flight; it writes requests/s, tok/s and p50/p99 latency per (device, c) to the JSON and a
markdown table beside it (same name, .md).
"""
import argparse
import concurrent.futures
import http.client
import json
import pathlib
import re
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent


def rss_mib(pid):
    m = re.search(r"VmRSS:\s+(\d+) kB", pathlib.Path(f"/proc/{pid}/status").read_text())
    return int(m.group(1)) / 1024


def one_request(port, i, max_tokens, deadline):
    t0 = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=max(1.0, deadline - t0))
    body = json.dumps({"prompt": f"Once upon a time, story number {i}", "max_tokens": max_tokens, "stream": True,
                       "temperature": 0.8, "seed": i})
    conn.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
    resp = conn.getresponse()
    if resp.status != 200:
        return {"ok": False, "error": f"HTTP {resp.status}"}
    first, chunks, done = None, 0, False
    for raw in resp:
        line = raw.decode().strip()
        if not line.startswith("data: "):
            continue
        if line == "data: [DONE]":
            done = True
            break
        if json.loads(line[6:])["choices"][0]["text"] and first is None:
            first = time.monotonic() - t0
        chunks += 1
    conn.close()
    return {"ok": done, "latency": time.monotonic() - t0, "ttft": first, "chunks": chunks,
            "error": None if done else "stream ended without [DONE]"}


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--concurrency", type=int, default=200)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--time-limit", type=float, default=120)
    ap.add_argument("--model", default=str(ROOT.parent / "shared/data/stories260K/stories260K.bin"))
    ap.add_argument("--subq", default=str(ROOT / "build/subq"))
    ap.add_argument("--max-batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "bench/results/serve_load.json"))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--sweep", default="", help="concurrency levels, e.g. 1,32,256 (one server per device)")
    ap.add_argument("--devices", default="cuda,cpu", help="with --sweep")
    ap.add_argument("--client-procs", type=int, default=1, help="with --sweep: client processes per level")
    a = ap.parse_args()
    if a.sweep:
        return sweep(a)

    srv = subprocess.Popen([a.subq, "serve", "--model", a.model, "--port", "0", "--max-batch", str(a.max_batch),
                            "--threads", str(a.threads), "--max-queue", str(a.requests), "--device", a.device],
                           stderr=subprocess.PIPE, text=True)
    try:
        m = re.search(r"http://127\.0\.0\.1:(\d+)", srv.stderr.readline())
        if not m:
            sys.exit("server did not start")
        port = int(m.group(1))
        rss0 = rss_mib(srv.pid)
        t0 = time.monotonic()
        deadline = t0 + a.time_limit
        results = []
        with concurrent.futures.ThreadPoolExecutor(a.concurrency) as ex:
            futs = [ex.submit(one_request, port, i, a.max_tokens, deadline) for i in range(a.requests)]
            for f in concurrent.futures.as_completed(futs, timeout=a.time_limit + 10):
                try:
                    results.append(f.result())
                except Exception as e:  # noqa: BLE001  (a timeout or a dropped connection is a result)
                    results.append({"ok": False, "error": repr(e)})
        wall = time.monotonic() - t0
        metrics = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        metrics.request("GET", "/metrics")
        text = metrics.getresponse().read().decode()
        generated = float(re.search(r"^subq_generated_tokens_total (\S+)$", text, re.M).group(1))
        rss1 = rss_mib(srv.pid)
    finally:
        srv.terminate()
        code = srv.wait(timeout=30)
    ok = [r for r in results if r["ok"]]
    lat = [r["latency"] for r in ok]
    ttft = [r["ttft"] for r in ok if r["ttft"] is not None]
    out = {"requests": a.requests, "concurrency": a.concurrency, "max_tokens": a.max_tokens,
           "max_batch": a.max_batch, "threads": a.threads, "model": pathlib.Path(a.model).name,
           "completed": len(ok), "errors": len(results) - len(ok) + (a.requests - len(results)),
           "error_kinds": sorted({r["error"] for r in results if not r["ok"]}),
           "wall_s": round(wall, 3), "latency_p50_s": pct(lat, 0.5), "latency_p99_s": pct(lat, 0.99),
           "ttft_p50_s": pct(ttft, 0.5), "ttft_p99_s": pct(ttft, 0.99),
           "generated_tokens": int(generated), "aggregate_tok_per_s": round(generated / wall, 1),
           "server_rss_mib_before": round(rss0, 1), "server_rss_mib_after": round(rss1, 1),
           "server_exit_code": code}
    pathlib.Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(a.out).write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))
    return 0 if out["errors"] == 0 and code == 0 else 1


def metric(port, name):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    return float(re.search(rf"^subq_{name} (\S+)$", text, re.M).group(1))


def client_part(port, ids, c, max_tokens, deadline):
    """Requests `ids`, at most c in flight (one client process of a sweep level)."""
    results = []
    with concurrent.futures.ThreadPoolExecutor(max(1, c)) as ex:
        futs = [ex.submit(one_request, port, i, max_tokens, deadline) for i in ids]
        for f in concurrent.futures.as_completed(futs, timeout=max(1.0, deadline - time.monotonic()) + 10):
            try:
                results.append(f.result())
            except Exception as e:  # noqa: BLE001
                results.append({"ok": False, "error": repr(e)})
    return results


def level(port, c, n, max_tokens, time_limit, procs=1):
    """n streaming requests, at most c in flight, from `procs` client processes (one Python process cannot
    parse more than a few hundred SSE streams' chunks per second): one row of the sweep."""
    g0, s0 = metric(port, "generated_tokens_total"), metric(port, "steps_total")
    t0 = time.monotonic()
    deadline = t0 + time_limit
    procs = max(1, min(procs, c))
    if procs == 1:
        results = client_part(port, list(range(n)), c, max_tokens, deadline)
    else:
        results = []
        with concurrent.futures.ProcessPoolExecutor(procs) as ex:
            parts = [ex.submit(client_part, port, list(range(k, n, procs)), c // procs, max_tokens, deadline)
                     for k in range(procs)]
            for f in parts:
                results += f.result()
    wall = time.monotonic() - t0
    gen = metric(port, "generated_tokens_total") - g0
    steps = metric(port, "steps_total") - s0
    ok = [r for r in results if r["ok"]]
    lat = [r["latency"] for r in ok]
    ttft = [r["ttft"] for r in ok if r["ttft"] is not None]
    return {"concurrency": c, "requests": n, "completed": len(ok), "errors": n - len(ok), "wall_s": round(wall, 3),
            "requests_per_s": round(len(ok) / wall, 2), "tok_per_s": round(gen / wall, 1),
            "generated_tokens": int(gen), "tokens_per_step": round(gen / max(steps, 1), 2),
            "latency_p50_s": pct(lat, 0.5), "latency_p99_s": pct(lat, 0.99),
            "ttft_p50_s": pct(ttft, 0.5), "ttft_p99_s": pct(ttft, 0.99),
            "error_kinds": sorted({r["error"] for r in results if not r["ok"]})}


def sweep(a):
    levels = [int(x) for x in a.sweep.split(",")]
    rows, top = [], max(levels)
    for dev in a.devices.split(","):
        srv = subprocess.Popen([a.subq, "serve", "--model", a.model, "--port", "0", "--device", dev,
                                "--max-batch", str(max(a.max_batch, top)), "--threads", str(a.threads),
                                "--max-queue", str(4 * top + a.requests), "--http-threads", str(top + 16)],
                               stderr=subprocess.PIPE, text=True)
        try:
            line = srv.stderr.readline()
            m = re.search(r"http://127\.0\.0\.1:(\d+)", line)
            if not m:
                sys.exit(f"{dev} server did not start: {line}")
            port = int(m.group(1))
            level(port, 4, 8, a.max_tokens, a.time_limit)  # warm-up (CUDA graphs of the small buckets)
            for c in levels:
                r = level(port, c, max(2 * c, a.requests), a.max_tokens, a.time_limit, a.client_procs)
                r["client_procs"] = max(1, min(a.client_procs, c))
                r["device"] = dev
                r["server_rss_mib"] = round(rss_mib(srv.pid), 1)
                rows.append(r)
                print(json.dumps(r), flush=True)
        finally:
            srv.terminate()
            code = srv.wait(timeout=30)
        for r in rows:
            if r["device"] == dev:
                r["server_exit_code"] = code
    out = {"model": pathlib.Path(a.model).name, "max_tokens": a.max_tokens, "threads": a.threads,
           "client_procs": a.client_procs, "temperature": 0.8, "rows": rows}
    pathlib.Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(a.out).write_text(json.dumps(out, indent=2) + "\n")
    md = [f"# subq serve load: {out['model']}, {a.max_tokens} tokens per streaming request, CPU server threads "
          f"{a.threads}, up to {a.client_procs} client processes", "",
          "`python3 bench/serve_load.py " + " ".join(sys.argv[1:]) + "`",
          "", "| device | concurrency | requests | errors | requests/s | tok/s | tokens/step | p50 latency s | "
          "p99 latency s | p50 TTFT s |", "|---|---|---|---|---|---|---|---|---|---|"]
    f = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    for r in rows:
        md.append(f"| {r['device']} | {r['concurrency']} | {r['requests']} | {r['errors']} | {r['requests_per_s']} | "
                  f"{r['tok_per_s']} | {r['tokens_per_step']} | {f(r['latency_p50_s'])} | {f(r['latency_p99_s'])} | "
                  f"{f(r['ttft_p50_s'])} |")
    pathlib.Path(a.out).with_suffix(".md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0 if all(r["errors"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
