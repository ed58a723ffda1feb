"""Tests of utils.assess.modality: modality shares, Kendall's W and the fold summaries."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st

from utils.core.explain import Explanation
from utils.assess.modality import (MODALITIES, class_shares, fold_concordance, fold_spread,
                                   kendalls_w, modality_shares)


def test_identical_rankings_give_one():
    assert kendalls_w([[1, 2, 3, 4]] * 5).w == pytest.approx(1.0)
    assert kendalls_w([[0.1, 0.5, 0.2], [1, 9, 3]]).w == pytest.approx(1.0)   # scores, ranked


def test_two_opposite_rankings_give_zero():
    assert kendalls_w([[1, 2, 3, 4], [4, 3, 2, 1]]).w == pytest.approx(0.0)


def test_known_example_by_hand():
    # rank sums 4, 6, 8 (mean 6): S = 8, W = 12 * 8 / (9 * 24) = 4/9
    k = kendalls_w([[1, 2, 3], [1, 3, 2], [2, 1, 3]])
    assert k.w == pytest.approx(4 / 9)
    assert k.chi2 == pytest.approx(3 * 2 * 4 / 9)
    assert (k.m, k.n) == (3, 3) and 0 < k.p < 1


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), m=st.integers(2, 6), n=st.integers(3, 6))
def test_matches_scipy_friedman_with_ties(seed, m, n):
    """chi2_Friedman = m (n - 1) W, ties corrected the same way (scipy.stats)."""
    from scipy.stats import friedmanchisquare

    r = np.random.default_rng(seed).integers(0, 3, size=(m, n)).astype(float)   # many ties
    if np.all(r == r[:, :1]):
        return
    k = kendalls_w(r)
    ref = friedmanchisquare(*r.T)
    assert k.chi2 == pytest.approx(ref.statistic, rel=1e-9, abs=1e-12)
    assert k.p == pytest.approx(ref.pvalue, rel=1e-9, abs=1e-12)
    assert 0 <= k.w <= 1 + 1e-12


def test_kendalls_w_rejects_bad_input():
    with pytest.raises(ValueError):
        kendalls_w([[1, 2, 3]])
    with pytest.raises(ValueError):
        kendalls_w([[1, np.nan], [1, 2]])
    assert np.isnan(kendalls_w([[1, 1], [2, 2]]).w)       # every rater ties all items


def test_modality_shares_of_a_multi_input_explanation():
    morph = np.zeros((3, 8, 2))
    morph[0, :, 0] = 1.0      # beat 0: MLII only
    morph[1, :, 1] = -2.0     # beat 1: chest only (signs do not matter)
    morph[2, :4, 0] = 1.0     # beat 2: 4 MLII, 4 chest, 8 rhythm
    morph[2, :4, 1] = -1.0
    rhythm = np.zeros((3, 4))
    rhythm[2] = [2, -2, 2, 2]
    exp = Explanation(values=morph, target=np.zeros(3), method="toy",
                      extras={"inputs": [morph, rhythm]})
    s = modality_shares(exp)
    assert list(s.columns) == list(MODALITIES)
    np.testing.assert_allclose(s.to_numpy(), [[1, 0, 0], [0, 1, 0], [0.25, 0.25, 0.5]])
    single = modality_shares(morph)                        # one input: two leads
    assert list(single.columns) == list(MODALITIES[:2])
    np.testing.assert_allclose(single.iloc[2], [0.5, 0.5])
    assert modality_shares([np.zeros((1, 8, 2)), np.zeros((1, 4))]).isna().all(axis=None)
    with pytest.raises(ValueError, match="input 1"):
        modality_shares(morph, {"x": (1, None)})


def test_class_shares():
    shares = pd.DataFrame({"MLII": [1.0, 0.0, 0.5], "chest lead": [0.0, 1.0, 0.5]})
    out = class_shares(shares, [3, 0, 0])
    assert list(out.index) == ["N", "V"]                  # course class order
    np.testing.assert_allclose(out.loc["N", ["MLII", "chest lead"]], [0.25, 0.75])
    assert out.loc["V", "n"] == 1 and out.loc["N", "n"] == 2


def _fold_tables(noise: float, seed: int = 0) -> dict[int, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    base = pd.DataFrame({"MLII": [0.6, 0.2], "chest lead": [0.3, 0.3],
                         "rhythm features": [0.1, 0.5]}, index=pd.Index(["N", "V"], name="class"))
    out = {}
    for fold in range(5):
        t = (base + noise * rng.normal(size=base.shape)).clip(lower=0)
        t = t.div(t.sum(axis=1), axis=0)
        t["n"] = 10
        out[fold] = t
    return out


def test_fold_summaries_separate_consistent_from_noisy():
    calm, noisy = _fold_tables(0.0), _fold_tables(0.5, seed=1)
    spread = fold_spread(calm)
    assert set(spread["modality"]) == set(MODALITIES) and (spread["folds"] == 5).all()
    np.testing.assert_allclose(spread["sd"], 0.0, atol=1e-12)
    assert (fold_spread(noisy)["sd"] > 0.01).all()
    w_calm = fold_concordance(calm).set_index("class")["W"]
    w_noisy = fold_concordance(noisy).set_index("class")["W"]
    np.testing.assert_allclose(w_calm, 1.0)
    assert (w_noisy < 1.0).all()
    partial = {0: calm[0], 1: calm[1].drop(index="V")}
    conc = fold_concordance(partial).set_index("class")
    assert conc.loc["V", "folds"] == 1 and np.isnan(conc.loc["V", "W"])
