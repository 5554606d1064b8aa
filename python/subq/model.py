"""subq.Model: the Python face of a loaded engine model (the C++ side is subq._subq.Model)."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from . import _subq
from ._subq import State, Tokenizer


def load(path, tokenizer: str = "", device: str = "cpu", threads: int = 0, state_dtype: str = "f32",
         check_weights: bool = True) -> "Model":
    """Loads a checkpoint as the CLI does (`--model`): a Hugging Face-style folder, a llama2.c .bin or a
    GGUF file, with the tokenizer beside / inside it (or `tokenizer`). Only device="cpu" is served here.
    threads: 0 = SUBQ_THREADS or all CPUs. state_dtype: "f32" or "bf16" (recurrent state precision)."""
    return Model(_subq.load(str(path), str(tokenizer), device, threads, state_dtype, check_weights))


def _ids(x) -> list[int]:
    return [int(t) for t in np.asarray(x, dtype=np.int64).reshape(-1)]


class Model:
    """A model held by the engine. Thread-safe for scoring and generation (each call has its own
    sequences); a State belongs to one caller at a time."""

    def __init__(self, impl: _subq.Model):
        self._m = impl
        self.tokenizer: Tokenizer = impl._tokenizer()

    # -- facts --
    @property
    def config(self) -> dict:
        return self._m.config

    @property
    def vocab_size(self) -> int:
        return self._m.vocab_size

    @property
    def context_limit(self) -> int:
        """Tokens one sequence may hold: max_seq_len with attention layers, else unlimited (2**31 - 1)."""
        return self._m.context_limit

    @property
    def path(self) -> str:
        return self._m.path

    def __repr__(self) -> str:
        c = self.config
        return f"subq.Model({self.path!r}, family={c['family']!r}, layers={c['n_layers']}, vocab={c['vocab_size']})"

    # -- state --
    def new_state(self, max_context: int = 0) -> State:
        """A fresh sequence (KV caches sized to max_context tokens, 0: the model's limit)."""
        return self._m.new_state(max_context)

    def snapshot(self, state: State) -> State:
        """An exact copy of `state` (restore it later to continue from this token boundary)."""
        return state.snapshot()

    def restore(self, state: State, snapshot: State) -> None:
        state.restore(snapshot)

    def forward(self, ids, state: State, all_logits: bool = False) -> np.ndarray:
        """Feeds `ids` into `state` (advancing it); the last token's logits [vocab], or [len(ids), vocab]."""
        return self._m.forward(_ids(ids), state, all_logits)

    def logits(self, ids) -> np.ndarray:
        """float32 logits [len(ids), vocab] of every position, from a fresh sequence."""
        ids = _ids(ids)
        return self._m.forward(ids, self._m.new_state(max(len(ids), 1)), True)

    # -- scoring --
    def loglikelihood(self, context, continuation, add_bos: bool = True, batch_tokens: int = 512):
        """log p(continuation | context) and whether the continuation is the greedy one.

        context/continuation: strings (split as lm-evaluation-harness does: the pair is encoded whole, the
        continuation is what follows the context's tokens; add_bos prepends BOS) or token-id lists.
        One pair -> (float, bool); lists of pairs -> (np.float64 array, np.bool_ array)."""
        single = isinstance(context, str) or (isinstance(context, np.ndarray) and context.ndim == 1) or (
            isinstance(context, Sequence) and (len(context) == 0 or not isinstance(context[0], (str, Sequence, np.ndarray))))
        if single:
            context, continuation = [context], [continuation]
        if len(context) != len(continuation):
            raise ValueError(f"{len(context)} contexts for {len(continuation)} continuations")
        pairs = [self.encode_pair(c, k, add_bos) for c, k in zip(context, continuation)]
        lp, greedy, _ = self._m.score(pairs, batch_tokens, 64, False)
        lp, greedy = np.asarray(lp, dtype=np.float64), np.asarray(greedy, dtype=np.bool_)
        return (float(lp[0]), bool(greedy[0])) if single else (lp, greedy)

    def encode_pair(self, context, continuation, add_bos: bool = True) -> tuple[list[int], list[int]]:
        """Token ids of a (context, continuation) pair; id lists pass through (BOS prepended when asked)."""
        if isinstance(context, str) and isinstance(continuation, str):
            return self._m.encode_pair(context, continuation, add_bos)
        if isinstance(context, str) or isinstance(continuation, str):
            raise TypeError("give context and continuation both as strings or both as token ids")
        ctx = _ids(context)
        if add_bos and (not ctx or ctx[0] != self.tokenizer.bos_id):
            ctx = [self.tokenizer.bos_id] + ctx
        return ctx, _ids(continuation)

    def score(self, pairs, batch_tokens: int = 512, max_sequences: int = 64, token_logprobs: bool = False):
        """Batched scoring of (context ids, continuation ids) pairs: (logprob sums, greedy flags) as numpy,
        plus a list of per-token logprob arrays with token_logprobs=True."""
        pairs = [(_ids(c), _ids(k)) for c, k in pairs]
        lp, greedy, per_token = self._m.score(pairs, batch_tokens, max_sequences, token_logprobs)
        out = (np.asarray(lp, dtype=np.float64), np.asarray(greedy, dtype=np.bool_))
        return out + (per_token,) if token_logprobs else out

    # -- generation --
    def generate(self, prompts, max_tokens: int = 128, temperature: float = 0.0, top_p: float = 1.0,
                 seed: int = 0, stop=None, top_k: int = 0, add_bos: bool = True, max_batch: int = 32,
                 return_tokens: bool = False):
        """Continues every prompt, all decoded together as one ragged batch (the `subq serve` scheduler).

        prompts: a string, a list of strings, or lists of token ids. temperature 0 = greedy; each prompt
        samples with its own generator seeded with `seed`, so its text does not depend on the batch.
        stop: strings that end a generation (not included). Returns a list of texts (a single text for a
        single prompt string); with return_tokens, (text, token ids, finish reason) tuples."""
        single = isinstance(prompts, str)
        if single:
            prompts = [prompts]
        if isinstance(stop, str):
            stop = [stop]
        ids = [self.tokenizer.encode(p, add_bos) if isinstance(p, str) else _ids(p) for p in prompts]
        out = self._m.generate(ids, int(max_tokens), float(temperature), float(top_p), int(top_k), int(seed),
                               list(stop or []), int(max_batch))
        res = [tuple(o) if return_tokens else o[0] for o in out]
        return res[0] if single else res
