"""Per-beat deletion/insertion curves and a paired test "method vs random order" over records.

The stored method x metric grid (:mod:`utils.studies.evaluation_grid`) keeps one median per
method and model. Whether a method deletes faster than a random order is a claim about the
*per-beat* difference between the two areas, and the beats are not independent: several come
from one patient. This module gives

* :func:`per_beat_curves` - the (n, F+1) curves behind :func:`utils.assess.evaluate.faithfulness`
  (same orders, same seeds, same imputation noise, so ``curve_area`` of them equals its
  ``auc`` column), for figures with a band over beats and for the test below;
* :func:`paired_record_test` - the mean per-beat difference (method - random) with a 95 %
  interval from a bootstrap over **records** (:func:`utils.data.sampling.bootstrap_over_records`)
  and a two-sided sign-flip permutation p-value in which all beats of one record flip
  together (``scipy.stats.permutation_test``; exact when the records are few);
* :func:`vs_random` - both for every method of one model, as a tidy table.

Written here (rather than in :mod:`utils.assess.evaluate`) because that module's source is part of the
key of the stored grid: this one computes nothing that is stored.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from scipy.stats import permutation_test

from utils.core import config
from utils.data.sampling import bootstrap_over_records

from . import evaluate as ev


def per_beat_curves(model, X: np.ndarray, targets, values=None, *, mode: str = "deletion",
                    imputation: str = "road", n_random: int = 0, n_segments: int = 16,
                    noise: float = 0.01, output: str = "probs", seed: int = config.SEED
                    ) -> np.ndarray:
    """(n, F+1) deletion or insertion curves of each beat, as :func:`utils.assess.evaluate.faithfulness`
    computes them before averaging over the beats.

    ``values`` (a map or Explanation): the explainer's order (:func:`utils.assess.evaluate.segment_order`
    with ``seed``); ``values=None``: the mean curve of ``n_random`` random orders per beat
    (:func:`utils.assess.evaluate.random_orders` with ``seed + 1``), draw ``j`` imputed with noise seed
    ``seed + j`` - the same convention as ``faithfulness``, so the areas agree with its table.
    """
    X = np.asarray(X, dtype=np.float64)
    n, _, leads = X.shape
    if values is not None:
        stack = ev.segment_order(values, n_segments, seed=seed)[None]
    elif n_random > 0:
        stack = ev.random_orders(n, leads * n_segments, n_random, seed=seed + 1)
    else:
        raise ValueError("give values (an explanation) or n_random > 0 (random orders)")
    return np.mean([ev.perturbation_curves(model, X, targets, order, mode=mode,
                                           imputation=imputation, output=output,
                                           n_segments=n_segments, noise=noise, seed=seed + j)
                    for j, order in enumerate(stack)], axis=0)


@dataclass(frozen=True)
class RecordTest:
    """Mean per-beat difference with its record-bootstrap interval and sign-flip p-value."""

    estimate: float
    low: float
    high: float
    p: float
    n_beats: int
    n_records: int

    def direction(self, alpha: float = 0.05, p: float | None = None) -> int:
        """-1 / +1 where the difference is below / above 0 at level ``alpha`` (two-sided; the
        p-value ``p`` if given, e.g. a multiplicity-adjusted one, else ``self.p``), 0 where
        zero cannot be ruled out."""
        p = self.p if p is None else p
        if p >= alpha:
            return 0
        return -1 if self.estimate < 0 else 1


def paired_record_test(diff, record, *, n_boot: int = 2000, n_resamples: int = 9999,
                       level: float = 0.95, seed: int = config.SEED) -> RecordTest:
    """Is the mean of the paired per-beat differences ``diff`` zero? Beats of one record are
    not independent, so both the interval and the test resample **records**:

    * interval: cluster bootstrap of the mean (:func:`utils.data.sampling.bootstrap_over_records`);
    * p-value: sign-flip permutation test - under the null hypothesis (the method's order is
      no better or worse than a random one), the sum of a record's differences is as likely
      to be negative as positive, so every record's sum gets a random sign and the mean over
      the beats is recomputed (``scipy.stats.permutation_test``, ``permutation_type="samples"``
      on the record sums; exact for up to ``log2(n_resamples)`` records), two-sided; 1 with a
      single record (no spread across patients to test against).
    """


    diff = np.asarray(diff, dtype=np.float64)
    record = np.asarray(record).astype(str)
    if diff.ndim != 1 or diff.shape != record.shape:
        raise ValueError(f"diff {diff.shape} and record {record.shape} must be two 1-D arrays "
                         "of the same length")
    ok = np.isfinite(diff)
    diff, record = diff[ok], record[ok]
    if not len(diff):
        raise ValueError("no finite difference to test")
    names, inverse = np.unique(record, return_inverse=True)
    sums = np.bincount(inverse, weights=diff, minlength=len(names))
    n = len(diff)
    boot = bootstrap_over_records(diff, record, "mean", n_boot=n_boot, level=level, seed=seed)
    if len(names) < 2 or np.allclose(sums, 0):
        p = 1.0   # one record: both signs give the same |mean|, nothing to test
    else:
        res = permutation_test((sums,), lambda s, axis=-1: np.sum(s, axis=axis) / n,
                               permutation_type="samples", alternative="two-sided",
                               n_resamples=n_resamples, vectorized=True,
                               random_state=np.random.default_rng(seed))
        p = float(res.pvalue)
    return RecordTest(float(diff.mean()), float(boot.low), float(boot.high), p, n,
                      len(names))


def vs_random(model, X: np.ndarray, targets, maps: Mapping[str, Any], record, *,
              mode: str = "deletion", imputation: str = "road", n_random: int = 2,
              seed: int = config.SEED, **test_options):
    """Every method of ``maps`` (``{name: map or Explanation}`` of the beats ``X``) against the
    random orders of the same beats: a DataFrame indexed by method with the median areas
    (``median area``, ``median random``: what :func:`utils.assess.evaluate.evaluate_methods`
    reports), the mean per-beat difference (method - random) with its record-bootstrap
    interval (``low``, ``high``) and the sign-flip p-value ``p`` (:func:`paired_record_test`),
    and the numbers of beats and records. Deletion: a faithful map has a negative
    difference; insertion: a positive one."""
    import pandas as pd

    rnd = ev.curve_area(per_beat_curves(model, X, targets, None, mode=mode,
                                        imputation=imputation, n_random=n_random, seed=seed))
    rows = {}
    for name, values in maps.items():
        area = ev.curve_area(per_beat_curves(model, X, targets, values, mode=mode,
                                             imputation=imputation, seed=seed))
        test = paired_record_test(area - rnd, record, seed=seed, **test_options)
        rows[name] = {"median area": float(np.median(area)),
                      "median random": float(np.median(rnd)),
                      "mean difference": test.estimate, "low": test.low, "high": test.high,
                      "p": test.p, "beats": test.n_beats, "records": test.n_records}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("method")
