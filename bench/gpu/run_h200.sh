#!/usr/bin/env bash
# One device call on the GPU machine: CUDA tests, the recurrent-kernel baselines (mamba_ssm, fla), subq's
# decode bench with the transformers baseline, and the `subq` CLI on the GPU, all on the same card.
# Expects beside it (bench/gpu/NOTES.md says how to stage them): subq_cuda_tests, bench_cuda_kernels,
# bench_cuda_decode, subq, baselines.py, hf_generate.py, lib/ (shared libraries ldd lists that the machine
# lacks), py/ (mamba_ssm's Triton sources under a stub package, fla wheels), data/ (real models, as
# ../shared/data). STAGES (default tests,kernels,decode,cli) picks the parts. Results go to $OUT (or ./out).
set -uo pipefail
SCRATCH="$(mktemp -d "${TMPDIR:-/tmp}/subq-bench.XXXXXX")"; SITE="$SCRATCH/site"  # wheels and archive scratch
cd "$(dirname "$0")"
OUT=${OUT:-$PWD/out}
STAGES=${STAGES:-tests,kernels,profile,decode,cli}
mkdir -p "$OUT"
# Our binaries see the carried libraries; python (the baselines) does not.
LIBS="$PWD/lib:/usr/local/cuda/lib64"
export SUBQ_DATA="$PWD/data"
has() { [[ ",$STAGES," == *",$1,"* ]]; }
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv | tee "$OUT/gpu.txt"
if has tests; then
  LD_LIBRARY_PATH=$LIBS ./subq_cuda_tests 2>&1 | tee "$OUT/cuda_tests.log" | grep -E '^\[  (PASSED|FAILED|SKIPPED)|^\[==========\]|FAILED|Failure' | tail -40
fi
if has kernels; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target "$SITE" py/*.whl 2>&1 | tail -2
  export PYTHONPATH="$PWD/py:$SITE"
  PYTHONUNBUFFERED=1 python3 baselines.py --subq-bench ./bench_cuda_kernels --out "$OUT" ${KERNEL_ARGS:-} 2>&1 |
    grep -v Warning | tee "$OUT/kernels.log"
fi
if has profile; then  # Nsight Compute: the SSD prefill's four kernels (L 8192), the SSD and GDN steps at batch 64
  NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
  for spec in "Chunk|StatePass:4" "SsdStepKernel:1" "GdnKernel<4>:1"; do
    "$NCU" --clock-control none --kernel-name-base demangled -k "regex:${spec%%:*}" -c "${spec##*:}" \
      --section SpeedOfLight --section MemoryWorkloadAnalysis --section Occupancy --section LaunchStats \
      ./bench_cuda_kernels --ssd-lengths 8192 --gdn-lengths 512 --batches 64 >> "$OUT/ncu.txt" 2>&1
  done
  grep -E '^  [A-Za-z_].*\(|Duration|Compute \(SM\) Throughput|Memory Throughput|DRAM Throughput|Achieved Occupancy|Theoretical Occupancy|Registers Per|Block Limit (Registers|Shared)|Dynamic Shared' "$OUT/ncu.txt" | head -90
fi
if has decode; then
  LD_LIBRARY_PATH=$LIBS ./bench_cuda_decode --json "$OUT/subq_decode.json" ${SUBQ_BENCH_ARGS:-} 2>&1 | tee "$OUT/subq_decode.log"
  [ "${HF_BENCH:-1}" = 0 ] || PYTHONUNBUFFERED=1 python3 hf_generate.py --json "$OUT/hf_decode.json" ${HF_BENCH_ARGS:-} 2>&1 | grep -v Warning |
    tee "$OUT/hf_decode.log"
fi
if has cli && [ -x ./subq.bin ]; then
  ./cli_gpu.sh "$OUT" 2>&1 | tee "$OUT/cli.log"
fi
# Everything in one archive (the machine returns at most 8 files).
(cd "$OUT" && tar czf "$SCRATCH/results.tgz" . && find . -mindepth 1 -delete && mv "$SCRATCH/results.tgz" .)
