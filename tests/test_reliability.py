"""Regression tests of issue 7 for the engine-side commands: every bad input is one clear stderr line
and a non-zero exit (never a signal, never exit 0 with garbage). Real models and texts throughout."""
import json
import shutil
import struct

import pytest

from conftest import run_subq

S260 = "stories260K"


def _one_error_line(p, *needles):
    assert p.returncode > 0, f"exit {p.returncode} (negative = killed by a signal)\nstderr: {p.stderr[-2000:]}"
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one stderr line, got: {p.stderr[-2000:]!r}"
    for n in needles:
        assert n in lines[0], f"{n!r} not in: {lines[0]}"
    return lines[0]


# ---- tokenizer.json: depth limit and id ranges ----

def _deep_normalizer_json(depth):
    inner = '{"type": "Prepend", "prepend": "x"}'
    norm = '{"type": "Sequence", "normalizers": [' * depth + inner + "]}" * depth
    return ('{"model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": []}, "normalizer": ' + norm + "}")


def test_deeply_nested_tokenizer_json_is_an_error(subq_bin, tmp_path):
    p = tmp_path / "tokenizer.json"
    p.write_text(_deep_normalizer_json(40000))  # ~1.4 MB, crashed every command with a stack overflow
    r = run_subq(subq_bin, "tokenize", "--tokenizer", p, "--text", "a", check=False, timeout=60)
    _one_error_line(r, str(p), "deeper than")
    ok = tmp_path / "ok" / "tokenizer.json"
    ok.parent.mkdir()
    ok.write_text(_deep_normalizer_json(3))
    assert run_subq(subq_bin, "tokenize", "--tokenizer", ok, "--text", "ab").returncode == 0


@pytest.mark.parametrize("bad_id", [2 ** 32, 2 ** 32 + 1, -1, 2 ** 63, 1.5, '"7"'])
def test_tokenizer_json_ids_out_of_range_are_errors(subq_bin, tmp_path, bad_id):
    p = tmp_path / "tokenizer.json"
    p.write_text('{"model": {"type": "BPE", "vocab": {"a": 0, "b": %s}, "merges": []}}' % bad_id)
    r = run_subq(subq_bin, "tokenize", "--tokenizer", p, "--text", "ab", check=False, timeout=60)
    _one_error_line(r, str(p), "'b'")
    q = tmp_path / "added.json"
    q.write_text('{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, '
                 '"added_tokens": [{"id": %s, "content": "<x>"}]}' % bad_id)
    r = run_subq(subq_bin, "tokenize", "--tokenizer", q, "--text", "ab", check=False, timeout=60)
    _one_error_line(r, str(q), "added token id")


def test_deeply_nested_config_json_is_an_error(subq_bin, data_dir, tmp_path):
    d = tmp_path / "m"
    shutil.copytree(data_dir / S260 / "hf", d)
    cfg = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps(cfg)[:-1] + ', "x": ' + "[" * 100000 + "]" * 100000 + "}")
    _one_error_line(run_subq(subq_bin, "inspect", "--model", d, check=False, timeout=60), "config.json", "deeper than")


# ---- tokenize --decode-ids ----

@pytest.mark.parametrize("ids", ["1,512,3", "1,-1", "99999999999", "1,4294967297"])
def test_decode_ids_out_of_range_are_errors(subq_bin, data_dir, ids):
    r = run_subq(subq_bin, "tokenize", "--tokenizer", data_dir / S260 / "tok512.bin", "--decode-ids", ids,
                 check=False)
    _one_error_line(r)
    assert r.stdout == ""


def test_decode_batch_ids_out_of_range_are_errors(subq_bin, data_dir, tmp_path):
    f = tmp_path / "ids.json"
    f.write_text("[[1, 2], [3, 4294967297]]")
    r = run_subq(subq_bin, "tokenize", "--tokenizer", data_dir / S260 / "tok512.bin", "--decode-batch", f,
                 check=False)
    _one_error_line(r, "4294967297")


# ---- sampler parameters ----

@pytest.mark.parametrize("args", [["--temperature", "nan"], ["--temperature", "inf"], ["--top-p", "nan"],
                                  ["--temperature", "0.8", "--top-p", "0"]])
def test_bad_sampler_parameters_are_errors(subq_bin, data_dir, args):
    r = run_subq(subq_bin, "generate", "--model", data_dir / S260 / "stories260K.bin", "--prompt", "Once",
                 "--max-tokens", "8", *args, check=False)
    assert r.returncode > 0, r.stderr
    assert r.stdout == ""


# ---- non-finite weights ----

@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_weights_are_reported_at_load(subq_bin, data_dir, tmp_path, value):
    src = (data_dir / S260 / "stories260K.bin").read_bytes()
    bad = tmp_path / "stories260K.bin"
    off = 28 + 4 * 1000  # a weight of the embedding table
    bad.write_bytes(src[:off] + struct.pack("<f", value) + src[off + 4:])
    shutil.copy(data_dir / S260 / "tok512.bin", tmp_path / "tok512.bin")
    for cmd in (["generate", "--prompt", "Once", "--max-tokens", "4"], ["inspect"]):
        r = run_subq(subq_bin, cmd[0], "--model", bad, *cmd[1:], check=False)
        _one_error_line(r, "model.embed_tokens.weight", "non-finite")
        assert r.stdout == ""
    r = run_subq(subq_bin, "generate", "--model", bad, "--prompt", "Once", "--max-tokens", "4", "--no-check-weights",
                 check=False)
    assert r.returncode >= 0  # loads anyway; the non-finite logits may then stop generation with an error


def test_non_finite_logits_stop_generation(subq_bin, data_dir, tmp_path):
    src = bytearray((data_dir / S260 / "stories260K.bin").read_bytes())
    dim, vocab = struct.unpack("<i", src[0:4])[0], 512
    for i in range(vocab * dim):  # the whole (tied) embedding / LM head
        struct.pack_into("<f", src, 28 + 4 * i, float("nan"))
    bad = tmp_path / "stories260K.bin"
    bad.write_bytes(bytes(src))
    shutil.copy(data_dir / S260 / "tok512.bin", tmp_path / "tok512.bin")
    r = run_subq(subq_bin, "generate", "--model", bad, "--prompt", "Once", "--max-tokens", "4", "--no-check-weights",
                 check=False)
    _one_error_line(r, "non-finite logit")


# ---- corpora that are not text ----

def test_binary_eval_text_is_an_error(subq_bin, data_dir, tmp_path):
    for name, data in {"binary": (data_dir / S260 / "stories260K.bin").read_bytes()[:5000],
                       "latin1": "Once upon a time, café".encode("latin-1")}.items():
        f = tmp_path / f"{name}.txt"
        f.write_bytes(data)
        r = run_subq(subq_bin, "eval", "--model", data_dir / S260 / "stories260K.bin", "--text", f, check=False)
        _one_error_line(r, str(f), "offset")


# ---- context limits (stories260K: max_seq_len 512) ----

def test_generate_beyond_the_context_limit_is_refused(subq_bin, data_dir):
    model = data_dir / S260 / "stories260K.bin"
    r = run_subq(subq_bin, "generate", "--model", model, "--prompt", "Once", "--max-tokens", "600", check=False)
    _one_error_line(r, "context limit of 512", "--allow-longer")
    r = run_subq(subq_bin, "generate", "--model", model, "--prompt", "Once", "--max-tokens", "600", "--allow-longer")
    assert "warning" in r.stderr and "stopping at the limit" in r.stderr and r.stdout.startswith("Once")


def test_eval_window_beyond_the_context_limit_is_refused(subq_bin, data_dir):
    args = ["eval", "--model", data_dir / S260 / "stories260K.bin", "--text",
            data_dir / "text/tinystories-sample.txt", "--max-tokens", "1200"]
    _one_error_line(run_subq(subq_bin, *args, "--window", "1024", check=False), "--window", "512")
    r = run_subq(subq_bin, *args, "--window", "1024", "--allow-longer")
    assert "warning" in r.stderr and "window 512" in r.stdout


def test_inspect_states_the_context_limit(subq_bin, data_dir):
    r = run_subq(subq_bin, "inspect", "--model", data_dir / S260 / "hf")
    assert "context limit: 512 tokens" in r.stdout
