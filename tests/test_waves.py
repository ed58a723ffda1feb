"""Tests of utils.assess.waves: wave windows measured on synthetic beats with known onsets."""
from __future__ import annotations

import numpy as np
import pytest

from utils.core import config
from utils.assess.waves import (TILING, delineate, delineate_beats, median_beat, record_fiducials,
                                windows_from_beats, windows_from_fiducials, windows_table)

FS, R, W = config.BEAT_FS, config.R_OFFSET, config.WINDOW
t = np.arange(W, dtype=float)


def _bump(on: int, off: int, amp: float, biphasic: bool = False) -> np.ndarray:
    """A smooth wave that is exactly zero outside [on, off] (sin^2 window)."""
    x = np.zeros(W)
    s = (t[on:off + 1] - on) / (off - on)
    x[on:off + 1] = amp * np.sin(np.pi * s) * (np.sin(2 * np.pi * s) if biphasic
                                               else np.sin(np.pi * s))
    return x


def synthetic_beat(qrs_on: int, qrs_off: int, kind: str = "mono", p_peak: int | None = None,
                   p_sigma: float = 6.0, t_peak: int | None = None, t_sigma: float = 12.0,
                   t_amp: float = 0.3) -> np.ndarray:
    """A two-lead beat whose QRS is nonzero exactly on [qrs_on, qrs_off] (monophasic, biphasic
    or notched rSR'), with a Gaussian P wave and T wave."""
    if kind == "notch":
        mid = (qrs_on + qrs_off) // 2
        q = _bump(qrs_on, mid, 1.2) + _bump(mid, qrs_off, 1.0)
    else:
        q = _bump(qrs_on, qrs_off, 1.5, biphasic=kind == "bi")
    p_peak = qrs_on - 20 if p_peak is None else p_peak
    t_peak = qrs_off + 40 if t_peak is None else t_peak
    p = 0.15 * np.exp(-0.5 * ((t - p_peak) / p_sigma) ** 2)
    tw = t_amp * np.exp(-0.5 * ((t - t_peak) / t_sigma) ** 2)
    lead0 = q + p + tw
    return np.stack([lead0, 0.5 * lead0], axis=1)


@pytest.mark.parametrize("kind", ["mono", "bi", "notch"])
@pytest.mark.parametrize("on,off", [(R - 8, R + 8), (R - 12, R + 14), (R - 12, R + 24),
                                    (R - 10, R + 30)])
def test_qrs_onset_and_offset_are_found(kind, on, off):
    """Narrow (90 ms) to paced-wide (220 ms) complexes, notched ones included."""
    f = delineate(synthetic_beat(on, off, kind))
    assert abs(f["qrs_on"] - on) <= 1
    assert abs(f["qrs_off"] - (off + 1)) <= 1


def test_p_wave_and_t_end_by_the_tangent_method():
    beat = synthetic_beat(R - 8, R + 9, p_peak=R - 30, p_sigma=4.0, t_peak=R + 55, t_sigma=9.0)
    f = delineate(beat)
    assert abs(f["p_peak"] - (R - 30)) <= 1
    # deviation above 30 % of the peak: +-sigma * sqrt(2 ln(1/0.3)) = +-1.55 sigma
    assert abs(f["p_on"] - (R - 30 - 1.55 * 4)) <= 2
    assert abs(f["p_off"] - (R - 30 + 1.55 * 4 + 1)) <= 2
    assert f["p_amplitude"] == pytest.approx(0.15, rel=0.1)
    assert abs(f["t_peak"] - (R + 55)) <= 1
    # the tangent at the inflection (peak + sigma) of a Gaussian meets zero at peak + 2 sigma
    assert abs(f["t_end"] - (R + 55 + 2 * 9)) <= 2


def test_a_beat_without_p_wave_reports_a_small_amplitude():
    beat = synthetic_beat(R - 8, R + 9)
    p_wave = 0.15 * np.exp(-0.5 * ((t - (R - 28)) / 6.0) ** 2)
    flat = beat - np.stack([p_wave, 0.5 * p_wave], axis=1)
    assert delineate(flat)["p_amplitude"] < 0.01 < delineate(beat)["p_amplitude"]


def test_windows_and_tiling():
    beat = synthetic_beat(R - 8, R + 9)
    f = delineate(beat, paced=True)
    w = windows_from_fiducials(f)
    assert w["QRS"] == (f["qrs_on"], f["qrs_off"])
    assert w["ST-T"][0] == w["QRS"][1]
    assert w["pacing spike"][1] == f["qrs_on"] + round(10 * FS / 1000)
    tiles = windows_from_fiducials(f, tiling=True)
    assert tuple(tiles) == TILING
    edges = [a for a, _ in tiles.values()] + [W]
    assert edges[0] == 0 and all(tiles[n][1] == tiles[m][0] for n, m in zip(TILING, TILING[1:]))
    table = windows_table({"N": w})
    assert table.loc["N", "QRS ms"] == round((f["qrs_off"] - f["qrs_on"]) * 1000 / FS)


def test_median_of_beats_with_offsets_and_noise():
    rng = np.random.default_rng(0)
    on, off = R - 12, R + 14
    base = synthetic_beat(on, off)
    beats = base[None] + rng.normal(0, 0.01, (40, W, 2)) + rng.normal(0, 0.5, (40, 1, 2))
    assert np.abs(median_beat(beats) - (base - np.median(base, axis=0))).max() < 0.05
    w = windows_from_beats(beats)
    assert abs(w["QRS"][0] - on) <= 2 and abs(w["QRS"][1] - (off + 1)) <= 2
    per_beat = delineate_beats(beats[:5])
    assert len(per_beat) == 5 and (per_beat["qrs_on"] - on).abs().max() <= 3


def test_class_window_is_the_median_over_records():
    """Three records with QRS widths 90, 120 and 200 ms: the class QRS is the middle one,
    not the blur of a pooled median beat."""
    rng = np.random.default_rng(1)
    shapes = {"a": (R - 8, R + 8), "b": (R - 10, R + 12), "c": (R - 12, R + 24)}
    beats, record = [], []
    for name, (on, off) in shapes.items():
        beats.append(synthetic_beat(on, off)[None] + rng.normal(0, 0.005, (8, W, 2)))
        record += [name] * 8
    beats = np.concatenate(beats)
    table = record_fiducials(beats, np.array(record), "/")
    assert list(table.index) == ["a", "b", "c"] and "spike_on" in table.columns
    w = windows_from_beats(beats, np.array(record), "/")
    assert abs(w["QRS"][0] - (R - 10)) <= 1 and abs(w["QRS"][1] - (R + 13)) <= 1
    assert "pacing spike" in w


def test_bad_input():
    with pytest.raises(ValueError, match="flat"):
        delineate(np.zeros((W, 2)))
    with pytest.raises(ValueError, match="NaN"):
        delineate(np.full((W, 2), np.nan))
    with pytest.raises(ValueError, match="r_offset"):
        delineate(np.ones(W), r_offset=W)
    with pytest.raises(ValueError, match="beats"):
        median_beat(np.zeros((0, W, 2)))


def test_region_share_measured_uses_each_class_window():
    from utils.assess.waves import region_share_measured

    tiles = {"N": {"before P": (0, 50), "P wave + PR": (50, 100), "QRS": (100, 124),
                   "ST-T": (124, 180), "after T": (180, W)},
             "V": {"before P": (0, 50), "P wave + PR": (50, 95), "QRS": (95, 140),
                   "ST-T": (140, 180), "after T": (180, W)}}
    rel = np.zeros((2, W, 2))
    rel[:, 96:139, 0] = 1.0          # inside V's measured QRS, partly outside N's
    table = region_share_measured(rel, np.array([0, 3]), tiles)
    assert table.loc["V", "QRS"] == pytest.approx(1.0)
    assert table.loc["N", "QRS"] == pytest.approx(24 / 43)
    assert list(table.columns) == list(TILING) + ["n"]
