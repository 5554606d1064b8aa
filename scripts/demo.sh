#!/usr/bin/env bash
# The main job on the bundled default: distill the stories260K teacher into a Discrete Mamba-2
# (Llamba-style) student, then compare teacher and student (perplexity and a greedy sample each).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${SUBQ_BUILD:-build}
scripts/setup.sh "$BUILD_DIR" >/dev/null
OUT=${1:-runs/demo}
"$BUILD_DIR"/subq distill --recipe recipes/stories260k-demo.yaml --out "$OUT"
