"""Shared pytest fixtures: where the subq binary and the real data live."""
import os
import pathlib
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _data_dir():
    return pathlib.Path(os.environ.get("SUBQ_DATA", ROOT.parent / "shared" / "data")).resolve()


def _build_dir():
    return (ROOT / os.environ.get("SUBQ_BUILD", "build")).resolve()


@pytest.fixture(scope="session")
def data_dir():
    d = _data_dir()
    assert (d / "stories260K" / "stories260K.bin").exists(), f"real data not found in {d} (set SUBQ_DATA)"
    return d


@pytest.fixture(scope="session")
def build_dir():
    return _build_dir()


@pytest.fixture(scope="session")
def subq_bin():
    b = _build_dir() / "subq"
    assert b.exists(), f"{b} not built (set SUBQ_BUILD to the build folder)"
    return str(b)


def run_subq(subq_bin, *args, check=True, timeout=600):
    """Runs the subq binary; returns CompletedProcess with text stdout/stderr."""
    p = subprocess.run([subq_bin, *map(str, args)], capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"subq {' '.join(map(str, args))} failed ({p.returncode}):\n{p.stderr}")
    return p


@pytest.fixture(scope="session")
def subq_py(build_dir):
    """The `subq` Python package as the CMake build made it (BUILD/python: the extension beside links to
    python/subq/*.py)."""
    import sys

    pkg = build_dir / "python"
    assert list((pkg / "subq").glob("_subq*.so")), (
        f"{pkg}/subq/_subq*.so not built: the extension needs nanobind (pip install nanobind) and python3-dev; "
        "re-run cmake and build the target _subq")
    if str(pkg) not in sys.path:
        sys.path.insert(0, str(pkg))
    import subq

    return subq


def has_trainer(subq_bin):
    p = subprocess.run([subq_bin, "--help"], capture_output=True, text=True)
    return "distill" in p.stdout


TINY_RECIPE = """
teacher: {data}/stories260K/hf
seed: 7
seq_len: 64
micro_batch: 2
checkpoint_every: 100
student: {{kind: discrete_mamba2, n_qk_heads: 8, n_v_heads: 8, head_dim: 8, d_state: 8, chunk_size: 16, init: attention}}
data: {{files: [{corpus}], eval_tokens: 512}}
stages:
  matrix_orientation: {{tokens: 0, lr: 2.0e-3, batch_tokens: 256}}
  hidden_state: {{tokens: 512, lr: 1.0e-3, batch_tokens: 256}}
  end_to_end: {{tokens: 512, lr: 1.0e-3, batch_tokens: 256}}
"""

STUDENT_SHAPES = {
    "llamba": "{kind: discrete_mamba2, n_qk_heads: 8, n_v_heads: 8, head_dim: 8, d_state: 8, chunk_size: 16}",
    "mamba2_hybrid": "{kind: mamba2, n_groups: 8, n_v_heads: 8, head_dim: 8, d_state: 8, chunk_size: 16, "
                     "attention_layers: [1, 3]}",
}


@pytest.fixture(scope="session")
def students(tmp_path_factory, data_dir, subq_bin, subq_py):
    """Tiny students distilled from stories260K through the Python package (subq.distill): a Llamba
    (Discrete Mamba-2) and a Mamba-2 + attention hybrid (Mamba-2 layers 0, 2, 4; the teacher's attention
    in 1, 3), each with the teacher's MLPs.
    Folder per kind; skipped where the trainer (libtorch) is not built."""
    if not has_trainer(subq_bin):
        pytest.skip("subq was built without the trainer (libtorch)")
    root = tmp_path_factory.mktemp("students")
    text = (data_dir / "text" / "tinystories-sample.txt").read_text()
    corpus = root / "stories.txt"
    corpus.write_text("<|endoftext|>".join(text.split("<|endoftext|>")[:200]))
    recipe = root / "tiny.yaml"
    recipe.write_text(TINY_RECIPE.format(data=data_dir, corpus=corpus))
    out = {}
    for kind, shape in STUDENT_SHAPES.items():
        out[kind] = root / kind
        subq_py.distill(recipe, out[kind], threads=2, quiet=True, student=shape)
    return out
