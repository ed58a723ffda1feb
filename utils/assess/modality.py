"""Modality importance: how much of a beat's relevance lies in each modality, and whether that
is consistent across cross-validation folds (after Ellis et al., IEEE BIBE 2021).

* :func:`modality_shares` - share of the absolute relevance per modality (lead MLII, the chest
  lead, the rhythm features) for every beat; :func:`class_shares` - their mean per class.
* :func:`kendalls_w` - Kendall's coefficient of concordance W of several rankings (folds) of
  the same items (modalities), with the tie correction and the chi-square test. Written here
  because neither scipy nor the pinned libraries provide it; tested against scipy's Friedman
  statistic, to which it is tied by ``chi2_F = m (n - 1) W``.
* :func:`fold_spread` and :func:`fold_concordance` - spread of each class's modality shares
  across folds, and W per class (folds as raters, modalities as items).
"""
from __future__ import annotations

from typing import Mapping, NamedTuple, Sequence

import numpy as np

from utils.core import config
from utils.core.explain import Explanation

#: The modalities of the course (the multimodal model: two leads and the rhythm features).
MODALITIES: tuple[str, ...] = ("MLII", "chest lead", "rhythm features")


def _input_arrays(explanation_inputs) -> list[np.ndarray]:

    if isinstance(explanation_inputs, Explanation):
        inputs = explanation_inputs.extras.get("inputs", [explanation_inputs.values])
    elif isinstance(explanation_inputs, np.ndarray):
        inputs = [explanation_inputs]
    else:
        inputs = list(explanation_inputs)
    return [np.asarray(a, dtype=np.float64) for a in inputs]


def default_groups(n_inputs: int) -> dict[str, tuple[int, int | None]]:
    """Modality -> (input index, lead index or ``None`` for the whole input): lead 0 of input 0
    is MLII, lead 1 the chest lead, input 1 (if any) the rhythm features."""
    groups: dict[str, tuple[int, int | None]] = {MODALITIES[0]: (0, 0), MODALITIES[1]: (0, 1)}
    if n_inputs > 1:
        groups[MODALITIES[2]] = (1, None)
    if n_inputs > 2:
        raise ValueError("pass groups explicitly for a model with more than two inputs")
    return groups


def modality_shares(explanation_inputs, groups: Mapping[str, tuple[int, int | None]] | None
                    = None):
    """Share of the absolute relevance of each beat that lies in each modality.
    ``explanation_inputs``: an :class:`~utils.core.explain.Explanation` (its ``extras["inputs"]``
    for a multi-input model, else ``values``), one array (n, window, leads) or a list of
    per-input arrays (n, ...). ``groups``: modality -> ``(input index, lead)``, where ``lead``
    selects the last axis of a beat input and ``None`` takes the whole input
    (:func:`default_groups` when omitted). The modalities should cover every input.

    Returns a DataFrame (n beats x modalities); each row sums to 1 (NaN where a beat has no
    relevance at all).
    """
    import pandas as pd

    inputs = _input_arrays(explanation_inputs)
    groups = dict(default_groups(len(inputs)) if groups is None else groups)
    n = len(inputs[0])
    if any(len(a) != n for a in inputs):
        raise ValueError("all inputs need the same number of beats")
    mass = {}
    for name, (i, lead) in groups.items():
        if not 0 <= i < len(inputs):
            raise ValueError(f"modality {name!r} refers to input {i}; there are {len(inputs)}")
        a = np.abs(inputs[i])
        if lead is not None:
            if a.ndim != 3 or not 0 <= lead < a.shape[2]:
                raise ValueError(f"modality {name!r}: lead {lead} of an input of shape {a.shape}")
            a = a[:, :, lead]
        mass[name] = a.reshape(n, -1).sum(axis=1)
    frame = pd.DataFrame(mass)
    total = frame.sum(axis=1)
    return frame.div(total.where(total > 0), axis=0)


def class_shares(shares, y, classes: Sequence[str] = config.CLASSES):
    """Mean modality shares per class (each beat counts once) and the number of beats ``n``;
    one row per class present, indexed by the class symbol."""
    y = np.asarray(y).astype(int)
    if len(y) != len(shares):
        raise ValueError(f"{len(y)} labels for {len(shares)} beats")
    frame = shares.copy()
    frame["class"] = [classes[k] for k in y]
    out = frame.groupby("class", sort=False).mean()
    out["n"] = frame.groupby("class", sort=False).size()
    order = [c for c in classes if c in out.index]
    return out.loc[order]


class KendallW(NamedTuple):
    """Kendall's W with its chi-square test (``chi2 = m (n - 1) W``, df ``n - 1``)."""
    w: float
    chi2: float
    p: float
    m: int
    n: int


def kendalls_w(ratings) -> KendallW:
    """Kendall's coefficient of concordance of ``m`` raters (rows) over ``n`` items (columns).
    ``ratings`` (m, n): scores or ranks (each row is ranked, ties averaged). ``W = 12 S /
    (m^2 (n^3 - n) - m T)`` with ``S`` the sum of squared deviations of the items' rank sums
    from their mean and ``T = sum (t^3 - t)`` over tie groups (Kendall & Babington Smith 1939).
    W = 1: every rater ranks the items the same; W = 0: no agreement. p-value from the chi-square
    approximation (rough for small n; the exact permutation test is better for n <= 7).
    """
    from scipy.stats import chi2 as chi2_dist
    from scipy.stats import rankdata

    r = np.asarray(ratings, dtype=np.float64)
    if r.ndim != 2 or r.shape[0] < 2 or r.shape[1] < 2:
        raise ValueError(f"ratings must be (raters >= 2, items >= 2), got {r.shape}")
    if not np.all(np.isfinite(r)):
        raise ValueError("ratings contain NaN or infinite values")
    m, n = r.shape
    ranks = rankdata(r, axis=1)
    sums = ranks.sum(axis=0)
    s = float(((sums - sums.mean()) ** 2).sum())
    ties = 0.0
    for row in r:
        _, counts = np.unique(row, return_counts=True)
        ties += float((counts ** 3 - counts).sum())
    denom = m ** 2 * (n ** 3 - n) - m * ties
    w = 12 * s / denom if denom > 0 else float("nan")   # every rater ties everything
    chi2 = m * (n - 1) * w
    return KendallW(float(w), float(chi2), float(chi2_dist.sf(chi2, n - 1)), m, n)


def _long(shares_by_fold: Mapping):
    import pandas as pd

    frames = []
    for fold, table in shares_by_fold.items():
        t = table.drop(columns=[c for c in ("n",) if c in table.columns])
        long = t.reset_index().melt(id_vars=t.index.name or "index", var_name="modality",
                                    value_name="share")
        long = long.rename(columns={t.index.name or "index": "class"})
        long["fold"] = fold
        frames.append(long)
    return pd.concat(frames, ignore_index=True)


def fold_spread(shares_by_fold: Mapping):
    """Spread of each class's modality shares across folds.
    ``shares_by_fold``: fold -> :func:`class_shares` table of that fold. Returns a tidy
    DataFrame with one row per (class, modality): mean, sd (ddof 1), min, max, range and
    ``folds`` (in how many folds the class occurs)."""
    long = _long(shares_by_fold).dropna(subset=["share"])
    g = long.groupby(["class", "modality"], sort=False)["share"]
    out = g.agg(mean="mean", sd="std", min="min", max="max", folds="count").reset_index()
    out["range"] = out["max"] - out["min"]
    return out[["class", "modality", "mean", "sd", "min", "max", "range", "folds"]]


def fold_concordance(shares_by_fold: Mapping, min_folds: int = 2):
    """Kendall's W per class: do the folds rank the modalities the same way?
    Folds are the raters, modalities the items; a class is scored over the folds where it
    occurs (at least ``min_folds``). Returns a DataFrame: class, W, chi2, p, folds, modalities.
    With 3 modalities W takes few values; read it with the shares' spread (:func:`fold_spread`).
    """
    import pandas as pd

    long = _long(shares_by_fold).dropna(subset=["share"])
    rows = []
    for cls, part in long.groupby("class", sort=False):
        wide = part.pivot(index="fold", columns="modality", values="share").dropna()
        if len(wide) < min_folds:
            rows.append({"class": cls, "W": np.nan, "chi2": np.nan, "p": np.nan,
                         "folds": len(wide), "modalities": wide.shape[1]})
            continue
        k = kendalls_w(wide.to_numpy())
        rows.append({"class": cls, "W": k.w, "chi2": k.chi2, "p": k.p, "folds": k.m,
                     "modalities": k.n})
    return pd.DataFrame(rows)
