#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan) and runs each for SECONDS with a seed corpus made from the
# real checkpoints in the data dir and the seeds in fuzz/corpus/ (copied to a temp dir: what the fuzzer
# adds never lands in the repo). Prints each target's executions and coverage (libFuzzer's cov/ft).
# Usage: scripts/run_fuzzers.sh BUILD_DIR SECONDS      (env: SUBQ_DATA, JOBS, FUZZ_TARGETS)
# Exits non-zero if a target fails to build or any run finds a crash/leak/timeout; crash inputs are kept
# in BUILD_DIR/fuzz-artifacts/.
set -euo pipefail

BUILD_DIR=${1:?usage: run_fuzzers.sh BUILD_DIR SECONDS}
SECONDS_PER=${2:?usage: run_fuzzers.sh BUILD_DIR SECONDS}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DATA=${SUBQ_DATA:-$ROOT/../shared/data}
export SUBQ_DATA=$DATA  # the seed recipes name ${SUBQ_DATA} files
JOBS=${JOBS:-2}
TARGETS=${FUZZ_TARGETS:-"fuzz_llama2c fuzz_gguf fuzz_safetensors fuzz_hf_config fuzz_tokenizer_json fuzz_tokenizer_bin fuzz_tokenizer_model fuzz_recipe fuzz_checkpoint_manifest fuzz_serve_request"}

[[ -f "$DATA/stories260K/stories260K.bin" ]] || { echo "run_fuzzers: real data not found in $DATA (set SUBQ_DATA)" >&2; exit 2; }

cmake -S "$ROOT" -B "$BUILD_DIR" -G Ninja -DSUBQ_FUZZ=ON -DCMAKE_CXX_COMPILER=clang++ \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
# shellcheck disable=SC2086
ninja -C "$BUILD_DIR" -j"$JOBS" $TARGETS

WORK=$(mktemp -d "${TMPDIR:-/tmp}/subq_fuzz.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
ART="$BUILD_DIR/fuzz-artifacts"
mkdir -p "$ART"

# Seed corpora from the real files (small JSON variants for config.json).
mkdir -p "$WORK"/{llama2c,gguf,safetensors,hf_config,serve_request}
for seeds in "$ROOT"/fuzz/corpus/*/; do cp -r "$seeds" "$WORK/"; done
cp "$DATA/stories260K/stories260K.bin" "$DATA/llama2xs/model.bin" "$DATA/babyllama/model5000.bin" "$WORK/llama2c/" 2>/dev/null || true
cp "$DATA/stories260K/stories260K.gguf" "$WORK/gguf/"
cp "$DATA/stories260K/hf/model.safetensors" "$WORK/safetensors/"
cp "$DATA/stories260K/hf/config.json" "$WORK/hf_config/real.json"
# Tiny valid files too: the fuzzer mutates small inputs far faster than megabyte ones.
python3 - "$WORK" <<'PY'
import json, struct, sys
w = sys.argv[1]
f32 = lambda n: struct.pack(f"<{n}f", *[0.25 * (i % 7) for i in range(n)])
# llama2.c: dim 4, hidden 6, 1 layer, 2 heads, 1 kv head, vocab 3 (shared and unshared), seq_len 2.
dim, hid, L, nh, nkv, V, S = 4, 6, 1, 2, 1, 3, 2
kv = dim // nh * nkv
n = V * dim + L * dim + L * dim * dim + 2 * L * kv * dim + L * dim * dim + L * dim + 3 * L * hid * dim + dim + S * dim // nh
open(f"{w}/llama2c/tiny.bin", "wb").write(struct.pack("<7i", dim, hid, L, nh, nkv, V, S) + f32(n))
open(f"{w}/llama2c/tiny_unshared.bin", "wb").write(struct.pack("<7i", dim, hid, L, nh, nkv, -V, S) + f32(n + V * dim))
# safetensors: F32, F16 and BF16 tensors plus __metadata__.
h = {"__metadata__": {"format": "pt"}, "a": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]},
     "b": {"dtype": "F16", "shape": [4], "data_offsets": [24, 32]},
     "c": {"dtype": "BF16", "shape": [2, 2], "data_offsets": [32, 40]}}
hb = json.dumps(h).encode()
open(f"{w}/safetensors/tiny.safetensors", "wb").write(struct.pack("<Q", len(hb)) + hb + f32(6) + bytes(range(16)))
# GGUF v3, arch llama, 1 layer, dim 4, F32 + one F16 tensor, every metadata value type once.
def s_(x): x = x.encode(); return struct.pack("<Q", len(x)) + x
kvs = [("general.architecture", 8, s_("llama")), ("general.alignment", 4, struct.pack("<I", 32)),
       ("llama.embedding_length", 4, struct.pack("<I", dim)), ("llama.feed_forward_length", 4, struct.pack("<I", hid)),
       ("llama.block_count", 4, struct.pack("<I", 1)), ("llama.attention.head_count", 4, struct.pack("<I", nh)),
       ("llama.attention.head_count_kv", 4, struct.pack("<I", nkv)),
       ("llama.attention.layer_norm_rms_epsilon", 6, struct.pack("<f", 1e-5)),
       ("llama.rope.freq_base", 12, struct.pack("<d", 10000.0)), ("llama.context_length", 10, struct.pack("<Q", 16)),
       ("x.u8", 0, b"\1"), ("x.i8", 1, b"\xff"), ("x.u16", 2, b"\1\0"), ("x.i16", 3, b"\1\0"), ("x.i32", 5, b"\1\0\0\0"),
       ("x.bool", 7, b"\1"), ("x.i64", 11, struct.pack("<q", -1)),
       ("x.nested", 9, struct.pack("<IQ", 9, 1) + struct.pack("<IQ", 4, 2) + struct.pack("<2I", 1, 2)),
       ("tokenizer.ggml.model", 8, s_("llama")),
       ("tokenizer.ggml.tokens", 9, struct.pack("<IQ", 8, V) + b"".join(s_(t) for t in ["<unk>", "<s>", "</s>"])),
       ("tokenizer.ggml.scores", 9, struct.pack("<IQ", 6, V) + f32(V)),
       ("tokenizer.ggml.token_type", 9, struct.pack("<IQ", 5, V) + struct.pack("<3i", 2, 3, 3)),
       ("tokenizer.ggml.bos_token_id", 4, struct.pack("<I", 1)), ("tokenizer.ggml.eos_token_id", 4, struct.pack("<I", 2))]
ts = [("token_embd.weight", [dim, V], 0), ("output_norm.weight", [dim], 0), ("blk.0.attn_norm.weight", [dim], 0),
      ("blk.0.attn_q.weight", [dim, dim], 1), ("blk.0.attn_k.weight", [dim, kv], 0), ("blk.0.attn_v.weight", [dim, kv], 0),
      ("blk.0.attn_output.weight", [dim, dim], 0), ("blk.0.ffn_norm.weight", [dim], 0),
      ("blk.0.ffn_gate.weight", [dim, hid], 0), ("blk.0.ffn_up.weight", [dim, hid], 0), ("blk.0.ffn_down.weight", [hid, dim], 0)]
out = b"GGUF" + struct.pack("<IQQ", 3, len(ts), len(kvs))
for k, t, v in kvs: out += s_(k) + struct.pack("<I", t) + v
data, infos = b"", b""
for name, dims, typ in ts:
    numel = 1
    for d in dims: numel *= d
    infos += s_(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims) + struct.pack("<IQ", typ, len(data))
    data += (f32(numel) if typ == 0 else bytes(2 * numel))
    data += bytes((-len(data)) % 32)
out += infos
out += bytes((-len(out)) % 32)
open(f"{w}/gguf/tiny.gguf", "wb").write(out + data)
PY
cat >"$WORK/hf_config/hybrid.json" <<'EOF'
{"model_type": "llama", "hidden_size": 64, "intermediate_size": 172, "num_hidden_layers": 4,
 "num_attention_heads": 8, "num_key_value_heads": 4, "vocab_size": 512, "eos_token_id": [2, 3],
 "rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
 "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
 "attention_layers": [1], "attention_heads": {"2": [0, 5]}, "attn_cfg": {"num_heads": 8, "head_dim": 8}}
EOF
# OpenAI request bodies.
echo '{"model": "m", "prompt": "Once upon a time", "max_tokens": 16, "temperature": 0.7, "top_p": 0.9, "n": 2, "seed": 1, "stop": ["\n", "The"], "logprobs": 2, "stream": true, "stream_options": {"include_usage": true}}' >"$WORK/serve_request/completion.json"
echo '{"prompt": [1, 2, 3], "max_tokens": 4}' >"$WORK/serve_request/ids.json"
echo '{"messages": [{"role": "system", "content": " Be brief. "}, {"role": "user", "content": [{"type": "text", "text": "hi"}]}, {"role": "assistant", "content": "ho"}], "max_completion_tokens": 8, "logprobs": true, "top_logprobs": 3}' >"$WORK/serve_request/chat.json"
echo "{% for m in messages %}{{ loop.index0 ~ m.role | upper }}{% if m.content is defined and m.content|length > 1 %}{{ m.content[1:] }}{% else %}{{ raise_exception('x') }}{% endif %}{% endfor %}" >"$WORK/serve_request/template.txt"
cat >"$WORK/hf_config.dict" <<'EOF'
"model_type"
"llama"
"mamba2"
"llamba"
"ssm_cfg"
"d_model"
"hidden_size"
"num_attention_heads"
"num_key_value_heads"
"head_dim"
"rope_scaling"
"rope_parameters"
"rope_type"
"llama3"
"attention_layers"
"attention_heads"
"attn_cfg"
"num_heads"
"eos_token_id"
"tie_word_embeddings"
EOF

status=0
for t in $TARGETS; do
  case $t in
    fuzz_llama2c) corpus=llama2c; max_len=4000000 ;;
    fuzz_gguf) corpus=gguf; max_len=1300000 ;;
    fuzz_safetensors) corpus=safetensors; max_len=1100000 ;;
    fuzz_hf_config) corpus=hf_config; max_len=4096 ;;
    fuzz_tokenizer_json) corpus=tokenizer_json; max_len=65536 ;;
    fuzz_tokenizer_bin) corpus=tokenizer_bin; max_len=16384 ;;
    fuzz_tokenizer_model) corpus=tokenizer_model; max_len=16384 ;;
    fuzz_recipe) corpus=recipe; max_len=8192 ;;
    fuzz_checkpoint_manifest) corpus=checkpoint_manifest; max_len=8192 ;;
    fuzz_serve_request) corpus=serve_request; max_len=4096 ;;
    *) echo "run_fuzzers: unknown target $t" >&2; exit 2 ;;
  esac
  extra=()
  [[ $t == fuzz_hf_config ]] && extra=(-dict="$WORK/hf_config.dict")
  mkdir -p "$WORK/out_$corpus"
  echo "== $t for ${SECONDS_PER}s (seeds: $(ls "$WORK/$corpus" | wc -l))"
  if TMPDIR="$WORK" "$BUILD_DIR/$t" "$WORK/out_$corpus" "$WORK/$corpus" "${extra[@]}" \
      -max_total_time="$SECONDS_PER" -max_len="$max_len" -rss_limit_mb=2048 -timeout=20 \
      -artifact_prefix="$ART/$t-" -print_final_stats=1 >"$WORK/$t.log" 2>&1; then
    { grep -E "stat::number_of_executed_units|stat::peak_rss_mb" "$WORK/$t.log"
      grep -oE "DONE +cov: [0-9]+ ft: [0-9]+" "$WORK/$t.log" | tail -1; } | tr '\n' ' '; echo
  else
    echo "run_fuzzers: $t FAILED (log tail below; crash inputs in $ART)" >&2
    tail -40 "$WORK/$t.log" >&2
    status=1
  fi
done
exit $status
