"""Tests of utils.explainers.gradcam: one Grad-CAM for the CNN (conv_last) and the LSTM (lstm)."""
from __future__ import annotations

import numpy as np
import pytest

from utils.core import config
from utils.core.config import LOGITS_LAYER
from utils.core.explain import predict_scores
from utils.explainers.gradcam import feature_maps_and_gradients, grad_cam


def test_grad_cam_shape_nonnegative(fcn, beats):
    exp = grad_cam(fcn, beats, 2)
    assert exp.values.shape == (len(beats), config.WINDOW, 2)
    assert exp.unit == "steps" and exp.native.shape == (len(beats), config.WINDOW)
    assert np.all(exp.values >= 0) and np.any(exp.values > 0)


def test_grad_cam_equals_relu_cam_over_T_on_gap_network(fcn, beats):
    """On a GAP network alpha_k = w_kc / T, so Grad-CAM = ReLU(CAM) / T exactly."""
    from utils.explainers.cam import class_activation_map

    targets = np.arange(len(beats))
    cam = class_activation_map(fcn, beats, targets).native
    gc = grad_cam(fcn, beats, targets, relu=False)
    np.testing.assert_allclose(gc.native * config.WINDOW, cam, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(gc.per_time("mean"), gc.native)
    np.testing.assert_allclose(grad_cam(fcn, beats, targets).native, np.maximum(gc.native, 0))


def test_signed_grad_cam_sums_to_logit_minus_bias(fcn, beats):
    gc = grad_cam(fcn, beats, 5, relu=False)
    logits = predict_scores(fcn, beats)[:, 5]
    bias = fcn.get_layer(LOGITS_LAYER).get_weights()[1][5]
    np.testing.assert_allclose(gc.native.sum(axis=1) + bias, logits, rtol=1e-4, atol=1e-4)


def test_grad_cam_depends_on_target(fcn, beats):
    assert not np.allclose(grad_cam(fcn, beats, 0, relu=False).native,
                           grad_cam(fcn, beats, 1, relu=False).native)


def test_grad_cam_on_the_lstm_and_time_mean_identity(lstm, beats):
    """For the LSTM with mean over time, the signed variant is a per-step decomposition of the
    logit: sum over steps = logit - bias; the same function serves it with layer='lstm'."""
    exp = grad_cam(lstm, beats, 3, layer="lstm", relu=False)
    pool = lstm.get_layer("downsample").pool_size[0]
    assert exp.values.shape == (len(beats), config.WINDOW, 2)
    assert exp.native.shape == (len(beats), config.WINDOW // pool)
    logits = predict_scores(lstm, beats)[:, 3]
    bias = lstm.get_layer(LOGITS_LAYER).get_weights()[1][3]
    np.testing.assert_allclose(exp.native.sum(axis=1) + bias, logits, rtol=1e-4, atol=1e-4)
    A, G, _ = feature_maps_and_gradients(lstm, beats, 3, "lstm")
    assert A.shape == (len(beats), config.WINDOW // pool, 8)
    assert np.all(grad_cam(lstm, beats, 3, layer="lstm").values >= 0)


def test_grad_cam_of_probabilities_differs_from_logits(fcn, beats):
    p = grad_cam(fcn, beats, 1, output="probs", relu=False)
    assert p.output == "probs"
    assert not np.allclose(p.native, grad_cam(fcn, beats, 1, relu=False).native)


def test_lstm_layer_without_sequences_is_rejected(beats):
    import keras

    inp = keras.Input((config.WINDOW, 2))
    h = keras.layers.LSTM(4, name="lstm")(inp)
    out = keras.layers.Dense(8, name=LOGITS_LAYER)(h)
    model = keras.Model(inp, keras.layers.Activation("softmax", name="probs")(out))
    with pytest.raises(ValueError, match="return_sequences"):
        grad_cam(model, beats, 0, layer="lstm")


def test_unknown_layer_and_bad_targets(fcn, beats):
    with pytest.raises(ValueError, match="needs a layer 'nope'"):
        grad_cam(fcn, beats, 0, layer="nope")
    with pytest.raises(ValueError, match=r"\[0, 8\)"):
        grad_cam(fcn, beats, 8)
    with pytest.raises(ValueError, match="6 class indices"):
        grad_cam(fcn, beats, [0, 1])
    with pytest.raises(ValueError, match="one beat"):
        grad_cam(fcn, beats[0], 0)
