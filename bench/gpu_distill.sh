#!/usr/bin/env bash
# Runs a distillation recipe on CUDA on the GPU machine with a subq binary built on the CPU machine
# (the torch wheel's libtorch has CUDA). Expects .gpu/ with: subq, lib/ (non-torch shared libraries
# the binary needs: fmt, sentencepiece, yaml-cpp, openblas, gfortran, quadmath, utf8proc, onig, crypto), data/ (the
# stories260K/hf teacher and text/tinystories-sample.txt). Usage: bench/gpu_distill.sh RECIPE OUT
set -euo pipefail
RECIPE=${1:-recipes/stories260k-llamba.yaml}
OUT=${2:-runs/gpu}
SITE=$(python3 -c "import site; print(site.getsitepackages()[0])")
NVLIBS=$(find "$SITE/nvidia" -maxdepth 3 -type d -name lib | tr '\n' ':')
export LD_LIBRARY_PATH="$PWD/.gpu/lib:$SITE/torch/lib:$NVLIBS${LD_LIBRARY_PATH:-}"
export SUBQ_DATA="$PWD/.gpu/data"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
.gpu/subq distill --recipe "$RECIPE" --out "$OUT" --device cuda
