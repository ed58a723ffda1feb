"""Tests of the week-4 evaluation grid helpers (utils.course.evaluation_grid)."""
import numpy as np
import pytest

from utils import config
from utils.course import evaluation_grid as grid
from utils.explain import Explanation

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
