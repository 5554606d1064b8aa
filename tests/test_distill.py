"""`subq distill` end to end on Stories260K: a tiny recipe through stages 1-3, export parity (engine vs
torch student vs an independent Python reference), resume after SIGKILL, and clear recipe errors."""
import json
import os
import pathlib
import signal
import subprocess
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from conftest import run_subq


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, data_dir):
    """The first ~400 TinyStories (real text; a small slice keeps tokenisation fast)."""
    text = (data_dir / "text" / "tinystories-sample.txt").read_text()
    stories = text.split("<|endoftext|>")[:400]
    p = tmp_path_factory.mktemp("corpus") / "stories.txt"
    p.write_text("<|endoftext|>".join(stories))
    return p


def write_recipe(path, data_dir, corpus, extra=""):
    path.write_text(f"""
teacher: {data_dir}/stories260K/hf
seed: 7
seq_len: 64
micro_batch: 2
checkpoint_every: 2
student: {{kind: discrete_mamba2, n_qk_heads: 8, n_v_heads: 8, head_dim: 8, d_state: 8, chunk_size: 16, init: attention}}
data: {{files: [{corpus}], eval_tokens: 1024}}
stages:
  matrix_orientation: {{tokens: 512, lr: 2.0e-3, batch_tokens: 256}}
  hidden_state: {{tokens: 512, lr: 1.0e-3, batch_tokens: 256}}
  end_to_end: {{tokens: 768, lr: 1.0e-3, batch_tokens: 256}}
{extra}""")
    return path


def llamba_reference(folder, ids):
    """Llamba forward written from SPEC 3 (token-by-token recurrence, float64) on the exported files."""
    cfg = json.loads((folder / "config.json").read_text())
    W = {k: v.double() for k, v in load_file(str(folder / "model.safetensors")).items()}
    D, s, eps = cfg["d_model"], cfg["ssm_cfg"], cfg["norm_epsilon"]
    N, hq, hv, K = s["d_state"], s["n_qk_heads"], s["n_v_heads"], s["d_conv"]
    di = s["expand"] * D
    P = di // hv
    L = len(ids)
    rms = lambda x, w: x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w
    x = W["backbone.embedding.weight"][torch.tensor(ids)]
    for i in range(cfg["n_layer"]):
        p = f"backbone.layers.{i}."
        u = rms(x, W[p + "input_layernorm.weight"])
        if i in cfg.get("attention_layers", []):
            a = cfg["attn_cfg"]
            H, Hk, hd = a["num_heads"], a["num_key_value_heads"], a["head_dim"]
            q = (u @ W[p + "mixer.q_proj.weight"].T).view(L, H, hd)
            k = (u @ W[p + "mixer.k_proj.weight"].T).view(L, Hk, hd).repeat_interleave(H // Hk, 1)
            v = (u @ W[p + "mixer.v_proj.weight"].T).view(L, Hk, hd).repeat_interleave(H // Hk, 1)
            inv = a["rope_theta"] ** (-torch.arange(0, hd, 2, dtype=torch.float64) / hd)
            f = torch.outer(torch.arange(L, dtype=torch.float64), inv)[:, None, :]
            rot = lambda t: torch.cat([t[..., :hd // 2] * f.cos() - t[..., hd // 2:] * f.sin(),
                                       t[..., hd // 2:] * f.cos() + t[..., :hd // 2] * f.sin()], -1)
            sc = torch.einsum("qhd,khd->hqk", rot(q), rot(k)) / hd ** 0.5
            sc = sc.masked_fill(torch.triu(torch.ones(L, L, dtype=torch.bool), 1), float("-inf"))
            o = torch.einsum("hqk,khd->qhd", sc.softmax(-1), v).reshape(L, H * hd)
            x = x + o @ W[p + "mixer.o_proj.weight"].T
        else:
            zxa = u @ W[p + "mixer.in_proj.weight"].T
            cd = di + 2 * hq * N
            xbc, z, alog = zxa[:, :cd], zxa[:, cd:cd + di], zxa[:, cd + di:]
            w = W[p + "mixer.conv1d.weight"][:, 0, :]
            padded = torch.cat([torch.zeros(K - 1, cd, dtype=torch.float64), xbc])
            xbc = sum(padded[k:k + L] * w[:, k] for k in range(K)) + W[p + "mixer.conv1d.bias"]
            xs = xbc[:, :di].reshape(L, hv, P)
            Bm = xbc[:, di:di + hq * N].reshape(L, hq, N).repeat_interleave(hv // hq, 1)
            Cm = xbc[:, di + hq * N:].reshape(L, hq, N).repeat_interleave(hv // hq, 1)
            decay = torch.exp(-F.softplus(alog))
            h = torch.zeros(hv, P, N, dtype=torch.float64)
            ys = []
            for t in range(L):
                h = decay[t][:, None, None] * h + xs[t][:, :, None] * Bm[t][:, None, :]
                ys.append((h @ Cm[t][:, :, None]).squeeze(-1) + W[p + "mixer.D"][:, None] * xs[t])
            y = torch.stack(ys).reshape(L, di) * F.silu(z + W[p + "mixer.z_bias"])
            x = x + y @ W[p + "mixer.out_proj.weight"].T
        hm = rms(x, W[p + "post_attention_layernorm.weight"])
        x = x + (F.silu(hm @ W[p + "mlp.gate_proj.weight"].T) * (hm @ W[p + "mlp.up_proj.weight"].T)) \
            @ W[p + "mlp.down_proj.weight"].T
    x = rms(x, W["backbone.final_layernorm.weight"])
    return (x @ W.get("lm_head.weight", W["backbone.embedding.weight"]).T).numpy()


def check_export(subq_bin, out, tmp_path):
    ids = [int(t) for t in (out / "probe_ids.txt").read_text().strip().split(",")]
    torch_logits = np.load(out / "probe_logits.npy")
    ref = llamba_reference(out, ids)
    assert torch_logits.shape == ref.shape
    assert np.abs(torch_logits - ref).max() < 1e-4, "torch student disagrees with the SPEC reference"
    for step in (False, True):
        npy = tmp_path / f"engine_{step}.npy"
        run_subq(subq_bin, "logits", "--model", out, "--ids", ",".join(map(str, ids)), "--out", npy,
                 *(["--step"] if step else []))
        eng = np.load(npy)
        assert np.abs(eng - torch_logits).max() < 1e-4, f"engine (step={step}) disagrees with the torch student"


def test_tiny_recipe_all_stages_and_export(subq_bin, data_dir, corpus, tmp_path):
    recipe = write_recipe(tmp_path / "tiny.yaml", data_dir, corpus)
    out = tmp_path / "out"
    p = run_subq(subq_bin, "distill", "--recipe", recipe, "--out", out, "--threads", "2")
    assert "teacher held-out perplexity" in p.stdout and "student held-out perplexity" in p.stdout
    # one progress line per step with stage, tokens done/total, loss, tokens/s and ETA
    lines = [l for l in p.stderr.splitlines() if " step " in l and "tok/s" in l]
    assert len(lines) == 2 + 2 + 3
    assert "stage 3/3" in lines[-1] and "tokens 768/768" in lines[-1] and "eta" in lines[-1]
    metrics = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["stage"] for m in metrics] == [1, 1, 2, 2, 3, 3, 3]
    assert all(np.isfinite(m["loss"]) for m in metrics)
    for f in ["config.json", "model.safetensors", "tokenizer.model", "loss_stage1.png", "loss_stage2.png",
              "loss_stage3.png", "mixing_stage1.png", "mixing_stage1.npy", "mixing_final.png", "summary.json"]:
        assert (out / f).exists(), f
    # the charts (drawn by scripts/plot.py with matplotlib) are PNGs that decode; the matrices beside them
    # hold teacher/student pairs of [L, L] mixing matrices with values in [0, 1]
    import matplotlib.image
    for f in ["loss_stage1.png", "loss_stage3.png", "mixing_stage1.png"]:
        img = matplotlib.image.imread(out / f)
        assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100, f
    mix = np.load(out / "mixing_stage1.npy")
    assert mix.ndim == 3 and mix.shape[0] % 2 == 0 and mix.shape[1] == mix.shape[2] and 0 <= mix.min() <= mix.max() <= 1
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["ssm_cfg"] == {"d_state": 8, "n_qk_heads": 8, "n_v_heads": 8, "d_conv": 4, "expand": 1,
                              "chunk_size": 16, "activation": "identity", "bias": False, "conv_bias": True}
    summary = json.loads((out / "summary.json").read_text())
    assert 1.0 < summary["teacher_ppl"] < 20 and summary["student_ppl"] > 1.0
    check_export(subq_bin, out, tmp_path)
    # One definition of held-out perplexity: `subq eval` (default window and stride) on the held-out documents
    # the trainer wrote reproduces the perplexities it printed, for the exported student and the teacher.
    assert summary["eval_window"] == 512 and summary["eval_stride"] == 256
    for model, key in ((out, "student_ppl"), (data_dir / "stories260K" / "hf", "teacher_ppl")):
        ev = json.loads(run_subq(subq_bin, "eval", "--model", model, "--text", out / "held_out.txt", "--json").stdout)
        assert ev["window"] == summary["eval_window"] and ev["tokens"] == summary["eval_tokens"], ev
        assert abs(ev["perplexity"] / summary[key] - 1) < 1e-3, (key, ev["perplexity"], summary[key])
    # The student with its recurrent state in bf16 scores real text within a fraction of a percent.
    p = run_subq(subq_bin, "eval", "--model", out, "--text", data_dir / "text" / "tinystories-sample.txt",
                 "--max-tokens", "3000", "--state-dtype", "bf16", "--json")
    ev = json.loads(p.stdout)
    assert ev["state_dtype"] == "bf16" and ev["perplexity_change"] != 0.0
    assert abs(ev["perplexity_change"]) / ev["perplexity_f32_state"] < 0.02, ev


def test_hybrid_keeps_attention_layers(subq_bin, data_dir, corpus, tmp_path):
    recipe = write_recipe(tmp_path / "hybrid.yaml", data_dir, corpus)
    out = tmp_path / "out"
    run_subq(subq_bin, "distill", "--recipe", recipe, "--out", out, "--threads", "2",
             "--set", "student.attention_layers=[1,3]", "--set", "stages.matrix_orientation.tokens=0",
             "--set", "stages.end_to_end.tokens=256")
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["attention_layers"] == [1, 3]
    assert cfg["attn_cfg"]["num_heads"] == 8 and cfg["attn_cfg"]["num_key_value_heads"] == 4
    W = load_file(str(out / "model.safetensors"))
    assert "backbone.layers.1.mixer.q_proj.weight" in W and "backbone.layers.0.mixer.in_proj.weight" in W
    check_export(subq_bin, out, tmp_path)


def test_resume_after_kill_gives_identical_weights(subq_bin, data_dir, corpus, tmp_path):
    recipe = write_recipe(tmp_path / "r.yaml", data_dir, corpus)
    sets = ["--set", "checkpoint_every=3", "--set", "stages.matrix_orientation.tokens=0",
            "--set", "stages.hidden_state.tokens=1536", "--set", "stages.end_to_end.tokens=6144"]
    a, b = tmp_path / "a", tmp_path / "b"
    run_subq(subq_bin, "distill", "--recipe", recipe, "--out", a, "--threads", "2", *sets)
    # Kill B with SIGKILL in the middle of stage 3 (between two checkpoints).
    proc = subprocess.Popen([subq_bin, "distill", "--recipe", str(recipe), "--out", str(b), "--threads", "2", *sets],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics = b / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if metrics.exists() and sum(1 for l in metrics.read_text().splitlines() if '"stage":3' in l) >= 8:
            break
        time.sleep(0.005)
    assert proc.poll() is None, "run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (b / "model.safetensors").exists()
    run_subq(subq_bin, "distill", "--recipe", recipe, "--out", b, "--threads", "2", "--resume", *sets)
    assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()
    steps = [json.loads(l)["step"] for l in metrics.read_text().splitlines() if '"stage":3' in l]
    assert steps == list(range(1, 25)), "metrics after resume must hold every step once"


@pytest.mark.parametrize("change,message", [
    ("bogus: 1", "unknown key 'bogus'"),
    ("stages: {end_to_end: {tokens: 512, lr: -1, batch_tokens: 256}}", "stages.end_to_end.lr"),
    ("stages: {end_to_end: {tokens: 512, lr: 0.001, batch_tokens: 100}}", "multiple of seq_len"),
    ("student: {kind: transformer, n_v_heads: 8, head_dim: 8, d_state: 8}", "student.kind"),
    ("student: {n_qk_heads: 4, n_v_heads: 4, head_dim: 16, d_state: 8}", "attention init needs"),
    ("student: {kind: mamba3, n_groups: 8, n_v_heads: 8, head_dim: 8, d_state: 6}", "multiple of 4"),
    ("student: {kind: gated_deltanet, n_qk_heads: 3, n_v_heads: 8, head_dim: 8, d_state: 8}", "student.n_qk_heads"),
    ("student: {kind: gated_deltanet, n_qk_heads: 8, n_v_heads: 8, head_dim: 3, d_state: 8}", "exact in f32"),
    ("data: {files: [/nonexistent/corpus.txt]}", "/nonexistent/corpus.txt"),
    ("data: {files: [EMPTY]}", "is empty"),
    ("teacher: BADTEACHER", "cannot load teacher"),
])
def test_bad_recipes_fail_before_training(subq_bin, data_dir, corpus, tmp_path, change, message):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    bad_teacher = tmp_path / "garbage.bin"
    bad_teacher.write_bytes(b"\x01\x02\x03")
    base = {
        "teacher": f"{data_dir}/stories260K/hf",
        "data": f"{{files: [{corpus}]}}",
        "student": "{n_qk_heads: 8, n_v_heads: 8, head_dim: 8, d_state: 8}",
        "stages": "{end_to_end: {tokens: 512, lr: 0.001, batch_tokens: 256}}",
        "seq_len": "64",
    }
    key = change.split(":")[0]
    text = "\n".join(f"{k}: {v}" for k, v in base.items() if k != key) + "\n" + change + "\n"
    text = text.replace("EMPTY", str(empty)).replace("BADTEACHER", str(bad_teacher))
    recipe = tmp_path / "bad.yaml"
    recipe.write_text(text)
    out = tmp_path / "out"
    p = run_subq(subq_bin, "distill", "--recipe", recipe, "--out", out, check=False)
    assert p.returncode != 0
    assert message in p.stderr, p.stderr
    assert "step" not in p.stderr and not (out / "metrics.jsonl").exists()


def test_cuda_request_is_clear(subq_bin, data_dir, corpus, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA (the device run covers --device cuda)")
    recipe = write_recipe(tmp_path / "tiny.yaml", data_dir, corpus)
    p = run_subq(subq_bin, "distill", "--recipe", recipe, "--out", tmp_path / "o", "--device", "cuda", check=False)
    assert p.returncode != 0 and "CUDA is not available" in p.stderr


def test_mamba2_student_trains_and_exports_hf_layout(subq_bin, data_dir, corpus, tmp_path):
    recipe = write_recipe(tmp_path / "m2.yaml", data_dir, corpus)
    out = tmp_path / "out"
    run_subq(subq_bin, "distill", "--recipe", recipe, "--out", out, "--threads", "2",
             "--set", "student={kind: mamba2, n_groups: 8, n_v_heads: 8, head_dim: 8, d_state: 8, chunk_size: 16}",
             "--set", "stages.hidden_state.tokens=256", "--set", "stages.end_to_end.tokens=256")
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model_type"] == "mamba2" and cfg["num_heads"] == 8 and cfg["n_groups"] == 8
    assert cfg["mlp_cfg"]["intermediate_size"] == 172
    W = load_file(str(out / "model.safetensors"))
    for k in ["backbone.embeddings.weight", "backbone.norm_f.weight", "backbone.layers.0.norm.weight",
              "backbone.layers.0.norm2.weight", "backbone.layers.0.mixer.dt_bias", "backbone.layers.0.mixer.A_log",
              "backbone.layers.0.mixer.norm.weight", "backbone.layers.4.mlp.down_proj.weight"]:
        assert k in W, k
    assert W["backbone.layers.0.mixer.in_proj.weight"].shape == (2 * 64 + 2 * 8 * 8 + 8, 64)
    summary = json.loads((out / "summary.json").read_text())
    assert np.isfinite(summary["student_ppl"])
    # the engine runs the exported Mamba-2 student (with the teacher's MLP) like the torch student
    ids = [int(t) for t in (out / "probe_ids.txt").read_text().strip().split(",")]
    torch_logits = np.load(out / "probe_logits.npy")
    for step in (False, True):
        npy = tmp_path / f"m2_engine_{step}.npy"
        run_subq(subq_bin, "logits", "--model", out, "--ids", ",".join(map(str, ids)), "--out", npy,
                 *(["--step"] if step else []))
        assert np.abs(np.load(npy) - torch_logits).max() < 1e-4, f"engine (step={step}) != torch Mamba-2 student"


def engine_matches_torch(subq_bin, out, tmp_path, tag):
    ids = [int(t) for t in (out / "probe_ids.txt").read_text().strip().split(",")]
    torch_logits = np.load(out / "probe_logits.npy")
    for step in (False, True):
        npy = tmp_path / f"{tag}_engine_{step}.npy"
        run_subq(subq_bin, "logits", "--model", out, "--ids", ",".join(map(str, ids)), "--out", npy,
                 *(["--step"] if step else []))
        err = np.abs(np.load(npy) - torch_logits).max()
        assert err < 1e-4, f"engine (step={step}) != torch {tag} student: max |diff| {err}"


@pytest.mark.parametrize("extra", [[], ["--set", "student.attention_layers=[2]"]], ids=["pure", "hybrid"])
def test_gated_deltanet_student_trains_and_exports_fla_layout(subq_bin, data_dir, corpus, tmp_path, extra):
    recipe = write_recipe(tmp_path / "gdn.yaml", data_dir, corpus)
    out = tmp_path / "out"
    run_subq(subq_bin, "distill", "--recipe", recipe, "--out", out, "--threads", "2",
             "--set", "student={kind: gated_deltanet, n_qk_heads: 8, n_v_heads: 8, head_dim: 8, d_state: 8, "
                      "conv_kernel: 4, init: attention}",
             "--set", "stages.matrix_orientation.tokens=256", "--set", "stages.hidden_state.tokens=256",
             "--set", "stages.end_to_end.tokens=256", *extra)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model_type"] == "gated_deltanet" and cfg["num_heads"] == 8 and cfg["num_v_heads"] == 8
    assert cfg["head_dim"] == 8 and cfg["expand_v"] == 1.0 and cfg["intermediate_size"] == 172
    metrics = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["stage"] for m in metrics] == [1, 2, 3] and all(np.isfinite(m["loss"]) for m in metrics)
    W = load_file(str(out / "model.safetensors"))
    for k in ["model.embeddings.weight", "model.norm.weight", "model.layers.0.attn_norm.weight",
              "model.layers.0.mlp_norm.weight", "model.layers.0.attn.A_log", "model.layers.0.attn.q_conv1d.weight",
              "model.layers.0.attn.o_norm.weight", "model.layers.4.mlp.down_proj.weight"]:
        assert k in W, k
    assert W["model.layers.0.attn.a_proj.weight"].shape == (8, 64)
    if extra:
        assert cfg["attention_layers"] == [2] and "model.layers.2.attn.q_proj.weight" in W
        assert "model.layers.2.attn.A_log" not in W
    engine_matches_torch(subq_bin, out, tmp_path, "gdn")


@pytest.mark.parametrize("extra", [[], ["--set", "student.attention_layers=[2]"]], ids=["pure", "hybrid"])
def test_mamba3_student_trains_and_exports_mamba_ssm_layout(subq_bin, data_dir, corpus, tmp_path, extra):
    recipe = write_recipe(tmp_path / "m3.yaml", data_dir, corpus)
    out = tmp_path / "out"
    run_subq(subq_bin, "distill", "--recipe", recipe, "--out", out, "--threads", "2",
             "--set", "student={kind: mamba3, n_groups: 8, n_v_heads: 8, head_dim: 8, d_state: 8, chunk_size: 16, "
                      "init: attention}",
             "--set", "stages.matrix_orientation.tokens=256", "--set", "stages.hidden_state.tokens=256",
             "--set", "stages.end_to_end.tokens=256", *extra)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model_type"] == "mamba3" and cfg["ssm_cfg"]["layer"] == "Mamba3" and cfg["ssm_cfg"]["d_state"] == 8
    assert cfg["mlp_cfg"]["intermediate_size"] == 172
    metrics = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["stage"] for m in metrics] == [1, 2, 3] and all(np.isfinite(m["loss"]) for m in metrics)
    W = load_file(str(out / "model.safetensors"))
    for k in ["backbone.embedding.weight", "backbone.norm_f.weight", "backbone.layers.0.norm.weight",
              "backbone.layers.0.norm2.weight", "backbone.layers.0.mixer.B_bias", "backbone.layers.0.mixer.C_norm.weight",
              "backbone.layers.0.mixer.dt_bias", "backbone.layers.4.mlp.down_proj.weight"]:
        assert k in W, k
    # rows [z, x, B, C, dd_dt, dd_A, trap, angle]: 2*64 + 2*8*8 + 3*8 + 8/4
    assert W["backbone.layers.0.mixer.in_proj.weight"].shape == (2 * 64 + 2 * 64 + 3 * 8 + 2, 64)
    if extra:
        assert cfg["attention_layers"] == [2] and "backbone.layers.2.mixer.q_proj.weight" in W
    engine_matches_torch(subq_bin, out, tmp_path, "mamba3")


def test_distill_on_text_sampled_from_the_teacher(subq_bin, data_dir, corpus, tmp_path):
    recipe = write_recipe(tmp_path / "selfd.yaml", data_dir, corpus)
    out = tmp_path / "out"
    p = run_subq(subq_bin, "distill", "--recipe", recipe, "--out", out, "--threads", "2",
                 "--set", "data.teacher_samples=8", "--set", "stages.matrix_orientation.tokens=0",
                 "--set", "stages.hidden_state.tokens=256", "--set", "stages.end_to_end.tokens=256")
    assert "sampling 8 sequences from the teacher" in p.stderr
    metrics = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert metrics and all(np.isfinite(m["loss"]) for m in metrics)
    summary = json.loads((out / "summary.json").read_text())
    assert np.isfinite(summary["student_ppl"])
