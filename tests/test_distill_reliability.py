"""Regression tests of issue 7 for `subq distill`: damaged checkpoints fall back to the previous one, a
changed run is refused on --resume, concurrent runs into one --out are refused, an unwritable --out and a
full disk are clear errors (never an abort), and the teacher's context limit bounds seq_len."""
import json
import os
import resource
import shutil
import signal
import subprocess
import time
import zipfile

import pytest

from conftest import run_subq
from test_distill import corpus, write_recipe  # noqa: F401 (corpus is a fixture)

# Stage 3 only: 6 optimiser steps, a checkpoint every 2 (keep-2 leaves steps 4 and 6 of a finished run).
SETS = ["--threads", "2", "--set", "stages.matrix_orientation.tokens=0", "--set", "stages.hidden_state.tokens=0",
        "--set", "stages.end_to_end.tokens=1536", "--set", "data.eval_tokens=128"]


def distill(subq_bin, recipe, out, *extra, check=True, preexec_fn=None):
    args = [subq_bin, "distill", "--recipe", str(recipe), "--out", str(out), *SETS, *map(str, extra)]
    p = subprocess.run(args, capture_output=True, text=True, timeout=600, preexec_fn=preexec_fn)
    if check:
        assert p.returncode == 0, p.stderr[-3000:]
    return p


def last_error(p):
    assert p.returncode == 1, f"exit {p.returncode} (negative = killed by a signal)\n{p.stderr[-3000:]}"
    line = p.stderr.strip().splitlines()[-1]
    assert line.startswith("subq: error: "), line
    return line


def checkpoints(out):
    return sorted((out / "checkpoints").glob("ckpt-*.pt"))


@pytest.fixture(scope="module")
def reference(subq_bin, data_dir, corpus, tmp_path_factory):  # noqa: F811
    """An uninterrupted run and its recipe."""
    d = tmp_path_factory.mktemp("ref")
    recipe = write_recipe(d / "r.yaml", data_dir, corpus)
    distill(subq_bin, recipe, d / "out")
    assert len(checkpoints(d / "out")) == 2, "keep-2 checkpoints"
    return recipe, (d / "out" / "model.safetensors").read_bytes()


def stopped_run(subq_bin, recipe, out, steps=4):
    p = distill(subq_bin, recipe, out, "--stop-after-steps", steps, check=False)
    assert "stopped after" in p.stderr
    return checkpoints(out)


def flip_bytes_in_largest_record(path):
    """Flips 64 bytes inside the largest tensor record of a torch checkpoint (an uncompressed zip)."""
    with zipfile.ZipFile(path) as z:
        info = max(z.infolist(), key=lambda i: i.file_size)
    b = bytearray(path.read_bytes())
    name_len, extra_len = int.from_bytes(b[info.header_offset + 26:info.header_offset + 28], "little"), \
        int.from_bytes(b[info.header_offset + 28:info.header_offset + 30], "little")
    start = info.header_offset + 30 + name_len + extra_len + info.file_size // 2
    for i in range(start, start + 64):
        b[i] ^= 0x5A
    path.write_bytes(bytes(b))


@pytest.mark.parametrize("damage", ["flip_64_bytes", "truncate"])
def test_damaged_latest_checkpoint_falls_back_to_the_previous(subq_bin, reference, tmp_path, damage):
    recipe, want = reference
    out = tmp_path / "out"
    cks = stopped_run(subq_bin, recipe, out)
    assert len(cks) == 2
    latest = cks[-1]
    if damage == "truncate":
        latest.write_bytes(latest.read_bytes()[: latest.stat().st_size // 2])
    else:
        flip_bytes_in_largest_record(latest)
    p = distill(subq_bin, recipe, out, "--resume", *([] if damage == "flip_64_bytes" else ["--stop-after-steps", 1]),
                check=False)
    assert "falling back" in p.stderr and latest.name in p.stderr
    assert "resuming at stage 3 step 2" in p.stderr
    if damage == "flip_64_bytes":
        assert p.returncode == 0, p.stderr[-3000:]
        assert (out / "model.safetensors").read_bytes() == want, "the fallback run must equal an uninterrupted one"


def test_changed_run_is_refused_on_resume(subq_bin, reference, corpus, tmp_path):  # noqa: F811
    recipe, _ = reference
    out = tmp_path / "out"
    stopped_run(subq_bin, recipe, out, steps=2)
    line = last_error(distill(subq_bin, recipe, out, "--resume", "--set", "stages.end_to_end.lr=0.002", check=False))
    assert "recipe.stages.end_to_end.lr: 0.001 -> 0.002" in line and "--resume-anyway" in line
    line = last_error(distill(subq_bin, recipe, out, "--resume", "--set", "seed=8", check=False))
    assert "recipe.seed: 7 -> 8" in line
    # Same path, different contents: the data identity is the file's checksum.
    changed = tmp_path / "stories.txt"
    shutil.copy(corpus, changed)
    with open(changed, "a") as f:
        f.write("<|endoftext|>One more story about a cat.")
    recipe2 = write_recipe(tmp_path / "r2.yaml", recipe.parent.parent, changed)
    recipe2.write_text(recipe.read_text().replace(str(corpus), str(changed)))
    line = last_error(distill(subq_bin, recipe2, out, "--resume", check=False))
    assert "data_files" in line
    p = distill(subq_bin, recipe, out, "--resume", "--resume-anyway", "--set", "stages.end_to_end.lr=0.002",
                "--stop-after-steps", 1, check=False)
    assert "resuming anyway (--resume-anyway)" in p.stderr and "stopped after 1 steps" in p.stderr


def test_second_run_into_the_same_out_is_refused(subq_bin, reference, tmp_path):
    recipe, _ = reference
    out = tmp_path / "out"
    first = subprocess.Popen([subq_bin, "distill", "--recipe", str(recipe), "--out", str(out), *SETS,
                              "--set", "stages.end_to_end.tokens=256000"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (out / "metrics.jsonl").exists():
            time.sleep(0.05)
        assert first.poll() is None
        for extra in ([], ["--resume"]):
            line = last_error(distill(subq_bin, recipe, out, *extra, check=False))
            assert "in use by another subq run" in line and f"pid {first.pid}" in line
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    # The kernel released the lock with the killed process.
    p = distill(subq_bin, recipe, out, "--resume", "--set", "stages.end_to_end.tokens=256000",
                "--stop-after-steps", 1, check=False)
    assert "in use" not in p.stderr and "stopped after 1 steps" in p.stderr


def _file_size_limit(nbytes):
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, nbytes))


def test_unwritable_out_is_refused_before_training(subq_bin, reference, tmp_path):
    recipe, _ = reference
    p = distill(subq_bin, recipe, tmp_path / "out", check=False, preexec_fn=_file_size_limit(1024))
    assert "not writable" in last_error(p)
    assert " step " not in p.stderr, "no training before the check"
    if os.geteuid() != 0:  # root writes into read-only folders
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        assert "not writable" in last_error(distill(subq_bin, recipe, ro, check=False))


def test_disk_full_during_a_checkpoint_keeps_the_previous_one(subq_bin, reference, tmp_path):
    recipe, _ = reference
    out = tmp_path / "out"
    cks = stopped_run(subq_bin, recipe, out, steps=2)
    size = cks[-1].stat().st_size
    before = {c.name: c.read_bytes() for c in checkpoints(out)}
    # Every file may grow to half a checkpoint: the next checkpoint write fails (EFBIG, like ENOSPC).
    p = distill(subq_bin, recipe, out, "--resume", check=False, preexec_fn=_file_size_limit(size // 2))
    line = last_error(p)
    assert "cannot write checkpoint" in line and "previous checkpoint is intact" in line
    assert {c.name: c.read_bytes() for c in checkpoints(out)} == before
    assert not list((out / "checkpoints").glob("*.tmp"))
    p = distill(subq_bin, recipe, out, "--resume", "--stop-after-steps", 1, check=False)
    assert "resuming at stage 3 step 2" in p.stderr and "stopped after 1 steps" in p.stderr


def test_seq_len_above_the_teachers_limit_is_refused(subq_bin, reference, tmp_path):
    recipe, _ = reference
    line = last_error(distill(subq_bin, recipe, tmp_path / "out", "--set", "seq_len=1024",
                              "--set", "stages.end_to_end.batch_tokens=1024", check=False))
    assert "seq_len 1024" in line and "context limit of 512" in line


def test_binary_corpus_is_refused(subq_bin, reference, data_dir, tmp_path):
    recipe, _ = reference
    binary = tmp_path / "corpus.txt"
    binary.write_bytes((data_dir / "stories260K/stories260K.bin").read_bytes()[:200000])
    r = tmp_path / "r.yaml"
    r.write_text("\n".join(l if not l.startswith("data:") else
                           f"data: {{files: [{binary}], eval_tokens: 1024}}" for l in recipe.read_text().splitlines()))
    line = last_error(distill(subq_bin, r, tmp_path / "out", check=False))
    assert str(binary) in line and "offset" in line


@pytest.mark.parametrize("yaml", ["teacher: " + "[" * 100000 + "]" * 100000,
                                  "teacher: x\nstudent: " + "{a: " * 50000 + "1" + "}" * 50000])
def test_deeply_nested_recipe_is_an_error(subq_bin, tmp_path, yaml):
    r = tmp_path / "deep.yaml"
    r.write_text(yaml + "\n")
    line = last_error(distill(subq_bin, r, tmp_path / "out", check=False))
    assert str(r) in line
