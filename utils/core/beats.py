"""The shape check every model input passes: a batch of beats ``(n, window, leads)``, finite.

Here, at the bottom of the package, so that the explanation contract (:mod:`utils.core.explain`)
and the perturbations (:mod:`utils.core.perturb`) check beats without importing the data layer.
"""
from __future__ import annotations

import numpy as np

from utils.core import config


def validate_beats(X: np.ndarray, window: int = config.WINDOW, leads: int = 2) -> np.ndarray:
    """Check a batch of beats for the models: shape (n, window, leads) with n >= 1, finite values.

    Raises ``ValueError`` with a clear message otherwise (one beat without the batch axis,
    leads-first arrays (n, leads, window), an empty batch, NaN/inf); returns ``X`` as float32.
    """
    try:
        X = np.asarray(X, dtype=np.float32)
    except (TypeError, ValueError):
        raise ValueError("beats must be a numeric array (n, window, leads)") from None
    if X.ndim == 2 and X.shape == (window, leads):
        raise ValueError(f"Expected a batch of beats (n, {window}, {leads}); got one beat "
                         f"of shape {X.shape}: use X[None] to add the batch axis.")
    if X.ndim == 3 and X.shape[1:] == (leads, window) and leads != window:
        raise ValueError(f"Beats are leads-first {X.shape}; expected (n, {window}, {leads}): "
                         "use X.transpose(0, 2, 1).")
    if X.ndim != 3 or X.shape[1:] != (window, leads):
        raise ValueError(f"Expected beats of shape (n, {window}, {leads}), got {X.shape}")
    if len(X) == 0:
        raise ValueError("The batch holds no beats (n = 0)")
    if not np.all(np.isfinite(X)):
        bad = np.flatnonzero(~np.isfinite(X).all(axis=(1, 2)))
        raise ValueError(f"Beats contain NaN or infinite values (beats {bad[:5].tolist()}"
                         f"{' ...' if len(bad) > 5 else ''})")
    return X
