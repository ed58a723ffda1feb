"""Tests of utils.gradcam: Grad-CAM of the FCN and the LSTM Grad-CAM variant."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from utils import config
from utils.data import format_targets
from utils.gradcam import (feature_maps_and_gradients, grad_cam,
                           lstm_grad_cam, upsample_to)


def _randomise_head(model, seed: int = 1) -> None:
    rng = np.random.default_rng(seed)
    w, b = model.get_layer("logits").get_weights()
    model.get_layer("logits").set_weights([w, rng.normal(size=b.shape).astype(np.float32)])


@pytest.fixture(scope="module")
def fcn():
    import keras

    from utils.models import build_fcn

    keras.utils.set_random_seed(0)
    model = build_fcn(filters=(8, 8, 16))
    _randomise_head(model)
    return model


@pytest.fixture(scope="module")
def lstm():
    import keras

    from utils.models import build_lstm

    keras.utils.set_random_seed(0)
    model = build_lstm(units=8)
    _randomise_head(model)
    return model


@pytest.fixture(scope="module")
def beats():
    return np.random.default_rng(0).normal(size=(5, config.WINDOW, 2)).astype(np.float32)


def test_grad_cam_shape_nonnegative(fcn, beats):
    cam = grad_cam(fcn, beats, 2)
    assert cam.shape == (len(beats), config.WINDOW)
    assert np.all(cam >= 0) and np.any(cam > 0)


def test_grad_cam_equals_relu_cam_over_T_on_gap_network(fcn, beats):
    """On a GAP network alpha_k = w_kc / T, so Grad-CAM = ReLU(CAM) / T exactly."""
    from utils.cam import class_activation_map

    targets = np.array([0, 1, 2, 3, 4])
    cam = class_activation_map(fcn, beats, targets)
    gc = grad_cam(fcn, beats, targets, relu=False)
    np.testing.assert_allclose(gc * config.WINDOW, cam, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(grad_cam(fcn, beats, targets), np.maximum(gc, 0))


def test_signed_grad_cam_sums_to_logit_minus_bias(fcn, beats):
    from utils.models import logits_model

    gc = grad_cam(fcn, beats, 5, relu=False)
    logits = logits_model(fcn).predict(beats, verbose=0)[:, 5]
    bias = fcn.get_layer("logits").get_weights()[1][5]
    np.testing.assert_allclose(gc.sum(axis=1) + bias, logits, rtol=1e-4, atol=1e-4)


def test_grad_cam_depends_on_target(fcn, beats):
    assert not np.allclose(grad_cam(fcn, beats, 0, relu=False), grad_cam(fcn, beats, 1, relu=False))


def test_lstm_grad_cam_shape_and_time_mean_identity(lstm, beats):
    """For the LSTM with mean over time, the signed variant is a per-step decomposition of the
    logit: sum over steps = logit - bias."""
    from utils.models import logits_model

    rel = lstm_grad_cam(lstm, beats, 3, relu=False)
    assert rel.shape == (len(beats), config.WINDOW)
    logits = logits_model(lstm).predict(beats, verbose=0)[:, 3]
    bias = lstm.get_layer("logits").get_weights()[1][3]
    A, G, _ = feature_maps_and_gradients(lstm, beats, 3, "lstm")
    pool = lstm.get_layer("downsample").pool_size[0]
    assert A.shape == (len(beats), config.WINDOW // pool, 8)
    steps = (A * G.mean(axis=1, keepdims=True)).sum(axis=2)
    np.testing.assert_allclose(steps.sum(axis=1) + bias, logits, rtol=1e-4, atol=1e-4)
    assert np.all(lstm_grad_cam(lstm, beats, 3) >= 0)


def test_lstm_layer_without_sequences_is_rejected(beats):
    import keras

    inp = keras.Input((config.WINDOW, 2))
    h = keras.layers.LSTM(4, name="lstm")(inp)
    out = keras.layers.Dense(8, name="logits")(h)
    model = keras.Model(inp, keras.layers.Activation("softmax", name="probs")(out))
    with pytest.raises(ValueError, match="return_sequences"):
        lstm_grad_cam(model, beats, 0)


def test_unknown_layer_and_bad_targets(fcn, beats):
    with pytest.raises(ValueError, match="no layer"):
        grad_cam(fcn, beats, 0, layer="nope")
    with pytest.raises(ValueError, match=r"\[0, 8\)"):
        grad_cam(fcn, beats, 8)
    with pytest.raises(ValueError, match="5 class indices"):
        grad_cam(fcn, beats, [0, 1])
    with pytest.raises(ValueError, match="one beat"):
        grad_cam(fcn, beats[0], 0)


def test_format_targets():
    np.testing.assert_array_equal(format_targets(3, 4, 8), [3, 3, 3, 3])
    np.testing.assert_array_equal(format_targets(np.array([1.0, 2.0]), 2, 8), [1, 2])
    with pytest.raises(ValueError, match="integer"):
        format_targets([0.5, 1], 2, 8)


@settings(max_examples=30, deadline=None)
@given(steps=st.sampled_from([8, 16, 32, 64, 128]),
       values=st.lists(st.floats(-5, 5), min_size=1, max_size=1))
def test_upsample_constant_and_range(steps, values):
    """A constant map stays constant; interpolation never leaves the range of the steps."""
    const = np.full((1, steps), values[0])
    np.testing.assert_allclose(upsample_to(const, 256), values[0])
    ramp = np.linspace(-1, 1, steps)[None]
    up = upsample_to(ramp, 256)
    assert up.shape == (1, 256)
    assert up.min() >= -1 - 1e-12 and up.max() <= 1 + 1e-12
    assert np.all(np.diff(up[0]) >= -1e-12)  # monotone input stays monotone


def test_upsample_places_steps_at_pooled_centres():
    up = upsample_to(np.array([[0.0, 1.0]]), 4)  # step centres at samples 0.5 and 2.5
    np.testing.assert_allclose(up[0], [0.0, 0.25, 0.75, 1.0])
    with pytest.raises(ValueError):
        upsample_to(np.zeros((1, 300)), 256)
