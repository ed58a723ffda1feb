"""Tests of utils.assess.relevance: local-to-global aggregation of relevance maps."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import arrays

from utils.core import config
from utils.assess.relevance import (class_means, lead_share, normalise_per_beat, region_share,
                                    relevance_vs_probability, summarise_relevance_probability)


@settings(max_examples=30, deadline=None)
@given(arrays(np.float64, (4, 16, 2), elements=st.floats(-100, 100, allow_subnormal=False)))
def test_normalise_per_beat_bounds(r):
    out = normalise_per_beat(r)
    assert out.shape == r.shape
    assert np.all(np.abs(out) <= 1 + 1e-12)
    for i in range(len(r)):
        if np.any(r[i] != 0):
            assert np.isclose(np.abs(out[i]).max(), 1.0)
            # same direction: a positive rescaling of the beat
            assert np.all(np.sign(out[i]) == np.sign(r[i]))


def test_class_means_and_missing_classes():
    r = np.arange(12, dtype=float).reshape(3, 4)
    m = class_means(r, np.array([0, 0, 2]), n_classes=4)
    np.testing.assert_allclose(m[0], r[:2].mean(0))
    np.testing.assert_allclose(m[2], r[2])
    assert np.all(np.isnan(m[1])) and np.all(np.isnan(m[3]))
    with pytest.raises(ValueError, match="labels"):
        class_means(r, np.array([0, 1]))


def test_lead_share_rows_sum_to_one_and_find_the_lead():
    rng = np.random.default_rng(0)
    r = rng.normal(size=(6, 32, 2))
    r[:3, :, 1] *= 0.1      # class 0 relies on lead 0
    r[3:, :, 0] *= 0.1      # class 3 relies on lead 1
    table = lead_share(r, np.array([0, 0, 0, 3, 3, 3]))
    assert list(table.index) == ["N", "V"]
    leads = table.drop(columns="n")
    np.testing.assert_allclose(leads.sum(axis=1), 1.0)
    assert leads.loc["N"].iloc[0] > 0.8 and leads.loc["V"].iloc[1] > 0.8
    assert table["n"].tolist() == [3, 3]
    with pytest.raises(ValueError, match="leads"):
        lead_share(r[:, :, :1], np.zeros(6, int))


def test_wave_windows_tile_the_window():
    regions = config.wave_windows()
    bounds = list(regions.values())
    assert bounds[0][0] == 0 and bounds[-1][1] == config.WINDOW
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
    a, b = regions["QRS"]
    assert a < config.R_OFFSET < b


def test_region_share_locates_relevance():
    r = np.zeros((2, config.WINDOW, 2))
    a, b = config.wave_windows()["QRS"]
    r[0, a:b, 0] = 1.0                   # all relevance in the QRS
    r[1, :10, 1] = -2.0                  # all before the P wave (sign ignored)
    table = region_share(r, np.array([3, 0]))
    assert list(table.index) == ["N", "V"]
    assert table.loc["V", "QRS"] == 1.0 and table.loc["N", "before P"] == 1.0
    np.testing.assert_allclose(table.drop(columns="n").sum(axis=1), 1.0)


def test_relevance_vs_probability_table_and_summary():
    rng = np.random.default_rng(0)
    n = 20
    probs = rng.dirichlet(np.ones(8), size=n)
    y = probs.argmax(axis=1)
    y[:4] = (y[:4] + 1) % 8              # four misclassified beats
    r = np.zeros((n, 8, 2))
    r[:, 0, 0] = 3 * probs[np.arange(n), y]  # summed relevance rises with the probability
    table = relevance_vs_probability(r, probs, y, y)
    assert table["correct"].sum() == n - 4
    np.testing.assert_allclose(table["summed_relevance"], 3 * table["probability"])
    s = summarise_relevance_probability(table)
    assert s["spearman_rho"] == pytest.approx(1.0)
    assert s["n_misclassified"] == 4
    with pytest.raises(ValueError, match="probs"):
        relevance_vs_probability(r, probs[:3], y, y)


def test_bad_maps_and_labels_are_rejected():
    r = np.ones((3, 16, 2))
    with pytest.raises(ValueError, match=r"\[0, 8\)"):
        class_means(r, np.array([0, 1, 9]))
    with pytest.raises(ValueError, match=r"\[0, 8\)"):
        lead_share(r, np.array([0, 1, 9]))
    nan = r.copy()
    nan[1, 3, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        lead_share(nan, np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="non-empty"):
        normalise_per_beat(np.zeros((0, 16)))


def test_explanations_are_accepted():
    from utils.core.explain import Explanation

    v = np.random.default_rng(0).normal(size=(4, config.WINDOW, 2))
    exp = Explanation(v, [0, 1, 0, 1], "toy")
    np.testing.assert_allclose(normalise_per_beat(exp), normalise_per_beat(v))
    assert region_share(exp, exp.target).shape[0] == 2
