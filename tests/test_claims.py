"""Tests of utils.assess.claims: balanced samples by record, tests over records, window occlusion."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from utils.assess import claims


def _toy(records_per_class=(1, 3, 27), beats_per_record=50):
    y, rec = [], []
    for c, k in enumerate(records_per_class):
        for r in range(k):
            y += [c] * beats_per_record
            rec += [f"{c}-{r:02d}"] * beats_per_record
    return np.array(y), np.array(rec)


def test_balanced_by_record_spreads_a_class_over_its_records():
    y, rec = _toy()
    s = claims.balanced_by_record(y, rec, 40, seed=1)
    for c, k in enumerate((1, 3, 27)):
        picked = rec[s.indices][y[s.indices] == c]
        assert len(picked) == 40
        names, counts = np.unique(picked, return_counts=True)
        assert len(names) == k and counts.max() - counts.min() <= 1


def test_balanced_by_record_makes_up_for_small_records_and_small_classes():
    y = np.array([0] * 2 + [0] * 100 + [1] * 5)
    rec = np.array(["a"] * 2 + ["b"] * 100 + ["c"] * 5)
    s = claims.balanced_by_record(y, rec, 40, seed=0)
    picked = rec[s.indices]
    assert np.sum(picked == "a") == 2 and np.sum(picked == "b") == 38   # b makes up for a
    assert np.sum(picked == "c") == 5                                     # class 1: all it has
    assert len(np.unique(s.indices)) == len(s.indices)


def test_balanced_by_record_respects_the_mask_and_the_seed():
    y, rec = _toy()
    mask = np.arange(len(y)) % 2 == 0
    a = claims.balanced_by_record(y, rec, 30, mask=mask, seed=3)
    assert mask[a.indices].all()
    assert np.array_equal(a.indices, claims.balanced_by_record(y, rec, 30, mask=mask, seed=3).indices)
    assert not np.array_equal(a.indices, claims.balanced_by_record(y, rec, 30, mask=mask, seed=4).indices)
    with pytest.raises(ValueError):
        claims.balanced_by_record(y, rec, 0)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 30), min_size=1, max_size=12), st.integers(1, 200))
def test_spread_takes_min_of_total_and_available_as_evenly_as_possible(counts, total):
    take = claims._spread(np.array(counts), total)
    assert take.sum() == min(total, sum(counts)) and (take <= np.array(counts)).all()
    short = take < np.array(counts)          # records that could give more
    if short.any():
        assert take[short].min() >= take.max() - 1


def test_paired_record_test_finds_a_shift_shared_by_many_records():
    rng = np.random.default_rng(0)
    rec = np.repeat([f"r{i}" for i in range(10)], 20)
    d = 1.0 + rng.normal(0, 0.5, len(rec))
    res = claims.paired_record_test(d, rec, seed=0)
    assert res.low > 0 and res.p_value <= 2 / 2 ** 10 + 1e-12 and res.records_positive == 10
    assert abs(res.estimate - d.mean()) < 1e-12


def test_paired_record_test_cannot_be_passed_by_three_records():
    rec = np.repeat(["a", "b", "c"], 50)
    res = claims.paired_record_test(np.full(len(rec), 5.0), rec)
    assert res.p_value == pytest.approx(0.25)       # 2 of 8 sign patterns are as extreme


def test_paired_record_test_sees_no_effect_in_noise_centred_at_zero():
    rng = np.random.default_rng(1)
    rec = np.repeat([f"r{i}" for i in range(16)], 10)
    offsets = np.repeat(rng.choice([-1.0, 1.0], 16), 10)
    d = offsets * 0.01 + rng.normal(0, 1, len(rec))
    res = claims.paired_record_test(d, rec, n_resamples=4000, seed=2)   # 16 records: Monte Carlo
    assert res.low < 0 < res.high and res.p_value > 0.05


def test_sign_test_records_counts_records_not_beats():
    rec = np.array(["a"] * 100 + ["b", "c"])
    v = np.array([1.0] * 100 + [-1.0, -1.0])
    out = claims.sign_test_records(v, rec)
    assert out == {"records": 3, "positive": 1, "negative": 2, "p_value": 1.0}
    assert claims.sign_test_records([1, 2, 3], ["a", "b", "c"])["p_value"] == pytest.approx(0.25)


def test_window_occlusion_on_a_linear_toy_model():
    # score of class k = sum of lead-0 samples in [10k, 10k + 10): a known answer per window
    def score(X):
        return np.stack([X[:, 10 * k:10 * k + 10, 0].sum(axis=1) for k in range(3)], axis=1)

    X = np.ones((4, 40, 2))
    drops = claims.window_occlusion(score, X, [0, 1, 2, 0], (5, 15))
    assert np.allclose(drops, [5, 5, 0, 5])
    per_beat = np.array([[0, 10], [10, 20], [0, 40], [30, 40]])
    assert np.allclose(claims.window_occlusion(score, X, [0, 1, 2, 0], per_beat), [10, 10, 10, 0])
    assert np.allclose(claims.window_occlusion(score, X, [0, 1, 2, 0], (0, 40), leads=[1]), 0)
    assert np.allclose(claims.window_occlusion(score, X, [0, 1, 2, 0], (0, 40), leads=[0]), 10)
    with pytest.raises(ValueError):
        claims.window_occlusion(score, X, [0, 1], (0, 5))


def test_record_permutation_test_exact_minimum_and_no_effect():
    # 3 records far above 17 others: the most extreme of C(20, 3) = 1140 assignments (two-sided: 1/1140)
    rec_a = np.repeat(["a0", "a1", "a2"], 10)
    rec_b = np.repeat([f"b{i:02d}" for i in range(17)], 5)
    rng = np.random.default_rng(0)
    out = claims.record_permutation_test(10 + rng.normal(0, 0.1, len(rec_a)), rec_a,
                                         rng.normal(0, 0.1, len(rec_b)), rec_b)
    assert out["exact"] and out["p_value"] == pytest.approx(1 / 1140) and out["difference"] > 9
    same = claims.record_permutation_test(rng.normal(0, 1, 30), rec_a, rng.normal(0, 1, 85), rec_b)
    assert same["p_value"] > 0.05
    with pytest.raises(ValueError):
        claims.record_permutation_test([1.0], ["x"], [2.0], ["x"])
