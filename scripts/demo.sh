#!/usr/bin/env bash
# The main job on the bundled default: distill the stories260K teacher into a Discrete Mamba-2
# (Llamba-style) student, then compare teacher and student: held-out perplexity (printed by distill)
# and a greedy sample from each.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${SUBQ_BUILD:-build}
DATA=${SUBQ_DATA:-../shared/data}
scripts/setup.sh "$BUILD_DIR" >/dev/null
OUT=${1:-runs/demo}
"$BUILD_DIR"/subq distill --recipe recipes/stories260k-demo.yaml --out "$OUT"
PROMPT="Once upon a time"
echo
echo "== teacher (stories260K, attention) greedy sample =="
"$BUILD_DIR"/subq generate --model "$DATA/stories260K/hf" --prompt "$PROMPT" --max-tokens 64
echo "== student (Discrete Mamba-2, $OUT) greedy sample =="
"$BUILD_DIR"/subq generate --model "$OUT" --prompt "$PROMPT" --max-tokens 64
