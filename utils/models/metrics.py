"""Classification metrics for the 8 beat classes (thin wrappers over scikit-learn)."""
from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, recall_score

from utils.core import config

LABELS = list(range(len(config.CLASSES)))


def evaluate_predictions(y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    """Accuracy, macro-F1, per-class recall/F1 and the confusion matrix (rows = true class).
    Classes absent from ``y_true`` get recall NaN and are left out of the macro-F1.
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true {y_true.shape} and y_pred {y_pred.shape} differ in shape")
    present = [c for c in LABELS if np.any(y_true == c)]
    recall = recall_score(y_true, y_pred, labels=LABELS, average=None, zero_division=0)
    f1 = f1_score(y_true, y_pred, labels=LABELS, average=None, zero_division=0)
    return {
        "n": int(len(y_true)),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=present, average="macro",
                                   zero_division=0)),
        "recall": {c: (float(recall[i]) if i in present else float("nan"))
                   for i, c in enumerate(config.CLASSES)},
        "f1": {c: (float(f1[i]) if i in present else float("nan"))
               for i, c in enumerate(config.CLASSES)},
        "confusion": confusion_matrix(y_true, y_pred, labels=LABELS).tolist(),
    }


def evaluate_model(model, X: np.ndarray, y: np.ndarray, batch_size: int = 1024) -> dict:
    """:func:`evaluate_predictions` of ``argmax(model(X))`` against ``y``."""
    from utils.models.networks import predict_proba  # lazy: TensorFlow loads only when this runs

    return evaluate_predictions(y, predict_proba(model, X, batch_size).argmax(axis=1))


def metrics_table(results: dict[str, dict], digits: int = 3):
    """A pandas table (rows = models/splits) of accuracy, macro-F1 and recall per class."""
    import pandas as pd

    rows = {}
    for name, r in results.items():
        row = {"accuracy": r["accuracy"], "macro-F1": r["macro_f1"]}
        row.update({f"recall {c}": v for c, v in r["recall"].items()})
        rows[name] = row
    return pd.DataFrame(rows).T.round(digits)
