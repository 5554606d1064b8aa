#!/usr/bin/env bash
# Stages `subq serve --device cuda` for one device call (bench/gpu/run_serve.sh): a `subq` built without
# libtorch (BUILD, cmake -DSUBQ_TRAIN=OFF) and subq_cuda_tests, the shared libraries ldd lists beyond
# glibc/libstdc++/CUDA, the serve pytest files, bench/serve_load.py, stories260K (+ llama2xs for the
# draft-model refusal) from DATA, and PY: wheels the GPU image lacks for the openai client (openai,
# pydantic, pydantic-core, jiter, distro, sniffio, typing-inspection, annotated-types, httpx2, httpcore2,
# truststore; `pip download --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64`).
# Usage: stage_serve.sh BUILD DATA PY DEST
set -euo pipefail
BUILD=$1 DATA=$2 PY=$3 DEST=$4
SRC=$(cd "$(dirname "$0")/../.." && pwd)
source "$SRC"/bench/gpu/stage_lib.sh
rm -rf "$DEST"
mkdir -p "$DEST"/{lib,tests,data/stories260K,data/llama2xs,py}
cp "$BUILD"/subq_cuda_tests "$DEST"/
cp "$BUILD"/subq "$DEST"/subq.bin
printf '#!/bin/sh\nd=$(dirname "$(readlink -f "$0")")\nLD_LIBRARY_PATH="$d/lib:/usr/local/cuda/lib64" exec "$d/subq.bin" "$@"\n' >"$DEST"/subq
chmod +x "$DEST"/subq
for b in "$DEST"/{subq_cuda_tests,subq.bin}; do copy_shared_libs "$b" "$DEST"/lib; done
cp "$SRC"/bench/gpu/run_serve.sh "$SRC"/bench/serve_load.py "$DEST"/
cp "$SRC"/tests/{conftest.py,test_serve.py,test_serve_cuda.py} "$DEST"/tests/
cp -r "$DATA"/stories260K/hf "$DATA"/stories260K/stories260K.bin "$DATA"/stories260K/tok512.* "$DEST"/data/stories260K/
cp "$DATA"/llama2xs/model.bin "$DEST"/data/llama2xs/
cp "$PY"/*.whl "$DEST"/py/
du -sh "$DEST"
