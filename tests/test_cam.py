"""Tests of utils.explainers.cam: the CAM of the GAP FCN and its exact score decomposition (delta)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from utils.core import config
from utils.explainers.cam import class_activation_map, feature_maps
from utils.core.config import LOGITS_LAYER
from utils.core.explain import Explanation, predict_scores


def test_cam_is_an_explanation_shared_by_the_leads(fcn, beats):
    exp = class_activation_map(fcn, beats, 3)
    assert isinstance(exp, Explanation) and exp.method == "cam"
    assert exp.values.shape == (len(beats), config.WINDOW, 2)
    assert exp.native.shape == (len(beats), config.WINDOW)
    np.testing.assert_array_equal(exp.values[:, :, 0], exp.values[:, :, 1])
    np.testing.assert_allclose(exp.per_time("mean"), exp.native)
    np.testing.assert_array_equal(exp.target, 3)


def test_cam_equals_manual_weighted_sum(fcn, beats):
    maps = feature_maps(fcn, beats)
    w, _ = fcn.get_layer(LOGITS_LAYER).get_weights()
    targets = np.array([0, 1, 2, 3, 4, 7])
    expected = np.stack([maps[i] @ w[:, c] for i, c in enumerate(targets)])
    np.testing.assert_allclose(class_activation_map(fcn, beats, targets).native, expected,
                               rtol=1e-6, atol=1e-6)


def test_decomposition_is_exact(fcn, beats):
    exp = class_activation_map(fcn, beats, np.arange(6))
    assert exp.delta.shape == (6,)
    assert exp.max_delta() < 1e-4
    logits = predict_scores(fcn, beats)[np.arange(6), np.arange(6)]
    np.testing.assert_allclose(exp.native.mean(axis=1) + exp.reference, logits, atol=1e-4)


def test_decomposition_fails_without_bias(fcn, beats):
    """The bias matters: the CAM mean alone differs from the logit (guards the test above)."""
    exp = class_activation_map(fcn, beats, 2)
    assert np.abs(exp.native.mean(axis=1) - exp.score).max() > 1e-3


@settings(max_examples=8, deadline=None)
@given(target=st.integers(0, 7), scale=st.floats(0.1, 5.0))
def test_int_target_equals_array_target(fcn, beats, target, scale):
    X = beats * np.float32(scale)
    np.testing.assert_allclose(class_activation_map(fcn, X, target).values,
                               class_activation_map(fcn, X, np.full(len(X), target)).values)


def test_cams_of_all_classes_sum_to_weight_sum(fcn, beats):
    """Linearity in the dense weights: sum over classes = maps @ sum of weight columns."""
    total = sum(class_activation_map(fcn, beats, c).native for c in range(8))
    w, _ = fcn.get_layer(LOGITS_LAYER).get_weights()
    np.testing.assert_allclose(total, feature_maps(fcn, beats) @ w.sum(axis=1), rtol=1e-5,
                               atol=1e-5)


def test_cam_explains_logits_only(fcn, beats):
    with pytest.raises(ValueError, match="output must be one of \\('logits',\\)"):
        class_activation_map(fcn, beats, 0, output="probs")


def test_non_gap_model_rejected(lstm, beats):
    with pytest.raises(ValueError, match="conv_last"):
        class_activation_map(lstm, beats, 0)
