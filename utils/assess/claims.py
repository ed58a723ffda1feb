"""Claims sized to their evidence: balanced samples drawn by record, tests over records.

A sentence such as "the patient CNN weighs the early previous beat less than the holdout CNN"
is a claim about patients, not about the handful of beats a figure shows. The helpers here
give such a claim a number that can fail:

* :func:`balanced_by_record` - about ``per_class`` beats of every class, spread as evenly as
  possible over the records that have the class (a class with 27 records gets one or two beats
  from each; a class with 3 records gets a third from each), so that no patient dominates a
  per-class summary the way "40 random beats of the class" lets record 232 dominate ``A``.
* :func:`record_means` - the mean of a per-beat value per record (the unit the tests resample).
* :func:`paired_record_test` - for a per-beat difference (model A minus model B, or a
  method minus random orders, on the same beats), the mean with a percentile interval from a
  bootstrap over records (:func:`utils.data.sampling.bootstrap_over_records`) and a two-sided
  sign-flip permutation test over records (each record's beats keep or flip their sign
  together: under "no difference" a record's mean difference is as likely negative as
  positive; ``scipy.stats.permutation_test`` on the record sums). The one paired test of the
  course, with the one result type :class:`RecordTest`.
* :func:`record_permutation_test` - two groups of different records (e.g. R beats called V
  and V beats called V): the difference of their per-record means against all reassignments
  of the records to the groups.
* :func:`sign_test_records` - how many records agree on the sign of a value, and the exact
  two-sided binomial p-value of that count (with 3 records, 3 of 3 gives p = 0.25: no test
  can be passed by 3 patients).
* :func:`window_occlusion` - the drop of a target score when a window of samples is set to a
  fill value (a flat line at the beat's mean for z-scored beats), one forward pass per
  window: a cheap intervention that can run on every beat of a sample.

Written here because :mod:`utils.data.sampling` draws *capped* per-record samples (not a fixed
number per class spread over records); the tests reuse its record bootstrap and scipy's
permutation test, applied to per-record sums so that the record, not the beat, is the unit.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from math import comb
from typing import Callable, Iterable

import numpy as np
from scipy.stats import permutation_test

from utils.core import config
from utils.data.sampling import RecordSample, bootstrap_over_records, sample_report


def _spread(counts: np.ndarray, total: int) -> np.ndarray:
    """How many of ``total`` beats to take from each record that has ``counts`` beats: as
    evenly as possible (water filling), never more than a record has."""
    counts = np.asarray(counts, dtype=np.int64)
    take = np.zeros_like(counts)
    left = min(int(total), int(counts.sum()))
    while left > 0:
        open_ = np.flatnonzero(take < counts)
        share = max(left // len(open_), 1)
        for r in open_:
            add = min(share, counts[r] - take[r], left)
            take[r] += add
            left -= add
            if left == 0:
                break
    return take


def balanced_by_record(y, record, per_class: int, *, mask=None,
                       classes: Iterable[int] | None = None,
                       seed: int = config.SEED) -> RecordSample:
    """About ``per_class`` beats of each class, spread evenly over the class's records.

    Each record of a class gets ``per_class / n_records`` beats (rounded; the remainder goes
    to records drawn at random; a record with fewer beats gives all it has and the others make
    up the difference). Within a record the beats are drawn at random. A class with fewer
    than ``per_class`` beats in the pool contributes all of them. Returns a
    :class:`utils.data.sampling.RecordSample` whose report names the records behind each class.
    """
    y = np.asarray(y).ravel()
    record = np.asarray(record).ravel()
    if len(y) != len(record):
        raise ValueError(f"{len(record)} record names for {len(y)} labels")
    if int(per_class) < 1:
        raise ValueError(f"per_class must be at least 1, got {per_class}")
    pool = np.ones(len(y), dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    if pool.shape != y.shape:
        raise ValueError(f"mask must have the shape of y {y.shape}, got {pool.shape}")
    rng = np.random.default_rng(seed)
    classes = sorted(set(np.unique(y[pool]).tolist())) if classes is None else list(classes)
    chosen = []
    for c in classes:
        members = np.flatnonzero(pool & (y == c))
        if not len(members):
            continue
        names, inverse = np.unique(record[members], return_inverse=True)
        order = rng.permutation(len(names))        # who gets the remainder: drawn at random
        counts = np.bincount(inverse, minlength=len(names))
        take = np.empty_like(counts)
        take[order] = _spread(counts[order], per_class)
        for r in range(len(names)):
            if take[r]:
                chosen.append(rng.choice(members[inverse == r], size=int(take[r]), replace=False))
    idx = np.sort(np.concatenate(chosen)).astype(np.int64) if chosen else np.zeros(0, np.int64)
    return RecordSample(idx, sample_report(y, record, idx, available=pool), None, int(seed),
                        {"per_class": int(per_class)})


def _values_and_records(values, record) -> tuple[np.ndarray, np.ndarray]:
    """One float per beat and its record name, as flat arrays of equal, non-zero length."""
    v = np.asarray(values, dtype=np.float64).ravel()
    record = np.asarray(record).ravel()
    if len(v) != len(record):
        raise ValueError(f"{len(v)} values for {len(record)} record names")
    if not len(v):
        raise ValueError("no values")
    return v, record


def record_means(values, record) -> tuple[np.ndarray, np.ndarray]:
    """(record names, mean of ``values`` per record), records sorted by name."""
    v, record = _values_and_records(values, record)
    names, inverse = np.unique(record, return_inverse=True)
    sums = np.bincount(inverse, weights=v, minlength=len(names))
    return names, sums / np.bincount(inverse, minlength=len(names))


@dataclass(frozen=True)
class RecordTest:
    """Mean of a per-beat (paired) difference, its bootstrap interval over records and its
    sign-flip p-value over records (:func:`paired_record_test`)."""

    estimate: float
    low: float
    high: float
    p_value: float
    n_records: int
    n_beats: int
    records_positive: int
    level: float

    def direction(self, alpha: float = 0.05, p: float | None = None) -> int:
        """-1 / +1 where the difference is below / above 0 at level ``alpha`` (two-sided; the
        p-value ``p`` if given, e.g. a multiplicity-adjusted one, else ``self.p_value``), 0
        where zero cannot be ruled out."""
        p = self.p_value if p is None else p
        if p >= alpha:
            return 0
        return -1 if self.estimate < 0 else 1

    def __str__(self) -> str:
        return (f"{self.estimate:+.2f} [{self.low:+.2f}, {self.high:+.2f}] ({self.level:.0%} CI "
                f"over {self.n_records} records, {self.n_beats} beats; {self.records_positive} of "
                f"{self.n_records} records > 0; sign-flip p = {self.p_value:.3f})")


def paired_record_test(diff, record, *, n_boot: int = 2000, n_resamples: int = 9999,
                       level: float = 0.95, seed: int = config.SEED) -> RecordTest:
    """Is the mean of a per-beat (paired) difference away from zero, across **records**?

    Beats of one record are not independent, so both the interval and the test resample
    records:

    * ``estimate``: the mean over beats; ``low``/``high``: the percentile interval of the mean
      over ``n_boot`` resamples of the records, all beats of a drawn record
      (:func:`utils.data.sampling.bootstrap_over_records`);
    * ``p_value``: two-sided sign-flip permutation test - every record's differences flip sign
      together with probability 1/2 and the statistic is the mean over beats
      (``scipy.stats.permutation_test``, ``permutation_type="samples"`` on the record sums).
      With k records there are only 2**k sign patterns; while 2**k <= ``n_resamples`` all of
      them are enumerated (exact test), so 3 records can never give p below 0.25; with a
      single record p is 1 (no spread across patients to test against).

    Beats whose difference is not finite are left out (``n_beats`` counts the others).
    """
    d = np.asarray(diff, dtype=np.float64)
    record = np.asarray(record).astype(str)
    if d.ndim != 1 or d.shape != record.shape:
        raise ValueError(f"diff {d.shape} and record {record.shape} must be two 1-D arrays "
                         "of the same length")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    ok = np.isfinite(d)
    d, record = d[ok], record[ok]
    if not len(d):
        raise ValueError("no finite difference to test")
    names, inverse = np.unique(record, return_inverse=True)
    sums = np.bincount(inverse, weights=d, minlength=len(names))
    counts = np.bincount(inverse, minlength=len(names))
    n = len(d)
    boot = bootstrap_over_records(d, record, "mean", n_boot=n_boot, level=level, seed=seed)
    if len(names) < 2 or np.allclose(sums, 0):
        p = 1.0   # one record: both signs give the same |mean|, nothing to test
    else:
        res = permutation_test((sums,), lambda s, axis=-1: np.sum(s, axis=axis) / n,
                               permutation_type="samples", alternative="two-sided",
                               n_resamples=n_resamples, vectorized=True,
                               random_state=np.random.default_rng(seed))
        p = float(res.pvalue)
    return RecordTest(float(d.mean()), float(boot.low), float(boot.high), p, len(names), n,
                      int(np.sum(sums / counts > 0)), float(level))


def sign_test_records(values, record) -> dict:
    """Records whose mean ``values`` is positive / negative, and the exact two-sided binomial
    p-value of the larger count under "each sign equally likely" (records with mean 0 are
    left out)."""
    _, means = record_means(values, record)
    pos, neg = int(np.sum(means > 0)), int(np.sum(means < 0))
    n = pos + neg
    tail = sum(comb(n, j) for j in range(max(pos, neg), n + 1)) / 2 ** n if n else 1.0
    return {"records": len(means), "positive": pos, "negative": neg, "p_value": min(1.0, 2 * tail)}


def window_occlusion(score_fn: Callable[[np.ndarray], np.ndarray], X, targets, windows,
                     fill: float = 0.0, leads: Iterable[int] | None = None) -> np.ndarray:
    """Drop of ``score_fn(X)[i, targets[i]]`` when the samples of a window are set to ``fill``.

    ``X`` (n, time, leads); ``windows`` either one ``(start, stop)`` pair for every beat or an
    (n, 2) array of per-beat windows (samples, ``stop`` excluded); ``leads``: the leads filled
    (default: every lead).
    Returns (n,) drops (positive: the window carried evidence for the target).
    """
    X = np.asarray(X)
    targets = np.asarray(targets, dtype=np.int64).ravel()
    if len(targets) != len(X):
        raise ValueError(f"{len(targets)} targets for {len(X)} beats")
    w = np.asarray(windows, dtype=np.int64)
    w = np.broadcast_to(w, (len(X), 2)) if w.ndim == 1 else w
    if w.shape != (len(X), 2):
        raise ValueError(f"windows must be (2,) or ({len(X)}, 2), got {w.shape}")
    time = np.arange(X.shape[1])
    inside = (time[None, :] >= w[:, :1]) & (time[None, :] < w[:, 1:])
    lead_on = np.ones(X.shape[2], dtype=bool) if leads is None else np.isin(np.arange(X.shape[2]), list(leads))
    occluded = np.where(inside[:, :, None] & lead_on[None, None, :], fill, X).astype(X.dtype)
    rows = np.arange(len(X))
    return np.asarray(score_fn(X))[rows, targets] - np.asarray(score_fn(occluded))[rows, targets]


def record_permutation_test(values_a, record_a, values_b, record_b, *, n_perm: int = 20000,
                            seed: int = config.SEED) -> dict:
    """Do two groups of **records** differ in the mean of a per-beat value?

    The statistic is the difference of the means of the per-record means (group a minus group
    b: every patient weighs the same); the null distribution reassigns the records to the two
    groups (group sizes kept). All assignments are enumerated when there are at most
    ``n_perm`` of them (exact test), else ``n_perm`` are drawn. Two-sided p-value. A record in
    both groups is an error (the groups must be different patients).
    """

    names_a, means_a = record_means(values_a, record_a)
    names_b, means_b = record_means(values_b, record_b)
    if set(names_a) & set(names_b):
        raise ValueError(f"records in both groups: {sorted(set(names_a) & set(names_b))}")
    pooled = np.concatenate([means_a, means_b])
    k, n = len(means_a), len(pooled)
    observed = float(means_a.mean() - means_b.mean())
    if comb(n, k) <= n_perm:
        groups = np.array(list(combinations(range(n), k)))
    else:
        rng = np.random.default_rng(seed)
        groups = np.stack([rng.choice(n, size=k, replace=False) for _ in range(int(n_perm))])
    in_a = np.zeros((len(groups), n), dtype=bool)
    in_a[np.arange(len(groups))[:, None], groups] = True
    diffs = (in_a * pooled).sum(1) / k - (~in_a * pooled).sum(1) / (n - k)
    p = float(np.mean(np.abs(diffs) >= abs(observed) - 1e-12))
    return {"difference": observed, "p_value": p, "records_a": k, "records_b": n - k,
            "exact": bool(comb(n, k) <= n_perm)}
