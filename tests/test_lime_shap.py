"""Tests of utils.explainers.lime_shap on a tiny linear Keras model whose explanations are known exactly.

For ``logits = W . vec(x) + b`` and segments switched off to a replacement ``r``, the logit of
class c is additive over segments: ``f(z) = f(r) + sum_k z_k * phi_k`` with
``phi_k = sum_{t in segment k} W_c (x - r)``. Shapley values, a linear LIME surrogate and
expected gradients must all recover ``phi`` (expected gradients on samples, summed per segment).
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from utils.core import config
from utils.core.config import LOGITS_LAYER
from utils.core.explain import completeness_gap, predict_scores
from utils.explainers.lime_shap import (SegmentModel, gradient_shap, kernel_shap_segments,
                                        lime_kernel, lime_perturbations, lime_segments,
                                        pick_per_class, top_features)
from utils.core.perturb import baseline
from utils.core.segments import segment_mask

pytestmark = pytest.mark.filterwarnings("ignore:The structure of `inputs`:UserWarning")

N_SEG = 8  # fewer segments than the course default keeps the tests fast
M = 2 * N_SEG


def exact_contributions(model, beat, replacement, target):
    """phi_k = sum over the samples of segment k of W_c * (x - r) (see module docstring)."""
    w = model.get_layer("logits").get_weights()[0][:, target].reshape(config.WINDOW, 2)
    delta = w * (beat - replacement)
    mask = segment_mask(config.WINDOW, N_SEG, 2)
    return np.array([delta[m].sum() for m in mask])


# ---------------------------------------------------------------------------- SegmentModel
def test_segment_model_endpoints(linear_model, beats):
    repl = baseline(beats[:1], "noise", seed=1)[0]
    f = SegmentModel(linear_model, beats[0], repl, n_segments=N_SEG, output="probs")
    out = f(np.stack([np.ones(M), np.zeros(M)]))
    expected = linear_model.predict(np.stack([beats[0], repl]), verbose=0)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
    assert f.n_calls == 2
    f_c = SegmentModel(linear_model, beats[0], repl, n_segments=N_SEG, output="probs",
                       target=4)
    np.testing.assert_allclose(f_c(np.ones(M)), expected[:1, 4], rtol=1e-5)
    with pytest.raises(ValueError, match="features"):
        f(np.ones((1, M + 1)))


def test_segment_model_output_checked(linear_model, beats):
    with pytest.raises(ValueError, match="output"):
        SegmentModel(linear_model, beats[0], output="scores")


# ---------------------------------------------------------------------------- LIME
@settings(max_examples=20, deadline=None)
@given(n_features=st.integers(2, 40), n_samples=st.integers(2, 60), seed=st.integers(0, 99))
def test_lime_perturbations(n_features, n_samples, seed):
    Z = lime_perturbations(n_features, n_samples, seed)
    assert Z.shape == (n_samples, n_features)
    assert np.all(Z[0] == 1)
    off = (Z[1:] == 0).sum(axis=1)
    assert np.all((off >= 1) & (off <= n_features - 1))
    np.testing.assert_array_equal(Z, lime_perturbations(n_features, n_samples, seed))


def test_lime_perturbations_errors():
    with pytest.raises(ValueError):
        lime_perturbations(1, 10)
    with pytest.raises(ValueError):
        lime_perturbations(10, 1)


def test_lime_kernel_decreases():
    k = lime_kernel(np.array([0.0, 0.1, 0.5, 1.0]))
    assert k[0] == 1.0 and np.all(np.diff(k) < 0)


def test_lime_recovers_linear_logits(linear_model, beats):
    res = lime_segments(linear_model, beats[:3], [0, 3, 7], how="zero", n_samples=400,
                        n_segments=N_SEG, output="logits")
    assert res.native.shape == (3, M) and res.values.shape == (3, config.WINDOW, 2)
    assert res.method == "lime" and res.kind == "model-agnostic" and res.delta is None
    np.testing.assert_allclose(res.total(), res.native.sum(axis=1))   # sums preserved
    for i, c in enumerate([0, 3, 7]):
        phi = exact_contributions(linear_model, beats[i], 0.0, c)
        assert res.extras["r2"][i] > 0.99, res.extras["r2"]
        # Ridge(alpha=1) shrinks the coefficients a little; the ranking must be (almost) exact.
        assert np.corrcoef(res.native[i], phi)[0, 1] > 0.99
        np.testing.assert_allclose(res.native[i], phi, atol=0.1 * np.abs(phi).max())
    np.testing.assert_allclose(res.extras["local_pred"], res.score, atol=0.1)


def test_lime_is_deterministic(linear_model, beats):
    a = lime_segments(linear_model, beats[:1], 2, n_samples=100, n_segments=N_SEG, seed=1)
    b = lime_segments(linear_model, beats[:1], 2, n_samples=100, n_segments=N_SEG, seed=1)
    c = lime_segments(linear_model, beats[:1], 2, n_samples=100, n_segments=N_SEG, seed=2)
    np.testing.assert_array_equal(a.native, b.native)
    assert not np.array_equal(a.native, c.native)


def test_lime_target_errors(linear_model, beats):
    with pytest.raises(ValueError, match="targets"):
        lime_segments(linear_model, beats, [0, 1], n_samples=10, n_segments=N_SEG)
    with pytest.raises(ValueError, match="targets"):
        lime_segments(linear_model, beats, 9, n_samples=10, n_segments=N_SEG)


# ---------------------------------------------------------------------------- SHAP
def test_kernel_shap_exact_on_additive_model(linear_model, beats):
    mean = beats.mean(axis=0)
    res = kernel_shap_segments(linear_model, beats[:2], [1, 5], how="mean", reference=mean,
                               n_samples=200, n_segments=N_SEG, output="logits")
    for i, c in enumerate([1, 5]):
        np.testing.assert_allclose(res.native[i], exact_contributions(linear_model, beats[i],
                                                                      mean, c), atol=1e-4)
    assert res.extras["n_evaluations"] > 0 and res.unit == "segments"


def test_kernel_shap_additivity_on_probabilities(linear_model, beats):
    res = kernel_shap_segments(linear_model, beats[:3], 0, n_samples=100, n_segments=N_SEG,
                               how="noise", output="probs")
    assert res.max_delta() < 1e-6
    # E[f(background)] is the model output of the replacement beat (all segments off).
    repl = baseline(beats[:1], "noise", seed=config.SEED)
    np.testing.assert_allclose(res.reference[0],
                               linear_model.predict(repl, verbose=0)[0, 0], rtol=1e-5)


def test_additivity_gap_detects_violation(linear_model, beats):
    res = kernel_shap_segments(linear_model, beats[:1], 0, n_samples=60, n_segments=N_SEG)
    change = res.score - res.reference
    np.testing.assert_allclose(completeness_gap(res.native + 0.01, change) - res.delta,
                               [0.01 * M], rtol=1e-6)


def test_gradient_shap_linear_model(linear_model, beats):
    """With one background beat, expected gradients of a linear function are exact:
    w * (x - background), so additivity holds up to float rounding."""
    background = np.random.default_rng(9).normal(size=(1, config.WINDOW, 2)).astype(np.float32)
    res = gradient_shap(linear_model, beats[:3], [2, 2, 6], background=background,
                        n_samples=10)
    assert res.values.shape == beats[:3].shape and res.method == "gradient_shap"
    assert res.max_delta() < 1e-3
    w = linear_model.get_layer(LOGITS_LAYER).get_weights()[0][:, 6].reshape(config.WINDOW, 2)
    np.testing.assert_allclose(res.values[2], w * (beats[2] - background[0]), atol=1e-4)


def test_gradient_shap_is_seeded(linear_model, beats):
    background = np.random.default_rng(9).normal(size=(10, config.WINDOW, 2)).astype(np.float32)
    a = gradient_shap(linear_model, beats[:1], 1, background=background, n_samples=5, seed=0)
    b = gradient_shap(linear_model, beats[:1], 1, background=background, n_samples=5, seed=0)
    np.testing.assert_array_equal(a.values, b.values)
    # E[f(background)] is the mean logit of the background beats.
    w, bias = linear_model.get_layer(LOGITS_LAYER).get_weights()
    logits = background.reshape(len(background), -1) @ w + bias
    np.testing.assert_allclose(a.reference, logits[:, 1].mean(), rtol=1e-4)
    np.testing.assert_allclose(a.score, predict_scores(linear_model, beats[:1])[:, 1],
                               rtol=1e-5)


# ---------------------------------------------------------------------------- summaries
def test_top_features():
    assert top_features([0.1, -2.0, 0.5, 0.3], ["a", "b", "c", "d"], k=2) == ["c", "d"]
    with pytest.raises(ValueError):
        top_features([1.0, 2.0], ["a"])


def test_pick_per_class():
    idx = np.arange(10, 20)
    y = np.array([0, 1, 0, 1, 0, 2, 2, 0, 1, 1])
    keep = np.array([1, 1, 0, 1, 1, 1, 0, 1, 0, 1], bool)
    np.testing.assert_array_equal(pick_per_class(idx, y, keep, 2, n_classes=3),
                                  [10, 11, 13, 14, 15])
    with pytest.raises(ValueError):
        pick_per_class(idx, y[:3], keep, 2)
