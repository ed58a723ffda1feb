"""Tests of utils.core.segments (hypothesis for the shape/partition invariants)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from utils.core import segments


@settings(max_examples=40, deadline=None)
@given(st.integers(8, 300), st.integers(1, 32), st.integers(1, 3))
def test_segments_partition_the_beat(window, n_segments, leads):
    n_segments = min(n_segments, window)
    mask = segments.segment_mask(window, n_segments, leads)
    assert mask.shape == (leads * n_segments, window, leads)
    np.testing.assert_array_equal(mask.sum(axis=0), 1)  # every sample in exactly one feature
    bounds = segments.segment_bounds(window, n_segments)
    assert bounds[0, 0] == 0 and bounds[-1, 1] == window
    assert (np.diff(bounds, axis=1) >= 1).all()


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 4), st.integers(2, 16))
def test_apply_mask_all_on_is_identity_and_all_off_is_replacement(n, n_segments):
    X = np.random.default_rng(n).normal(size=(n, 64, 2)).astype(np.float32)
    k = 2 * n_segments
    np.testing.assert_array_equal(segments.apply_mask(X, np.ones((n, k)), 0.0, n_segments), X)
    off = segments.apply_mask(X, np.zeros((n, k)), 7.0, n_segments)
    assert (off == 7.0).all()


def test_apply_mask_single_beat_many_perturbations():
    beat = np.arange(32, dtype=np.float32).reshape(16, 2)
    keep = np.ones((3, 4))
    keep[1, 0] = 0  # lead 0, first segment (samples 0..7)
    keep[2, 3] = 0  # lead 1, last segment
    out = segments.apply_mask(beat, keep, replacement=-1.0, n_segments=2)
    assert out.shape == (3, 16, 2)
    assert (out[1, :8, 0] == -1).all() and (out[1, 8:, 0] == beat[8:, 0]).all()
    assert (out[2, 8:, 1] == -1).all() and (out[2, :, 0] == beat[:, 0]).all()


def test_apply_mask_wrong_feature_count():
    with pytest.raises(ValueError, match="features"):
        segments.apply_mask(np.zeros((16, 2)), np.ones((1, 5)), 0.0, n_segments=2)


def test_bad_segment_count():
    with pytest.raises(ValueError):
        segments.segment_bounds(10, 11)


def test_labels():
    labels = segments.segment_labels(n_segments=2)
    assert len(labels) == 4 and labels[0].startswith("lead0 -0.62")
