"""Tests of utils.models.networks: shapes, layer names the explainers rely on, attention, autoencoder."""
from __future__ import annotations

import numpy as np
import pytest

from utils.core import config
from utils.models import networks as models
from utils.core.explain import predict_scores

X = np.random.default_rng(0).normal(size=(4, config.WINDOW, 2)).astype(np.float32)


@pytest.mark.parametrize("builder", [models.build_fcn, models.build_lstm,
                                     models.build_lstm_attention])
def test_classifier_outputs_probabilities(builder):
    model = builder()
    probs = models.predict_proba(model, X)
    assert probs.shape == (4, len(config.CLASSES))
    np.testing.assert_allclose(probs.sum(axis=1), 1, atol=1e-5)
    logits = predict_scores(model, X, "logits")
    exp = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(exp / exp.sum(1, keepdims=True), probs, atol=1e-5)


def test_fcn_cam_layer_keeps_time_resolution():
    model = models.build_fcn()
    assert model.get_layer("conv_last").output.shape[1] == config.WINDOW
    assert model.count_params() < 100_000  # sized for a laptop CPU


def test_fcn_rejects_mismatched_blocks():
    with pytest.raises(ValueError, match="same length"):
        models.build_fcn(filters=(8, 8), kernels=(3,), dilations=(1,))


def test_lstm_hidden_states_per_step():
    model = models.build_lstm(units=8)
    assert tuple(model.get_layer("lstm").output.shape[1:]) == (config.WINDOW // 4, 8)


def test_attention_weights_sum_to_one():
    model = models.build_lstm_attention(units=8, attention_units=4)
    probs, weights = models.attention_model(model).predict(X, verbose=0)
    assert weights.shape == (4, config.WINDOW // 4)
    np.testing.assert_allclose(weights.sum(axis=1), 1, atol=1e-5)
    assert (weights >= 0).all()
    np.testing.assert_allclose(probs, model.predict(X, verbose=0), atol=1e-6)


def test_temporal_attention_context_is_weighted_mean():
    layer = models.TemporalAttention(3, return_attention=True)
    h = np.random.default_rng(1).normal(size=(2, 5, 4)).astype(np.float32)
    context, alpha = (np.asarray(t) for t in layer(h))
    np.testing.assert_allclose(context, np.einsum("bt,btf->bf", alpha, h), atol=1e-5)
    assert models.TemporalAttention.from_config(layer.get_config()).units == 3


def test_autoencoder_shapes_and_alignment():
    model = models.build_attention_autoencoder(units=8, pool=4)
    pooled, recon, align = models.autoencoder_alignment(model).predict(X, verbose=0)
    steps = config.WINDOW // 4
    assert recon.shape == pooled.shape == (4, steps, 2)
    assert align.shape == (4, steps, steps)
    np.testing.assert_allclose(align.sum(axis=-1), 1, atol=1e-5)


def test_predict_proba_rejects_bad_input():
    model = models.build_fcn(filters=(4, 4, 4))
    with pytest.raises(ValueError, match="shape"):
        models.predict_proba(model, np.zeros((2, 100, 2)))
    bad = X.copy()
    bad[1, 3, 0] = np.inf
    with pytest.raises(ValueError, match="NaN or infinite"):
        models.predict_proba(model, bad)
