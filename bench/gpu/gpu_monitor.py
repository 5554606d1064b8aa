#!/usr/bin/env python3
"""Runs a command while sampling the GPU's memory in use, and timestamps the command's output lines.

  gpu_monitor.py --json OUT.json [--log OUT.log] [--interval 0.05] [--timeout S] -- CMD [ARGS...]

Samples are GPU 0's; the peak of every GPU of the host is kept too (data-parallel runs).
The command's stdout and stderr are merged, echoed, and kept with the wall time of each line (so a
report can tell which samples fall in which stage of a run). Memory is the device's memory in use as
NVML reports it (nvidia-ml-py), minus the reading just before the command started: it includes the CUDA
context and everything PyTorch's caching allocator holds, i.e. what the process needs of the card. Without
NVML or a GPU the samples are empty and the rest still works (CPU tests). Exits with the command's code
(124 when --timeout stopped it).
"""
import argparse
import json
import subprocess
import sys
import threading
import time


def nvml_reader():
    """read() -> (used bytes of GPU 0, utilisation % of GPU 0, [used bytes of every GPU])."""
    try:
        import pynvml
        pynvml.nvmlInit()
        hs = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]

        def read():
            used = [pynvml.nvmlDeviceGetMemoryInfo(h).used for h in hs]
            return used[0], pynvml.nvmlDeviceGetUtilizationRates(hs[0]).gpu, used

        read()
        return read
    except Exception:  # noqa: BLE001 - no NVML, no GPU: no samples
        return None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", required=True)
    ap.add_argument("--log")
    ap.add_argument("--interval", type=float, default=0.05)
    ap.add_argument("--timeout", type=float, default=0)
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmd = a.cmd[1:] if a.cmd[:1] == ["--"] else a.cmd
    if not cmd:
        sys.exit("gpu_monitor.py: no command given (put it after --)")
    read = nvml_reader()
    idle_all = read()[2] if read else []
    idle = idle_all[0] if idle_all else 0
    peak_per_gpu = [0] * len(idle_all)  # every GPU of the host (data-parallel runs use several)
    samples, lines, done = [], [], threading.Event()

    def sample():
        while not done.is_set():
            used, util, used_all = read()
            samples.append([round(time.time(), 3), used - idle, util])
            for i, u in enumerate(used_all):
                peak_per_gpu[i] = max(peak_per_gpu[i], u - idle_all[i])
            done.wait(a.interval)

    t0 = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                            errors="replace")
    sampler = threading.Thread(target=sample, daemon=True) if read else None
    if sampler:
        sampler.start()
    timed_out = False
    if a.timeout > 0:
        def stop():
            nonlocal timed_out
            timed_out = True
            proc.kill()
        timer = threading.Timer(a.timeout, stop)
        timer.daemon = True
        timer.start()
    log = open(a.log, "w") if a.log else None
    for line in proc.stdout:
        now = time.time()
        text = line.rstrip("\n")
        lines.append([round(now, 3), text])
        sys.stderr.write(line)
        sys.stderr.flush()
        if log:
            log.write(f"{now - t0:9.3f} {text}\n")
            log.flush()
    rc = proc.wait()
    done.set()
    if sampler:
        sampler.join()
    rc = 124 if timed_out else rc
    peak = max((s[1] for s in samples), default=None)
    with open(a.json, "w") as f:
        json.dump({"cmd": cmd, "rc": rc, "start": round(t0, 3), "end": round(time.time(), 3),
                   "idle_used_bytes": idle, "peak_used_bytes": peak,
                   "peak_used_bytes_per_gpu": peak_per_gpu if samples else None, "interval_s": a.interval,
                   "samples": samples, "lines": lines}, f)
    sys.exit(rc)


if __name__ == "__main__":
    main()
