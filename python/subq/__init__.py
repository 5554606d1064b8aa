"""subq from Python: load a model (Llama teacher, distilled Mamba-2 / Llamba / Mamba-3 / Gated DeltaNet
student, or a hybrid) into subq's C++ engine, generate, score and step through its state, and run
distillation.

    import subq
    m = subq.load("runs/llamba")                       # HF folder, llama2.c .bin or .gguf
    m.generate(["Once upon a time"], max_tokens=32)    # -> ["..."]
    m.logits(m.tokenizer.encode("Once upon"))          # numpy [tokens, vocab]
    m.loglikelihood("Lily went to the", " park")       # (log p, is_greedy)

The lm-evaluation-harness model "subq" lives in subq.lm_eval (`lm_eval --model subq`).
"""
from ._subq import SubqError, State, Tokenizer
from .model import Model, load
from .distill import distill, find_binary

__all__ = ["Model", "State", "SubqError", "Tokenizer", "distill", "find_binary", "load"]
