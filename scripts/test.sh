#!/usr/bin/env bash
# The test command of README.md: installs what is missing, builds, runs CTest (GoogleTest), pytest
# and each reader's fuzzer briefly.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${SUBQ_BUILD:-build}
export SUBQ_BUILD=$BUILD_DIR
scripts/setup.sh "$BUILD_DIR"
# Tests run two at a time on two cores, each with two OpenMP threads: threads that spin while they wait
# for a core another test holds slow both down many times over. Passive waiting costs a single run
# little (benchmarks leave the policy alone).
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}

# Every suite runs even if an earlier one fails; the exit code says whether all passed.
status=0
echo "== CTest (GoogleTest) =="
ctest --test-dir "$BUILD_DIR" --output-on-failure -j2 --timeout 600 || status=1

echo "== pytest =="
python3 -m pytest -q tests || status=1

echo "== fuzzers =="
scripts/run_fuzzers.sh "${BUILD_DIR}-fuzz" "${SUBQ_FUZZ_SECONDS:-15}" || status=1
exit $status
