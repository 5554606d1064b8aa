#!/usr/bin/env bash
# One device call for `subq serve --device cuda` (staged by bench/gpu/stage_serve.sh): the CUDA runner tests
# (slot snapshot/restore among them), tests/test_serve_cuda.py, and bench/serve_load.py's sweep of the CUDA
# and the CPU server on the same machine. Results go to $OUT (or ./out).
set -uo pipefail
SCRATCH="$(mktemp -d "${TMPDIR:-/tmp}/subq-bench.XXXXXX")"; SITE="$SCRATCH/site"  # wheels and archive scratch
cd "$(dirname "$0")"
OUT=${OUT:-$PWD/out}
mkdir -p "$OUT"
export SUBQ_DATA="$PWD/data" OMP_WAIT_POLICY=PASSIVE
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
nproc | tee -a "$OUT/gpu.txt"
python3 -m pip install -q --no-index --no-deps --no-compile --target "$SITE" py/*.whl 2>&1 | tail -2
export PYTHONPATH="$SITE"
LD_LIBRARY_PATH="$PWD/lib:/usr/local/cuda/lib64" timeout 150 ./subq_cuda_tests --gtest_filter="${GTEST_FILTER:-Families/RunnerTest.*}" 2>&1 |
  tee "$OUT/cuda_tests.log" | grep -E '^\[  (PASSED|FAILED|SKIPPED)|^\[==========\]|FAILED|Failure' | tail -20
SUBQ_BUILD=. timeout 300 python3 -m pytest -v -rs -p no:cacheprovider tests/test_serve_cuda.py 2>&1 |
  tee "$OUT/serve-cuda-h200.log" | tail -30
# The load sweep on a dedicated machine: OpenMP threads spin between ops (the default policy).
[ "${LOAD:-1}" = 0 ] || env -u OMP_WAIT_POLICY timeout 300 python3 serve_load.py --subq ./subq \
  --model data/stories260K/stories260K.bin --sweep 1,32,256 --devices cuda,cpu --threads "${CPU_THREADS:-8}" \
  --client-procs "${CLIENT_PROCS:-6}" --max-tokens 64 --requests 32 --time-limit 100 \
  --out "$OUT/serve_load-h200.json" 2>&1 | tail -12
