#!/usr/bin/env bash
# Mamba-3 students (SISO, MIMO rank 2) vs the Discrete Mamba-2 default on Stories260K at short budgets,
# at the Mamba-3 state of the recipes (d_state 8, attention init) and at half (d_state 4, random init):
# distill, then engine perplexity on the distill held-out split (tail documents), parity/modular probes,
# state bytes (subq bench). Writes bench/results/mamba3-students.{json,md} (via bench/mamba3_students.py).
# Usage: [NAMES="dm2 m3-siso ..."] [STEM=results-file-stem] bench/mamba3_students.sh [runs_dir] [stage2_tokens] [stage3_tokens]
set -euo pipefail
cd "$(dirname "$0")/.."
SUBQ=${SUBQ:-build/subq}
RUNS=${1:-runs/mamba3-students}  # project-relative (runs/ is ignored)
S2=${2:-65536}
S3=${3:-196608}
export SUBQ_DATA=$(realpath "${SUBQ_DATA:-../shared/data}") OMP_WAIT_POLICY=PASSIVE
mkdir -p "$RUNS"
common=(--threads 2 --set checkpoint_every=0 --set data.eval_tokens=16384
        --set stages.hidden_state.tokens=$S2 --set stages.end_to_end.tokens=$S3)
declare -A RECIPE=([dm2]=stories260k-llamba [m3-siso]=stories260k-mamba3 [m3-mimo2]=stories260k-mamba3-mimo
                   [m3-siso-half]=stories260k-mamba3 [m3-mimo2-half]=stories260k-mamba3-mimo)
declare -A EXTRA=([dm2]="" [m3-siso]="" [m3-mimo2]=""
                  [m3-siso-half]="student.d_state=4 student.init=random"
                  [m3-mimo2-half]="student.d_state=4 student.init=random")
NAMES=${NAMES:-dm2 m3-siso m3-mimo2 m3-siso-half m3-mimo2-half}
for n in $NAMES; do
  out=$RUNS/$n
  [ -f "$out/summary.json" ] && continue
  sets=()
  for kv in ${EXTRA[$n]}; do sets+=(--set "$kv"); done
  echo "== $n"
  nice -n 5 "$SUBQ" distill --recipe "recipes/${RECIPE[$n]}.yaml" --out "$out" "${common[@]}" "${sets[@]}" 2>&1 | tail -3
done
held=$RUNS/dm2/held_out.txt
for n in teacher $NAMES; do
  m=$RUNS/$n; [ "$n" = teacher ] && m=$SUBQ_DATA/stories260K/hf
  r=$RUNS/eval-$n; mkdir -p "$r"
  [ -f "$r/ppl.json" ] || nice -n 5 "$SUBQ" eval --model "$m" --text "$held" --window 256 --max-tokens 16384 --json > "$r/ppl.json"
  for p in parity modular; do
    [ -f "$r/$p.json" ] || nice -n 5 "$SUBQ" eval --model "$m" --probe $p --n 100 --json > "$r/$p.json"
  done
  [ -f "$r/bench.json" ] || nice -n 5 "$SUBQ" bench --model "$m" --threads 1 --prompt-lengths 16 --batch 1 --gen 4 \
      --json "$r/bench.json" > /dev/null
done
python3 bench/mamba3_students.py "$RUNS" "$S2" "$S3" "${STEM:-mamba3-students}"
