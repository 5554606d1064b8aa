"""bench/gpu/distill_1b.sh (issue 13 item 4) at toy size on the CPU: the same scripts the GPU run uses.

The GPU run makes a random Llama-3.2-1B-shaped teacher, runs `subq distill` with recipes/llamba-1b-scale.yaml
and a PyTorch baseline of its stage-3 step; here SHAPE=tiny DEVICE=cpu runs that pipeline end to end, and
the pieces the numbers rest on are checked: the baseline's torch SSD against the plain recurrence, the way
it calls mamba_ssm's kernel (x / dt with dt = softplus(A_log), A = -1) against the same SSD, and the FLOP
model's weight counts against the real models' parameter counts.
"""
import json
import os
import pathlib
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
from torch.nn import functional as F  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench" / "gpu"))
import distill_1b_report as report  # noqa: E402
import distill_1b_torch as baseline  # noqa: E402


def random_ssd_inputs(b=2, l=64, h=3, p=8, n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, l, h, p, generator=g)
    A_log = torch.randn(b, l, h, generator=g)
    return x, A_log, torch.randn(b, l, h, n, generator=g) / n ** 0.5, torch.randn(b, l, h, n, generator=g)


def test_torch_ssd_matches_recurrence():
    x, A_log, B, C = random_ssd_inputs()
    loga = -F.softplus(A_log)
    ref = baseline.ssd_recurrent(x, loga, B, C)
    for chunk in (8, 16, 64):
        y = baseline.ssd_chunked(x, loga, B, C, chunk)
        assert ((y - ref).abs().max() / ref.abs().max()).item() < 1e-5, chunk


def test_kernel_call_convention_against_reference_kernel():
    """dm2_scan_triton passes x / dt, dt = A_log (softplus inside) and A = -1 to a Mamba-2 kernel; a kernel with
    mamba_chunk_scan_combined's semantics (y = SSD of dt * x with decay exp(dt * A)) must give the DM2 scan."""
    def mamba2_kernel(x, dt, A, B, C, chunk_size, dt_softplus=False):
        dt = F.softplus(dt.float()) if dt_softplus else dt.float()
        return baseline.ssd_chunked(x * dt.unsqueeze(-1).to(x.dtype), dt * A, B, C, chunk_size)

    errs = baseline.check_kernel(mamba2_kernel, torch.device("cpu"), 16, 4, 16, 8, torch.float32)
    assert max(errs.values()) < 1e-4, errs
    # A kernel that ignores dt's softplus is caught by the same check the GPU run relies on.
    wrong = lambda x, dt, A, B, C, chunk_size, dt_softplus=False: mamba2_kernel(x, dt, A, B, C, chunk_size)  # noqa: E731
    assert max(baseline.check_kernel(wrong, torch.device("cpu"), 16, 4, 16, 8, torch.float32).values()) > 5e-2


def test_pipeline_tiny_on_cpu(subq_bin, data_dir, tmp_path):
    env = dict(os.environ, SHAPE="tiny", DEVICE="cpu", BUILD="0", MAMBA_SDIST_DIR="none",
               SUBQ_BUILD=str(pathlib.Path(subq_bin).parent), SUBQ_DATA=str(data_dir), WORK=str(tmp_path / "work"))
    script = ROOT / "bench" / "gpu" / "distill_1b.sh"
    dev, out, results = tmp_path / "dev", tmp_path / "out", tmp_path / "results"
    p = subprocess.run(["bash", str(script), "stage", str(dev)], env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    p = subprocess.run(["bash", str(dev / "bench/gpu/distill_1b.sh"), "run", str(dev), str(out)], env=env,
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-4000:]
    assert len(list(out.iterdir())) <= 8  # what the GPU machine sends back
    # checkpoint_every: 0 -> no checkpoint was written, the export still was.
    distill = tmp_path / "work" / "distill"
    assert (distill / "model.safetensors").exists()
    assert not list(distill.glob("checkpoints/ckpt-*"))

    p = subprocess.run([sys.executable, str(ROOT / "bench/gpu/distill_1b_report.py"), str(out), "--name", "t",
                        "--results", str(results)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    r = json.loads((results / "t.json").read_text())
    assert r["subq_exit"] == 0
    assert [s["name"] for s in r["stages"] if s["ran"]] == report.STAGES
    for s in r["stages"]:
        assert s["tokens_per_s"] > 0 and s["model_flop_per_token"] > 0
    b = r["pytorch_baseline"]
    assert b["tokens_per_s"] > 0 and b["ssd"] == "chunked pure-torch SSD"
    assert "| 3 end_to_end |" in (results / "t.md").read_text()

    # The FLOP model's matmul weights plus the non-matmul parameters are exactly the models' sizes.
    t, s = r["teacher_dims"], r["student_dims"]
    w = report.matmul_weights(t, s)
    norms = (2 * t["n_layers"] + 1) * t["D"]
    assert r["teacher"]["params"] == t["n_layers"] * (w["t_attn"] + w["t_mlp"]) + w["t_head"] + norms
    conv_dim = s["nv"] * s["P"] + 2 * s["nqk"] * s["N"]
    small = s["n_layers"] * (conv_dim * 4 + conv_dim + s["nv"] * s["P"] + s["nv"]) + norms  # conv w/b, z_bias, D
    assert b["student_params"] == s["n_layers"] * (w["in_proj"] + w["out_proj"] + w["mlp"]) + w["head"] + small
