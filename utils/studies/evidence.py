"""Checks that tell what a finding can rest on: split leakage, what the window shows,
and whether a time map follows the input or the clock.

* :func:`window_overlap` - for beats of one part of a split (e.g. the holdout test beats), the
  share of their window's samples that also lie in the window of a beat of another part (e.g.
  training) of the same record; :func:`overlap_summary` turns it into the figures for week 1.
* :func:`previous_r_visible` / :func:`previous_r_table` - whether the previous R peak lies inside
  the window (it starts ``R_OFFSET`` samples before R), from the RR intervals of ``BeatData``:
  prematurity can only be read from beats where it does.
* :func:`time_ramp` - rank correlation of a relevance-over-time map with the time index, per
  beat: a map that just grows towards the end of the window (an LSTM accumulating evidence)
  correlates near 1 whatever the input.
"""
from __future__ import annotations

import numpy as np

from utils.core import config
from utils.core.explain import Explanation


# ------------------------------------------------------------------------------------------------
# Split leakage
# ------------------------------------------------------------------------------------------------
def window_overlap(record, sample, query, reference, window: int = config.WINDOW,
                   r_offset: int = config.R_OFFSET, mode: str = "max") -> np.ndarray:
    """Overlap of each ``query`` beat's window with the windows of ``reference`` beats of the
    same record, as a share of the window (0..1), shape (len(query),).

    ``record``, ``sample``: per-beat record name and R sample (``BeatData.record``, ``.sample``;
    samples at the beat rate). Windows are ``[sample - r_offset, sample - r_offset + window)``.
    ``mode="max"``: the largest overlap with a single reference window (the nearest reference
    beat on either side); ``mode="union"``: the share of the query window covered by the union
    of all reference windows (the samples of the test window the model saw in training).
    """
    if mode not in ("max", "union"):
        raise ValueError(f"mode must be 'max' or 'union', got {mode!r}")
    record = np.asarray(record)
    sample = np.asarray(sample, dtype=np.int64)
    query = np.asarray(query, dtype=np.int64).reshape(-1)
    reference = np.asarray(reference, dtype=np.int64).reshape(-1)
    if record.shape != sample.shape:
        raise ValueError("record and sample must have the same shape")
    out = np.zeros(len(query))
    for r in np.unique(record[query]):
        q = query[record[query] == r]
        ref = np.sort(sample[reference[record[reference] == r]])
        if not len(ref):
            continue
        qs = sample[q]
        pos = np.searchsorted(ref, qs)
        if mode == "max":
            best = np.full(len(q), np.inf)
            for p in (pos - 1, pos):
                ok = (p >= 0) & (p < len(ref))
                d = np.full(len(q), np.inf)
                d[ok] = np.abs(ref[p[ok]] - qs[ok])
                best = np.minimum(best, d)
            share = np.clip(window - best, 0, window) / window
        else:
            # union of reference windows [s - r_offset, s - r_offset + window) over the query's
            # window: sorted starts, merged on the fly
            share = np.zeros(len(q))
            for i, s in enumerate(qs):
                a, b = s - r_offset, s - r_offset + window
                lo = np.searchsorted(ref, a + r_offset - window, side="right")
                hi = np.searchsorted(ref, b + r_offset, side="left")
                covered = np.zeros(window, dtype=bool)
                for t in ref[lo:hi]:
                    u0, u1 = max(a, t - r_offset), min(b, t - r_offset + window)
                    if u1 > u0:
                        covered[u0 - a:u1 - a] = True
                share[i] = covered.mean()
        out[np.flatnonzero(record[query] == r)] = share
    return out


def overlap_summary(data, split, window: int = config.WINDOW, r_offset: int = config.R_OFFSET
                    ) -> dict[str, float]:
    """Leakage figures of a split for week 1: share of test beats whose window overlaps the
    window of a training beat of the same record (any overlap), the median overlap (largest
    single overlap, share of the window) among all test beats and among the overlapping ones,
    the share whose immediately adjacent beat (previous or next extracted beat of the record) is
    in training, and the median share of test-window samples covered by training windows."""
    test, train = np.asarray(split.test), np.asarray(split.train)
    ov = window_overlap(data.record, data.sample, test, train, window, r_offset)
    cover = window_overlap(data.record, data.sample, test, train, window, r_offset, "union")
    # immediate neighbours in time (indices of one record are in sample order in BeatData)
    order = np.lexsort((data.sample, data.record))
    pos = np.empty(len(order), dtype=np.int64)
    pos[order] = np.arange(len(order))
    in_train = np.zeros(len(data.y), dtype=bool)
    in_train[train] = True
    adjacent = np.zeros(len(test), dtype=bool)
    for step in (-1, 1):
        nb = pos[test] + step
        ok = (nb >= 0) & (nb < len(order))
        nbi = order[np.clip(nb, 0, len(order) - 1)]
        same = ok & (data.record[nbi] == data.record[test])
        close = np.abs(data.sample[nbi] - data.sample[test]) < window
        adjacent |= same & close & in_train[nbi]
    hit = ov > 0
    return {
        "test_beats": int(len(test)),
        "share_overlapping": float(hit.mean()),
        "share_adjacent_in_train": float(adjacent.mean()),
        "median_overlap": float(np.median(ov)),
        "median_overlap_when_overlapping": float(np.median(ov[hit])) if hit.any() else 0.0,
        "median_covered_by_train": float(np.median(cover)),
    }


# ------------------------------------------------------------------------------------------------
# What the window shows
# ------------------------------------------------------------------------------------------------
def previous_r_visible(rr_prev, r_offset: int = config.R_OFFSET, fs: int = config.BEAT_FS
                       ) -> np.ndarray:
    """True where the previous R peak lies inside the window: ``rr_prev * fs <= r_offset``
    (the window starts ``r_offset`` samples before R). NaN (first beat of a record) is False."""
    rr = np.asarray(rr_prev, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return np.nan_to_num(rr, nan=np.inf) * fs <= r_offset


def next_r_visible(rr_next, window: int = config.WINDOW, r_offset: int = config.R_OFFSET,
                   fs: int = config.BEAT_FS) -> np.ndarray:
    """True where the next R peak lies inside the window (``rr_next * fs < window - r_offset``)."""
    rr = np.asarray(rr_next, dtype=np.float64)
    return np.nan_to_num(rr, nan=np.inf) * fs < window - r_offset


def previous_r_table(data, idx=None, r_offset: int = config.R_OFFSET,
                     fs: int = config.BEAT_FS):
    """Per class: beats, share whose window shows the previous R peak (and the next), median
    RR before the beat, and the record with most beats of the class with its share of the class
    and its own previous-R share (e.g. A: record 232). ``idx`` restricts to a subset."""
    import pandas as pd

    idx = np.arange(len(data.y)) if idx is None else np.asarray(idx)
    y, rec = data.y[idx], data.record[idx]
    prev = previous_r_visible(data.rr_prev[idx], r_offset, fs)
    nxt = next_r_visible(data.rr_next[idx], r_offset=r_offset, fs=fs)
    rows = {}
    for c in np.unique(y):
        sel = y == c
        names, counts = np.unique(rec[sel], return_counts=True)
        top = names[np.argmax(counts)]
        in_top = sel & (rec == top)
        rows[config.CLASSES[int(c)]] = {
            "beats": int(sel.sum()), "records": len(names),
            "previous_R_visible": float(prev[sel].mean()),
            "next_R_visible": float(nxt[sel].mean()),
            "median_rr_prev_s": float(np.nanmedian(data.rr_prev[idx][sel])),
            "top_record": str(top), "top_record_share": float(in_top.sum() / sel.sum()),
            "top_record_previous_R_visible": float(prev[in_top].mean()),
        }
    table = pd.DataFrame.from_dict(rows, orient="index")
    return table.loc[[c for c in config.CLASSES if c in table.index]]


# ------------------------------------------------------------------------------------------------
# Does a time map follow the input or the clock?
# ------------------------------------------------------------------------------------------------
def time_ramp(maps) -> np.ndarray:
    """Spearman rank correlation of each map (n, time) with the time index; NaN for a
    constant map. Near +1: relevance grows towards the end of the window whatever the beat."""
    from scipy.stats import spearmanr

    m = np.asarray(maps, dtype=np.float64)
    if m.ndim == 3:
        m = np.abs(m).sum(axis=2)
    if m.ndim != 2:
        raise ValueError(f"maps must be (n, time) or (n, time, leads), got {m.shape}")
    tt = np.arange(m.shape[1])
    out = np.full(len(m), np.nan)
    for i in range(len(m)):
        if np.ptp(m[i]) > 0:
            out[i] = spearmanr(tt, m[i]).statistic
    return out


def centre_of_mass(maps, fs: int = config.BEAT_FS, r_offset: int = config.R_OFFSET
                   ) -> np.ndarray:
    """Time (s, relative to R) of the centre of mass of each non-negative map (n, time)."""
    m = np.abs(np.asarray(maps, dtype=np.float64))
    if m.ndim == 3:
        m = m.sum(axis=2)
    tot = m.sum(axis=1)
    tt = (np.arange(m.shape[1]) - r_offset) / fs
    return np.divide(m @ tt, tot, out=np.full(len(m), np.nan), where=tot > 0)
