"""Every public explainer rejects bad input with a clear ValueError (issue 17, item 3).

Hypothesis generates the bad inputs: empty batches, NaN/inf samples, leads-first arrays, beats
of the wrong length, one beat without the batch axis, non-integer / out-of-range / misaligned
targets; plus NaN baselines, backgrounds and reference beats, and models without the layer a
method needs. Every case must fail *before* any expensive work, with a message that names the
problem.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from utils.core import config
from utils.explainers.attention import attention_readout
from utils.explainers.cam import class_activation_map
from utils.explainers.counterfactual import nearest_unlike_neighbour, native_guide, wachter
from utils.explainers.gradcam import grad_cam
from utils.explainers.integrated_gradients import (batched_integrated_gradients,
                                                   integrated_gradients)
from utils.explainers.lime_shap import gradient_shap, kernel_shap_segments, lime_segments
from utils.explainers.pfi import permutation_importance
from utils.explainers.registry import METHODS

W = config.WINDOW
_BG = np.random.default_rng(5).normal(size=(2, W, 2)).astype(np.float32)

#: Options that keep each method fast here (the rest are its declared defaults).
FAST: dict[str, dict] = {
    "pfi": {"n_repeats": 1}, "pfi_alibi": {"n_repeats": 1},
    "lime": {"n_samples": 10}, "kernel_shap": {"n_samples": 10},
    "gradient_shap": {"background": _BG, "n_samples": 2},
    "integrated_gradients": {"n_steps": 2}, "integrated_gradients_batched": {"n_steps": 2},
    "integrated_gradients_checked": {"steps": (2, 4)},
    "nearest_unlike_neighbour": {"reference": _BG, "reference_y": [0, 1], "distance": "dtw",
                                 "require_predicted": False},
    "native_guide": {"reference": _BG, "reference_y": [0, 1], "require_predicted": False},
    "wachter": {"max_steps": 1},
}
#: The model fixture of each architecture (the first one a method applies to is used).
FIXTURES: dict[str, str] = {"fcn": "fcn", "lstm": "lstm", "lstm_attention": "attention_lstm"}


def _fixture(method) -> str:
    return next(FIXTURES[a] for a in ("fcn", "lstm", "lstm_attention")
                if method.applies_to(a))


def _call(method):
    return lambda m, X, t: method.function(m, X, t, **FAST.get(method.name, {}))


#: name -> (model fixture, call(model, X, targets)): every method of the registry, and Grad-CAM
#: on the LSTM too (its other layer).
EXPLAINERS = {name: (_fixture(m), _call(m)) for name, m in METHODS.items()}
EXPLAINERS["grad_cam_lstm"] = ("lstm", lambda m, X, t: grad_cam(m, X, t))


def test_every_method_of_the_registry_is_tested():
    assert set(METHODS) <= set(EXPLAINERS) and set(FAST) <= set(METHODS)


def _good(n: int = 3) -> np.ndarray:
    return np.random.default_rng(n).normal(size=(n, W, 2)).astype(np.float32)


@st.composite
def bad_beats(draw):
    """(X, expected message) for beats that no explainer may accept; targets stay valid."""
    kind = draw(st.sampled_from(["empty", "nan", "inf", "leads_first", "window", "one_beat"]))
    n = draw(st.integers(2, 4))
    X = _good(n)
    if kind == "empty":
        return X[:0], "no beats"
    if kind in ("nan", "inf"):
        i, t, lead = draw(st.integers(0, n - 1)), draw(st.integers(0, W - 1)), draw(st.integers(0, 1))
        X[i, t, lead] = np.nan if kind == "nan" else draw(st.sampled_from([np.inf, -np.inf]))
        return X, "NaN or infinite"
    if kind == "leads_first":
        return X.transpose(0, 2, 1), "leads-first"
    if kind == "window":
        length = draw(st.integers(8, 2 * W).filter(lambda k: k != W))
        return np.zeros((n, length, 2), np.float32), f"shape \\(n, {W}, 2\\)"
    return X[0], "one beat"


@st.composite
def bad_targets(draw):
    """(targets, n beats, expected message) for targets no explainer may accept."""
    n = draw(st.integers(2, 4))
    kind = draw(st.sampled_from(["fraction", "high", "negative", "length", "nan"]))
    if kind == "fraction":
        return draw(st.integers(0, 6)) + draw(st.sampled_from([0.5, 0.25, 0.7])), n, "integer"
    if kind == "high":
        return draw(st.integers(8, 1000)), n, r"\[0, 8\)"
    if kind == "negative":
        return draw(st.integers(-1000, -1)), n, r"\[0, 8\)"
    if kind == "nan":
        return np.full(n, np.nan), n, "integer"
    return np.zeros(draw(st.integers(1, 6).filter(lambda k: k != n)), int), n, "class indices"


_settings = settings(max_examples=12, deadline=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.mark.parametrize("name", list(EXPLAINERS))
@_settings
@given(case=bad_beats())
def test_bad_beats_are_rejected(request, name, case):
    fixture, call = EXPLAINERS[name]
    X, message = case
    with pytest.raises(ValueError, match=message):
        call(request.getfixturevalue(fixture), X, 0)


@pytest.mark.parametrize("name", list(EXPLAINERS))
@_settings
@given(case=bad_targets())
def test_bad_targets_are_rejected(request, name, case):
    fixture, call = EXPLAINERS[name]
    targets, n, message = case
    with pytest.raises(ValueError, match=message):
        call(request.getfixturevalue(fixture), _good(n), targets)


@pytest.mark.parametrize("name, fixture, call, message", [
    ("cam on the LSTM", "lstm", lambda m, X: class_activation_map(m, X, 0), "conv_last"),
    ("attention on the CNN", "fcn", lambda m, X: attention_readout(m, X, 0), "'attention'"),
    ("Grad-CAM at a missing layer", "fcn", lambda m, X: grad_cam(m, X, 0, layer="lstm"),
     "'lstm'"),
    ("Grad-CAM at a flat layer", "fcn", lambda m, X: grad_cam(m, X, 0, layer="gap"),
     "\\(steps, channels\\)"),
])
def test_models_without_the_needed_layer(request, name, fixture, call, message):
    with pytest.raises(ValueError, match=message):
        call(request.getfixturevalue(fixture), _good())


@_settings
@given(position=st.tuples(st.integers(0, W - 1), st.integers(0, 1)),
       value=st.sampled_from([np.nan, np.inf, -np.inf]))
def test_bad_baselines_backgrounds_and_references(fcn, position, value):
    bad = np.zeros((W, 2), np.float32)
    bad[position] = value
    X = _good()
    with pytest.raises(ValueError, match="NaN or infinite"):
        batched_integrated_gradients(fcn, X, 0, baselines=bad, n_steps=2)
    with pytest.raises(ValueError, match="NaN or infinite"):
        integrated_gradients(fcn, X, 0, baselines="mean", reference=bad, n_steps=2)
    with pytest.raises(ValueError, match="NaN or infinite"):
        gradient_shap(fcn, X, 0, background=bad[None], n_samples=2)
    with pytest.raises(ValueError, match="NaN or infinite"):
        lime_segments(fcn, X, 0, how="mean", reference=bad, n_samples=10)
    with pytest.raises(ValueError, match="NaN or infinite"):
        kernel_shap_segments(fcn, X, 0, how="mean", reference=bad, n_samples=10)
    with pytest.raises(ValueError, match="NaN or infinite"):
        permutation_importance(fcn, X, [0, 1, 2], how="mean", reference=bad)


@_settings
@given(position=st.tuples(st.integers(0, W - 1), st.integers(0, 1)),
       value=st.sampled_from([np.nan, np.inf, -np.inf]))
def test_bad_counterfactual_references(fcn, position, value):
    bad = _BG.copy()
    bad[(1, *position)] = value
    for method in (native_guide, nearest_unlike_neighbour):
        with pytest.raises(ValueError, match="NaN or infinite"):
            method(fcn, _good(), 0, reference=bad, reference_y=[0, 1])
    with pytest.raises(ValueError, match="reference classes"):
        native_guide(fcn, _good(), 0, reference=_BG, reference_y=[0, 1, 2])


def test_bad_outputs_and_options(fcn):
    X = _good()
    for call in (lambda: lime_segments(fcn, X, 0, output="softmax"),
                 lambda: grad_cam(fcn, X, 0, output="softmax"),
                 lambda: batched_integrated_gradients(fcn, X, 0, output="softmax"),
                 lambda: wachter(fcn, X, 0, output="softmax"),
                 lambda: native_guide(fcn, X, 0, output="softmax", reference=_BG,
                                      reference_y=[0, 1])):
        with pytest.raises(ValueError, match="output must be"):
            call()
    with pytest.raises(ValueError, match="n_segments"):
        lime_segments(fcn, X, 0, n_segments=0)
    with pytest.raises(ValueError, match="how must be"):
        kernel_shap_segments(fcn, X, 0, how="smear")
