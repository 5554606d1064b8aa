"""lm-evaluation-harness with subq's model "subq" (python/subq/lm_eval.py), offline, on local tasks made
here from the bundled TinyStories text (lm-eval custom YAML tasks over JSONL):
  - a cloze with four endings (multiple_choice): `lm_eval --model subq` (registered by the package's .pth
    hook) gives the acc / acc_norm of `subq eval --choices` on the same items, and on the Llama teacher the
    per-ending log-likelihoods and the accuracies of lm-eval's own `--model hf` (transformers);
  - loglikelihood_rolling: per-document sums equal a log-softmax computation over lm-eval's rolling windows
    from `Model.logits`;
  - generate_until: greedy continuations stopped at "." equal `Model.generate(..., stop=["."])`."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import run_subq

pytest.importorskip("lm_eval")

N_CLOZE = 40
OFFLINE = {"HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}


def sentences(story):
    # whitespace runs become one space: transformers' converted Llama tokenizer splits runs of spaces
    # differently from the SentencePiece library (which subq and the model's training used)
    parts = [" ".join(s.split()) for s in story.split(".")]
    return [p + "." for p in parts if len(p.split()) >= 3]


@pytest.fixture(scope="module")
def tasks(tmp_path_factory, data_dir):
    """A task folder: tinystories_cloze (JSONL items {context, endings, label}), tinystories_rolling
    ({text}) and tinystories_continue ({context}); the same cloze items as cloze.jsonl for subq."""
    d = tmp_path_factory.mktemp("tasks")
    stories = [s for s in (data_dir / "text" / "tinystories-sample.txt").read_text().split("<|endoftext|>")
               if len(sentences(s)) >= 4]
    rng = np.random.default_rng(0)
    items = []
    for i, s in enumerate(stories[:N_CLOZE]):
        sent = sentences(s)
        k = len(sent) // 2
        others = [sentences(stories[j])[k % 3 + 1] for j in rng.choice(np.arange(N_CLOZE, 400), 3, replace=False)]
        label = int(rng.integers(4))
        endings = others[:label] + [sent[k]] + others[label:]
        items.append({"context": " ".join(sent[:k]), "endings": endings, "label": label})
    (d / "cloze.jsonl").write_text("".join(json.dumps(x) + "\n" for x in items))
    (d / "rolling.jsonl").write_text("".join(json.dumps({"text": s.strip()}) + "\n" for s in stories[50:56]))
    (d / "continue.jsonl").write_text("".join(json.dumps({"context": x["context"]}) + "\n" for x in items[:8]))

    def task(name, jsonl, body):
        (d / f"{name}.yaml").write_text(f"task: {name}\ndataset_path: json\ndataset_kwargs:\n  data_files:\n"
                                        f"    test: {d / jsonl}\ntest_split: test\n{body}")
    task("tinystories_cloze", "cloze.jsonl",
         "output_type: multiple_choice\ndoc_to_text: \"{{context}}\"\ndoc_to_choice: \"{{endings}}\"\n"
         "doc_to_target: label\nmetric_list:\n  - metric: acc\n  - metric: acc_norm\n")
    task("tinystories_rolling", "rolling.jsonl",
         "output_type: loglikelihood_rolling\ndoc_to_text: \"\"\ndoc_to_target: \"{{text}}\"\n"
         "metric_list:\n  - metric: word_perplexity\n  - metric: bits_per_byte\n")
    task("tinystories_continue", "continue.jsonl",
         "output_type: generate_until\ndoc_to_text: \"{{context}}\"\ndoc_to_target: \"\"\n"
         "generation_kwargs:\n  until: [\".\"]\n  max_gen_toks: 32\n  do_sample: false\n"
         "metric_list:\n  - metric: exact_match\n")
    return d


def lm_eval_cli(build_dir, tasks, out, *args):
    """The stock lm_eval command line in a fresh interpreter whose site dirs include BUILD/python, so the
    package's subq_lm_eval.pth registers "subq" exactly as in an installed environment."""
    code = ("import site, sys; site.addsitedir(sys.argv[1]); from lm_eval.__main__ import cli_evaluate; "
            "sys.argv = ['lm_eval'] + sys.argv[2:]; cli_evaluate()")
    p = subprocess.run([sys.executable, "-c", code, str(build_dir / "python"), *args, "--include_path", str(tasks),
                        "--output_path", str(out), "--log_samples"],
                       capture_output=True, text=True, timeout=600, env={**os.environ, **OFFLINE})
    assert p.returncode == 0, f"lm_eval {' '.join(args)} failed:\n{p.stderr[-4000:]}"
    results = json.loads(next(out.rglob("results_*.json")).read_text())
    samples = [json.loads(line) for f in out.rglob("samples_*.jsonl") for line in f.read_text().splitlines()]
    return results, sorted(samples, key=lambda s: s["doc_id"])


def subq_choices(subq_bin, model, tasks):
    return json.loads(run_subq(subq_bin, "eval", "--model", model, "--choices", tasks / "cloze.jsonl", "--json").stdout)


def test_cloze_subq_equals_subq_eval_and_transformers(build_dir, subq_bin, data_dir, tasks, tmp_path):
    teacher = data_dir / "stories260K" / "hf"
    res, samples = lm_eval_cli(build_dir, tasks, tmp_path / "subq", "--model", "subq", "--model_args",
                               f"pretrained={teacher},threads=2", "--tasks", "tinystories_cloze", "--batch_size", "8")
    got = res["results"]["tinystories_cloze"]
    own = subq_choices(subq_bin, teacher, tasks)
    assert own["items"] == N_CLOZE
    assert got["acc,none"] == pytest.approx(own["acc"]) and got["acc_norm,none"] == pytest.approx(own["acc_norm"])
    assert got["acc,none"] > 0.4  # the teacher tells its own story's sentence from three others (chance 0.25)
    # lm-eval's transformers model on the same folder: same log-likelihoods, same accuracies
    ref, ref_samples = lm_eval_cli(build_dir, tasks, tmp_path / "hf", "--model", "hf", "--model_args",
                                   f"pretrained={teacher},add_bos_token=True,dtype=float32", "--device", "cpu",
                                   "--tasks", "tinystories_cloze", "--batch_size", "8")
    for a, b in zip(samples, ref_samples):
        np.testing.assert_allclose([float(r[0]) for r in a["filtered_resps"]],
                                   [float(r[0]) for r in b["filtered_resps"]], atol=2e-3, err_msg=f"doc {a['doc_id']}")
    r = ref["results"]["tinystories_cloze"]
    assert got["acc,none"] == pytest.approx(r["acc,none"]) and got["acc_norm,none"] == pytest.approx(r["acc_norm,none"])


def test_cloze_on_a_distilled_student(build_dir, subq_bin, students, tasks, tmp_path):
    res, _ = lm_eval_cli(build_dir, tasks, tmp_path / "s", "--model", "subq", "--model_args",
                         f"pretrained={students['llamba']}", "--tasks", "tinystories_cloze", "--batch_size", "16")
    got = res["results"]["tinystories_cloze"]
    own = subq_choices(subq_bin, students["llamba"], tasks)
    assert got["acc,none"] == pytest.approx(own["acc"]) and got["acc_norm,none"] == pytest.approx(own["acc_norm"])


def log_softmax(x):
    x = x.astype(np.float64)
    m = x.max(-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


@pytest.mark.parametrize("which", ["teacher", "student"])
def test_rolling_and_generate_until(which, subq_py, data_dir, students, tasks, tmp_path):
    import subq.lm_eval  # noqa: F401  (registers "subq" in this process, as the .pth hook does on import)
    from lm_eval import simple_evaluate, utils
    from lm_eval.tasks import TaskManager

    path = data_dir / "stories260K" / "hf" if which == "teacher" else students["llamba"]
    os.environ.update(OFFLINE)
    # max_length 64 splits every story into several rolling windows (the teacher's limit is 512)
    out = simple_evaluate(model="subq", model_args=f"pretrained={path},max_length=64,batch_tokens=100",
                          tasks=["tinystories_rolling", "tinystories_continue"], batch_size=3, log_samples=True,
                          task_manager=TaskManager(include_path=str(tasks)))
    m = subq_py.load(path)
    bos = m.tokenizer.bos_id
    for s in sorted(out["samples"]["tinystories_rolling"], key=lambda s: s["doc_id"]):
        tokens = m.tokenizer.encode(s["doc"]["text"], add_bos=False)
        want = 0.0
        for ctx, pred in map(utils.make_disjoint_window, utils.get_rolling_token_windows(tokens, bos, 64, 1)):
            lp = log_softmax(m.logits(ctx + pred)[len(ctx) - 1:-1])
            want += lp[np.arange(len(pred)), pred].sum()
        got = s["filtered_resps"][0]
        assert float(got if not isinstance(got, list) else got[0]) == pytest.approx(want, abs=1e-3)
    gen = sorted(out["samples"]["tinystories_continue"], key=lambda s: s["doc_id"])
    # prompts keep their last max_length - max_gen_toks = 32 tokens (left truncation, as lm-eval's hf model does)
    want = m.generate([m.tokenizer.encode(s["doc"]["context"])[-32:] for s in gen], max_tokens=32, stop=["."])
    assert [s["filtered_resps"][0] for s in gen] == want
    assert all("." not in t for t in want)
