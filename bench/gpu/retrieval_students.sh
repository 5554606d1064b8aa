#!/usr/bin/env bash
# The students of issue 10's results table, distilled at once on one GPU by `subq distill --device cuda`:
# of the retrieval teacher (bench/gpu/retrieval_teacher.sh, recipes/retrieval-teacher-gpu.yaml): pure
# Discrete Mamba-2, Mamba-3 SISO / MIMO at equal and half state, Gated DeltaNet, a layer hybrid, head hybrids
# keeping the top-ranked or random 1 / 2 / 5 of 48 heads, Oryx; of stories260K: Discrete Mamba-2 and
# Mamba-3 at equal and half state with a longer budget than bench/mamba3_students.sh.
# Each is then scored on the host CPU (kv-retrieval 6 pairs, MQAR 6x6; Oryx also with attention mode only
# around the answers) and benched for its state bytes (`subq bench`).
#
#   bench/gpu/retrieval_students.sh stage TEACHER HEADS RANDOM_HEADS [DEV]   # here
#   bash DEV/bench/gpu/retrieval_students.sh run DEV OUT                     # there (carry DEV)
#   bench/gpu/retrieval_students.sh report OUT_FILES_DIR                     # here: bench/results/retrieval-students.*
#
# OUT gets students.tgz (every run's summary, metrics, config, probe and bench JSON; no weights) and the
# weights of KEEP_WEIGHTS. Budgets: the stage tokens below scaled per student by FACTORS (see run);
# ONLY="a b" picks students; DISTILL_TIMEOUT bounds each distill run;
# DISTILL_THREADS sets its torch CPU threads (default 1: many runs share the host).
set -uo pipefail

MODE="${1:-}"
HERE="$(cd "$(dirname "$0")" && pwd)"
source "$HERE/stage_lib.sh"
PY="${PYTHON:-python3}"

die() { echo "retrieval_students.sh: $*" >&2; exit 1; }

DM2='kind: discrete_mamba2, n_qk_heads: 8, n_v_heads: 8, head_dim: 16, d_state: 16, conv_kernel: 4, chunk_size: 32'
M3='kind: mamba3, n_v_heads: 8, n_groups: 8, head_dim: 16, chunk_size: 32, outproj_norm: false, rope_fraction: 0.5'
S260_M3='kind: mamba3, n_v_heads: 8, n_groups: 8, head_dim: 8, chunk_size: 32, outproj_norm: false, rope_fraction: 0.5'
# name | recipe | student (YAML flow map) | extra --set (space-separated key=value)
STUDENTS=(
  "rt-dm2|retrieval-headhybrid|{$DM2, init: attention}|"
  "rt-m3-siso|retrieval-headhybrid|{$M3, d_state: 16, init: attention}|"
  "rt-m3-siso-half|retrieval-headhybrid|{$M3, d_state: 8, init: random}|"
  "rt-m3-mimo2|retrieval-headhybrid|{$M3, d_state: 16, mimo_rank: 2, init: attention}|"
  "rt-m3-mimo2-half|retrieval-headhybrid|{$M3, d_state: 8, mimo_rank: 2, init: random}|"
  "rt-gdn|retrieval-headhybrid|{kind: gated_deltanet, n_qk_heads: 8, n_v_heads: 8, head_dim: 16, d_state: 16, chunk_size: 32, init: attention}|"
  "rt-layer0|retrieval-headhybrid|{$DM2, init: attention, attention_layers: [0]}|"
  "rt-heads1|retrieval-headhybrid|{$DM2, init: attention, keep_heads: HEADS, keep_top_k: 1}|"
  "rt-heads2|retrieval-headhybrid|{$DM2, init: attention, keep_heads: HEADS, keep_top_k: 2}|"
  "rt-heads5|retrieval-headhybrid|{$DM2, init: attention, keep_heads: HEADS, keep_top_k: 5}|"
  "rt-random1|retrieval-headhybrid|{$DM2, init: attention, keep_heads: RANDOM, keep_top_k: 1}|"
  "rt-random2|retrieval-headhybrid|{$DM2, init: attention, keep_heads: RANDOM, keep_top_k: 2}|"
  "rt-random5|retrieval-headhybrid|{$DM2, init: attention, keep_heads: RANDOM, keep_top_k: 5}|"
  "rt-oryx|retrieval-headhybrid|{kind: oryx, oryx_recurrence: ssd, oryx_attention_fraction: 0.1, chunk_size: 32}|stages.matrix_orientation.tokens=0"
  "s260-dm2|stories260k-llamba|-|"
  "s260-m3-siso|stories260k-mamba3|{$S260_M3, d_state: 8, init: attention}|"
  "s260-m3-siso-half|stories260k-mamba3|{$S260_M3, d_state: 4, init: random}|"
  "s260-m3-mimo2|stories260k-mamba3|{$S260_M3, d_state: 8, mimo_rank: 2, init: attention}|"
  "s260-m3-mimo2-half|stories260k-mamba3|{$S260_M3, d_state: 4, mimo_rank: 2, init: random}|"
)

# Stage tokens (scaled by run's budget factor) per teacher: the retrieval students and the stories260K ones (seq 256).
RT_STAGES=(matrix_orientation=262144 hidden_state=1048576 end_to_end=4194304)
S260_STAGES=(matrix_orientation=0 hidden_state=1048576 end_to_end=4194304)

# probe_text JSONL TXT: the "text" of every record joined with <|endoftext|> (documents for the distiller).
probe_text() {
  "$PY" -c 'import json,sys; open(sys.argv[2],"w").write("<|endoftext|>".join(json.loads(l)["text"] for l in open(sys.argv[1])))' "$1" "$2"
}

stage() {
  set -e
  local root; root="$(cd "$HERE/../.." && pwd)"
  local teacher="${1:?stage TEACHER HEADS RANDOM_HEADS [DEV]}" heads="${2:?}" random="${3:?}"
  local dev="${4:-$root/.dev-students}" build="${SUBQ_BUILD:-$root/build}" data="${SUBQ_DATA:-$root/../shared/data}"
  [[ "${BUILD:-1}" == 0 ]] || nice -n 5 cmake --build "$build" --target subq -j2
  rm -rf "$dev" && mkdir -p "$dev/lib" "$dev/bench/gpu" "$dev/recipes" "$dev/data/stories260K" "$dev/data/text" "$dev/probes"
  cp "$build/subq" "$dev/"
  copy_shared_libs "$build/subq" "$dev/lib"
  cp "$HERE"/{retrieval_students.sh,stage_lib.sh} "$dev/bench/gpu/"
  cp "$root"/recipes/{retrieval-headhybrid,stories260k-llamba,stories260k-mamba3}.yaml "$dev/recipes/"
  cp -r "$data/stories260K/hf" "$dev/data/stories260K/"
  cp "$data/text/tinystories-sample.txt" "$dev/data/text/"
  mkdir -p "$dev/teacher" && cp "$teacher"/{config.json,model.safetensors,tokenizer.model,tokenizer_config.json} "$dev/teacher/"
  cp "$heads" "$dev/heads.json" && cp "$random" "$dev/heads-random.json"
  "$build/subq" data probe --probe kv-retrieval --pairs 6 --n 20000 --seed 1001 --out "$dev/probes/kv.jsonl"
  "$build/subq" data probe --probe mqar --pairs 6 --queries 6 --n 20000 --seed 1003 --out "$dev/probes/mqar.jsonl"
  probe_text "$dev/probes/kv.jsonl" "$dev/probes/kv-retrieval-p6.txt"
  probe_text "$dev/probes/mqar.jsonl" "$dev/probes/mqar-p6q6.txt"
  rm "$dev"/probes/*.jsonl
  du -sh "$dev"
}

# student_sets NAME FACTOR: the --set arguments of student NAME with every stage's tokens scaled by FACTOR
# (rounded down to whole batches; a stage of 0 tokens stays off).
student_sets() {
  local name="$1" f="$2" s recipe student extra st base tok stages
  for s in "${STUDENTS[@]}"; do
    [[ "${s%%|*}" == "$name" ]] || continue
    IFS='|' read -r name recipe student extra <<< "$s"
    local out=(--set checkpoint_every=0 --set micro_batch="$MB")
    if [[ "$name" == rt-* ]]; then stages=("${RT_STAGES[@]}"); else stages=("${S260_STAGES[@]}"); out+=(--set data.eval_tokens=32768); fi
    for st in "${stages[@]}"; do
      base=${st#*=}
      tok=$(awk -v b="$base" -v f="$f" -v bt="$BT" 'BEGIN { t = int(b * f / bt) * bt; if (b > 0 && t < bt) t = bt; print t }')
      out+=(--set "stages.${st%%=*}.tokens=$tok" --set "stages.${st%%=*}.batch_tokens=$BT")
    done
    student="${student//HEADS/$DEV/heads.json}"; student="${student//RANDOM/$DEV/heads-random.json}"
    [[ "$student" == - ]] || out+=(--set "student=$student")
    for st in $extra; do out+=(--set "$st"); done
    printf '%s\n' "$recipe" "${out[@]}"
  done
}

# distill_one NAME FACTOR DIR: distill student NAME into DIR/run (log DIR/distill.log, wall seconds DIR/seconds).
distill_one() {
  local name="$1" f="$2" dir="$3" args recipe t0
  mapfile -t args < <(student_sets "$name" "$f")
  recipe="${args[0]}"; args=("${args[@]:1}")
  mkdir -p "$dir" && echo "${args[*]}" > "$dir/sets.txt"
  t0=$(date +%s)
  timeout "$TMO" "$WORK/subq.sh" distill --threads "${DISTILL_THREADS:-1}" --recipe "$DEV/recipes/$recipe.yaml" --out "$dir/run" \
    --device "$DEVICE" "${args[@]}" > "$dir/distill.log" 2>&1
  echo $(( $(date +%s) - t0 )) > "$dir/seconds"
}

# score_one NAME DIR: probes (retrieval students; Oryx also with attention only around the answers; PROBES=0
# skips them) and `subq bench` after a 256-token prompt (the state bytes per sequence at the teacher's context).
score_one() {
  export OMP_NUM_THREADS=2
  local name="$1" dir="$2" m="$2/run" k
  [[ -f "$m/config.json" ]] || return 0
  cp "$m"/{summary.json,metrics.jsonl,config.json} "$dir/" 2>/dev/null
  if [[ "$name" == rt-* && "${PROBES:-1}" == 1 ]]; then
    subq eval --model "$m" --probe kv-retrieval --pairs 6 --n 200 --json > "$dir/kv6.json" 2> "$dir/kv6.err"
    subq eval --model "$m" --probe mqar --pairs 6 --queries 6 --n 200 --json > "$dir/mqar6.json" 2> "$dir/mqar6.err"
    if [[ "$name" == rt-oryx ]]; then
      for k in 0 4 100000; do
        subq eval --model "$m" --probe kv-retrieval --pairs 6 --n 200 --attention-before-answer $k --json \
          > "$dir/kv6-attn$k.json" 2>/dev/null
      done
    fi
  fi
  subq bench --model "$m" --threads 1 --prompt-lengths 256 --batch 1 --gen 4 --json "$dir/bench.json" > /dev/null 2>&1
}

# run DEV OUT: every student at once, each with its stage budgets scaled by its FACTORS entry
# ("PREFIX=F ...": the first prefix of the name sets the factor; equal factors give equal budgets to the
# students a comparison pairs), then scored as each one ends.
run() {
  DEV="$(cd "${1:?run DEV OUT}" && pwd)"; local out="${2:?run DEV OUT}"
  mkdir -p "$out" && out="$(cd "$out" && pwd)"
  WORK="${WORK:-${TMPDIR:-/tmp}/retrieval-students}"
  rm -rf "$WORK" && mkdir -p "$WORK"
  export SUBQ_DATA="$DEV/data" SUBQ_PROBES="$DEV/probes" SUBQ_RETRIEVAL_TEACHER="$DEV/teacher" SUBQ_HEADS="$DEV/heads.json"
  printf '#!/bin/sh\nLD_LIBRARY_PATH="%s" exec "%s" "$@"\n' "$(subq_libpath "$DEV" "$PY")" "$DEV/subq" > "$WORK/subq.sh"
  chmod +x "$WORK/subq.sh"
  subq() { "$WORK/subq.sh" "$@"; }
  DEVICE="${DEVICE:-cuda}" TMO="${DISTILL_TIMEOUT:-600}" MB="${MICRO_BATCH:-64}" BT="${BATCH_TOKENS:-8192}"
  local factors="${FACTORS:-rt-gdn=0.25 rt-=1.1 s260-=1.5}" only="${ONLY:-}" s name f p pids=()
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$WORK/gpu.txt" 2>/dev/null
  for s in "${STUDENTS[@]}"; do
    name="${s%%|*}"
    [[ -z "$only" || " $only " == *" $name "* ]] || continue
    f=
    for p in $factors; do [[ -z "$f" && "$name" == "${p%%=*}"* ]] && f="${p#*=}"; done
    [[ -n "$f" ]] || { echo "retrieval_students.sh: no FACTORS entry for $name" >&2; continue; }
    echo "retrieval_students.sh: $name budget factor $f" >&2
    mkdir -p "$WORK/$name" && echo "{\"budget_factor\": $f}" > "$WORK/$name/budget.json"
    ( distill_one "$name" "$f" "$WORK/$name"; score_one "$name" "$WORK/$name" ) &
    pids+=($!)
  done
  wait "${pids[@]}"
  subq bench --model "$DEV/teacher" --threads 1 --prompt-lengths 256 --batch 1 --gen 4 --json "$WORK/teacher-bench.json" \
    > /dev/null 2>&1
  (cd "$WORK" && tar czf "$out/students.tgz" --exclude=run .)
  for name in ${KEEP_WEIGHTS:-rt-heads2 rt-oryx}; do
    [[ -f "$WORK/$name/run/model.safetensors" ]] && (cd "$WORK/$name" && tar czf "$out/$name-weights.tgz" --exclude=checkpoints run)
  done
  ls -la "$out" >&2
}

case "$MODE" in
  stage) shift; stage "$@" ;;
  run) shift; run "$@" ;;
  report) shift; exec "$PY" "$HERE/retrieval_students_report.py" "$@" ;;
  *) sed -n "2,17p" "$0"; exit 2 ;;
esac
