"""The rhythm modality: RR-interval features of every beat, from the record's annotations.

A premature beat (A, V) is recognised by its timing relative to the patient's own rhythm at
least as much as by its shape. The fixed beat window of the course shows the previous R peak
for only some beats, so the features below are computed from *all beat annotations* of the
record (every symbol of :data:`utils.data.mitdb.BEAT_SYMBOLS`, not only the 8 course classes) and
given to the models as a separate input (:mod:`utils.models.multimodal`).

Features (:data:`RR_FEATURES`, one row per beat annotation):

* ``pre_rr`` [s]: interval from the previous beat (:func:`utils.data.mitdb.rr_intervals`, the same
  definition as ``BeatData.rr_prev``);
* ``post_rr`` [s]: interval to the next beat (``BeatData.rr_next``);
* ``local_rr`` [s]: mean of the ``local_beats`` RR intervals centred on the beat (half before
  it, including ``pre_rr``, half after it, including ``post_rr``), fewer near the record edges;
* ``record_rr`` [s]: mean RR interval of the whole record (the patient's mean; uses the whole
  recording, as the published inter-patient methods do - the classifier is offline);
* ``pre_rr_norm``, ``post_rr_norm``, ``local_rr_norm``: the first three divided by
  ``record_rr`` (prematurity relative to the patient's own heart rate);
* ``pre_rr_local``, ``post_rr_local``: ``pre_rr`` and ``post_rr`` divided by ``local_rr``
  (prematurity relative to the current rhythm: a premature beat after a pause, as in record
  232, is short against its neighbours but not against the record's mean).

Record edges: the first beat has no previous interval and the last beat no next one; the
missing value is filled with the beat's ``local_rr`` (the beat is treated as regular on its
open side), so every feature is finite for records with at least two beats. Intervals that
span an unannotated stretch (e.g. ventricular flutter waves ``!``, which are not in
``BEAT_SYMBOLS``) are kept as they are.
"""
from __future__ import annotations

import numpy as np

from utils.data.mitdb import BEAT_SYMBOLS, rr_intervals

#: Column names of :func:`rr_features` (units: seconds, or ratios for ``*_norm``).
RR_FEATURES: tuple[str, ...] = ("pre_rr", "post_rr", "local_rr", "record_rr",
                                "pre_rr_norm", "post_rr_norm", "local_rr_norm",
                                "pre_rr_local", "post_rr_local")
#: Number of RR intervals averaged for ``local_rr``.
LOCAL_BEATS: int = 10


def rr_features(ann_samples: np.ndarray, ann_symbols: np.ndarray, fs: float,
                local_beats: int = LOCAL_BEATS) -> tuple[np.ndarray, np.ndarray]:
    """RR features of every *beat* annotation of one record.

    ``ann_samples`` (sorted) and ``ann_symbols`` are all annotations of the record (non-beat
    ones such as rhythm changes ``+`` or noise ``~`` are skipped). Returns ``(beat_samples,
    features)``: the samples of the beat annotations (n_beats,) and the (n_beats, 9) array of
    :data:`RR_FEATURES`. Raises ``ValueError`` for fewer than two beats, unsorted samples or
    ``local_beats < 2``.
    """
    samples = np.asarray(ann_samples, dtype=np.int64)
    symbols = np.asarray(ann_symbols)
    if samples.shape != symbols.shape:
        raise ValueError(f"ann_samples {samples.shape} and ann_symbols {symbols.shape} differ")
    if np.any(np.diff(samples) < 0):
        raise ValueError("ann_samples must be sorted")
    if local_beats < 2:
        raise ValueError(f"local_beats must be >= 2, got {local_beats}")
    is_beat = np.isin(symbols, list(BEAT_SYMBOLS))
    beat_samples = samples[is_beat]
    n = len(beat_samples)
    if n < 2:
        raise ValueError(f"need at least two beat annotations, got {n}")
    pre, post = rr_intervals(beat_samples, symbols[is_beat], fs)
    rr = np.diff(beat_samples) / fs                        # interval k: beat k -> beat k+1
    # local mean: intervals k in [i - half, i + half) around beat i (pre_rr is interval i-1)
    half = local_beats // 2
    csum = np.concatenate([[0.0], np.cumsum(rr)])
    lo = np.clip(np.arange(n) - half, 0, len(rr))
    hi = np.clip(np.arange(n) + half, 0, len(rr))
    local = (csum[hi] - csum[lo]) / (hi - lo)
    record = np.full(n, rr.mean())
    pre = np.where(np.isnan(pre), local, pre)
    post = np.where(np.isnan(post), local, post)
    feats = np.column_stack([pre, post, local, record, pre / record, post / record,
                             local / record, pre / local, post / local])
    return beat_samples, feats.astype(np.float32)


def features_at(beat_samples: np.ndarray, features: np.ndarray, samples: np.ndarray
                ) -> np.ndarray:
    """Rows of ``features`` (from :func:`rr_features`) for the beats at ``samples``.

    Every sample must be a beat annotation of the record (exact match; ``KeyError`` names the
    first one that is not).
    """
    samples = np.asarray(samples, dtype=np.int64)
    pos = np.searchsorted(beat_samples, samples)
    pos = np.clip(pos, 0, len(beat_samples) - 1)
    bad = beat_samples[pos] != samples
    if np.any(bad):
        raise KeyError(f"sample {int(samples[bad][0])} is not a beat annotation")
    return features[pos]


def record_features(record, samples: np.ndarray, local_beats: int = LOCAL_BEATS) -> np.ndarray:
    """RR features (n, 9) of the beats at ``samples`` of a :class:`utils.data.mitdb.Record`
    (samples at the record's own rate, e.g. ``BeatData.sample`` for a decimated record)."""
    beat_samples, feats = rr_features(record.ann_samples, record.ann_symbols, record.fs,
                                      local_beats)
    return features_at(beat_samples, feats, samples)


def feature_frame(features: np.ndarray):
    """The (n, 9) features as a pandas DataFrame with :data:`RR_FEATURES` columns."""
    import pandas as pd

    return pd.DataFrame(np.asarray(features), columns=list(RR_FEATURES))

