"""Oryx on the CLI: --mode-schedule for generate and eval on an Oryx checkpoint made from stories260K."""
import json
import subprocess
import sys

import pytest

from conftest import ROOT, run_subq

PROMPT = "Once upon a time, Lily"


@pytest.fixture(scope="module", params=["ssd", "gdn"])
def oryx_model(request, data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("oryx") / request.param
    subprocess.run([sys.executable, str(ROOT / "scripts" / "oryx_init.py"), "--teacher",
                    str(data_dir / "stories260K" / "hf"), "--out", str(out), "--recurrence", request.param],
                   check=True)
    return out


def generate(subq_bin, model, *extra):
    return run_subq(subq_bin, "generate", "--model", model, "--prompt", PROMPT, "--max-tokens", "24", *extra).stdout


def test_attention_mode_generates_the_teachers_text(subq_bin, data_dir, oryx_model):
    teacher = generate(subq_bin, data_dir / "stories260K" / "hf")
    assert generate(subq_bin, oryx_model, "--mode-schedule", "attention") == teacher
    # Switching to the (untrained) recurrence for generation changes the continuation, not the prompt.
    switched = generate(subq_bin, oryx_model, "--mode-schedule", "prompt:attention,gen:recurrent")
    assert switched.startswith(PROMPT) and switched != teacher


def test_eval_mode_schedule_reports_attention_fraction(subq_bin, data_dir, oryx_model):
    text = data_dir / "text" / "tinystories-sample.txt"
    args = ["eval", "--model", oryx_model, "--text", text, "--max-tokens", "2000", "--window", "200", "--json"]
    att = json.loads(run_subq(subq_bin, *args, "--mode-schedule", "attention").stdout)
    teacher = json.loads(run_subq(subq_bin, "eval", "--model", data_dir / "stories260K" / "hf", "--text", text,
                                  "--max-tokens", "2000", "--window", "200", "--json").stdout)
    assert abs(att["perplexity"] - teacher["perplexity"]) < 1e-3 * teacher["perplexity"]
    mixed = json.loads(run_subq(subq_bin, *args, "--mode-schedule", "attention:0-16,recurrent:16-").stdout)
    assert mixed["attention_fraction"] == pytest.approx(16 / 200)
    assert mixed["mode_schedule"] == "attention:0-16,recurrent:16-"


@pytest.mark.parametrize("spec,msg", [("attention:5-2", "empty range"), ("fast:0-3", "unknown mode"), ("fast", "expected MODE"),
                                      ("attention:0-9,recurrent:3-", "overlap")])
def test_bad_schedules_are_clear_errors(subq_bin, oryx_model, spec, msg):
    p = run_subq(subq_bin, "generate", "--model", oryx_model, "--prompt", "Hi", "--mode-schedule", spec, check=False)
    assert p.returncode != 0 and msg in p.stderr, p.stderr
    assert p.stdout == ""  # refused before anything is printed


def test_schedule_needs_an_oryx_model(subq_bin, data_dir):
    p = run_subq(subq_bin, "generate", "--model", data_dir / "stories260K" / "hf", "--prompt", "Hi",
                 "--mode-schedule", "attention", check=False)
    assert p.returncode != 0 and "no oryx" in p.stderr
    p = run_subq(subq_bin, "eval", "--model", data_dir / "stories260K" / "hf", "--text",
                 data_dir / "text" / "tinystories-sample.txt", "--mode-schedule", "prompt:attention", check=False)
    assert p.returncode != 0


def test_probe_with_attention_around_answers(subq_bin, data_dir, oryx_model):
    """`subq eval --probe ... --attention-before-answer N`: attention mode on the answers and the N tokens
    before each, recurrence elsewhere. Attention everywhere scores exactly as the teacher (the Oryx
    checkpoint's attention mode is the teacher); N = 0 puts only the answer tokens in attention mode."""
    probe = ["--probe", "kv-retrieval", "--pairs", "4", "--n", "20", "--json"]
    teacher = json.loads(run_subq(subq_bin, "eval", "--model", data_dir / "stories260K" / "hf", *probe).stdout)
    full = json.loads(run_subq(subq_bin, "eval", "--model", oryx_model, *probe,
                               "--attention-before-answer", "100000").stdout)
    assert full["attention_fraction"] == 1.0 and full["answers_correct"] == teacher["answers_correct"]
    assert full["answer_nll"] == pytest.approx(teacher["answer_nll"], rel=1e-4)
    none = json.loads(run_subq(subq_bin, "eval", "--model", oryx_model, *probe, "--attention-before-answer",
                               "0").stdout)
    assert none["attention_tokens"] == none["answer_tokens"]
    assert none["attention_fraction"] == pytest.approx(none["answer_tokens"] / none["tokens"])
    four = json.loads(run_subq(subq_bin, "eval", "--model", oryx_model, *probe, "--attention-before-answer",
                               "4").stdout)
    assert none["attention_tokens"] < four["attention_tokens"] <= none["attention_tokens"] + 4 * four["answers"]


def test_attention_around_answers_needs_an_oryx_model(subq_bin, data_dir):
    p = run_subq(subq_bin, "eval", "--model", data_dir / "stories260K" / "hf", "--probe", "kv-retrieval",
                 "--n", "2", "--attention-before-answer", "4", check=False)
    assert p.returncode != 0 and "needs an Oryx model" in p.stderr, p.stderr
