"""subq.distill: MOHAWK distillation from Python, by running the `subq distill` binary.

The trainer is C++ on libtorch. It runs as its own process rather than inside the interpreter: linking
libtorch into the extension would load a second copy next to the `torch` a notebook imports (two
runtimes, their versions locked together) and would make `pip install .` need torch; the binary already
owns run locking, resumable checkpoints and signal handling, and a crash or Ctrl-C of a long run does not
take the Python session down with it."""
from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys


def find_binary() -> str:
    """The `subq` binary: $SUBQ_BIN, else the one of the build tree this package was built in
    (BUILD/python/subq -> BUILD/subq), else `subq` on PATH."""
    env = os.environ.get("SUBQ_BIN")
    if env:
        return env
    cand = pathlib.Path(__file__).parent.parent.parent / "subq"  # not resolved: the build tree links the sources
    if cand.is_file() and os.access(cand, os.X_OK):
        return str(cand)
    found = shutil.which("subq")
    if found:
        return found
    raise FileNotFoundError("the subq binary was not found: build it (cmake --build build --target subq) and set "
                            "SUBQ_BIN, or put it on PATH")


def _yaml_value(v) -> str:
    # JSON is YAML: --set KEY=VALUE parses VALUE as YAML.
    return v if isinstance(v, str) else json.dumps(v)


def distill(recipe, out, threads: int = 0, device: str = "cpu", resume: bool = False, quiet: bool = False,
            **overrides) -> dict:
    """Runs `subq distill --recipe RECIPE --out OUT`, each keyword a `--set` override of the recipe
    (dots as "__": stages__end_to_end__tokens=512 sets stages.end_to_end.tokens). Returns the run's
    summary.json. Raises SubqError with the trainer's message when it fails."""
    from ._subq import SubqError

    cmd = [find_binary(), "distill", "--recipe", str(recipe), "--out", str(out), "--device", device]
    if threads:
        cmd += ["--threads", str(threads)]
    if resume:
        cmd.append("--resume")
    for k, v in overrides.items():
        cmd += ["--set", f"{k.replace('__', '.')}={_yaml_value(v)}"]
    errors = []
    with subprocess.Popen(cmd, stdout=subprocess.DEVNULL if quiet else None, stderr=subprocess.PIPE, text=True) as p:
        for line in p.stderr:  # progress and errors: echoed live, error lines kept for the exception
            if not quiet:
                sys.stderr.write(line)
            if line.startswith("subq: error: "):
                errors.append(line.strip().removeprefix("subq: error: "))
    if p.returncode != 0:
        raise SubqError(errors[-1] if errors else f"subq distill exited with {p.returncode}")
    summary = pathlib.Path(out) / "summary.json"
    return json.loads(summary.read_text()) if summary.exists() else {}
