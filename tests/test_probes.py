"""Probes through the CLI on the real stories260K model: eval --probe, data probe (JSONL), heads."""
import json

import pytest

from conftest import run_subq

PROBES = ["kv-retrieval", "mqar", "parity", "modular"]


@pytest.mark.parametrize("probe", PROBES)
def test_eval_probe_json(subq_bin, data_dir, probe):
    model = data_dir / "stories260K" / "hf"
    args = ["eval", "--model", model, "--probe", probe, "--n", "20", "--seed", "3", "--json"]
    j = json.loads(run_subq(subq_bin, *args).stdout)
    assert j["probe"]["name"] == probe and j["n"] == 20 and j["seed"] == 3
    assert j["examples"] == 20
    assert j["answers"] == (20 * 8 if probe == "mqar" else 20)
    assert 0.0 <= j["ci95"][0] <= j["accuracy"] <= j["ci95"][1] <= 1.0
    assert j["accuracy"] == j["answers_correct"] / j["answers"]
    assert j["answer_nll"] > 0 and j["tokens"] > 0
    # Deterministic, and the same from the llama2.c file of the same weights.
    again = json.loads(run_subq(subq_bin, *args).stdout)
    assert again == j
    args[2] = data_dir / "stories260K" / "stories260K.bin"
    other = json.loads(run_subq(subq_bin, *args, "--tokenizer", data_dir / "stories260K" / "tok512.bin").stdout)
    assert other["answers_correct"] == j["answers_correct"]
    assert abs(other["answer_nll"] - j["answer_nll"]) < 1e-3


def test_eval_probe_text_output_reports_stories260k_kv_accuracy(subq_bin, data_dir):
    p = run_subq(subq_bin, "eval", "--model", data_dir / "stories260K" / "hf", "--probe", "kv-retrieval",
                 "--n", "100")
    print(p.stdout)
    assert p.stdout.startswith("kv-retrieval: accuracy ")
    assert "95% CI [" in p.stdout
    acc = float(p.stdout.split()[2])
    assert acc < 0.2  # a TinyStories model cannot retrieve


def test_eval_needs_text_or_probe_and_refuses_bad_probes(subq_bin, data_dir):
    model = data_dir / "stories260K" / "hf"
    p = run_subq(subq_bin, "eval", "--model", model, check=False)
    assert p.returncode == 1 and "--text FILE" in p.stderr and "--probe NAME" in p.stderr
    p = run_subq(subq_bin, "eval", "--model", model, "--probe", "copying", check=False)
    assert p.returncode != 0 and "copying" in p.stderr
    p = run_subq(subq_bin, "eval", "--model", model, "--probe", "mqar", "--queries", "30", check=False)
    assert p.returncode == 1 and "--queries 30" in p.stderr
    p = run_subq(subq_bin, "eval", "--model", model, "--probe", "kv-retrieval", "--pairs", "100", "--n", "2",
                 check=False)
    assert p.returncode == 1 and "context limit" in p.stderr
    text = data_dir / "text" / "tinystories-sample.txt"
    p = run_subq(subq_bin, "eval", "--model", model, "--probe", "parity", "--text", text, check=False)
    assert p.returncode != 0 and "excludes" in p.stderr


def test_data_probe_writes_deterministic_jsonl(subq_bin, tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    for out in (a, b):
        p = run_subq(subq_bin, "data", "probe", "--probe", "mqar", "--n", "25", "--seed", "4", "--out", out)
        assert "25 mqar examples" in p.stdout
    assert a.read_bytes() == b.read_bytes()
    rows = [json.loads(l) for l in a.read_text().splitlines()]
    assert len(rows) == 25 and [r["index"] for r in rows] == list(range(25))
    for r in rows:
        assert r["probe"] == "mqar" and len(r["answers"]) == 8
        for (s, e), ans in zip(r["answer_spans"], r["answers"]):
            assert r["text"][s:e] == ans  # ASCII text: byte and character offsets agree
    p = run_subq(subq_bin, "data", "probe", "--probe", "parity", "--n", "3", "--out", tmp_path / "no" / "x.jsonl",
                 check=False)
    assert p.returncode == 1 and "cannot open" in p.stderr


def test_data_prepare_reads_probe_jsonl(subq_bin, data_dir, tmp_path):
    jsonl = tmp_path / "kv.jsonl"
    run_subq(subq_bin, "data", "probe", "--probe", "kv-retrieval", "--n", "40", "--out", jsonl)
    out = tmp_path / "shards"
    p = run_subq(subq_bin, "data", "prepare", "--tokenizer", data_dir / "stories260K" / "hf", "--in", jsonl,
                 "--out", out)
    assert "held-out tokens" in p.stdout
    assert "Memorize the following dictionary:" in (out / "held_out.txt").read_text()


def test_heads_ranking_and_random_control(subq_bin, data_dir, tmp_path):
    model = data_dir / "stories260K" / "stories260K.bin"
    tok = data_dir / "stories260K" / "tok512.bin"
    out = tmp_path / "heads.json"
    base = ["heads", "--teacher", model, "--tokenizer", tok, "--n", "8", "--pairs", "6", "--out", out]
    p = run_subq(subq_bin, *base)
    assert "40 heads, ablation ranking" in p.stdout
    j = json.loads(out.read_text())
    assert j["method"] == "ablation" and j["probe"] == {"name": "kv-retrieval", "pairs": 6}
    assert {"accuracy", "ci95", "answer_nll"} <= set(j["baseline"])
    heads = j["heads"]
    assert len(heads) == 40 and [h["rank"] for h in heads] == list(range(1, 41))
    keys = [(-h["accuracy_drop"], -h["loss_increase"]) for h in heads]
    assert keys == sorted(keys)
    assert len({(h["layer"], h["head"]) for h in heads}) == 40
    first = out.read_text()
    run_subq(subq_bin, *base)
    assert out.read_text() == first  # deterministic

    rnd = tmp_path / "random.json"
    run_subq(subq_bin, "heads", "--teacher", model, "--random", "--seed", "5", "--out", rnd)
    r = json.loads(rnd.read_text())
    assert r["method"] == "random" and r["seed"] == 5
    order = [(h["layer"], h["head"]) for h in r["heads"]]
    assert sorted(order) == sorted((h["layer"], h["head"]) for h in heads)
    run_subq(subq_bin, "heads", "--teacher", model, "--random", "--seed", "6", "--out", rnd)
    assert [(h["layer"], h["head"]) for h in json.loads(rnd.read_text())["heads"]] != order
