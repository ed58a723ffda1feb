"""Per-beat deletion/insertion curves and a paired test "method vs random order" over records.

The stored method x metric grid (:mod:`utils.studies.evaluation_grid`) keeps one median per
method and model. Whether a method deletes faster than a random order is a claim about the
*per-beat* difference between the two areas, and the beats are not independent: several come
from one patient. This module gives

* :func:`per_beat_curves` - the (n, F+1) curves behind :func:`utils.assess.evaluate.faithfulness`
  (same orders, same seeds, same imputation noise, so ``curve_area`` of them equals its
  ``auc`` column), for figures with a band over beats and for the test below;
* :func:`vs_random` - for every method of one model, the mean per-beat difference (method -
  random) with a 95 % interval from a bootstrap over **records** and a two-sided sign-flip
  p-value in which all beats of one record flip together
  (:func:`utils.assess.claims.paired_record_test`, the course's one paired test), as a tidy
  table.

Written here (rather than in :mod:`utils.assess.evaluate`) because that module's source is part of the
key of the stored grid: this one computes nothing that is stored.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from utils.core import config

from . import evaluate as ev
from .claims import paired_record_test


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
                      "p": test.p_value, "beats": test.n_beats, "records": test.n_records}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("method")
