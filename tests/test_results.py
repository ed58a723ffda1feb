"""Tests of utils/core/results.py: stored results keyed on inputs, models, code and settings."""
from __future__ import annotations

import importlib
import inspect
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from utils.core import results


class Counter:
    def __init__(self, value):
        self.calls, self.value = 0, value

    def __call__(self):
        self.calls += 1
        return {"maps": np.asarray(self.value, dtype=float), "names": np.array(["a", "b"])}


def test_computes_once_then_reads(tmp_path):
    f = Counter([1.0, 2.0])
    a = results.cached("demo", f, inputs=[np.arange(3)], params={"steps": 8}, folder=tmp_path)
    b = results.cached("demo", f, inputs=[np.arange(3)], params={"steps": 8}, folder=tmp_path)
    assert f.calls == 1
    np.testing.assert_array_equal(a["maps"], b["maps"])
    assert list(b["names"]) == ["a", "b"]
    assert len(list(tmp_path.glob("demo-*.npz"))) == 1


@pytest.mark.parametrize("change", ["inputs", "params"])
def test_a_changed_key_recomputes_and_replaces_the_old_file(tmp_path, change):
    f = Counter([1.0])
    results.cached("demo", f, inputs=[np.arange(3)], params={"steps": 8}, folder=tmp_path)
    kwargs = {"inputs": [np.arange(3)], "params": {"steps": 8}}
    kwargs[change] = [np.arange(4)] if change == "inputs" else {"steps": 16}
    results.cached("demo", f, folder=tmp_path, **kwargs)
    assert f.calls == 2
    assert len(list(tmp_path.glob("demo-*.npz"))) == 1


def test_other_names_are_kept(tmp_path):
    results.cached("demo", Counter([1.0]), folder=tmp_path)
    results.cached("demo-global", Counter([2.0]), folder=tmp_path)
    results.cached("demo", Counter([3.0]), params={"x": 1}, folder=tmp_path)
    assert len(list(tmp_path.glob("demo-global-*.npz"))) == 1


def test_recompute_flag(tmp_path):
    f = Counter([1.0])
    results.cached("demo", f, folder=tmp_path)
    results.cached("demo", f, folder=tmp_path, recompute=True)
    assert f.calls == 2


def test_damaged_file_is_recomputed(tmp_path, capsys):
    f = Counter([1.0])
    results.cached("demo", f, folder=tmp_path)
    (path,) = tmp_path.glob("demo-*.npz")
    path.write_bytes(b"not an npz")
    out = results.cached("demo", f, folder=tmp_path)
    assert f.calls == 2 and out["maps"].tolist() == [1.0]
    assert "recomputing" in capsys.readouterr().err


def test_model_weights_are_part_of_the_key(tmp_path, fcn):
    key = results.result_key(models=[fcn])
    w = fcn.get_weights()
    fcn.set_weights([w[0] + 1.0] + w[1:])
    try:
        assert results.result_key(models=[fcn]) != key
    finally:
        fcn.set_weights(w)
    assert results.result_key(models=[fcn]) == key


TOY_EXPLAINER = """
import numpy as np

SCALE = 2.0


def explain(x):
    \"\"\"A toy explainer.\"\"\"
    return x * SCALE  # relevance


def plot_explanation(x):
    return None
"""

TOY_STUDY = """
from toy_course import explainer
from toy_course.explainer import explain


def compute(x):
    return {"relevance": explain(x)}
"""


def _toy_package(tmp_path, monkeypatch, explainer_source):
    """A package ``toy_course`` with an explainer module and a study that calls it; returns the
    study's compute function, freshly imported."""
    pkg = tmp_path / "toy_course"
    pkg.mkdir(exist_ok=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "explainer.py").write_text(explainer_source)
    (pkg / "study.py").write_text(TOY_STUDY)
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in [m for m in sys.modules if m.startswith("toy_course")]:
        del sys.modules[name]
    importlib.invalidate_caches()
    return importlib.import_module("toy_course.study").compute


def _toy_digest(tmp_path, monkeypatch, source):
    return results.code_digest(_toy_package(tmp_path, monkeypatch, source),
                               packages=("toy_course",))


def test_key_follows_the_code_the_computation_reaches(tmp_path, monkeypatch):
    """Editing the explainer a computation calls (its code or a setting it reads) changes the
    key; editing a plot function, a comment or a docstring of the same module does not."""
    key = _toy_digest(tmp_path, monkeypatch, TOY_EXPLAINER)
    sources, _ = results.code_reached(_toy_package(tmp_path, monkeypatch, TOY_EXPLAINER),
                                      packages=("toy_course",))
    assert "toy_course.explainer.explain" in sources
    assert "toy_course.explainer.plot_explanation" not in sources
    same = [TOY_EXPLAINER.replace("return None", "return x.sum()"),           # a plot
            TOY_EXPLAINER.replace("# relevance", "# relevance map"),            # a comment
            TOY_EXPLAINER.replace("A toy explainer.", "A toy explainer (doc).")]  # a docstring
    for source in same:
        assert _toy_digest(tmp_path, monkeypatch, source) == key
    changed = [TOY_EXPLAINER.replace("x * SCALE", "x * SCALE + 1"),             # its code
               TOY_EXPLAINER.replace("SCALE = 2.0", "SCALE = 3.0")]             # its setting
    for source in changed:
        assert _toy_digest(tmp_path, monkeypatch, source) != key


def test_the_grid_key_ignores_plots_and_follows_the_explainers(monkeypatch):
    """Week 4's method x metric grid: the code its key covers holds every explainer the grid
    runs and no plot; editing a plot function of an explainer module keeps the key, editing
    the explainer changes it."""
    from utils.explainers import attention, gradcam
    from utils.studies import evaluation_grid

    root = evaluation_grid.grid_model
    sources, _ = results.code_reached(root)
    reached = set(sources)
    assert {"utils.explainers.gradcam.grad_cam", "utils.explainers.attention.attention_readout",
            "utils.explainers.lime_shap.kernel_shap_segments",
            "utils.assess.evaluate.faithfulness"} <= reached
    assert not any(name.startswith("utils.plotting") for name in reached)
    plots = [f"utils.explainers.attention.{n}" for n in dir(attention) if n.startswith("plot")]
    assert plots and not reached & set(plots)

    key = results.code_digest(root)
    real = results.normalised_source

    def edited(target):
        def source(obj):
            text = real(obj)
            return text + "\n# edited" if obj is target else text
        return source

    monkeypatch.setattr(results, "normalised_source", edited(getattr(attention, plots[0].rpartition(".")[2])))
    assert results.code_digest(root) == key
    monkeypatch.setattr(results, "normalised_source", edited(inspect.unwrap(gradcam.grad_cam)))
    assert results.code_digest(root) != key


def test_rejects_objects_and_bad_names(tmp_path):
    with pytest.raises(TypeError):
        results.cached("demo", lambda: {"x": np.array([{}, 1], dtype=object)}, folder=tmp_path)
    with pytest.raises(ValueError):
        results.cached("../evil", lambda: {"x": np.zeros(1)}, folder=tmp_path)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(allow_nan=False, width=32), min_size=1, max_size=20))
def test_key_depends_on_every_value(values):
    a = np.array(values, dtype=np.float32)
    b = a.copy()
    b[0] = np.nextafter(b[0], np.float32(0) if b[0] != 0 else np.float32(1))
    assert results.result_key(inputs=[a]) == results.result_key(inputs=[a.copy()])
    assert results.result_key(inputs=[a]) != results.result_key(inputs=[b])


def test_unwritable_folder_returns_the_result_unsaved(tmp_path, capsys):
    """A folder that cannot be created or written (here: below a file, which fails for root
    too; in grading: the read-only data/results of the sandbox) is not an error."""
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    out = results.cached("demo", Counter([5.0]), folder=blocker / "results")
    assert out["maps"].tolist() == [5.0]
    assert "could not be written" in capsys.readouterr().err


def _one_number_changed(path):
    """The stored file rewritten as a valid archive with one value changed, its checksum kept."""
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["maps"] = arrays["maps"].copy()
    arrays["maps"][0] += 0.5
    np.savez_compressed(path, **arrays)


def _checksum_removed(path):
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files if k != results.CHECKSUM_KEY}
    np.savez_compressed(path, **arrays)


@pytest.mark.parametrize("damage", [
    pytest.param(lambda p: p.write_bytes(b""), id="empty"),
    pytest.param(lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]),
                 id="truncated"),
    pytest.param(lambda p: p.write_bytes(p.read_bytes()[:-30] + b"\0" * 30), id="corrupt-tail"),
    pytest.param(lambda p: p.write_bytes(b"PK\x03\x04" + b"\xff" * 200), id="bad-zip"),
    pytest.param(_one_number_changed, id="one-number-changed"),
    pytest.param(_checksum_removed, id="checksum-removed"),
])
def test_damaged_or_altered_file_is_reported_and_recomputed(tmp_path, capsys, damage):
    f = Counter([1.0, 2.0])
    results.cached("demo", f, folder=tmp_path)
    (path,) = tmp_path.glob("demo-*.npz")
    damage(path)
    out = results.cached("demo", f, folder=tmp_path)
    assert f.calls == 2 and out["maps"].tolist() == [1.0, 2.0]
    assert results.CHECKSUM_KEY not in out
    assert "cannot be used" in capsys.readouterr().err
    assert results.read_verified(path)["maps"].tolist() == [1.0, 2.0]  # rewritten, verified


def test_altered_file_in_a_read_only_folder_is_refused(tmp_path, monkeypatch):
    f = Counter([1.0])
    results.cached("demo", f, folder=tmp_path)
    (path,) = tmp_path.glob("demo-*.npz")
    _one_number_changed(path)
    monkeypatch.setattr(results.os, "access", lambda *a, **k: False)  # root writes anywhere
    with pytest.raises(results.StoredResultError, match="altered.*git checkout"):
        results.cached("demo", f, folder=tmp_path)
    assert f.calls == 1


def test_committed_results_carry_a_valid_checksum():
    """Every committed stored result passes its SHA-256 (a checksum-less file would be
    recomputed by every notebook run)."""
    paths = sorted(results.RESULTS_DIR.glob("*.npz"))
    assert paths
    for path in paths:
        results.read_verified(path)


def test_seal_adds_missing_checksums_and_never_rewrites_a_wrong_one(tmp_path):
    from utils.course import seal

    np.savez_compressed(tmp_path / "old-0123456789abcdef.npz", maps=np.arange(3.0))
    results.write_verified(tmp_path / "ok-0123456789abcdef.npz", {"maps": np.ones(2)})
    bad = tmp_path / "bad-0123456789abcdef.npz"
    np.savez_compressed(bad, maps=np.zeros(2), **{results.CHECKSUM_KEY: np.array("0" * 64)})
    before = bad.read_bytes()
    sealed, failing = seal.seal_results(tmp_path)
    assert sealed == ["old-0123456789abcdef.npz"] and len(failing) == 1
    assert results.read_verified(tmp_path / "old-0123456789abcdef.npz")["maps"].tolist() == \
        [0.0, 1.0, 2.0]
    assert bad.read_bytes() == before
