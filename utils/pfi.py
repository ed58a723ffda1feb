"""Permutation Feature Importance (PFI) of beat segments and leads: global, model-agnostic.

A *feature* here is a group of samples: one time segment of one lead (``utils.segments``,
numbered lead-major) or a whole lead. Its importance is the drop of a score (accuracy,
macro-F1, or the recall of one class) when that group is destroyed in every beat while the
rest of the beat is kept (Breiman 2001; Fisher, Rudin & Dominici 2019; Molnar, *Interpretable
Machine Learning*, ch. "Permutation Feature Importance").

Two ways to compute it:

* :func:`alibi_permutation_importance` - alibi's ``PermutationImportance`` on the beats
  flattened to (n, window * leads), with each segment passed as a *tuple of columns* so that
  alibi permutes the samples of a segment together (the custom grouping).
* :func:`permutation_importance` - a short loop of our own, used because (1) it reuses each
  set of permuted predictions for every metric at once (overall and per class: alibi scores
  all beats together, per-class recall would need one alibi run per class), and (2) it also
  supports *replacement* schemes (``'zero'`` = flat line at the beat's baseline, ``'mean'`` =
  average beat) besides shuffling, to show how the scheme changes the answer.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from . import config
from .segments import segment_labels, segment_mask, to_samples

PredictFn = Callable[[np.ndarray], np.ndarray]
SCHEMES: tuple[str, ...] = ("permute", "zero", "mean")


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
def label_predictor(model, batch_size: int = 4096, window: int = config.WINDOW,
                    leads: int = 2) -> PredictFn:
    """``f(X) -> predicted class index`` for a Keras classifier; ``X`` is (n, window, leads)
    or flattened (n, window * leads) (the form alibi passes).

    The model is called through one ``tf.function`` traced for any batch size, in chunks of
    ``batch_size``: PFI makes many calls on a few hundred beats, where ``model.predict``'s
    per-call set-up would cost more than the network itself.
    """
    import tensorflow as tf

    call = tf.function(lambda x: model(x, training=False), reduce_retracing=True,
                       input_signature=[tf.TensorSpec((None, window, leads), tf.float32)])

    def predict(X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float32).reshape(len(X), window, leads)
        out = [np.asarray(call(tf.constant(X[i:i + batch_size]))).argmax(axis=1)
               for i in range(0, len(X), batch_size)]
        return np.concatenate(out) if out else np.zeros(0, dtype=int)

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
# Destroying one feature
# --------------------------------------------------------------------------------------------
def scramble(X: np.ndarray, mask: np.ndarray, scheme: str = "permute",
             rng: np.random.Generator | None = None, reference: np.ndarray | None = None
             ) -> np.ndarray:
    """Copy of ``X`` (n, window, leads) with the samples in ``mask`` (window, leads) destroyed.

    ``'permute'``: the masked samples are shuffled *across beats* (beat i receives the segment
    of beat perm[i]; the samples of a segment stay together). ``'zero'``: they are set to 0,
    i.e. a flat line at the beat's mean (beats are z-scored). ``'mean'``: they take the values
    of ``reference`` (default: the average beat of ``X``).
    """
    X = np.asarray(X, dtype=np.float32)
    mask = np.asarray(mask, dtype=bool)
    if X.ndim != 3 or mask.shape != X.shape[1:]:
        raise ValueError(f"X must be (n, window, leads) and mask (window, leads); got "
                         f"{X.shape} and {mask.shape}")
    out = X.copy()
    if scheme == "permute":
        rng = rng if rng is not None else np.random.default_rng(config.SEED)
        out[:, mask] = X[:, mask][rng.permutation(len(X))]
    elif scheme == "zero":
        out[:, mask] = 0.0
    elif scheme == "mean":
        ref = X.mean(axis=0) if reference is None else np.asarray(reference, dtype=np.float32)
        out[:, mask] = np.broadcast_to(ref, X.shape[1:])[mask]
    else:
        raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")
    return out


# --------------------------------------------------------------------------------------------
# PFI
# --------------------------------------------------------------------------------------------
@dataclass
class PFIResult:
    """Importances of ``names`` features: ``drops[metric]`` is (n_features, n_repeats), the
    score without permutation minus the score with feature k destroyed (positive = the model
    needs the feature). ``base`` holds the unpermuted scores."""

    names: list[str]
    base: dict[str, float]
    drops: dict[str, np.ndarray]
    scheme: str
    n_repeats: int

    @property
    def metrics(self) -> list[str]:
        return list(self.drops)

    def mean(self, metric: str = "macro_f1") -> np.ndarray:
        """Mean importance per feature (n_features,)."""
        return self._get(metric).mean(axis=1)

    def std(self, metric: str = "macro_f1") -> np.ndarray:
        """Standard deviation over the repeats per feature (0 for deterministic schemes)."""
        return self._get(metric).std(axis=1)

    def per_class(self, classes: Sequence[str] = config.CLASSES) -> np.ndarray:
        """Mean drop of each class's recall: (n_classes, n_features); NaN for absent classes."""
        return np.stack([self.mean(f"recall_{c}") if f"recall_{c}" in self.drops
                         else np.full(len(self.names), np.nan) for c in classes])

    def table(self, metric: str = "macro_f1", decimals: int = 3):
        """pandas DataFrame: feature name, mean and std of the importance (in feature order)."""
        import pandas as pd

        return pd.DataFrame({"feature": self.names, "importance": self.mean(metric),
                             "std": self.std(metric)}).round(decimals)

    def top(self, metric: str = "macro_f1", k: int = 3) -> list[str]:
        """Names of the ``k`` most important features (ties broken by feature order)."""
        order = np.argsort(-self.mean(metric), kind="stable")
        return [self.names[i] for i in order[:k]]

    def top_per_class(self, k: int = 3, classes: Sequence[str] = config.CLASSES,
                      decimals: int = 2):
        """pandas DataFrame: for each class present, its ``k`` features with the largest drop
        in recall, as ``'name (drop)'``."""
        import pandas as pd

        rows = {}
        for c in classes:
            if f"recall_{c}" not in self.drops:
                continue
            imp = self.mean(f"recall_{c}")
            order = np.argsort(-imp, kind="stable")[:k]
            rows[f"{c} ({config.CLASS_NAMES.get(c, c)})"] = [
                f"{self.names[j]} ({imp[j]:.{decimals}f})" for j in order]
        return pd.DataFrame(rows, index=[f"#{i + 1}" for i in range(k)]).T

    def _get(self, metric: str) -> np.ndarray:
        if metric not in self.drops:
            raise ValueError(f"unknown metric {metric!r}; available: {', '.join(self.drops)}")
        return self.drops[metric]


def permutation_importance(predict_fn: PredictFn, X: np.ndarray, y: np.ndarray,
                           masks: np.ndarray, names: Sequence[str] | None = None,
                           n_repeats: int = 5, scheme: str = "permute",
                           reference: np.ndarray | None = None, seed: int = config.SEED
                           ) -> PFIResult:
    """PFI of the sample groups ``masks`` (n_features, window, leads) for ``predict_fn``.

    For each feature and repeat the group is destroyed with :func:`scramble` (one fresh
    permutation per repeat, from ``np.random.default_rng(seed)``), the beats are classified and
    :func:`scores` computed; the importance is the drop from the unpermuted scores. The
    replacement schemes ``'zero'``/``'mean'`` are deterministic, so they use one repeat.
    All repeats of one feature are classified in a single ``predict_fn`` call.
    """
    X = np.asarray(X, dtype=np.float32)
    y = np.asarray(y)
    masks = np.asarray(masks, dtype=bool)
    if X.ndim != 3 or len(X) != len(y):
        raise ValueError(f"X must be (n, window, leads) aligned with y; got {X.shape}, {y.shape}")
    if masks.ndim != 3 or masks.shape[1:] != X.shape[1:]:
        raise ValueError(f"masks must be (n_features, {X.shape[1]}, {X.shape[2]}), got "
                         f"{masks.shape}")
    if len(X) < 2:
        raise ValueError("need at least 2 beats to permute")
    if n_repeats < 1:
        raise ValueError(f"n_repeats must be >= 1, got {n_repeats}")
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")
    names = list(names) if names is not None else [f"f{k}" for k in range(len(masks))]
    if len(names) != len(masks):
        raise ValueError(f"{len(names)} names for {len(masks)} features")
    repeats = n_repeats if scheme == "permute" else 1
    rng = np.random.default_rng(seed)
    base = scores(y, predict_fn(X))
    drops = {m: np.zeros((len(masks), repeats)) for m in base}
    n = len(X)
    for k, mask in enumerate(masks):
        batch = np.concatenate([scramble(X, mask, scheme, rng, reference)
                                for _ in range(repeats)])
        pred = np.asarray(predict_fn(batch))
        for r in range(repeats):
            s = scores(y, pred[r * n:(r + 1) * n])
            for m in base:
                drops[m][k, r] = base[m] - s[m]
    return PFIResult(names, base, drops, scheme, repeats)


def alibi_permutation_importance(predict_fn: PredictFn, X: np.ndarray, y: np.ndarray,
                                 masks: np.ndarray, names: Sequence[str] | None = None,
                                 n_repeats: int = 5, metric: str = "macro_f1",
                                 seed: int = config.SEED) -> PFIResult:
    """The same importance with alibi's ``PermutationImportance`` (``method='estimate'``,
    ``kind='difference'``): the beats are flattened and each mask becomes a tuple of columns
    that alibi permutes together. ``metric`` is ``'macro_f1'`` or ``'accuracy'``.

    alibi draws its permutations from NumPy's global generator, which is seeded here.
    Its estimate swaps the two halves of a shuffled data set (each beat gets the segment of
    a beat from the other half), so the numbers differ slightly from
    :func:`permutation_importance`, not in expectation.
    """
    from alibi.explainers import PermutationImportance
    from sklearn.metrics import accuracy_score

    X = np.asarray(X, dtype=np.float32)
    y = np.asarray(y)
    masks = np.asarray(masks, dtype=bool)
    if X.ndim != 3 or masks.ndim != 3 or masks.shape[1:] != X.shape[1:]:
        raise ValueError(f"X must be (n, window, leads) and masks (k, window, leads); got "
                         f"{X.shape} and {masks.shape}")
    fns = {"macro_f1": macro_f1_score, "accuracy": accuracy_score}
    if metric not in fns:
        raise ValueError(f"metric must be one of {list(fns)}, got {metric!r}")
    names = list(names) if names is not None else [f"f{k}" for k in range(len(masks))]
    flat = X.reshape(len(X), -1)
    explainer = PermutationImportance(predictor=predict_fn, score_fns={metric: fns[metric]})
    np.random.seed(seed)
    exp = explainer.explain(flat, y, features=flat_column_groups(masks), method="estimate",
                            kind="difference", n_repeats=n_repeats)
    samples = np.stack([np.asarray(f["samples"] if isinstance(f, dict) else [f],
                                   dtype=float).reshape(-1)
                        for f in exp.data["feature_importance"][0]])
    base = {metric: float(fns[metric](y, predict_fn(X)))}
    return PFIResult(names, base, {metric: samples}, "permute", n_repeats)


def class_relevance(per_class: np.ndarray, y: np.ndarray, n_segments: int = 16,
                    window: int = config.WINDOW, leads: int = 2) -> np.ndarray:
    """Per-beat relevance map (n, window, leads) for overlays: beat i gets the per-class
    importance of its own class (``per_class`` (n_classes, leads * n_segments)) spread onto
    the samples of each segment."""
    per_class = np.asarray(per_class, dtype=float)
    y = np.asarray(y)
    if per_class.ndim != 2 or per_class.shape[1] != leads * n_segments:
        raise ValueError(f"per_class must be (n_classes, {leads * n_segments}), got "
                         f"{per_class.shape}")
    if y.size and (y.min() < 0 or y.max() >= len(per_class)):
        raise ValueError("y holds class indices outside per_class")
    maps = to_samples(np.nan_to_num(per_class), window, n_segments, leads)
    return maps[y]
