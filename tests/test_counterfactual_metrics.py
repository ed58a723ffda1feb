"""Counterfactual metrics (utils.assess.counterfactual_metrics) on hand-made pairs, properties with
hypothesis, and a cross-check against wildboar's independent implementation."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import arrays

from utils.assess.counterfactual_metrics import (PlausibilityDetector, autoencoder_errors,
                                                 autoencoder_ratio, beat_metrics,
                                                 changed_segments, contiguity, dtw_distance,
                                                 metric_table, ms_per_beat, proximity, sparsity,
                                                 validity)


@pytest.fixture
def pair():
    """A (1, 10, 2) beat and a counterfactual changed at samples 2-4 of lead 0 (by 1, 2, 2)
    and sample 7 of lead 1 (by -3): 4 of 20 entries, 2 segments."""
    x = np.zeros((1, 10, 2))
    xc = x.copy()
    xc[0, 2:5, 0] = [1.0, 2.0, 2.0]
    xc[0, 7, 1] = -3.0
    return x, xc


def test_hand_made_pair(pair):
    x, xc = pair
    assert sparsity(x, xc)[0] == pytest.approx(4 / 20)
    assert contiguity(x, xc)[0] == 2
    assert changed_segments(x, xc)[0].tolist() == [[2, 5], [7, 8]]
    assert proximity(x, xc, "l1")[0] == pytest.approx(8.0)
    assert proximity(x, xc, "l2")[0] == pytest.approx(np.sqrt(1 + 4 + 4 + 9))
    assert proximity(x, x, "dtw")[0] == 0
    assert 0 < proximity(x, xc, "dtw")[0] <= proximity(x, xc, "l2")[0] + 1e-12
    assert contiguity(x, x)[0] == 0 and sparsity(x, x)[0] == 0


def test_tolerance_and_adjacent_leads(pair):
    x, xc = pair
    xc = xc.copy()
    xc[0, 5, 1] = 1e-9                           # below the tolerance: unchanged
    assert sparsity(x, xc)[0] == pytest.approx(4 / 20)
    xc[0, 5, 1] = 0.5                            # joins the 2-4 segment through the other lead
    assert changed_segments(x, xc)[0].tolist() == [[2, 6], [7, 8]]
    assert sparsity(x, xc, atol=1.5)[0] == pytest.approx(3 / 20)


def test_dtw_of_a_shift_is_small():
    t = np.linspace(0, 1, 64)
    x = np.stack([np.exp(-((t - 0.5) / 0.05) ** 2)] * 2, axis=1)[None]
    shifted = np.roll(x, 2, axis=1)
    assert dtw_distance(x, shifted)[0] < 0.2 * proximity(x, shifted, "l2")[0]
    assert dtw_distance(x, shifted, window=1)[0] == pytest.approx(proximity(x, shifted, "l2")[0])
    with pytest.raises(ValueError, match="band"):
        dtw_distance(x, shifted, window=0)


def test_validity():
    scores = np.array([[2.0, 1.0], [0.0, 3.0], [1.0, 1.5]])
    assert validity(scores, [0, 0, 1]).tolist() == [True, False, True]
    with pytest.raises(ValueError):
        validity(scores, [0, 1])


def test_bad_pairs_are_rejected():
    with pytest.raises(ValueError, match="shape"):
        sparsity(np.zeros((1, 10, 2)), np.zeros((1, 10, 1)))
    bad = np.zeros((1, 10, 2))
    bad[0, 3, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        proximity(np.zeros((1, 10, 2)), bad)
    with pytest.raises(ValueError, match="kind"):
        proximity(bad, bad, "cosine")
    with pytest.raises(ValueError):
        ms_per_beat(1.0, 0)
    assert ms_per_beat(0.5, 10) == pytest.approx(50.0)


beats = arrays(np.float64, (2, 16, 2), elements=st.floats(-3, 3, allow_nan=False))


@settings(max_examples=40, deadline=None)
@given(x=beats, xc=beats)
def test_metric_properties(x, xc):
    s = sparsity(x, xc)
    assert np.all((0 <= s) & (s <= 1))
    k = contiguity(x, xc)
    assert np.all((0 <= k) & (k <= 8))                       # at most every other step
    assert np.all((k == 0) == (s == 0))
    l1, l2, d = (proximity(x, xc, kind) for kind in ("l1", "l2", "dtw"))
    assert np.all(l2 <= l1 + 1e-9) and np.all(d <= l2 + 1e-9)
    assert np.allclose(proximity(xc, x, "dtw"), d)
    m = beat_metrics(x, xc, np.array([[1.0, 0.0], [0.0, 1.0]]), [0, 0])
    assert m["valid"].tolist() == [1.0, 0.0] and np.allclose(m["sparsity"], s)


# ------------------------------------------------------------------ cross-check with wildboar
def test_against_wildboar():
    """wildboar 1.2.1's counterfactual metrics (an independent implementation): its
    compactness is our sparsity averaged over beats, its validity our validity, its Euclidean
    proximity and DTW per lead our L2 and DTW on one lead."""
    wb_metrics = pytest.importorskip("wildboar.metrics")
    from wildboar.distance import paired_distance

    rng = np.random.default_rng(4)
    x = rng.normal(size=(6, 64, 2))
    xc = x.copy()
    for i in range(6):                                   # change a random window of each beat
        a = rng.integers(0, 50)
        xc[i, a:a + rng.integers(1, 14), rng.integers(0, 2)] += rng.normal(size=1)
    xc[5] = rng.normal(size=(64, 2))
    to_wb = (0, 2, 1)                                    # wildboar: (n, dims, timesteps)
    assert wb_metrics.compactness_score(x.transpose(to_wb), xc.transpose(to_wb),
                                        atol=1e-6) == pytest.approx(sparsity(x, xc).mean())
    scores = rng.normal(size=(6, 3))
    targets = rng.integers(0, 3, 6)
    assert wb_metrics.validity_score(targets, scores.argmax(axis=1)) == pytest.approx(
        validity(scores, targets).mean())
    for lead in (0, 1):
        a, b = x[:, :, lead], xc[:, :, lead]
        assert np.allclose(paired_distance(a, b, metric="euclidean"), proximity(a, b, "l2"))
        assert np.allclose(paired_distance(a, b, metric="dtw", metric_params={"r": 1.0}),
                           proximity(a, b, "dtw"))
        assert wb_metrics.proximity_score(a, b, metric="euclidean") == pytest.approx(proximity(a, b, "l2").mean())


# ------------------------------------------------------------------------------ plausibility
@pytest.mark.parametrize("kind", ["lof", "iforest"])
def test_plausibility_detector_flags_what_is_off_the_class(kind):
    rng = np.random.default_rng(0)
    centre = np.sin(np.linspace(0, 6, 32))[:, None].repeat(2, axis=1)
    train = centre + rng.normal(0, 0.1, (300, 32, 2))
    real = centre + rng.normal(0, 0.1, (200, 32, 2))
    det = PlausibilityDetector(kind).fit(train, rng=np.random.default_rng(1))
    det.calibrate(real, quantile=0.9)
    assert 0.02 <= det.implausible(real).mean() <= 0.2      # about 10 % of real beats
    far = centre + 2.0                                       # another shape entirely
    assert det.implausible(far[None])[0]
    assert det.score(far[None])[0] > np.max(det.score(real))


def test_plausibility_detector_needs_what_it_needs():
    X = np.zeros((5, 8, 2))
    with pytest.raises(ValueError, match="Generator"):
        PlausibilityDetector("iforest").fit(X)
    with pytest.raises(ValueError, match="fit"):
        PlausibilityDetector().score(X)
    with pytest.raises(ValueError, match="calibrate"):
        PlausibilityDetector().fit(np.random.default_rng(0).normal(size=(10, 8, 2))
                                   ).implausible(X)
    with pytest.raises(ValueError, match="kind"):
        PlausibilityDetector("svm").fit(X)
    a = PlausibilityDetector("iforest").fit(X + np.arange(5)[:, None, None],
                                            rng=np.random.default_rng(7))
    b = PlausibilityDetector("iforest").fit(X + np.arange(5)[:, None, None],
                                            rng=np.random.default_rng(7))
    assert np.array_equal(a.score(X), b.score(X))


def test_autoencoder_ratio_is_one_on_the_median_real_beat():
    import keras

    from utils.models.networks import build_attention_autoencoder

    keras.utils.set_random_seed(0)
    ae = build_attention_autoencoder(units=4)
    real = np.random.default_rng(2).normal(size=(9, 256, 2)).astype(np.float32)
    ratio = autoencoder_ratio(ae, real, real)
    assert np.median(ratio) == pytest.approx(1.0)
    assert autoencoder_ratio(ae, 5 * real[:1], real)[0] > 1     # a louder beat fits worse
    # the same error as week 4's reconstruction_errors (one definition, two code paths)
    from utils.explainers.attention import reconstruction_errors

    assert np.allclose(autoencoder_errors(ae, real), reconstruction_errors(ae, real)["error"],
                       rtol=1e-5)
    scale = float(np.median(autoencoder_errors(ae, real)))
    assert np.allclose(autoencoder_ratio(ae, real, reference_error=scale), ratio)
    with pytest.raises(ValueError):
        autoencoder_ratio(ae, real)


# ---------------------------------------------------------------------------------- the table
def test_metric_table_spread_across_records():
    record = np.array(["100", "100", "101", "102"])
    per_beat = {"b": {"valid": np.array([1.0, 1.0, 0.0, 1.0]),
                      "AE": np.full(4, np.nan)},
                "a": {"valid": np.array([1.0, 0.0, 1.0, 1.0]),
                      "AE": np.array([1.0, 3.0, 2.0, 2.0])}}
    t = metric_table(per_beat, record, ms={"a": 2.0, "b": 1.0})
    assert list(t.index) == ["a", "b"]
    assert t.loc["a", "valid"] == pytest.approx(0.75) and t.loc["b", "valid"] == 0.75
    # per-record means of a: 100 -> 0.5, 101 -> 1, 102 -> 1; 10th-90th percentile 0.6-1
    assert t.loc["a", "valid records"] == "0.6-1"
    assert np.isnan(t.loc["b", "AE"]) and t.loc["b", "AE records"] == ""
    assert t.loc["a", "ms per beat"] == 2.0
    assert metric_table(per_beat, record, statistic="median").loc["a", "AE"] == 2.0
    with pytest.raises(ValueError):
        metric_table(per_beat, record[:3])
