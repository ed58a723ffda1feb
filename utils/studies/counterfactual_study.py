"""The counterfactual study of deep dive D4: every method on one set of beats, stored and
reloaded, judged with every metric, and drawn (issue 26).

* :func:`run_methods` - the methods of :data:`METHODS` (nearest unlike neighbour and Native
  Guide, each with Euclidean and DTW search, and the Wachter-style baseline) on the same
  beats;
* :func:`pack` / :func:`unpack` - the results as plain arrays for :func:`utils.core.results.cached`
  and back to :class:`~utils.explainers.counterfactual.Counterfactual` objects;
* :func:`judge` - the per-beat metrics of :mod:`utils.assess.counterfactual_metrics` for one result,
  plausibility included;
* :func:`plot_counterfactual` - original and counterfactual of one beat per lead in mV, the
  changed samples shaded.
"""
from __future__ import annotations

import json
from typing import Callable, Mapping

import numpy as np

from utils.explainers import counterfactual as cf
from utils.assess import counterfactual_metrics as cm
from utils.plotting import beat_time, lead_axes
from utils.core.config import LEAD_SHORT

#: name -> (method, options): the methods compared in D4, in the order of the tables.
METHODS: dict[str, tuple[Callable, dict]] = {
    "NUN (Euclid)": (cf.nearest_unlike_neighbour, {"distance": "euclidean"}),
    "NUN (DTW)": (cf.nearest_unlike_neighbour, {"distance": "dtw"}),
    "Native Guide (Euclid)": (cf.native_guide, {"distance": "euclidean"}),
    "Native Guide (DTW)": (cf.native_guide, {"distance": "dtw"}),
    "Wachter": (cf.wachter, {}),
}
#: One colour per method (the course rule), used by every figure of D4.
COLOURS: dict[str, str] = {
    "NUN (Euclid)": "tab:grey", "NUN (DTW)": "tab:brown", "Native Guide (Euclid)": "tab:blue",
    "Native Guide (DTW)": "tab:green", "Wachter": "tab:purple",
}
_NEEDS_REFERENCE = (cf.nearest_unlike_neighbour, cf.native_guide)


def run_methods(model, X, targets, reference, reference_y, *,
                methods: Mapping[str, tuple[Callable, dict]] | None = None
                ) -> dict[str, cf.Counterfactual]:
    """Every method of ``methods`` (default :data:`METHODS`) on the beats ``X`` for
    ``targets``; the neighbour methods search ``reference`` beats (classes ``reference_y``)."""
    out = {}
    for name, (method, options) in (methods or METHODS).items():
        extra = ({"reference": reference, "reference_y": reference_y}
                 if method in _NEEDS_REFERENCE else {})
        out[name] = method(model, X, targets, **options, **extra)
    return out


def pack(results: Mapping[str, cf.Counterfactual]) -> dict[str, np.ndarray]:
    """The results as numeric/string arrays (for :func:`utils.core.results.cached`)."""
    names = list(results)
    if not names:
        raise ValueError("no results to pack")
    first = results[names[0]]
    arrays = {"names": np.array(names), "original": _compact(first.original),
              "target": first.target, "scores_before": first.scores_before}
    for k, name in enumerate(names):
        r = results[name]
        if not np.array_equal(r.original, first.original):
            raise ValueError(f"{name} explains other beats than {names[0]}")
        arrays[f"{k}/counterfactual"] = _compact(r.counterfactual)
        arrays[f"{k}/scores_after"] = r.scores_after
        arrays[f"{k}/meta"] = np.array(json.dumps({
            "method": r.method, "output": r.output, "kind": r.kind,
            "options": r.options, "seconds": r.extras["seconds"]}, sort_keys=True))
        for key, value in r.extras.items():
            if key not in cf.REQUIRED and isinstance(value, np.ndarray):
                arrays[f"{k}/x/{key}"] = value
    return arrays


def _compact(a: np.ndarray) -> np.ndarray:
    """``a`` as float32 when that is exact (beats are float32 throughout), else unchanged."""
    a32 = np.asarray(a).astype(np.float32)
    return a32 if np.array_equal(a32, a) else np.asarray(a)


def unpack(arrays: Mapping[str, np.ndarray]) -> dict[str, cf.Counterfactual]:
    """Inverse of :func:`pack`."""
    out = {}
    original = np.asarray(arrays["original"], dtype=np.float64)
    for k, name in enumerate(np.asarray(arrays["names"]).tolist()):
        meta = json.loads(str(arrays[f"{k}/meta"]))
        X_cf = np.asarray(arrays[f"{k}/counterfactual"], dtype=np.float64)
        extras = {"original": original, "counterfactual": X_cf,
                  "scores_before": np.asarray(arrays["scores_before"]),
                  "scores_after": np.asarray(arrays[f"{k}/scores_after"]),
                  "seconds": meta["seconds"]}
        prefix = f"{k}/x/"
        extras.update({key[len(prefix):]: np.asarray(v) for key, v in arrays.items()
                       if key.startswith(prefix)})
        out[name] = cf.Counterfactual(X_cf - original, np.asarray(arrays["target"]),
                                      meta["method"], meta["output"], kind=meta["kind"],
                                      extras=extras, options=meta["options"])
    return out


def judge(result: cf.Counterfactual, *, detector: cm.PlausibilityDetector | None = None,
          autoencoder=None, autoencoder_reference_error: float | None = None,
          atol: float = cm.ATOL,
          dtw_window: int | None = cf.DTW_WINDOW) -> dict[str, np.ndarray]:
    """Per-beat metrics of one result: validity, L1, L2, DTW, sparsity, segments, and where
    given the share flagged ``implausible`` by ``detector`` and the autoencoder ratio
    (``AE ratio``, :func:`~utils.assess.counterfactual_metrics.autoencoder_ratio` with the median
    error of real beats ``autoencoder_reference_error``); NaN where a detector is not given."""
    X, X_cf = result.original, result.counterfactual
    out = cm.beat_metrics(X, X_cf, result.scores_after, result.target, atol=atol,
                          dtw_window=dtw_window)
    n = len(X)
    out["implausible"] = (detector.implausible(X_cf).astype(np.float64) if detector is not None
                          else np.full(n, np.nan))
    out["AE ratio"] = (cm.autoencoder_ratio(autoencoder, X_cf,
                                            reference_error=autoencoder_reference_error)
                       if autoencoder is not None else np.full(n, np.nan))
    return out


def ms_per_beat(results: Mapping[str, cf.Counterfactual]) -> dict[str, float]:
    """Wall time per beat of each result, in ms (as measured when it was computed)."""
    return {name: cm.ms_per_beat(r.extras["seconds"], len(r)) for name, r in results.items()}


def plot_counterfactual(original_mv: np.ndarray, counterfactual_mv: np.ndarray, ax=None,
                        title: str | None = None, colour: str = "tab:blue",
                        label: str = "counterfactual", atol: float = cm.ATOL,
                        changed_from=None):
    """One beat (window, leads) in mV and its counterfactual, one axis per lead; the samples
    where the counterfactual differs (``changed_from``: the pair in z-score units that decides
    what changed, default the mV pair itself) are shaded."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(9, 3.2))
    x = np.asarray(original_mv, dtype=float)
    xc = np.asarray(counterfactual_mv, dtype=float)
    if x.shape != xc.shape or x.ndim != 2:
        raise ValueError(f"need two (window, leads) beats, got {x.shape} and {xc.shape}")
    pair = changed_from if changed_from is not None else (x, xc)
    segments = cm.changed_segments(np.asarray(pair[0])[None], np.asarray(pair[1])[None],
                                   atol)[0]
    t = beat_time(len(x))
    dt = t[1] - t[0]

    for lead, child in enumerate(lead_axes(ax, x.shape[1])):
        for a, b in segments:
            child.axvspan(t[a] - dt / 2, t[b - 1] + dt / 2, color=colour, alpha=0.15, lw=0)
        child.plot(t, x[:, lead], color="k", lw=1.1, label="original")
        child.plot(t, xc[:, lead], color=colour, lw=1.1, label=label)
        child.axvline(0, color="grey", ls=":", lw=0.8)
        lo, hi = float(min(x[:, lead].min(), xc[:, lead].min())), float(
            max(x[:, lead].max(), xc[:, lead].max()))
        pad = 0.08 * (hi - lo or 1.0)
        child.set_ylim(lo - pad, hi + pad)
        child.set_ylabel(f"{LEAD_SHORT[lead] if lead < len(LEAD_SHORT) else lead}\n(mV)")
        if lead == 0:
            child.legend(loc="upper right", fontsize=8, frameon=False)
    ax.set_xlim(t[0], t[-1])
    ax.set_xlabel("time from R peak (s)")
    if title:
        ax.set_title(title)
    return ax
