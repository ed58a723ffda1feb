"""Wave windows of the beat (P wave, QRS, ST-T, pacing spike) measured from the signals.

The fixed windows of :func:`utils.assess.relevance.wave_regions` (QRS = R ± 60 ms) cut a 120-200 ms
QRS (L, R, V, paced beats) in half. Here the windows are **measured** per class from the
signals: a documented rule runs on the median beat of each record (beats drawn with
:func:`utils.data.sampling.sample_by_record`) and the class window is the median over the records, so
no record dominates:

* **QRS** - the slope envelope ``e(t) = sum_leads |dx/dt|``; its local maxima above
  ``significant`` (30 %) of the largest slope within R - 150 ms .. R + 200 ms are the slopes of
  the QRS; onset = walking left from the first of them until ``e`` falls below
  ``qrs_threshold`` (15 %) of that slope, offset = the same to the right of the last one (the
  threshold-on-slope rule of classic delineators, e.g. Laguna et al. 1994, relative to each wave's
  own slope rather than the global maximum, so the slow terminal part of a bundle-branch block
  is kept). On synthetic beats it finds onset and offset within 1 sample (tests/test_waves.py).
* **Per class** the rule runs on the median beat of each **record** (>= ``min_beats`` beats of
  the class in a record-stratified sample) and the class window is the median of the records'
  fiducials: a median beat over records of different morphology blurs the QRS edges (measured:
  the pooled V median beat gives 67 ms, the median over V records 139 ms). QRS widths found
  with the defaults (20 beats per record, seed 42; ms): N 67, f 67, A 72, F 94, L 111, R 133,
  V 139, paced 206 - textbook order (N < 120 ms; bundle-branch blocks, PVC and RV pacing
  >= 120 ms); L's 111 ms is slightly short (the threshold rule trims the slurred onset).
* **P wave** - relative to the straight line joining the beat at QRS onset - 300 ms (TP
  baseline) and at QRS onset (PR level), which removes baseline drift: the largest deviation
  between QRS onset - 300 ms and QRS onset - 30 ms is the P peak; the wave extends on both
  sides while the deviation stays above ``wave_fraction`` (30 %) of that peak. ``P amplitude`` is reported, so an absent P (paced
  rhythm) shows as a small amplitude rather than a missing key.
* **ST-T** - from QRS offset to the end of the T wave by the tangent method (the tangent at the
  steepest point of the descending limb after the T peak meets the isoelectric level), the
  classic manual rule of QT measurement (Lepeschkin & Surawicz 1952; Postema & Wilde 2014).
* **pacing spike** (paced classes ``/`` and ``f``) - **placed, not detected**: the pacemaker
  stimulus immediately precedes the paced QRS, but after decimation to 180 Hz (anti-alias
  filter at 90 Hz) the 0.5 ms spike is smeared into the QRS onset and cannot be found on its
  own. The window is the ``spike_ms`` (30 ms) ending at the measured QRS onset + 10 ms.

Why a rule on class-median beats and not neurokit2's ``ecg_delineate``: neurokit2 0.3 requires
numpy >= 2 (the course pins numpy 1.26.4 for alibi); 0.2.x would add a package and its
delineators (DWT/CWT/peak) are built for continuous recordings of normal morphology, not for
1.4 s windows of paced or bundle-branch-block beats. A median beat per class is also what the
class summaries of the course are read against. The rule is tested on synthetic beats with known
onsets (tests/test_waves.py).

Positions are samples of the beat window (``config.WINDOW`` = 256 samples at
``config.BEAT_FS`` = 180 Hz, R at ``config.R_OFFSET`` = 112); windows are ``(start, stop)`` with
``stop`` exclusive, the format of ``utils.assess.relevance.wave_regions``.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from utils.core import config
from utils.data.mitdb import load_beats
from utils.data.sampling import sample_by_record
from utils.assess.relevance import region_share

#: Names of the tiling regions (as in utils.assess.relevance.wave_regions), in window order.
TILING: tuple[str, ...] = ("before P", "P wave + PR", "QRS", "ST-T", "after T")
#: Classes whose beats are paced (a pacing-spike window is added).
PACED: tuple[str, ...] = ("/", "f")


def _ms(ms: float, fs: int) -> int:
    return int(round(ms * fs / 1000.0))


def _as_2d(beat) -> np.ndarray:
    b = np.asarray(beat, dtype=np.float64)
    if b.ndim == 1:
        b = b[:, None]
    if b.ndim != 2:
        raise ValueError(f"beat must be (window,) or (window, leads), got {b.shape}")
    if not np.all(np.isfinite(b)):
        raise ValueError("beat contains NaN or infinite values")
    return b


def delineate(beat, fs: int = config.BEAT_FS, r_offset: int = config.R_OFFSET, *,
              qrs_threshold: float = 0.15, significant: float = 0.30, wave_fraction: float = 0.30,
              paced: bool = False, spike_ms: float = 30.0) -> dict[str, float]:
    """Fiducial points of one beat (a class median beat, or a single beat) in samples.
    ``beat`` is (window,) or (window, leads) in mV (or any unit: the rule uses relative
    thresholds). Returns ``qrs_on``, ``qrs_off`` (exclusive), ``p_on``, ``p_off``, ``p_peak``,
    ``p_amplitude`` (|deviation| at the P peak, in the unit of the beat), ``t_peak``, ``t_end``
    and, with ``paced=True``, ``spike_on``/``spike_off``. See the module docstring for the rule.
    """
    b = _as_2d(beat)
    n = len(b)
    if not 0 <= r_offset < n:
        raise ValueError(f"r_offset {r_offset} outside a window of {n} samples")
    # --- QRS: slope envelope; first and last significant slope peak; walk out to a fraction
    env = np.abs(np.gradient(b, axis=0)).sum(axis=1)
    lo, hi = max(0, r_offset - _ms(150, fs)), min(n, r_offset + _ms(200, fs))
    seg = env[lo:hi]
    peak = seg.max()
    if peak <= 0:
        raise ValueError("flat beat: no QRS slope to delineate")
    inner = np.arange(1, len(seg) - 1)
    is_peak = (seg[inner] >= seg[inner - 1]) & (seg[inner] >= seg[inner + 1]) \
        & (seg[inner] >= significant * peak)
    peaks = lo + inner[is_peak] if is_peak.any() else np.array([lo + int(np.argmax(seg))])
    first, last = int(peaks.min()), int(peaks.max())
    on = first
    while on > lo and env[on - 1] > qrs_threshold * env[first]:
        on -= 1
    off = last
    while off < hi - 1 and env[off + 1] > qrs_threshold * env[last]:
        off += 1
    qrs_on, qrs_off = int(on), int(off) + 1
    out: dict[str, float] = {"qrs_on": qrs_on, "qrs_off": qrs_off}
    # --- P wave: largest deviation before the QRS from the straight line joining the levels at
    # the ends of the search interval (the TP and PR baselines; removes baseline drift)
    level = b[max(qrs_on - 1, 0)]
    p_lo, p_hi = max(0, qrs_on - _ms(300, fs)), max(0, qrs_on - _ms(30, fs))
    if p_hi - p_lo >= 3:
        end = max(qrs_on - 1, p_lo + 1)
        ramp = np.linspace(0.0, 1.0, end - p_lo + 1)[:, None]
        line = b[p_lo] + ramp * (b[end] - b[p_lo])
        dev = np.abs(b[p_lo:end + 1] - line).max(axis=1)
        k = int(np.argmax(dev[: p_hi - p_lo]))
        amp = float(dev[k])
        k_on = k
        while k_on > 0 and dev[k_on - 1] > wave_fraction * amp:
            k_on -= 1
        k_off = k
        while k_off < len(dev) - 1 and dev[k_off + 1] > wave_fraction * amp:
            k_off += 1
        out.update(p_on=p_lo + k_on, p_off=p_lo + k_off + 1, p_peak=p_lo + k, p_amplitude=amp)
    else:
        out.update(p_on=qrs_on, p_off=qrs_on, p_peak=qrs_on, p_amplitude=0.0)
    # --- T wave: peak after the QRS, end by the tangent method on the lead with the largest T
    t_lo, t_hi = min(n - 1, qrs_off + _ms(40, fs)), min(n, qrs_off + _ms(450, fs))
    if t_hi - t_lo >= 3:
        after_level = b[t_lo:t_hi]
        dev_t = np.abs(after_level - level)
        lead = int(np.argmax(dev_t.max(axis=0)))
        t_peak = t_lo + int(np.argmax(dev_t[:, lead]))
        x = b[:, lead]
        s_hi = min(n, t_peak + _ms(200, fs))
        if s_hi - t_peak >= 2:
            slope = np.gradient(x)[t_peak:s_hi]
            sign = np.sign(x[t_peak] - level[lead])
            # steepest return towards the level: the most negative slope times the T polarity
            k = t_peak + int(np.argmin(slope * sign))
            s = np.gradient(x)[k]
            t_end = k + (level[lead] - x[k]) / s if s != 0 else s_hi
            t_end = int(np.clip(round(t_end), t_peak + 1, n))
        else:
            t_end = n
        out.update(t_peak=int(t_peak), t_end=int(t_end))
    else:
        out.update(t_peak=n, t_end=n)
    if paced:
        stop = min(n, qrs_on + _ms(10, fs))
        out.update(spike_on=max(0, stop - _ms(spike_ms, fs)), spike_off=stop)
    return out


def windows_from_fiducials(f: dict[str, float], window: int = config.WINDOW,
                           tiling: bool = False) -> dict[str, tuple[int, int]]:
    """Fiducials (from :func:`delineate`) as windows ``name -> (start, stop)``.
    ``tiling=False``: the waves ``"P wave"``, ``"QRS"``, ``"ST-T"`` (QRS offset to T end) and,
    when present, ``"pacing spike"``. ``tiling=True``: the five regions of
    ``utils.assess.relevance.wave_regions`` (``before P``, ``P wave + PR``, ``QRS``, ``ST-T``,
    ``after T``) with measured edges, covering the window without overlap (empty regions are
    dropped), ready for ``utils.assess.relevance.region_share``.
    """
    def clip(v) -> int:
        return int(np.clip(v, 0, window))

    if tiling:
        edges = [0, clip(f["p_on"]), clip(f["qrs_on"]), clip(f["qrs_off"]), clip(f["t_end"]),
                 window]
        edges = list(np.maximum.accumulate(edges))
        return {name: (a, b) for name, a, b in zip(TILING, edges[:-1], edges[1:]) if b > a}
    out = {"P wave": (clip(f["p_on"]), clip(f["p_off"])),
           "QRS": (clip(f["qrs_on"]), clip(f["qrs_off"])),
           "ST-T": (clip(f["qrs_off"]), clip(f["t_end"]))}
    if "spike_on" in f:
        out["pacing spike"] = (clip(f["spike_on"]), clip(f["spike_off"]))
    return {k: v for k, v in out.items() if v[1] > v[0]}


def median_beat(beats) -> np.ndarray:
    """Median beat (window, leads) of beats (n, window, leads), each first shifted to a zero
    median per lead (removes baseline offsets so the median is not blurred by them)."""
    b = np.asarray(beats, dtype=np.float64)
    if b.ndim != 3 or not len(b):
        raise ValueError(f"beats must be a non-empty (n, window, leads) array, got {b.shape}")
    return np.median(b - np.median(b, axis=1, keepdims=True), axis=0)


def record_fiducials(beats, record, cls: str | None = None, min_beats: int = 5,
                     fs: int = config.BEAT_FS, r_offset: int = config.R_OFFSET, **rule):
    """Fiducials of the median beat of each record (one row per record with at least
    ``min_beats`` beats; column ``beats``). ``cls`` in ``PACED`` adds the pacing spike."""
    import pandas as pd

    b = np.asarray(beats, dtype=np.float64)
    record = np.asarray(record)
    if len(record) != len(b):
        raise ValueError(f"{len(record)} record names for {len(b)} beats")
    rows = {}
    for r in np.unique(record):
        sel = record == r
        if sel.sum() >= min_beats:
            f = delineate(median_beat(b[sel]), fs, r_offset, paced=cls in PACED, **rule)
            rows[str(r)] = {**f, "beats": int(sel.sum())}
    if not rows:   # too few beats everywhere: one pooled median beat
        f = delineate(median_beat(b), fs, r_offset, paced=cls in PACED, **rule)
        rows["pooled"] = {**f, "beats": len(b)}
    return pd.DataFrame.from_dict(rows, orient="index")


def windows_from_beats(beats, record=None, cls: str | None = None, tiling: bool = False,
                       min_beats: int = 5, fs: int = config.BEAT_FS,
                       r_offset: int = config.R_OFFSET, **rule) -> dict[str, tuple[int, int]]:
    """Measured wave windows of beats (n, window, leads) in mV.
    With ``record`` (n,) the rule runs on each record's median beat and the windows are the
    median fiducials over records (:func:`record_fiducials`); without it, on the median beat of
    all beats. ``cls`` in ``PACED`` adds the pacing spike.
    """
    b = np.asarray(beats, dtype=np.float64)
    if record is None:
        record = np.zeros(len(b), dtype=int)
        min_beats = 1
    table = record_fiducials(b, record, cls, min_beats, fs, r_offset, **rule)
    f = {k: float(np.median(table[k])) for k in table.columns if k != "beats"}
    f = {k: (v if k == "p_amplitude" else int(round(v))) for k, v in f.items()}
    return windows_from_fiducials(f, window=b.shape[1], tiling=tiling)


def delineate_beats(beats, fs: int = config.BEAT_FS, r_offset: int = config.R_OFFSET,
                    paced: bool = False, **rule):
    """Per-beat fiducials (a DataFrame, one row per beat): :func:`delineate` on each beat.
    Noisier than the class median; use it to see the spread of QRS width within a class."""
    import pandas as pd

    b = np.asarray(beats, dtype=np.float64)
    if b.ndim != 3:
        raise ValueError(f"beats must be (n, window, leads), got {b.shape}")
    return pd.DataFrame([delineate(x, fs, r_offset, paced=paced, **rule) for x in b])


@lru_cache(maxsize=4)
def _course_windows(per_record: int, seed: int, tiling: bool
                    ) -> dict[str, dict[str, tuple[int, int]]]:

    data = load_beats(progress=False)
    s = sample_by_record(data.y, data.record, per_record, seed=seed)
    out = {}
    for c, name in enumerate(config.CLASSES):
        idx = s.indices[data.y[s.indices] == c]
        if len(idx):
            out[name] = windows_from_beats(data.millivolts(idx), data.record[idx], name,
                                           tiling=tiling)
    idx = s.indices
    out["all"] = windows_from_beats(data.millivolts(idx), data.record[idx], None, tiling=tiling)
    return out


def wave_windows(cls: str | None = None, *, per_record: int = 20, seed: int = config.SEED,
                 tiling: bool = False, data=None) -> dict[str, tuple[int, int]]:
    """The course's measured wave windows for beat class ``cls`` (``None``: all classes pooled).
    Computed once per session from the MIT-BIH beats (``utils.data.mitdb.load_beats``, from its cache)
    on the median beats of the records of a record-stratified sample (``per_record`` beats of
    every record; the median of the records' fiducials):
    ``{"P wave": (a, b), "QRS": (a, b), "ST-T": (a, b)}`` (+ ``"pacing spike"`` for paced
    classes) in samples of the 256-sample window (R at 112), or with ``tiling=True`` the five
    regions of ``utils.assess.relevance.wave_regions`` with measured edges. ``data`` (a
    :class:`utils.data.mitdb.BeatData`) uses those beats instead of the course data set.
    """
    if cls is not None and cls not in config.CLASSES:
        raise ValueError(f"Unknown beat class {cls!r}; valid: {config.CLASSES}")
    if data is None:
        table = _course_windows(int(per_record), int(seed), bool(tiling))
        return dict(table["all" if cls is None else cls])

    c = None if cls is None else config.CLASSES.index(cls)
    mask = None if c is None else data.y == c
    s = sample_by_record(data.y, data.record, per_record, mask=mask, seed=seed)
    return windows_from_beats(data.millivolts(s.indices), data.record[s.indices], cls,
                              tiling=tiling)


def class_wave_windows(per_record: int = 20, seed: int = config.SEED, tiling: bool = False
                       ) -> dict[str, dict[str, tuple[int, int]]]:
    """``{class: wave windows}`` for every course class (see :func:`wave_windows`)."""
    return {c: wave_windows(c, per_record=per_record, seed=seed, tiling=tiling)
            for c in config.CLASSES}


def windows_table(windows: dict[str, dict[str, tuple[int, int]]], fs: int = config.BEAT_FS,
                  r_offset: int = config.R_OFFSET):
    """The per-class windows as a table in ms relative to R (for printing in a notebook)."""
    import pandas as pd

    rows = {}
    for cls, w in windows.items():
        row = {}
        for name, (a, b) in w.items():
            row[f"{name} start"] = round((a - r_offset) * 1000 / fs)
            row[f"{name} stop"] = round((b - r_offset) * 1000 / fs)
            if name == "QRS":
                row["QRS ms"] = round((b - a) * 1000 / fs)
        rows[cls] = row
    return pd.DataFrame.from_dict(rows, orient="index")


def region_share_measured(relevance, y, windows: dict[str, dict[str, tuple[int, int]]] | None
                          = None):
    """``utils.assess.relevance.region_share`` with the measured tiling of each beat's class.
    ``windows`` maps a class symbol to its tiling (default: ``wave_windows(c, tiling=True)`` of
    the course data). Rows: classes present in ``y``; columns: the five regions and ``n``.
    """
    import pandas as pd

    r = np.asarray(relevance, dtype=np.float64)
    y = np.asarray(y)
    if len(r) != len(y):
        raise ValueError(f"{len(y)} labels for {len(r)} relevance maps")
    parts = []
    for i, c in enumerate(config.CLASSES):
        sel = y == i
        if sel.any():
            w = windows[c] if windows is not None else wave_windows(c, tiling=True)
            parts.append(region_share(r[sel], y[sel], w))
    return pd.concat(parts).reindex(columns=list(TILING) + ["n"])
