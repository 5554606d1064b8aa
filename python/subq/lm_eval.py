"""The lm-evaluation-harness model "subq": any checkpoint subq loads, scored by subq's engine.

    lm_eval --model subq --model_args pretrained=runs/llamba --tasks ... [--include_path my_tasks/]
    python -m subq.lm_eval --model subq ...      # the same, where the package's .pth hook is not installed

`pip install .` installs subq_lm_eval.pth, which registers the name when lm_eval is imported
(python/_subq_lm_eval_hook.py); importing this module registers it too.

model_args: pretrained (path), tokenizer (override), threads (0: all CPUs), batch_tokens (tokens per
engine call, default 512), add_bos_token (default true: subq's models see BOS at the start of every
document), max_length (rolling-window length; default the model's context limit), state_dtype (f32|bf16).
batch_size is the number of sequences scored or generated together ("auto": 32).

loglikelihood scores every request as its own sequence in ragged batches (no padding), so results depend
on the batch size only through float rounding; generate_until decodes each group of requests with equal generation settings as
one batch through the `subq serve` scheduler, stopping at the `until` strings.
"""
from __future__ import annotations

import logging

import lm_eval.utils as lm_utils
from lm_eval.api.model import TemplateLM
from lm_eval.api.registry import register_model
from tqdm import tqdm

import subq


log = logging.getLogger(__name__)


def _bool(v) -> bool:
    if isinstance(v, str):
        return v.strip().lower() in ("1", "true", "yes", "on")
    return bool(v)


class SubqLM(TemplateLM):
    def __init__(self, pretrained: str, tokenizer: str = "", threads: int = 0, batch_size=32, batch_tokens: int = 512,
                 add_bos_token=True, max_length: int | None = None, state_dtype: str = "f32", max_gen_toks: int = 256,
                 **kwargs):
        super().__init__()
        device = kwargs.pop("device", None) or "cpu"
        if str(device) != "cpu":  # lm_eval's command line passes cuda:0 unless told otherwise
            log.warning("subq: the lm-eval model runs subq's CPU engine; device %r is ignored", device)
        kwargs.pop("max_batch_size", None)
        if kwargs:
            raise ValueError(f"unknown subq model_args: {', '.join(sorted(kwargs))}")
        self.model = subq.load(pretrained, tokenizer=tokenizer, threads=int(threads), state_dtype=state_dtype)
        self.tok = self.model.tokenizer
        self.batch_size = 32 if str(batch_size).startswith("auto") else int(batch_size)
        self.batch_tokens = int(batch_tokens)
        self.add_bos_token = _bool(add_bos_token)
        self._max_length = int(max_length) if max_length else self.model.context_limit
        self.max_gen_toks = int(max_gen_toks)

    # -- TemplateLM hooks --
    @property
    def eot_token_id(self) -> int:
        return self.tok.eos_id

    @property
    def prefix_token_id(self) -> int:
        return self.tok.bos_id

    @property
    def max_length(self) -> int:
        return self._max_length

    @property
    def tokenizer_name(self) -> str:
        return self.tok.name

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs) -> list[int]:
        bos = self.add_bos_token if add_special_tokens is None else add_special_tokens
        return self.tok.encode(string, bool(bos))

    def tok_decode(self, tokens) -> str:
        return self.tok.decode(list(tokens))

    def _encode_pair(self, context: str, continuation: str):
        # subq's own split (eval/continuation_scoring.h), the one `subq eval --choices` uses
        return self.model.encode_pair(context, continuation, self.add_bos_token)

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kwargs):
        """requests: ((context, continuation), context ids, continuation ids) -> [(logprob, is_greedy)]."""
        out = []
        step = max(1, self.batch_size) * 8  # scored per engine call-group, for the progress bar
        bar = tqdm(total=len(requests), disable=disable_tqdm, desc="subq loglikelihood")
        for i in range(0, len(requests), step):
            chunk = requests[i:i + step]
            pairs = [self._fit(c, k) for _, c, k in chunk]
            lp, greedy = self.model.score(pairs, batch_tokens=self.batch_tokens, max_sequences=self.batch_size)
            for (key, _, _), a, b in zip(chunk, lp, greedy):
                res = (float(a), bool(b))
                out.append(res)
                if key is not None:
                    self.cache_hook.add_partial("loglikelihood", key, res)
            bar.update(len(chunk))
        bar.close()
        return out

    def _fit(self, context: list[int], continuation: list[int]):
        """Left-truncates the context so that context + continuation fit the model (as HFLM does)."""
        room = self.max_length + 1 - len(continuation)
        if len(context) > room:
            context = context[-max(room, 1):]
        return context, continuation

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        windows, owners = [], []
        for i, (string,) in enumerate(req.args for req in requests):
            tokens = self.tok_encode(string, add_special_tokens=False)
            for ctx, pred in map(lm_utils.make_disjoint_window,
                                 lm_utils.get_rolling_token_windows(tokens, self.prefix_token_id, self.max_length, 1)):
                windows.append((None, ctx, pred))
                owners.append(i)
        totals = [0.0] * len(requests)
        for owner, (lp, _) in zip(owners, self._loglikelihood_tokens(windows, disable_tqdm=disable_tqdm)):
            totals[owner] += lp
        for req, total in zip(requests, totals):
            self.cache_hook.add_partial("loglikelihood_rolling", req.args, total)
        return totals

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        results = [None] * len(requests)
        groups: dict[str, list[int]] = {}
        for i, req in enumerate(requests):
            groups.setdefault(repr(sorted(req.args[1].items())), []).append(i)
        bar = tqdm(total=len(requests), disable=disable_tqdm, desc="subq generate_until")
        for idx in groups.values():
            kw = dict(requests[idx[0]].args[1])
            until = kw.pop("until", None) or []
            until = [until] if isinstance(until, str) else list(until)
            max_toks = int(kw.pop("max_gen_toks", self.max_gen_toks))
            do_sample = _bool(kw.pop("do_sample", False))
            temperature = float(kw.pop("temperature", 0.0)) if do_sample else 0.0
            top_p = float(kw.pop("top_p", 1.0)) if do_sample else 1.0
            seed = int(kw.pop("seed", 0))
            prompts = []
            for i in idx:
                ids = self.tok_encode(requests[i].args[0])
                room = self.max_length - max_toks
                prompts.append(ids[-room:] if 0 < room < len(ids) else ids)
            for start in range(0, len(prompts), self.batch_size):
                texts = self.model.generate(prompts[start:start + self.batch_size], max_tokens=max_toks,
                                            temperature=temperature, top_p=top_p, seed=seed, stop=until,
                                            max_batch=self.batch_size)
                for i, text in zip(idx[start:start + self.batch_size], texts):
                    results[i] = text
                    self.cache_hook.add_partial("generate_until", requests[i].args, text)
                bar.update(len(texts))
        bar.close()
        return results


def main() -> None:
    """`python -m subq.lm_eval ARGS`: lm-eval's command line with the "subq" model registered."""
    from lm_eval.__main__ import cli_evaluate

    cli_evaluate()


if __name__ == "__main__":
    import subq.lm_eval as _registered  # the class under its importable name (the .pth hook's placeholder)

    _registered.main()
else:
    register_model("subq")(SubqLM)
