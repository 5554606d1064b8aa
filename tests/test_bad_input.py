"""Corrupted copies of the real checkpoints through the CLI: `subq inspect --model BAD` must exit
non-zero (never by a signal), print nothing on stdout, and exactly one line on stderr that names the
bad file."""
import json
import os
import shutil
import struct

import pytest

from conftest import run_subq


def _check_rejected(subq_bin, model, name):
    p = run_subq(subq_bin, "inspect", "--model", model, check=False, timeout=60)
    assert p.returncode > 0, f"exit {p.returncode} (negative = killed by a signal)\nstderr: {p.stderr}"
    assert p.stdout == "", f"stdout not empty: {p.stdout[:500]}"
    lines = p.stderr.splitlines()
    assert len(lines) == 1 and lines[0].strip(), f"expected one stderr line, got: {p.stderr!r}"
    assert name in lines[0], f"stderr does not name {name}: {lines[0]}"
    return lines[0]


# ---- llama2.c .bin ----

def _bin_cases(b):
    size = len(b)
    hdr = lambda i, v: b[: 4 * i] + struct.pack("<i", v) + b[4 * i + 4:]
    return {
        "empty": b"",
        "short_header": b[:20],
        "header_only": b[:28],
        "trunc_half": b[: size // 2],
        "trunc_minus4": b[: size - 4],
        "extra_byte": b + b"\0",
        "dim_zero": hdr(0, 0),
        "dim_negative": hdr(0, -64),
        "dim_huge": hdr(0, 1 << 30),
        "layers_huge": hdr(2, 2_000_000_000),
        "heads_not_dividing": hdr(3, 7),
        "kv_not_dividing": hdr(4, 3),
        "vocab_unshared_no_wcls": hdr(5, -512),
        "vocab_intmin": hdr(5, -(2 ** 31)),
        "seq_zero": hdr(6, 0),
    }


BIN_CASES = ["empty", "short_header", "header_only", "trunc_half", "trunc_minus4", "extra_byte", "dim_zero",
             "dim_negative", "dim_huge", "layers_huge", "heads_not_dividing", "kv_not_dividing",
             "vocab_unshared_no_wcls", "vocab_intmin", "seq_zero"]


@pytest.mark.parametrize("case", BIN_CASES)
def test_llama2c_corrupt(subq_bin, data_dir, tmp_path, case):
    b = (data_dir / "stories260K" / "stories260K.bin").read_bytes()
    p = tmp_path / f"bad_{case}.bin"
    p.write_bytes(_bin_cases(b)[case])
    line = _check_rejected(subq_bin, str(p), p.name)
    if case == "trunc_minus4":
        assert "1056540" in line and "1056536" in line


# ---- GGUF ----

def _tensor_info_offset(b, name):
    key = struct.pack("<Q", len(name)) + name.encode()
    i = b.index(key)
    return i + len(key)  # n_dims u32, dims u64 * n, type u32, offset u64


def _poke(b, off, fmt, v):
    return b[:off] + struct.pack(fmt, v) + b[off + struct.calcsize(fmt):]


def _gguf_cases(b):
    q = _tensor_info_offset(b, "blk.0.attn_q.weight")
    tok = b.index(b"tokenizer.ggml.tokens") + 21  # u32 type, u32 elem type, u64 count, first string
    arch = b.index(b"general.architecture") + 20 + 4 + 8
    return {
        "trunc_4": b[:4],
        "trunc_20": b[:20],
        "trunc_kv": b[:5000],
        "trunc_infos": b[:q],
        "trunc_data": b[: len(b) // 2],
        "bad_magic": b"GGUX" + b[4:],
        "bad_version": _poke(b, 4, "<I", 9),
        "huge_tensor_count": _poke(b, 8, "<Q", 1 << 62),
        "huge_kv_count": _poke(b, 16, "<Q", 1 << 62),
        "huge_key_len": _poke(b, 24, "<Q", 1 << 50),
        "huge_array_count": _poke(b, tok + 8, "<Q", 1 << 60),
        "huge_string_len": _poke(b, tok + 16, "<Q", (1 << 64) - 8),
        "bad_value_type": _poke(b, tok, "<I", 77),
        "n_dims_5": _poke(b, q, "<I", 5),
        "tensor_type_q4_k": _poke(b, q + 20, "<I", 12),
        "tensor_type_q8_0_rows_172": _poke(b, _tensor_info_offset(b, "blk.0.ffn_down.weight") + 20, "<I", 8),
        "offset_past_eof": _poke(b, q + 24, "<Q", 1 << 40),
        "offset_overlap": _poke(b, q + 24, "<Q", 262400 + 256),
        "wrong_shape": _poke(b, q + 4, "<Q", 32),
        "huge_dims": _poke(_poke(b, q + 4, "<Q", (1 << 64) - 1), q + 12, "<Q", 1 << 63),
        "wrong_arch": b[:arch] + b"mamba" + b[arch + 5:],
    }


GGUF_CASES = ["trunc_4", "trunc_20", "trunc_kv", "trunc_infos", "trunc_data", "bad_magic", "bad_version",
              "huge_tensor_count", "huge_kv_count", "huge_key_len", "huge_array_count", "huge_string_len",
              "bad_value_type", "n_dims_5", "tensor_type_q4_k", "tensor_type_q8_0_rows_172", "offset_past_eof", "offset_overlap", "wrong_shape",
              "huge_dims", "wrong_arch"]


@pytest.mark.parametrize("case", GGUF_CASES)
def test_gguf_corrupt(subq_bin, data_dir, tmp_path, case):
    b = (data_dir / "stories260K" / "stories260K.gguf").read_bytes()
    p = tmp_path / f"bad_{case}.gguf"
    p.write_bytes(_gguf_cases(b)[case])
    line = _check_rejected(subq_bin, str(p), p.name)
    if case == "tensor_type_q4_k":
        assert "blk.0.attn_q.weight" in line and "Q4_K (12)" in line
    if case == "tensor_type_q8_0_rows_172":
        assert "blk.0.ffn_down.weight" in line and "whole blocks of 32" in line


# ---- HF folder (config.json + model.safetensors) ----

def _read_st(path):
    b = path.read_bytes()
    n = struct.unpack("<Q", b[:8])[0]
    return b, n, json.loads(b[8:8 + n])


def _write_st(path, header, data):
    h = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(h)) + h + data)


EMB = "model.embed_tokens.weight"


def _st_edit(case, header):
    """Edits a parsed safetensors header in place (None: not a header edit)."""
    edits = {
        "unknown_dtype": lambda h: h[EMB].update(dtype="I64"),
        "wrong_shape": lambda h: h[EMB].update(shape=[512, 65]),
        "transposed_shape": lambda h: h["model.layers.0.self_attn.k_proj.weight"].update(shape=[64, 32]),
        "offset_past_eof": lambda h: h[EMB].update(data_offsets=[0, 1 << 40]),
        "offset_reversed": lambda h: h[EMB].update(data_offsets=[131072, 0]),
        "overlap": lambda h: h["model.norm.weight"].update(data_offsets=[0, 256]),
        "missing_tensor": lambda h: h.pop("model.layers.2.mlp.up_proj.weight"),
        "shape_not_list": lambda h: h[EMB].update(shape="512x64"),
        "huge_shape": lambda h: h[EMB].update(shape=[1 << 40, 1 << 40]),
    }
    if case not in edits:
        return False
    edits[case](header)
    return True


ST_CASES = ["unknown_dtype", "wrong_shape", "transposed_shape", "offset_past_eof", "offset_reversed", "overlap",
            "missing_tensor", "shape_not_list", "huge_shape", "header_len_past_eof", "header_len_huge",
            "malformed_json", "truncated_data", "truncated_7"]
CFG_CASES = ["config_malformed", "config_wrong_type", "config_missing_field", "config_bad_heads",
             "config_unknown_model_type", "config_missing", "config_disagrees", "weights_missing"]


@pytest.mark.parametrize("case", ST_CASES + CFG_CASES)
def test_hf_folder_corrupt(subq_bin, data_dir, tmp_path, case):
    src = data_dir / "stories260K" / "hf"
    d = tmp_path / f"hf_{case}"
    d.mkdir()
    shutil.copy(src / "config.json", d / "config.json")
    shutil.copy(src / "model.safetensors", d / "model.safetensors")
    st, cfg = d / "model.safetensors", d / "config.json"
    b, n, header = _read_st(st)
    data = b[8 + n:]
    config = json.loads(cfg.read_text())
    name = "model.safetensors"
    if _st_edit(case, header):
        _write_st(st, header, data)
    elif case == "header_len_past_eof":
        st.write_bytes(struct.pack("<Q", len(b)) + b[8:])
    elif case == "header_len_huge":
        st.write_bytes(struct.pack("<Q", (1 << 64) - 1) + b[8:])
    elif case == "malformed_json":
        st.write_bytes(b[:8] + b"[" + b[9:])
    elif case == "truncated_data":
        st.write_bytes(b[: len(b) // 2])
    elif case == "truncated_7":
        st.write_bytes(b[:7])
    else:
        name = "config.json"
        if case == "config_malformed":
            cfg.write_text(cfg.read_text()[:100])
        elif case == "config_wrong_type":
            config["hidden_size"] = "64"
        elif case == "config_missing_field":
            del config["num_hidden_layers"]
        elif case == "config_bad_heads":
            config["num_key_value_heads"] = 3
        elif case == "config_unknown_model_type":
            config["model_type"] = "gpt2"
        elif case == "config_missing":
            cfg.unlink()
        elif case == "config_disagrees":
            config["intermediate_size"] = 173
            name = "model.safetensors"
        elif case == "weights_missing":
            st.unlink()
            name = d.name
        if case not in ("config_malformed", "config_missing", "weights_missing"):
            cfg.write_text(json.dumps(config))
    _check_rejected(subq_bin, str(d), name if name != "model.safetensors" else str(st))


# ---- quantized HF folder (`subq quantize --type q8` of stories260K; layout in src/io/quantized.h) ----

QW = "model.layers.0.self_attn.q_proj.weight"  # [64, 64]: I8 [64, 64] + F16 scales [64, 2]


def _resize(h, name, shape, nbytes, dtype=None):
    begin = h[name]["data_offsets"][0]
    h[name].update(shape=shape, data_offsets=[begin, begin + nbytes], **({"dtype": dtype} if dtype else {}))


QUANT_CASES = {  # case: (edit of config.json, edit of the safetensors header, file the error names, words)
    "block_64": (lambda c: c["quantization"].update(block=64), None, "config.json", "block"),
    "type_q3": (lambda c: c["quantization"].update(type="q3"), None, "config.json", "q3"),
    "no_entry": (lambda c: c.pop("quantization"), None, "model.safetensors", "quantization"),
    "type_disagrees": (lambda c: c["quantization"].update(type="q4"), None, "model.safetensors", "q4"),
    "scale_missing": (None, lambda h: h.pop(QW + "_scale"), "model.safetensors", QW + "_scale"),
    "scale_count": (None, lambda h: _resize(h, QW + "_scale", [64, 1], 128), "model.safetensors", "[64, 2]"),
    "scale_dtype": (None, lambda h: _resize(h, QW + "_scale", [64, 1], 256, "F32"), "model.safetensors", "F16"),
    "cols_not_blocks": (None, lambda h: _resize(h, QW, [64, 48], 64 * 48), "model.safetensors", "block size 32"),
    "truncated": (None, None, "model.safetensors", ""),
}


@pytest.mark.parametrize("case", list(QUANT_CASES))
def test_quantized_folder_corrupt(subq_bin, data_dir, tmp_path, case):
    d = tmp_path / f"q8_{case}"
    run_subq(subq_bin, "quantize", "--model", data_dir / "stories260K" / "hf", "--type", "q8", "--out", d)
    edit_config, edit_header, name, words = QUANT_CASES[case]
    st, cfg = d / "model.safetensors", d / "config.json"
    if edit_config:
        config = json.loads(cfg.read_text())
        edit_config(config)
        cfg.write_text(json.dumps(config))
    b, n, header = _read_st(st)
    if edit_header:
        edit_header(header)
        _write_st(st, header, b[8 + n:])
    if case == "truncated":
        st.write_bytes(b[:-1])
    line = _check_rejected(subq_bin, str(d), name)
    assert words in line


def test_missing_path(subq_bin, tmp_path):
    _check_rejected(subq_bin, str(tmp_path / "no_such_model.bin"), "no_such_model.bin")


def test_real_files_still_inspect(subq_bin, data_dir):
    """The corruptions above are errors only because of the edits: the originals inspect fine."""
    for m in ["stories260K/stories260K.bin", "stories260K/stories260K.gguf", "stories260K/hf",
              "llama2xs/model.bin", "babyllama/model5000.bin"]:
        p = run_subq(subq_bin, "inspect", "--model", str(data_dir / m), timeout=60)
        assert "tensors" in p.stdout


def test_quantized_folder_inspects(subq_bin, data_dir, tmp_path):
    run_subq(subq_bin, "quantize", "--model", data_dir / "stories260K" / "hf", "--type", "q8", "--out", tmp_path / "q8")
    p = run_subq(subq_bin, "inspect", "--model", tmp_path / "q8", timeout=60)
    assert "quantization = q8 (block 32)" in p.stdout and "I8" in p.stdout
