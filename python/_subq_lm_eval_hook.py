"""Registers subq's lm-evaluation-harness model (subq.lm_eval:SubqLM) under the name "subq", so that the
stock `lm_eval --model subq` finds it. Loaded at interpreter start by subq_lm_eval.pth, it costs one
entry in sys.meta_path and imports nothing: when lm_eval.models (lm-eval's model list) is first imported,
the name is added to lm-eval's registry as a lazy "module:object" placeholder, so neither subq nor its
engine is loaded unless that model is asked for. lm-eval (0.4.x) has no plugin entry point for models."""
import importlib.machinery
import sys


class _Finder:
    @classmethod
    def find_spec(cls, fullname, path=None, target=None):
        if fullname != "lm_eval.models":
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return None
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            try:
                from lm_eval.api.registry import model_registry

                if "subq" not in model_registry:
                    model_registry.register("subq", target="subq.lm_eval:SubqLM")
            except Exception as e:  # never break lm_eval itself
                print(f"subq: could not register the lm-eval model 'subq': {e}", file=sys.stderr)

        spec.loader.exec_module = exec_module
        return spec


if not any(f is _Finder or getattr(f, "__name__", "") == "_Finder" for f in sys.meta_path):
    sys.meta_path.insert(0, _Finder)
