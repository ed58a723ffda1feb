"""Tests of the week-4 evaluation grid helpers (utils.studies.evaluation_grid)."""
import numpy as np
import pytest

from utils.core import config
from utils.studies import evaluation_grid as grid
from utils.core.explain import Explanation
from utils.core.stored_frames import arrays_to_frames, frames_to_arrays

WINDOWS = {c: {"P wave": (60, 90), "QRS": (100, 125), "ST-T": (125, 170)} for c in config.CLASSES}
WINDOWS["/"] = {**WINDOWS["/"], "pacing spike": (104, 108)}


def test_beat_windows_follow_each_beats_class():
    y = np.array([config.CLASSES.index(c) for c in ("N", "V", "/")])
    w = grid.beat_windows(y, WINDOWS)
    assert set(w) == set(grid.WAVES)
    assert all(a.shape == (3, 2) for a in w.values())
    np.testing.assert_array_equal(w["QRS"], [[100, 125]] * 3)
    # no P wave for ventricular and paced beats, a pacing spike only where the class has one
    assert np.isfinite(w["P wave"][0]).all() and np.isnan(w["P wave"][1:]).all()
    assert np.isnan(w["pacing spike"][:2]).all()
    np.testing.assert_array_equal(w["pacing spike"][2], [104, 108])


def test_recorder_keeps_the_first_call_only():
    calls = []

    def explainer(model, X, targets, **options):
        calls.append(len(X))
        return Explanation(np.full(np.shape(X), len(calls), float), np.asarray(targets),
                           "toy", "logits")

    rec = grid.Recorder(explainer)
    X = np.zeros((2, 8, 2))
    first = rec(None, X, [0, 1])
    rec(None, X + 1, [0, 1])
    assert rec.first is first and calls == [2, 2]
    assert np.all(rec.first.values == 1)


@pytest.mark.parametrize("name, has, lacks", [
    ("cnn_holdout", {"CAM", "LRP", "Grad-CAM", "IG", "LIME"}, {"attention"}),
    ("lstm_patient", {"Grad-CAM", "IG", "Kernel SHAP"}, {"CAM", "LRP", "attention"}),
    ("attention_holdout", {"attention", "IG"}, {"CAM", "LRP"}),
])
def test_explainers_match_the_architecture(name, has, lacks):
    methods = set(grid.explainers_for(name, np.zeros((1, 256, 2))))
    assert has <= methods and not (lacks & methods)
    cheap = set(grid.explainers_for(name, None, cheap_only=True))
    assert not ({"LIME", "Kernel SHAP", "gradient SHAP", "IG"} & cheap)


def test_saliency_is_a_cheap_method_of_every_model():
    for name in ("cnn_holdout", "lstm_patient", "attention_holdout"):
        assert "saliency" in grid.explainers_for(name, None, cheap_only=True)
        assert "saliency" in grid.explainers_for(name, np.zeros((1, 256, 2)))


def test_stored_frames_round_trip_through_cached(tmp_path):
    """The grid's DataFrames survive utils.core.results.cached as plain arrays (no pickles):
    the second call reads the file and rebuilds equal frames (text columns, ints, NaN)."""
    import pandas as pd

    from utils.core.results import cached

    metrics = pd.DataFrame({"method": ["LIME", "random", "IG"],
                            "metric": ["deletion_road", "deletion_road", "ig_flagged"],
                            "value": [0.25, np.nan, 1.0], "n": [3, 3, 0],
                            "split": ["holdout"] * 3, "model": ["CNN", "CNN", "LSTM + attention"]})
    per_class = pd.DataFrame({"class": ["N", "/"], "window": ["QRS", "pacing spike"],
                              "share": [0.5, 0.1], "lift": [2.0, np.nan], "n": [4, 1]})
    calls = []

    def compute():
        calls.append(1)
        return frames_to_arrays({"metrics": metrics, "per_class": per_class})

    for _ in range(2):
        arrays = cached("toy_grid", compute, inputs=[np.arange(3)], folder=tmp_path)
        frames = arrays_to_frames(arrays)
        pd.testing.assert_frame_equal(frames["metrics"], metrics)
        pd.testing.assert_frame_equal(frames["per_class"], per_class)
    assert len(calls) == 1 and len(list(tmp_path.glob("toy_grid-*.npz"))) == 1
    assert all(a.dtype != object for a in arrays.values())
