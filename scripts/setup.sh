#!/usr/bin/env bash
# Installs what subq needs when missing (Debian packages, Python wheels), then configures and builds.
# Usage: scripts/setup.sh [BUILD_DIR]   (default: build)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${1:-build}

APT_PKGS=(build-essential cmake ninja-build pkg-config git libgtest-dev libgmock-dev libbenchmark-dev
  nlohmann-json3-dev libcli11-dev libfmt-dev libsentencepiece-dev libyaml-cpp-dev zlib1g-dev
  libopenblas-dev libhwy-dev libcpp-httplib-dev libutf8proc-dev libonig-dev libssl-dev libgloo-dev clang libclang-rt-14-dev python3 python3-pip
  python3-dev python3-venv)
missing=()
for p in "${APT_PKGS[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi

PY_PKGS=("torch==2.11.*" "transformers>=4.45" safetensors numpy pytest sentencepiece tokenizers tiktoken matplotlib pyyaml openai
  protobuf nanobind scikit-build-core "lm-eval>=0.4.9" accelerate gguf)
if ! python3 - <<'PY' 2>/dev/null
import importlib, sys
for m in ["torch", "transformers", "safetensors", "numpy", "pytest", "sentencepiece", "tokenizers", "tiktoken", "matplotlib", "yaml",
          "openai", "google.protobuf", "nanobind", "scikit_build_core", "lm_eval", "accelerate", "gguf"]:
    importlib.import_module(m)
import torch
assert torch.__version__.startswith("2.11"), torch.__version__
PY
then
  echo "setup: installing Python packages: ${PY_PKGS[*]}"
  python3 -m pip install -q "${PY_PKGS[@]}"
fi

cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD_DIR" -j"$(nproc)"
