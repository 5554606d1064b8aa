"""`subq data` and `subq distill` beyond one process and plain text, on CPU: TinyStories tokenized into
shards with the stories260K tokenizer (plain text and JSONL give the same shards), distilling from a
shard folder, clear errors for corrupt shards, data-parallel training over Gloo (2 ranks x micro-batch m
reach the weights of 1 rank x 2m), resume needing the same world size, and bf16 autocast."""
import json
import shutil

import numpy as np
import pytest
from safetensors.numpy import load_file

from conftest import run_subq

# Two ranks and one rank sum the same per-sequence gradients in a different order; Adam turns those
# float rounding differences into update differences of at most ~lr on parameters whose gradient is
# near zero. Weights after 8 steps (lr 1e-3, |w| up to ~4) agree to this absolute tolerance.
DDP_ATOL = 2e-3


@pytest.fixture(scope="module")
def stories(tmp_path_factory, data_dir):
    text = (data_dir / "text" / "tinystories-sample.txt").read_text()
    docs = [d.strip() for d in text.split("<|endoftext|>")[:600] if d.strip()]
    folder = tmp_path_factory.mktemp("stories")
    (folder / "stories.txt").write_text("\n<|endoftext|>\n".join(docs))
    (folder / "stories.jsonl").write_text("".join(json.dumps({"text": d, "n": i}) + "\n" for i, d in enumerate(docs)))
    return folder


@pytest.fixture(scope="module")
def shards(subq_bin, data_dir, stories, tmp_path_factory):
    out = tmp_path_factory.mktemp("shards") / "tinystories"
    p = run_subq(subq_bin, "data", "prepare", "--tokenizer", data_dir / "stories260K" / "hf", "--in",
                 stories / "stories.txt", "--out", out, "--shard-tokens", 40000)
    assert "wrote" in p.stdout and "[data] 100.0%" in p.stderr  # progress line
    return out


def write_recipe(path, data_dir, shards, extra=""):
    path.write_text(f"""
teacher: {data_dir}/stories260K/hf
seed: 11
seq_len: 64
micro_batch: 4
checkpoint_every: 2
student: {{kind: discrete_mamba2, n_qk_heads: 8, n_v_heads: 8, head_dim: 8, d_state: 8, chunk_size: 16, init: attention}}
data: {{shards: {shards}, eval_tokens: 2048}}
stages:
  hidden_state: {{tokens: 2048, lr: 1.0e-3, batch_tokens: 512}}
  end_to_end: {{tokens: 2048, lr: 1.0e-3, batch_tokens: 512}}
{extra}""")
    return path


def weights(folder):
    return load_file(str(folder / "model.safetensors"))


def max_diff(a, b):
    return max(float(np.abs(a[k] - b[k]).max()) for k in a)


def test_prepare_shards_plain_text_and_jsonl_agree(subq_bin, data_dir, stories, shards, tmp_path):
    index = json.loads((shards / "index.json").read_text())
    assert index["token_bytes"] == 2 and index["vocab_size"] == 512 and index["add_bos"]
    assert len(index["splits"]["train"]) > 1 and sum(s["docs"] for s in index["splits"]["held_out"]) == 30
    p = run_subq(subq_bin, "data", "verify", shards)
    assert "train:" in p.stdout and "held_out:" in p.stdout
    out = tmp_path / "j"
    run_subq(subq_bin, "data", "prepare", "--tokenizer", data_dir / "stories260K" / "hf", "--in",
             stories / "stories.jsonl", "--out", out, "--shard-tokens", 40000)
    for f in sorted(shards.glob("*.tok")):
        assert (out / f.name).read_bytes() == f.read_bytes(), f.name
    assert (out / "held_out.txt").read_text() == (shards / "held_out.txt").read_text()
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "a"}\nnot json\n')
    p = run_subq(subq_bin, "data", "prepare", "--tokenizer", data_dir / "stories260K" / "hf", "--in", bad,
                 "--out", tmp_path / "b", check=False)
    assert p.returncode == 1 and "bad.jsonl:2: not valid JSON" in p.stderr


def test_corrupt_shard_is_a_clear_error(subq_bin, data_dir, shards, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(shards, broken)
    victim = broken / "train-00001.tok"
    victim.write_bytes(victim.read_bytes()[:-10])
    p = run_subq(subq_bin, "data", "verify", broken, check=False)
    assert p.returncode == 1 and "train-00001.tok" in p.stderr and "truncated" in p.stderr
    recipe = write_recipe(tmp_path / "r.yaml", data_dir, broken)
    p = run_subq(subq_bin, "distill", "--recipe", recipe, "--out", tmp_path / "o", check=False)
    assert p.returncode == 1 and "train-00001.tok" in p.stderr and "Traceback" not in p.stderr
    p = run_subq(subq_bin, "distill", "--recipe", recipe, "--out", tmp_path / "o2", "--set",
                 f"data.shards={tmp_path}/nowhere", check=False)
    assert p.returncode == 1 and "not a folder written by `subq data prepare`" in p.stderr


def test_data_parallel_two_ranks_match_one(subq_bin, data_dir, shards, tmp_path):
    recipe = write_recipe(tmp_path / "r.yaml", data_dir, shards)
    one, two = tmp_path / "one", tmp_path / "two"
    run_subq(subq_bin, "distill", "--recipe", recipe, "--out", one, "--threads", 1)
    p = run_subq(subq_bin, "distill", "--recipe", recipe, "--out", two, "--nproc", 2, "--set", "micro_batch=2")
    assert "2 rank(s)" in p.stderr and p.stdout.count("student held-out perplexity") == 1
    a, b = weights(one), weights(two)
    assert max_diff(a, b) < DDP_ATOL
    # The tolerance is meaningful: another data order (seed) moves the weights by far more.
    other = tmp_path / "other"
    run_subq(subq_bin, "distill", "--recipe", recipe, "--out", other, "--threads", 1, "--set", "seed=12")
    assert max_diff(a, weights(other)) > 10 * DDP_ATOL
    s1 = json.loads((one / "summary.json").read_text())
    s2 = json.loads((two / "summary.json").read_text())
    assert s2["student_ppl"] == pytest.approx(s1["student_ppl"], rel=1e-3)

    # Killed after 3 steps, a 2-rank run resumes only with 2 ranks, and then ends where the uninterrupted one did.
    resumed = tmp_path / "resumed"
    args = ["distill", "--recipe", recipe, "--out", resumed, "--nproc", 2, "--set", "micro_batch=2"]
    p = run_subq(subq_bin, *args, "--stop-after-steps", 3, check=False)
    assert p.returncode == 1 and "stopped after 3 steps" in p.stderr
    p = run_subq(subq_bin, "distill", "--recipe", recipe, "--out", resumed, "--resume", check=False)
    assert p.returncode == 1 and "written by 2 data-parallel ranks" in p.stderr
    run_subq(subq_bin, *args, "--resume")
    assert max_diff(b, weights(resumed)) < 1e-6


def test_bf16_autocast_trains_close_to_f32(subq_bin, data_dir, shards, tmp_path):
    recipe = write_recipe(tmp_path / "r.yaml", data_dir, shards)
    losses = {}
    for dtype in ["f32", "bf16"]:
        out = tmp_path / dtype
        run_subq(subq_bin, "distill", "--recipe", recipe, "--out", out, "--threads", 1, "--stages", 3, "--set",
                 f"compute.dtype={dtype}", "--set", "compute.activation_checkpointing=true")
        lines = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
        losses[dtype] = [l["loss"] for l in lines if l.get("stage") == 3]
    assert len(losses["bf16"]) == len(losses["f32"]) == 4
    for a, b in zip(losses["f32"], losses["bf16"]):
        assert b == pytest.approx(a, rel=0.03)
