#!/usr/bin/env bash
# Stages what run_h200.sh needs into DEST (a git-ignored folder of the checkout that the device tool ships):
# the CUDA test and bench binaries (BUILD), a `subq` built without libtorch (DEV_BUILD: cmake -DSUBQ_TRAIN=OFF),
# the scripts and the --device cuda pytest files, the shared libraries ldd lists beyond glibc/libstdc++/CUDA,
# stories260K and one text from DATA, and PY (mamba_ssm's sdist and the fla wheels, from
# `pip download mamba-ssm==2.3.2.post1 flash-linear-attention==0.6.0 fla-core==0.6.0 --no-deps`): mamba_ssm's
# Triton op modules go under a stub package (its compiled extension is not needed for them).
# Usage: stage.sh BUILD DEV_BUILD DATA PY DEST
set -euo pipefail
BUILD=$1 DEV=$2 DATA=$3 PY=$4 DEST=$5
SRC=$(cd "$(dirname "$0")/../.." && pwd)
source "$SRC"/bench/gpu/stage_lib.sh
mkdir -p "$DEST"/{lib,tests,data/stories260K,data/text,py}
cp "$BUILD"/{subq_cuda_tests,bench_cuda_kernels,bench_cuda_decode} "$DEST"/
cp "$DEV"/subq "$DEST"/subq.bin
# `subq` (what the pytest cases run) finds the carried libraries through this wrapper.
printf '#!/bin/sh\nd=$(dirname "$(readlink -f "$0")")\nLD_LIBRARY_PATH="$d/lib:/usr/local/cuda/lib64" exec "$d/subq.bin" "$@"\n' >"$DEST"/subq
chmod +x "$DEST"/subq
cp "$SRC"/bench/gpu/{run_h200.sh,cli_gpu.sh,baselines.py,hf_generate.py} "$DEST"/
cp "$SRC"/tests/{conftest.py,test_cli.py,test_bench.py} "$DEST"/tests/
for b in "$DEST"/{subq_cuda_tests,subq.bin}; do copy_shared_libs "$b" "$DEST"/lib; done
cp -r "$DATA"/stories260K/hf "$DATA"/stories260K/stories260K.bin "$DATA"/stories260K/tok512.* "$DEST"/data/stories260K/
cp "$DATA"/text/tinystories-sample.txt "$DEST"/data/text/
cp "$PY"/*.whl "$DEST"/py/
stub_mamba_ssm "$(echo "$PY"/mamba_ssm-*.tar.gz)" "$DEST"/py
du -sh "$DEST"
