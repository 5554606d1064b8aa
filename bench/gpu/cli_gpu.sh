#!/usr/bin/env bash
# The CLI on the GPU machine (run by run_h200.sh from its folder): the --device cuda pytest cases of
# tests/test_cli.py and tests/test_bench.py (copied beside it), then generate / eval / bench on stories260K
# on the CPU and the GPU side by side. Usage: cli_gpu.sh OUT_DIR
set -uo pipefail
OUT=$1
M=data/stories260K/hf
SUBQ_BUILD=. python3 -m pytest -q -p no:cacheprovider tests/test_cli.py tests/test_bench.py -k cuda 2>&1 | tail -15
for dev in cpu cuda; do
  echo "== generate --device $dev (greedy)"
  ./subq generate --model $M --prompt "Once upon a time" --max-tokens 48 --device $dev
done
echo "== generate --device cuda --temperature 0.8 --top-p 0.9 --seed 1 (twice: same text)"
for i in 1 2; do ./subq generate --model $M --prompt "Once upon a time" --max-tokens 48 --temperature 0.8 --top-p 0.9 --seed 1 --device cuda 2>/dev/null; done
for dev in cpu cuda; do
  echo "== eval --device $dev"
  ./subq eval --model $M --text data/text/tinystories-sample.txt --json --max-tokens 20000 --device $dev
done
./subq bench --model $M --device cuda --prompt-lengths 128,500 --batch 1,8,64 --gen 32 --batch-context 256 --json "$OUT/bench_cuda.json"
