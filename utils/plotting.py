"""Figures a clinician can read: ECG in mV over seconds, explanations overlaid, confusion
matrices in percent per true class, training curves and per-class averages.

Every function draws on a given matplotlib ``Axes`` (or makes one) and returns it, so the
notebooks can compose figures step by step.
"""
from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.collections import LineCollection

from . import config
from .config import LEAD_NAMES


def beat_time(window: int = config.WINDOW, fs: int = config.BEAT_FS,
              r_offset: int = config.R_OFFSET) -> np.ndarray:
    """Time axis of a beat window in seconds, 0 at the annotated R peak."""
    return (np.arange(window) - r_offset) / fs


def _lead_label(ax, t: np.ndarray, y: np.ndarray, name: str) -> None:
    """Name a stacked lead inside the axes, just above the start of its trace."""
    ax.text(t[0] + 0.01, float(np.max(y[: len(y) // 8])), name, ha="left", va="bottom",
            fontsize=8, color="0.3")


def _axes(ax=None, figsize=(9, 3)):
    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


def plot_beat(beat: np.ndarray, ax=None, title: str | None = None, unit: str = "mV",
              leads: Sequence[int] = (0, 1), lead_names: Sequence[str] = LEAD_NAMES,
              offset: float | None = None):
    """Plot both leads of one beat (window, leads) against time relative to the R peak.

    Leads are stacked with a vertical ``offset`` (default: 1.2 x the largest range).
    """
    ax = _axes(ax)
    t = beat_time(len(beat))
    offset = offset if offset is not None else 1.2 * float(np.ptp(beat))
    for i, lead in enumerate(leads):
        y = beat[:, lead] - i * offset
        ax.plot(t, y, color="k", lw=1.2, label=lead_names[lead])
        _lead_label(ax, t, y, lead_names[lead])
    ax.axvline(0, color="grey", ls=":", lw=0.8)
    ax.set_xlabel("time from R peak (s)")
    ax.set_ylabel(unit)
    if title:
        ax.set_title(title)
    return ax


def plot_relevance(beat: np.ndarray, relevance: np.ndarray, ax=None, title: str | None = None,
                   unit: str = "mV", cmap: str = "coolwarm", symmetric: bool = True,
                   colorbar: bool = True, lw: float = 2.2, label: str = "relevance"):
    """ECG with an explanation drawn as the colour of the trace (one colour per sample).

    ``beat`` and ``relevance`` are (window, leads); a 1-D ``relevance`` (window,) is shared by
    both leads (e.g. CAM, attention). ``symmetric`` centres the colour map on 0 (red = for the
    class, blue = against it); otherwise 0..max (e.g. attention weights).
    """
    ax = _axes(ax)
    beat = np.asarray(beat, dtype=float)
    relevance = np.asarray(relevance, dtype=float)
    if relevance.ndim == 1:
        relevance = np.repeat(relevance[:, None], beat.shape[1], axis=1)
    if relevance.shape != beat.shape:
        raise ValueError(f"relevance {relevance.shape} does not match beat {beat.shape}")
    t = beat_time(len(beat))
    offset = 1.2 * float(np.ptp(beat))
    vmax = float(np.max(np.abs(relevance))) or 1.0
    norm = plt.Normalize(-vmax, vmax) if symmetric else plt.Normalize(0, vmax)
    for lead in range(beat.shape[1]):
        y = beat[:, lead] - lead * offset
        pts = np.stack([t, y], axis=1)
        segs = np.stack([pts[:-1], pts[1:]], axis=1)
        lc = LineCollection(segs, cmap=cmap, norm=norm, lw=lw)
        lc.set_array((relevance[:-1, lead] + relevance[1:, lead]) / 2)
        ax.add_collection(lc)
        ax.plot(t, y, color="k", lw=0.4, alpha=0.6)
        _lead_label(ax, t, y, LEAD_NAMES[lead])
    ax.set_xlim(t[0], t[-1])
    ax.axvline(0, color="grey", ls=":", lw=0.8)
    ax.set_xlabel("time from R peak (s)")
    ax.set_ylabel(unit)
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


def plot_class_averages(beats_mv: np.ndarray, relevance: np.ndarray, y: np.ndarray,
                        title: str = "", classes: Sequence[str] = config.CLASSES,
                        symmetric: bool = True, ncols: int = 4, label: str = "mean relevance"):
    """One panel per class: the class-average beat coloured by the class-average relevance.

    ``beats_mv`` (n, window, leads), ``relevance`` (n, window, leads) or (n, window),
    ``y`` (n,) class indices. Classes with no beats are left blank.
    """
    present = [c for c in range(len(classes)) if np.any(y == c)]
    nrows = int(np.ceil(len(classes) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 2.8 * nrows), squeeze=False)
    for c, ax in zip(range(len(classes)), axes.ravel()):
        if c not in present:
            ax.set_visible(False)
            continue
        sel = y == c
        plot_relevance(beats_mv[sel].mean(0), relevance[sel].mean(0), ax=ax,
                       symmetric=symmetric, colorbar=False, lw=1.8)
        ax.set_title(f"{classes[c]}: {config.CLASS_NAMES[classes[c]]} (n={sel.sum()})",
                     fontsize=8)
        ax.set_xlabel("s from R")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_segment_importance(importance: np.ndarray, errors: np.ndarray | None = None,
                            ax=None, n_segments: int = 16, title: str | None = None,
                            ylabel: str = "importance"):
    """Bar chart of per-segment values for each lead (features numbered lead-major)."""
    from .segments import segment_bounds

    ax = _axes(ax)
    importance = np.asarray(importance).reshape(-1, n_segments)
    bounds = segment_bounds(config.WINDOW, n_segments)
    centres = (bounds.mean(axis=1) - config.R_OFFSET) / config.BEAT_FS
    width = (bounds[0, 1] - bounds[0, 0]) / config.BEAT_FS * 0.4
    for lead in range(importance.shape[0]):
        err = None if errors is None else np.asarray(errors).reshape(-1, n_segments)[lead]
        ax.bar(centres + (lead - 0.5) * width, importance[lead], width=width, yerr=err,
               label=LEAD_NAMES[lead], capsize=2)
    ax.axvline(0, color="grey", ls=":", lw=0.8)
    ax.set_xlabel("segment centre, time from R peak (s)")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    return ax
