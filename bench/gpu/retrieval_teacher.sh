#!/usr/bin/env bash
# Retrieval teachers on the GPU (issue 10 item 2, recipes/retrieval-teacher-gpu.yaml): several shapes of the
# small Llama trained at once on one GPU by `subq train --device cuda`, each for about the same wall time,
# then scored on the probes (kv-retrieval 2/4/6 pairs, MQAR 6x6) and ranked by `subq heads` on the host CPU.
#
#   bench/gpu/retrieval_teacher.sh stage [DEV]          # here: binary + libraries + recipe + probe JSONL
#   bash DEV/bench/gpu/retrieval_teacher.sh run DEV OUT # there (carry DEV); TRAIN_SECONDS per teacher
#   bench/gpu/retrieval_teacher.sh report OUT           # here: OUT/teachers.{json,md}
#
# A teacher's token budget is fitted to TRAIN_SECONDS: a 200-step calibration of every shape runs first (all
# at once, as the real runs share the GPU), and its tokens/s sets train.tokens so the warmup-stable-decay
# schedule ends on time. Shapes: VARIANTS below (name and --set overrides of the recipe); ONLY="a b" picks
# some (default: d128l6h8, the recipe itself). OUT gets one NAME.tgz per teacher (the device returns at most 8
# files): weights, tokenizer, logs, probes.json, heads.json (ranking) and heads-random.json (the control).
set -uo pipefail

MODE="${1:-}"
HERE="$(cd "$(dirname "$0")" && pwd)"
source "$HERE/stage_lib.sh"
PY="${PYTHON:-python3}"

die() { echo "retrieval_teacher.sh: $*" >&2; exit 1; }

VARIANTS=(
  "d128l6h8|"
  "d64l4h4|--set model.dim=64 --set model.hidden_dim=172 --set model.n_layers=4 --set model.n_heads=4 --set model.n_kv_heads=4"
  "d128l4h8|--set model.n_layers=4"
  "d128l6h8-lr1e3|--set train.lr=1.0e-3"
)

# make_probes DIR: the training probe JSONL of the recipes (seeds differ from the eval seed 0).
make_probes() {
  local b="$1" d="$2"
  mkdir -p "$d"
  "$b" data probe --probe kv-retrieval --pairs 2 --n 20000 --seed 1011 --out "$d/kv-retrieval-p2.jsonl"
  "$b" data probe --probe kv-retrieval --pairs 4 --n 20000 --seed 1012 --out "$d/kv-retrieval-p4.jsonl"
  "$b" data probe --probe kv-retrieval --pairs 6 --n 20000 --seed 1001 --out "$d/kv-retrieval-p6.jsonl"
  "$b" data probe --probe mqar --pairs 6 --queries 6 --n 20000 --seed 1003 --out "$d/mqar-p6q6.jsonl"
}

stage() {
  set -e
  local root; root="$(cd "$HERE/../.." && pwd)"
  local dev="${1:-$root/.dev-retrieval}" build="${SUBQ_BUILD:-$root/build}" data="${SUBQ_DATA:-$root/../shared/data}"
  [[ "${BUILD:-1}" == 0 ]] || nice -n 5 cmake --build "$build" --target subq -j2
  rm -rf "$dev" && mkdir -p "$dev/lib" "$dev/bench/gpu" "$dev/recipes" "$dev/data/stories260K" "$dev/data/text"
  cp "$build/subq" "$dev/"
  copy_shared_libs "$build/subq" "$dev/lib"
  cp "$HERE"/{retrieval_teacher.sh,stage_lib.sh,retrieval_teacher_report.py} "$dev/bench/gpu/"
  cp "$root/recipes/retrieval-teacher-gpu.yaml" "$dev/recipes/"
  cp "$data/stories260K"/tok512.{bin,model} "$dev/data/stories260K/"  # the export copies the .model beside it
  cp "$data/text/tinystories-sample.txt" "$dev/data/text/"
  make_probes "$build/subq" "$dev/probes"
  du -sh "$dev"
}

# probe_json MODEL ARGS...: one `subq eval --probe ... --json` line (null when it fails).
probe_json() {
  local m="$1"; shift
  subq eval --model "$m" --probe "$@" --n 200 --json 2>/dev/null || echo null
}

run() {
  local dev out work
  dev="$(cd "${1:?run DEV OUT}" && pwd)"; out="${2:?run DEV OUT}"
  mkdir -p "$out" && out="$(cd "$out" && pwd)"
  work="${WORK:-${TMPDIR:-/tmp}/retrieval-teacher}"
  rm -rf "$work" && mkdir -p "$work"
  export SUBQ_DATA="$dev/data" SUBQ_PROBES="$dev/probes"
  SUBQ_LD="$(subq_libpath "$dev" "$PY")" SUBQ_BIN="$dev/subq"
  subq() { LD_LIBRARY_PATH="$SUBQ_LD" "$SUBQ_BIN" "$@"; }
  local device="${DEVICE:-cuda}" secs="${TRAIN_SECONDS:-300}" calib="${CALIB_STEPS:-200}"
  local recipe="$dev/recipes/retrieval-teacher-gpu.yaml" gpu_sets=(${GPU_SETS:-}) only="${ONLY:-d128l6h8}"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$out/gpu.txt" 2>/dev/null
  local v name sets pids=() picked=()
  for v in "${VARIANTS[@]}"; do [[ " $only " == *" ${v%%|*} "* ]] && picked+=("$v"); done
  for v in "${picked[@]}"; do  # calibration, all at once
    name="${v%%|*}"; sets=(${v#*|})
    subq train --threads 2 --recipe "$recipe" --out "$work/calib-$name" --device "$device" "${gpu_sets[@]}" "${sets[@]}" \
      --set train.tokens=100000000 --set checkpoint_every=0 --stop-after-steps "$calib" > "$work/calib-$name.log" 2>&1 &
    pids+=($!)
  done
  wait "${pids[@]}"
  pids=()
  for v in "${picked[@]}"; do
    name="${v%%|*}"; sets=(${v#*|})
    local tps tokens bt
    tps=$(grep -oE '[0-9]+ tok/s' "$work/calib-$name.log" | tail -1 | cut -d' ' -f1)
    [[ -n "$tps" ]] || { tail -5 "$work/calib-$name.log" >&2; continue; }
    bt=$(grep -oE 'steps x [0-9]+ tokens' "$work/calib-$name.log" | head -1 | awk '{print $3}')
    tokens=$(( tps * secs / bt * bt )); (( tokens >= bt )) || tokens=$bt
    echo "retrieval_teacher.sh: $name calibrated at $tps tok/s -> $tokens tokens" >&2
    echo "{\"name\": \"$name\", \"calib_tokens_per_s\": $tps, \"tokens\": $tokens, \"sets\": \"${sets[*]} ${gpu_sets[*]}\"}" \
      > "$out/$name.variant.json"
    subq train --threads 2 --recipe "$recipe" --out "$work/$name" --device "$device" "${gpu_sets[@]}" "${sets[@]}" \
      --set train.tokens="$tokens" --set checkpoint_every=1000 > "$out/$name.train.log" 2>&1 &
    pids+=($!)
  done
  wait "${pids[@]}"
  for v in "${picked[@]}"; do
    name="${v%%|*}"
    [[ -f "$work/$name/model.safetensors" ]] || continue
    mkdir -p "$out/$name"
    cp "$work/$name"/{config.json,model.safetensors,summary.json,metrics.jsonl,held_out.txt,loss.png} "$out/$name/" 2>/dev/null
    cp "$work/$name"/tokenizer* "$work/$name"/*.bin "$out/$name/" 2>/dev/null
    {
      echo "{\"kv2\": $(probe_json "$work/$name" kv-retrieval --pairs 2),"
      echo " \"kv4\": $(probe_json "$work/$name" kv-retrieval --pairs 4),"
      echo " \"kv6\": $(probe_json "$work/$name" kv-retrieval --pairs 6),"
      echo " \"mqar6\": $(probe_json "$work/$name" mqar --pairs 6 --queries 6)}"
    } > "$out/$name/probes.json" &
  done
  wait
  for v in "${picked[@]}"; do
    name="${v%%|*}"
    [[ -f "$work/$name/model.safetensors" ]] || continue
    subq heads --teacher "$work/$name" --probe kv-retrieval --pairs 6 --n 100 --out "$out/$name/heads.json" \
      > "$out/$name/heads.log" 2>&1 &
    subq heads --teacher "$work/$name" --random --seed 3 --out "$out/$name/heads-random.json" \
      > "$out/$name/heads-random.log" 2>&1 &
  done
  wait
  for v in "${picked[@]}"; do
    name="${v%%|*}"
    [[ -d "$out/$name" ]] || continue
    mv "$out/$name".*.json "$out/$name".*.log "$out/$name/" 2>/dev/null
    (cd "$out" && tar czf "$name.tgz" "$name" && rm -rf "$name")
  done
  ls -la "$out" >&2
}

case "$MODE" in
  stage) shift; stage "$@" ;;
  run) shift; run "$@" ;;
  report) shift; exec "$PY" "$HERE/retrieval_teacher_report.py" "$@" ;;
  *) sed -n "2,12p" "$0"; exit 2 ;;
esac
