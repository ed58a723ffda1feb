"""Attention as an explanation (week 4): read-outs, agreement with attributions, perturbations.

* Reference implementations of additive (Bahdanau) and dot-product (Luong) attention in NumPy,
  so the weights of the Keras layers in :mod:`utils.models.networks` can be recomputed by hand.
* :func:`attention_readout` - the attention weights of the LSTM + attention classifier as an
  :class:`~utils.core.explain.Explanation` (``native``: one weight per LSTM step; ``values``: spread
  over the beat's samples by :func:`utils.core.explain.to_samples`, still summing to 1) and
  :func:`probs_with_weights` (the classifier with its attention replaced).
* :func:`top_k_overlap` - per-beat agreement of two relevance maps (shared top-k steps; the
  rank correlation is :func:`utils.core.explain.rank_agreement`), summarised per class by
  :func:`summarise_by_class`.
* :func:`perturbation_test` - remove the most relevant time segment according to each method
  (:func:`utils.core.perturb.fill`) and measure the drop of the class probability (a faithfulness
  check, Jain & Wallace 2019).
* Attention autoencoder: :func:`reconstruction_errors`, :func:`encoder_attention`,
  :func:`diagonal_mass`, :func:`detection_table`, :func:`plot_alignment`.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from utils.core import config
from utils.core.config import LOGITS_LAYER
from utils.core.explain import (Explanation, check_beats, check_output, check_targets,
                                predict_scores, require_layer, segment_sums, to_samples)
from utils.core.perturb import fill
from utils.core.segments import segment_mask
from utils.core.beats import validate_beats
from utils.core.config import LEAD_NAMES
from utils.plotting import beat_time
from utils.core.methods import register

__all__ = [
    "additive_attention", "dot_product_attention", "attention_readout", "probs_with_weights",
    "check_weights", "weight_sum_error", "effective_steps", "top_k_overlap",
    "summarise_by_class", "tidy_table", "top_segment", "perturbation_test",
    "reconstruction_errors", "encoder_attention", "diagonal_mass", "detection_table",
    "step_time", "plot_alignment", "plot_relevance_lines",
]


# --------------------------------------------------------------------------------------------
# The two attention scores, by hand
# --------------------------------------------------------------------------------------------
def _softmax(scores: np.ndarray, axis: int = -1) -> np.ndarray:
    scores = scores - scores.max(axis=axis, keepdims=True)  # numerically stable
    e = np.exp(scores)
    return e / e.sum(axis=axis, keepdims=True)


def additive_attention(h: np.ndarray, W: np.ndarray, b: np.ndarray, v: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Additive (Bahdanau) attention pooling of a sequence, in NumPy.
    ``score_t = v^T tanh(W^T h_t + b)``, ``alpha = softmax_t(score)``,
    ``context = sum_t alpha_t h_t``. ``h`` is (n, T, d) (or one sequence (T, d)); ``W`` (d, u),
    ``b`` (u,), ``v`` (u,) or (u, 1) are the weights of ``utils.models.networks.TemporalAttention``.
    Returns ``(context (n, d), alpha (n, T))``.
    """
    h = np.asarray(h, dtype=np.float64)
    single = h.ndim == 2
    h = h[None] if single else h
    if h.ndim != 3:
        raise ValueError(f"h must be (n, T, d) or (T, d), got shape {h.shape}")
    W, b, v = (np.asarray(a, dtype=np.float64) for a in (W, b, v))
    v = v.reshape(-1)
    if W.shape != (h.shape[-1], b.shape[0]) or v.shape[0] != b.shape[0]:
        raise ValueError(f"weights do not fit: h {h.shape}, W {W.shape}, b {b.shape}, "
                         f"v {v.shape}")
    scores = np.tanh(h @ W + b) @ v
    alpha = _softmax(scores)
    context = np.einsum("nt,ntd->nd", alpha, h)
    return (context[0], alpha[0]) if single else (context, alpha)


def dot_product_attention(queries: np.ndarray, keys: np.ndarray,
                          values: np.ndarray | None = None, scale: float = 1.0
                          ) -> tuple[np.ndarray, np.ndarray]:
    """Dot-product (Luong) attention, as ``keras.layers.Attention`` computes it, in NumPy.
    ``score_ij = scale * q_i . k_j``, ``alpha_i = softmax_j(score_i)``,
    ``context_i = sum_j alpha_ij v_j`` (``values`` default to the keys). ``queries`` (n, Tq, d),
    ``keys`` (n, Tk, d). Returns ``(context (n, Tq, d), alignment (n, Tq, Tk))``; each row of
    the alignment matrix sums to 1.
    """
    q = np.asarray(queries, dtype=np.float64)
    k = np.asarray(keys, dtype=np.float64)
    v = k if values is None else np.asarray(values, dtype=np.float64)
    if q.ndim != 3 or k.ndim != 3 or v.ndim != 3:
        raise ValueError("queries, keys and values must be (n, T, d) arrays")
    if q.shape[-1] != k.shape[-1] or k.shape[:2] != v.shape[:2] or q.shape[0] != k.shape[0]:
        raise ValueError(f"shapes do not fit: queries {q.shape}, keys {k.shape}, "
                         f"values {v.shape}")
    alignment = _softmax(scale * np.einsum("nid,njd->nij", q, k))
    return np.einsum("nij,njd->nid", alignment, v), alignment


# --------------------------------------------------------------------------------------------
# Reading out the classifier's attention
# --------------------------------------------------------------------------------------------
@register("attention", "attention", models=("lstm_attention",), unit="steps",
          targets="labels the result only: the weights do not depend on the class "
                  "(default: the predicted class)")
def attention_readout(model, X: np.ndarray, targets=None, *, output: str = "logits"
                      ) -> Explanation:
    """The attention weights of an LSTM + attention classifier (layer ``attention``, built by
    ``utils.models.networks.build_lstm_attention``) as an explanation.

    ``native`` (n, steps): one weight per LSTM step (``window // pool``), summing to 1 per
    beat; ``values``: each weight spread over the samples of its step and split between the
    leads (sums preserved). The weights do not depend on the class: ``targets`` (default the
    predicted class) and ``output`` only label the result. ``extras["probs"]``: (n, classes).
    """
    from utils.models.networks import attention_model  # lazy: TensorFlow loads only when this runs

    check_output(output)
    X = check_beats(model, X)
    require_layer(model, "attention", "the attention read-out (an LSTM + attention model)")
    t = None if targets is None else check_targets(targets, len(X), model.output_shape[-1])
    probs, weights = attention_model(model).predict(X, batch_size=512, verbose=0)
    probs, weights = np.asarray(probs, np.float64), np.asarray(weights, np.float64)
    t = probs.argmax(axis=1) if t is None else t
    values = to_samples(weights, "steps", X.shape[1], X.shape[2], preserve_sum=True)
    scores = probs if output == "probs" else predict_scores(model, X, "logits")
    return Explanation(values, t, "attention", output, native=weights, unit="steps",
                       score=scores[np.arange(len(t)), t], extras={"probs": probs})


def check_weights(weights, n: int | None = None, steps: int | None = None,
                  atol: float = 1e-4) -> np.ndarray:
    """Attention weights as a float (n, steps) array: finite, non-negative, each row summing
    to 1 (within ``atol``); otherwise a ``ValueError`` saying what is wrong."""
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 2 or len(w) == 0 or (n is not None and w.shape != (n, steps)):
        want = "(n, steps)" if n is None else str((n, steps))
        raise ValueError(f"weights must be {want}, got shape {w.shape}")
    if not np.all(np.isfinite(w)):
        raise ValueError("weights contain NaN or infinite values")
    if np.any(w < 0) or np.max(np.abs(w.sum(axis=1) - 1.0)) > atol:
        raise ValueError("attention weights must be non-negative and sum to 1 per beat")
    return w


def probs_with_weights(model, X: np.ndarray, weights: np.ndarray | str = "uniform",
                       batch_size: int = 512) -> np.ndarray:
    """Class probabilities of an attention classifier when its attention weights are replaced.
    The LSTM states ``h`` are computed as usual, then pooled with ``weights`` (n, steps) - or
    ``'uniform'`` (1/steps everywhere, i.e. plain mean pooling) - instead of the learned
    ``alpha``, and passed through the classifier's own logits layer and a softmax. The
    uniform case is the first test of Wiegreffe & Pinter (2019): if accuracy barely changes,
    the model does not need its attention.
    """
    import keras

    X = check_beats(model, X)
    require_layer(model, "attention", "probs_with_weights (an LSTM + attention model)")
    head = require_layer(model, LOGITS_LAYER, "probs_with_weights")
    h = keras.Model(model.inputs, require_layer(model, "lstm", "probs_with_weights").output
                    ).predict(X, batch_size=batch_size, verbose=0)
    steps = h.shape[1]
    if isinstance(weights, str):
        if weights != "uniform":
            raise ValueError(f"weights must be an array or 'uniform', got {weights!r}")
        w = np.full((len(X), steps), 1.0 / steps)
    else:
        w = check_weights(weights, len(X), steps)
    context = np.einsum("nt,ntd->nd", w, h).astype(np.float32)
    return _softmax(np.asarray(head(context)).astype(np.float64))


def weight_sum_error(weights: np.ndarray) -> float:
    """Largest ``|sum_t alpha_t - 1|`` over the beats (0 for proper attention weights)."""
    weights = np.asarray(weights, dtype=float)
    if weights.ndim != 2 or len(weights) == 0 or not np.all(np.isfinite(weights)):
        raise ValueError(f"weights must be a finite, non-empty (n, steps) array, got "
                         f"shape {weights.shape}")
    return float(np.max(np.abs(weights.sum(axis=1) - 1.0)))


def effective_steps(weights: np.ndarray) -> np.ndarray:
    """Effective number of attended steps per beat, ``exp(entropy(alpha))``: (n,).
    Equals ``k`` when the attention is spread evenly over ``k`` steps (1 = a single step,
    ``steps`` = uniform); a readable measure of how peaked the attention is.
    """
    p = check_weights(weights)
    with np.errstate(divide="ignore", invalid="ignore"):
        ent = -np.where(p > 0, p * np.log(p), 0.0).sum(axis=1)
    return np.exp(ent)


# --------------------------------------------------------------------------------------------
# Agreement between relevance maps
# --------------------------------------------------------------------------------------------
def _check_pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"need two (n, steps) arrays of the same shape, got {a.shape} and "
                         f"{b.shape}")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError("relevance maps contain NaN or infinite values")
    return a, b


def top_k_overlap(a: np.ndarray, b: np.ndarray, k: int) -> np.ndarray:
    """Fraction of the ``k`` highest steps of ``a[i]`` that are also among those of ``b[i]``.
    1 = the two maps point at the same ``k`` steps; ``k / steps`` is the chance level.
    Ties are broken by position (stable sort), so the result is deterministic.
    """
    a, b = _check_pair(a, b)
    if not 1 <= k <= a.shape[1]:
        raise ValueError(f"k must be in [1, {a.shape[1]}], got {k}")
    top_a = np.argsort(-a, axis=1, kind="stable")[:, :k]
    top_b = np.argsort(-b, axis=1, kind="stable")[:, :k]
    return np.array([len(np.intersect1d(x, y)) / k for x, y in zip(top_a, top_b)])


def tidy_table(table, decimals: int = 3):
    """A DataFrame rounded to ``decimals`` with negative zeros (``-0.000``) turned into 0, so
    printed tables do not flip sign on the last digit between machines; int columns kept."""
    rounded = table.round(decimals)
    return rounded.apply(lambda col: col + 0.0 if col.dtype.kind == "f" else col)


def summarise_by_class(values: Mapping[str, np.ndarray], y: np.ndarray,
                       classes: tuple[str, ...] = config.CLASSES, stat: str = "median"):
    """Table (rows = classes present in ``y`` + 'all', columns = ``values`` keys) of the
    per-class ``stat`` ('median' or 'mean', NaN-aware) of per-beat values, plus a beat count."""
    import pandas as pd

    y = np.asarray(y)
    if stat not in ("median", "mean"):
        raise ValueError(f"stat must be 'median' or 'mean', got {stat!r}")
    func = np.nanmedian if stat == "median" else np.nanmean
    for name, v in values.items():
        if np.shape(v) != y.shape:
            raise ValueError(f"{name!r} has shape {np.shape(v)}, expected {y.shape}")
    rows = {}
    for c in range(len(classes)):
        sel = y == c
        if sel.any():
            rows[classes[c]] = {"n": int(sel.sum()),
                                **{k: float(func(np.asarray(v)[sel])) for k, v in values.items()}}
    rows["all"] = {"n": int(len(y)), **{k: float(func(v)) for k, v in values.items()}}
    return pd.DataFrame.from_dict(rows, orient="index")


# --------------------------------------------------------------------------------------------
# Perturbation test
# --------------------------------------------------------------------------------------------
def top_segment(relevance: np.ndarray, n_segments: int = 16) -> np.ndarray:
    """Index of the time segment with the largest summed (n, window) relevance, per beat."""
    return np.argmax(segment_sums(np.asarray(relevance, dtype=float), n_segments), axis=1)


def perturbation_test(model, X: np.ndarray, targets, relevances: Mapping[str, np.ndarray],
                      n_segments: int = 16, how: str = "interpolate",
                      random_baseline: bool = True, seed: int = config.SEED):
    """Remove each method's most relevant time segment and measure the probability drop.
    ``relevances`` maps a method name to (n, window) relevance or an
    :class:`~utils.core.explain.Explanation` (its signed per-time sum; higher = more important for
    the target class). For every beat and method the top segment (:func:`top_segment`) is
    replaced on every lead with :func:`utils.core.perturb.fill` (``how='interpolate'``: a straight
    line, the beat keeps a plausible shape; ``'zero'``: the z-scored beat's mean) and
    ``p_target(x) - p_target(x without segment)`` is recorded. ``random_baseline`` adds a
    uniformly random segment per beat (fixed ``seed``) as the chance level. Returns a DataFrame
    with one row per beat: columns ``drop <method>`` and ``segment <method>``, plus
    ``p_original``.
    """
    import pandas as pd

    X = check_beats(model, X)
    n = len(X)
    targets = check_targets(targets, n, model.output_shape[-1])
    maps = {name: r.per_time("signed") if isinstance(r, Explanation) else np.asarray(r, float)
            for name, r in relevances.items()}
    for name, r in maps.items():
        if r.shape != X.shape[:2] or not np.all(np.isfinite(r)):
            raise ValueError(f"relevance {name!r} must be finite (n, window) = {X.shape[:2]}, "
                             f"got {r.shape}")
    chosen = {name: top_segment(r, n_segments) for name, r in maps.items()}
    if random_baseline:
        chosen["random"] = np.random.default_rng(seed).integers(0, n_segments, size=n)
    time_masks = segment_mask(X.shape[1], n_segments, 1)[:, :, 0]          # (segments, window)
    rows = np.arange(n)
    p0 = predict_scores(model, X, "probs")[rows, targets]
    # One batch for all perturbed copies: fewer (slow) Keras predict calls.
    batch = np.concatenate([
        fill(X, np.repeat(time_masks[seg][:, :, None], X.shape[2], axis=2), how, seed=seed)
        for seg in chosen.values()])
    p = predict_scores(model, batch, "probs")[np.arange(len(batch)), np.tile(targets, len(chosen))]
    out = {"p_original": p0}
    for j, (name, seg) in enumerate(chosen.items()):
        out[f"drop {name}"] = p0 - p[j * n:(j + 1) * n]
        out[f"segment {name}"] = seg
    return pd.DataFrame(out)


# --------------------------------------------------------------------------------------------
# Attention autoencoder
# --------------------------------------------------------------------------------------------
def reconstruction_errors(autoencoder, X: np.ndarray, batch_size: int = 512
                          ) -> dict[str, np.ndarray]:
    """Run the attention autoencoder on beats ``X``.
    Returns ``{'pooled': target (n, steps, leads), 'reconstruction': (n, steps, leads),
    'alignment': (n, dec, enc), 'error': MSE per beat (n,), 'error_steps': (n, steps)}``.
    """
    from utils.models.networks import autoencoder_alignment  # lazy: TensorFlow loads only when this runs

    X = validate_beats(X, window=autoencoder.input_shape[1], leads=autoencoder.input_shape[2])
    pooled, recon, alignment = autoencoder_alignment(autoencoder).predict(
        X, batch_size=batch_size, verbose=0)
    sq = (np.asarray(recon) - np.asarray(pooled)) ** 2
    return {"pooled": np.asarray(pooled), "reconstruction": np.asarray(recon),
            "alignment": np.asarray(alignment), "error": sq.mean(axis=(1, 2)),
            "error_steps": sq.mean(axis=2)}


def encoder_attention(alignment: np.ndarray) -> np.ndarray:
    """Attention each input (encoder) step receives, averaged over the decoder steps:
    (n, dec, enc) -> (n, enc), summing to 1 per beat (each alignment row sums to 1)."""
    a = np.asarray(alignment, dtype=float)
    if a.ndim != 3:
        raise ValueError(f"alignment must be (n, decoder steps, encoder steps), got {a.shape}")
    return a.mean(axis=1)


def diagonal_mass(alignment: np.ndarray, width: int = 2) -> np.ndarray:
    """Share of each alignment matrix (n, steps, steps) within ``width`` steps of the diagonal,
    averaged over the output steps: (n,). 1 = pure copying (output i reads input i);
    uniform attention gives about ``(2 * width + 1) / steps``."""
    a = np.asarray(alignment, dtype=float)
    if a.ndim != 3 or a.shape[1] != a.shape[2]:
        raise ValueError(f"alignment must be (n, steps, steps), got shape {a.shape}")
    if width < 0:
        raise ValueError(f"width must be >= 0, got {width}")
    i, j = np.indices(a.shape[1:])
    band = np.abs(i - j) <= width
    return (a * band).sum(axis=(1, 2)) / a.shape[1]


def detection_table(errors: np.ndarray, y: np.ndarray, threshold: float,
                    normal: int = 0, classes: tuple[str, ...] = config.CLASSES):
    """Reconstruction error as an abnormality score, per class.
    Columns: beat count, median error, fraction flagged (error > ``threshold``) and the
    ROC AUC of separating that class from the ``normal`` class by the error (0.5 = chance;
    scikit-learn's ``roc_auc_score``). The normal class's row shows its false-alarm rate.
    """
    import pandas as pd
    from sklearn.metrics import roc_auc_score

    errors, y = np.asarray(errors, dtype=float), np.asarray(y)
    if errors.shape != y.shape:
        raise ValueError(f"errors {errors.shape} and y {y.shape} differ in shape")
    if not np.any(y == normal):
        raise ValueError(f"no beats of the normal class {classes[normal]!r} in y")
    rows = {}
    for c in range(len(classes)):
        sel = y == c
        if not sel.any():
            continue
        auc = np.nan
        if c != normal:
            both = (y == c) | (y == normal)
            auc = roc_auc_score(y[both] == c, errors[both])
        rows[classes[c]] = {"n": int(sel.sum()), "median error": float(np.median(errors[sel])),
                            "flagged": float(np.mean(errors[sel] > threshold)),
                            "AUC vs N": float(auc)}
    return pd.DataFrame.from_dict(rows, orient="index")


def step_time(steps: int, window: int = config.WINDOW, fs: int = config.BEAT_FS,
              r_offset: int = config.R_OFFSET) -> np.ndarray:
    """Centre time (s from the R peak) of each of ``steps`` equal pooling steps of a beat."""
    if steps < 1 or window % steps:
        raise ValueError(f"window {window} is not a multiple of {steps} steps")
    f = window // steps
    return (np.arange(steps) * f + (f - 1) / 2 - r_offset) / fs


def plot_alignment(alignment: np.ndarray, ax=None, title: str | None = None,
                   window: int = config.WINDOW, colorbar: bool = True):
    """Heatmap of one alignment matrix (decoder step x encoder step), axes in s from R.
    A bright diagonal means the decoder reads the input where it is reconstructing.
    """
    import matplotlib.pyplot as plt

    a = np.asarray(alignment, dtype=float)
    if a.ndim != 2:
        raise ValueError(f"alignment must be (decoder steps, encoder steps), got {a.shape}")
    if ax is None:
        _, ax = plt.subplots(figsize=(4.2, 3.6))
    te, td = step_time(a.shape[1], window), step_time(a.shape[0], window)
    half_e, half_d = (te[1] - te[0]) / 2, (td[1] - td[0]) / 2
    im = ax.imshow(a, origin="lower", aspect="auto", cmap="viridis", interpolation="nearest",
                   extent=(te[0] - half_e, te[-1] + half_e, td[0] - half_d, td[-1] + half_d))
    ax.set_xlabel("input (encoder) time from R (s)")
    ax.set_ylabel("output (decoder) time from R (s)")
    ax.grid(False)
    if colorbar:
        plt.colorbar(im, ax=ax, label="attention weight", pad=0.01)
    if title:
        ax.set_title(title)
    return ax


def plot_relevance_lines(beat: np.ndarray, maps: Mapping[str, np.ndarray], ax=None,
                         title: str | None = None, lead: int = 0, unit: str = "mV"):
    """One ECG lead (grey, left axis) with several relevance maps (window,) drawn as lines on
    a second axis, each scaled to its own maximum |value| = 1 so their shapes can be compared.
    """
    import matplotlib.pyplot as plt

    beat = np.asarray(beat, dtype=float)
    if beat.ndim != 2:
        raise ValueError(f"beat must be (window, leads), got shape {beat.shape}")
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 2.6))
    t = beat_time(len(beat))
    ax.plot(t, beat[:, lead], color="0.55", lw=1.0)
    ax.set_ylabel(f"{LEAD_NAMES[lead]} ({unit})", fontsize=8)
    ax.set_xlabel("time from R peak (s)")
    ax.axvline(0, color="grey", ls=":", lw=0.8)
    ax2 = ax.twinx()
    for name, r in maps.items():
        r = np.asarray(r, dtype=float)
        if r.shape != (len(beat),):
            raise ValueError(f"map {name!r} has shape {r.shape}, expected ({len(beat)},)")
        scale = np.max(np.abs(r)) or 1.0
        ax2.plot(t, r / scale, lw=1.3, label=name)
    if all(np.min(m) >= 0 for m in maps.values()):
        ax2.set_ylim(-0.05, 1.05)
    ax2.set_ylabel("relevance / max", fontsize=8)
    ax2.grid(False)
    ax2.legend(fontsize=8, loc="upper right")
    if title:
        ax.set_title(title, fontsize=9)
    return ax
