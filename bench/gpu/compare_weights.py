#!/usr/bin/env python3
"""Compares two exported students tensor by tensor (bench/gpu/distill_scaling.sh).

  compare_weights.py A.safetensors B.safetensors [--json OUT.json]

Prints and writes the largest absolute difference over all tensors, the largest difference relative to
that tensor's largest |A| (the measure the CPU data-parallel test bounds by 2e-3), and whether the two
files hold the same tensor names and shapes. Exits 1 when a file is missing or the names differ.
"""
import argparse
import json
import sys

import numpy as np
from safetensors.numpy import load_file


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--json")
    args = ap.parse_args()
    try:
        a, b = load_file(args.a), load_file(args.b)
    except Exception as e:  # noqa: BLE001 - a missing or broken export is a result, not a crash
        out = {"a": args.a, "b": args.b, "error": str(e)}
        print(json.dumps(out))
        if args.json:
            json.dump(out, open(args.json, "w"), indent=1)
        sys.exit(1)
    same = sorted(a) == sorted(b) and all(a[k].shape == b[k].shape for k in a if k in b)
    worst_abs, worst_rel, worst_name = 0.0, 0.0, None
    for k in sorted(set(a) & set(b)):
        x, y = a[k].astype(np.float64), b[k].astype(np.float64)
        d = float(np.abs(x - y).max()) if x.size else 0.0
        rel = d / max(float(np.abs(x).max()), 1e-30) if x.size else 0.0
        worst_abs = max(worst_abs, d)
        if rel > worst_rel:
            worst_rel, worst_name = rel, k
    out = {"a": args.a, "b": args.b, "same_names_and_shapes": same, "tensors": len(a), "max_abs_diff": worst_abs,
           "max_rel_diff": worst_rel, "worst_tensor": worst_name}
    print(json.dumps(out))
    if args.json:
        json.dump(out, open(args.json, "w"), indent=1)
    sys.exit(0 if same else 1)


if __name__ == "__main__":
    main()
