#!/usr/bin/env bash
# One device call: CUDA tests, then subq's decode bench and the transformers baseline on the same card.
# Expects beside it: subq_cuda_tests, bench_cuda_decode, hf_generate.py, lib/ (libopenblas, libgfortran,
# libquadmath: what the test binary needs beyond CUDA). Results go to $OUT (or ./out).
set -uo pipefail
cd "$(dirname "$0")"
OUT=${OUT:-$PWD/out}
mkdir -p "$OUT"
export LD_LIBRARY_PATH="$PWD/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv | tee "$OUT/gpu.txt"
./subq_cuda_tests 2>&1 | tee "$OUT/cuda_tests.log" | grep -E '^\[  (PASSED|FAILED|SKIPPED)|^\[==========\]|rel err|FAILED|Failure' | tail -60
./bench_cuda_decode --json "$OUT/subq_decode.json" ${SUBQ_BENCH_ARGS:-} 2>&1 | tee "$OUT/subq_decode.log"
PYTHONUNBUFFERED=1 python3 hf_generate.py --json "$OUT/hf_decode.json" ${HF_BENCH_ARGS:-} 2>&1 | grep -v Warning | tee "$OUT/hf_decode.log"
