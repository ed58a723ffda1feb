"""Tests of utils.explainers.lrp: the LRP rules on networks whose answer is known."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from utils.explainers.lrp import RULES, _linear_relevance, _Step, invariance_example, lrp
from utils.explainers.saliency import gradient_x_input


def _zero_biases(model) -> None:
    """Set every bias / BN shift to zero (BN keeps a non-trivial scale, so folding matters)."""
    rng = np.random.default_rng(3)
    for layer in model.layers:
        w = layer.get_weights()
        if not w:
            continue
        if type(layer).__name__ == "BatchNormalization":
            gamma, beta, mean, var = w
            layer.set_weights([gamma * rng.uniform(0.5, 1.5, gamma.shape), 0 * beta, 0 * mean,
                               var + rng.uniform(0.1, 1, var.shape)])
        elif len(w) == 2:
            layer.set_weights([w[0], 0 * w[1]])


def _random_bn(model, seed: int = 1) -> None:
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if type(layer).__name__ == "BatchNormalization":
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([gamma * rng.uniform(-1.5, 1.5, gamma.shape), beta + 0.1,
                               rng.normal(size=mean.shape) * 0.1,
                               var + rng.uniform(0.1, 1, var.shape)])
        elif type(layer).__name__ in ("Conv1D", "Dense"):
            w, b = layer.get_weights()
            layer.set_weights([w, rng.normal(size=b.shape).astype(np.float32) * 0.1])


@pytest.fixture(scope="module")
def fcn():
    import keras

    from utils.models.networks import build_fcn

    keras.utils.set_random_seed(0)
    model = build_fcn(filters=(4, 4, 8), kernels=(5, 5, 5), dilations=(1, 2, 4),
                      input_shape=(64, 2))
    _random_bn(model)
    return model


@pytest.fixture(scope="module")
def fcn_no_bias():
    import keras

    from utils.models.networks import build_fcn

    keras.utils.set_random_seed(1)
    model = build_fcn(filters=(4, 4, 8), kernels=(5, 5, 5), dilations=(1, 2, 4),
                      input_shape=(64, 2))
    _zero_biases(model)
    return model


def _multimodal(bias: bool):
    """Morphology (n, 32, 2) through Conv1D-BN-ReLU-AvgPool-GAP, rhythm features (n, 3)
    through Normalization and BN, concatenated, Dense-ReLU, Dense logits (the layout of the
    multimodal model)."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(2)
    morph = keras.Input((32, 2), name="morphology")
    rhythm = keras.Input((3,), name="rhythm")
    x = layers.Conv1D(6, 5, padding="same", dilation_rate=2, name="m_conv")(morph)
    x = layers.BatchNormalization(name="m_bn")(x)
    x = layers.Activation("relu", name="m_relu")(x)
    x = layers.AveragePooling1D(2, name="m_pool")(x)
    x = layers.Conv1D(6, 3, padding="valid", activation="relu", name="m_conv2")(x)
    x = layers.GlobalAveragePooling1D(name="gap")(x)
    norm = layers.Normalization(name="r_norm")
    sample = np.random.default_rng(0).normal(1.0, 2.0, size=(50, 3)).astype(np.float32)
    if not bias:   # a symmetric sample has mean 0: the Normalization then has no shift
        sample = np.concatenate([sample, -sample])
    norm.adapt(sample)
    r = layers.BatchNormalization(name="r_bn")(norm(rhythm))
    h = layers.Concatenate(name="concat")([x, r])
    h = layers.Dense(5, activation="relu", name="hidden")(h)
    h = layers.Dropout(0.3, name="drop")(h)
    logits = layers.Dense(3, name="logits")(h)
    probs = layers.Activation("softmax", name="probs")(logits)
    model = keras.Model([morph, rhythm], probs)
    if bias:
        _random_bn(model)
    else:
        _zero_biases(model)
    return model


@pytest.fixture(scope="module")
def beats():
    return np.random.default_rng(0).normal(size=(5, 64, 2)).astype(np.float32)


def _logits(model, X):
    from utils.core.explain import predict_scores

    return predict_scores(model, X)


def test_forward_of_the_folded_graph_matches_the_model(fcn, beats):
    e = lrp(fcn, beats, [0, 1, 2, 3, 4], rule="zero")
    expected = _logits(fcn, beats)[np.arange(5), [0, 1, 2, 3, 4]]
    np.testing.assert_allclose(e.score, expected, rtol=1e-4, atol=1e-5)
    assert e.values.shape == beats.shape and e.method == "lrp_zero"


@pytest.mark.parametrize("rule", ["zero", "gamma"])
def test_exact_conservation_without_biases(fcn_no_bias, beats, rule):
    """No bias and no epsilon: nothing absorbs relevance, so sum(R) = logit exactly."""
    e = lrp(fcn_no_bias, beats, 2, rule=rule, gamma=0.5)
    assert np.abs(e.score).min() > 1e-3   # a non-trivial logit is explained
    np.testing.assert_allclose(e.delta, 0.0, atol=1e-9 * np.abs(e.score).max())


def test_epsilon_absorbs_relevance_and_more_with_larger_epsilon(fcn_no_bias, beats):
    gaps = [np.abs(lrp(fcn_no_bias, beats, 2, rule="epsilon", epsilon=eps).delta).mean()
            for eps in (0.0, 0.1, 1.0)]
    assert gaps[0] < 1e-9 < gaps[1] < gaps[2]


def test_biases_break_conservation(fcn, beats):
    """With biases (folded BN shifts) LRP-0 loses what the biases take: delta is not zero."""
    e = lrp(fcn, beats, 1, rule="zero")
    assert np.abs(e.delta).max() > 1e-3


@pytest.mark.parametrize("net", ["fcn_no_bias", "fcn"])
def test_lrp0_equals_gradient_x_input(net, beats, request):
    """On a ReLU network LRP-0 is gradient x input (Ancona et al. 2018), without biases and -
    since R_k / z_k = d logit / d z_k holds layer by layer - with them too; only conservation
    differs (delta = 0 without biases, not with them)."""
    model = request.getfixturevalue(net)
    targets = np.array([0, 3, 5, 7, 1])
    e = lrp(model, beats, targets, rule="zero")
    b = gradient_x_input(model, beats, targets).values
    assert np.abs(b).max() > 1e-5
    np.testing.assert_allclose(e.values, b, atol=1e-5 * np.abs(b).max())
    assert (np.abs(e.delta).max() > 1e-3) == (net == "fcn")


def test_gamma_zero_equals_lrp0(fcn, beats):
    np.testing.assert_allclose(lrp(fcn, beats, 4, rule="gamma", gamma=0.0).values,
                               lrp(fcn, beats, 4, rule="zero").values, atol=1e-12)
    np.testing.assert_allclose(lrp(fcn, beats, 4, rule="epsilon", epsilon=0.0).values,
                               lrp(fcn, beats, 4, rule="zero").values, atol=1e-12)


def test_gamma_changes_the_map(fcn, beats):
    a = lrp(fcn, beats, 4, rule="gamma", gamma=1.0).values
    b = lrp(fcn, beats, 4, rule="zero").values
    assert np.abs(a - b).max() > 1e-3 * np.abs(b).max()


def _hand_net():
    """x (2 samples, 1 lead) -> Conv1D(1, kernel 2, valid; w = [1, 0.5], b = 0) -> ReLU -> GAP
    -> Dense(1; v = 2, b = 1). For x = [2, -1]: z = 1.5, logit = 4."""
    import keras
    from keras import layers

    inputs = keras.Input((2, 1))
    x = layers.Conv1D(1, 2, padding="valid", activation="relu", name="c")(inputs)
    x = layers.GlobalAveragePooling1D()(x)
    logits = layers.Dense(1, name="logits")(x)
    model = keras.Model(inputs, logits)
    model.get_layer("c").set_weights([np.array([[[1.0]], [[0.5]]], np.float32),
                                      np.zeros(1, np.float32)])
    model.get_layer("logits").set_weights([np.array([[2.0]], np.float32),
                                           np.ones(1, np.float32)])
    return model


@pytest.mark.parametrize("rule, options, expected", [
    # LRP-0: Dense gives 1.5*2/4*4 = 3 (the bias keeps 1); GAP passes 3; conv: 2/1.5*3, -0.5/1.5*3
    ("zero", {}, [4.0, -1.0]),
    # eps 0.5: Dense 3/4.5*4 = 8/3; GAP 1.5/2*8/3 = 2; conv 2/2*2, -0.5/2*2
    ("epsilon", {"epsilon": 0.5}, [2.0, -0.5]),
    # gamma 1: Dense (3+3)/(4+3+1)*4 = 3; GAP 3; conv (2+2)/(1.5+2)*3, (-0.5+0)/3.5*3
    ("gamma", {"gamma": 1.0}, [12 / 3.5, -1.5 / 3.5]),
])
def test_tiny_network_by_hand(rule, options, expected):
    model = _hand_net()
    X = np.array([[[2.0], [-1.0]], [[1.0], [-4.0]]], np.float32)   # beat 2: dead ReLU
    e = lrp(model, X, 0, rule=rule, **options)
    np.testing.assert_allclose(e.score, [4.0, 1.0], atol=1e-6)
    np.testing.assert_allclose(e.values[0, :, 0], expected, atol=1e-6)
    np.testing.assert_allclose(e.values[1], 0.0, atol=1e-12)       # nothing passes a dead unit
    np.testing.assert_allclose(e.delta, [sum(expected) - 4.0, -1.0], atol=1e-6)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), rule=st.sampled_from(["zero", "epsilon", "gamma"]),
       kind=st.sampled_from(["dense", "conv"]))
def test_layer_conservation_identity(seed, rule, kind):
    """One layer: sum(R_in) = sum_k R_k (z_k - b_k [- gamma b_k^+]) / z_mod_k (what the bias and
    epsilon absorb), for signed inputs and weights."""
    import tensorflow as tf

    from utils.explainers.lrp import _conv_fn, _dense_fn

    rng = np.random.default_rng(seed)
    eps, gamma = {"zero": (0.0, 0.0), "epsilon": (0.3, 0.0), "gamma": (0.0, 0.7)}[rule]
    if kind == "dense":
        a = rng.normal(size=(3, 6))
        k, fn = rng.normal(size=(6, 4)), _dense_fn
    else:
        import keras

        conv = keras.layers.Conv1D(4, 3, padding="same", dilation_rate=2)
        conv.build((None, 10, 2))
        a = rng.normal(size=(3, 10, 2))
        k, fn = rng.normal(size=(3, 2, 4)), _conv_fn(conv)
    b = rng.normal(size=4)
    step = _Step("linear", "t", [0], 1, fn, k, b)
    r = tf.constant(rng.normal(size=fn(tf.constant(a), k).shape))
    out = _linear_relevance(step, tf.constant(a), r, eps, gamma).numpy()
    z = fn(tf.constant(a), k).numpy()
    zp = (fn(tf.constant(np.maximum(a, 0)), np.maximum(k, 0))
          + fn(tf.constant(np.minimum(a, 0)), np.minimum(k, 0))).numpy()
    z_mod = z + b + gamma * (zp + np.maximum(b, 0))
    z_mod = z_mod + eps * np.where(z_mod >= 0, 1, -1)
    expected = (r.numpy() * (z + gamma * zp) / z_mod).reshape(3, -1).sum(axis=1)
    np.testing.assert_allclose(out.reshape(3, -1).sum(axis=1), expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("rule", RULES)
def test_folding_is_the_shared_rule(fcn, beats, rule):
    """LRP of the BN network equals LRP of utils.explainers.integrated_gradients.fold_batchnorm(network)."""
    from utils.explainers.integrated_gradients import fold_batchnorm

    a = lrp(fcn, beats, 3, rule=rule).values
    b = lrp(fold_batchnorm(fcn), beats, 3, rule=rule).values
    np.testing.assert_allclose(a, b, atol=1e-5 * np.abs(a).max())


def test_unfolded_batchnorm_changes_epsilon_not_lrp0(fcn, beats):
    """BN as its own diagonal layer: LRP-0 unchanged (a diagonal layer commutes with the ratio),
    LRP-epsilon changed (epsilon is added once more)."""
    zero = [lrp(fcn, beats, 3, rule="zero", fold_batchnorm=f).values for f in (True, False)]
    np.testing.assert_allclose(zero[0], zero[1], atol=1e-9 * np.abs(zero[0]).max())
    eps = [lrp(fcn, beats, 3, rule="epsilon", fold_batchnorm=f).values for f in (True, False)]
    assert np.abs(eps[0] - eps[1]).max() > 1e-3 * np.abs(eps[0]).max()


def test_multimodal_conservation_and_gradient_x_input():
    import tensorflow as tf

    model = _multimodal(bias=False)
    rng = np.random.default_rng(5)
    Xm = rng.normal(size=(4, 32, 2)).astype(np.float32)
    Xr = rng.normal(size=(4, 3)).astype(np.float32)
    e = lrp(model, [Xm, Xr], [0, 1, 2, 0], rule="zero")
    assert [r.shape for r in e.extras["inputs"]] == [(4, 32, 2), (4, 3)]
    np.testing.assert_allclose(e.values, e.extras["inputs"][0])
    # exact up to the float32 mean of the Normalization layer (~1e-8 instead of 0)
    np.testing.assert_allclose(e.delta, 0.0, atol=1e-6 * np.abs(e.score).max())
    assert np.abs(e.score).max() > 1e-2
    from utils.core.explain import score_model

    xm, xr = tf.constant(Xm), tf.constant(Xr)
    with tf.GradientTape() as tape:
        tape.watch([xm, xr])
        y = tf.gather(score_model(model)([xm, xr]), [0, 1, 2, 0], axis=1, batch_dims=1)
    gm, gr = tape.gradient(y, [xm, xr])
    np.testing.assert_allclose(e.extras["inputs"][0], (gm * xm).numpy(), atol=1e-5)
    np.testing.assert_allclose(e.extras["inputs"][1], (gr * xr).numpy(), atol=1e-5)
    assert np.abs(e.extras["inputs"][1]).max() > 1e-4      # the rhythm input gets relevance


def test_multimodal_with_biases_matches_the_model():
    model = _multimodal(bias=True)
    rng = np.random.default_rng(6)
    X = [rng.normal(size=(3, 32, 2)).astype(np.float32), rng.normal(size=(3, 3)).astype(np.float32)]
    for rule in RULES:
        e = lrp(model, X, 1, rule=rule)
        np.testing.assert_allclose(e.score, _logits(model, X)[:, 1], atol=1e-4)
        total = sum(r.reshape(3, -1).sum(axis=1) for r in e.extras["inputs"])
        np.testing.assert_allclose(e.delta, total - e.score, atol=1e-9)


def test_reads_the_current_weights(beats):
    """No stale cache: after re-randomising a layer the relevance changes (the cascading
    randomisation sanity check depends on this)."""
    import keras

    from utils.models.networks import build_fcn

    keras.utils.set_random_seed(4)
    model = build_fcn(filters=(4, 4, 8), kernels=(5, 5, 5), dilations=(1, 2, 4),
                      input_shape=(64, 2))
    before = lrp(model, beats, 0).values
    w, b = model.get_layer("conv1_conv").get_weights()
    model.get_layer("conv1_conv").set_weights([np.flip(w, axis=0) * 2, b])
    after = lrp(model, beats, 0).values
    assert np.abs(after - before).max() > 1e-3 * np.abs(before).max()


def test_rejects_what_it_cannot_explain(fcn, beats):
    import keras

    from utils.models.networks import build_lstm

    with pytest.raises(ValueError, match="logits"):
        lrp(fcn, beats, 0, output="probs")
    with pytest.raises(ValueError, match="rule"):
        lrp(fcn, beats, 0, rule="alpha")
    with pytest.raises(ValueError, match="shape"):
        lrp(fcn, beats[:, :10], 0)
    with pytest.raises(ValueError, match="targets"):
        lrp(fcn, beats, 9)
    keras.utils.set_random_seed(0)
    with pytest.raises(ValueError, match="LSTM"):
        lrp(build_lstm(units=4), np.zeros((1, 256, 2), np.float32), 0)


def test_invariance_example_fails_for_epsilon_only():
    ex = invariance_example()
    t = ex.table
    assert (t["max |output A - B|"] < 1e-5).all()              # the two networks are equal
    for name in ("gradient_x_input", "integrated_gradients", "lrp_zero"):
        a, b = ex.maps[name]
        np.testing.assert_allclose(a, b, atol=1e-5 * np.abs(a).max())
    a, b = ex.maps["lrp_epsilon"]
    assert t.loc["lrp_epsilon", "relative map difference"] > 0.02
    assert ex.model_a.count_params() < ex.model_b.count_params()
