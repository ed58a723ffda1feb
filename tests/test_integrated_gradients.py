"""Tests of utils.integrated_gradients: alibi IG, the batched TF version and the axioms."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from utils import config
from utils.integrated_gradients import (batched_integrated_gradients, class_scores,
                                        completeness_error, fold_batchnorm,
                                        integrated_gradients, make_baseline, quadrature)


@pytest.fixture(scope="module")
def fcn():
    import keras

    from utils.models import build_fcn

    keras.utils.set_random_seed(0)
    model = build_fcn(filters=(8, 8, 16))
    rng = np.random.default_rng(1)
    for layer in model.layers:  # non-trivial BatchNorm statistics (folding must handle them)
        if layer.name.endswith("_bn"):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([gamma * rng.uniform(0.5, 1.5, gamma.shape), beta + 0.1,
                               rng.normal(size=mean.shape) * 0.1,
                               var + rng.uniform(0.1, 1, size=var.shape)])
    return model


@pytest.fixture(scope="module")
def lstm():
    import keras

    from utils.models import build_lstm

    keras.utils.set_random_seed(0)
    return build_lstm(units=8)


@pytest.fixture(scope="module")
def beats():
    return np.random.default_rng(0).normal(size=(4, config.WINDOW, 2)).astype(np.float32)


@pytest.mark.parametrize("method", ["gausslegendre", "riemann_trapezoid"])
@pytest.mark.parametrize("name", ["fcn", "lstm"])
def test_batched_matches_alibi(name, method, request, beats):
    model = request.getfixturevalue(name)
    targets = np.array([0, 3, 5, 7])
    base = make_baseline(beats, "median")
    ref = integrated_gradients(model, beats, targets, base, n_steps=16, method=method)
    fast = batched_integrated_gradients(model, beats, targets, base, n_steps=16, method=method,
                                        max_batch=40)  # several chunks
    assert ref.shape == fast.shape == beats.shape
    np.testing.assert_allclose(fast, ref, atol=1e-4)
    assert np.abs(ref).max() > 1e-4  # not trivially zero


@pytest.mark.parametrize("output", ["logits", "probs"])
def test_completeness_improves_with_steps(fcn, beats, output):
    errs = []
    for steps in (2, 64):
        a = batched_integrated_gradients(fcn, beats, 2, n_steps=steps, output=output)
        errs.append(completeness_error(fcn, beats, a, 2, output=output).max())
    assert errs[1] < 0.05
    assert errs[1] < errs[0] / 2


def test_completeness_error_detects_wrong_attributions(fcn, beats):
    a = batched_integrated_gradients(fcn, beats, 1, n_steps=64)
    assert completeness_error(fcn, beats, a, 1).max() < 0.01
    assert completeness_error(fcn, beats, 2 * a, 1).min() > 0.5
    with pytest.raises(ValueError, match="do not match"):
        completeness_error(fcn, beats, a[:, :10], 1)


def test_attribution_zero_where_input_equals_baseline(lstm, beats):
    """Dummy/sensitivity: features equal to the baseline get exactly zero attribution; a
    feature that changes the output gets non-zero attribution."""
    base = beats.copy()
    base[:, 100:140, 0] = 0.0          # the inputs differ from the baseline only here
    a = batched_integrated_gradients(lstm, beats, 4, base, n_steps=32)
    outside = np.ones(beats.shape, bool)
    outside[:, 100:140, 0] = False
    assert np.all(a[outside] == 0)
    delta = class_scores(lstm, beats, 4) - class_scores(lstm, base, 4)
    np.testing.assert_allclose(a.sum(axis=(1, 2)), delta, rtol=0.02, atol=1e-5)


def test_fold_batchnorm_is_functionally_equal_and_ig_invariant(fcn, beats):
    folded = fold_batchnorm(fcn)
    assert not any("bn" in layer.name for layer in folded.layers)
    np.testing.assert_allclose(folded.predict(beats, verbose=0), fcn.predict(beats, verbose=0),
                               atol=1e-5)
    a = batched_integrated_gradients(fcn, beats, 6, n_steps=16)
    b = batched_integrated_gradients(folded, beats, 6, n_steps=16)
    np.testing.assert_allclose(a, b, atol=1e-4)


def test_fold_batchnorm_rejects_other_models(lstm):
    with pytest.raises(ValueError, match="no Conv1D"):
        fold_batchnorm(lstm)


def test_make_baseline_kinds(beats):
    assert np.all(make_baseline(beats, "zero") == 0)
    med = make_baseline(beats, "median")
    np.testing.assert_allclose(med[:, 0], np.median(beats, axis=1))
    assert np.ptp(med, axis=1).max() == 0
    blur = make_baseline(beats, "blur", sigma=8)
    assert blur.shape == beats.shape
    assert np.abs(np.diff(blur, axis=1)).mean() < np.abs(np.diff(beats, axis=1)).mean() / 3
    ref = beats[0]
    np.testing.assert_array_equal(make_baseline(beats, "mean", reference=ref)[3], ref)
    with pytest.raises(ValueError, match="reference"):
        make_baseline(beats, "mean")
    with pytest.raises(ValueError, match="kind"):
        make_baseline(beats, "noise")


def test_bad_arguments(fcn, beats):
    with pytest.raises(ValueError, match="method"):
        batched_integrated_gradients(fcn, beats, 0, method="simpson")
    with pytest.raises(ValueError, match="n_steps"):
        integrated_gradients(fcn, beats, 0, n_steps=1)
    with pytest.raises(ValueError, match="broadcast"):
        batched_integrated_gradients(fcn, beats, 0, baselines=np.zeros((3, 3)))
    with pytest.raises(ValueError, match="output"):
        batched_integrated_gradients(fcn, beats, 0, output="softmax")


@settings(max_examples=20, deadline=None)
@given(n=st.integers(2, 80), method=st.sampled_from(["gausslegendre", "riemann_trapezoid",
                                                      "riemann_left", "riemann_middle"]))
def test_quadrature_integrates_linear_functions_exactly(n, method):
    """Weights sum to 1 and integrate t exactly (1/2), except the one-sided Riemann rule
    (t only) and alibi's (captum's) trapezoid rule, whose weights 1/n on a grid of spacing
    1/(n-1) sum to 1 - 1/n: a bias that vanishes only as n grows."""
    alphas, weights = quadrature(n, method)
    assert len(alphas) == len(weights) == n
    assert np.all((alphas >= 0) & (alphas <= 1))
    total = 1 - 1 / n if method == "riemann_trapezoid" else 1.0
    np.testing.assert_allclose(weights.sum(), total, atol=1e-5)
    if method != "riemann_left":
        np.testing.assert_allclose((weights * alphas).sum(), total / 2, atol=1e-5)


def test_saturating_model_breaks_gradients_not_ig():
    from utils.gradcam import grad_cam
    from utils.integrated_gradients import saturating_model

    model = saturating_model(gain=4.0)
    x = np.zeros((2, config.WINDOW, 2), np.float32)
    x[0, :, 0] = 1.0                    # g = 1: saturated, z_1 = 1
    x[1, :, 0] = 0.1                    # g = 0.1: linear part, z_1 = 0.4
    z = class_scores(model, x, 1)
    np.testing.assert_allclose(z, [1.0, 0.4], atol=1e-6)
    cam = grad_cam(model, x, 1)
    assert np.all(cam[0] == 0) and np.all(cam[1] > 0)      # saturated: Grad-CAM is blind
    a = batched_integrated_gradients(model, x, 1, n_steps=64)
    # the kink of the saturation slows the quadrature down: 64 steps give ~2 % error
    np.testing.assert_allclose(a.sum(axis=(1, 2)), z - class_scores(model, 0 * x, 1),
                               atol=0.05)
    assert np.all(a[:, :, 1] == 0)                         # lead 1 is never used
    with pytest.raises(ValueError, match="gain"):
        saturating_model(gain=0)
