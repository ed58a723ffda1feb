"""Smoke test of ``utils/course/benchmark.py`` (``make bench``) on a tiny subset, plus its helpers.

The full benchmark is too slow and noisy for ``make test``; here it runs with ``--quick``
(1 record, a few beats, 1 repeat, a one-cell notebook) and the outputs are checked for
structure and sanity, not for speed.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from utils.course import benchmark

SCRIPT = Path(benchmark.__file__)


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------
def test_timed_runs_counts_calls_and_takes_the_median():
    calls = []
    res = benchmark.timed_runs(lambda: calls.append(1) or len(calls), repeats=3)
    assert len(calls) == 4  # one warm-up + 3 timed
    assert len(res["runs_s"]) == 3 and res["first_s"] is not None
    assert res["median_s"] == sorted(res["runs_s"])[1]
    assert res["result"] == 4
    other = []
    res = benchmark.timed_runs(lambda: 1, repeats=1, warmup=lambda: other.append(1))
    assert other == [1] and len(res["runs_s"]) == 1
    with pytest.raises(ValueError, match="repeats"):
        benchmark.timed_runs(lambda: 1, repeats=0)


def test_peak_rss_sees_this_process():
    with benchmark.PeakRSS(lambda: os.getpid(), interval=0.01) as mem:
        block = np.ones(20 * 2**20 // 8)  # 20 MB kept alive while polling
        time.sleep(0.1)
    assert block.sum() > 0
    assert mem.peak > 20 * 2**20
    with benchmark.PeakRSS(lambda: None, interval=0.01) as none:
        time.sleep(0.03)
    assert none.peak == 0


def test_interpolated_inputs_follow_alibi_quadrature():
    from utils.explainers.integrated_gradients import quadrature

    rng = np.random.default_rng(0)
    X = rng.standard_normal((3, 8, 2)).astype(np.float32)
    inputs, steps = benchmark.interpolated_inputs(X, 5)
    alphas, weights = quadrature(5)
    assert inputs.shape == (15, 8, 2)
    np.testing.assert_allclose(inputs[3:6], alphas[1] * X, rtol=1e-6)  # step-major
    np.testing.assert_allclose(steps, weights, rtol=1e-6)
    base = np.ones_like(X)
    inputs, _ = benchmark.interpolated_inputs(X, 5, baselines=base)
    np.testing.assert_allclose(inputs[:3], base + alphas[0] * (X - base), rtol=1e-5)
    with pytest.raises(ValueError):
        benchmark.interpolated_inputs(X, 0)


def test_gradient_pass_is_the_work_of_integrated_gradients():
    """The limit does the same arithmetic as IG: weighted path gradients x (x - baseline)."""
    import keras

    from utils.explainers.integrated_gradients import batched_integrated_gradients
    from utils.models.networks import build_fcn

    keras.utils.set_random_seed(0)
    model = build_fcn(filters=(4, 4), kernels=(3, 3), dilations=(1, 2))
    X = np.random.default_rng(1).standard_normal((3, 256, 2)).astype(np.float32)
    y = np.array([0, 3, 7])
    n_steps = 6
    inputs, weights = benchmark.interpolated_inputs(X, n_steps)
    grads = benchmark.gradient_pass(model)(inputs, np.tile(y, n_steps).astype(np.int32))
    grads = np.asarray(grads).reshape(n_steps, 3, 256, 2)
    ig = np.tensordot(weights, grads, axes=1) * X
    np.testing.assert_allclose(
        ig, batched_integrated_gradients(model, X, y, n_steps=n_steps).values, atol=1e-5)


def test_markdown_tables_are_well_formed_and_mark_missing_values():
    res = {"meta": {"quick": True, "date_utc": "d", "machine": "m", "cpus": 2,
                    "python": "3", "tensorflow": "2", "repeats": 3, "notebook_repeats": 1,
                    "ig_repeats": 5, "benchmark_s": 1.0},
           "notebooks": {"rows": [{"notebook": "01_x.ipynb", "seconds": 12.5,
                                   "peak_rss_mb": 800.0, "status": "ok"}],
                         "total_s": 12.5, "max_peak_rss_mb": 800.0, "note": "n"},
           "explainers": {"rows": [{"method": "LIME", "status": "not available: x"}],
                          "note": "e"}}
    md = benchmark.render_markdown(res)
    assert "| 01_x.ipynb | 12.5 | 800 | ok |" in md
    assert "| LIME | - | - | - | - | - | not available: x |" in md
    # every table row has as many cells as its header
    for block in md.split("\n\n"):
        rows = [r for r in block.splitlines() if r.startswith("|")]
        if rows:
            counts = {r.replace("\\|", "").count("|") for r in rows}
            assert len(counts) == 1, block


# --------------------------------------------------------------------------------------------
# The script on a tiny subset
# --------------------------------------------------------------------------------------------
def _tiny_notebook(path: Path) -> Path:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("import numpy as np\nprint(np.ones(3).sum())")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbformat.write(nb, path)
    return path


def test_benchmark_quick_run_writes_markdown_and_json(tmp_path, mitdb_dir):
    nb = _tiny_notebook(tmp_path / "01_tiny.ipynb")
    before = nb.read_text()
    out = tmp_path / "bench"
    env = {**os.environ, "MITDB_DIR": str(mitdb_dir), "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(
        [sys.executable, "-m", "utils.course.benchmark", "--quick", "--repeats", "1", "--records", "1",
         "--out", str(out), "--notebooks", str(nb)],
        capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert nb.read_text() == before, "the benchmark must not write into the notebook"

    res = json.loads((out / "bench.json").read_text())
    assert set(benchmark.SECTIONS) <= set(res)
    ext = res["extraction"]
    assert ext["records"] == 1 and ext["beats"] > 1000
    assert 0 < ext["cache_s"] < ext["cold_s"]

    (train,) = res["training"]["rows"]
    assert train["model"] == "cnn_holdout" and train["beats_per_s"] > 0

    (row,) = res["notebooks"]["rows"]
    assert row["notebook"] == "01_tiny.ipynb" and row["status"] == "ok"
    assert row["seconds"] > 0 and row["peak_rss_mb"] > 10  # a Python kernel is > 10 MB

    rows = {r["method"]: r for r in res["explainers"]["rows"]}
    assert {"CAM", "LIME (segments)", "Kernel SHAP (segments)", "gradient SHAP",
            "Grad-CAM (CNN)", "Grad-CAM (LSTM)", "attention read-out",
            "PFI (test set, segments)", "Integrated Gradients (alibi, CNN)"} <= set(rows)
    for r in rows.values():
        assert r["status"].startswith(("ok", benchmark.NOT_AVAILABLE)), r
        if r["status"].startswith("ok"):
            assert r["s_per_beat"] > 0 and r["beats"] >= 1
    assert rows["CAM"]["status"].startswith("ok")  # utils/explainers/cam.py is part of the course

    (ig,) = res["ig_limit"]["rows"]
    assert ig["status"] == "ok" and ig["limit_s"] > 0 and ig["ratio_alibi"] > 0
    if ig.get("batched_s") is not None:
        assert ig["max_abs_diff"] < 1e-4

    md = (out / "bench.md").read_text()
    for heading in ("## Beat extraction", "## Training throughput", "## Notebooks",
                    "## Explainer cost per beat", "## Integrated Gradients vs the limit"):
        assert heading in md
    assert "01_tiny.ipynb" in md and "**total**" in md


def test_interleaved_runs_alternate_the_functions():
    order = []
    res = benchmark.interleaved_runs({"a": lambda: order.append("a") or "A",
                                      "b": lambda: order.append("b") or "B"}, repeats=2)
    assert order == ["a", "b", "a", "b", "a", "b"]  # warm-ups, then rounds
    assert res["a"]["result"] == "A" and len(res["b"]["runs_s"]) == 2
    with pytest.raises(ValueError):
        benchmark.interleaved_runs({"a": lambda: 1}, repeats=0)


def test_notebooks_ig_usage_counts_calls(tmp_path):
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(
                    "from utils.explainers.integrated_gradients import integrated_gradients\n"
                    "a = integrated_gradients(m, X, y)\n"
                    "b = batched_integrated_gradients(m, X, y)\nc = ig.integrated_gradients(X)"),
                nbformat.v4.new_markdown_cell("integrated_gradients(m, X, y) in prose")]
    nbformat.write(nb, tmp_path / "03_ig.ipynb")
    nbformat.write(nbformat.v4.new_notebook(), tmp_path / "01_none.ipynb")
    nbformat.write(nb, tmp_path / "notes.ipynb")  # not a course notebook (no number)
    assert benchmark.notebooks_ig_usage(tmp_path) == {
        "03_ig.ipynb": {"batched_integrated_gradients": 1, "integrated_gradients (alibi)": 1}}


def test_failing_explainers_are_recorded_not_raised(monkeypatch):
    def broken(ctx, s):
        return benchmark.Case(lambda: 1 / 0, 1, "cnn_holdout")

    def skipped(ctx, s):
        raise benchmark.Skipped("not in these settings")

    def fine(ctx, s):
        return benchmark.Case(lambda: None, 4, "cnn_holdout", settings="x")

    monkeypatch.setattr(benchmark, "_explainers", lambda: (("broken", broken),
                                                           ("skipped", skipped), ("fine", fine)))
    ctx = benchmark.Context(data=None, split=None, X=np.zeros((4, 256, 2)), y=np.zeros(4))
    res = benchmark.bench_explainers(benchmark.Settings(repeats=1), ctx)
    rows = {r["method"]: r for r in res["rows"]}
    assert set(rows) == {"broken", "fine"}
    assert "ZeroDivisionError" in rows["broken"]["status"]
    assert rows["fine"]["status"] == "ok" and rows["fine"]["beats"] == 4
