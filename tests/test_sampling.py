"""Tests of utils.data.sampling: record-stratified samples and the bootstrap over records."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from utils.core import config
from utils.data.sampling import (bootstrap_over_records, class_bootstrap_table,
                                 examples_from_distinct_records, first_k_per_class, format_report,
                                 per_record_spread, sample_by_record, sample_misclassified,
                                 sample_report, stability_curve)


def _toy():
    """Beats sorted by record like BeatData: class 1 in records a (100 beats), b (3), c (40)."""
    record = np.array(["a"] * 100 + ["b"] * 3 + ["c"] * 40 + ["d"] * 50)
    y = np.array([1] * 143 + [0] * 50)
    return y, record


def test_every_record_of_a_class_is_covered_and_caps_hold():
    y, record = _toy()
    s = sample_by_record(y, record, per_record=10)
    picked = s.indices
    assert set(record[picked[y[picked] == 1]]) == {"a", "b", "c"}
    counts = {r: int(np.sum(record[picked] == r)) for r in "abcd"}
    assert counts == {"a": 10, "b": 3, "c": 10, "d": 10}
    rep = s.report
    assert rep.loc["L", "records"] == 3 and rep.loc["L", "beats"] == 23
    assert rep.loc["L", "records_available"] == 3 and rep.loc["L", "beats_available"] == 143
    assert rep.loc["L", "max_per_record"] == 10
    assert "L: 23 beats from 3/3 records" in str(s)


def test_first_k_is_one_record_the_sampler_is_not():
    y, record = _toy()
    first = first_k_per_class(y, 20)
    assert set(record[first[y[first] == 1]]) == {"a"}
    s = sample_by_record(y, record, per_record=7)
    assert sample_report(y, record, s.indices).loc["L", "top_share"] < 0.5


def test_max_records_limits_records_not_the_cap():
    y, record = _toy()
    s = sample_by_record(y, record, 4, max_records=2, seed=0)
    rep = s.report
    assert rep.loc["L", "records"] == 2 and rep.loc["L", "records_available"] == 3
    assert rep.loc["N", "records"] == 1 and rep.loc["N", "beats"] == 4


def test_deterministic_and_seed_dependent():
    y, record = _toy()
    a = sample_by_record(y, record, 5, seed=1).indices
    b = sample_by_record(y, record, 5, seed=1).indices
    c = sample_by_record(y, record, 5, seed=2).indices
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_not_the_first_beats_of_a_record():
    y, record = _toy()
    s = sample_by_record(y, record, 10, seed=0).indices
    in_a = s[record[s] == "a"]
    assert not np.array_equal(in_a, np.arange(10))


def test_mask_and_misclassified():
    y, record = _toy()
    pred = y.copy()
    pred[[0, 1, 2, 120, 121, 150]] = 0     # errors of class 1 in a and c, one class-0 "error"
    pred[150] = 1
    s = sample_misclassified(y, pred, record, per_record=2)
    assert np.all(pred[s.indices] != y[s.indices])
    assert sorted(record[s.indices[y[s.indices] == 1]]) == ["a", "a", "c", "c"]
    assert s.report.loc["N", "beats"] == 1
    with pytest.raises(ValueError, match="shape"):
        sample_by_record(y, record, mask=np.ones(3, bool))
    with pytest.raises(ValueError, match="per_record"):
        sample_by_record(y, record, 0)
    with pytest.raises(ValueError, match="record names"):
        sample_by_record(y, record[:-1])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 5)), min_size=1, max_size=120),
       st.integers(1, 6), st.integers(0, 10))
def test_invariants(pairs, cap, seed):
    """Caps respected, every (class, record) pair covered, no duplicates, min(cap, available)
    beats per pair: so no record is over-represented relative to the others."""
    y = np.array([p[0] for p in pairs])
    record = np.array([f"r{p[1]}" for p in pairs])
    s = sample_by_record(y, record, cap, seed=seed)
    idx = s.indices
    assert len(np.unique(idx)) == len(idx)
    for c in np.unique(y):
        for r in np.unique(record[y == c]):
            have = int(np.sum((y == c) & (record == r)))
            got = int(np.sum((y[idx] == c) & (record[idx] == r)))
            assert got == min(cap, have)
    assert int(s.report["beats"].sum()) == len(idx)


def test_examples_come_from_distinct_records():
    y = np.array([0, 0, 1, 1, 2, 2, 2])
    record = np.array(["a", "b", "a", "b", "a", "b", "c"])
    ex = examples_from_distinct_records(y, record, seed=3)
    assert list(y[ex]) == [0, 1, 2]
    assert len(set(record[ex])) == 3
    # preference masks are honoured
    pref = np.array([False, True, True, False, False, False, True])
    ex = examples_from_distinct_records(y, record, pref, seed=0)
    assert np.all(pref[ex])


def test_bootstrap_over_records_mean_and_spread():
    rng = np.random.default_rng(0)
    # 10 records with different means; 50 beats each
    rec_means = np.arange(10, dtype=float)
    record = np.repeat([f"r{i}" for i in range(10)], 50)
    values = np.repeat(rec_means, 50) + rng.normal(0, 0.01, 500)
    res = bootstrap_over_records(values, record, n_boot=2000, seed=1)
    assert res.n_records == 10 and res.n_beats == 500
    assert res.estimate == pytest.approx(values.mean())
    # the spread is that of 10 record means (sd 3.03 / sqrt(10) ~ 0.91), not of 500 beats
    assert 0.7 < float(res.std) < 1.1
    assert res.low < res.estimate < res.high
    # a callable statistic gives the same for the mean
    res2 = bootstrap_over_records(values, record, statistic=lambda v: v.mean(axis=0),
                                  n_boot=300, seed=1)
    assert float(res2.std) == pytest.approx(float(res.std), rel=0.2)
    # vector statistics keep their shape
    maps = np.repeat(rec_means, 50)[:, None, None] * np.ones((1, 4, 2))
    res3 = bootstrap_over_records(maps, record, n_boot=100)
    assert res3.estimate.shape == (4, 2) and res3.low.shape == (4, 2)
    # one record: no spread across patients
    one = bootstrap_over_records(values[:50], record[:50], n_boot=50)
    assert float(one.high - one.low) == 0.0
    with pytest.raises(ValueError, match="statistic"):
        bootstrap_over_records(values, record, statistic="median")


def test_per_record_spread_and_class_table():
    y, record = _toy()
    values = np.where(record == "a", 1.0, 0.0)
    spread = per_record_spread(values, record, y)
    assert list(spread.columns) == ["class", "record", "mean", "beats"]
    assert spread.set_index(["class", "record"]).loc[("L", "a"), "mean"] == 1.0
    table = class_bootstrap_table(values, y, record, n_boot=200)
    assert table.loc["L", "records"] == 3 and table.loc["L", "record_max"] == 1.0
    assert table.loc["N", "ci_low"] == table.loc["N", "ci_high"] == 0.0


def test_stability_curve_shrinks_with_the_cap():
    rng = np.random.default_rng(0)
    record = np.repeat([f"r{i}" for i in range(8)], 60)
    y = np.zeros(len(record), int)
    values = rng.normal(1.0, 1.0, (len(record), 5))
    curve = stability_curve(values, y, record, caps=(1, 30), n_repeats=6, n_boot=50)
    small, large = curve["sampling_rel"].to_numpy()
    assert large < small
    assert format_report(sample_by_record(y, record, 2).report).startswith("N: 16 beats")
    assert config.CLASSES[0] == "N"
