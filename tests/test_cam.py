"""Tests of utils.cam: the CAM of the GAP FCN and the exact score decomposition."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from utils import config
from utils.cam import cam_score_decomposition, class_activation_map, feature_maps


@pytest.fixture(scope="module")
def fcn():
    import keras

    from utils.models import build_fcn

    keras.utils.set_random_seed(0)
    model = build_fcn(filters=(8, 8, 16))
    # Random, non-trivial BatchNorm statistics and bias so the test cannot pass by accident.
    rng = np.random.default_rng(1)
    for layer in model.layers:
        if layer.name.endswith("_bn"):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([gamma * 1.5, beta + 0.1, rng.normal(size=mean.shape) * 0.1,
                               var + rng.uniform(0.1, 1, size=var.shape)])
    w, b = model.get_layer("logits").get_weights()
    model.get_layer("logits").set_weights([w, rng.normal(size=b.shape)])
    return model


@pytest.fixture(scope="module")
def beats():
    return np.random.default_rng(0).normal(size=(6, config.WINDOW, 2)).astype(np.float32)


def test_cam_shape_matches_beat_length(fcn, beats):
    cam = class_activation_map(fcn, beats, 3)
    assert cam.shape == (len(beats), config.WINDOW)
    assert np.all(np.isfinite(cam))


def test_cam_equals_manual_weighted_sum(fcn, beats):
    maps = feature_maps(fcn, beats)
    w, _ = fcn.get_layer("logits").get_weights()
    targets = np.array([0, 1, 2, 3, 4, 7])
    expected = np.stack([maps[i] @ w[:, c] for i, c in enumerate(targets)])
    np.testing.assert_allclose(class_activation_map(fcn, beats, targets), expected, rtol=1e-6,
                               atol=1e-6)


def test_decomposition_is_exact(fcn, beats):
    cam_mean_plus_bias, logits = cam_score_decomposition(fcn, beats, np.arange(6))
    assert cam_mean_plus_bias.shape == logits.shape == (6,)
    np.testing.assert_allclose(cam_mean_plus_bias, logits, atol=1e-4)


def test_decomposition_fails_without_bias(fcn, beats):
    """The bias matters: the CAM mean alone differs from the logit (guards the test above)."""
    cam = class_activation_map(fcn, beats, 2)
    _, logits = cam_score_decomposition(fcn, beats, 2)
    assert np.abs(cam.mean(axis=1) - logits).max() > 1e-3


@settings(max_examples=8, deadline=None)
@given(target=st.integers(0, 7), scale=st.floats(0.1, 5.0))
def test_int_target_equals_array_target(fcn, beats, target, scale):
    X = beats * np.float32(scale)
    np.testing.assert_allclose(class_activation_map(fcn, X, target),
                               class_activation_map(fcn, X, np.full(len(X), target)))


def test_cams_of_all_classes_sum_to_weight_sum(fcn, beats):
    """Linearity in the dense weights: sum over classes = maps @ sum of weight columns."""
    total = sum(class_activation_map(fcn, beats, c) for c in range(8))
    w, _ = fcn.get_layer("logits").get_weights()
    np.testing.assert_allclose(total, feature_maps(fcn, beats) @ w.sum(axis=1), rtol=1e-5,
                               atol=1e-5)


@pytest.mark.parametrize("targets", [8, -1, [0, 1], np.zeros((6, 1), int)])
def test_bad_targets(fcn, beats, targets):
    with pytest.raises(ValueError, match="targets"):
        class_activation_map(fcn, beats, targets)


def test_bad_beats(fcn):
    with pytest.raises(ValueError):
        class_activation_map(fcn, np.zeros((config.WINDOW, 2)), 0)
    with pytest.raises(ValueError):
        class_activation_map(fcn, np.full((1, config.WINDOW, 2), np.nan), 0)


def test_non_gap_model_rejected(beats):
    from utils.models import build_lstm

    with pytest.raises(ValueError, match="conv_last"):
        class_activation_map(build_lstm(units=4), beats, 0)
