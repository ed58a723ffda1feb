"""Tests of utils.explainers.attention: attention by hand vs Keras, read-outs, agreement, perturbations,
autoencoder helpers. Tiny untrained models only (fast, no trained weights needed)."""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import matplotlib  # noqa: E402

matplotlib.use("Agg")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import given, settings, strategies as st  # noqa: E402
from hypothesis.extra.numpy import arrays  # noqa: E402

from utils.explainers import attention as att  # noqa: E402
from utils.core import config  # noqa: E402
from utils.core.config import LOGITS_LAYER
from utils.core.explain import Explanation  # noqa: E402
from utils.models.networks import (TemporalAttention, build_attention_autoencoder,
                                   build_lstm_attention)

RNG = np.random.default_rng(0)
finite = st.floats(-5, 5, allow_nan=False, width=32)


# ------------------------------------------------------------------ attention by hand
def test_additive_attention_matches_keras_layer():
    keras.utils.set_random_seed(0)
    layer = TemporalAttention(5, return_attention=True)
    h = RNG.normal(size=(3, 7, 4)).astype(np.float32)
    context, alpha = (np.asarray(a) for a in layer(h))
    W, b, v = (np.asarray(w) for w in layer.get_weights())
    b = b + RNG.normal(size=b.shape)  # non-zero bias so that b is really used
    layer.set_weights([W, b.astype(np.float32), v])
    context, alpha = (np.asarray(a) for a in layer(h))
    c2, a2 = att.additive_attention(h, W, b, v)
    np.testing.assert_allclose(a2, alpha, atol=1e-5)
    np.testing.assert_allclose(c2, context, atol=1e-5)
    c1, a1 = att.additive_attention(h[0], W, b, v)  # a single sequence
    np.testing.assert_allclose(a1, alpha[0], atol=1e-5)
    assert c1.shape == (4,)


def test_dot_product_attention_matches_keras_attention():
    q = RNG.normal(size=(2, 5, 3)).astype(np.float32)
    k = RNG.normal(size=(2, 6, 3)).astype(np.float32)
    context, scores = keras.layers.Attention()([q, k], return_attention_scores=True)
    c2, a2 = att.dot_product_attention(q, k)
    np.testing.assert_allclose(a2, np.asarray(scores), atol=1e-5)
    np.testing.assert_allclose(c2, np.asarray(context), atol=1e-5)


@settings(max_examples=40, deadline=None)
@given(arrays(np.float64, (2, 6, 3), elements=finite))
def test_attention_weights_are_a_distribution(h):
    W, b, v = np.ones((3, 2)), np.zeros(2), np.array([1.0, -0.5])
    context, alpha = att.additive_attention(h, W, b, v)
    assert np.all(alpha >= 0)
    np.testing.assert_allclose(alpha.sum(axis=1), 1.0, atol=1e-12)
    # the context is a convex combination: inside the range of the hidden states
    assert np.all(context <= h.max(axis=1) + 1e-9) and np.all(context >= h.min(axis=1) - 1e-9)
    _, align = att.dot_product_attention(h, h)
    np.testing.assert_allclose(align.sum(axis=2), 1.0, atol=1e-12)


def test_attention_by_hand_rejects_bad_shapes():
    with pytest.raises(ValueError, match="weights do not fit"):
        att.additive_attention(np.zeros((2, 5, 3)), np.zeros((4, 2)), np.zeros(2), np.zeros(2))
    with pytest.raises(ValueError, match=r"\(n, T, d\)"):
        att.additive_attention(np.zeros(5), np.zeros((5, 2)), np.zeros(2), np.zeros(2))
    with pytest.raises(ValueError, match="shapes do not fit"):
        att.dot_product_attention(np.zeros((1, 2, 3)), np.zeros((1, 2, 4)))


# ------------------------------------------------------------------ read-out
def test_attention_readout(attention_lstm, beats):
    exp = att.attention_readout(attention_lstm, beats)
    probs, weights = exp.extras["probs"], exp.native
    assert probs.shape == (len(beats), len(config.CLASSES))
    steps = attention_lstm.get_layer("lstm").output.shape[1]
    assert weights.shape == (len(beats), steps) and exp.unit == "steps"
    np.testing.assert_array_equal(exp.target, probs.argmax(axis=1))
    np.testing.assert_allclose(probs, attention_lstm.predict(beats, verbose=0), atol=1e-6)
    assert att.weight_sum_error(weights) < 1e-5
    # values: the weights spread over samples and leads, still summing to 1 per beat
    assert exp.values.shape == beats.shape
    np.testing.assert_allclose(exp.total(), 1.0, atol=1e-5)
    f = config.WINDOW // steps
    np.testing.assert_allclose(exp.per_time("signed")[:, ::f], weights / f, atol=1e-9)
    # the read-out is the layer's own alpha: recompute it by hand from the LSTM states
    h = keras.Model(attention_lstm.inputs, attention_lstm.get_layer("lstm").output).predict(
        beats, verbose=0)
    _, alpha = att.additive_attention(h, *attention_lstm.get_layer("attention").get_weights())
    np.testing.assert_allclose(weights, alpha, atol=1e-5)
    np.testing.assert_array_equal(att.attention_readout(attention_lstm, beats, 2).target, 2)
    with pytest.raises(ValueError, match="one beat"):
        att.attention_readout(attention_lstm, beats[0])


def test_attention_readout_needs_an_attention_layer(fcn, beats):
    with pytest.raises(ValueError, match="needs a layer 'attention'"):
        att.attention_readout(fcn, beats)
    with pytest.raises(ValueError, match="needs a layer 'attention'"):
        att.probs_with_weights(fcn, beats)


def test_probs_with_weights(attention_lstm, beats):
    exp = att.attention_readout(attention_lstm, beats)
    probs, weights = exp.extras["probs"], exp.native
    np.testing.assert_allclose(att.probs_with_weights(attention_lstm, beats, weights), probs,
                               atol=1e-5)
    uniform = att.probs_with_weights(attention_lstm, beats, "uniform")
    np.testing.assert_allclose(uniform.sum(axis=1), 1.0, atol=1e-6)
    # uniform attention = mean pooling of the LSTM states, then the logits layer
    h = keras.Model(attention_lstm.inputs, attention_lstm.get_layer("lstm").output).predict(
        beats, verbose=0)
    logits = np.asarray(attention_lstm.get_layer(LOGITS_LAYER)(h.mean(axis=1)))
    np.testing.assert_allclose(uniform, np.asarray(keras.ops.softmax(logits)), atol=1e-5)
    assert not np.allclose(uniform, probs, atol=1e-7)
    with pytest.raises(ValueError, match="uniform"):
        att.probs_with_weights(attention_lstm, beats, "random")
    with pytest.raises(ValueError, match="weights must be"):
        att.probs_with_weights(attention_lstm, beats, weights[:, :10])
    with pytest.raises(ValueError, match="sum to 1"):
        att.probs_with_weights(attention_lstm, beats, 2 * weights)
    nan = weights.copy()
    nan[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        att.probs_with_weights(attention_lstm, beats, nan)


def test_weight_sum_error():
    assert att.weight_sum_error(np.full((3, 4), 0.25)) == pytest.approx(0.0)
    assert att.weight_sum_error(np.array([[0.5, 0.6], [0.5, 0.5]])) == pytest.approx(0.1)
    with pytest.raises(ValueError):
        att.weight_sum_error(np.ones(4))
    with pytest.raises(ValueError, match="finite"):
        att.weight_sum_error(np.array([[np.nan, 1.0]]))


def test_effective_steps():
    w = np.array([[0.5, 0.5, 0, 0], [1, 0, 0, 0], [0.25] * 4])
    np.testing.assert_allclose(att.effective_steps(w), [2.0, 1.0, 4.0])
    with pytest.raises(ValueError):
        att.effective_steps(-w)
    with pytest.raises(ValueError, match="NaN"):
        att.effective_steps(np.array([[np.nan, 1.0]]))
    with pytest.raises(ValueError, match="sum to 1"):
        att.effective_steps(2 * w)


def test_top_k_overlap():
    a = np.array([[5, 4, 3, 2, 1, 0.0]])
    np.testing.assert_allclose(att.top_k_overlap(a, a, 2), [1.0])
    np.testing.assert_allclose(att.top_k_overlap(a, -a, 2), [0.0])
    np.testing.assert_allclose(att.top_k_overlap(a, np.array([[5, 0, 4, 0, 0, 0.0]]), 2), [0.5])
    with pytest.raises(ValueError, match="k must be"):
        att.top_k_overlap(a, a, 7)


def test_summarise_by_class():
    y = np.array([0, 0, 3, 3, 3])
    table = att.summarise_by_class({"rho": np.array([0.1, 0.3, 1.0, np.nan, 0.0])}, y)
    assert list(table.index) == ["N", "V", "all"]
    assert table.loc["N", "rho"] == pytest.approx(0.2)
    assert table.loc["V", "rho"] == pytest.approx(0.5)  # NaN ignored
    assert table.loc["V", "n"] == 3
    mean = att.summarise_by_class({"rho": np.arange(5.0)}, y, stat="mean")
    assert mean.loc["all", "rho"] == pytest.approx(2.0)
    with pytest.raises(ValueError, match="shape"):
        att.summarise_by_class({"rho": np.ones(3)}, y)


def test_tidy_table():
    import pandas as pd

    table = att.tidy_table(pd.DataFrame({"n": [3, 4], "x": [-0.0001, 0.12345]}), 3)
    assert table["n"].dtype.kind == "i"
    assert "-0.0" not in table.to_string()
    assert table["x"].tolist() == [0.0, 0.123]


# ------------------------------------------------------------------ perturbation
def test_top_segment():
    r = np.zeros((2, 256))
    r[0, 40:50] = 1.0  # segment 2 (32..48) and 3 (48..64)
    r[1, 250] = 3.0
    np.testing.assert_array_equal(att.top_segment(r, 16), [2, 15])


def _segment_detector(segment: int, n_segments: int = 16) -> keras.Model:
    """Class 1's logit = 4 x the mean of lead 0 over one segment; other logits 0."""
    inputs = keras.Input((config.WINDOW, 2))
    flat = keras.layers.Flatten()(inputs)
    dense = keras.layers.Dense(len(config.CLASSES), name=LOGITS_LAYER)
    logits = dense(flat)
    w = np.zeros((config.WINDOW * 2, len(config.CLASSES)), dtype=np.float32)
    size = config.WINDOW // n_segments
    w[np.arange(segment * size, (segment + 1) * size) * 2, 1] = 4.0 / size
    dense.set_weights([w, np.zeros(len(config.CLASSES), dtype=np.float32)])
    return keras.Model(inputs, keras.layers.Activation("softmax")(logits))


def test_perturbation_test_finds_the_relevant_segment():
    model = _segment_detector(segment=6)
    X = np.zeros((4, config.WINDOW, 2), dtype=np.float32)
    X[:, 96:112, 0] = 3.0  # a bump exactly in segment 6 of lead 0 -> class 1
    good = np.zeros((4, config.WINDOW))
    good[:, 100] = 1.0  # points at segment 6
    bad = np.zeros((4, config.WINDOW))
    bad[:, 200] = 1.0  # points at segment 12
    table = att.perturbation_test(model, X, 1, {"good": good, "bad": bad}, how="zero")
    assert list(table.columns) == ["p_original", "drop good", "segment good", "drop bad",
                                   "segment bad", "drop random", "segment random"]
    assert np.all(table["segment good"] == 6) and np.all(table["segment bad"] == 12)
    assert np.all(table["drop good"] > 0.5)
    np.testing.assert_allclose(table["drop bad"], 0.0, atol=1e-6)
    again = att.perturbation_test(model, X, np.ones(4, int), {"good": good}, how="zero")
    np.testing.assert_array_equal(again["segment random"], table["segment random"])
    # an Explanation is read through its signed per-time sum; interpolation removes the bump
    exp = Explanation(np.repeat(good[:, :, None], 2, axis=2), np.ones(4), "toy")
    line = att.perturbation_test(model, X, 1, {"good": exp}, how="interpolate")
    assert np.all(line["segment good"] == 6) and np.all(line["drop good"] > 0.5)
    with pytest.raises(ValueError, match="must be finite"):
        att.perturbation_test(model, X, 1, {"good": good[:2]})
    with pytest.raises(ValueError, match=r"\[0, 8\)"):
        att.perturbation_test(model, X, 9, {"good": good})


# ------------------------------------------------------------------ autoencoder
def test_reconstruction_errors_and_encoder_attention(beats):
    keras.utils.set_random_seed(0)
    ae = build_attention_autoencoder(units=8)
    out = att.reconstruction_errors(ae, beats)
    steps = config.WINDOW // 4
    assert out["pooled"].shape == out["reconstruction"].shape == (len(beats), steps, 2)
    assert out["alignment"].shape == (len(beats), steps, steps)
    np.testing.assert_allclose(out["alignment"].sum(axis=2), 1.0, atol=1e-5)
    pooled = beats.reshape(len(beats), steps, 4, 2).mean(axis=2)
    np.testing.assert_allclose(out["pooled"], pooled, atol=1e-5)
    expected = ((out["reconstruction"] - pooled) ** 2).mean(axis=(1, 2))
    np.testing.assert_allclose(out["error"], expected, rtol=1e-4)
    np.testing.assert_allclose(out["error_steps"].mean(axis=1), out["error"], rtol=1e-4)
    enc = att.encoder_attention(out["alignment"])
    assert enc.shape == (len(beats), steps)
    np.testing.assert_allclose(enc.sum(axis=1), 1.0, atol=1e-5)
    with pytest.raises(ValueError):
        att.encoder_attention(enc)


def test_diagonal_mass():
    eye = np.eye(10)[None]
    np.testing.assert_allclose(att.diagonal_mass(eye, 0), [1.0])
    uniform = np.full((1, 10, 10), 0.1)
    # rows 0 and 9 have 2 band cells, the others 3: (2*2 + 8*3) / 10 cells * 0.1
    np.testing.assert_allclose(att.diagonal_mass(uniform, 1), [0.28])
    shifted = np.roll(np.eye(10), 5, axis=1)[None]
    np.testing.assert_allclose(att.diagonal_mass(shifted, 2), [0.0])
    with pytest.raises(ValueError):
        att.diagonal_mass(np.ones((1, 3, 4)))


def test_detection_table():
    y = np.array([0, 0, 0, 0, 3, 3, 4, 4])
    errors = np.array([0.1, 0.2, 0.3, 0.4, 1.0, 2.0, 0.15, 0.35])
    table = att.detection_table(errors, y, threshold=0.35)
    assert list(table.index) == ["N", "V", "A"]
    assert np.isnan(table.loc["N", "AUC vs N"])
    assert table.loc["N", "flagged"] == pytest.approx(0.25)
    assert table.loc["V", "AUC vs N"] == pytest.approx(1.0)
    assert table.loc["A", "AUC vs N"] == pytest.approx(0.5)
    assert table.loc["V", "flagged"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="normal class"):
        att.detection_table(errors[4:], y[4:], 0.3)


def test_step_time_and_plot_alignment():
    t = att.step_time(128)
    assert len(t) == 128
    # step i covers samples 2i, 2i+1; the R peak (sample 112) lies in step 56
    assert t[56] == pytest.approx(0.5 / config.BEAT_FS)
    np.testing.assert_allclose(np.diff(t), 2 / config.BEAT_FS)
    # pooling by 4: step 28 covers samples 112..115, centre 113.5
    assert att.step_time(64)[28] == pytest.approx(1.5 / config.BEAT_FS)
    ax = att.plot_alignment(np.eye(64) * 0.5 + 0.5 / 64, title="test")
    assert ax.get_title() == "test"
    with pytest.raises(ValueError):
        att.plot_alignment(np.ones(4))
    with pytest.raises(ValueError):
        att.step_time(3)


def test_plot_relevance_lines(beats):
    ax = att.plot_relevance_lines(beats[0], {"a": np.arange(256.0), "b": np.ones(256)},
                                  title="beat")
    assert ax.get_title() == "beat"
    lines = ax.figure.axes[-1].get_lines()
    assert [ln.get_label() for ln in lines] == ["a", "b"]
    assert np.max(lines[0].get_ydata()) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="shape"):
        att.plot_relevance_lines(beats[0], {"a": np.ones(10)})
