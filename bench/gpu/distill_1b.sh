#!/usr/bin/env bash
# 1B-class scale check of `subq distill` on one GPU, with a PyTorch baseline of its stage-3 step (issue 13
# item 4). Three steps, the middle one on the GPU machine:
#
#   bench/gpu/distill_1b.sh stage [DEV]        (CPU machine) build subq; gather into DEV (default
#        <repo>/.dev-gpu1b) the binary, the shared libraries it needs beyond glibc/libstdc++ and the
#        torch wheel, these scripts, the recipe, stories260K's tokenizer, TinyStories shards made with
#        `subq data prepare`, and mamba_ssm's Triton SSD sources (from the mamba-ssm sdist on PyPI).
#   bash DEV/bench/gpu/distill_1b.sh run DEV OUT   (GPU machine, repo root) make a random
#        Llama-3.2-1B-shaped teacher (bench/gpu/make_random_llama.py), run `subq distill` with
#        recipes/llamba-1b-scale.yaml on it (every MOHAWK stage a few steps), then the PyTorch baseline
#        (bench/gpu/distill_1b_torch.py), each under bench/gpu/gpu_monitor.py (NVML memory, timestamps).
#        Leaves at most 8 files in OUT.
#   bench/gpu/distill_1b.sh report OUT [--name NAME] [--notes MD]  (CPU machine) distill_1b_report.py: writes
#        bench/results/NAME.{json,md} (default distill-1b-h200) with tokens/s per stage, peak memory, MFU.
#
# Environment: SHAPE=tiny DEVICE=cpu runs the same pipeline at toy size on a CPU (tests); MAMBA_SDIST_DIR
# (where the sdist is cached; "none" = no mamba sources, the baseline then runs its torch SSD); BUILD=0 (stage
# takes the binary as built, no cmake); SUBQ_BUILD (build),
# SUBQ_DATA (../shared/data), PYTHON (python3), WORK (scratch on the run machine, $TMPDIR/distill-1b),
# T_TEACHER / T_SUBQ / T_TORCH (per-step time limits in seconds on the run machine).
set -uo pipefail

MODE="${1:-}"
HERE="$(cd "$(dirname "$0")" && pwd)"
source "$HERE/stage_lib.sh"
PY="${PYTHON:-python3}"
SHAPE="${SHAPE:-llama-3.2-1b}"
DEVICE="${DEVICE:-cuda}"

die() { echo "distill_1b.sh: $*" >&2; exit 1; }

stage() {
  set -e
  local root; root="$(cd "$HERE/../.." && pwd)"
  local dev="${1:-$root/.dev-gpu1b}" build="${SUBQ_BUILD:-$root/build}" data="${SUBQ_DATA:-$root/../shared/data}"
  [[ "${BUILD:-1}" == 0 ]] || nice -n 5 cmake --build "$build" --target subq -j2
  rm -rf "$dev" && mkdir -p "$dev/lib" "$dev/bench/gpu" "$dev/recipes" "$dev/data/stories260K" "$dev/mamba_src"
  cp "$build/subq" "$dev/"
  copy_shared_libs "$build/subq" "$dev/lib"
  cp "$HERE"/{distill_1b.sh,stage_lib.sh,make_random_llama.py,distill_1b_torch.py,gpu_monitor.py,distill_1b_report.py} "$dev/bench/gpu/"
  cp "$root/recipes/llamba-1b-scale.yaml" "$dev/recipes/"
  cp "$data/stories260K/tok512.model" "$dev/data/stories260K/"
  "$build/subq" data prepare --tokenizer "$data/stories260K/tok512.model" \
    --in "$data/text/tinystories-sample.txt" --out "$dev/data/shards-tinystories-tok512"
  # mamba_ssm's Triton SSD as plain python files (stage_lib.sh).
  local sd="${MAMBA_SDIST_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/subq/mamba-ssm}" ver=2.3.2.post1
  if [[ "$sd" == none ]]; then du -sh "$dev"; return; fi  # tests: no download; the baseline uses the torch SSD
  if [[ ! -f "$sd/mamba_ssm-$ver.tar.gz" ]]; then
    mkdir -p "$sd"
    # its metadata step needs `wheel` and must skip the CUDA build
    MAMBA_SKIP_CUDA_BUILD=TRUE "$PY" -m pip download -q --no-deps --no-binary :all: --no-build-isolation "mamba-ssm==$ver" -d "$sd"
  fi
  stub_mamba_ssm "$sd/mamba_ssm-$ver.tar.gz" "$dev/mamba_src"
  du -sh "$dev"
}

run() {
  local dev out work
  dev="$(cd "${1:?run DEV OUT}" && pwd)"; out="${2:?run DEV OUT}"
  mkdir -p "$out" && out="$(cd "$out" && pwd)"
  work="${WORK:-${TMPDIR:-/tmp}/distill-1b}"
  rm -rf "$work" && mkdir -p "$work"
  export PYTHONUNBUFFERED=1 SUBQ_DATA="$dev/data"
  local subq_ld="$(subq_libpath "$dev" "$PY")"
  local mon="$dev/bench/gpu/gpu_monitor.py"
  {
    echo "{\"shape\": \"$SHAPE\", \"device\": \"$DEVICE\","
    echo " \"gpu\": \"$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -1)\","
    echo " \"host_cpus\": $(nproc), \"started\": $(date +%s),"
    echo " \"teacher\": $(timeout "${T_TEACHER:-60}" "$PY" "$dev/bench/gpu/make_random_llama.py" --out "$work/teacher" \
        --shape "$SHAPE" --device "$DEVICE" 2>"$work/teacher.err" || echo null)}"
  } > "$out/env.json"
  compgen -G "$work/teacher/*.safetensors" > /dev/null || { cat "$work/teacher.err" >&2; die "no teacher was made"; }

  # subq: every stage of the recipe. Tiny shape: a student that fits the tiny teacher, short sequences.
  local sets=(--set "teacher=$work/teacher")
  local tb=(--seq-len 2048 --micro-batch 2 --accum 4 --steps 6)
  if [[ "$SHAPE" == tiny ]]; then
    sets+=("${TINY_DISTILL_SETS[@]}")
    tb=(--seq-len 64 --micro-batch 2 --accum 2 --steps 2 --heads 4 --head-dim 16 --d-state 16 --chunk 16)
  fi
  "$PY" "$mon" --json "$out/subq_monitor.json" --timeout "${T_SUBQ:-170}" -- \
    env LD_LIBRARY_PATH="$subq_ld" "$dev/subq" distill --recipe "$dev/recipes/llamba-1b-scale.yaml" --out "$work/distill" --device "$DEVICE" "${sets[@]}"
  echo "distill_1b.sh: subq distill exited $?" >&2
  cp "$work/distill/metrics.jsonl" "$out/subq_metrics.jsonl" 2>/dev/null
  cp "$work/distill/summary.json" "$out/subq_summary.json" 2>/dev/null
  cp "$work/distill/config.json" "$out/student_config.json" 2>/dev/null

  # The PyTorch baseline of the stage-3 step, on the same teacher and card, after subq has exited.
  "$PY" "$mon" --json "$out/torch_monitor.json" --timeout "${T_TORCH:-150}" -- \
    "$PY" "$dev/bench/gpu/distill_1b_torch.py" --teacher "$work/teacher" --out "$out/torch.json" \
    --device "$DEVICE" --mamba-src "$dev/mamba_src" ${TORCH_SSD:+--ssd "$TORCH_SSD"} "${tb[@]}"
  echo "distill_1b.sh: baseline exited $?" >&2
  cp "$dev/recipes/llamba-1b-scale.yaml" "$out/recipe.yaml"
  ls -la "$out" >&2
}

case "$MODE" in
  stage) shift; stage "$@" ;;
  run) shift; run "$@" ;;
  report) shift; exec "$PY" "$HERE/distill_1b_report.py" "$@" ;;
  *) sed -n "2,22p" "$0"; exit 2 ;;
esac
