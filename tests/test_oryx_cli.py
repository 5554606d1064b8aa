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
