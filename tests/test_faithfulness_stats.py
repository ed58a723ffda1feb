"""Tests of utils.assess.faithfulness_stats: per-beat curves that match utils.assess.evaluate, and the paired
record-level test on data whose answer is known."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from utils.assess import claims
from utils.assess import evaluate as ev
from utils.assess import faithfulness_stats as fs
from utils.core.explain import Explanation

from test_evaluate import LEADS, WINDOW, linear_model, perfect


@pytest.fixture(scope="module")
def beats():
    return np.random.default_rng(3).normal(size=(5, WINDOW, LEADS)).astype(np.float32)


@pytest.fixture(scope="module")
def linear():
    w = np.zeros((WINDOW, LEADS, 2))
    w[..., 0] = np.random.default_rng(4).normal(size=(WINDOW, LEADS)) * 0.05
    return linear_model(w), w


@pytest.mark.parametrize("imputation", ["road", "zero"])
@pytest.mark.parametrize("mode", ["deletion", "insertion"])
def test_per_beat_curves_give_the_areas_of_faithfulness(beats, linear, imputation, mode):
    model, w = linear
    exp = perfect(w)(model, beats, 0)
    table = ev.faithfulness(model, beats, 0, exp, imputations=(imputation,), modes=(mode,),
                            n_random=2)
    own = ev.curve_area(fs.per_beat_curves(model, beats, 0, exp, mode=mode,
                                           imputation=imputation))
    rnd = ev.curve_area(fs.per_beat_curves(model, beats, 0, None, mode=mode,
                                           imputation=imputation, n_random=2))
    np.testing.assert_allclose(own, table[table.order == "explainer"]["auc"], rtol=1e-12)
    np.testing.assert_allclose(rnd, table[table.order == "random"]["auc"], rtol=1e-12)


def test_per_beat_curves_need_a_map_or_random_orders(beats, linear):
    with pytest.raises(ValueError, match="n_random"):
        fs.per_beat_curves(linear[0], beats, 0, None)


def test_a_shift_in_every_record_is_detected():
    rng = np.random.default_rng(0)
    record = np.repeat([f"r{i}" for i in range(12)], 3)
    diff = -0.1 + 0.02 * rng.standard_normal(len(record))
    t = claims.paired_record_test(diff, record)
    assert t.estimate == pytest.approx(diff.mean())
    assert t.high < 0 and t.p_value < 0.01 and t.direction() == -1
    assert (t.n_beats, t.n_records) == (36, 12)
    assert claims.paired_record_test(-diff, record).direction() == 1


def test_no_shift_is_not_called_a_difference():
    rng = np.random.default_rng(1)
    record = np.repeat([f"r{i}" for i in range(15)], 2)
    t = claims.paired_record_test(rng.standard_normal(len(record)), record)
    assert t.low < 0 < t.high and t.p_value > 0.05 and t.direction() == 0


def test_the_unit_is_the_record_not_the_beat():
    """40 beats that all differ in one direction, but from two records only: a beat-level
    test would call this certain; with two records the exact sign-flip p is 0.5."""
    record = np.repeat(["a", "b"], 20)
    diff = np.full(40, -0.2) + np.linspace(-0.01, 0.01, 40)
    t = claims.paired_record_test(diff, record)
    assert t.p_value == pytest.approx(0.5) and t.direction() == 0
    assert t.n_records == 2


def test_an_adjusted_p_value_can_overrule():
    t = claims.RecordTest(estimate=-0.1, low=-0.2, high=-0.05, p_value=0.01, n_records=10,
                           n_beats=10, records_positive=0, level=0.95)
    assert t.direction() == -1 and t.direction(p=0.2) == 0


def test_bad_input_is_refused():
    with pytest.raises(ValueError):
        claims.paired_record_test([0.1, 0.2], ["a"])
    with pytest.raises(ValueError):
        claims.paired_record_test([np.nan], ["a"])


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(-1, 1), min_size=2, max_size=12),
       st.integers(1, 4))
def test_interval_and_p_are_well_formed(values, per_record):
    record = [f"r{i // per_record}" for i in range(len(values))]
    t = claims.paired_record_test(values, record, n_boot=200, n_resamples=199)
    assert 0 <= t.p_value <= 1
    assert t.low <= t.estimate + 1e-12 and t.estimate <= t.high + 1e-12


def test_vs_random_flags_the_perfect_map_and_an_anti_map(beats, linear):
    model, w = linear
    exp = perfect(w)(model, beats, 0)
    anti = Explanation(-exp.values, np.zeros(len(beats), dtype=int), "anti")
    record = np.array(["a", "b", "c", "d", "e"])
    table = fs.vs_random(model, beats, 0, {"perfect": exp, "anti": anti}, record,
                         imputation="zero")
    assert table.loc["perfect", "mean difference"] < 0 < table.loc["anti", "mean difference"]
    assert table.loc["perfect", "high"] < 0 and table.loc["anti", "low"] > 0
    # with 5 records the smallest two-sided sign-flip p is 2 / 2**5
    assert table.loc["perfect", "p"] == pytest.approx(2 / 32)
    ref = ev.faithfulness(model, beats, 0, exp, imputations=("zero",), modes=("deletion",),
                          n_random=2)
    assert table.loc["perfect", "median area"] == pytest.approx(
        ref[ref.order == "explainer"]["auc"].median())
    assert table.loc["perfect", "median random"] == pytest.approx(
        ref[ref.order == "random"]["auc"].median())
