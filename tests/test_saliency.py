"""Tests of utils/explainers/saliency.py on toy models whose gradient is known."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from utils.core.explain import Explanation
from utils.core.config import LOGITS_LAYER
from utils.explainers.saliency import gradient_x_input, input_gradients, saliency


def _weights(linear_model, target):
    kernel = linear_model.get_layer(LOGITS_LAYER).get_weights()[0]     # (window * leads, classes)
    shape = linear_model.input_shape[1:]
    return kernel[:, target].reshape(shape)


def test_linear_model_gradient_is_its_weights(linear_model, beats):
    grads, t = input_gradients(linear_model, beats, 2)
    assert list(t) == [2] * len(beats)
    for g in grads:
        np.testing.assert_allclose(g, _weights(linear_model, 2), rtol=1e-5, atol=1e-7)


def test_saliency_is_the_magnitude_and_signed_on_request(linear_model, beats):
    e = saliency(linear_model, beats, 1)
    assert isinstance(e, Explanation) and e.method == "saliency"
    assert e.values.shape == beats.shape and np.all(e.values >= 0)
    signed = saliency(linear_model, beats, 1, absolute=False)
    np.testing.assert_allclose(np.abs(signed.values), e.values)
    assert np.any(signed.values < 0)


def test_saliency_does_not_depend_on_the_beat_for_a_linear_model(linear_model, beats):
    e = saliency(linear_model, beats, 4)
    np.testing.assert_allclose(e.values[0], e.values[-1], rtol=1e-5, atol=1e-7)


@settings(max_examples=15, deadline=None)
@given(st.floats(min_value=-3, max_value=3), st.integers(min_value=0, max_value=7))
def test_gradient_x_input_sums_to_the_logit_of_a_linear_model_without_bias(scale, target):
    """Euler: for F(x) = w.x (no bias), sum(x * dF/dx) = F(x)."""
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 2))
    out = keras.layers.Dense(8, use_bias=False, name=LOGITS_LAYER)(keras.layers.Flatten()(inp))
    model = keras.Model(inp, keras.layers.Activation("softmax")(out))
    x = (scale * np.random.default_rng(1).normal(size=(3, 16, 2))).astype(np.float32)
    e = gradient_x_input(model, x, target)
    logits = x.reshape(3, -1) @ model.get_layer(LOGITS_LAYER).get_weights()[0][:, target]
    np.testing.assert_allclose(e.values.sum(axis=(1, 2)), logits, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("bad", [np.zeros((0, 256, 2)), np.full((2, 256, 2), np.nan)])
def test_rejects_bad_beats(fcn, bad):
    with pytest.raises(ValueError):
        saliency(fcn, bad, 0)
    with pytest.raises(ValueError):
        gradient_x_input(fcn, bad, 0)


def test_probability_output(fcn, beats):
    e = saliency(fcn, beats[:2], 0, output="probs")
    assert e.output == "probs" and np.isfinite(e.values).all()
