"""Head-hybrid students (`student.keep_heads`) distilled from stories260K: kept teacher heads run as softmax
attention inside Discrete Mamba-2 layers; the export is the engine's head-hybrid layout, the engine's logits
equal the trainer's (prefill and step), and the engine keeps a KV cache only for the kept heads."""
import json

import numpy as np
import pytest

from conftest import run_subq


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, data_dir):
    text = (data_dir / "text" / "tinystories-sample.txt").read_text()
    p = tmp_path_factory.mktemp("corpus") / "stories.txt"
    p.write_text("<|endoftext|>".join(text.split("<|endoftext|>")[:400]))
    return p


def write_recipe(path, data_dir, corpus, keep):
    path.write_text(f"""
teacher: {data_dir}/stories260K/hf
seed: 7
seq_len: 64
micro_batch: 2
checkpoint_every: 0
student: {{kind: discrete_mamba2, n_qk_heads: 8, n_v_heads: 8, head_dim: 8, d_state: 8, chunk_size: 16,
           init: attention, {keep}}}
data: {{files: [{corpus}], eval_tokens: 1024}}
stages:
  matrix_orientation: {{tokens: 256, lr: 2.0e-3, batch_tokens: 128}}
  hidden_state: {{tokens: 256, lr: 1.0e-3, batch_tokens: 128}}
  end_to_end: {{tokens: 256, lr: 1.0e-3, batch_tokens: 128}}
""")
    return path


def state_bytes(subq_bin, model, tmp_path, length):
    js = tmp_path / f"bench_{length}.json"
    run_subq(subq_bin, "bench", "--model", model, "--prompt-lengths", str(length), "--batch", "1", "--gen", "1",
             "--threads", "2", "--json", js)
    return json.loads(js.read_text())["models"][0]["prefill"][0]["state_bytes"]


def check_parity(subq_bin, out, tmp_path):
    ids = (out / "probe_ids.txt").read_text().strip()
    torch_logits = np.load(out / "probe_logits.npy")
    for step in (False, True):
        npy = tmp_path / f"engine_{step}.npy"
        run_subq(subq_bin, "logits", "--model", out, "--ids", ids, "--out", npy, *(["--step"] if step else []))
        err = np.abs(np.load(npy) - torch_logits).max()
        assert err < 1e-4, f"engine (step={step}) disagrees with the trainer's head hybrid: {err}"


def test_explicit_kept_heads_export_parity_and_kv_only_for_kept_heads(subq_bin, data_dir, corpus, tmp_path):
    out = tmp_path / "hh"
    recipe = write_recipe(tmp_path / "r.yaml", data_dir, corpus, "keep_heads: [[0, 1], [3, 5], [3, 2]]")
    run_subq(subq_bin, "distill", "--recipe", recipe, "--out", out, "--threads", "2")
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["attention_heads"] == {"0": [1], "3": [5, 2]}
    assert cfg["attn_cfg"]["head_dim"] == 8 and "attention_layers" not in cfg
    check_parity(subq_bin, out, tmp_path)
    # KV cache for the 3 kept heads only: 3 heads x (k + v) x head_dim 8 x 4 bytes per token; the rest is
    # the constant recurrent state. The pure student's state does not grow at all.
    grow = state_bytes(subq_bin, out, tmp_path, 96) - state_bytes(subq_bin, out, tmp_path, 32)
    assert grow == 64 * 3 * 2 * 8 * 4, grow
    teacher_grow = (state_bytes(subq_bin, data_dir / "stories260K" / "hf", tmp_path, 96)
                    - state_bytes(subq_bin, data_dir / "stories260K" / "hf", tmp_path, 32))
    assert teacher_grow == 64 * 5 * 4 * 2 * 8 * 4  # 5 layers x 4 kv heads


def test_kept_heads_from_a_subq_heads_ranking(subq_bin, data_dir, corpus, tmp_path):
    heads = tmp_path / "heads.json"
    run_subq(subq_bin, "heads", "--teacher", data_dir / "stories260K" / "hf", "--probe", "kv-retrieval", "--pairs", "4",
             "--n", "4", "--out", heads)
    ranked = sorted(json.loads(heads.read_text())["heads"], key=lambda h: h["rank"])
    out = tmp_path / "hh"
    recipe = write_recipe(tmp_path / "r.yaml", data_dir, corpus, f"keep_heads: {heads}, keep_top_k: 2")
    run_subq(subq_bin, "distill", "--recipe", recipe, "--out", out, "--threads", "2")
    cfg = json.loads((out / "config.json").read_text())
    want = {}
    for h in ranked[:2]:
        want.setdefault(str(h["layer"]), []).append(h["head"])
    assert cfg["attention_heads"] == want
    check_parity(subq_bin, out, tmp_path)


@pytest.mark.parametrize("keep,message", [
    ("keep_heads: [[9, 0]]", "layer 9 is out of range"),
    ("keep_heads: [[0, 8]]", "head 8 of layer 0 is out of range"),
    ("keep_heads: [[0, 1], [0, 1]]", "listed twice"),
    ("keep_heads: [1, 2]", "list of [layer, head] pairs"),
    ("keep_heads: /nonexistent/heads.json, keep_top_k: 2", "cannot be opened"),
    ("keep_heads: HEADS", "exactly one of 'keep_top_k' or 'keep_fraction'"),
    ("keep_heads: HEADS, keep_top_k: 99", "keeping 99 heads of the 40"),
    ("keep_top_k: 3", "need 'student.keep_heads"),
])
def test_bad_keep_heads_fail_before_training(subq_bin, data_dir, corpus, tmp_path, keep, message):
    heads = tmp_path / "heads.json"
    heads.write_text(json.dumps({"heads": [{"layer": l, "head": h, "rank": 1 + l * 8 + h}
                                           for l in range(5) for h in range(8)]}))
    recipe = write_recipe(tmp_path / "r.yaml", data_dir, corpus, keep.replace("HEADS", str(heads)))
    out = tmp_path / "out"
    p = run_subq(subq_bin, "distill", "--recipe", recipe, "--out", out, check=False)
    assert p.returncode != 0
    assert message in p.stderr, p.stderr
    assert not (out / "metrics.jsonl").exists()
