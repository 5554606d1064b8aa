"""subq serve end to end with the official `openai` client: completions, chat, streaming, n > 1, errors,
the exact prefix-state cache and speculative decoding, against servers started on 127.0.0.1."""
import json
import os
import pathlib
import re
import subprocess
import urllib.error
import urllib.request

import pytest

openai = pytest.importorskip("openai")

CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}"
    "{{ 'User: ' + message['content'] | trim + '\\n' }}{% elif message['role'] == 'assistant' %}"
    "{{ 'Assistant:' + message['content'] + '\\n' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}")


class Server:
    def __init__(self, subq_bin, model, *extra):
        self.proc = subprocess.Popen([subq_bin, "serve", "--model", str(model), "--port", "0", "--threads", "1",
                                      *map(str, extra)], stderr=subprocess.PIPE, text=True)
        line = self.proc.stderr.readline()
        m = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        assert m, f"server did not start: {line}{self.proc.stderr.read() if self.proc.poll() is not None else ''}"
        self.url = f"http://127.0.0.1:{m.group(1)}"
        self.client = openai.OpenAI(base_url=self.url + "/v1", api_key="none", max_retries=0, timeout=60)

    def get(self, path):
        with urllib.request.urlopen(self.url + path, timeout=10) as r:
            return r.read().decode()

    def post(self, path, body):
        req = urllib.request.Request(self.url + path, data=body if isinstance(body, bytes) else body.encode(),
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def metric(self, name):
        m = re.search(rf"^subq_{name} (\S+)$", self.get("/metrics"), re.M)
        return float(m.group(1))

    def stop(self):
        self.proc.terminate()
        assert self.proc.wait(timeout=20) == 0, "server did not shut down cleanly on SIGTERM"


@pytest.fixture(scope="module")
def model(data_dir):
    return data_dir / "stories260K" / "stories260K.bin"


@pytest.fixture(scope="module")
def server(subq_bin, model):
    s = Server(subq_bin, model)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def chat_server(subq_bin, data_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("chat_model")
    hf = data_dir / "stories260K" / "hf"
    for f in ("config.json", "model.safetensors", "tokenizer.model"):
        os.symlink(hf / f, folder / f)
    cfg = json.loads((hf / "tokenizer_config.json").read_text())
    cfg["chat_template"] = CHAT_TEMPLATE
    (folder / "tokenizer_config.json").write_text(json.dumps(cfg))
    s = Server(subq_bin, folder)
    yield s
    s.stop()


def test_health_and_models(server):
    assert json.loads(server.get("/health"))["status"] == "ok"
    models = server.client.models.list()
    assert [m.id for m in models.data] == ["stories260K.bin"]


def test_completion_greedy_matches_generate(server, subq_bin, model):
    r = server.client.completions.create(model="stories260K.bin", prompt="Once upon a time", max_tokens=20,
                                         temperature=0)
    ref = subprocess.run([subq_bin, "generate", "--model", str(model), "--prompt", "Once upon a time",
                          "--max-tokens", "20"], capture_output=True, text=True, check=True).stdout
    assert "Once upon a time" + r.choices[0].text == ref.rstrip("\n")
    assert r.choices[0].finish_reason == "length"
    assert r.usage.completion_tokens == 20 and r.usage.prompt_tokens > 0


def test_streaming_equals_non_streaming(server):
    args = dict(model="m", prompt="The dog", max_tokens=24, temperature=0)
    full = server.client.completions.create(**args).choices[0].text
    chunks = list(server.client.completions.create(stream=True, **args))
    assert "".join(c.choices[0].text for c in chunks) == full
    assert chunks[-1].choices[0].finish_reason == "length"


def test_n_choices_seeded(server):
    args = dict(model="m", prompt="Lily", max_tokens=16, temperature=1.0, n=4, seed=7)
    a = server.client.completions.create(**args)
    b = server.client.completions.create(**args)
    assert sorted(c.index for c in a.choices) == [0, 1, 2, 3]
    assert [c.text for c in a.choices] == [c.text for c in b.choices]  # seeded: reproducible
    assert len({c.text for c in a.choices}) > 1                         # distinct seeds per choice


def test_stop_strings_and_logprobs(server):
    r = server.client.completions.create(model="m", prompt="Once upon a time", max_tokens=40, temperature=0,
                                         stop=["Lily"], logprobs=3)
    c = r.choices[0]
    assert c.finish_reason == "stop" and "Lily" not in c.text and c.text.endswith("named ")
    lp = c.logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) > 0
    assert all(v <= 0 for v in lp.token_logprobs) and all(len(t) == 3 for t in lp.top_logprobs)


def test_errors(server):
    for body, param in [("{not json", None), ('{"prompt": "x", "max_tokens": "many"}', "max_tokens"),
                        ('{"prompt": "x", "temperature": 5}', "temperature"), ('{"max_tokens": 3}', "prompt"),
                        ('{"prompt": "x", "n": 0}', "n"), ('{"prompt": "x", "max_tokens": 100000}', "max_tokens"),
                        ("[" * 100 + "]" * 100, None), ('{"prompt": [1, 2, 99999]}', "prompt"),
                        ('{"prompt": "x", "ignore_eos": 1}', "ignore_eos")]:
        status, err = server.post("/v1/completions", body)
        assert status == 400, body
        assert err["error"]["type"] == "invalid_request_error" and err["error"]["message"]
        assert err["error"]["param"] == param, body
    with pytest.raises(openai.BadRequestError):
        server.client.completions.create(model="m", prompt="x " * 600, max_tokens=4)
    with pytest.raises(openai.BadRequestError, match="chat template"):  # stories260K.bin has none
        server.client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    status, err = server.post("/v1/completions", b'{"prompt": "' + b"a" * (5 << 20) + b'"}')
    assert status == 413 and "too large" in err["error"]["message"]
    assert json.loads(server.get("/health"))["status"] == "ok"


def test_prefix_cache_is_exact_and_prefills_only_the_rest(subq_bin, model):
    prompt = "Once upon a time, there was a little dog named Max. Max liked to run in the park with his friends."
    outs = {}
    for cache in ("0", "64M"):
        s = Server(subq_bin, model, "--cache-bytes", cache, "--cache-every", "8")
        try:
            first = s.client.completions.create(model="m", prompt=prompt, max_tokens=30, temperature=0).choices[0].text
            p0 = s.metric("prefill_tokens_total")
            longer = prompt + first + " One day"
            second = s.client.completions.create(model="m", prompt=longer, max_tokens=30, temperature=0)
            prefilled = s.metric("prefill_tokens_total") - p0
            again = s.client.completions.create(model="m", prompt=prompt, max_tokens=30, temperature=0).choices[0].text
            outs[cache] = (first, second.choices[0].text, again)
            if cache == "0":
                assert prefilled == second.usage.prompt_tokens
            else:  # restored the state after prompt + first answer: only " One day" (and a boundary token) fed
                assert prefilled <= second.usage.prompt_tokens - 30, prefilled
                assert s.metric("prefix_cache_hits_total") >= 2
        finally:
            s.stop()
    assert outs["0"] == outs["64M"]


def test_chat_and_multi_turn_cache(chat_server):
    c = chat_server.client
    msgs = [{"role": "user", "content": "Tell me a story about a cat."}]
    r1 = c.chat.completions.create(model="m", messages=msgs, max_tokens=12, temperature=0)
    answer = r1.choices[0].message.content
    assert r1.choices[0].message.role == "assistant" and answer
    streamed = c.chat.completions.create(model="m", messages=msgs, max_tokens=12, temperature=0, stream=True)
    assert "".join(ch.choices[0].delta.content or "" for ch in streamed) == answer
    p0, t0 = chat_server.metric("prefill_tokens_total"), chat_server.metric("prompt_tokens_total")
    msgs += [{"role": "assistant", "content": answer}, {"role": "user", "content": "And then?"}]
    r2 = c.chat.completions.create(model="m", messages=msgs, max_tokens=8, temperature=0)
    prefilled = chat_server.metric("prefill_tokens_total") - p0
    new_turn = r2.usage.prompt_tokens - r1.usage.prompt_tokens - r1.usage.completion_tokens
    assert prefilled <= new_turn + 2, (prefilled, new_turn, r2.usage.prompt_tokens)
    assert chat_server.metric("prompt_tokens_total") - t0 == r2.usage.prompt_tokens


def test_speculative_greedy_is_token_identical(subq_bin, model, data_dir):
    prompts = ["Once upon a time", "The little bird", "Tom and Sue went to the"]
    outs = {}
    for spec in (False, True):
        extra = ["--draft-model", data_dir / "llama2xs" / "model.bin", "--spec-k", "4"] if spec else []
        s = Server(subq_bin, model, *extra)
        try:
            outs[spec] = [s.client.completions.create(model="m", prompt=p, max_tokens=60, temperature=0).choices[0].text
                          for p in prompts]
            if spec:
                proposed, accepted = s.metric("spec_proposed_tokens_total"), s.metric("spec_accepted_tokens_total")
                assert proposed > 0 and 0 < accepted <= proposed
        finally:
            s.stop()
    assert outs[True] == outs[False]
