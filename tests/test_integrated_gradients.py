"""Tests of utils.explainers.integrated_gradients: alibi IG, the batched TF version and the axioms."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from utils.core import config
from utils.core import perturb
from utils.core.explain import class_scores, completeness_gap
from utils.explainers.integrated_gradients import (batched_integrated_gradients, baselines_for,
                                                   completeness_error, fold_batchnorm,
                                                   integrated_gradients, quadrature)


@pytest.mark.parametrize("method", ["gausslegendre", "riemann_trapezoid"])
@pytest.mark.parametrize("name", ["fcn", "lstm"])
def test_batched_matches_alibi(name, method, request, beats):
    model = request.getfixturevalue(name)
    targets = np.array([0, 3, 5, 7, 1, 2])
    ref = integrated_gradients(model, beats, targets, baselines="median", n_steps=16,
                               method=method)
    fast = batched_integrated_gradients(model, beats, targets, baselines="median", n_steps=16,
                                        method=method, max_batch=40)  # several chunks
    assert ref.values.shape == fast.values.shape == beats.shape
    np.testing.assert_allclose(fast.values, ref.values, atol=1e-4)
    np.testing.assert_allclose(fast.delta, ref.delta, atol=1e-3)
    assert np.abs(ref.values).max() > 1e-4  # not trivially zero


@pytest.mark.parametrize("output", ["logits", "probs"])
def test_completeness_improves_with_steps(fcn, beats, output):
    errs = []
    for steps in (2, 64):
        exp = batched_integrated_gradients(fcn, beats, 2, n_steps=steps, output=output)
        assert exp.output == output
        errs.append(completeness_error(exp).max())
    assert errs[1] < 0.05
    assert errs[1] < errs[0] / 2


def test_delta_is_the_completeness_gap(fcn, beats):
    exp = batched_integrated_gradients(fcn, beats, 1, n_steps=64)
    change = class_scores(fcn, beats, 1) - class_scores(fcn, np.zeros_like(beats), 1)
    np.testing.assert_allclose(exp.delta, exp.total() - change, atol=1e-5)
    np.testing.assert_allclose(exp.score_change, change, atol=1e-5)
    assert completeness_error(exp).max() < 0.01
    doubled = dataclasses.replace(exp, delta=completeness_gap(2 * exp.values, change))
    assert completeness_error(doubled).min() > 0.5       # wrong attributions are detected
    from utils.explainers.gradcam import grad_cam

    with pytest.raises(ValueError, match="no completeness gap"):
        completeness_error(grad_cam(fcn, beats, 1))


def test_attribution_zero_where_input_equals_baseline(lstm, beats):
    """Dummy/sensitivity: features equal to the baseline get exactly zero attribution; a
    feature that changes the output gets non-zero attribution."""
    base = beats.copy()
    base[:, 100:140, 0] = 0.0          # the inputs differ from the baseline only here
    a = batched_integrated_gradients(lstm, beats, 4, baselines=base, n_steps=32).values
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
    a = batched_integrated_gradients(fcn, beats, 6, n_steps=16).values
    b = batched_integrated_gradients(folded, beats, 6, n_steps=16).values
    np.testing.assert_allclose(a, b, atol=1e-4)


def test_fold_batchnorm_rejects_other_models(lstm):
    with pytest.raises(ValueError, match="no Conv1D"):
        fold_batchnorm(lstm)


def test_named_baselines_come_from_perturb(beats):
    np.testing.assert_array_equal(baselines_for(beats), 0)
    np.testing.assert_array_equal(baselines_for(beats, "blur", sigma=8),
                                  perturb.baseline(beats, "blur", sigma=8))
    ref = beats[0]
    np.testing.assert_array_equal(baselines_for(beats, "mean", reference=ref)[3], ref)
    with pytest.raises(ValueError, match="reference"):
        baselines_for(beats, "mean")


def test_bad_arguments(fcn, beats):
    with pytest.raises(ValueError, match="method"):
        batched_integrated_gradients(fcn, beats, 0, method="simpson")
    with pytest.raises(ValueError, match="n_steps"):
        integrated_gradients(fcn, beats, 0, n_steps=1)
    with pytest.raises(ValueError, match="broadcast"):
        batched_integrated_gradients(fcn, beats, 0, baselines=np.zeros((3, 3)))
    with pytest.raises(ValueError, match="output"):
        batched_integrated_gradients(fcn, beats, 0, output="softmax")
    nan_base = np.zeros(beats.shape[1:])
    nan_base[3, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        integrated_gradients(fcn, beats, 0, baselines=nan_base)


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
    from utils.explainers.gradcam import grad_cam
    from utils.explainers.integrated_gradients import saturating_model

    model = saturating_model(gain=4.0)
    x = np.zeros((2, config.WINDOW, 2), np.float32)
    x[0, :, 0] = 1.0                    # g = 1: saturated, z_1 = 1
    x[1, :, 0] = 0.1                    # g = 0.1: linear part, z_1 = 0.4
    z = class_scores(model, x, 1)
    np.testing.assert_allclose(z, [1.0, 0.4], atol=1e-6)
    cam = grad_cam(model, x, 1).native
    assert np.all(cam[0] == 0) and np.all(cam[1] > 0)      # saturated: Grad-CAM is blind
    a = batched_integrated_gradients(model, x, 1, n_steps=64).values
    # the kink of the saturation slows the quadrature down: 64 steps give ~2 % error
    np.testing.assert_allclose(a.sum(axis=(1, 2)), z - class_scores(model, 0 * x, 1),
                               atol=0.05)
    assert np.all(a[:, :, 1] == 0)                         # lead 1 is never used
    with pytest.raises(ValueError, match="gain"):
        saturating_model(gain=0)
