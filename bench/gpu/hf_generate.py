"""Baseline for bench_cuda_decode: HF transformers greedy generate of a random Llama-3.2-1B-shaped teacher
(bf16, sdpa) on the same card. Decode throughput = B * (N - 1) / (t(N new tokens) - t(1 new token)), so the
prompt's prefill is taken out. Usage: hf_generate.py --json FILE [--batches 1,8,64,256] [--contexts 128,8192]
[--random-cache]

Cells with B * context above --max-tokens would need a prefill that does not fit next to its KV cache (the
MLP activations of 2M tokens). With --random-cache they are measured the way bench_cuda_decode sets its
contexts: a DynamicCache filled with random K/V of the context's length, then greedy decode steps through
the model's forward with that cache (generate's per-step work, without generate's Python loop around it).
"""
import argparse, json, time

import torch
from transformers import LlamaConfig, LlamaForCausalLM


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", default="1,8,64,256")
    ap.add_argument("--contexts", default="128,8192")
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--max-tokens", type=int, default=64 * 8192, help="skip B * context above this")
    ap.add_argument("--json", required=True)
    ap.add_argument("--random-cache", action="store_true", help="measure cells over --max-tokens from a random KV cache")
    a = ap.parse_args()
    cfg = LlamaConfig(vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                      num_attention_heads=32, num_key_value_heads=8, head_dim=64, max_position_embeddings=131072,
                      rope_theta=500000.0, tie_word_embeddings=True, attn_implementation="sdpa",
                      rope_scaling={"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                                    "high_freq_factor": 4.0, "original_max_position_embeddings": 8192})
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = LlamaForCausalLM(cfg).to(torch.bfloat16).eval()
    rows = []

    def gen(ids, n):
        torch.cuda.synchronize()
        t = time.perf_counter()
        model.generate(ids, max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=0,
                       attention_mask=torch.ones_like(ids))
        torch.cuda.synchronize()
        return time.perf_counter() - t

    def decode_from_random_cache(B, ctx, steps):
        from transformers import DynamicCache
        cache = DynamicCache()
        hd, kv = cfg.head_dim, cfg.num_key_value_heads
        for layer in range(cfg.num_hidden_layers):
            k = torch.randn(B, kv, ctx, hd, device="cuda", dtype=torch.bfloat16)
            cache.update(k, torch.randn_like(k), layer)
        tok = torch.randint(3, cfg.vocab_size, (B, 1), device="cuda")
        times = []
        for t in range(steps):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            pos = torch.full((B, 1), ctx + t, device="cuda", dtype=torch.long)
            out = model(input_ids=tok, past_key_values=cache, position_ids=pos, use_cache=True, logits_to_keep=1)
            tok = out.logits[:, -1].argmax(-1, keepdim=True)
            torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
        del cache
        return sum(times[2:]) / len(times[2:])  # the first steps warm up cuBLAS / the allocator

    with torch.inference_mode():
        for ctx in [int(x) for x in a.contexts.split(",")]:
            for B in [int(x) for x in a.batches.split(",")]:
                if B * ctx > a.max_tokens:
                    if not a.random_cache:
                        rows.append({"model": "llama-3.2-1b", "engine": "transformers", "context": ctx, "batch": B,
                                     "skipped": "prefill too large for this run"})
                        continue
                    try:
                        step = decode_from_random_cache(B, ctx, a.steps)
                    except torch.OutOfMemoryError:
                        rows.append({"model": "llama-3.2-1b", "engine": "transformers", "context": ctx, "batch": B,
                                     "oom": True, "method": "random KV cache"})
                        torch.cuda.empty_cache()
                        continue
                    print(f"transformers teacher ctx {ctx:5d} batch {B:3d}: {1e3 * step:8.2f} ms/step "
                          f"{B / step:10.0f} tok/s (random KV cache, forward loop)", flush=True)
                    rows.append({"model": "llama-3.2-1b", "engine": "transformers", "context": ctx, "batch": B,
                                 "ms_per_step": 1e3 * step, "tok_per_s": B / step, "method": "random KV cache"})
                    torch.cuda.empty_cache()
                    continue
                ids = torch.randint(3, cfg.vocab_size, (B, ctx), device="cuda")
                try:
                    gen(ids, 2)  # warm-up
                    t1, tn = gen(ids, 1), gen(ids, a.steps)
                except torch.OutOfMemoryError:
                    rows.append({"model": "llama-3.2-1b", "engine": "transformers", "context": ctx, "batch": B,
                                 "oom": True})
                    torch.cuda.empty_cache()
                    continue
                tps = B * (a.steps - 1) / (tn - t1)
                ms = 1e3 * (tn - t1) / (a.steps - 1)
                print(f"transformers teacher ctx {ctx:5d} batch {B:3d}: {ms:8.2f} ms/step {tps:10.0f} tok/s", flush=True)
                rows.append({"model": "llama-3.2-1b", "engine": "transformers", "context": ctx, "batch": B,
                             "ms_per_step": ms, "tok_per_s": tps})
                del ids
                torch.cuda.empty_cache()
    with open(a.json, "w") as f:
        json.dump({"device": torch.cuda.get_device_name(0), "torch": torch.__version__,
                   "transformers": __import__("transformers").__version__, "decode": rows}, f, indent=2)


if __name__ == "__main__":
    main()
