"""Continuous batching and the prefix-state cache on a recurrent model: a random Mamba-2 (transformers'
Mamba2ForCausalLM layout, the stories260K tokenizer) served with concurrent requests gives exactly the
greedy outputs of one-at-a-time serving without a cache; and `subq sample` shares one prefill."""
import concurrent.futures
import os
import re

import openai
import pytest

from conftest import run_subq
from test_serve import Server

transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

PROMPTS = ["Once upon a time", "The cat sat", "Tom had a red ball. He", "Lily and her mom went to the park",
           "One day, a big dog", "Once upon a time, there was", "Ben", "The sun was hot and the"]


@pytest.fixture(scope="module")
def mamba2_folder(data_dir, tmp_path_factory):
    torch.manual_seed(0)
    cfg = transformers.Mamba2Config(vocab_size=512, hidden_size=64, num_heads=8, head_dim=16, expand=2,
                                    state_size=16, n_groups=1, num_hidden_layers=2, conv_kernel=4, chunk_size=8,
                                    tie_word_embeddings=True)
    model = transformers.Mamba2ForCausalLM(cfg)
    with torch.no_grad():  # larger than init so that outputs depend on the whole history
        for name, p in model.named_parameters():
            if not name.endswith(("A_log", "dt_bias", "norm.weight", "norm_f.weight", ".D")):
                p.add_(0.2 * torch.randn_like(p))
    folder = tmp_path_factory.mktemp("mamba2")
    model.save_pretrained(folder)
    os.symlink(data_dir / "stories260K" / "tok512.model", folder / "tokenizer.model")
    return folder


def _complete(server, prompt, max_tokens=24):
    return server.client.completions.create(model="m", prompt=prompt, max_tokens=max_tokens, temperature=0).choices[0].text


def test_concurrent_batched_equals_sequential(subq_bin, mamba2_folder):
    seq = Server(subq_bin, mamba2_folder, "--max-batch", "1", "--cache-bytes", "0")
    try:
        ref = [_complete(seq, p) for p in PROMPTS]
    finally:
        seq.stop()
    assert len(set(ref)) > 1
    bat = Server(subq_bin, mamba2_folder, "--max-batch", "8", "--step-tokens", "7", "--cache-every", "4")
    try:
        with concurrent.futures.ThreadPoolExecutor(len(PROMPTS)) as ex:
            for _ in range(2):  # second round: prompts restored from the cache
                got = list(ex.map(lambda p: _complete(bat, p), PROMPTS))
                assert got == ref
        assert bat.metric("prefix_cache_hits_total") >= len(PROMPTS)
        # a prompt that extends a cached one prefills only the extension (random-model text re-tokenizes
        # differently from the generated tokens, so only the prompt's own snapshot is sure to match)
        base = bat.client.completions.create(model="m", prompt=PROMPTS[3], max_tokens=1, temperature=0)
        p0 = bat.metric("prefill_tokens_total")
        ext = bat.client.completions.create(model="m", prompt=PROMPTS[3] + ref[3], max_tokens=4, temperature=0)
        assert bat.metric("prefill_tokens_total") - p0 <= ext.usage.prompt_tokens - base.usage.prompt_tokens
        assert bat.metric("state_bytes") == 0 and bat.metric("running_sequences") == 0
    finally:
        bat.stop()


def test_sample_shares_the_prefill_and_votes(subq_bin, data_dir):
    model = data_dir / "stories260K" / "stories260K.bin"
    p = run_subq(subq_bin, "sample", "--model", model, "--prompt", "Once upon a time, there was a little", "--n", "8",
                 "--max-tokens", "24", "--seed", "3", "--threads", "1", "--vote", "--answer-regex",
                 r"named (\w+)")
    assert p.stdout.count("--- sample") == 8
    m = re.search(r"=== vote: (\S+) \((\d+) of 8 complete samples\)", p.stdout)
    assert m and int(m.group(2)) >= 1, p.stdout
    assert "8 of 8 samples complete" in p.stderr
    p = run_subq(subq_bin, "sample", "--model", model, "--prompt", "Once", "--n", "16", "--max-tokens", "400",
                 "--time-budget", "0.2", "--threads", "1")
    assert re.search(r"\d+ of 16 samples complete in 0\.[2-9]", p.stderr), p.stderr


def test_disconnect_cancels_and_queue_full_is_429(subq_bin, mamba2_folder):
    """A recurrent model has no context limit, so a huge max_tokens runs until the client goes away."""
    import http.client
    import json
    import time
    s = Server(subq_bin, mamba2_folder, "--max-batch", "1", "--max-queue", "1")
    try:
        port = int(s.url.rsplit(":", 1)[1])
        # ignore_eos: a sampled end of story would end the running request and free the queue slot early.
        body = json.dumps({"prompt": "Once", "max_tokens": 1000000, "stream": True, "ignore_eos": True})
        conns = []
        for i in range(2):  # one running, then one queued (in this order: the queue holds one)
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            c.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
            conns.append(c)
            if i == 0:
                first = c.getresponse()
                assert first.status == 200 and first.readline().startswith(b"data: ")
        deadline = time.time() + 10
        while s.metric("queue_length") < 1 and time.time() < deadline:
            time.sleep(0.05)
        # The queue is full: a third request is refused with 429 (raw HTTP: the openai client retries 429s).
        statuses = []
        for _ in range(20):
            c3 = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            c3.request("POST", "/v1/completions", json.dumps({"prompt": "x", "max_tokens": 2}),
                       {"Content-Type": "application/json"})
            statuses.append(c3.getresponse().status)
            c3.close()
            if statuses[-1] == 429:
                break
            time.sleep(0.1)
        assert statuses[-1] == 429, statuses
        for c in conns:
            c.close()  # both clients go away: the running sequence is cancelled, the queued one dropped
        deadline = time.time() + 10
        while (s.metric("running_sequences") or s.metric("queue_length")) and time.time() < deadline:
            time.sleep(0.05)
        assert s.metric("running_sequences") == 0 and s.metric("state_bytes") == 0
        assert s.metric("generated_tokens_total") < 1000000
        assert s.client.completions.create(model="m", prompt="Once", max_tokens=3).usage.completion_tokens == 3
    finally:
        s.stop()


def test_ignore_eos_generates_to_max_tokens(subq_bin, mamba2_folder):
    """vLLM's ignore_eos: the random model samples end-of-sequence now and then (a seeded request ends early
    with "stop"); with ignore_eos the same request runs to max_tokens, through the same tokens."""
    s = Server(subq_bin, mamba2_folder)
    try:
        ended = s.client.completions.create(model="m", prompt="Once", max_tokens=4000, seed=7)
        assert ended.choices[0].finish_reason == "stop" and ended.usage.completion_tokens < 4000
        on = s.client.completions.create(model="m", prompt="Once", max_tokens=4000, seed=7,
                                         extra_body={"ignore_eos": True})
        assert on.choices[0].finish_reason == "length" and on.usage.completion_tokens == 4000
        assert on.choices[0].text.startswith(ended.choices[0].text)
    finally:
        s.stop()
