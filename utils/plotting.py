"""Figures a clinician can read: ECG in mV over seconds, explanations overlaid, confusion
matrices in percent per true class, training curves and per-class averages.

Every function draws on a given matplotlib ``Axes`` (or makes one) and returns it, so the
notebooks can compose figures step by step. Where a function takes relevance it also takes an
:class:`~utils.core.explain.Explanation` (as ``shap.plots`` take a ``shap.Explanation``): its
``values`` (sample space), or for :func:`plot_segment_importance` its ``native`` segment values.
"""
from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.collections import LineCollection

from utils.core import config
from utils.core.config import LEAD_NAMES, LEAD_SHORT
from utils.core.explain import Explanation, relevance_values
from utils.core.segments import segment_bounds

#: Colour map of signed relevance (red = for the class, blue = against it), centred at zero.
DIVERGING_CMAP = "coolwarm"
#: Colour map of non-negative relevance (Grad-CAM after its ReLU, attention weights).
SEQUENTIAL_CMAP = "viridis"
#: Smallest font size (points) of any text in a course figure.
MIN_FONT_SIZE = 8.0

#: One colour per explanation method, the same in every figure of the course (Okabe & Ito's
#: colour-blind-safe palette first, then darker tones; grey is kept for the random baseline).
METHOD_COLOURS: dict[str, str] = {
    "PFI": "#8c564b", "LIME": "#E69F00", "Kernel SHAP": "#D55E00", "gradient SHAP": "#CC79A7",
    "CAM": "#56B4E9", "Grad-CAM": "#0072B2", "IG": "#009E73", "LRP": "#6a3d9a",
    "saliency": "#b59b00", "gradient x input": "#17becf", "attention": "#a50f15",
    "counterfactual": "#1b1b1b", "random": "#999999",
}
#: Other spellings of the methods (lower case, ``_`` as a space) -> the keys above.
METHOD_ALIASES: dict[str, str] = {
    "integrated gradients": "IG", "kernelshap": "Kernel SHAP", "shap": "Kernel SHAP",
    "gradcam": "Grad-CAM", "grad cam": "Grad-CAM", "gradient shap": "gradient SHAP",
    "gradient×input": "gradient x input", "gradient times input": "gradient x input",
    "permutation feature importance": "PFI",
}


def method_colour(label: str) -> str:
    """The course colour of a method label (``"IG"``, ``"integrated_gradients"``,
    ``"lrp_epsilon"`` and ``"Grad-CAM (LSTM)"`` alike); KeyError for an unknown method."""
    key = label.split(" (")[0].strip()
    if key in METHOD_COLOURS:
        return METHOD_COLOURS[key]
    low = key.lower().replace("_", " ").replace("-", " ")
    for name in METHOD_COLOURS:
        if low == name.lower().replace("-", " "):
            return METHOD_COLOURS[name]
    if low in METHOD_ALIASES:
        return METHOD_COLOURS[METHOD_ALIASES[low]]
    if low.startswith("lrp"):
        return METHOD_COLOURS["LRP"]
    raise KeyError(f"no course colour for the method {label!r}; add it to METHOD_COLOURS")


#: Matplotlib settings of every course figure (see docs/FIGURES.md): no text under 8 pt.
COURSE_RC: dict = {
    "figure.dpi": 90, "figure.figsize": (9, 3.2), "axes.grid": True, "grid.alpha": 0.3,
    "axes.spines.top": False, "axes.spines.right": False,
    "font.size": 10, "axes.titlesize": 10, "axes.labelsize": 9, "xtick.labelsize": 8,
    "ytick.labelsize": 8, "legend.fontsize": 8, "legend.title_fontsize": 8,
    "figure.titlesize": 11,
}


def use_course_style() -> None:
    """Apply :data:`COURSE_RC` to matplotlib (``utils.notebook.setup_notebook`` calls it)."""
    plt.rcParams.update(COURSE_RC)


def beat_time(window: int = config.WINDOW, fs: int = config.BEAT_FS,
              r_offset: int = config.R_OFFSET) -> np.ndarray:
    """Time axis of a beat window in seconds, 0 at the annotated R peak."""
    return (np.arange(window) - r_offset) / fs


def relevance_norm(values: np.ndarray, signed: bool = True):
    """The colour normalisation of a relevance map.
    ``signed``: a :class:`matplotlib.colors.CenteredNorm` centred at 0 with half-range
    ``max |values|`` (0 is always the middle colour of the diverging map). Otherwise the values
    must be non-negative (``ValueError`` if not: signed relevance on a sequential map would
    hide its sign) and the norm runs from 0 to their maximum.
    """
    from matplotlib.colors import CenteredNorm, Normalize

    values = np.asarray(values, dtype=float)
    finite = values[np.isfinite(values)]
    vmax = float(np.max(np.abs(finite))) if finite.size else 0.0
    vmax = vmax or 1.0
    if signed:
        return CenteredNorm(vcenter=0.0, halfrange=vmax)
    if finite.size and float(finite.min()) < -1e-9 * vmax:
        raise ValueError("relevance has negative values: plot it with signed=True (a diverging "
                         "map centred at 0), not on a sequential map")
    return Normalize(0.0, vmax)


def _signed(signed: bool | None, symmetric: bool | None) -> bool:
    """``signed`` wins; ``symmetric`` is its former name (kept for old calls)."""
    if signed is not None:
        return bool(signed)
    return True if symmetric is None else bool(symmetric)


def lead_axes(ax, n_leads: int, gap: float = 0.08) -> list:
    """Split ``ax`` into one axis per lead, stacked top to bottom, sharing its time axis.
    ``ax`` stays the container: it keeps the title, the time ticks and the x label (so code
    that calls ``ax.set_title`` / ``ax.set_xlabel`` / ``ax.axvline`` on it keeps working),
    while each lead gets its own inset axis with true millivolt ticks. Calling it again on
    the same ``ax`` returns the same lead axes.
    """
    existing = [child for child in ax.child_axes if getattr(child, "_course_lead", None)
                is not None]
    if len(existing) == n_leads:
        return existing
    height = (1.0 - gap * (n_leads - 1)) / n_leads
    axes = []
    for i in range(n_leads):
        child = ax.inset_axes([0.0, 1.0 - (i + 1) * height - i * gap, 1.0, height], sharex=ax)
        child._course_lead = i
        child.set_facecolor("none")
        # the container draws the time ticks and the vertical grid behind the leads; an
        # invisible x axis on each lead saves most of the drawing time of many-panel figures
        # (matplotlib lays out the ticks of every shared axis otherwise)
        child.xaxis.set_visible(False)
        child.spines["bottom"].set_visible(False)
        axes.append(child)
    ax.set_yticks([])
    ax.spines["left"].set_visible(False)
    ax.grid(False)
    ax.grid(True, axis="x")
    return axes


def _finish_lead_axis(ax, y: np.ndarray, name: str, unit: str) -> None:
    from matplotlib.ticker import MaxNLocator

    lo, hi = float(np.nanmin(y)), float(np.nanmax(y))
    pad = 0.08 * (hi - lo or 1.0)
    ax.set_ylim(lo - pad, hi + pad)
    ax.yaxis.set_major_locator(MaxNLocator(3))
    ax.set_ylabel(f"{name}\n({unit})")


def _axes(ax=None, figsize=(9, 3)):
    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


def plot_beat(beat: np.ndarray, ax=None, title: str | None = None, unit: str = "mV",
              leads: Sequence[int] = (0, 1), lead_names: Sequence[str] = LEAD_SHORT,
              offset: float | None = None):
    """Plot the leads of one beat (window, leads) against time relative to the R peak.
    Each lead gets its own axis (see :func:`lead_axes`) with true ``unit`` ticks; ``ax`` is
    returned and carries the title and the time axis. ``offset`` is ignored (leads are no
    longer stacked on one axis; kept so that old calls still run).
    """
    ax = _axes(ax)
    beat = np.asarray(beat, dtype=float)
    t = beat_time(len(beat))
    axes = lead_axes(ax, len(leads))
    for child, lead in zip(axes, leads):
        child.plot(t, beat[:, lead], color="k", lw=1.2)
        child.axvline(0, color="grey", ls=":", lw=0.8)
        _finish_lead_axis(child, beat[:, lead], lead_names[lead], unit)
    ax.set_xlim(t[0], t[-1])
    ax.set_xlabel("time from R peak (s)")
    if title:
        ax.set_title(title)
    return ax


def _relevance(relevance, one_beat: bool = False) -> np.ndarray:
    """Relevance as a float array; an Explanation gives its ``values`` (of its only beat when
    ``one_beat``)."""
    if one_beat and isinstance(relevance, Explanation):
        if len(relevance) != 1:
            raise ValueError(f"plot one beat: pass exp[i], not an Explanation of "
                             f"{len(relevance)} beats")
        return relevance.values[0]
    return relevance_values(relevance)


def plot_relevance(beat: np.ndarray, relevance, ax=None, title: str | None = None,
                   unit: str = "mV", cmap: str | None = None, symmetric: bool | None = None,
                   colorbar: bool = True, lw: float = 2.2, label: str = "relevance",
                   signed: bool | None = None, norm=None):
    """ECG with an explanation drawn as the colour of the trace (one colour per sample).
    ``beat`` and ``relevance`` are (window, leads); a 1-D ``relevance`` (window,) is shared by
    both leads (e.g. CAM, attention); ``relevance`` may be an Explanation of one beat (``exp[i]``). Each lead is drawn on its own axis with true ``unit``
    ticks. ``signed=True`` (default) puts signed relevance on the diverging map centred at 0
    (red = for the class, blue = against it); ``signed=False`` puts non-negative relevance
    (Grad-CAM, attention) on a sequential map from 0 (``symmetric`` is the former name of
    ``signed``). ``norm`` overrides the colour scale (e.g. one shared by several panels).
    Returns ``ax``, which carries the title, the time axis and the colour bar.
    """
    ax = _axes(ax)
    beat = np.asarray(beat, dtype=float)
    relevance = _relevance(relevance, one_beat=True)
    if relevance.ndim == 1:
        relevance = np.repeat(relevance[:, None], beat.shape[1], axis=1)
    if relevance.shape != beat.shape:
        raise ValueError(f"relevance {relevance.shape} does not match beat {beat.shape}")
    is_signed = _signed(signed, symmetric)
    norm = norm if norm is not None else relevance_norm(relevance, is_signed)
    cmap = cmap or (DIVERGING_CMAP if is_signed else SEQUENTIAL_CMAP)
    t = beat_time(len(beat))
    axes = lead_axes(ax, beat.shape[1])
    for lead, child in enumerate(axes):
        y = beat[:, lead]
        pts = np.stack([t, y], axis=1)
        segs = np.stack([pts[:-1], pts[1:]], axis=1)
        lc = LineCollection(segs, cmap=cmap, norm=norm, lw=lw)
        lc.set_array((relevance[:-1, lead] + relevance[1:, lead]) / 2)
        child.add_collection(lc)
        child.plot(t, y, color="k", lw=0.4, alpha=0.6)
        child.axvline(0, color="grey", ls=":", lw=0.8)
        _finish_lead_axis(child, y, LEAD_SHORT[lead] if lead < len(LEAD_SHORT) else
                          f"lead {lead}", unit)
    ax.set_xlim(t[0], t[-1])
    ax.set_xlabel("time from R peak (s)")
    if colorbar:
        plt.colorbar(lc, ax=ax, label=label, pad=0.01)
    if title:
        ax.set_title(title)
    return ax


def plot_confusion(cm: np.ndarray, ax=None, title: str | None = None,
                   classes: Sequence[str] = config.CLASSES, normalize: bool = True):
    """Confusion matrix (rows = true class) as percentages of each true class.
    Uses scikit-learn's ``ConfusionMatrixDisplay``; rows with no beats show 0.
    """
    from sklearn.metrics import ConfusionMatrixDisplay

    cm = np.asarray(cm, dtype=float)
    if normalize:
        totals = cm.sum(axis=1, keepdims=True)
        cm = np.divide(100 * cm, totals, out=np.zeros_like(cm), where=totals > 0)
    ax = _axes(ax, figsize=(5, 4.5))
    disp = ConfusionMatrixDisplay(cm, display_labels=list(classes))
    disp.plot(ax=ax, cmap="Blues", values_format=".1f" if normalize else "d", colorbar=False)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.grid(False)
    if title:
        ax.set_title(title + (" (% of true class)" if normalize else ""))
    return ax


def plot_history(history: dict[str, list[float]], axes=None, title: str = ""):
    """Training curves: loss and accuracy per epoch, training vs validation."""
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(9, 3))
    for ax, key in zip(axes, ("loss", "accuracy")):
        if key not in history:
            ax.set_visible(False)
            continue
        ax.plot(np.arange(1, len(history[key]) + 1), history[key], label="train")
        if f"val_{key}" in history:
            ax.plot(np.arange(1, len(history[key]) + 1), history[f"val_{key}"],
                    label="validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.set_title(f"{title} {key}".strip())
        ax.legend()
    return axes


def plot_class_averages(beats_mv: np.ndarray, relevance, y: np.ndarray,
                        title: str = "", classes: Sequence[str] = config.CLASSES,
                        symmetric: bool | None = None, ncols: int = 4,
                        label: str = "mean relevance", signed: bool | None = None):
    """One panel per class: the class-average beat coloured by the class-average relevance.
    ``beats_mv`` (n, window, leads), ``relevance`` (n, window, leads), (n, window) or an
    Explanation,
    ``y`` (n,) class indices. Classes with no beats are left blank. All panels share one
    colour scale and one colour bar (diverging and centred at 0 when ``signed``, the default;
    sequential from 0 for non-negative relevance).
    """
    from matplotlib.cm import ScalarMappable

    is_signed = _signed(signed, symmetric)
    present = [c for c in range(len(classes)) if np.any(y == c)]
    relevance = _relevance(relevance)
    means = {c: relevance[y == c].mean(0) for c in present}
    norm = relevance_norm(np.stack(list(means.values())) if means else np.zeros(1), is_signed)
    cmap = DIVERGING_CMAP if is_signed else SEQUENTIAL_CMAP
    nrows = int(np.ceil(len(classes) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols + 0.8, 3.0 * nrows),
                             squeeze=False, layout="constrained")
    for c, ax in zip(range(len(classes)), axes.ravel()):
        if c not in present:
            ax.set_visible(False)
            continue
        sel = y == c
        plot_relevance(beats_mv[sel].mean(0), means[c], ax=ax, signed=is_signed, norm=norm,
                       cmap=cmap, colorbar=False, lw=1.8)
        ax.set_title(f"{classes[c]}: {config.CLASS_NAMES[classes[c]]} (n={sel.sum()})",
                     fontsize=MIN_FONT_SIZE + 1)
        ax.set_xlabel("s from R")
    fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=axes.ravel().tolist(), label=label,
                 shrink=0.8)
    if title:
        fig.suptitle(title)
    return fig


def plot_segment_importance(importance, errors: np.ndarray | None = None,
                            ax=None, n_segments: int = 16, title: str | None = None,
                            ylabel: str = "importance"):
    """Bar chart of per-segment values for each lead (features numbered lead-major).
    ``importance`` may be an Explanation on segments (PFI, LIME, Kernel SHAP): its ``native``
    values, averaged over the beats, with PFI's spread over repeats as ``errors``."""
    ax = _axes(ax)
    if isinstance(importance, Explanation):
        if importance.unit != "segments" or importance.native is None:
            raise ValueError(f"{importance.method} has no segment values (unit "
                             f"{importance.unit!r}); plot its values with plot_relevance")
        if errors is None and importance.scope == "global":
            errors = importance.extras.get("std")
        importance = importance.native.mean(axis=0)
    importance = np.asarray(importance).reshape(-1, n_segments)
    bounds = segment_bounds(config.WINDOW, n_segments)
    centres = (bounds.mean(axis=1) - config.R_OFFSET) / config.BEAT_FS
    width = (bounds[0, 1] - bounds[0, 0]) / config.BEAT_FS * 0.4
    for lead in range(importance.shape[0]):
        err = None if errors is None else np.asarray(errors).reshape(-1, n_segments)[lead]
        ax.bar(centres + (lead - 0.5) * width, importance[lead], width=width, yerr=err,
               label=LEAD_NAMES[lead], capsize=2)
    ax.axhline(0, color="k", lw=0.6)
    ax.axvline(0, color="grey", ls=":", lw=0.8)
    ax.set_xlabel("segment centre, time from R peak (s)")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=MIN_FONT_SIZE)
    if title:
        ax.set_title(title)
    return ax
