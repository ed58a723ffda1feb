"""Tests of utils.studies.evidence: split overlap, previous-R visibility, checked IG, time ramps."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from utils.core import config
from utils.explainers.integrated_gradients import checked_integrated_gradients
from utils.studies.evidence import (centre_of_mass, next_r_visible, overlap_summary,
                                    previous_r_table, previous_r_visible, time_ramp,
                                    window_overlap)


def test_window_overlap_by_hand():
    # record a: beats at 1000, 1100, 1500; record b: a beat at 1100 (other record: no overlap)
    record = np.array(["a", "a", "a", "b"])
    sample = np.array([1000, 1100, 1500, 1100])
    ov = window_overlap(record, sample, query=[1, 3], reference=[0, 2], window=256)
    assert ov[0] == pytest.approx((256 - 100) / 256)   # nearest training beat 100 samples away
    assert ov[1] == 0.0
    # union: query at 1100 covered by windows of 1000 ([888, 1144)) and 1500 ([1388, 1644))
    cov = window_overlap(record, sample, [1], [0, 2], window=256, r_offset=112, mode="union")
    assert cov[0] == pytest.approx((1144 - 988) / 256)
    with pytest.raises(ValueError, match="mode"):
        window_overlap(record, sample, [1], [0], mode="mean")


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(0, 3000), min_size=2, max_size=30, unique=True), st.integers(0, 10))
def test_overlap_invariants(samples, seed):
    """Overlap is in [0, 1]; union coverage >= largest single overlap; brute force agrees."""
    samples = np.sort(np.array(samples))
    record = np.array(["r"] * len(samples))
    rng = np.random.default_rng(seed)
    is_ref = rng.random(len(samples)) < 0.5
    q, ref = np.flatnonzero(~is_ref), np.flatnonzero(is_ref)
    if not len(q):
        return
    mx = window_overlap(record, samples, q, ref)
    un = window_overlap(record, samples, q, ref, mode="union")
    assert np.all((0 <= mx) & (mx <= 1)) and np.all(un >= mx - 1e-12)
    for i, qi in enumerate(q):
        brute = max([max(0, 256 - abs(samples[qi] - samples[r])) / 256 for r in ref], default=0)
        assert mx[i] == pytest.approx(brute)


class _Data:
    def __init__(self, y, record, sample, rr_prev=None, rr_next=None):
        self.y, self.record, self.sample = np.asarray(y), np.asarray(record), np.asarray(sample)
        n = len(self.y)
        self.rr_prev = np.full(n, 0.8) if rr_prev is None else np.asarray(rr_prev, float)
        self.rr_next = np.full(n, 0.8) if rr_next is None else np.asarray(rr_next, float)


class _Split:
    def __init__(self, train, test):
        self.train, self.test = np.asarray(train), np.asarray(test)


def test_overlap_summary():
    # beats every 150 samples; test beats 1 and 3, training 0, 2; beat 4 far away and in test
    data = _Data([0] * 5, ["a"] * 5, [0, 150, 300, 450, 5000])
    s = overlap_summary(data, _Split([0, 2], [1, 3, 4]))
    assert s["share_overlapping"] == pytest.approx(2 / 3)
    assert s["share_adjacent_in_train"] == pytest.approx(2 / 3)
    assert s["median_overlap_when_overlapping"] == pytest.approx(106 / 256)


def test_previous_r_visible_threshold():
    fs, off = config.BEAT_FS, config.R_OFFSET
    rr = np.array([off / fs, off / fs + 1e-3, 0.3, np.nan])
    np.testing.assert_array_equal(previous_r_visible(rr), [True, False, True, False])
    nxt = np.array([(256 - off - 1) / fs, (256 - off) / fs, np.nan])
    np.testing.assert_array_equal(next_r_visible(nxt), [True, False, False])
    data = _Data([4, 4, 4, 0], ["232", "232", "100", "100"], [0, 1, 2, 3],
                 rr_prev=[1.2, 1.0, 0.5, 0.8])
    table = previous_r_table(data)
    assert table.loc["A", "previous_R_visible"] == pytest.approx(1 / 3)
    assert table.loc["A", "top_record"] == "232"
    assert table.loc["A", "top_record_previous_R_visible"] == 0.0


def _toy_model(kind: str):
    """logits_1 = g(mean_t x_lead0) with g linear or a steep tanh; logits_0 = 0."""
    import keras
    from keras import layers

    inp = keras.Input((config.WINDOW, 2))
    m = layers.GlobalAveragePooling1D()(inp)
    h = layers.Dense(1, activation="tanh" if kind == "steep" else None, name="h")(m)
    logits = layers.Dense(2, name="logits")(h)
    model = keras.Model(inp, layers.Activation("softmax", name="probs")(logits))
    gain = 60.0 if kind == "steep" else 1.0
    model.get_layer("h").set_weights([np.array([[gain], [0.0]], np.float32),
                                      np.array([-0.5 * gain if kind == "steep" else 0.0],
                                               np.float32)])
    model.get_layer("logits").set_weights([np.array([[0.0, 1.0]], np.float32),
                                           np.zeros(2, np.float32)])
    return model


def test_checked_ig_linear_model_needs_no_recompute():
    model = _toy_model("linear")
    X = np.random.default_rng(0).normal(0.3, 1, (6, config.WINDOW, 2)).astype(np.float32)
    exp = checked_integrated_gradients(model, X, 1, steps=(4, 16), tolerance=0.01)
    assert np.all(exp.extras["n_steps"] == 4) and not exp.extras["flagged"].any()
    assert np.abs(exp.delta).max() < 1e-4
    assert exp.values.shape == X.shape and exp.method == "integrated_gradients_checked"


def test_checked_ig_recomputes_then_flags():
    model = _toy_model("steep")
    rng = np.random.default_rng(1)
    X = np.zeros((5, config.WINDOW, 2), np.float32)
    X[:, :, 0] = rng.uniform(0.6, 1.2, (5, 1))          # mean of lead 0 well past the step
    few = checked_integrated_gradients(model, X, 1, steps=(4,), tolerance=0.01)
    assert few.extras["flagged"].all() and np.all(few.extras["relative_error"] > 0.01)
    more = checked_integrated_gradients(model, X, 1, steps=(4, 64, 512), tolerance=0.01)
    assert np.all(more.extras["n_steps"] > 4)
    assert np.all(more.extras["relative_error"] < few.extras["relative_error"])
    assert more.extras["flagged"].sum() < len(X)
    ok = ~more.extras["flagged"]
    assert np.all(np.abs(more.delta[ok]) <= 0.01 * np.abs(more.values[ok].sum(axis=(1, 2))
                                                            - more.delta[ok]) + 1e-9)
    # slicing keeps the per-beat extras aligned (Explanation contract)
    assert len(more[ok].extras["n_steps"]) == int(ok.sum())
    with pytest.raises(ValueError, match="steps"):
        checked_integrated_gradients(model, X, 1, steps=(64, 16))


def test_time_ramp_and_centre_of_mass():
    n, T = 3, 64
    ramp = np.tile(np.arange(T, dtype=float), (n, 1))
    bump = np.exp(-0.5 * ((np.arange(T) - 20) / 3.0) ** 2)[None].repeat(n, 0)
    assert np.allclose(time_ramp(ramp), 1.0)
    assert np.all(time_ramp(bump) < 0.2)
    assert np.isnan(time_ramp(np.ones((1, T)))[0])
    com = centre_of_mass(np.eye(256)[[112, 130]])
    np.testing.assert_allclose(com, [0.0, 18 / config.BEAT_FS])
