"""Tests of utils.lime_shap on a tiny linear Keras model whose explanations are known exactly.

For ``logits = W . vec(x) + b`` and segments switched off to a replacement ``r``, the logit of
class c is additive over segments: ``f(z) = f(r) + sum_k z_k * phi_k`` with
``phi_k = sum_{t in segment k} W_c (x - r)``. Shapley values, a linear LIME surrogate and
expected gradients must all recover ``phi`` (expected gradients on samples, summed per segment).
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from utils import config
from utils.lime_shap import (
    SegmentModel, additivity_error, gradient_shap, kernel_shap_segments,
    lime_kernel, lime_perturbations, lime_segments, pick_per_class, rank_agreement,
    replacement_beat, segment_sums, top_features)
from utils.segments import segment_mask

pytestmark = pytest.mark.filterwarnings("ignore:The structure of `inputs`:UserWarning")

N_SEG = 8  # fewer segments than the course default keeps the tests fast
M = 2 * N_SEG


@pytest.fixture(scope="module")
def linear_model():
    import keras

    inputs = keras.Input((config.WINDOW, 2), name="beat")
    x = keras.layers.Flatten()(inputs)
    logits = keras.layers.Dense(8, name="logits")(x)
    probs = keras.layers.Activation("softmax", name="probs")(logits)
    model = keras.Model(inputs, probs)
    rng = np.random.default_rng(3)
    model.get_layer("logits").set_weights([rng.normal(0, 0.05, (config.WINDOW * 2, 8)),
                                           rng.normal(0, 0.1, 8)])
    return model


@pytest.fixture(scope="module")
def beats():
    return np.random.default_rng(0).normal(size=(3, config.WINDOW, 2)).astype(np.float32)


def exact_contributions(model, beat, replacement, target):
    """phi_k = sum over the samples of segment k of W_c * (x - r) (see module docstring)."""
    w = model.get_layer("logits").get_weights()[0][:, target].reshape(config.WINDOW, 2)
    delta = w * (beat - replacement)
    mask = segment_mask(config.WINDOW, N_SEG, 2)
    return np.array([delta[m].sum() for m in mask])


# ---------------------------------------------------------------------------- replacements
def test_replacement_kinds(beats):
    beat = beats[0]
    assert np.all(replacement_beat("zero", beat) == 0)
    mean = beats.mean(axis=0)
    np.testing.assert_array_equal(replacement_beat("mean", beat, mean_beat=mean), mean)
    noise = replacement_beat("noise", beat, noise_scale=2.0, seed=5)
    np.testing.assert_array_equal(noise, replacement_beat("noise", beat, noise_scale=2.0, seed=5))
    assert not np.array_equal(noise, replacement_beat("noise", beat, noise_scale=2.0, seed=6))
    assert 1.8 < noise.std() < 2.2


@pytest.mark.parametrize("kind, kwargs", [("mean", {}), ("blur", {}),
                                          ("noise", {"noise_scale": -1.0})])
def test_replacement_errors(beats, kind, kwargs):
    with pytest.raises(ValueError):
        replacement_beat(kind, beats[0], **kwargs)


def test_replacement_mean_shape_checked(beats):
    with pytest.raises(ValueError, match="does not match"):
        replacement_beat("mean", beats[0], mean_beat=np.zeros((10, 2)))


# ---------------------------------------------------------------------------- SegmentModel
def test_segment_model_endpoints(linear_model, beats):
    repl = replacement_beat("noise", beats[0], seed=1)
    f = SegmentModel(linear_model, beats[0], repl, n_segments=N_SEG)
    out = f(np.stack([np.ones(M), np.zeros(M)]))
    expected = linear_model.predict(np.stack([beats[0], repl]), verbose=0)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
    assert f.n_calls == 2
    f_c = SegmentModel(linear_model, beats[0], repl, n_segments=N_SEG, target=4)
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
    res = lime_segments(linear_model, beats, targets=[0, 3, 7], replacement="zero",
                        n_samples=400, n_segments=N_SEG, output="logits")
    assert res.weights.shape == (3, M)
    for i, c in enumerate([0, 3, 7]):
        phi = exact_contributions(linear_model, beats[i], 0.0, c)
        assert res.score[i] > 0.99, res.score
        # Ridge(alpha=1) shrinks the coefficients a little; the ranking must be (almost) exact.
        assert np.corrcoef(res.weights[i], phi)[0, 1] > 0.99
        np.testing.assert_allclose(res.weights[i], phi, atol=0.1 * np.abs(phi).max())
    np.testing.assert_allclose(res.local_pred, res.prediction, atol=0.1)


def test_lime_is_deterministic(linear_model, beats):
    a = lime_segments(linear_model, beats[:1], 2, n_samples=100, n_segments=N_SEG, seed=1)
    b = lime_segments(linear_model, beats[:1], 2, n_samples=100, n_segments=N_SEG, seed=1)
    c = lime_segments(linear_model, beats[:1], 2, n_samples=100, n_segments=N_SEG, seed=2)
    np.testing.assert_array_equal(a.weights, b.weights)
    assert not np.array_equal(a.weights, c.weights)


def test_lime_target_errors(linear_model, beats):
    with pytest.raises(ValueError, match="targets"):
        lime_segments(linear_model, beats, [0, 1], n_samples=10, n_segments=N_SEG)
    with pytest.raises(ValueError, match="targets"):
        lime_segments(linear_model, beats, 9, n_samples=10, n_segments=N_SEG)


# ---------------------------------------------------------------------------- SHAP
def test_kernel_shap_exact_on_additive_model(linear_model, beats):
    mean = beats.mean(axis=0)
    res = kernel_shap_segments(linear_model, beats[:2], [1, 5], replacement="mean",
                               mean_beat=mean, n_samples=200, n_segments=N_SEG,
                               output="logits")
    for i, c in enumerate([1, 5]):
        np.testing.assert_allclose(res.values[i], exact_contributions(linear_model, beats[i],
                                                                      mean, c), atol=1e-4)
    assert res.n_evaluations > 0


def test_kernel_shap_additivity_on_probabilities(linear_model, beats):
    res = kernel_shap_segments(linear_model, beats, 0, n_samples=100, n_segments=N_SEG,
                               replacement="noise")
    assert np.abs(additivity_error(res)).max() < 1e-6
    # E[f(background)] is the model output of the replacement beat (all segments off).
    repl = replacement_beat("noise", beats[0], seed=config.SEED)
    np.testing.assert_allclose(res.expected[0],
                               linear_model.predict(repl[None], verbose=0)[0, 0], rtol=1e-5)


def test_additivity_error_detects_violation(linear_model, beats):
    res = kernel_shap_segments(linear_model, beats[:1], 0, n_samples=60, n_segments=N_SEG)
    res.values = res.values + 0.01
    np.testing.assert_allclose(additivity_error(res), [0.01 * M], rtol=1e-6)


def test_gradient_shap_linear_model(linear_model, beats):
    """With one background beat, expected gradients of a linear function are exact:
    w * (x - background), so additivity holds up to float rounding."""
    background = np.random.default_rng(9).normal(size=(1, config.WINDOW, 2)).astype(np.float32)
    res = gradient_shap(linear_model, beats, [2, 2, 6], background, n_samples=10)
    assert res.values.shape == beats.shape
    assert np.abs(additivity_error(res)).max() < 1e-3
    w = linear_model.get_layer("logits").get_weights()[0][:, 6].reshape(config.WINDOW, 2)
    np.testing.assert_allclose(res.values[2], w * (beats[2] - background[0]), atol=1e-4)


def test_gradient_shap_is_seeded(linear_model, beats):
    background = np.random.default_rng(9).normal(size=(10, config.WINDOW, 2)).astype(np.float32)
    a = gradient_shap(linear_model, beats[:1], 1, background, n_samples=5, seed=0)
    b = gradient_shap(linear_model, beats[:1], 1, background, n_samples=5, seed=0)
    np.testing.assert_array_equal(a.values, b.values)
    # E[f(background)] is the mean logit of the background beats.
    w, bias = linear_model.get_layer("logits").get_weights()
    logits = background.reshape(len(background), -1) @ w + bias
    np.testing.assert_allclose(a.expected, logits[:, 1].mean(), rtol=1e-4)


# ---------------------------------------------------------------------------- summaries
def test_rank_agreement():
    a = np.array([[1.0, 2, 3, 4], [1, 2, 3, 4], [1, 1, 1, 1]])
    b = np.array([[10.0, 20, 30, 40], [4, 3, 2, 1], [1, 2, 3, 4]])
    r = rank_agreement(a, b)
    np.testing.assert_allclose(r[:2], [1.0, -1.0])
    assert np.isnan(r[2])
    with pytest.raises(ValueError):
        rank_agreement(a, b[:, :3])


def test_top_features():
    assert top_features([0.1, -2.0, 0.5, 0.3], ["a", "b", "c", "d"], k=2) == ["c", "d"]
    with pytest.raises(ValueError):
        top_features([1.0, 2.0], ["a"])


def test_segment_sums_preserve_total_and_match_mask():
    rng = np.random.default_rng(0)
    values = rng.normal(size=(2, config.WINDOW, 2))
    sums = segment_sums(values, n_segments=N_SEG)
    assert sums.shape == (2, M)
    np.testing.assert_allclose(sums.sum(axis=1), values.reshape(2, -1).sum(axis=1))
    mask = segment_mask(config.WINDOW, N_SEG, 2)
    np.testing.assert_allclose(sums[1, N_SEG + 3], values[1][mask[N_SEG + 3]].sum())
    with pytest.raises(ValueError):
        segment_sums(values[0])


def test_pick_per_class():
    idx = np.arange(10, 20)
    y = np.array([0, 1, 0, 1, 0, 2, 2, 0, 1, 1])
    keep = np.array([1, 1, 0, 1, 1, 1, 0, 1, 0, 1], bool)
    np.testing.assert_array_equal(pick_per_class(idx, y, keep, 2, n_classes=3),
                                  [10, 11, 13, 14, 15])
    with pytest.raises(ValueError):
        pick_per_class(idx, y[:3], keep, 2)
