"""Counterfactual methods (utils.explainers.counterfactual) on toy models whose answer is known.

* A GAP "threshold" model: ``z_1 = w * mean_t x(t, lead 0) + b``, ``z_0 = 0``. Its CAM for
  class 1 is ``w * x(t, lead 0)``, so Native Guide must copy the neighbour's bump, starting
  where the bump starts, and the shortest window that flips the decision follows from
  ``w * c * L / T + b > 0``.
* A linear model ``z_1 = a . x + b``: the L1-closest change that makes class 1 win by ``kappa``
  moves only the samples with the largest weight, by ``(|b| + kappa) / |S|`` each; Wachter's
  proximal gradient must find exactly that.
* A saturating model (zero gradients): the gradient method fails, and says so (invalid).
"""
from __future__ import annotations

import numpy as np
import pytest

from utils.core import config
from utils.explainers.counterfactual import (Counterfactual, best_window, find_neighbours,
                                             nearest_unlike_neighbour, native_guide,
                                             pairwise_distances, wachter, window_lengths)
from utils.assess.counterfactual_metrics import contiguity, proximity, sparsity
from utils.core.config import LOGITS_LAYER
from utils.core.explain import Explanation, predict_scores

W = config.WINDOW


def gap_threshold_model(w: float = 1.0, b: float = -0.6):
    """``z_1 = w * mean_t x(t, lead 0) + b``, ``z_0 = 0`` with the course layer names, so that
    CAM (and Native Guide) run on it: CAM_1(t) = w * x(t, lead 0)."""
    import keras
    from keras import layers

    inputs = keras.Input((W, 2), name="beat")
    x = layers.Conv1D(1, 1, name="conv_last_conv")(inputs)
    x = layers.Activation("linear", name="conv_last")(x)
    g = layers.GlobalAveragePooling1D(name="gap")(x)
    logits = layers.Dense(2, name=LOGITS_LAYER)(g)
    probs = layers.Activation("softmax", name="probs")(logits)
    model = keras.Model(inputs, probs, name="gap_threshold_toy")
    kernel = np.zeros((1, 2, 1), np.float32)
    kernel[0, 0, 0] = 1.0
    model.get_layer("conv_last_conv").set_weights([kernel, np.zeros(1, np.float32)])
    model.get_layer(LOGITS_LAYER).set_weights([np.array([[0.0, w]], np.float32),
                                               np.array([0.0, b], np.float32)])
    return model


def linear_two_class(a: np.ndarray, b: float):
    """``z_1 = a . flatten(x) + b``, ``z_0 = 0``."""
    import keras

    inputs = keras.Input((W, 2), name="beat")
    x = keras.layers.Flatten()(inputs)
    logits = keras.layers.Dense(2, name=LOGITS_LAYER)(x)
    probs = keras.layers.Activation("softmax", name="probs")(logits)
    model = keras.Model(inputs, probs)
    kernel = np.zeros((W * 2, 2), np.float32)
    kernel[:, 1] = a.reshape(-1)
    model.get_layer(LOGITS_LAYER).set_weights([kernel, np.array([0.0, b], np.float32)])
    return model


def bump(c: float, start: int, stop: int) -> np.ndarray:
    beat = np.zeros((W, 2), np.float32)
    beat[start:stop, 0] = c
    return beat


@pytest.fixture(scope="module")
def toy():
    return gap_threshold_model(w=1.0, b=-0.6)


@pytest.fixture(scope="module")
def reference():
    """Class-1 beats (bumps of height 4 and 1) and class-0 beats (flat, noise)."""
    rng = np.random.default_rng(0)
    R = np.stack([bump(4.0, 100, 200), bump(1.0, 0, 256), np.zeros((W, 2), np.float32),
                  rng.normal(0, 0.01, (W, 2)).astype(np.float32)])
    return R, np.array([1, 1, 0, 0])


# ------------------------------------------------------------------------------------ helpers
def test_best_window_and_lengths():
    cam = np.zeros(20)
    cam[5:9] = 1.0
    assert best_window(cam, 4) == 5
    assert best_window(cam, 2) == 5                 # first of the tied windows
    assert best_window(cam, 20) == 0
    with pytest.raises(ValueError):
        best_window(cam, 0)
    assert window_lengths(10, 4).tolist() == [4, 8, 10]
    assert window_lengths(8, 1).tolist() == list(range(1, 9))


def test_pairwise_distances_euclidean_and_dtw():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(3, W, 2))
    R = rng.normal(size=(4, W, 2))
    e = pairwise_distances(X, R, "euclidean")
    assert np.allclose(e, [[np.linalg.norm(x - r) for r in R] for x in X])
    d = pairwise_distances(X, R, "dtw", dtw_window=None)
    assert d.shape == (3, 4) and np.all(d <= e + 1e-9)        # DTW never exceeds the diagonal
    assert np.allclose(pairwise_distances(X, X, "dtw"), pairwise_distances(X, X, "dtw").T)
    assert np.allclose(np.diag(pairwise_distances(X, X, "dtw")), 0)
    # a time shift: DTW sees through it, Euclid does not
    shifted = np.roll(X[:1], 3, axis=1)
    assert (pairwise_distances(X[:1], shifted, "dtw")[0, 0]
            < 0.5 * pairwise_distances(X[:1], shifted, "euclidean")[0, 0])


# ------------------------------------------------------------------------------ Native Guide
@pytest.mark.parametrize("distance", ["euclidean", "dtw"])
def test_native_guide_copies_the_cam_window_the_maths_predicts(toy, reference, distance):
    R, ry = reference
    X = np.zeros((1, W, 2), np.float32)                     # z_1 = b = -0.6: class 0
    assert predict_scores(toy, X).argmax(axis=1)[0] == 0
    # nearest class-1 neighbour: the bump (|x - bump| = 4 sqrt(100) = 40) is farther than the
    # flat 1 (sqrt(256) = 16), so force the bump by offering it alone
    cf = native_guide(toy, X, 1, reference=R[[0, 2, 3]], reference_y=ry[[0, 2, 3]],
                      distance=distance, step=4)
    assert isinstance(cf, Counterfactual) and isinstance(cf, Explanation)
    # flip when w * c * L / T + b > 0  <=>  L > 0.6 * 256 / 4 = 38.4  ->  L = 40 (step 4)
    L = int(np.ceil(0.6 * W / 4.0 + 1e-9))
    L = int(np.ceil(L / 4) * 4)
    assert cf.extras["length"][0] == L == 40
    assert cf.extras["start"][0] == 100                     # where the CAM (the bump) starts
    assert cf.valid.all() and cf.pred_before[0] == 0 and cf.pred_after[0] == 1
    expected = X.copy()
    expected[0, 100:140, 0] = 4.0
    assert np.allclose(cf.counterfactual, expected)
    assert np.allclose(cf.values, expected - X)
    assert np.isclose(cf.scores_after[0, 1], 4.0 * 40 / W - 0.6, atol=1e-5)
    assert sparsity(cf.original, cf.counterfactual)[0] == pytest.approx(40 / (2 * W))
    assert contiguity(cf.original, cf.counterfactual)[0] == 1
    assert cf.options["distance"] == distance and cf.options["step"] == 4


def test_native_guide_step_one_is_the_paper_loop(toy, reference):
    R, ry = reference
    cf = native_guide(toy, np.zeros((1, W, 2), np.float32), 1, reference=R[[0, 2]],
                      reference_y=ry[[0, 2]], step=1)
    assert cf.extras["length"][0] == 39                     # smallest L > 38.4


def test_nearest_unlike_neighbour_is_the_nearest_of_the_target_class(toy, reference):
    R, ry = reference
    X = np.zeros((2, W, 2), np.float32)
    X[1, 100:200, 0] = 3.0
    idx, dist = find_neighbours(toy, X, 1, R, ry)
    assert idx.tolist() == [1, 0]                           # flat 1 (16) vs bump; bump (10)
    assert np.allclose(dist, [16.0, 10.0])
    cf = nearest_unlike_neighbour(toy, X, 1, reference=R, reference_y=ry)
    assert np.allclose(cf.counterfactual, R[[1, 0]])
    assert cf.valid.all() and cf.kind == "model-agnostic"
    # the neighbour of class 0 must be a class-0 reference beat
    assert set(find_neighbours(toy, X, 0, R, ry)[0]) <= {2, 3}


def test_neighbours_must_be_predicted_as_the_target(toy):
    R = np.stack([bump(0.1, 0, 10)])                        # labelled 1 but predicted 0
    with pytest.raises(ValueError, match="assigns"):
        native_guide(toy, np.zeros((1, W, 2), np.float32), 1, reference=R, reference_y=[1])
    cf = native_guide(toy, np.zeros((1, W, 2), np.float32), 1, reference=R, reference_y=[1],
                      require_predicted=False)
    assert not cf.valid[0]                                  # shown as a failure, not hidden
    assert cf.extras["length"][0] == W


def test_reference_is_required_and_checked(toy):
    X = np.zeros((1, W, 2), np.float32)
    with pytest.raises(ValueError, match="reference"):
        native_guide(toy, X, 1)
    with pytest.raises(ValueError, match="reference classes"):
        native_guide(toy, X, 1, reference=np.zeros((2, W, 2), np.float32), reference_y=[1])
    with pytest.raises(ValueError, match="distance"):
        native_guide(toy, X, 1, reference=X, reference_y=[1], distance="cosine")


def test_slicing_keeps_everything_aligned(toy, reference):
    R, ry = reference
    X = np.zeros((3, W, 2), np.float32)
    X[:, :, 1] = np.arange(3)[:, None]
    cf = native_guide(toy, X, 1, reference=R, reference_y=ry)
    part = cf[np.array([False, True, True])]
    assert isinstance(part, Counterfactual) and len(part) == 2
    assert np.allclose(part.original, X[1:]) and part.scores_after.shape == (2, 2)
    assert part.options == cf.options
    assert "native_guide_euclidean" in repr(part)


# ---------------------------------------------------------------------------------- Wachter
def test_wachter_on_a_linear_model_moves_only_the_heaviest_samples():
    a = np.full((W, 2), 0.1)
    heavy = [(120, 0), (121, 0), (122, 0), (60, 1), (61, 1)]
    for i in heavy:
        a[i] = 1.0
    model = linear_two_class(a, b=-1.0)
    X = np.zeros((1, W, 2), np.float32)
    kappa = 0.5
    cf = wachter(model, X, 1, kappa=kappa, beta=0.3, learning_rate=0.02, max_steps=100)
    assert cf.valid.all()
    moved = np.argwhere(np.abs(cf.values[0]) > 0)
    assert sorted(map(tuple, moved)) == sorted(heavy)       # lam * 0.1 < beta: never moves
    # L1-optimal change: (|b| + kappa) / |S| on each heavy sample, up to one step
    per_sample = (1.0 + kappa) / len(heavy)
    assert np.allclose(cf.values[0][tuple(np.array(heavy).T)], per_sample, atol=0.03)
    assert np.all(cf.values[0][tuple(np.array(heavy).T)] > 0)   # along the weights
    assert abs(cf.scores_after[0, 1] - kappa) < 0.15             # the target wins by ~kappa
    assert proximity(cf.original, cf.counterfactual, "l1")[0] == pytest.approx(1 + kappa,
                                                                               abs=0.15)
    assert cf.options["beta"] == 0.3 and cf.extras["lam_final"][0] == 1.0


def test_wachter_raises_lambda_until_valid():
    a = np.full((W, 2), 0.1)
    model = linear_two_class(a, b=-20.0)      # far from the boundary: lam must grow
    cf = wachter(model, np.zeros((1, W, 2), np.float32), 1, beta=0.0, learning_rate=0.01,
                 max_steps=200, check_every=10)
    assert cf.valid.all() and cf.extras["lam_final"][0] > 1.0


def test_wachter_fails_visibly_where_gradients_vanish():
    from utils.explainers.integrated_gradients import saturating_model

    model = saturating_model(gain=4.0)
    X = np.ones((1, W, 2), np.float32)           # gain * mean ReLU = 4 >= 1: saturated
    assert predict_scores(model, X).argmax(axis=1)[0] == 1
    cf = wachter(model, X, 0, max_steps=30, check_every=10)
    assert not cf.valid[0] and np.allclose(cf.values, 0)
    assert cf.extras["gradient_scale"][0] == 0


def test_wachter_random_start_needs_a_generator_and_is_reproducible():
    model = linear_two_class(np.full((W, 2), 0.1), b=-1.0)
    X = np.zeros((1, W, 2), np.float32)
    with pytest.raises(ValueError, match="Generator"):
        wachter(model, X, 1, init_noise=0.1)
    a = wachter(model, X, 1, init_noise=0.1, rng=np.random.default_rng(3), max_steps=20)
    b = wachter(model, X, 1, init_noise=0.1, rng=np.random.default_rng(3), max_steps=20)
    assert np.array_equal(a.counterfactual, b.counterfactual)


def test_wachter_options_are_checked():
    model = linear_two_class(np.full((W, 2), 0.1), b=-1.0)
    X = np.zeros((1, W, 2), np.float32)
    for bad in ({"lam": 0}, {"beta": -1}, {"max_steps": 0}, {"learning_rate": -0.1}):
        with pytest.raises(ValueError):
            wachter(model, X, 1, **bad)
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        wachter(model, X, 5)


def test_pack_and_unpack_round_trip(toy, reference):
    from utils.studies.counterfactual_study import pack, run_methods, unpack

    R, ry = reference
    X = np.zeros((2, W, 2), np.float32)
    X[1, :, 1] = 0.5
    methods = {"NG": (native_guide, {"distance": "dtw"}),
               "W": (wachter, {"max_steps": 5})}
    res = run_methods(toy, X, 1, R, ry, methods=methods)
    arrays = pack(res)
    assert arrays["original"].dtype == np.float32            # exact: beats are float32
    back = unpack(arrays)
    assert list(back) == ["NG", "W"]
    for name in res:
        a, b = res[name], back[name]
        assert np.array_equal(a.counterfactual, b.counterfactual)
        assert np.array_equal(a.values, b.values) and np.array_equal(a.target, b.target)
        assert a.options == b.options and a.method == b.method and a.kind == b.kind
        assert np.array_equal(a.valid, b.valid)
    assert np.array_equal(back["NG"].extras["start"], res["NG"].extras["start"])
