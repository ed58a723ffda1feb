"""Permutation Feature Importance (PFI) of beat segments and leads: global, model-agnostic.

A *feature* here is a group of samples: one time segment of one lead (``utils.core.segments``,
numbered lead-major) or a whole lead. Its importance is the drop of a score (accuracy,
macro-F1, or the recall of one class) when that group is destroyed in every beat while the
rest of the beat is kept (Breiman 2001; Fisher, Rudin & Dominici 2019; Molnar, *Interpretable
Machine Learning*, ch. "Permutation Feature Importance").

Both functions follow the course convention ``method(model, X, targets, **options)`` with the
true labels as ``targets`` and return a *global* :class:`~utils.core.explain.Explanation`:
``native`` (1, n_features) the mean drop of ``metric``, ``values`` (1, window, leads) that drop
on every sample of its feature, ``extras`` the spread (``drops[metric]`` (n_features,
n_repeats) for every metric, ``std``), the feature ``names`` and the unpermuted scores
``base``. Read them with :func:`mean`, :func:`std`, :func:`table`, :func:`top`,
:func:`per_class` and :func:`top_per_class`.

* :func:`alibi_permutation_importance` - alibi's ``PermutationImportance`` on the beats
  flattened to (n, window * leads), with each segment passed as a *tuple of columns* so that
  alibi permutes the samples of a segment together (the custom grouping).
* :func:`permutation_importance` - a short loop of our own, used because (1) it reuses each
  set of permuted predictions for every metric at once (overall and per class: alibi scores
  all beats together, per-class recall would need one alibi run per class), and (2) it also
  supports *replacement* (``how='zero'``, ``'mean'``, ... of :mod:`utils.core.perturb`) besides
  shuffling, to show how the choice changes the answer.

``model`` is a Keras classifier or any ``predict(X) -> labels`` function.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from utils.core import config
from utils.core.explain import (Explanation, check_targets, predict_scores,
                                seeded_global_random, to_samples)
from utils.core.perturb import fill
from utils.core.segments import segment_labels, segment_mask
from utils.core.beats import validate_beats
from utils.core.methods import register

PredictFn = Callable[[np.ndarray], np.ndarray]


# --------------------------------------------------------------------------------------------
# Features (groups of samples)
# --------------------------------------------------------------------------------------------
def segment_groups(n_segments: int = 16, leads: int = 2, window: int = config.WINDOW
                   ) -> tuple[np.ndarray, list[str]]:
    """Boolean masks (n_segments * leads, window, leads) of the segment features, lead-major,
    and their names (e.g. ``'lead0 -0.04..+0.05s'``)."""
    return (segment_mask(window, n_segments, leads),
            segment_labels(n_segments, leads, window=window))


def lead_groups(leads: int = 2, window: int = config.WINDOW) -> tuple[np.ndarray, list[str]]:
    """Boolean masks (leads, window, leads), one whole lead each, and their names."""
    return segment_mask(window, 1, leads), [f"lead{lead} (whole)" for lead in range(leads)]


def flat_column_groups(masks: np.ndarray) -> list[tuple[int, ...]]:
    """Column indices of each mask in beats flattened C-order to (n, window * leads):
    the ``features`` argument of alibi's ``PermutationImportance.explain``."""
    masks = np.asarray(masks, dtype=bool)
    if masks.ndim != 3:
        raise ValueError(f"masks must be (n_features, window, leads), got {masks.shape}")
    return [tuple(int(i) for i in np.flatnonzero(m.ravel())) for m in masks]


# --------------------------------------------------------------------------------------------
# Predictors and metrics
# --------------------------------------------------------------------------------------------
def label_predictor(model, window: int = config.WINDOW, leads: int = 2) -> PredictFn:
    """``f(X) -> predicted class index`` for a Keras classifier; ``X`` is (n, window, leads)
    or flattened (n, window * leads) (the form alibi passes). Beats are validated (shape,
    leads-first, NaN) before every call. A plain function is returned unchanged."""

    if not hasattr(model, "predict_on_batch"):
        if not callable(model):
            raise ValueError(f"model must be a Keras classifier or a function, got {model!r}")
        return model

    def predict(X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float32)
        if X.ndim == 2 and X.shape[1] == window * leads:
            X = X.reshape(len(X), window, leads)
        return predict_scores(model, validate_beats(X, window, leads), "probs").argmax(axis=1)

    return predict


def scores(y_true: np.ndarray, y_pred: np.ndarray,
           n_classes: int = len(config.CLASSES)) -> dict[str, float]:
    """Accuracy, macro-F1 (classes present in ``y_true``) and the recall of every class present
    (``'recall_N'``, ...): the metrics whose drop is the importance."""
    from sklearn.metrics import f1_score

    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    present = [c for c in range(n_classes) if np.any(y_true == c)]
    out = {"accuracy": float(np.mean(y_true == y_pred)),
           "macro_f1": float(f1_score(y_true, y_pred, labels=present, average="macro",
                                      zero_division=0))}
    for c in present:
        out[f"recall_{config.CLASSES[c]}"] = float(np.mean(y_pred[y_true == c] == c))
    return out


def macro_f1_score(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Macro-F1 over the classes present in ``y_true`` (signature alibi expects)."""
    return scores(y_true, y_pred)["macro_f1"]


# --------------------------------------------------------------------------------------------
# PFI
# --------------------------------------------------------------------------------------------
def _features(features, window: int, leads: int, names) -> tuple[np.ndarray, list[str], str]:
    """Masks (k, window, leads), names and unit of ``features``: ``"segments"`` (16 per
    lead), ``"leads"``, or boolean masks (k, window, leads)."""
    if isinstance(features, str):
        if features == "segments":
            masks, default = segment_groups(16, leads, window)
        elif features == "leads":
            masks, default = lead_groups(leads, window)
        else:
            raise ValueError(f"features must be 'segments', 'leads' or masks, got {features!r}")
        unit = features
    else:
        masks = np.asarray(features)
        if masks.dtype != bool or masks.ndim != 3 or masks.shape[1:] != (window, leads):
            raise ValueError(f"feature masks must be boolean (n_features, {window}, {leads}), "
                             f"got {masks.dtype} {masks.shape}")
        default, unit = [f"f{k}" for k in range(len(masks))], "segments"
    names = list(names) if names is not None else default
    if len(names) != len(masks):
        raise ValueError(f"{len(names)} names for {len(masks)} features")
    return masks, names, unit


def _check(model, X, targets) -> tuple[np.ndarray, np.ndarray]:
    """Beats for ``model`` (its input shape; the course geometry for a plain function)."""
    shape = getattr(model, "input_shape", (None, config.WINDOW, 2))
    X = validate_beats(X, window=shape[1], leads=shape[2])
    if len(X) < 2:
        raise ValueError("PFI needs at least 2 beats to permute")
    return X, check_targets(targets, len(X))


def _explanation(method, output, y, masks, names, unit, base, drops, metric, how, repeats
                 ) -> Explanation:
    if metric not in drops:
        raise ValueError(f"unknown metric {metric!r}; available: {', '.join(drops)}")
    importance = drops[metric].mean(axis=1)
    values = np.tensordot(importance, masks.astype(np.float64), axes=(0, 0))[None]
    return Explanation(values, y, method, output, scope="global", kind="model-agnostic",
                       native=importance[None], unit=unit,
                       extras={"names": names, "base": base, "drops": drops, "metric": metric,
                               "std": drops[metric].std(axis=1), "how": how,
                               "n_repeats": repeats})


@register("pfi", "PFI", scope="global", kind="model-agnostic", unit="segments",
          stochastic=True, single_pass=False,
          targets="the true labels the metric is scored against (a global method)")
def permutation_importance(model, X: np.ndarray, targets, *, output: str = "logits",
                           features="segments", names: Sequence[str] | None = None,
                           n_repeats: int = 5, how: str = "permute",
                           reference: np.ndarray | None = None, metric: str = "macro_f1",
                           seed: int = config.SEED) -> Explanation:
    """PFI of ``features`` (``"segments"``, ``"leads"`` or masks (k, window, leads)) for
    ``model`` on beats ``X`` with true labels ``targets``.

    For each feature and repeat the group is destroyed with :func:`utils.core.perturb.fill`
    (``how="permute"``: one fresh permutation per repeat from ``np.random.default_rng(seed)``;
    ``"zero"``/``"mean"`` (``reference``, default the mean beat of ``X``) are deterministic and
    use one repeat), the beats are classified and :func:`scores` computed; the importance is
    the drop from the unpermuted scores. All repeats of one feature are classified in one call.
    ``output`` is recorded only: PFI scores the predicted labels (argmax of either).
    """
    X, y = _check(model, X, targets)
    masks, names, unit = _features(features, X.shape[1], X.shape[2], names)
    if n_repeats < 1:
        raise ValueError(f"n_repeats must be >= 1, got {n_repeats}")
    predict = label_predictor(model, X.shape[1], X.shape[2])
    if how == "mean" and reference is None:
        reference = X.mean(axis=0)
    repeats = n_repeats if how == "permute" else 1
    rng = np.random.default_rng(seed)
    base = scores(y, predict(X))
    drops = {m: np.zeros((len(masks), repeats)) for m in base}
    n = len(X)
    for k, mask in enumerate(masks):
        batch = np.concatenate([fill(X, mask, how, reference=reference, seed=rng)
                                for _ in range(repeats)])
        pred = np.asarray(predict(batch))
        for r in range(repeats):
            s = scores(y, pred[r * n:(r + 1) * n])
            for m in base:
                drops[m][k, r] = base[m] - s[m]
    return _explanation("pfi", output, y, masks, names, unit, base, drops, metric, how, repeats)


@register("pfi_alibi", "PFI (alibi)", scope="global", kind="model-agnostic", unit="segments",
          stochastic=True, single_pass=False,
          targets="the true labels the metric is scored against (a global method)")
def alibi_permutation_importance(model, X: np.ndarray, targets, *, output: str = "logits",
                                 features="segments", names: Sequence[str] | None = None,
                                 n_repeats: int = 5, metric: str = "macro_f1",
                                 seed: int = config.SEED) -> Explanation:
    """The same importance with alibi's ``PermutationImportance`` (``method='estimate'``,
    ``kind='difference'``): the beats are flattened and each mask becomes a tuple of columns
    that alibi permutes together. ``metric`` is ``'macro_f1'`` or ``'accuracy'``.

    alibi draws its permutations from NumPy's global generator and takes no generator: it is
    seeded for this call and the caller's global state is given back afterwards.
    Its estimate swaps the two halves of a shuffled data set (each beat gets the segment of
    a beat from the other half), so the numbers differ slightly from
    :func:`permutation_importance`, not in expectation.
    """
    from alibi.explainers import PermutationImportance
    from sklearn.metrics import accuracy_score

    X, y = _check(model, X, targets)
    masks, names, unit = _features(features, X.shape[1], X.shape[2], names)
    fns = {"macro_f1": macro_f1_score, "accuracy": accuracy_score}
    if metric not in fns:
        raise ValueError(f"metric must be one of {list(fns)}, got {metric!r}")
    predict = label_predictor(model, X.shape[1], X.shape[2])
    flat = X.reshape(len(X), -1)
    explainer = PermutationImportance(predictor=predict, score_fns={metric: fns[metric]})
    with seeded_global_random(seed):
        exp = explainer.explain(flat, y, features=flat_column_groups(masks), method="estimate",
                                kind="difference", n_repeats=n_repeats)
    samples = np.stack([np.asarray(f["samples"] if isinstance(f, dict) else [f],
                                   dtype=float).reshape(-1)
                        for f in exp.data["feature_importance"][0]])
    base = {metric: float(fns[metric](y, predict(X)))}
    return _explanation("pfi_alibi", output, y, masks, names, unit, base, {metric: samples},
                        metric, "permute", n_repeats)


# --------------------------------------------------------------------------------------------
# Reading a PFI explanation
# --------------------------------------------------------------------------------------------
def _drops(exp: Explanation, metric: str | None) -> np.ndarray:
    drops = exp.extras.get("drops")
    if drops is None:
        raise ValueError(f"{exp.method} is not a PFI explanation")
    metric = exp.extras["metric"] if metric is None else metric
    if metric not in drops:
        raise ValueError(f"unknown metric {metric!r}; available: {', '.join(drops)}")
    return drops[metric]


def mean(exp: Explanation, metric: str | None = None) -> np.ndarray:
    """Mean importance per feature (n_features,) for ``metric`` (default: the one explained)."""
    return _drops(exp, metric).mean(axis=1)


def std(exp: Explanation, metric: str | None = None) -> np.ndarray:
    """Standard deviation over the repeats per feature (0 for deterministic replacements)."""
    return _drops(exp, metric).std(axis=1)


def per_class(exp: Explanation, classes: Sequence[str] = config.CLASSES) -> np.ndarray:
    """Mean drop of each class's recall: (n_classes, n_features); NaN for absent classes."""
    drops = exp.extras.get("drops", {})
    return np.stack([mean(exp, f"recall_{c}") if f"recall_{c}" in drops
                     else np.full(len(exp.extras["names"]), np.nan) for c in classes])


def table(exp: Explanation, metric: str | None = None, decimals: int = 3):
    """pandas DataFrame: feature name, mean and std of the importance (in feature order)."""
    import pandas as pd

    return pd.DataFrame({"feature": exp.extras["names"], "importance": mean(exp, metric),
                         "std": std(exp, metric)}).round(decimals)


def top(exp: Explanation, metric: str | None = None, k: int = 3) -> list[str]:
    """Names of the ``k`` most important features (ties broken by feature order)."""
    order = np.argsort(-mean(exp, metric), kind="stable")
    return [exp.extras["names"][i] for i in order[:k]]


def top_per_class(exp: Explanation, k: int = 3, classes: Sequence[str] = config.CLASSES,
                  decimals: int = 2):
    """pandas DataFrame: for each class present, its ``k`` features with the largest drop
    in recall, as ``'name (drop)'``."""
    import pandas as pd

    names, rows = exp.extras["names"], {}
    for c in classes:
        if f"recall_{c}" not in exp.extras.get("drops", {}):
            continue
        imp = mean(exp, f"recall_{c}")
        order = np.argsort(-imp, kind="stable")[:k]
        rows[f"{c} ({config.CLASS_NAMES.get(c, c)})"] = [
            f"{names[j]} ({imp[j]:.{decimals}f})" for j in order]
    return pd.DataFrame(rows, index=[f"#{i + 1}" for i in range(k)]).T


def class_relevance(per_class_drops: np.ndarray, y: np.ndarray, n_segments: int = 16,
                    window: int = config.WINDOW, leads: int = 2) -> np.ndarray:
    """Per-beat relevance map (n, window, leads) for overlays: beat i gets the per-class
    importance of its own class (``per_class_drops`` (n_classes, leads * n_segments), see
    :func:`per_class`) spread onto the samples of each segment."""

    per_class_drops = np.asarray(per_class_drops, dtype=float)
    if per_class_drops.ndim != 2 or per_class_drops.shape[1] != leads * n_segments:
        raise ValueError(f"per_class must be (n_classes, {leads * n_segments}), got "
                         f"{per_class_drops.shape}")
    y = check_targets(y, len(np.atleast_1d(y)), len(per_class_drops))
    maps = to_samples(np.nan_to_num(per_class_drops), "segments", window, leads,
                      n_segments=n_segments)
    return maps[y]
