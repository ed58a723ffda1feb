"""Tests of utils.models.baseline: interpretable beat features and models."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from utils.core import config
from utils.models.baseline import (FEATURE_NAMES, beat_features, coefficient_table, fit_baseline,
                                   qrs_width, tree_rules)

FS, W, R = config.BEAT_FS, config.WINDOW, config.R_OFFSET
T = (np.arange(W) - R) / FS


def _synthetic_beat(qrs_sigma: float = 0.012, r_amp: float = 1.0, lead1_sign: float = 1.0,
                    p_amp: float = 0.15, t_amp: float = 0.3) -> np.ndarray:
    """Gaussian P, QRS and T waves at -0.16 s, 0 s and +0.25 s (mV)."""
    g = lambda mu, s: np.exp(-0.5 * ((T - mu) / s) ** 2)  # noqa: E731
    lead0 = p_amp * g(-0.16, 0.02) + r_amp * g(0.0, qrs_sigma) + t_amp * g(0.25, 0.04)
    lead1 = lead1_sign * 0.8 * g(0.0, qrs_sigma)
    return np.stack([lead0, lead1], axis=1)


@settings(max_examples=20, deadline=None)
@given(s1=st.floats(0.006, 0.02), s2=st.floats(0.006, 0.02))
def test_qrs_width_grows_with_the_qrs(s1, s2):
    beats = np.stack([_synthetic_beat(s1), _synthetic_beat(s2)])
    w = qrs_width(beats)
    if s2 > s1 * 1.3:
        assert w[1] > w[0]
    assert np.all((w > 0) & (w <= 0.3 + 1e-9))


def test_qrs_width_of_a_narrow_and_wide_beat():
    w = qrs_width(np.stack([_synthetic_beat(0.01), _synthetic_beat(0.03)]))
    assert 0.02 < w[0] < 0.08 and 0.08 < w[1] < 0.25


def test_beat_features_values():
    beats = np.stack([_synthetic_beat(r_amp=1.5, lead1_sign=1),
                      _synthetic_beat(r_amp=-1.0, lead1_sign=-1, p_amp=0.0, t_amp=-0.3)])
    f = beat_features(beats, np.array([0.5, 0.8]), np.array([1.0, np.nan]))
    assert f.shape == (2, len(FEATURE_NAMES))
    col = {name.split(" ")[0]: f[:, i] for i, name in enumerate(FEATURE_NAMES)}
    assert col["rr_ratio"][0] == pytest.approx(0.5) and np.isnan(col["rr_ratio"][1])
    assert col["r_amp_lead0"][0] == pytest.approx(1.5, abs=0.05)
    assert col["r_amp_lead0"][1] == pytest.approx(-1.0, abs=0.05)
    assert col["qrs_area_lead1"][0] > 0 > col["qrs_area_lead1"][1]
    assert col["p_wave_lead0"][0] > 0.02 > col["p_wave_lead0"][1]
    assert col["t_wave_lead0"][0] > 0 > col["t_wave_lead0"][1]
    assert col["max_slope_lead0"][0] > col["max_slope_lead0"][1] > 0


def test_beat_features_bad_input():
    beat = _synthetic_beat()
    with pytest.raises(ValueError, match="beats must be"):
        beat_features(beat, np.array([1.0]), np.array([1.0]))
    with pytest.raises(ValueError, match="rr_prev"):
        beat_features(beat[None], np.array([1.0, 2.0]), np.array([1.0]))
    bad = beat[None].copy()
    bad[0, 5, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        beat_features(bad, np.array([1.0]), np.array([1.0]))


def _toy_problem(n: int = 300, seed: int = 0):
    """Class 0 = narrow QRS + regular RR, class 3 (V) = wide QRS + premature."""
    rng = np.random.default_rng(seed)
    y = np.where(np.arange(n) % 2 == 0, 0, 3)
    beats = np.stack([_synthetic_beat(0.01 if c == 0 else 0.03,
                                      r_amp=1.0 if c == 0 else -1.2) for c in y])
    beats += 0.02 * rng.standard_normal(beats.shape)
    rr_prev = np.where(y == 0, 0.8, 0.5) + 0.03 * rng.standard_normal(n)
    rr_next = np.where(y == 0, 0.8, 1.1) + 0.03 * rng.standard_normal(n)
    rr_prev[0] = np.nan  # record edge
    return beat_features(beats, rr_prev, rr_next), y


def test_tree_and_logistic_learn_and_explain():
    F, y = _toy_problem()
    tree = fit_baseline(F[:200], y[:200], kind="tree", max_depth=2)
    assert np.mean(tree.predict(F[200:]) == y[200:]) > 0.95
    rules = tree_rules(tree)
    assert "class: V" in rules and "class: N" in rules and "class: 3" not in rules
    logit = fit_baseline(F[:200], y[:200], kind="logistic")
    assert np.mean(logit.predict(F[200:]) == y[200:]) > 0.95
    table = coefficient_table(logit)
    assert list(table.columns) == list(FEATURE_NAMES)
    # binary problem: one row of coefficients; a wider QRS pushes towards V (the positive class)
    assert table.loc[table.index[0], "qrs_width [s]"] > 0
    with pytest.raises(ValueError, match="kind='tree'"):
        tree_rules(logit)
    with pytest.raises(ValueError, match="kind='logistic'"):
        coefficient_table(tree)


def test_fit_baseline_bad_input():
    F, y = _toy_problem(20)
    with pytest.raises(ValueError, match="kind"):
        fit_baseline(F, y, kind="forest")
    with pytest.raises(ValueError, match="aligned"):
        fit_baseline(F, y[:5])
    with pytest.raises(ValueError, match="max_depth"):
        fit_baseline(F, y, max_depth=0)
