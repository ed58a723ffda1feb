"""Replacing part of a beat: the one vocabulary shared by PFI, LIME, Kernel SHAP, the baselines
of Integrated Gradients and the perturbation tests.

:func:`fill` writes new values into the samples selected by a boolean mask; ``how`` says what
"switched off" means (every choice is an assumption about what *no information* looks like):

* ``"zero"``: 0. Beats are z-scored per beat and lead, so this is a flat line at the beat's
  own mean level (not 0 mV).
* ``"median"``: a flat line at the median of each beat and lead (close to the isoelectric line).
* ``"mean"``: a reference beat (e.g. the average training beat): the part looks "typical".
* ``"blur"``: the beat smoothed by a Gaussian of ``sigma`` samples (slow waves kept, QRS gone).
* ``"noise"``: Gaussian noise of standard deviation ``noise_scale``.
* ``"permute"``: the same samples of another beat of the batch (one random permutation of the
  beats; the samples of the mask stay together): the PFI recipe.
* ``"interpolate"``: a straight line across each masked stretch, per lead (np.interp between
  the nearest kept samples, ends held): the beat keeps a plausible shape.

:func:`baseline` is :func:`fill` on the whole beat (the reference input of IG).
"""
from __future__ import annotations

import numpy as np

from utils.core import config
from utils.core.beats import validate_beats

FILLS: tuple[str, ...] = ("zero", "median", "mean", "blur", "noise", "permute", "interpolate")

Seed = int | np.random.Generator


def _mask(mask, shape: tuple[int, int, int]) -> np.ndarray:
    """``mask`` as a boolean (n, window, leads) array: ``True`` (all), (window, leads) or per beat."""
    m = np.asarray(mask)
    if m.dtype != bool:
        raise ValueError(f"mask must be boolean, got dtype {m.dtype}")
    try:
        return np.broadcast_to(m, shape)
    except ValueError:
        raise ValueError(f"mask of shape {m.shape} does not fit beats {shape}: use (window, "
                         "leads) or (n, window, leads)") from None


def _replacement(X: np.ndarray, how: str, reference, sigma: float, noise_scale: float,
                 seed: Seed) -> np.ndarray:
    """Full beats (n, window, leads) holding the values that ``how`` writes."""
    if how == "zero":
        return np.zeros_like(X)
    if how == "median":
        return np.broadcast_to(np.median(X, axis=1, keepdims=True), X.shape)
    if how == "mean":
        if reference is None:
            raise ValueError("how='mean' needs a reference beat (window, leads), e.g. "
                             "X_train.mean(axis=0)")
        ref = np.asarray(reference, dtype=np.float32)
        if ref.shape != X.shape[1:]:
            raise ValueError(f"reference beat {ref.shape} does not match beats {X.shape[1:]}")
        if not np.all(np.isfinite(ref)):
            raise ValueError("reference beat contains NaN or infinite values")
        return np.broadcast_to(ref, X.shape)
    if how == "blur":
        from scipy.ndimage import gaussian_filter1d

        if not sigma > 0:
            raise ValueError(f"sigma must be positive, got {sigma}")
        return gaussian_filter1d(X, sigma=sigma, axis=1, mode="nearest")
    if how == "noise":
        if not noise_scale >= 0:
            raise ValueError(f"noise_scale must be >= 0, got {noise_scale}")
        rng = np.random.default_rng(seed)
        return noise_scale * rng.standard_normal(X.shape)
    if how == "permute":
        if len(X) < 2:
            raise ValueError("how='permute' needs at least 2 beats to swap between")
        return X[np.random.default_rng(seed).permutation(len(X))]
    raise ValueError(f"how must be one of {FILLS}, got {how!r}")


def fill(X: np.ndarray, mask, how: str = "zero", *, reference: np.ndarray | None = None,
         sigma: float = 8.0, noise_scale: float = 1.0, seed: Seed = config.SEED) -> np.ndarray:
    """Copy of beats ``X`` (n, window, leads) with the samples where ``mask`` is ``True``
    replaced as ``how`` says (see the module docstring). ``mask``: ``True`` (whole beat),
    (window, leads) for every beat, or (n, window, leads). ``seed`` (an int or a
    ``np.random.Generator``, consumed in place) drives ``"noise"`` and ``"permute"``."""
    shape = np.shape(X)
    X = validate_beats(X, *(shape[1:] if len(shape) == 3 else (config.WINDOW, 2)))
    m = _mask(mask, X.shape)
    if how == "interpolate":
        out = X.copy()
        grid = np.arange(X.shape[1])
        for i, lead in zip(*np.nonzero(m.any(axis=1))):
            off = m[i, :, lead]
            if off.all():
                raise ValueError(f"cannot interpolate beat {i}, lead {lead}: every sample masked")
            out[i, off, lead] = np.interp(grid[off], grid[~off], X[i, ~off, lead])
        return out
    repl = _replacement(X, how, reference, sigma, noise_scale, seed)
    return np.where(m, repl, X).astype(np.float32)


def baseline(X: np.ndarray, how: str = "zero", **options) -> np.ndarray:
    """Reference beats (n, window, leads): :func:`fill` on every sample (IG baselines,
    LIME/SHAP's "switched off" beat). ``how='interpolate'`` is not a baseline."""
    if how == "interpolate":
        raise ValueError("'interpolate' needs kept samples; choose another baseline")
    return fill(X, True, how, **options)
