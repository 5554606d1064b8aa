"""Tokenizer fidelity against the HF `tokenizers` library (and `tiktoken`) beyond the basic BPE files of
test_tokenizers.py: normalizers (NFC, NFKC, NFD, Lowercase, Strip, Replace, Prepend, Sequence), Split
pre-tokenizers with any regex and behaviour, Digits / Whitespace, added tokens (normalized or not,
lstrip / rstrip / single_word), tiktoken BPE files, on multilingual text, whitespace runs, emoji with ZWJ
and invalid UTF-8. Tokenizers are trained here with the library's trainers (offline).

Invalid UTF-8: a `tokenizers` caller holds a str, so bytes reach it decoded with errors="replace" (each
maximal invalid subpart becomes U+FFFD, as Rust's from_utf8_lossy): subq encodes raw bytes the same way.

With $SUBQ_LLAMA_CPP (llama.cpp's source tree, see tests/gguf_convert.py), the real GPT-NeoX, GPT-2,
MPT, Qwen2 and Llama-3 vocabularies in its models/ggml-vocab-*.gguf are rebuilt as tokenizer.json (and
Llama-3's as a tiktoken tokenizer.model) and checked against the ids the real HF tokenizers gave on
llama.cpp's test strings (*.gguf.out) and against `tokenizers` / `tiktoken` on the same files."""
import base64
import json
import os
import pathlib
import sys

import pytest

from conftest import run_subq
from test_tokenizers import GPT2_REGEX, LLAMA3_REGEX, assert_same_ids, subq_decode, subq_encode

tokenizers = pytest.importorskip("tokenizers")
from tokenizers import AddedToken, Regex, decoders, models, normalizers, pre_tokenizers, trainers  # noqa: E402

QWEN2_REGEX = LLAMA3_REGEX.replace(r"\p{N}{1,3}", r"\p{N}")
O200K_REGEX = "|".join([
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    r"\p{N}{1,3}", r" ?[^\s\p{L}\p{N}]+[\r\n/]*", r"\s*[\r\n]+", r"\s+(?!\S)", r"\s+"])

MULTILINGUAL = [
    "日本語のテキストと中文混合，한국어 문장도 있습니다。", "العربية: مرحبا بالعالم، كيف حالك؟ ١٢٣",
    "हिन्दी में लिखा गया वाक्य, संख्या १२३४ और क़ ज़", "Ελληνικά ΣΑΣ σας, Русский текст, Tiếng Việt ộ",
    "combining: e\u0301 a\u0308 o\u0302\u0323 n\u0303 (decomposed) vs é ä ộ ñ; Å Å; ﬁ ﬀ ㎏ ① ｆｕｌｌ",
    "case: İstanbul ǅ ß ẞ ΣΑΣ Ωmega ÀÉÎÕÜ", "whitespace runs:\t\t  \u00a0\u2003 \n\n\n   \r\n\r\n    end   ",
    "emoji ZWJ: 👨\u200d👩\u200d👧\u200d👦 👩🏽\u200d💻 🏳️\u200d🌈 ❤️ 🇺🇸 1️⃣ 🙂🚀",
    "zero width\u200b\u200c\u200djoiners and \ufeffBOM", "numbers 1234567890 3.14159 ٣٤٥ ²³ Ⅻ 1,000,000",
    "code: def f(x):\n    return x**2  # comment\n\tif x != 0: print(f'{x:>10}')", "it's I'M they'RE 'll 'd 'S",
    "   leading and trailing   ", "", " ", "\n", "a", "HELLO World hello world Hello-World",
]
INVALID_UTF8 = [b"abc\xff def", b"\xc3(", b"trunc \xe4\xb8", b"\xed\xa0\x80 surrogate half", b"\x80\x80 lone",
                b"\xf0\x9f\x99 x \xf8\x88\x80\x80\x80", b"ok \xe2\x82\xac then \xfe\xff"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, data_dir):
    d = tmp_path_factory.mktemp("fidelity_corpus")
    f = d / "corpus.txt"
    f.write_text((data_dir / "text/tinyshakespeare.txt").read_text(encoding="utf-8")[:200000] +
                 "\n".join(MULTILINGUAL * 40), encoding="utf-8")
    return f


@pytest.fixture(scope="module")
def cases(data_dir):
    lines = (data_dir / "text/wikitext-2-raw-test.raw").read_text(encoding="utf-8").splitlines(keepends=True)[:150]
    return MULTILINGUAL + lines + ["".join(lines[i:i + 10]) for i in range(0, 150, 10)]


def _train(corpus, normalizer, pre_tokenizer, decoder, vocab_size=900, specials=(), added=(), byte_level=True,
           **bpe):
    tok = tokenizers.Tokenizer(models.BPE(**bpe))
    if normalizer:
        tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizer
    tok.decoder = decoder
    alphabet = pre_tokenizers.ByteLevel.alphabet() if byte_level else []
    tok.train([str(corpus)], trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(specials),
                                                 initial_alphabet=alphabet, show_progress=False))
    if added:
        tok.add_tokens(list(added))
    return tok


def _byte_level_split(regex, behavior="isolated"):
    return pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(regex), behavior=behavior, invert=False),
                                    pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])


def _builders(corpus):
    bl = decoders.ByteLevel()
    return {
        # GPT-NeoX's layout: NFC, ByteLevel, and runs of spaces as normalized added tokens
        "neox_nfc": lambda: _train(corpus, normalizers.NFC(), pre_tokenizers.ByteLevel(add_prefix_space=False), bl,
                                   specials=["<|endoftext|>", "<|padding|>"],
                                   added=[AddedToken(" " * n, normalized=True) for n in (2, 3, 4, 8)]),
        "nfkc_lower_metaspace": lambda: _train(
            corpus, normalizers.Sequence([normalizers.NFKC(), normalizers.Replace(Regex(r"\s+"), " "),
                                          normalizers.Strip(), normalizers.Lowercase()]),
            pre_tokenizers.Metaspace(prepend_scheme="always"), decoders.Metaspace(prepend_scheme="always"),
            byte_level=False, specials=["<unk>"], unk_token="<unk>", fuse_unk=True),
        "nfd_digits_gpt2": lambda: _train(
            corpus, normalizers.Sequence([normalizers.NFD(), normalizers.Replace("``", '"')]),
            pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                     pre_tokenizers.Split(Regex(GPT2_REGEX), "isolated"),
                                     pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]), bl),
        "llama3_split": lambda: _train(corpus, None, _byte_level_split(LLAMA3_REGEX), bl, ignore_merges=True,
                                       specials=["<|begin_of_text|>", "<|eot_id|>"]),
        "qwen2_nfc": lambda: _train(corpus, normalizers.NFC(), _byte_level_split(QWEN2_REGEX), bl,
                                    specials=["<|endoftext|>", "<|im_start|>"]),
        "o200k_split": lambda: _train(corpus, None, _byte_level_split(O200K_REGEX), bl),
        "split_behaviours": lambda: _train(
            corpus, normalizers.Prepend("#"),
            pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(r"\s*[\r\n]+"), "removed"),
                                     pre_tokenizers.Split(Regex(r"\p{P}+"), "merged_with_previous"),
                                     pre_tokenizers.Split(" ", "merged_with_next"),
                                     pre_tokenizers.Split(Regex(r"\d"), "contiguous"),
                                     pre_tokenizers.Split(Regex(r"\p{Han}+"), "isolated", invert=True),
                                     pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]), bl),
        "whitespace_nfkc": lambda: _train(
            corpus, normalizers.NFKC(), pre_tokenizers.Whitespace(), decoders.ByteFallback(), byte_level=False,
            specials=["<unk>"], unk_token="<unk>"),
        "added_tokens": lambda: _train(
            corpus, normalizers.Lowercase(), pre_tokenizers.ByteLevel(add_prefix_space=True), bl,
            specials=[AddedToken("<mask>", lstrip=True, special=True), AddedToken("<sep>", rstrip=True, special=True)],
            added=[AddedToken("[w]", single_word=True), AddedToken("hello world", normalized=True),
                   AddedToken("İ", normalized=False), AddedToken("ΣΑΣ", normalized=True)]),
    }


@pytest.fixture(scope="module")
def trained(tmp_path_factory, corpus):
    d = tmp_path_factory.mktemp("fidelity_tok")
    out = {}
    for name, build in _builders(corpus).items():
        p = d / name / "tokenizer.json"
        p.parent.mkdir()
        build().save(str(p))
        out[name] = (p, tokenizers.Tokenizer.from_file(str(p)))  # the reference reads the saved file too
    return out


EXTRA = {"neox_nfc": ["a  b    c        d", "<|endoftext|>  x<|padding|>"],
         "llama3_split": ["<|begin_of_text|>Hi<|eot_id|>\n"], "qwen2_nfc": ["<|im_start|>user\nhé<|endoftext|>"],
         "added_tokens": ["x <mask> y", "a   <mask>b", "<sep>   c", "[w] a[w] [w]b ([w])", "HELLO WORLD!",
                          "hello  world", "İİ i̇", "σας ΣΑΣ ςας", "é[w]"]}


@pytest.mark.parametrize("name", list(_builders(None)))
def test_trained_tokenizer_matches_tokenizers(subq_bin, cases, tmp_path, trained, name):
    path, tok = trained[name]
    texts = cases + EXTRA.get(name, [])
    ref = [e.ids for e in tok.encode_batch(texts, add_special_tokens=False)]
    assert_same_ids(subq_encode(subq_bin, path, texts, tmp_path), ref, texts, name)
    assert subq_decode(subq_bin, path, ref, tmp_path) == tok.decode_batch(ref), name


@pytest.mark.parametrize("name", ["neox_nfc", "llama3_split", "nfkc_lower_metaspace", "added_tokens"])
def test_invalid_utf8_encodes_as_replacement_characters(subq_bin, tmp_path, trained, name):
    path, tok = trained[name]
    raw = b"\n".join(INVALID_UTF8)  # one file (one process) holding every case
    f = tmp_path / "invalid.txt"
    f.write_bytes(raw)
    ours = json.loads(run_subq(subq_bin, "tokenize", "--tokenizer", path, "--file", f).stdout)
    assert ours == tok.encode(raw.decode("utf-8", errors="replace"), add_special_tokens=False).ids, name


def test_gpt_neox_layout_loads_with_nfc(trained, subq_bin, tmp_path):
    """Decomposed and composed spellings give the same ids through NFC; the normalized whitespace added
    tokens take runs of spaces."""
    path, tok = trained["neox_nfc"]
    a, b = subq_encode(subq_bin, path, ["cafe\u0301 A\u030a", "café Å"], tmp_path)
    assert a == b == tok.encode("café Å", add_special_tokens=False).ids
    j = json.loads(path.read_text(encoding="utf-8"))
    assert j["normalizer"] == {"type": "NFC"}
    spaces = tok.token_to_id("    ")
    assert spaces in subq_encode(subq_bin, path, ["x    y"], tmp_path)[0]


# ---------------- tiktoken BPE files ----------------

def _tiktoken_file_from(tok, path):
    """A tiktoken file of the model vocabulary of a byte-level BPE tokenizer.json: token bytes, rank = id."""
    byte_of = {c: b for b, c in _bytes_to_unicode().items()}
    specials = {a.content for a in tok.get_added_tokens_decoder().values()}
    ranks = {}
    for token, i in tok.get_vocab(with_added_tokens=False).items():
        if token not in specials:
            ranks[bytes(byte_of[c] for c in token)] = i
    path.write_text("".join(f"{base64.b64encode(b).decode()} {r}\n" for b, r in sorted(ranks.items(), key=lambda x: x[1])))
    return ranks


def _bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def test_tiktoken_file_matches_tiktoken(subq_bin, cases, tmp_path, trained):
    tiktoken = pytest.importorskip("tiktoken")
    path = tmp_path / "tokenizer.model"  # the name Llama-3 ships it under; sniffed as tiktoken, not SentencePiece
    ranks = _tiktoken_file_from(trained["llama3_split"][1], path)
    enc = tiktoken.Encoding("trained", pat_str=LLAMA3_REGEX, mergeable_ranks=ranks, special_tokens={})
    ref = [enc.encode(t) for t in cases]
    assert_same_ids(subq_encode(subq_bin, path, cases, tmp_path), ref, cases, "tiktoken")
    assert subq_decode(subq_bin, path, ref, tmp_path) == [enc.decode(r) for r in ref]
    bad = tmp_path / "bad.tiktoken"
    bad.write_text("IQ== 0\nnot-base64! 1\n")
    p = run_subq(subq_bin, "tokenize", "--tokenizer", bad, "--text", "x", check=False)
    assert p.returncode != 0 and f"{bad}:2" in p.stderr, p.stderr


# ---------------- real vocabularies from llama.cpp's test files ----------------

LLAMA_CPP = pathlib.Path(os.environ["SUBQ_LLAMA_CPP"]) if os.environ.get("SUBQ_LLAMA_CPP") else None
needs_llama_cpp = pytest.mark.skipif(LLAMA_CPP is None or not (LLAMA_CPP / "models").is_dir(),
                                     reason="llama.cpp source not found (set SUBQ_LLAMA_CPP; see tests/gguf_convert.py)")
GPT2_BYTE_LEVEL = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
SPLIT_THEN_BYTES = lambda regex: {"type": "Sequence", "pretokenizers": [  # noqa: E731
    {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": False},
    {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}
# The tokenizer.json layouts of these models (normalizer, pre-tokenizer, ignore_merges, added tokens).
REAL = {
    "gpt-neox": ({"type": "NFC"}, GPT2_BYTE_LEVEL, False, 50277),
    "mpt": ({"type": "NFC"}, GPT2_BYTE_LEVEL, False, 50277),
    "gpt-2": (None, GPT2_BYTE_LEVEL, False, 50257),
    "qwen2": ({"type": "NFC"}, SPLIT_THEN_BYTES(QWEN2_REGEX), False, 151646),
    "llama-bpe": (None, SPLIT_THEN_BYTES(LLAMA3_REGEX), True, 128256),
}


def _tokenizer_json_from_gguf(name, out):
    sys.path.insert(0, str(LLAMA_CPP / "gguf-py"))
    import gguf  # noqa: E402  (llama.cpp's reader)
    f = gguf.GGUFReader(str(LLAMA_CPP / "models" / f"ggml-vocab-{name}.gguf")).fields
    normalizer, pre, ignore_merges, n = REAL[name]
    toks = f["tokenizer.ggml.tokens"].contents()[:n]
    types = f["tokenizer.ggml.token_type"].contents()[:n]
    added = [{"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": types[i] == 4, "special": types[i] == 3} for i, t in enumerate(toks) if types[i] in (3, 4)]
    j = {"version": "1.0", "added_tokens": added, "normalizer": normalizer, "pre_tokenizer": pre,
         "post_processor": None, "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True},
         "model": {"type": "BPE", "dropout": None, "unk_token": None, "fuse_unk": False, "byte_fallback": False,
                   "ignore_merges": ignore_merges, "vocab": {t: i for i, t in enumerate(toks)},
                   "merges": f["tokenizer.ggml.merges"].contents()}}
    out.write_text(json.dumps(j, ensure_ascii=False), encoding="utf-8")
    return toks


def _llama_cpp_cases(name):
    base = LLAMA_CPP / "models" / f"ggml-vocab-{name}.gguf"
    if not base.with_suffix(".gguf.out").exists():
        return [], []
    texts = base.with_suffix(".gguf.inp").read_text(encoding="utf-8").split("\n__ggml_vocab_test__\n")
    ids = [[int(x) for x in line.split()] for line in base.with_suffix(".gguf.out").read_text().split("\n")]
    texts[-1] = texts[-1].removesuffix("\n__ggml_vocab_test__\n").removesuffix("\n__ggml_vocab_test__")
    return texts, ids[:len(texts)]


@needs_llama_cpp
@pytest.mark.parametrize("name", list(REAL))
def test_real_vocab_matches_hf_ids(subq_bin, cases, tmp_path, name):
    path = tmp_path / "tokenizer.json"
    _tokenizer_json_from_gguf(name, path)
    ref_tok = tokenizers.Tokenizer.from_file(str(path))
    texts = cases + [raw.decode("utf-8", errors="replace") for raw in INVALID_UTF8]
    ref = [e.ids for e in ref_tok.encode_batch(texts, add_special_tokens=False)]
    assert_same_ids(subq_encode(subq_bin, path, texts, tmp_path), ref, texts, name)
    assert subq_decode(subq_bin, path, ref, tmp_path) == ref_tok.decode_batch(ref)
    hf_texts, hf_ids = _llama_cpp_cases(name if name != "gpt-neox" else "mpt")
    if hf_texts:  # ids the real HF tokenizer gave (llama.cpp's *.gguf.out)
        assert_same_ids(subq_encode(subq_bin, path, hf_texts, tmp_path), hf_ids, hf_texts, f"{name} vs HF ids")


@needs_llama_cpp
def test_real_llama3_tiktoken_model(subq_bin, cases, tmp_path):
    tiktoken = pytest.importorskip("tiktoken")
    toks = _tokenizer_json_from_gguf("llama-bpe", tmp_path / "tokenizer.json")
    byte_of = {c: b for b, c in _bytes_to_unicode().items()}
    ranks = {bytes(byte_of[c] for c in t): i for i, t in enumerate(toks[:128000])}
    path = tmp_path / "tokenizer.model"
    path.write_text("".join(f"{base64.b64encode(b).decode()} {r}\n" for b, r in ranks.items()))
    specials = {"<|begin_of_text|>": 128000, "<|end_of_text|>": 128001, "<|start_header_id|>": 128006,
                "<|end_header_id|>": 128007, "<|eot_id|>": 128009}
    enc = tiktoken.Encoding("llama3", pat_str=LLAMA3_REGEX, mergeable_ranks=ranks, special_tokens=specials)
    hf_texts, hf_ids = _llama_cpp_cases("llama-bpe")
    chat = ["<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi 🙂<|eot_id|>"]
    texts = cases + hf_texts + chat
    ours = subq_encode(subq_bin, path, texts, tmp_path)
    assert_same_ids(ours, [enc.encode(t, allowed_special="all") for t in texts], texts, "llama3 tiktoken")
    assert_same_ids(ours[len(cases):len(cases) + len(hf_texts)], hf_ids, hf_texts, "llama3 tiktoken vs HF ids")
    assert subq_encode(subq_bin, path, ["hi"], tmp_path, bos=True)[0][0] == 128000
