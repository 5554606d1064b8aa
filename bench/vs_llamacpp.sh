#!/usr/bin/env bash
# subq vs llama.cpp on this CPU, side by side, on the same files, threads and lengths (issue 14).
#
#   bench/vs_llamacpp.sh [--stage all|build|models|export|run|report] [--rounds N] [--threads N]
#                        [--prompts 128,512,4096] [--gen N] [--reps N (llama-bench repetitions per round)]
#                        [--precisions f32,f16,q8_0,q4_0]
#
# Stages (each reuses what an earlier run left in the cache):
#   build   pip-downloads the llama-cpp-python sdist from PyPI and builds llama.cpp's CPU tools from
#           its vendored copy (Release, GGML_NATIVE=ON, no CUDA, no curl); nothing of it is committed.
#   models  makes the bench models as HF folders (bench/make_bench_models.py) and converts each with
#           llama.cpp's convert_hf_to_gguf.py to f32, f16 and q8_0, then llama-quantize to q4_0.
#   export  converts each bench model with `subq convert --to gguf` and checks that llama.cpp loads the file
#           and decodes the same greedy text as subq (llama-simple vs `subq generate`, 32 tokens from three
#           prompts); writes bench/results/vs_llamacpp_export.{json,md}. Fails if stories260K's texts differ.
#   run     runs llama-bench and `subq bench` alternately (order flipped each round), warm-up first.
#   report  writes bench/results/vs_llamacpp.{json,md} (bench/vs_llamacpp_report.py).
# Environment: BENCH_CACHE (default ~/.cache/subq/vs_llamacpp), SUBQ_BUILD (default build), SUBQ_DATA
# (default ../shared/data: stories260K and the texts the shared tokenizer is trained on), BENCH_NOTE (a
# paragraph for the markdown, e.g. the state of the machine).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CACHE="${BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/subq/vs_llamacpp}"
SUBQ_BUILD="${SUBQ_BUILD:-$ROOT/build}"
LCP_VERSION=0.3.36
STAGE=all ROUNDS=3 THREADS=2 PROMPTS=128,512,4096 GEN=128 REPS=2 PRECISIONS=f32,f16,q8_0,q4_0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --stage) STAGE="$2"; shift 2 ;;
    --rounds) ROUNDS="$2"; shift 2 ;;
    --threads) THREADS="$2"; shift 2 ;;
    --prompts) PROMPTS="$2"; shift 2 ;;
    --gen) GEN="$2"; shift 2 ;;
    --reps) REPS="$2"; shift 2 ;;
    --precisions) PRECISIONS="$2"; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "vs_llamacpp.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
case "$STAGE" in all|build|models|export|run|report) ;; *) echo "vs_llamacpp.sh: bad --stage '$STAGE'" >&2; exit 2 ;; esac
for v in "$ROUNDS" "$THREADS" "$GEN" "$REPS"; do
  [[ "$v" =~ ^[1-9][0-9]*$ ]] || { echo "vs_llamacpp.sh: --rounds, --threads, --gen and --reps take positive integers" >&2; exit 2; }
done
[[ "$PROMPTS" =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]] ||
  { echo "vs_llamacpp.sh: --prompts takes a comma list of positive integers" >&2; exit 2; }

SRC="$CACHE/llama.cpp" LBUILD="$CACHE/build" MODELS="$CACHE/models" RAW="$CACHE/raw"
RESULTS="$ROOT/bench/results"
log() { echo "[vs_llamacpp $(date +%H:%M:%S)] $*" >&2; }
mkdir -p "$CACHE"

stage_build() {
  if [[ ! -f "$SRC/convert_hf_to_gguf.py" ]]; then
    log "downloading the llama-cpp-python $LCP_VERSION sdist"
    rm -rf "$CACHE/sdist" && mkdir -p "$CACHE/sdist"
    # Only the sdist itself from source: its build requirements come as wheels.
    pip download --no-deps --no-binary llama-cpp-python "llama-cpp-python==$LCP_VERSION" -d "$CACHE/sdist" >&2
    tar -xzf "$CACHE/sdist/llama_cpp_python-$LCP_VERSION.tar.gz" -C "$CACHE/sdist"
    rm -rf "$SRC" && mv "$CACHE/sdist/llama_cpp_python-$LCP_VERSION/vendor/llama.cpp" "$SRC"
    rm -rf "$CACHE/sdist"
  fi
  if [[ ! -x "$LBUILD/bin/llama-bench" || ! -x "$LBUILD/bin/llama-quantize" || ! -x "$LBUILD/bin/llama-simple" ]]; then
    log "building llama.cpp (llama-bench, llama-quantize, llama-simple) in $LBUILD"
    cmake -S "$SRC" -B "$LBUILD" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DGGML_CUDA=OFF \
      -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=ON -DLLAMA_BUILD_SERVER=OFF >&2
    cmake --build "$LBUILD" -j "$(nproc)" --target llama-bench llama-quantize llama-simple >&2
  fi
  log "llama.cpp tools ready: $LBUILD/bin"
}

stage_models() {
  [[ -f "$SRC/convert_hf_to_gguf.py" ]] || { echo "run --stage build first" >&2; exit 1; }
  local data="${SUBQ_DATA:-$ROOT/../shared/data}"
  python3 "$ROOT/bench/make_bench_models.py" --out "$MODELS" --stories "$data/stories260K/hf" \
    --text "$data"/text/tinystories-sample.txt "$data"/text/mobydick.txt "$data"/text/wikitext-2-raw-test.raw \
    "$data"/text/tinyshakespeare.txt
  for m in llama-110m mamba2-130m stories260K; do
    for t in f32 f16 q8_0; do
      local out="$MODELS/$m-$t.gguf"
      [[ -f "$out" ]] && continue
      log "converting $m to $t"
      PYTHONPATH="$SRC/gguf-py" python3 "$SRC/convert_hf_to_gguf.py" "$MODELS/$m" --outtype "$t" --outfile "$out.tmp" \
        > "$CACHE/convert-$m-$t.log" 2>&1 && mv "$out.tmp" "$out" || log "conversion of $m to $t failed: $CACHE/convert-$m-$t.log"
    done
    if [[ ! -f "$MODELS/$m-q4_0.gguf" && -f "$MODELS/$m-f32.gguf" && -x "$LBUILD/bin/llama-quantize" ]]; then
      log "quantizing $m to q4_0"
      "$LBUILD/bin/llama-quantize" "$MODELS/$m-f32.gguf" "$MODELS/$m-q4_0.gguf.tmp" q4_0 > "$CACHE/quantize-$m.log" 2>&1 &&
        mv "$MODELS/$m-q4_0.gguf.tmp" "$MODELS/$m-q4_0.gguf" || log "llama-quantize of $m failed: $CACHE/quantize-$m.log"
    fi
    # subq's own quantized files, once `subq quantize` exists (the run stage probes what subq can read).
    if "$SUBQ_BUILD/subq" --help 2>/dev/null | grep -q "^  quantize "; then
      for t in q8_0 q4_0; do
        [[ -d "$MODELS/$m-$t-subq" ]] || "$SUBQ_BUILD/subq" quantize --model "$MODELS/$m" --type "${t%_0}" \
          --out "$MODELS/$m-$t-subq" >&2 || log "subq quantize of $m to $t failed"
      done
    fi
  done
}

# GGUF files written by subq itself (`subq convert --to gguf`), loaded by llama.cpp: greedy text must match.
stage_export() {
  [[ -x "$LBUILD/bin/llama-simple" ]] || { echo "run --stage build first (llama-simple)" >&2; exit 1; }
  [[ -x "$SUBQ_BUILD/subq" ]] || { echo "no $SUBQ_BUILD/subq: build subq first (see README)" >&2; exit 1; }
  mkdir -p "$RESULTS" "$CACHE/export"
  local m
  for m in stories260K llama-110m mamba2-130m; do
    [[ -d "$MODELS/$m" ]] || { log "no $MODELS/$m: run --stage models first"; continue; }
    log "subq convert $m -> GGUF"
    "$SUBQ_BUILD/subq" convert --model "$MODELS/$m" --to gguf --out "$CACHE/export/$m-subq.gguf" >&2
  done
  python3 - "$CACHE/export" "$LBUILD/bin/llama-simple" "$SUBQ_BUILD/subq" "$RESULTS" <<'PY'
import json, pathlib, subprocess, sys

export, llama_simple, subq, results = sys.argv[1:]
prompts = ["Once upon a time", "Lily and Ben went to the park", "The little dog"]
rows, ok = [], True
for gguf in sorted(pathlib.Path(export).glob("*-subq.gguf")):
    model = gguf.name[: -len("-subq.gguf")]
    for prompt in prompts:
        # llama-simple decodes greedily (its sampler chain is greedy only) and prints prompt + generation
        lc = subprocess.run([llama_simple, "-m", str(gguf), "-n", "32", prompt], capture_output=True, text=True)
        sq = subprocess.run([subq, "generate", "--model", str(gguf), "--prompt", prompt, "--max-tokens", "32"],
                            capture_output=True, text=True)
        a, b = " ".join(lc.stdout.split()), " ".join(sq.stdout.split())
        a = a.removeprefix("<s>").strip()  # llama-simple prints the BOS piece before the prompt
        same = lc.returncode == 0 and sq.returncode == 0 and a == b
        words = next((i for i, (x, y) in enumerate(zip(a.split(), b.split())) if x != y), min(len(a.split()), len(b.split())))
        rows.append({"model": model, "prompt": prompt, "llama_cpp": a, "subq": b, "same": same,
                     "llama_cpp_rc": lc.returncode, "same_words": words,
                     "llama_cpp_error": lc.stderr[-400:] if lc.returncode else ""})
        ok = ok and (same or model != "stories260K")
out = pathlib.Path(results)
(out / "vs_llamacpp_export.json").write_text(json.dumps(rows, indent=2) + "\n")
md = ["# subq-written GGUF in llama.cpp (llama-simple greedy vs subq generate, 32 tokens)", "",
      "Random-weight bench models have near-tied logits, so their texts may part after a few words; "
      "stories260K (trained) must match exactly.", "",
      "| model | prompt | same | words equal | llama.cpp text |", "|---|---|---|---|---|"]
for r in rows:
    md.append(f"| {r['model']} | {r['prompt']} | {'yes' if r['same'] else 'no'} | {r['same_words']} | "
              f"{r['llama_cpp'][:80].replace('|', '/')} |")
(out / "vs_llamacpp_export.md").write_text("\n".join(md) + "\n")
print("\n".join(md))
sys.exit(0 if ok else 1)
PY
}

stage_run() {
  [[ -x "$SUBQ_BUILD/subq" ]] || { echo "no $SUBQ_BUILD/subq: build subq first (see README)" >&2; exit 1; }
  local commit
  commit="$(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet HEAD -- src || echo -dirty)"
  rm -rf "$RAW"
  python3 "$ROOT/bench/vs_llamacpp.py" run --models "$MODELS" --llama-bin "$LBUILD/bin" --subq "$SUBQ_BUILD/subq" \
    --raw "$RAW" --bench-ops "$SUBQ_BUILD/bench_ops" --commit "$commit" --threads "$THREADS" --rounds "$ROUNDS" \
    --prompts "$PROMPTS" --gen "$GEN" --reps "$REPS" --precisions "$PRECISIONS"
}

stage_report() {
  mkdir -p "$RESULTS"
  python3 "$ROOT/bench/vs_llamacpp.py" report --raw "$RAW" --models "$MODELS" --gguf-py "$SRC/gguf-py" \
    --json "$RESULTS/vs_llamacpp.json" --md "$RESULTS/vs_llamacpp.md" --note "${BENCH_NOTE:-}"
  cat "$RESULTS/vs_llamacpp.md"
}

case "$STAGE" in
  build) stage_build ;;
  models) stage_models ;;
  export) stage_export ;;
  run) stage_run ;;
  report) stage_report ;;
  all) stage_build; stage_models; stage_export; stage_run; stage_report ;;
esac
