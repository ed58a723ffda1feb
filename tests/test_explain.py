"""Tests of utils.core.explain (the Explanation type and the shared pieces) and utils.core.perturb."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import arrays
from scipy.stats import spearmanr

from utils.core import config
from utils.core import perturb
from utils.core.segments import segment_mask
from utils.core.explain import (Explanation, check_targets, class_scores, completeness_gap,
                                predict_scores, rank_agreement, score_model, segment_sums,
                                to_samples)


# ------------------------------------------------------------------------ the result type
def test_explanation_slicing_and_summaries():
    v = np.arange(4 * 8 * 2, dtype=float).reshape(4, 8, 2)
    exp = Explanation(v, [0, 1, 2, 3], "toy", delta=[0.0, -2.0, 1.0, 0.5],
                      extras={"score": np.arange(4.0), "note": "kept"})
    sub = exp[np.array([1, 3])]
    assert len(sub) == 2 and sub.target.tolist() == [1, 3]
    assert sub.extras["score"].tolist() == [1.0, 3.0] and sub.extras["note"] == "kept"
    assert exp[2].shape == (1, 8, 2)
    assert exp.max_delta() == 2.0
    np.testing.assert_allclose(exp.total(), v.sum(axis=(1, 2)))
    np.testing.assert_allclose(exp.per_time("signed"), v.sum(axis=2))
    np.testing.assert_allclose(exp.per_time("mean"), v.mean(axis=2))
    with pytest.raises(ValueError, match="mode"):
        exp.per_time("max")


@pytest.mark.parametrize("kwargs, match", [
    ({"values": np.zeros((2, 8))}, r"\(n, window, leads\)"),
    ({"target": [0, 1, 2]}, "3 targets"),
    ({"output": "softmax"}, "output"),
    ({"scope": "beat"}, "scope"),
    ({"unit": "hours"}, "unit"),
])
def test_explanation_rejects_bad_fields(kwargs, match):
    fields = {"values": np.zeros((2, 8, 2)), "target": [0, 1], "method": "toy", **kwargs}
    with pytest.raises(ValueError, match=match):
        Explanation(**fields)


# ------------------------------------------------------------------------ score model, targets
def test_score_model_is_cached_and_cut_at_the_logits(fcn, beats):
    assert score_model(fcn) is score_model(fcn)
    assert score_model(fcn, "probs") is fcn
    logits = predict_scores(fcn, beats)
    probs = predict_scores(fcn, beats, "probs")
    soft = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(soft / soft.sum(1, keepdims=True), probs, atol=1e-5)
    np.testing.assert_allclose(class_scores(fcn, beats, 2), logits[:, 2], atol=1e-6)


def test_check_targets():
    np.testing.assert_array_equal(check_targets(3, 4, 8), [3, 3, 3, 3])
    np.testing.assert_array_equal(check_targets(np.array([1.0, 2.0]), 2, 8), [1, 2])
    for bad, match in ((2.5, "integer"), ([0.5, 1], "integer"), (9, r"\[0, 8\)"),
                       (-1, r"\[0, 8\)"), ([0, 1, 2], "2 class indices"), (True, "integer"),
                       (np.nan, "integer"), ("a", "integer")):
        with pytest.raises(ValueError, match=match):
            check_targets(bad, 2, 8)


# ------------------------------------------------------------------------ to_samples
@settings(max_examples=30, deadline=None)
@given(steps=st.sampled_from([8, 16, 32, 64, 128]), value=st.floats(-5, 5))
def test_interp_constant_and_range(steps, value):
    """A constant map stays constant; interpolation never leaves the range of the steps."""
    const = to_samples(np.full((1, steps), value), "steps", 256, 1, mode="interp")
    np.testing.assert_allclose(const, value)
    up = to_samples(np.linspace(-1, 1, steps)[None], "steps", 256, 1, mode="interp")[0, :, 0]
    assert up.min() >= -1 - 1e-12 and up.max() <= 1 + 1e-12
    assert np.all(np.diff(up) >= -1e-12)  # monotone input stays monotone


def test_interp_places_steps_at_pooled_centres():
    up = to_samples(np.array([[0.0, 1.0]]), "steps", 4, 1, mode="interp")
    np.testing.assert_allclose(up[0, :, 0], [0.0, 0.25, 0.75, 1.0])
    with pytest.raises(ValueError, match="cannot map"):
        to_samples(np.zeros((1, 300)), "steps", 256)


@settings(max_examples=30, deadline=None)
@given(arrays(np.float64, (3, 16), elements=st.floats(0, 10)), st.sampled_from([1, 2, 3]))
def test_preserve_sum_holds_for_maps_copied_to_leads(native, leads):
    """The sum over samples *and* leads equals the native sum (attention still sums to 1),
    also when a per-time map is spread over several leads (the bug fixed here)."""
    for unit, window in (("steps", 64), ("samples", 16)):
        out = to_samples(native, unit, window, leads, preserve_sum=True)
        assert out.shape == (3, window, leads)
        np.testing.assert_allclose(out.sum(axis=(1, 2)), native.sum(axis=1), atol=1e-9)
    copied = to_samples(native, "steps", 64, leads)
    np.testing.assert_allclose(copied[:, ::4, 0], native)
    np.testing.assert_allclose(copied[:, :, 0], copied[:, :, -1])


@settings(max_examples=30, deadline=None)
@given(arrays(np.float64, (2, 8), elements=st.floats(-10, 10)))
def test_segments_round_trip(native):
    """segment_sums inverts to_samples(unit='segments', preserve_sum=True)."""
    spread = to_samples(native, "segments", 32, 2, preserve_sum=True)
    np.testing.assert_allclose(segment_sums(spread, 4), native, atol=1e-9)
    hold = to_samples(native, "segments", 32, 2)
    assert hold[0, 0, 0] == native[0, 0] and hold[0, 31, 1] == native[0, 7]


def test_to_samples_rejects_bad_input():
    with pytest.raises(ValueError, match="NaN"):
        to_samples(np.array([[np.nan, 1.0]]), "steps", 4)
    with pytest.raises(ValueError, match="unit"):
        to_samples(np.zeros((1, 4)), "minutes", 4)
    with pytest.raises(ValueError, match="leads x"):
        to_samples(np.zeros((1, 5)), "segments", 8, 2)


# ------------------------------------------------------------------------ agreement, gaps
@settings(max_examples=25, deadline=None)
@given(arrays(np.float64, (3, 12), elements=st.floats(-10, 10, allow_subnormal=False)))
def test_rank_agreement_matches_scipy(a):
    b = a[:, ::-1] + np.arange(12)
    rho = rank_agreement(a, b)
    for i in range(3):
        if np.ptp(a[i]) > 0 and np.ptp(b[i]) > 0:
            assert rho[i] == pytest.approx(spearmanr(a[i], b[i]).statistic)
        else:
            assert np.isnan(rho[i])


def test_rank_agreement_invariances_and_errors():
    a = np.random.default_rng(0).normal(size=(4, 20))
    np.testing.assert_allclose(rank_agreement(a, 3 * a + 1), 1.0)
    np.testing.assert_allclose(rank_agreement(a, -a), -1.0)
    with pytest.raises(ValueError, match="shapes"):
        rank_agreement(a, a[:, :10])


def test_segment_sums_preserve_total_and_match_mask():
    rng = np.random.default_rng(0)
    values = rng.normal(size=(2, config.WINDOW, 2))
    sums = segment_sums(values, n_segments=8)
    assert sums.shape == (2, 16)
    np.testing.assert_allclose(sums.sum(axis=1), values.reshape(2, -1).sum(axis=1))
    mask = segment_mask(config.WINDOW, 8, 2)
    np.testing.assert_allclose(sums[1, 8 + 3], values[1][mask[8 + 3]].sum())
    with pytest.raises(ValueError):
        segment_sums(values[0, 0])


def test_completeness_gap():
    np.testing.assert_allclose(completeness_gap(np.ones((2, 3, 2)), [6.0, 5.0]), [0.0, 1.0])
    with pytest.raises(ValueError, match="score changes"):
        completeness_gap(np.ones((2, 3, 2)), [1.0])


# ------------------------------------------------------------------------ perturb
def test_fill_kinds(beats):
    mask = np.zeros(beats.shape[1:], bool)
    mask[100:120, 0] = True
    for how in ("zero", "median", "blur", "noise", "permute", "interpolate"):
        out = perturb.fill(beats, mask, how)
        assert out.shape == beats.shape and out.dtype == np.float32
        np.testing.assert_array_equal(out[:, ~mask], beats[:, ~mask])   # outside: untouched
        assert not np.allclose(out[:, mask], beats[:, mask])
    ref = beats.mean(axis=0)
    np.testing.assert_array_equal(perturb.fill(beats, mask, "mean", reference=ref)[:, mask],
                                  np.broadcast_to(ref[mask], (len(beats), mask.sum())))
    perm = np.random.default_rng(0).permutation(len(beats))
    np.testing.assert_array_equal(perturb.fill(beats, mask, "permute", seed=0)[:, mask],
                                  beats[perm][:, mask])


def test_interpolate_draws_a_line_and_holds_the_ends():
    X = np.zeros((1, 10, 1), np.float32)
    X[0, :, 0] = [0, 1, 2, 9, 9, 9, 6, 7, 8, 5]
    mask = np.zeros((10, 1), bool)
    mask[3:6] = True
    np.testing.assert_allclose(perturb.fill(X, mask, "interpolate")[0, 3:6, 0], [3, 4, 5])
    edge = np.zeros((10, 1), bool)
    edge[:2] = True
    np.testing.assert_allclose(perturb.fill(X, edge, "interpolate")[0, :2, 0], [2, 2])


def test_baselines(beats):
    np.testing.assert_array_equal(perturb.baseline(beats, "zero"), 0)
    med = perturb.baseline(beats, "median")
    np.testing.assert_allclose(med[:, 0], np.median(beats, axis=1), atol=1e-6)
    blur = perturb.baseline(beats, "blur", sigma=4.0)
    assert np.abs(np.diff(blur, axis=1)).mean() < np.abs(np.diff(beats, axis=1)).mean()


@pytest.mark.parametrize("how, kwargs, match", [
    ("mean", {}, "reference"),
    ("mean", {"reference": np.zeros((10, 2))}, "does not match"),
    ("mean", {"reference": np.full((config.WINDOW, 2), np.nan)}, "NaN"),
    ("blur", {"sigma": 0.0}, "sigma"),
    ("noise", {"noise_scale": -1.0}, "noise_scale"),
    ("smudge", {}, "how must be"),
    ("interpolate", {}, "interpolate"),
])
def test_baseline_errors(beats, how, kwargs, match):
    with pytest.raises(ValueError, match=match):
        perturb.baseline(beats, how, **kwargs)


def test_fill_rejects_bad_masks(beats):
    with pytest.raises(ValueError, match="boolean"):
        perturb.fill(beats, np.zeros(beats.shape[1:]), "zero")
    with pytest.raises(ValueError, match="does not fit"):
        perturb.fill(beats, np.zeros((10, 2), bool), "zero")
    with pytest.raises(ValueError, match="at least 2 beats"):
        perturb.fill(beats[:1], True, "permute")
