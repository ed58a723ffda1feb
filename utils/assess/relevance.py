"""From local to global: aggregating per-beat relevance maps (Grad-CAM, IG, ...) into
statements about the model, following published analyses of ECG attributions
(e.g. Bender et al. 2023; Strodthoff et al. 2021): mean relevance per class, the share of
relevance per lead and per part of the beat (P wave, QRS, ST-T), and how the summed relevance
relates to the predicted probability (correct vs misclassified beats).

Relevance maps are :class:`~utils.core.explain.Explanation` objects (their ``values`` are used),
``(n, window, leads)`` arrays or ``(n, window)`` per-time maps; the parts of the beat are the
wave windows of :func:`utils.core.config.wave_windows`. Plain numpy/pandas; scipy's ``spearmanr``
for the rank correlation.
"""
from __future__ import annotations

import numpy as np

from utils.core import config
from utils.core.explain import Explanation, check_targets


def _array(relevance) -> np.ndarray:
    """Relevance as a finite float array (an :class:`Explanation` gives its ``values``)."""
    r = relevance.values if isinstance(relevance, Explanation) else relevance
    r = np.asarray(r, dtype=np.float64)
    if r.ndim < 2 or len(r) == 0:
        raise ValueError(f"relevance must have a non-empty beat axis first, got {r.shape}")
    if not np.all(np.isfinite(r)):
        raise ValueError("relevance contains NaN or infinite values")
    return r


def _as_3d(relevance) -> np.ndarray:
    r = _array(relevance)
    if r.ndim == 2:
        r = r[:, :, None]
    if r.ndim != 3:
        raise ValueError(f"relevance must be (n, window) or (n, window, leads), got {r.shape}")
    return r


def _check_labels(y: np.ndarray, n: int, n_classes: int = len(config.CLASSES)) -> np.ndarray:
    if np.shape(y) != (n,):
        raise ValueError(f"labels must have shape ({n},), got {np.shape(y)}")
    return check_targets(y, n, n_classes)


def normalise_per_beat(relevance: np.ndarray) -> np.ndarray:
    """Divide each beat's map by its largest absolute value (all-zero maps stay zero), so
    that beats with large scores do not dominate class averages. Same shape as the input."""
    r = _array(relevance)
    scale = np.abs(r.reshape(len(r), -1)).max(axis=1)
    scale = np.where(scale > 0, scale, 1.0)
    return r / scale.reshape((-1,) + (1,) * (r.ndim - 1))


def class_means(relevance: np.ndarray, y: np.ndarray, n_classes: int = len(config.CLASSES)
                ) -> np.ndarray:
    """Mean map of each class, shape (n_classes, ...); classes without beats are NaN."""
    r = _array(relevance)
    y = _check_labels(y, len(r), n_classes)
    out = np.full((n_classes,) + r.shape[1:], np.nan)
    for c in range(n_classes):
        if np.any(y == c):
            out[c] = r[y == c].mean(axis=0)
    return out


def lead_share(relevance: np.ndarray, y: np.ndarray,
               lead_names: tuple[str, ...] = config.LEAD_NAMES):
    """Share of the absolute relevance carried by each lead, averaged over the beats of each
    class (each beat counts once). A pandas table: one row per class present, one column per
    lead (rows sum to 1) and ``n`` beats."""
    import pandas as pd

    r = _as_3d(relevance)
    if r.shape[2] != len(lead_names):
        raise ValueError(f"relevance has {r.shape[2]} leads, {len(lead_names)} names given")
    y = _check_labels(y, len(r))
    per_lead = np.abs(r).sum(axis=1)                       # (n, leads)
    total = per_lead.sum(axis=1, keepdims=True)
    share = np.divide(per_lead, total, out=np.full_like(per_lead, np.nan), where=total > 0)
    rows = {}
    for c in np.unique(y):
        sel = y == c
        rows[config.CLASSES[c]] = {**dict(zip(lead_names, np.nanmean(share[sel], axis=0))),
                                   "n": int(sel.sum())}
    return pd.DataFrame.from_dict(rows, orient="index")


def region_share(relevance: np.ndarray, y: np.ndarray,
                 regions: dict[str, tuple[int, int]] | None = None):
    """Share of the absolute relevance (summed over leads) in each region of the beat, averaged
    over the beats of each class. Rows: classes present; columns: regions (sum to 1 when the
    regions tile the window) and ``n``."""
    import pandas as pd

    r = _as_3d(relevance)
    y = _check_labels(y, len(r))
    regions = regions if regions is not None else config.wave_windows(window=r.shape[1])
    mag = np.abs(r).sum(axis=2)                            # (n, window)
    total = mag.sum(axis=1)
    cols = {}
    for name, (a, b) in regions.items():
        if not 0 <= a < b <= r.shape[1]:
            raise ValueError(f"region {name!r} ({a}, {b}) is outside the window")
        cols[name] = np.divide(mag[:, a:b].sum(axis=1), total, out=np.full(len(r), np.nan),
                               where=total > 0)
    share = pd.DataFrame(cols)
    share["class"] = [config.CLASSES[c] for c in y]
    table = share.groupby("class", sort=False).mean()
    table["n"] = share.groupby("class", sort=False).size()
    order = [c for c in config.CLASSES if c in table.index]
    return table.loc[order]


def relevance_vs_probability(relevance: np.ndarray, probs: np.ndarray, targets,
                             y_true: np.ndarray):
    """One row per beat: summed relevance for the explained class ``targets``, the predicted
    probability of that class, the predicted class and whether the prediction is correct."""
    import pandas as pd

    r = _as_3d(relevance)
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or len(probs) != len(r):
        raise ValueError(f"probs must be (n, classes) with n={len(r)}, got {probs.shape}")
    t = check_targets(targets, len(r), probs.shape[1])
    y_true = _check_labels(y_true, len(r))
    pred = probs.argmax(axis=1)
    return pd.DataFrame({
        "true": [config.CLASSES[c] for c in y_true],
        "predicted": [config.CLASSES[c] for c in pred],
        "correct": pred == y_true,
        "probability": probs[np.arange(len(r)), t],
        "summed_relevance": r.reshape(len(r), -1).sum(axis=1),
    })


def summarise_relevance_probability(table) -> dict[str, float]:
    """Spearman rank correlation between summed relevance and probability, and the median
    summed relevance of correct and of misclassified beats (NaN when a group is empty)."""
    from scipy.stats import spearmanr

    if len(table) < 3:
        raise ValueError("need at least 3 beats for a rank correlation")
    rho = spearmanr(table["summed_relevance"], table["probability"]).statistic
    correct = table.loc[table["correct"], "summed_relevance"]
    wrong = table.loc[~table["correct"], "summed_relevance"]
    return {
        "spearman_rho": float(rho),
        "median_relevance_correct": float(correct.median()) if len(correct) else float("nan"),
        "median_relevance_misclassified": float(wrong.median()) if len(wrong) else float("nan"),
        "n_correct": int(len(correct)),
        "n_misclassified": int(len(wrong)),
    }
