#!/usr/bin/env bash
# Data-parallel scaling of `subq distill` on the GPUs of one host (issue 12): the same recipe and seed
# (recipes/llamba-1b-scale.yaml: random Llama-3.2-1B-shaped teacher -> Llamba-1B-shaped student, seq 2048,
# fixed steps per stage, the same global batch at every world size) on 1, 2, 4 ... GPUs with NCCL, then one
# run killed (SIGKILL) mid stage 3 and resumed on the same world size.
#
#   bench/gpu/distill_scaling.sh stage [DEV]     (CPU machine) what distill_1b.sh stage gathers (binary, libraries,
#        recipe, tokenizer, shards) into DEV (default <repo>/.dev-scaling), with these scripts.
#   bash DEV/bench/gpu/distill_scaling.sh run DEV OUT   (GPU machine, repo root) WORLDS (default 1,2,4, cut to the
#        GPUs present) runs, each under gpu_monitor.py (peak memory of every GPU), the final weights of every
#        world size compared with world size 1, and the kill/resume check at the largest world size.
#        Leaves OUT/scaling.tgz (everything the report reads).
#   bench/gpu/distill_scaling.sh report OUT [--name NAME]   (CPU machine) distill_scaling_report.py: writes
#        bench/results/NAME.{json,md} (default distill-scaling-<gpu>): tokens/s per stage and world size,
#        scaling efficiency, peak memory per GPU, weight agreement, resume check.
#
# Environment: SHAPE=tiny DEVICE=cpu runs the same pipeline at toy size with Gloo on the CPU (tests); WORLDS;
# KILL_AT (stage-3 step after which the resume run is killed, default 3); SUBQ_DATA, PYTHON, WORK.
# NVLink multicast stays off (NCCL_NVLS_ENABLE=0 and the PyTorch / NVSHMEM switches), as the GPU machines require.
set -uo pipefail

MODE="${1:-}"
HERE="$(cd "$(dirname "$0")" && pwd)"
source "$HERE/stage_lib.sh"
PY="${PYTHON:-python3}"
SHAPE="${SHAPE:-llama-3.2-1b}"
DEVICE="${DEVICE:-cuda}"
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1

die() { echo "distill_scaling.sh: $*" >&2; exit 1; }

stage() {
  local dev="${1:-$(cd "$HERE/../.." && pwd)/.dev-scaling}"
  bash "$HERE/distill_1b.sh" stage "$dev" || die "staging failed"
  cp "$HERE"/{distill_scaling.sh,distill_scaling_report.py,compare_weights.py} "$dev/bench/gpu/"
}

# distill N OUT_DIR [extra args...]: one `subq distill` at world size N under the GPU monitor.
distill() {
  local n=$1 dir=$2; shift 2
  "$PY" "$dev/bench/gpu/gpu_monitor.py" --json "$dir.monitor.json" --timeout "${T_RUN:-400}" -- \
    env LD_LIBRARY_PATH="$subq_ld" "$dev/subq" distill --recipe "$dev/recipes/llamba-1b-scale.yaml" --out "$dir" \
    --device "$DEVICE" --nproc "$n" "${sets[@]}" "$@"
}

run() {
  dev="$(cd "${1:?run DEV OUT}" && pwd)"; local out="${2:?run DEV OUT}"
  mkdir -p "$out" && out="$(cd "$out" && pwd)"
  local work="${WORK:-${TMPDIR:-/tmp}/distill-scaling}" res
  rm -rf "$work" && mkdir -p "$work/res"
  res="$work/res"
  export PYTHONUNBUFFERED=1 SUBQ_DATA="$dev/data"
  subq_ld="$(subq_libpath "$dev" "$PY")"
  local gpus=0
  [[ "$DEVICE" == cuda ]] && gpus=$(nvidia-smi -L 2>/dev/null | wc -l)
  local worlds=() w
  IFS=, read -r -a want <<< "${WORLDS:-1,2,4}"
  for w in "${want[@]}"; do
    if [[ "$DEVICE" == cuda && "$w" -gt "$gpus" ]]; then echo "distill_scaling.sh: skip world size $w ($gpus GPUs)" >&2; continue; fi
    worlds+=("$w")
  done
  [[ ${#worlds[@]} -gt 0 ]] || die "no world size fits ($gpus GPUs)"
  {
    echo "{\"shape\": \"$SHAPE\", \"device\": \"$DEVICE\", \"gpus\": $gpus, \"worlds\": [$(IFS=,; echo "${worlds[*]}")],"
    echo " \"gpu\": \"$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -1)\","
    echo " \"host_cpus\": $(nproc), \"started\": $(date +%s),"
    echo " \"teacher\": $(timeout "${T_TEACHER:-90}" "$PY" "$dev/bench/gpu/make_random_llama.py" --out "$work/teacher" \
        --shape "$SHAPE" --device "$DEVICE" 2>"$work/teacher.err" || echo null)}"
  } > "$res/env.json"
  compgen -G "$work/teacher/*.safetensors" > /dev/null || { cat "$work/teacher.err" >&2; die "no teacher was made"; }
  sets=(--set "teacher=$work/teacher")
  [[ "$SHAPE" == tiny ]] && sets+=("${TINY_DISTILL_SETS[@]}" --set stages.end_to_end.tokens=8192)

  for w in "${worlds[@]}"; do
    distill "$w" "$work/w$w" > "$res/w$w.log" 2>&1
    echo "distill_scaling.sh: world size $w exited $?" >&2
    cp "$work/w$w.monitor.json" "$res/" 2>/dev/null
    cp "$work/w$w/metrics.jsonl" "$res/w$w.metrics.jsonl" 2>/dev/null
    [[ "$w" == "${worlds[0]}" ]] || "$PY" "$dev/bench/gpu/compare_weights.py" "$work/w${worlds[0]}/model.safetensors" \
      "$work/w$w/model.safetensors" --json "$res/weights_w${w}_vs_w${worlds[0]}.json" >&2
  done

  # Kill mid stage 3 (after KILL_AT steps, checkpoints every step) and resume on the same world size.
  local n="${worlds[-1]}" k="${KILL_AT:-3}" kdir="$work/kill" pid
  local ck=(--set checkpoint_every=1)
  setsid env LD_LIBRARY_PATH="$subq_ld" "$dev/subq" distill --recipe "$dev/recipes/llamba-1b-scale.yaml" --out "$kdir" \
    --device "$DEVICE" --nproc "$n" "${sets[@]}" "${ck[@]}" > "$res/kill.log" 2>&1 &
  pid=$!
  local killed=false
  while kill -0 "$pid" 2>/dev/null; do
    if "$PY" - "$kdir/metrics.jsonl" "$k" <<'PYEOF'
import json, sys
try:
    rows = [json.loads(l) for l in open(sys.argv[1])]
except (OSError, ValueError):
    sys.exit(1)
sys.exit(0 if any(r.get("stage") == 3 and r.get("step", 0) >= int(sys.argv[2]) for r in rows) else 1)
PYEOF
    then kill -9 -- -"$pid" 2>/dev/null && killed=true; break; fi
    sleep 0.05
  done
  wait "$pid" 2>/dev/null
  echo "distill_scaling.sh: killed=$killed" >&2
  distill "$n" "$kdir" "${ck[@]}" --resume > "$res/resume.log" 2>&1
  echo "distill_scaling.sh: resumed run exited $?" >&2
  cp "$kdir/metrics.jsonl" "$res/resume.metrics.jsonl" 2>/dev/null
  "$PY" "$dev/bench/gpu/compare_weights.py" "$work/w$n/model.safetensors" "$kdir/model.safetensors" \
    --json "$res/weights_resume_vs_w$n.json" >&2
  echo "{\"world\": $n, \"kill_after_stage3_step\": $k, \"killed\": $killed}" > "$res/kill.json"
  tar czf "$out/scaling.tgz" -C "$work" res
  ls -la "$out" >&2
}

case "$MODE" in
  stage) shift; stage "$@" ;;
  run) shift; run "$@" ;;
  report) shift; exec "$PY" "$HERE/distill_scaling_report.py" "$@" ;;
  *) sed -n "2,22p" "$0"; exit 2 ;;
esac
