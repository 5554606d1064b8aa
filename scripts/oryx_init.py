#!/usr/bin/env python3
"""Turns a Llama Hugging Face folder (config.json + model.safetensors) into an Oryx checkpoint for the
engine (src/mixers/oryx.h): every layer keeps the teacher's q/k/v/o and gains the recurrent extras,
initialised (not trained) as the SPEC's Mamba-2 init: a/b projections 0, dt in logU(1e-3, 0.1) over heads,
A in [1, 16] over heads, D 1, output norm 1. Until `subq distill` trains the extras, only the attention
mode reproduces the teacher.

    python3 scripts/oryx_init.py --teacher ../shared/data/stories260K/hf --out runs/oryx-init [--recurrence gdn]
"""
import argparse
import json
import math
import pathlib
import shutil

import numpy as np
from safetensors.numpy import load_file, save_file


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teacher", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--recurrence", choices=["ssd", "gdn"], default="ssd")
    ap.add_argument("--default-mode", choices=["recurrent", "attention"], default="recurrent")
    a = ap.parse_args()
    src, out = pathlib.Path(a.teacher), pathlib.Path(a.out)
    cfg = json.loads((src / "config.json").read_text())
    if cfg.get("model_type") != "llama":
        raise SystemExit(f"{src}/config.json: model_type {cfg.get('model_type')!r} is not llama")
    t = load_file(str(src / "model.safetensors"))
    d, H = cfg["hidden_size"], cfg["num_attention_heads"]
    hd = cfg.get("head_dim", d // H)
    dt = np.exp(np.linspace(math.log(1e-3), math.log(0.1), H)).astype(np.float32)
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}.self_attn."
        t[p + "oryx_a_proj.weight"] = np.zeros((H, d), np.float32)
        t[p + "oryx_dt_bias"] = (dt + np.log(-np.expm1(-dt))).astype(np.float32)
        t[p + "oryx_A_log"] = np.log(np.linspace(1.0, 16.0, H)).astype(np.float32)
        t[p + "oryx_norm.weight"] = np.ones(hd, np.float32)
        if a.recurrence == "gdn":
            t[p + "oryx_b_proj.weight"] = np.zeros((H, d), np.float32)
        else:
            t[p + "oryx_D"] = np.ones(H, np.float32)
    out.mkdir(parents=True, exist_ok=True)
    save_file(t, str(out / "model.safetensors"))
    cfg["oryx_cfg"] = {"recurrence": a.recurrence, "default_mode": a.default_mode}
    (out / "config.json").write_text(json.dumps(cfg, indent=2))
    for f in src.iterdir():
        if f.name.startswith("tokenizer"):
            shutil.copy(f, out / f.name)


if __name__ == "__main__":
    main()
