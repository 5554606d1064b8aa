"""bench/gpu/distill_scaling.sh (issue 12) at toy size on the CPU: the scripts the multi-GPU run uses, with
Gloo instead of NCCL. World sizes 1 and 2 at the same global batch must give the same student within the
data-parallel test's tolerance (2e-3 of each tensor's largest value; CPU Gloo gives ~1e-6), and a run
SIGKILLed mid stage 3 and resumed must finish with exactly the weights of the uninterrupted run.
"""
import json
import os
import pathlib
import subprocess
import sys

import pytest

pytest.importorskip("transformers")
pytest.importorskip("safetensors")

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_scaling_pipeline_tiny_on_cpu(subq_bin, data_dir, tmp_path):
    env = dict(os.environ, SHAPE="tiny", DEVICE="cpu", BUILD="0", MAMBA_SDIST_DIR="none", WORLDS="1,2",
               SUBQ_BUILD=str(pathlib.Path(subq_bin).parent), SUBQ_DATA=str(data_dir), WORK=str(tmp_path / "work"))
    dev, out, results = tmp_path / "dev", tmp_path / "out", tmp_path / "results"
    p = subprocess.run(["bash", str(ROOT / "bench/gpu/distill_scaling.sh"), "stage", str(dev)], env=env,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-4000:]
    p = subprocess.run(["bash", str(dev / "bench/gpu/distill_scaling.sh"), "run", str(dev), str(out)], env=env,
                       capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-4000:]
    assert [f.name for f in out.iterdir()] == ["scaling.tgz"]  # what the GPU machine sends back
    p = subprocess.run([sys.executable, str(ROOT / "bench/gpu/distill_scaling_report.py"), str(out), "--name", "t",
                        "--results", str(results)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    r = json.loads((results / "t.json").read_text())
    assert [x["world"] for x in r["runs"]] == [1, 2]
    for run in r["runs"]:
        assert run["exit"] == 0
        assert all(s["tokens_per_s"] and s["tokens_per_s"] > 0 for s in run["stages"].values())
    w = r["runs"][1]["weights_vs_w1"]
    assert w["same_names_and_shapes"] and w["max_rel_diff"] < 2e-3, w
    assert r["resume"]["kill"]["killed"] is True, "the run finished before it could be killed"
    w = r["resume"]["weights_vs_uninterrupted"]
    assert w["same_names_and_shapes"] and w["max_abs_diff"] == 0.0, w
    assert "| 2 | end_to_end |" in (results / "t.md").read_text()
