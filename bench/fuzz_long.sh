#!/usr/bin/env bash
# Every fuzz target for longer than CI does (default 10 minutes each): scripts/run_fuzzers.sh with a
# longer budget. Usage: bench/fuzz_long.sh [SECONDS_PER_TARGET] [BUILD_DIR]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
exec "$ROOT/scripts/run_fuzzers.sh" "${2:-$ROOT/build-fuzz}" "${1:-600}"
