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
