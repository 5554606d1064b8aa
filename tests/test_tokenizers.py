"""Tokenizer parity through `subq tokenize`: SentencePiece .model files against the Python sentencepiece
library, tokenizer.json files against the HF `tokenizers` library (byte-level BPE trained here in GPT-2
and Llama-3 style, and a SentencePiece-style BPE with byte fallback built from tok512.model), all on
lines and paragraphs of every bundled text. Offline: tokenizers are trained or converted in tmp_path."""
import json
import pathlib

import pytest

from conftest import run_subq

sentencepiece = pytest.importorskip("sentencepiece")
tokenizers = pytest.importorskip("tokenizers")
from tokenizers import Regex, decoders, models, normalizers, pre_tokenizers, trainers  # noqa: E402

LINES_PER_FILE = 200
GPT2_REGEX = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
LLAMA3_REGEX = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"""
                r"""\s*[\r\n]+|\s+(?!\S)|\s+""")
EDGE_CASES = [
    "", " ", "  ", "\n", "\r\n", "a", "Once upon a time", "  two leading spaces", "trailing spaces  ",
    "double  space   and    more", "tab\there\t\tand\n\nnewlines\r\n\r\n", "it's I'M they'RE we'VE 'll 'd 'S",
    "héllo wörld — naïve café, Øresund", "世界 你好 日本語のテキスト", "emoji 🙂🚀 and 👍🏽 skin tone",
    "numbers 1234567 3.14159 1,000,000 ٣٤٥ ²³ Ⅻ", "\u00a0nbsp\u2009thin\u3000ideographic", "  \n  x",
    "mixed\u200bzero width", "ŉ ǅ ǈ ﬁ ligatures", "a\u0301 combining", "<s> </s> <unk> literal specials",
    "?!... ,,;; ''\"\" (brackets) [x] {y}", "   \t\n  ", "x" * 300, "ab " * 120,
]


def _read_samples(path, n_lines):
    raw = path.read_bytes().decode("utf-8", errors="replace")
    lines = raw.splitlines(keepends=True)[:n_lines]
    paragraphs = ["".join(lines[i:i + 7]) for i in range(0, len(lines), 7)]
    return lines + paragraphs


@pytest.fixture(scope="session")
def texts(data_dir):
    files = sorted((data_dir / "text").glob("*.txt")) + sorted((data_dir / "text").glob("*.raw")) + \
        sorted((data_dir / "text" / "austen").glob("*.txt"))
    assert len(files) >= 10, files
    out = list(EDGE_CASES)
    for f in files:
        out += _read_samples(f, LINES_PER_FILE)
    # one long text: the encoders must handle whole documents, not only lines
    out.append((data_dir / "text" / "tinystories-sample.txt").read_text(encoding="utf-8")[:30000])
    return out


def subq_encode(subq_bin, tok_path, texts, tmp_path, bos=False):
    f = tmp_path / "batch.json"
    f.write_text(json.dumps(texts), encoding="utf-8")
    args = ["tokenize", "--tokenizer", tok_path, "--batch", f] + (["--bos"] if bos else [])
    return json.loads(run_subq(subq_bin, *args).stdout)


def subq_decode(subq_bin, tok_path, id_lists, tmp_path):
    f = tmp_path / "ids.json"
    f.write_text(json.dumps(id_lists), encoding="utf-8")
    return json.loads(run_subq(subq_bin, "tokenize", "--tokenizer", tok_path, "--decode-batch", f).stdout)


def assert_same_ids(ours, ref, texts, what):
    bad = [i for i in range(len(texts)) if ours[i] != ref[i]]
    if bad:
        i = bad[0]
        pytest.fail(f"{what}: {len(bad)}/{len(texts)} texts differ; first {texts[i][:200]!r}\n"
                    f"ours {ours[i][:60]}\nref  {ref[i][:60]}")


# ---------------- SentencePiece .model ----------------

@pytest.mark.parametrize("model", ["stories260K/tok512.model", "babyllama/tok105.model"])
def test_sentencepiece_model_matches_library(subq_bin, data_dir, texts, tmp_path, model):
    path = data_dir / model
    sp = sentencepiece.SentencePieceProcessor(model_file=str(path))
    ref = [sp.encode(t) for t in texts]
    assert_same_ids(subq_encode(subq_bin, path, texts, tmp_path), ref, texts, model)
    with_bos = subq_encode(subq_bin, path, texts[:50], tmp_path, bos=True)
    assert with_bos == [[sp.bos_id()] + r for r in ref[:50]]
    assert subq_decode(subq_bin, path, ref, tmp_path) == [sp.decode(r) for r in ref]


def test_known_ids_once_upon_a_time(subq_bin, data_dir):
    # verified with the Python sentencepiece library on tok512.model
    for tok in ["stories260K/tok512.model", "stories260K/tok512.bin", "stories260K/stories260K.gguf"]:
        out = run_subq(subq_bin, "tokenize", "--tokenizer", data_dir / tok, "--text", "Once upon a time", "--bos")
        assert json.loads(out.stdout) == [1, 403, 407, 261, 378], tok
    out = run_subq(subq_bin, "tokenize", "--tokenizer", data_dir / "stories260K/tok512.bin",
                   "--decode-ids", "1,403,407,261,378")
    assert out.stdout == "Once upon a time"


def test_llama2c_bin_matches_sentencepiece_on_normalized_text(subq_bin, data_dir, texts, tmp_path):
    """llama2.c's encode() equals SentencePiece except for SentencePiece's whitespace normalisation
    (remove_extra_whitespaces), which llama2.c does not do: compare on texts where it is a no-op."""
    sp = sentencepiece.SentencePieceProcessor(model_file=str(data_dir / "stories260K/tok512.model"))
    plain = [t for t in texts if "  " not in t and not t.startswith(" ") and not t.endswith(" ")]
    assert len(plain) > 1000
    ours = subq_encode(subq_bin, data_dir / "stories260K/tok512.bin", plain, tmp_path)
    assert_same_ids(ours, [sp.encode(t) for t in plain], plain, "tok512.bin")


def test_decode_stream_matches_decode(subq_bin, data_dir):
    sp = sentencepiece.SentencePieceProcessor(model_file=str(data_dir / "stories260K/tok512.model"))
    text = "Ünïcödé 世界 🙂 split across byte tokens, then plain words."
    ids = [1] + sp.encode(text)
    for tok in ["stories260K/tok512.bin", "stories260K/tok512.model"]:
        out = run_subq(subq_bin, "tokenize", "--tokenizer", data_dir / tok, "--stream",
                       "--decode-ids", ",".join(map(str, ids)))
        assert out.stdout == text, tok


# ---------------- HF tokenizer.json ----------------

def _train_byte_level(corpus_file, pre_tokenizer, vocab_size, specials, ignore_merges=False):
    tok = tokenizers.Tokenizer(models.BPE(ignore_merges=ignore_merges))
    tok.pre_tokenizer = pre_tokenizer
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train([str(corpus_file)], trainer)
    return tok


def _spm_style_from_model(model_file, metaspace):
    """A Llama-2 style tokenizer.json (BPE, byte fallback) from a SentencePiece model, built as
    transformers' LlamaConverter does (merges ordered by the merged piece's score)."""
    sp = sentencepiece.SentencePieceProcessor(model_file=str(model_file))
    vocab = {sp.id_to_piece(i): i for i in range(sp.get_piece_size())}
    scores = {sp.id_to_piece(i): sp.get_score(i) for i in range(sp.get_piece_size())}
    merges = []
    for piece, score in scores.items():
        local = [(piece[:k], piece[k:], score) for k in range(1, len(piece))
                 if piece[:k] in vocab and piece[k:] in vocab]
        merges += sorted(local, key=lambda m: (vocab[m[0]], vocab[m[1]]))
    merges = [(a, b) for a, b, _ in sorted(merges, key=lambda m: m[2], reverse=True)]
    tok = tokenizers.Tokenizer(models.BPE(vocab, merges, unk_token="<unk>", fuse_unk=True, byte_fallback=True))
    tok.add_special_tokens([tokenizers.AddedToken(t, normalized=False, special=True) for t in ["<unk>", "<s>", "</s>"]])
    if metaspace:
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)
        tok.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Metaspace(prepend_scheme="first")])
    else:
        tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
        tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                         decoders.Strip(" ", 1, 0)])
    return tok


def _merges_as_strings(path):
    j = json.loads(path.read_text(encoding="utf-8"))
    j["model"]["merges"] = [" ".join(m) if isinstance(m, list) else m for m in j["model"]["merges"]]
    path.write_text(json.dumps(j, ensure_ascii=False), encoding="utf-8")


@pytest.fixture(scope="session")
def hf_tokenizers(tmp_path_factory, data_dir):
    d = tmp_path_factory.mktemp("hf_tok")
    corpus = d / "corpus.txt"
    corpus.write_text((data_dir / "text/tinyshakespeare.txt").read_text(encoding="utf-8")[:300000] +
                      (data_dir / "text/austen/emma.txt").read_text(encoding="utf-8")[:200000], encoding="utf-8")
    out = {}
    gpt2 = _train_byte_level(corpus, pre_tokenizers.ByteLevel(add_prefix_space=False), 800, ["<|endoftext|>"])
    out["gpt2"] = gpt2
    gpt2_prefix = _train_byte_level(corpus, pre_tokenizers.ByteLevel(add_prefix_space=True), 600, ["<|endoftext|>"])
    out["gpt2_prefix_space"] = gpt2_prefix
    llama3_pre = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    out["llama3"] = _train_byte_level(corpus, llama3_pre, 900, ["<|begin_of_text|>", "<|eot_id|>"],
                                      ignore_merges=True)
    gpt2_split = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(GPT2_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    out["gpt2_split"] = _train_byte_level(corpus, gpt2_split, 700, ["<|endoftext|>"])
    out["spm_style"] = _spm_style_from_model(data_dir / "stories260K/tok512.model", metaspace=False)
    out["spm_metaspace"] = _spm_style_from_model(data_dir / "stories260K/tok512.model", metaspace=True)
    paths = {}
    for name, tok in out.items():
        p = d / name / "tokenizer.json"
        p.parent.mkdir()
        tok.save(str(p))
        paths[name] = (p, tok)
    _merges_as_strings(paths["gpt2"][0])  # "a b" merges (older files); the others keep [a, b] pairs
    paths["gpt2"] = (paths["gpt2"][0], tokenizers.Tokenizer.from_file(str(paths["gpt2"][0])))
    return paths


HF_NAMES = ["gpt2", "gpt2_prefix_space", "gpt2_split", "llama3", "spm_style", "spm_metaspace"]


@pytest.mark.parametrize("name", HF_NAMES)
def test_tokenizer_json_matches_tokenizers(subq_bin, texts, tmp_path, hf_tokenizers, name):
    path, tok = hf_tokenizers[name]
    specials = {"gpt2": "<|endoftext|>", "gpt2_prefix_space": "<|endoftext|>", "gpt2_split": "<|endoftext|>",
                "llama3": "<|eot_id|>", "spm_style": "</s>", "spm_metaspace": "</s>"}[name]
    cases = texts + [f"Hello{specials}world", f"{specials} at start", f"end {specials}", f"a {specials} b {specials}"]
    ref = [e.ids for e in tok.encode_batch(cases, add_special_tokens=False)]
    assert_same_ids(subq_encode(subq_bin, path, cases, tmp_path), ref, cases, name)
    # the folder form finds tokenizer.json too
    assert subq_encode(subq_bin, path.parent, cases[:20], tmp_path) == ref[:20]
    assert subq_decode(subq_bin, path, ref, tmp_path) == tok.decode_batch(ref)


def test_spm_style_json_matches_sentencepiece(subq_bin, data_dir, texts, tmp_path, hf_tokenizers):
    """The converted Llama-2 style tokenizer.json encodes like tok512.model where SentencePiece's
    whitespace normalisation is a no-op (and the text has no "<s>" etc., which tokenizers matches as
    special tokens but SentencePiece encodes as characters)."""
    sp = sentencepiece.SentencePieceProcessor(model_file=str(data_dir / "stories260K/tok512.model"))
    plain = [t for t in texts if "  " not in t and not t.startswith(" ") and not t.endswith(" ")
             and not any(s in t for s in ("<s>", "</s>", "<unk>"))]
    ours = subq_encode(subq_bin, hf_tokenizers["spm_style"][0], plain, tmp_path)
    assert_same_ids(ours, [sp.encode(t) for t in plain], plain, "spm_style vs sentencepiece")


def test_bos_from_tokenizer_json(subq_bin, hf_tokenizers, tmp_path):
    path, tok = hf_tokenizers["llama3"]
    ids = subq_encode(subq_bin, path, ["hi there"], tmp_path, bos=True)[0]
    assert ids == [tok.token_to_id("<|begin_of_text|>")] + tok.encode("hi there", add_special_tokens=False).ids


# ---------------- errors ----------------

def _tokenize_error(subq_bin, tok_path):
    p = run_subq(subq_bin, "tokenize", "--tokenizer", tok_path, "--text", "hello", check=False)
    assert p.returncode != 0
    return p.stderr


def test_unsupported_components_are_named(subq_bin, hf_tokenizers, tmp_path):
    base = json.loads(hf_tokenizers["spm_style"][0].read_text(encoding="utf-8"))
    cases = [
        ("model", {"type": "WordPiece", "vocab": {"a": 0}}, "model type 'WordPiece'"),
        ("normalizer", {"type": "Precompiled", "precompiled_charsmap": ""}, "normalizer 'Precompiled'"),
        ("pre_tokenizer", {"type": "Punctuation"}, "pre-tokenizer 'Punctuation'"),
        ("pre_tokenizer", {"type": "Split", "pattern": {"Regex": "(unclosed"}, "behavior": "Isolated", "invert": False},
         "does not compile"),
        ("pre_tokenizer", {"type": "Split", "pattern": {"Regex": "x"}, "behavior": "Sideways", "invert": False},
         "behavior 'Sideways'"),
        ("decoder", {"type": "WordPiece", "prefix": "##", "cleanup": True}, "decoder 'WordPiece'"),
    ]
    for key, value, message in cases:
        j = dict(base)
        j[key] = value
        p = tmp_path / f"bad_{key}_{len(message)}.json"
        p.write_text(json.dumps(j), encoding="utf-8")
        err = _tokenize_error(subq_bin, p)
        assert message in err and str(p) in err, err


def test_malformed_files_are_errors(subq_bin, data_dir, tmp_path):
    good = (data_dir / "stories260K/tok512.bin").read_bytes()
    cases = {
        "truncated.bin": good[: len(good) // 2],
        "badlen.bin": good[:4] + good[4:8] + (10_000).to_bytes(4, "little") + good[12:],
        "tiny.bin": b"\x01\x00",
        "garbage.model": b"not a sentencepiece model",
        "notjson.json": b"{ this is not json",
        "novocab.json": b'{"model": {"type": "BPE"}}',
        "badmerge.json": json.dumps({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a b"]}}).encode(),
        "unknown.xyz": b"hello",
    }
    for name, content in cases.items():
        p = tmp_path / name
        p.write_bytes(content)
        err = _tokenize_error(subq_bin, p)
        assert str(p) in err, (name, err)
    assert "not found" in _tokenize_error(subq_bin, tmp_path / "missing.bin")


@pytest.mark.parametrize("name", ["gpt2", "llama3", "spm_style", "spm_metaspace"])
def test_tokenizer_json_decode_stream_matches_decode(subq_bin, hf_tokenizers, name):
    """The windowed DecodeStream equals the library's whole-sequence decode, including byte-level and
    byte-fallback pieces of multi-byte characters split across tokens."""
    path, tok = hf_tokenizers[name]
    text = "Ünïcödé 世界 🙂 👍🏽 split across byte tokens, then plain words. " * 3
    ids = tok.encode(text, add_special_tokens=False).ids
    out = run_subq(subq_bin, "tokenize", "--tokenizer", path, "--stream", "--decode-ids", ",".join(map(str, ids)))
    assert out.stdout == tok.decode(ids), name
