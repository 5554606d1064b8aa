"""Charts drawn by scripts/plot.py (matplotlib), run directly and through the CLI's --png options (the
script is built into the binary): the PNGs decode to images of the expected size, bad input and a
missing python3 / matplotlib are clear errors."""
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from conftest import run_subq

matplotlib_image = pytest.importorskip("matplotlib.image")
PLOT = pathlib.Path(__file__).resolve().parents[1] / "scripts" / "plot.py"


def plot(*args, check=True):
    p = subprocess.run([sys.executable, PLOT, *map(str, args)], capture_output=True, text=True)
    if check:
        assert p.returncode == 0, p.stderr
    return p


def image(path):
    img = matplotlib_image.imread(path)  # raises on a file that is not a valid PNG
    assert img.ndim == 3 and img.shape[2] in (3, 4)
    return img


def test_heatmap_panels_loss_and_bench(tmp_path):
    rng = np.random.default_rng(0)
    mats = np.tril(rng.random((4, 12, 12))).astype(np.float32)
    mats[3, 0, 0] = np.nan  # a non-finite cell is drawn, not an error
    np.save(tmp_path / "m.npy", mats)
    plot("heatmap", "--npy", tmp_path / "m.npy", *sum((["--caption", f"p{k}"] for k in range(4)), []),
         "--title", "four panels", "--out", tmp_path / "m.png")
    one = tmp_path / "one.npy"
    np.save(one, mats[0])
    plot("heatmap", "--npy", one, "--separate-scales", "--out", tmp_path / "one.png")
    assert image(tmp_path / "m.png").shape[1] > image(tmp_path / "one.png").shape[1]  # panels side by side

    metrics = tmp_path / "metrics.jsonl"
    rows = [{"stage": s, "tokens": 64 * i, "loss": 3.0 / (i + 1)} for s in (1, 2) for i in range(30)]
    metrics.write_text("\n".join(map(json.dumps, rows)) + "\n{cut by a cra")
    plot("loss", "--metrics", metrics, "--stage", 2, "--out", tmp_path / "loss.png")
    assert image(tmp_path / "loss.png").shape[:2] == (500, 800)
    p = plot("loss", "--metrics", metrics, "--stage", 3, "--out", tmp_path / "none.png", check=False)
    assert p.returncode == 2 and "no finite positive loss for stage 3" in p.stderr
    plot("loss", "--metrics", metrics, "--stage", 3, "--skip-empty", "--out", tmp_path / "none.png")
    assert not (tmp_path / "none.png").exists()

    bench = {"options": {"batch_context": 32}, "models": [
        {"model": "/x/stories/hf", "prefill": [{"length": 16, "decode_tok_s": 900.0}, {"length": 1024, "skipped": "no"}],
         "batch": [{"batch": 1, "aggregate_tok_s": 800.0}, {"batch": 8, "aggregate_tok_s": 3000.0}]}]}
    (tmp_path / "b.json").write_text(json.dumps(bench))
    plot("bench", "--json", tmp_path / "b.json", "--out", tmp_path / "b.png")
    assert image(tmp_path / "b.png").shape[:2] == (500, 1600)


def test_bad_plot_input_is_an_error(tmp_path):
    (tmp_path / "bad.npy").write_bytes(b"not numpy")
    p = plot("heatmap", "--npy", tmp_path / "bad.npy", "--out", tmp_path / "x.png", check=False)
    assert p.returncode == 2 and "cannot read as .npy" in p.stderr
    np.save(tmp_path / "v.npy", np.zeros(5, np.float32))
    p = plot("heatmap", "--npy", tmp_path / "v.npy", "--out", tmp_path / "x.png", check=False)
    assert p.returncode == 2 and "[L, L] or [N, L, L]" in p.stderr
    (tmp_path / "b.json").write_text("{}")
    p = plot("bench", "--json", tmp_path / "b.json", "--out", tmp_path / "x.png", check=False)
    assert p.returncode == 2 and "not a subq bench JSON" in p.stderr


INSPECT = ["inspect", "--mixing-matrix", "--layer", "1", "--head", "0", "--prompt", "Lily and Ben went to the park"]


def test_inspect_png_is_a_valid_image(subq_bin, data_dir, tmp_path):
    png = tmp_path / "m.png"
    p = run_subq(subq_bin, *INSPECT, "--model", data_dir / "stories260K/hf", "--png", png)
    assert f"wrote {png}" in p.stderr
    img = image(png)
    assert img.shape[0] > 200 and img.shape[1] > 200


def test_png_without_python_or_matplotlib_is_a_clear_error(subq_bin, data_dir, tmp_path):
    base = [subq_bin, *INSPECT, "--model", data_dir / "stories260K/hf", "--png", tmp_path / "m.png"]
    env = dict(os.environ, SUBQ_PYTHON=str(tmp_path / "no-such-python3"))
    p = subprocess.run(list(map(str, base)), capture_output=True, text=True, env=env)
    assert p.returncode == 1 and "cannot run" in p.stderr and "matplotlib" in p.stderr, p.stderr
    no_site = tmp_path / "python-without-site"  # a python3 that cannot import matplotlib
    no_site.write_text(f"#!/bin/sh\nexec {sys.executable} -S \"$@\"\n")
    no_site.chmod(0o755)
    p = subprocess.run(list(map(str, base)), capture_output=True, text=True, env=dict(env, SUBQ_PYTHON=str(no_site)))
    assert p.returncode == 1 and "matplotlib is not installed" in p.stderr, p.stderr
    assert not (tmp_path / "m.png").exists()
    bench = [subq_bin, "bench", "--model", data_dir / "stories260K/hf", "--threads", "1", "--gen", "2",
             "--batch-context", "16", "--prompt-lengths", "16", "--batch", "1", "--png", tmp_path / "b.png"]
    p = subprocess.run(list(map(str, bench)), capture_output=True, text=True, env=env)
    assert p.returncode != 0 and "matplotlib" in p.stderr, p.stderr
