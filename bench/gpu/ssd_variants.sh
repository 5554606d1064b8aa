#!/usr/bin/env bash
# One device call for SSD prefill work: for each staged variant folder (VARIANTS, default "v6 v5 v4 v3 v2"; each
# holds a subq_cuda_tests and a bench_cuda_kernels built from one commit) the SSD / parity / runner tests and the
# SSD prefill timing; then, for the fastest variant that passed, the whole CUDA test binary
# (cuda-tests-h200.log), baselines.py against mamba_ssm and fla, and one Nsight Compute profile of the four SSD
# prefill kernels at L 32768. Staging beside this script as stage.sh does (lib/ from copy_shared_libs, py/ with
# the fla wheels and stub_mamba_ssm's package, baselines.py); results in $OUT as one results.tgz.
# This is how the tensor-core SSD versions in NOTES.md were measured (cuda-kernels-ssd-versions-h200.json).
set -uo pipefail
SCRATCH="$(mktemp -d "${TMPDIR:-/tmp}/subq-bench.XXXXXX")"; SITE="$SCRATCH/site"  # wheels and archive scratch
cd "$(dirname "$0")"
OUT=${OUT:-$PWD/out}; mkdir -p "$OUT"
LIBS="$PWD/lib:/usr/local/cuda/lib64"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv | tee "$OUT/gpu.txt"
best=""; best_t=1e18
for v in ${VARIANTS:-v6 v5 v4 v3 v2}; do
  LD_LIBRARY_PATH=$LIBS timeout 100 ./$v/subq_cuda_tests --gtest_filter='*Ssd*:*Parity*:*Runner*' > "$OUT/${v}_tests.log" 2>&1
  rc=$?
  grep -E "rel err l|FAILED|PASSED|abort" "$OUT/${v}_tests.log" | tail -20
  timeout 60 ./$v/bench_cuda_kernels --ssd-lengths 2048,8192,32768 --gdn-lengths 256 --batches 1 > "$OUT/${v}_bench.json" 2>&1
  t=$(python3 -c "import json;d=json.load(open('$OUT/${v}_bench.json'));print(sum(x['us'] for x in d['ssd_prefill']))" 2>/dev/null || echo 1e18)
  echo "variant $v tests rc=$rc ssd_sum_us=$t"; python3 -c "import json;print(json.load(open('$OUT/${v}_bench.json'))['ssd_prefill'])" 2>/dev/null
  if [ $rc -eq 0 ] && python3 -c "import sys; sys.exit(0 if float('$t') < float('$best_t') else 1)"; then best=$v; best_t=$t; fi
done
echo "CHOSEN $best" | tee "$OUT/chosen.txt"
[ -n "$best" ] || exit 1
LD_LIBRARY_PATH=$LIBS timeout 200 ./$best/subq_cuda_tests 2>&1 | tee "$OUT/cuda-tests-h200.log" | grep -E '^\[  (PASSED|FAILED|SKIPPED)|^\[==========\]|Failure|abort' | tail -30
python3 -m pip install -q --no-index --no-deps --no-compile --target "$SITE" py/*.whl 2>&1 | tail -2
export PYTHONPATH="$PWD/py:$SITE"
PYTHONUNBUFFERED=1 timeout 300 python3 baselines.py --subq-bench ./$best/bench_cuda_kernels --out "$OUT" 2>&1 | grep -v Warning | tee "$OUT/kernels.log"
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
LD_LIBRARY_PATH=$LIBS timeout 150 "$NCU" --clock-control none --kernel-name-base demangled -k "regex:Chunk|StatePass" -c 4 \
  --section SpeedOfLight --section MemoryWorkloadAnalysis --section Occupancy --section LaunchStats --section ComputeWorkloadAnalysis \
  ./$best/bench_cuda_kernels --ssd-lengths 32768 --gdn-lengths 256 --batches 1 > "$OUT/ncu.txt" 2>&1
grep -E '^  [A-Za-z_].*\(|Duration|Compute \(SM\) Throughput|DRAM Throughput|Executed Ipc A|Issue Slots Busy|Achieved Occupancy|Registers Per' "$OUT/ncu.txt" | head -60
(cd "$OUT" && tar czf "$SCRATCH/results.tgz" . && find . -mindepth 1 -delete && mv "$SCRATCH/results.tgz" .)
