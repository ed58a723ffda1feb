"""Tests of utils.data.rhythm on a hand-made annotation list (fs = 100 Hz)."""
from __future__ import annotations

import numpy as np
import pytest

from utils.data import rhythm

# beats at 0, 1, 2, 2.6 (premature), 4, 5 s; '+' is a rhythm annotation (not a beat),
# 'j' and 'Q' are beats outside the 8 course classes and must count as beats
SAMPLES = np.array([0, 100, 200, 250, 260, 400, 500])
SYMBOLS = np.array(["N", "j", "N", "+", "A", "Q", "N"])
FS = 100
COL = {name: i for i, name in enumerate(rhythm.RR_FEATURES)}


def test_feature_names():
    assert rhythm.RR_FEATURES[:4] == ("pre_rr", "post_rr", "local_rr", "record_rr")
    assert len(rhythm.RR_FEATURES) == 9


def test_pre_post_and_record_mean():
    beats, f = rhythm.rr_features(SAMPLES, SYMBOLS, FS, local_beats=2)
    assert beats.tolist() == [0, 100, 200, 260, 400, 500]  # '+' skipped, j and Q kept
    rr = np.array([1.0, 1.0, 0.6, 1.4, 1.0])
    assert np.allclose(f[1:, COL["pre_rr"]], rr)
    assert np.allclose(f[:-1, COL["post_rr"]], rr)
    assert np.allclose(f[:, COL["record_rr"]], rr.mean())  # 1.0 s
    # normalised by the record's mean (1.0 s here, so equal to the raw values)
    assert np.allclose(f[:, COL["pre_rr_norm"]], f[:, COL["pre_rr"]] / rr.mean())
    assert f[3, COL["pre_rr_norm"]] == pytest.approx(0.6)


def test_local_mean_and_edges():
    _, f = rhythm.rr_features(SAMPLES, SYMBOLS, FS, local_beats=2)
    # local_beats=2: the interval before and the one after each beat
    assert np.allclose(f[1:-1, COL["local_rr"]], [1.0, 0.8, 1.0, 1.2])
    # first and last beat: one interval only; the missing pre/post RR is the local mean
    assert f[0, COL["local_rr"]] == pytest.approx(1.0) and f[0, COL["pre_rr"]] == pytest.approx(1.0)
    assert f[-1, COL["local_rr"]] == pytest.approx(1.0)
    assert f[-1, COL["post_rr"]] == pytest.approx(1.0)
    # prematurity relative to the local rhythm
    assert f[3, COL["pre_rr_local"]] == pytest.approx(0.6 / 1.0)
    assert f[2, COL["post_rr_local"]] == pytest.approx(0.6 / 0.8)
    # a window longer than the record averages every interval
    _, wide = rhythm.rr_features(SAMPLES, SYMBOLS, FS, local_beats=20)
    assert np.allclose(wide[:, COL["local_rr"]], 1.0)
    assert np.all(np.isfinite(wide))


def test_features_at_and_errors():
    beats, f = rhythm.rr_features(SAMPLES, SYMBOLS, FS)
    rows = rhythm.features_at(beats, f, np.array([260, 0]))
    assert np.array_equal(rows, f[[3, 0]])
    with pytest.raises(KeyError):
        rhythm.features_at(beats, f, np.array([250]))  # the '+' annotation is not a beat
    with pytest.raises(ValueError):
        rhythm.rr_features(np.array([0, 5]), np.array(["N", "+"]), FS)  # one beat only
    with pytest.raises(ValueError):
        rhythm.rr_features(SAMPLES[::-1], SYMBOLS[::-1], FS)
    assert list(rhythm.feature_frame(f).columns) == list(rhythm.RR_FEATURES)


def test_matches_beatdata_rr_fields(mitdb_beats, mitdb_dir):
    from utils.data.mitdb import decimate_record, load_record

    rec = decimate_record(load_record("100", mitdb_dir))
    sub = mitdb_beats.subset(np.flatnonzero(mitdb_beats.record == "100"))
    f = rhythm.record_features(rec, sub.sample)
    inner = np.isfinite(sub.rr_prev) & np.isfinite(sub.rr_next)
    assert np.allclose(f[inner, 0], sub.rr_prev[inner], atol=1e-5)
    assert np.allclose(f[inner, 1], sub.rr_next[inner], atol=1e-5)
    assert 0.7 < f[0, COL["record_rr"]] < 0.9  # record 100: about 75 mitdb_beats per minute
