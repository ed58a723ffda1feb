"""Tests of utils.assess.evaluate on tiny Keras models whose right answer is known.

Where Quantus 0.6.0 can run a metric, its result pins ours (those tests skip when quantus is not
installed: it is an optional test dependency, see the module docstring of utils.assess.evaluate).
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from utils.core import config
from utils.assess import evaluate as ev
from utils.core.explain import Explanation, score_model
from utils.core.segments import segment_mask

WINDOW, LEADS, N_SEG = config.WINDOW, 2, 16
N_FEAT = LEADS * N_SEG


# ------------------------------------------------------------------------------------------------
# Toy models and explainers
# ------------------------------------------------------------------------------------------------
def linear_model(weights: np.ndarray):
    """logits = flatten(x) @ W (no bias), then softmax; ``weights`` (window, leads, classes)."""
    import keras

    inp = keras.Input((WINDOW, LEADS), name="beat")
    flat = keras.layers.Flatten(name="flat")(inp)
    logits = keras.layers.Dense(weights.shape[-1], use_bias=False, name="logits")(flat)
    probs = keras.layers.Activation("softmax", name="probs")(logits)
    model = keras.Model(inp, probs)
    model.get_layer("logits").set_weights([weights.reshape(-1, weights.shape[-1])])
    return model


def conv_model(seed: int = 0, classes: int = 3):
    """Conv1D -> ReLU -> Conv1D -> GAP -> logits -> softmax (random weights, fixed seed)."""
    import keras

    keras.utils.set_random_seed(seed)
    inp = keras.Input((WINDOW, LEADS), name="beat")
    x = keras.layers.Conv1D(4, 7, padding="same", activation="relu", name="conv1")(inp)
    x = keras.layers.Conv1D(4, 7, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling1D(name="gap")(x)
    logits = keras.layers.Dense(classes, name="logits")(x)
    return keras.Model(inp, keras.layers.Activation("softmax", name="probs")(logits))


def gradient(model, X, targets, **_):
    """Plain gradient of the target logit (saliency, signed)."""
    import tensorflow as tf

    net = score_model(model, "logits")
    x = tf.convert_to_tensor(np.asarray(X, dtype=np.float32))
    t = np.broadcast_to(np.asarray(targets), (len(X),))
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = tf.gather(net(x), t.astype(np.int32), axis=1, batch_dims=1)
    return Explanation(tape.gradient(y, x).numpy(), t, "gradient")


def input_map(model, X, targets, **_):
    """|x|: an 'explanation' that ignores the model (must fail the randomisation test)."""
    return Explanation(np.abs(np.asarray(X, dtype=np.float64)),
                       np.broadcast_to(np.asarray(targets), (len(X),)), "input")


def noisy(model, X, targets, seed: int = 0, **_):
    """A stochastic 'explainer': random maps drawn with ``seed``."""
    rng = np.random.default_rng(seed)
    return Explanation(rng.normal(size=np.shape(X)),
                       np.broadcast_to(np.asarray(targets), (len(X),)), "noise")


@pytest.fixture(scope="module")
def beats():
    return np.random.default_rng(0).normal(size=(6, WINDOW, LEADS)).astype(np.float32)


@pytest.fixture(scope="module")
def two_class_linear():
    """Linear 2-class model: class 0 gets random positive and negative weights."""
    w = np.zeros((WINDOW, LEADS, 2))
    w[..., 0] = np.random.default_rng(1).normal(size=(WINDOW, LEADS)) * 0.05
    return linear_model(w), w


def perfect(weights):
    """The exact contribution of each sample to logit0 - logit1 (zero baseline)."""
    def explain(model, X, targets, **_):
        t = np.broadcast_to(np.asarray(targets), (len(X),))
        contrib = np.asarray(X, dtype=np.float64) * (weights[..., 0] - weights[..., 1])
        return Explanation(np.where((t == 0)[:, None, None], contrib, -contrib), t, "perfect")
    return explain


# ------------------------------------------------------------------------------------------------
# Sanity: cascading randomisation
# ------------------------------------------------------------------------------------------------
def test_weighted_layers_top_down():
    assert ev.weighted_layers(conv_model()) == ["logits", "conv2", "conv1"]


def test_randomisation_leaves_the_model_and_is_reproducible(beats):
    model = conv_model()
    before = [w.copy() for w in model.get_weights()]
    runs = []
    for _ in range(2):
        runs.append([[w.copy() for w in m.get_weights()]
                     for _, m in ev.cascading_randomisation(model, seed=5)])
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    for step_a, step_b in zip(*runs):
        assert all(np.array_equal(a, b) for a, b in zip(step_a, step_b))
    # step k changes exactly the top k layers: logits kernel first, conv1 kernel last
    first, last = runs[0][0], runs[0][-1]
    assert np.array_equal(first[0], before[0])                    # conv1 kernel kept at step 1
    assert not np.array_equal(first[4], before[4])                # logits kernel randomised
    assert not np.array_equal(last[0], before[0])                 # conv1 kernel at the end
    assert not np.array_equal(last[4], before[4])                 # ... logits still random
    # independent order: only the named layer is randomised at each step
    steps = [(name, [w.copy() for w in m.get_weights()]) for name, m in
             ev.cascading_randomisation(model, seed=5, order="independent")]
    assert steps[-1][0] == "conv1"
    assert np.array_equal(steps[-1][1][4], before[4]) and not np.array_equal(steps[-1][1][0],
                                                                                before[0])
    with pytest.raises(ValueError):
        next(ev.cascading_randomisation(model, mode="shuffle"))


def test_randomised_linear_model_gradient_decorrelates(beats):
    """The gradient of a linear model is its weight column: after re-initialising the only
    layer it is an independent draw, so the rank correlation falls from 1 to about 0."""
    w = np.random.default_rng(2).normal(size=(WINDOW, LEADS, 3))
    model = linear_model(w)
    table = ev.model_randomisation(gradient, model, beats, 1, seed=0)
    curve = ev.randomisation_curve(table, "spearman")
    assert list(curve.index) == ["original", "logits"]
    assert curve["original"] == pytest.approx(1.0)
    assert abs(curve["logits"]) < 0.2


def test_randomised_conv_model_decorrelates_but_input_map_does_not(beats):
    model = conv_model()
    # (seed 0 would re-create the untrained toy model itself: it was built with seed 0)
    grad = ev.model_randomisation(gradient, model, beats, 0, seed=11)
    curve = ev.randomisation_curve(grad, "spearman_abs")
    assert list(curve.index) == ["original", "logits", "conv2", "conv1"]
    assert curve.iloc[0] == pytest.approx(1.0)
    assert curve.iloc[-1] < 0.5
    # a map that ignores the model passes through the randomisation unchanged (fails the check)
    flat = ev.randomisation_curve(ev.model_randomisation(input_map, model, beats, 0),
                                  "spearman_abs")
    assert np.allclose(flat.to_numpy(), 1.0)


def test_independent_permute_matches_quantus_mprt(beats):
    """Quantus 0.6.0's top_down MPRT starts every step from a re-initialised clone (its Keras
    generator never restores the weights), so the pin is its 'independent' order, which does;
    our cascading step 1 (top layer only) must equal its first layer too."""
    quantus = pytest.importorskip("quantus")
    model = conv_model(seed=3)
    y = np.argmax(model.predict(beats, verbose=0), axis=1)

    def explain_func(model, inputs, targets, **_):
        # Quantus 0.6.0 hands a Keras model channel-last beats when it wraps it (the original)
        # and channel-first ones (n, leads, window) for its randomised clones, and checks the
        # map against the layout it passed: answer in the layout received.
        first = inputs.shape[1] == LEADS
        x = np.transpose(inputs, (0, 2, 1)) if first else inputs
        a = gradient(model, x, targets).values
        return np.transpose(a, (0, 2, 1)) if first else a

    # With a_batch=None Quantus would compare the channel-last original map with channel-first
    # randomised maps, flattened differently (scores near 0 whatever the explainer): hand it
    # the original map channel-first, the layout of the randomised ones.
    a_batch = np.transpose(gradient(model, beats, y).values, (0, 2, 1))
    metric = quantus.MPRT(layer_order="independent", seed=7, abs=True, normalise=False,
                          similarity_func=quantus.similarity_func.correlation_spearman,
                          disable_warnings=True, display_progressbar=False)
    scores = metric(model=model, x_batch=beats, y_batch=y, a_batch=a_batch, channel_first=False,
                    explain_func=explain_func, softmax=True)
    ours = ev.model_randomisation(gradient, model, beats, y, seed=7, mode="permute",
                                  order="independent")
    assert scores["logits"] and np.nanmax(np.abs(scores["logits"])) > 0.3   # not all noise
    for layer in ("logits", "conv2", "conv1"):
        mine = ours.loc[ours["layer"] == layer, "spearman_abs"].to_numpy()
        np.testing.assert_allclose(mine, scores[layer], atol=1e-6)
    cascade = ev.model_randomisation(gradient, model, beats, y, seed=7, mode="permute")
    np.testing.assert_allclose(cascade.loc[cascade["layer"] == "logits", "spearman_abs"],
                               scores["logits"], atol=1e-6)


# ------------------------------------------------------------------------------------------------
# Faithfulness
# ------------------------------------------------------------------------------------------------
@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2 ** 16), st.floats(0.05, 0.9))
def test_road_imputation_keeps_kept_samples_and_interpolates(seed, p):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(2, 40, 2))
    removed = rng.random(X.shape) < p
    out = ev.noisy_linear_imputation(X, removed, noise=0.0)
    np.testing.assert_array_equal(out[~removed], X[~removed])
    grid = np.arange(X.shape[1])
    for i in range(2):
        for lead in range(2):
            gone, kept = removed[i, :, lead], ~removed[i, :, lead]
            for s in grid[gone]:
                if not kept.any():
                    assert out[i, s, lead] == 0.0
                    continue
                left, right = grid[kept & (grid < s)], grid[kept & (grid > s)]
                a = X[i, left[-1], lead] if len(left) else X[i, right[0], lead]
                b = X[i, right[0], lead] if len(right) else X[i, left[-1], lead]
                assert min(a, b) - 1e-12 <= out[i, s, lead] <= max(a, b) + 1e-12
    noisy_out = ev.noisy_linear_imputation(X, removed, noise=0.5, seed=1)
    np.testing.assert_array_equal(noisy_out[~removed], X[~removed])
    if removed.sum() > 5:
        assert not np.allclose(noisy_out[removed], out[removed])


def test_road_imputation_matches_quantus():
    pytest.importorskip("quantus")
    from quantus.functions.perturb_func import noisy_linear_imputation as q_impute

    rng = np.random.default_rng(3)
    X = rng.normal(size=(1, 64, 2))
    removed = np.zeros_like(X, dtype=bool)
    removed[0, 0:5, 0] = removed[0, 20:31, 0] = removed[0, 60:, 0] = True
    removed[0, 10:40, 1] = True
    ours = ev.noisy_linear_imputation(X, removed, noise=0.0)
    # Quantus works on channel-first images (channels, height, width): a beat is (leads, 1, time)
    arr = np.transpose(X[0], (1, 0))[:, None, :]
    idx = np.flatnonzero(np.transpose(removed[0], (1, 0)).reshape(LEADS, -1)[0])
    # its indices address one channel's (height*width) grid; impute each lead separately
    theirs = np.empty_like(arr)
    for lead in range(LEADS):
        idx = np.flatnonzero(removed[0, :, lead])
        theirs[lead] = q_impute(arr[lead:lead + 1], idx, noise=0.0)[0]
    np.testing.assert_allclose(ours[0], np.transpose(theirs[:, 0, :], (1, 0)), atol=1e-9)


def test_flat_fill():
    X = np.ones((1, 8, 2))
    removed = np.zeros_like(X, dtype=bool)
    removed[0, 2:4, 1] = True
    out = ev.flat_fill(X, removed)
    assert out[removed].tolist() == [0.0, 0.0] and np.all(out[~removed] == 1)


def test_segment_order_most_relevant_first():
    values = np.zeros((1, WINDOW, LEADS))
    mask = segment_mask(WINDOW, N_SEG, LEADS)
    values[0][mask[20]] = 3.0
    values[0][mask[5]] = 2.0
    values[0][mask[7]] = -4.0
    order = ev.segment_order(values)[0]
    assert order[:2].tolist() == [20, 5] and order[-1] == 7
    assert ev.segment_order(values, rank_by="abs")[0][0] == 7
    assert sorted(order.tolist()) == list(range(N_FEAT))


@pytest.mark.parametrize("imputation", ev.IMPUTATIONS)
def test_ignored_segment_has_no_deletion_effect(beats, imputation):
    """A model whose weights are zero on segment 9 of lead 1 (feature 25) cannot see it:
    removing it first leaves the score unchanged; removing a used segment changes it."""
    ignored = N_SEG + 9
    w = np.random.default_rng(4).normal(size=(WINDOW, LEADS, 3)) * 0.1
    w[segment_mask(WINDOW, N_SEG, LEADS)[ignored]] = 0.0
    model = linear_model(w)
    order = np.tile(np.arange(N_FEAT), (len(beats), 1))
    order[:, [0, ignored]] = order[:, [ignored, 0]]
    for out in ("probs", "logits"):
        curves = ev.perturbation_curves(model, beats, 2, order, imputation=imputation,
                                        output=out)
        assert curves.shape == (len(beats), N_FEAT + 1)
        np.testing.assert_allclose(curves[:, 1], curves[:, 0], rtol=1e-6, atol=1e-6)
        assert np.all(np.abs(curves[:, 2] - curves[:, 1]) > 1e-4)   # feature 0 is used


def test_perturbation_curve_ends(beats, two_class_linear):
    """Deletion starts at the beat's score; insertion ends there; both meet the fully removed
    beat at the other end (zero fill: logit 0)."""
    model, _ = two_class_linear
    order = ev.random_orders(len(beats), N_FEAT, 1)[0]
    full = model.predict(beats, verbose=0)[:, 0]
    dele = ev.perturbation_curves(model, beats, 0, order, mode="deletion", imputation="zero")
    ins = ev.perturbation_curves(model, beats, 0, order, mode="insertion", imputation="zero")
    np.testing.assert_allclose(dele[:, 0], full, rtol=1e-5)
    np.testing.assert_allclose(ins[:, -1], full, rtol=1e-5)
    np.testing.assert_allclose(dele[:, -1], 0.5, atol=1e-6)
    np.testing.assert_allclose(ins[:, 0], 0.5, atol=1e-6)


def test_curve_area():
    assert ev.curve_area(np.ones((1, 33)))[0] == pytest.approx(1.0)
    assert ev.curve_area(np.linspace(0, 1, 33)[None])[0] == pytest.approx(0.5)


def test_perfect_explainer_beats_random(beats, two_class_linear):
    """For a linear model with zero fill, the exact contributions give the best possible
    insertion (and deletion) order: better than random on every beat."""
    model, w = two_class_linear
    exp = perfect(w)(model, beats, 0)
    table = ev.faithfulness(model, beats, 0, exp, imputations=("zero",), n_random=5)
    auc = table.pivot_table(index=["mode", "beat"], columns="order", values="auc")
    assert np.all(auc.loc["insertion", "explainer"] > auc.loc["insertion", "random"])
    assert np.all(auc.loc["deletion", "explainer"] < auc.loc["deletion", "random"])
    # an anti-explainer (the sign flipped) is worse than random
    flipped = ev.faithfulness(model, beats, 0, -exp.values, imputations=("zero",), n_random=0)
    ins = flipped[(flipped["mode"] == "insertion")]["auc"].to_numpy()
    assert np.all(ins < auc.loc["insertion", "random"].to_numpy())


def test_faithfulness_with_road_and_curves(beats, two_class_linear):
    model, w = two_class_linear
    table, curves = ev.faithfulness(model, beats, 0, perfect(w)(model, beats, 0), n_random=2,
                                    with_curves=True)
    assert set(table["imputation"]) == set(ev.IMPUTATIONS)
    assert set(table["order"]) == {"explainer", "random"}
    assert len(table) == 2 * 2 * 2 * len(beats)
    assert curves.groupby(["imputation", "mode", "order"]).size().eq(N_FEAT + 1).all()
    road = table[(table["imputation"] == "road") & (table["mode"] == "insertion")]
    med = road.groupby("order")["auc"].median()
    assert med["explainer"] > med["random"]


def test_faithfulness_runs_on_an_lstm(beats):
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((WINDOW, LEADS))
    h = keras.layers.LSTM(4, return_sequences=True, name="lstm")(
        keras.layers.AveragePooling1D(8)(inp))
    logits = keras.layers.Dense(3, name="logits")(keras.layers.GlobalAveragePooling1D()(h))
    model = keras.Model(inp, keras.layers.Activation("softmax", name="probs")(logits))
    table = ev.faithfulness(model, beats[:2], 1, gradient(model, beats[:2], 1), n_random=1)
    assert np.all(np.isfinite(table["auc"])) and np.all((table["auc"] >= 0)
                                                         & (table["auc"] <= 1))


# ------------------------------------------------------------------------------------------------
# Stability
# ------------------------------------------------------------------------------------------------
def test_deterministic_method_agrees_with_itself(beats):
    model = conv_model()
    agree = ev.seed_agreement(gradient, model, beats, 0, seeds=(1, 2, 3))
    assert len(agree) == 3 * len(beats)
    np.testing.assert_allclose(agree["spearman"], 1.0)
    np.testing.assert_array_equal(agree["top_segment"], 1.0)


def test_stochastic_method_does_not(beats):
    agree = ev.seed_agreement(noisy, None, beats, 0, seeds=(1, 2))
    assert agree["spearman"].abs().median() < 0.5
    assert agree["top_segment"].mean() < 0.5
    same = ev.seed_agreement(noisy, None, beats, 0, seeds=(1, 2), seed_arg=None)
    np.testing.assert_allclose(same["spearman"], 1.0)      # seed not passed: same draws


def test_method_agreement(beats):
    maps = {"a": input_map(None, beats, 0), "b": input_map(None, beats, 0).values * 2,
            "c": noisy(None, beats, 0, seed=3)}
    table = ev.method_agreement(maps)
    pairs = table.groupby(["method_a", "method_b"])["spearman"].median()
    assert pairs[("a", "b")] == pytest.approx(1.0)
    assert abs(pairs[("a", "c")]) < 0.5


def test_max_sensitivity(beats):
    model = conv_model()

    def constant(model, X, targets, **_):
        return Explanation(np.ones(np.shape(X)), np.broadcast_to(targets, (len(X),)), "c")

    def identity(model, X, targets, **_):
        return Explanation(np.asarray(X, dtype=np.float64), np.broadcast_to(targets, (len(X),)),
                           "x")

    assert np.all(ev.max_sensitivity(constant, model, beats, 0, n_draws=3) == 0)
    # Phi(x) = x: ||d|| / ||x|| with d ~ U[-r s, r s] concentrates at r / sqrt(3)
    sens = ev.max_sensitivity(identity, model, beats, 0, radius=0.1, n_draws=5)
    np.testing.assert_allclose(sens, 0.1 / np.sqrt(3), rtol=0.1)
    assert np.all(ev.max_sensitivity(gradient, model, beats, 0, radius=0.1, n_draws=3) > 0)


def test_max_sensitivity_matches_quantus_definition(beats):
    """Same definition as Quantus's MaxSensitivity (uniform noise, relative Frobenius norm)
    for Phi(x) = x, where both concentrate at r / sqrt(3) for unit-std beats."""
    quantus = pytest.importorskip("quantus")
    import keras

    # Quantus 0.6.0 mixes layouts for channel-last Keras models (explains channel-last beats,
    # compares with channel-first ones): give it a channel-first model so all is one layout.
    inner = conv_model()
    inp = keras.Input((LEADS, WINDOW))
    model = keras.Model(inp, inner(keras.layers.Permute((2, 1))(inp)))

    def identity(model, inputs, targets, **_):
        return np.asarray(inputs, dtype=np.float64)

    X = (beats - beats.mean(axis=1, keepdims=True)) / beats.std(axis=1, keepdims=True)
    metric = quantus.MaxSensitivity(nr_samples=5, lower_bound=0.1, normalise=False, abs=False,
                                    return_nan_when_prediction_changes=False,
                                    disable_warnings=True, display_progressbar=False)
    y = np.zeros(len(X), dtype=int)
    theirs = np.asarray(metric(model=model, x_batch=np.transpose(X, (0, 2, 1)), y_batch=y,
                               a_batch=None, channel_first=True, explain_func=identity,
                               softmax=True))
    ours = ev.max_sensitivity(lambda m, x, t, **_: Explanation(np.asarray(x, float),
                                                                 np.broadcast_to(t, (len(x),)),
                                                                 "x"),
                              inner, X, 0, radius=0.1, n_draws=5)
    np.testing.assert_allclose(theirs, 0.1 / np.sqrt(3), rtol=0.05)
    np.testing.assert_allclose(ours, theirs, rtol=0.05)


# ------------------------------------------------------------------------------------------------
# Plausibility
# ------------------------------------------------------------------------------------------------
def test_wave_mass_known_answers():
    values = np.zeros((3, WINDOW, LEADS))
    values[0, 100:124] = 1.0                  # all mass in the 'qrs' window
    values[1] = -1.0                          # spread evenly: share = chance
    values[2, 0:10, 1] = 5.0                  # all outside
    windows = {"qrs": (100, 124), "st": (124, 200)}
    mass = ev.wave_mass(values, windows).set_index(["beat", "window"])
    assert mass.loc[(0, "qrs"), "share"] == pytest.approx(1.0)
    assert mass.loc[(0, "qrs"), "lift"] == pytest.approx(WINDOW / 24)
    assert mass.loc[(1, "st"), "share"] == pytest.approx(76 / WINDOW)
    assert mass.loc[(1, "st"), "lift"] == pytest.approx(1.0)
    assert mass.loc[(2, "qrs"), "share"] == 0.0
    # positive part only: the negative map of beat 1 has no positive evidence -> NaN
    pos = ev.wave_mass(values, windows, mode="positive").set_index(["beat", "window"])
    assert np.isnan(pos.loc[(1, "qrs"), "share"])


def test_wave_mass_per_beat_windows_and_class_table():
    values = np.zeros((4, WINDOW, LEADS))
    values[:, 50:60] = 1.0
    spike = np.array([[50, 60], [0, 10], [np.nan, np.nan], [45, 65]])
    table = ev.wave_mass_table(values, np.array([7, 7, 0, 0]), {"spike": spike})
    assert table.loc[("/", "spike"), "share"] == pytest.approx(0.5)
    assert table.loc[("/", "spike"), "n"] == 2
    assert table.loc[("N", "spike"), "n"] == 1          # the NaN window is skipped
    assert table.loc[("N", "spike"), "share"] == pytest.approx(1.0)
    with pytest.raises(ValueError):
        ev.wave_mass(values, {"bad": (10, 5)})


# ------------------------------------------------------------------------------------------------
# One table
# ------------------------------------------------------------------------------------------------
def test_evaluate_methods_table(beats, two_class_linear):
    model, w = two_class_linear
    tidy = ev.evaluate_methods({"perfect": perfect(w), "noise": noisy}, model, beats, 0,
                               windows={"qrs": (100, 124)}, stochastic={"noise": "seed"},
                               randomise=("perfect",), n_random=2, sensitivity_draws=2)
    table = ev.metric_table(tidy)
    assert list(table.index) == ["random", "perfect", "noise"]
    for metric in ("deletion_road", "insertion_road", "deletion_zero", "insertion_zero"):
        assert metric in table.columns
    assert table.loc["perfect", "insertion_zero"] > table.loc["random", "insertion_zero"]
    assert table.loc["perfect", "insertion_zero"] > table.loc["noise", "insertion_zero"]
    assert table.loc["noise", "seed_spearman"] < 0.5
    assert table.loc["perfect", "max_sensitivity"] == pytest.approx(0.05 / np.sqrt(3), rel=0.2)
    # 'perfect' ignores the model (exact for the original weights only): no decorrelation
    assert table.loc["perfect", "mprt_last_spearman_abs"] == pytest.approx(1.0)
    assert np.isnan(table.loc["random", "max_sensitivity"])
    assert "mass_lift_qrs" in table.columns


def test_explain_values_checks_contract(beats):
    with pytest.raises(TypeError):
        ev.explain_values(lambda m, X, t: np.zeros_like(X), None, beats, 0)
