"""``make test-portable`` can fail: a notebook that prints float noise fails the perturbed pass, and
its twin that prints a bound instead passes it (so the pass is not red whatever it is given)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from utils.course import portable
from utils.course.execute import execute_notebook
from utils.notebook import residual

ROOT = Path(__file__).resolve().parents[1]
SANITIZE = ROOT / "tests" / "nbval_sanitize.cfg"

# A sum whose float rounding depends on the order of the terms: the order of a set of strings
# depends on the hash seed, which the perturbed pass changes (as another CPU changes the order of
# a BLAS or oneDNN reduction). The exact sum (math.fsum) is the reference.
SETUP = """import math
import numpy as np
rng = np.random.default_rng(0)
values = dict(zip([f"record {i}" for i in range(40)], rng.normal(size=40) * 10.0 ** rng.integers(-3, 4, size=40)))
total = 0.0
for name in set(values):
    total += values[name]
gap = total - math.fsum(values.values())"""

FRAGILE = 'print(f"gap = {gap:.1e}")'                                   # float noise: fails
STABLE = 'from utils.notebook import residual\nprint(f"|gap| {residual(gap, 1e-9)}")'  # passes


def _executed(tmp_path: Path, name: str, cell: str) -> Path:
    """A two-cell notebook executed the way ``make notebooks`` executes (PYTHONHASHSEED=0)."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(SETUP), nbformat.v4.new_code_cell(cell)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    path = tmp_path / f"{name}.ipynb"
    nbformat.write(nb, path)
    env = {"PYTHONHASHSEED": "0", "PYTHONPATH": str(ROOT)}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        execute_notebook(path, timeout=120)
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    return path


def _perturbed_nbval(path: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONHASHSEED="0", PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "utils.course.portable", str(path), "--nbval",
         "--nbval-current-env", "--nbval-sanitize-with", str(SANITIZE), "-q",
         "-p", "no:cacheprovider", f"--rootdir={path.parent}"],
        env=env, capture_output=True, text=True, timeout=300, cwd=path.parent)


def test_perturbed_env_turns_every_knob():
    env = portable.perturbed_env({"PYTHONHASHSEED": "0"})
    assert env["TF_ENABLE_ONEDNN_OPTS"] == "0"              # default is on: turned off
    assert env["PYTHONHASHSEED"] == portable.OTHER_HASH_SEED
    assert all(env[k] == "1" for k in portable.SINGLE_THREAD)
    back = portable.perturbed_env({"TF_ENABLE_ONEDNN_OPTS": "0",
                                   "PYTHONHASHSEED": portable.OTHER_HASH_SEED})
    assert back["TF_ENABLE_ONEDNN_OPTS"] == "1" and back["PYTHONHASHSEED"] == "0"


@pytest.mark.parametrize("value, bound, text", [
    (1.8e-15, 1e-9, "< 1e-9"), (0.0, 1e-6, "< 1e-6"), (-3e-7, 1e-6, "< 1e-6"),
    (0.25, 1e-6, "= 0.25 (above the bound 1e-6)"), (2e-3, 1e-12, "= 0.002 (above the bound 1e-12)"),
])
def test_residual_prints_a_bound_not_the_noise(value, bound, text):
    assert residual(value, bound) == text


def test_a_notebook_printing_float_noise_fails_the_perturbed_pass(tmp_path):
    fragile = _executed(tmp_path, "fragile", FRAGILE)
    committed = nbformat.read(fragile, as_version=4).cells[1].outputs[0]["text"]
    assert committed.startswith("gap = ") and committed.strip() != "gap = 0.0e+00"
    result = _perturbed_nbval(fragile)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 failed" in result.stdout and "gap = " in result.stdout


def test_its_twin_printing_a_bound_passes(tmp_path):
    stable = _executed(tmp_path, "stable", STABLE)
    assert nbformat.read(stable, as_version=4).cells[1].outputs[0]["text"] == "|gap| < 1e-9\n"
    result = _perturbed_nbval(stable)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout


def test_arguments_split_into_jobs_notebooks_and_pytest_options():
    jobs, notebooks, options = portable.split_args(
        ["--jobs", "3", "a.ipynb", "--nbval", "-q", "dir/b.ipynb", "--nbval-sanitize-with",
         "x.cfg"])
    assert (jobs, notebooks) == (3, ["a.ipynb", "dir/b.ipynb"])
    assert options == ["--nbval", "-q", "--nbval-sanitize-with", "x.cfg"]
    assert portable.split_args(["--jobs=2", "a.ipynb"])[0] == 2
    assert portable.split_args(["a.ipynb"])[0] is None
    with pytest.raises(SystemExit):
        portable.split_args(["--jobs", "0", "a.ipynb"])


def test_default_jobs_follow_the_environment_and_stay_bounded():
    assert portable.default_jobs({"PORTABLE_JOBS": "3"}) == 3
    assert 1 <= portable.default_jobs({}) <= 4


def test_in_parallel_one_failing_notebook_fails_the_pass(tmp_path):
    """Two notebooks at once: the fragile one's failure reaches the exit status and the report,
    and the stable one's pass is reported beside it."""
    fragile = _executed(tmp_path, "fragile", FRAGILE)
    stable = _executed(tmp_path, "stable", STABLE)
    env = dict(os.environ, PYTHONHASHSEED="0", PYTHONPATH=str(ROOT))
    result = subprocess.run(
        [sys.executable, "-m", "utils.course.portable", "--jobs", "2", str(stable), str(fragile),
         "--nbval", "--nbval-current-env", "--nbval-sanitize-with", str(SANITIZE), "-q",
         f"--rootdir={tmp_path}"],
        env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"{stable}: passed" in result.stdout and f"{fragile}: FAILED (exit 1)" in result.stdout
    assert "perturbed pass: 1 of 2 notebooks passed (2 at a time)" in result.stdout
