"""Tests of utils.core.stored_frames: DataFrames through plain arrays and an .npz file (the way
utils.core.results.cached stores them) and back."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st

from utils.core.results import cached
from utils.core.stored_frames import arrays_to_frames, frames_to_arrays


def _example():
    shares = pd.DataFrame({"method": ["lrp", "ig", "lrp"], "class": ["N", "VEB", "SVEB"],
                           "chest lead": [0.2, 0.3, np.nan], "n": [3, 4, 5],
                           "ok": [True, False, True], "note": ["", None, "few"]})
    per_record = pd.DataFrame({"MLII": [0.1, 0.5], "n_beats": [20, 7]},
                              index=pd.Index(["100", "232"], name="record"))
    return {"shares": shares, "per_record": per_record, "empty": shares.iloc[:0]}


def test_round_trip_keeps_values_dtypes_order_and_index():
    frames = _example()
    back = arrays_to_frames(frames_to_arrays(frames))
    assert set(back) == set(frames)
    s = back["shares"]
    assert list(s.columns) == list(frames["shares"].columns)
    assert s["n"].dtype == np.int64 and s["ok"].dtype == bool
    assert np.allclose(s["chest lead"], frames["shares"]["chest lead"], equal_nan=True)
    assert list(s["class"]) == ["N", "VEB", "SVEB"]
    assert s["note"].iloc[0] == "" and pd.isna(s["note"].iloc[1])
    pd.testing.assert_frame_equal(back["per_record"], frames["per_record"])
    assert back["empty"].empty and list(back["empty"].columns) == list(frames["shares"].columns)


def test_arrays_are_plain_and_go_through_cached(tmp_path):
    arrays = frames_to_arrays(_example())
    assert all(a.dtype != object for a in arrays.values())
    calls = []

    def compute():
        calls.append(1)
        return arrays

    first = arrays_to_frames(cached("t", compute, params={"a": 1}, folder=tmp_path))
    second = arrays_to_frames(cached("t", compute, params={"a": 1}, folder=tmp_path))
    assert len(calls) == 1            # the second call read the file
    for name in first:
        pd.testing.assert_frame_equal(first[name], second[name])


def test_bad_names_and_objects_are_refused():
    with pytest.raises(ValueError):
        frames_to_arrays({"a__b": pd.DataFrame({"x": [1]})})
    with pytest.raises(TypeError):
        frames_to_arrays({"a": [1, 2]})
    with pytest.raises(ValueError):
        frames_to_arrays({"a": pd.DataFrame([[1, 2]], columns=["x", "x"])})


@settings(max_examples=25, deadline=None)
@given(values=st.lists(st.floats(allow_nan=True, allow_infinity=False, width=64), min_size=0,
                       max_size=12),
       text=st.lists(st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=6), min_size=0, max_size=12))
def test_any_float_and_text_column_survives(values, text):
    n = min(len(values), len(text))
    frame = pd.DataFrame({"x": np.array(values[:n], dtype=np.float64),
                          "t": pd.Series(text[:n], dtype=object)})
    back = arrays_to_frames(frames_to_arrays({"f": frame}))["f"]
    assert np.array_equal(back["x"].to_numpy(), frame["x"].to_numpy(), equal_nan=True)
    assert list(back["t"]) == list(frame["t"])
