"""`pip install .` through scikit-build-core into a fresh virtual environment, reusing the CMake build
folder (`-C build-dir=$SUBQ_BUILD`, no build isolation), so that only what is out of date is rebuilt: the
wheel's layout (package, extension, lm-eval hook) is what is checked, not a second engine build. In the
installed environment `import subq` loads a model and `python -m lm_eval --model subq` finds the model
through the installed .pth hook. A from-scratch build (`pip install .` as a new user runs it) is the same
command without -C build-dir; it is opt-in here (SUBQ_TEST_PIP_FRESH=1) because it compiles the whole
engine."""
import os
import subprocess
import sys

import pytest

from conftest import ROOT


def venv(tmp_path):
    env_dir = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(env_dir)], check=True)
    return env_dir / "bin" / "python"


def pip_install(py, *extra, timeout=900):
    p = subprocess.run([str(py), "-m", "pip", "install", "--no-build-isolation", "--no-deps", "-q", *extra, str(ROOT)],
                       capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    assert p.returncode == 0, f"pip install failed:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"


def check_installed(py, data_dir, tmp_path):
    code = (f"import subq; m = subq.load({str(data_dir / 'stories260K' / 'stories260K.bin')!r}); "
            "print(subq.__file__); print(m.generate('Once upon a time', max_tokens=12))")
    p = subprocess.run([str(py), "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    where, text = p.stdout.splitlines()[:2]
    assert str(tmp_path / "venv") in where and text.startswith(", there was a little girl")
    # the installed .pth registers "subq" with lm-eval's registry, without importing subq until it is asked for
    code = ("import sys; from lm_eval.api.registry import get_model; cls = get_model('subq'); "
            "print(cls.__module__, 'subq._subq' in sys.modules)")
    p = subprocess.run([str(py), "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["subq.lm_eval", "True"]
    code = "import sys; print('subq' in sys.modules)"
    p = subprocess.run([str(py), "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert p.stdout.strip() == "False"  # the hook alone imports nothing of subq


def test_pip_install_reusing_the_build(build_dir, data_dir, tmp_path, subq_py):
    pytest.importorskip("scikit_build_core")
    pytest.importorskip("lm_eval")
    py = venv(tmp_path)
    pip_install(py, "-C", f"build-dir={build_dir}")
    check_installed(py, data_dir, tmp_path)


@pytest.mark.skipif(os.environ.get("SUBQ_TEST_PIP_FRESH") != "1", reason="opt-in: builds the engine from scratch")
def test_pip_install_from_scratch(data_dir, tmp_path):
    py = venv(tmp_path)
    pip_install(py, timeout=3600)
    check_installed(py, data_dir, tmp_path)
