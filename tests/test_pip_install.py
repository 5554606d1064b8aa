"""`pip install .` through scikit-build-core, reusing the CMake build folder (`-C build-dir=$SUBQ_BUILD`, no
build isolation), so that only what is out of date is rebuilt: the wheel's layout (package, extension,
lm-eval hook) is what is checked, not a second engine build. It installs with this interpreter into a
fresh --target folder, added as a site dir (so its .pth runs as in site-packages): there `import subq`
loads a model and lm-eval's registry finds the model "subq" through the installed hook. (This interpreter
and not a venv's: scikit-build-core records the interpreter in the build folder's CMake cache, and a
deleted venv's would break the next configure.) A from-scratch build, as a new user runs `pip install .`,
is the same command without -C build-dir; it is opt-in here (SUBQ_TEST_PIP_FRESH=1) because it compiles
the whole engine."""
import os
import subprocess
import sys

import pytest

from conftest import ROOT


def pip_install(target, *extra, timeout=900):
    p = subprocess.run([sys.executable, "-m", "pip", "install", "--no-build-isolation", "--no-deps", "-q",
                        "--target", str(target), *extra, str(ROOT)],
                       capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    assert p.returncode == 0, f"pip install failed:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    files = {p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file()}
    assert {"subq_lm_eval.pth", "_subq_lm_eval_hook.py", "subq/__init__.py", "subq/lm_eval.py"} <= files
    assert any(f.startswith("subq/_subq") and f.endswith(".so") for f in files)


def run_in(target, code, cwd):
    """`code` in a fresh interpreter that has `target` as a site dir (its .pth files run)."""
    p = subprocess.run([sys.executable, "-c", f"import site; site.addsitedir({str(target)!r})\n{code}"],
                       capture_output=True, text=True, cwd=cwd, env={**os.environ, "PYTHONPATH": ""})
    assert p.returncode == 0, p.stderr
    return p.stdout.split("\n")


def check_installed(target, data_dir, tmp_path):
    out = run_in(target, f"import subq; m = subq.load({str(data_dir / 'stories260K' / 'stories260K.bin')!r})\n"
                         "print(subq.__file__); print(m.generate('Once upon a time', max_tokens=12))", tmp_path)
    assert out[0].startswith(str(target)) and out[1].startswith(", there was a little girl")
    # the installed .pth registers "subq" with lm-eval's registry; subq itself loads when the model is asked for
    out = run_in(target, "import sys, lm_eval.models; print('subq' in sys.modules)\n"
                         "from lm_eval.api.registry import get_model; print(get_model('subq').__module__)", tmp_path)
    assert out[:2] == ["False", "subq.lm_eval"]


def test_pip_install_reusing_the_build(build_dir, data_dir, tmp_path, subq_py):
    pytest.importorskip("scikit_build_core")
    pytest.importorskip("lm_eval")
    pip_install(tmp_path / "site", "-C", f"build-dir={build_dir}")
    check_installed(tmp_path / "site", data_dir, tmp_path)


@pytest.mark.skipif(os.environ.get("SUBQ_TEST_PIP_FRESH") != "1", reason="opt-in: builds the engine from scratch")
def test_pip_install_from_scratch(data_dir, tmp_path):
    pip_install(tmp_path / "site", timeout=3600)
    check_installed(tmp_path / "site", data_dir, tmp_path)
