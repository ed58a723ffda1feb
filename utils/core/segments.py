"""Split a beat into contiguous time segments per lead: the interpretable features shared by
Permutation Feature Importance, LIME, Kernel SHAP and the perturbation tests.

A *segment* is ``(lead, start, stop)`` in samples. Features are numbered lead-major:
feature ``k`` is lead ``k // n_segments``, segment ``k % n_segments``. Per-segment values are
put back on the samples by :func:`utils.core.explain.to_samples` (``unit="segments"``) and summed
from them by :func:`utils.core.explain.segment_sums`.
"""
from __future__ import annotations

import numpy as np

from utils.core import config


def segment_bounds(window: int = config.WINDOW, n_segments: int = 16) -> np.ndarray:
    """(n_segments, 2) start/stop sample of each time segment (as equal as possible)."""
    if not 1 <= n_segments <= window:
        raise ValueError(f"n_segments must be in [1, {window}], got {n_segments}")
    edges = np.linspace(0, window, n_segments + 1).round().astype(int)
    return np.stack([edges[:-1], edges[1:]], axis=1)


def segment_mask(window: int = config.WINDOW, n_segments: int = 16, leads: int = 2
                 ) -> np.ndarray:
    """Boolean (n_features, window, leads) array: ``mask[k]`` selects the samples of feature k."""
    bounds = segment_bounds(window, n_segments)
    mask = np.zeros((leads * n_segments, window, leads), dtype=bool)
    for lead in range(leads):
        for s, (a, b) in enumerate(bounds):
            mask[lead * n_segments + s, a:b, lead] = True
    return mask


def segment_labels(n_segments: int = 16, leads: int = 2, fs: int = config.BEAT_FS,
                   window: int = config.WINDOW, r_offset: int = config.R_OFFSET) -> list[str]:
    """Readable names of the features, e.g. ``'lead0 -0.27..-0.22s'`` (time relative to R)."""
    bounds = segment_bounds(window, n_segments)
    names = []
    for lead in range(leads):
        for a, b in bounds:
            names.append(f"lead{lead} {(a - r_offset) / fs:+.2f}..{(b - r_offset) / fs:+.2f}s")
    return names


def apply_mask(X: np.ndarray, keep: np.ndarray, replacement: np.ndarray | float = 0.0,
               n_segments: int = 16) -> np.ndarray:
    """Switch segments off: where ``keep[i, k]`` is 0, feature k of beat i takes ``replacement``.

    ``X`` (n, window, leads) or one beat (window, leads) broadcast against ``keep`` (m, n_feat).
    ``replacement`` is a scalar or an array broadcastable to one beat (e.g. a class-mean beat).
    Returns (m, window, leads) when X is a single beat, else (n, window, leads).
    """
    X = np.asarray(X, dtype=np.float32)
    keep = np.atleast_2d(np.asarray(keep)).astype(bool)
    window, leads = X.shape[-2:]
    mask = segment_mask(window, n_segments, leads)
    if keep.shape[1] != mask.shape[0]:
        raise ValueError(f"keep has {keep.shape[1]} features, expected {mask.shape[0]}")
    off = np.tensordot(~keep, mask, axes=(1, 0)).astype(bool)  # (m, window, leads)
    base = np.broadcast_to(X, off.shape) if X.ndim == 2 else X
    repl = np.broadcast_to(np.asarray(replacement, dtype=np.float32), base.shape)
    return np.where(off, repl, base).astype(np.float32)
