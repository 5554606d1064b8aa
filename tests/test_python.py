"""The `subq` Python package (python/, the nanobind extension of the CMake build) on the real stories260K
model and on distilled students: generation equals `subq generate`, logits equal `subq logits`,
loglikelihood equals log-softmax sums computed here from those logits, states snapshot and restore
exactly, batches do not change a prompt's result, engine errors arrive as subq.SubqError."""
import json

import numpy as np
import pytest
import sentencepiece as spm

from conftest import run_subq


@pytest.fixture(scope="module")
def stories(data_dir, subq_py):
    return subq_py.load(data_dir / "stories260K" / "stories260K.bin", threads=2)


def cli_logits(subq_bin, model, ids, tmp_path, name="l"):
    out = tmp_path / f"{name}.npy"
    run_subq(subq_bin, "logits", "--model", model, "--ids", ",".join(map(str, ids)), "--out", out)
    return np.load(out)


def log_softmax(x):
    x = x.astype(np.float64)
    m = x.max(-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


def test_generate_equals_cli(stories, subq_bin, data_dir):
    prompt = "Once upon a time"
    text = stories.generate(prompt, max_tokens=40)
    cli = run_subq(subq_bin, "generate", "--model", data_dir / "stories260K" / "stories260K.bin",
                   "--prompt", prompt, "--max-tokens", "40").stdout
    assert cli == prompt + text + "\n"
    assert text.startswith(", there was a little girl named Lily")  # the data README's greedy text


def test_batch_does_not_change_a_prompts_text(stories):
    prompts = ["Once upon a time", "Lily and Ben", "One day, a big dog"]
    alone = [stories.generate(p, max_tokens=16) for p in prompts]
    assert stories.generate(prompts, max_tokens=16) == alone
    assert stories.generate(prompts, max_tokens=16, max_batch=2) == alone
    # sampling: each prompt has its own generator seeded with `seed`
    s1 = stories.generate(prompts, max_tokens=16, temperature=0.9, top_p=0.95, seed=5)
    assert s1 == [stories.generate(p, max_tokens=16, temperature=0.9, top_p=0.95, seed=5) for p in prompts]
    assert s1 != stories.generate(prompts, max_tokens=16, temperature=0.9, top_p=0.95, seed=6)
    text, tokens, finish = stories.generate(prompts[:1], max_tokens=16, return_tokens=True)[0]
    assert finish == "length" and len(tokens) == 16 and stories.tokenizer.decode(tokens).strip() == text.strip()


def test_stop_strings_end_generation(stories):
    full = stories.generate("Once upon a time", max_tokens=60)
    cut = stories.generate("Once upon a time", max_tokens=60, stop=["."])
    assert "." in full and cut == full[:full.index(".")]


def test_logits_equal_cli_and_stepping(stories, subq_bin, data_dir, tmp_path):
    ids = stories.tokenizer.encode("Lily went to the park with her mom")
    lg = stories.logits(ids)
    assert lg.shape == (len(ids), 512) and lg.dtype == np.float32
    np.testing.assert_allclose(lg, cli_logits(subq_bin, data_dir / "stories260K" / "stories260K.bin", ids, tmp_path),
                               atol=1e-5)
    st = stories.new_state()
    stepped = np.stack([stories.forward([t], st) for t in ids])
    np.testing.assert_allclose(stepped, lg, atol=1e-4)
    assert st.pos == len(ids)


def test_loglikelihood_equals_logsoftmax_sums(stories):
    ctx, cont = "Once upon a time, there was a little", " girl named Lily"
    c_ids, k_ids = stories.encode_pair(ctx, cont)
    assert c_ids + k_ids == stories.tokenizer.encode(ctx + cont)
    lp = log_softmax(stories.logits(c_ids + k_ids))
    want = sum(lp[len(c_ids) - 1 + i, t] for i, t in enumerate(k_ids))
    greedy = all(lp[len(c_ids) - 1 + i].argmax() == t for i, t in enumerate(k_ids))
    got, is_greedy = stories.loglikelihood(ctx, cont)
    assert got == pytest.approx(want, abs=1e-4) and is_greedy == greedy
    many, flags = stories.loglikelihood([ctx] * 3, [cont, " dog", " purple elephant"])
    assert many.shape == (3,) and flags.dtype == np.bool_
    assert many[0] == pytest.approx(want, abs=1e-4) and many[0] > many[2]
    ids_lp, _ = stories.loglikelihood(c_ids, k_ids)  # token ids (BOS already first) give the same
    assert ids_lp == pytest.approx(got, abs=1e-5)


def test_snapshot_restore_is_exact(stories):
    tok = stories.tokenizer
    st = stories.new_state()
    stories.forward(tok.encode("Lily and Ben went to the"), st)
    snap = stories.snapshot(st)
    a = stories.forward(tok.encode(" park", add_bos=False), st)
    stories.restore(st, snap)
    assert st.pos == snap.pos
    b = stories.forward(tok.encode(" park", add_bos=False), st)
    np.testing.assert_array_equal(a, b)
    stories.restore(st, snap)
    c = stories.forward(tok.encode(" shop", add_bos=False), st)
    assert not np.array_equal(a, c)


def test_tokenizer_matches_sentencepiece(stories, subq_py, data_dir):
    hf = subq_py.load(data_dir / "stories260K" / "hf")  # its tokenizer.model runs through SentencePiece
    sp = spm.SentencePieceProcessor(model_file=str(data_dir / "stories260K" / "hf" / "tokenizer.model"))
    for s in ["Once upon a time", "Lily's cat said: \"Hello!\"", "  two  spaces", "naïve café"]:
        ids = hf.tokenizer.encode(s)
        assert ids == [sp.bos_id()] + sp.encode(s)
        assert hf.tokenizer.decode(ids[1:]) == sp.decode(ids[1:])
        assert hf.tokenizer.encode(s, add_bos=False) == sp.encode(s)
    assert stories.tokenizer.encode("Once upon a time") == [1, 403, 407, 261, 378]  # the llama2.c tok512.bin
    assert stories.tokenizer.vocab_size == 512 and stories.tokenizer.bos_id == 1 and stories.tokenizer.eos_id == 2
    assert stories.config["family"] == "llama" and stories.context_limit == 512


def test_engine_errors_are_subq_errors(subq_py, stories, data_dir, tmp_path):
    E = subq_py.SubqError
    with pytest.raises(E, match="no such file"):
        subq_py.load(tmp_path / "nope")
    with pytest.raises(E, match="CPU engine"):
        subq_py.load(data_dir / "stories260K" / "stories260K.bin", device="cuda")
    with pytest.raises(E, match="outside the vocabulary"):
        stories.logits([1, 600])
    with pytest.raises(E, match="temperature"):
        stories.generate("Once", temperature=-1.0)
    with pytest.raises(E, match="context limit"):
        stories.generate([[1] * 600])
    with pytest.raises(E, match="continuation has no tokens"):
        stories.loglikelihood([1, 2], [])
    with pytest.raises(E, match="exceeds the model's limit of 512"):
        stories.logits([1] * 513)
    other = subq_py.load(data_dir / "stories260K" / "hf")
    with pytest.raises(E, match="another model"):
        stories.forward([1], other.new_state())
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text("{not json")
    with pytest.raises(E, match="config.json"):
        subq_py.load(bad)
    assert issubclass(E, RuntimeError)


def test_distilled_students_load_and_match_cli(students, subq_py, subq_bin, tmp_path):
    for kind, folder in students.items():
        summary = json.loads((folder / "summary.json").read_text())
        assert np.isfinite(summary["student_ppl"])
        m = subq_py.load(folder)
        assert m.config["family"] == ("llamba" if kind == "llamba" else "mamba2")
        ids = m.tokenizer.encode("Once upon a time there was")
        np.testing.assert_allclose(m.logits(ids), cli_logits(subq_bin, folder, ids, tmp_path, kind), atol=1e-5)
        texts = m.generate(["Once upon a time", "Lily"], max_tokens=16)
        assert texts == [m.generate("Once upon a time", max_tokens=16), m.generate("Lily", max_tokens=16)]
        assert all(isinstance(t, str) and t for t in texts)
    assert subq_py.load(students["llamba"]).context_limit > 1 << 20  # recurrent: no context limit


def test_distill_errors_carry_the_trainer_message(students, subq_py, tmp_path):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("teacher: /nonexistent/model\n")
    with pytest.raises(subq_py.SubqError, match="nonexistent"):
        subq_py.distill(recipe, tmp_path / "out", quiet=True)
