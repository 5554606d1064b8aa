#!/usr/bin/env python3
"""Converts an HF folder to GGUF with llama.cpp's own converter (convert_hf_to_gguf.py), for the tests
that check subq reads what llama.cpp writes. llama.cpp is not part of subq: pass the llama.cpp source
folder (vendor/llama.cpp of the llama-cpp-python sdist on PyPI:
  pip download --no-deps --no-binary :all: llama-cpp-python==0.3.36 -d DIR && tar xzf ..., then
  SUBQ_LLAMA_CPP=DIR/llama_cpp_python-0.3.36/vendor/llama.cpp).

  gguf_convert.py --llama-cpp DIR --model HF_DIR --outtype f32|f16|bf16|q8_0|q4_0 --out FILE.gguf
  gguf_convert.py --llama-cpp DIR --from-f32 FILE.gguf --outtype q4_0 --out FILE_q4_0.gguf

The converter writes f32/f16/bf16/q8_0 itself; q4_0 (llama-quantize's job, a C++ tool) is made here
from the converter's f32 file with gguf-py's reference Q4_0 quantizer, applied to the tensors
llama-quantize would quantize: 2-D `.weight` matrices other than norms and conv weights whose rows are
whole blocks of 32 (the others stay as they are)."""
import argparse
import os
import subprocess
import sys
import tempfile


def convert(llama_cpp, model, outtype, out):
    subprocess.run([sys.executable, os.path.join(llama_cpp, "convert_hf_to_gguf.py"), model, "--outtype", outtype,
                    "--outfile", out], check=True, capture_output=True)


def requantize_q4_0(llama_cpp, src, out):
    sys.path.insert(0, os.path.join(llama_cpp, "gguf-py"))
    import gguf  # noqa: E402  (from the llama.cpp tree)
    import numpy as np

    reader = gguf.GGUFReader(src)
    arch = reader.fields[gguf.Keys.General.ARCHITECTURE].contents()
    writer = gguf.GGUFWriter(out, arch)
    for field in reader.fields.values():
        if field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF."):
            continue
        val_type = field.types[0]
        sub_type = field.types[-1] if val_type == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), val_type, sub_type=sub_type)
    for t in reader.tensors:
        data, qtype = np.asarray(t.data), t.tensor_type
        quantize = (qtype == gguf.GGMLQuantizationType.F32 and data.ndim == 2 and t.name.endswith(".weight")
                    and not t.name.endswith("_norm.weight") and "conv1d" not in t.name and data.shape[-1] % 32 == 0)
        if quantize:
            data, qtype = gguf.quants.quantize(data, gguf.GGMLQuantizationType.Q4_0), gguf.GGMLQuantizationType.Q4_0
        writer.add_tensor(t.name, data, raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--llama-cpp", required=True, help="llama.cpp source folder (holds convert_hf_to_gguf.py)")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="HF model folder")
    src.add_argument("--from-f32", help="q4_0 only: requantize this f32 GGUF (made by the converter)")
    ap.add_argument("--outtype", required=True, choices=["f32", "f16", "bf16", "q8_0", "q4_0"])
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    if a.from_f32:
        if a.outtype != "q4_0":
            ap.error("--from-f32 makes q4_0 files only")
        requantize_q4_0(a.llama_cpp, a.from_f32, a.out)
        return
    if a.outtype != "q4_0":
        convert(a.llama_cpp, a.model, a.outtype, a.out)
        return
    with tempfile.TemporaryDirectory() as tmp:
        f32 = os.path.join(tmp, "f32.gguf")
        convert(a.llama_cpp, a.model, "f32", f32)
        requantize_q4_0(a.llama_cpp, f32, a.out)


if __name__ == "__main__":
    main()
