"""Attention as an explanation (week 4): read-outs, agreement with attributions, perturbations.

* Reference implementations of additive (Bahdanau) and dot-product (Luong) attention in NumPy,
  so the weights of the Keras layers in :mod:`utils.models` can be recomputed by hand.
* :func:`attention_readout` - class probabilities and attention weights of the LSTM + attention
  classifier; :func:`upsample_steps` puts per-step values (one per LSTM step) on the beat's
  256 samples so they can be drawn on the ECG and compared with sample-level attributions.
* :func:`rank_agreement` / :func:`top_k_overlap` - per-beat agreement of two relevance maps
  (Spearman rank correlation, shared top-k steps), summarised per class by
  :func:`summarise_by_class`.
* :func:`perturbation_test` - remove the most relevant time segment according to each method
  and measure the drop of the class probability (a faithfulness check, Jain & Wallace 2019).
* Attention autoencoder: :func:`reconstruction_errors`, :func:`encoder_attention`,
  :func:`detection_table` (reconstruction error as an abnormality score) and
  :func:`plot_alignment`.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from . import config

__all__ = [
    "additive_attention", "dot_product_attention", "attention_readout", "upsample_steps",
    "weight_sum_error", "effective_steps", "probs_with_weights", "time_relevance", "pool_steps", "rank_agreement", "top_k_overlap",
    "summarise_by_class", "tidy_table", "segment_relevance", "top_segment", "remove_segment",
    "perturbation_test", "reconstruction_errors", "encoder_attention", "diagonal_mass", "detection_table",
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
    ``b`` (u,), ``v`` (u,) or (u, 1) are the weights of ``utils.models.TemporalAttention``.
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
def attention_readout(model, X: np.ndarray, batch_size: int = 512
                      ) -> tuple[np.ndarray, np.ndarray]:
    """``(probs (n, classes), weights (n, steps))`` of an LSTM + attention classifier.

    ``model`` is built by ``utils.models.build_lstm_attention`` (layer ``attention``); the
    weights have one value per LSTM step (``window // pool``) and sum to 1 per beat.
    """
    from .data import validate_beats
    from .models import attention_model

    X = validate_beats(X, window=model.input_shape[1], leads=model.input_shape[2])
    probs, weights = attention_model(model).predict(X, batch_size=batch_size, verbose=0)
    return np.asarray(probs), np.asarray(weights)


def probs_with_weights(model, X: np.ndarray, weights: np.ndarray | str = "uniform",
                       batch_size: int = 512) -> np.ndarray:
    """Class probabilities of an attention classifier when its attention weights are replaced.

    The LSTM states ``h`` are computed as usual, then pooled with ``weights`` (n, steps) - or
    ``'uniform'`` (1/steps everywhere, i.e. plain mean pooling) - instead of the learned
    ``alpha``, and passed through the classifier's own ``logits`` layer and a softmax. The
    uniform case is the first test of Wiegreffe & Pinter (2019): if accuracy barely changes,
    the model does not need its attention.
    """
    import keras

    from .data import validate_beats

    X = validate_beats(X, window=model.input_shape[1], leads=model.input_shape[2])
    h = keras.Model(model.inputs, model.get_layer("lstm").output).predict(
        X, batch_size=batch_size, verbose=0)
    steps = h.shape[1]
    if isinstance(weights, str):
        if weights != "uniform":
            raise ValueError(f"weights must be an array or 'uniform', got {weights!r}")
        w = np.full((len(X), steps), 1.0 / steps)
    else:
        w = np.asarray(weights, dtype=float)
        if w.shape != (len(X), steps):
            raise ValueError(f"weights must be (n, steps) = {(len(X), steps)}, got {w.shape}")
    context = np.einsum("nt,ntd->nd", w, h).astype(np.float32)
    logits = np.asarray(model.get_layer("logits")(context))
    return _softmax(logits.astype(np.float64))


def upsample_steps(values: np.ndarray, window: int = config.WINDOW,
                   preserve_sum: bool = True) -> np.ndarray:
    """Spread per-step values (n, steps) over the beat's samples: (n, window).

    Step ``i`` covers samples ``[i*f, (i+1)*f)`` with ``f = window // steps`` (the average
    pooling in front of the LSTM). With ``preserve_sum`` each sample gets ``value / f`` so that
    the sum per beat is unchanged (attention still sums to 1); otherwise values are repeated.
    """
    values = np.asarray(values, dtype=float)
    if values.ndim != 2:
        raise ValueError(f"values must be (n, steps), got shape {values.shape}")
    steps = values.shape[1]
    if steps == 0 or window % steps:
        raise ValueError(f"window {window} is not a multiple of the {steps} steps")
    factor = window // steps
    out = np.repeat(values, factor, axis=1)
    return out / factor if preserve_sum else out


def weight_sum_error(weights: np.ndarray) -> float:
    """Largest ``|sum_t alpha_t - 1|`` over the beats (0 for proper attention weights)."""
    weights = np.asarray(weights, dtype=float)
    if weights.ndim != 2:
        raise ValueError(f"weights must be (n, steps), got shape {weights.shape}")
    return float(np.max(np.abs(weights.sum(axis=1) - 1.0)))


def effective_steps(weights: np.ndarray) -> np.ndarray:
    """Effective number of attended steps per beat, ``exp(entropy(alpha))``: (n,).

    Equals ``k`` when the attention is spread evenly over ``k`` steps (1 = a single step,
    ``steps`` = uniform); a readable measure of how peaked the attention is.
    """
    w = np.asarray(weights, dtype=float)
    if w.ndim != 2 or np.any(w < 0):
        raise ValueError("weights must be a non-negative (n, steps) array")
    p = w / w.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        ent = -np.where(p > 0, p * np.log(p), 0.0).sum(axis=1)
    return np.exp(ent)


# --------------------------------------------------------------------------------------------
# Agreement between relevance maps
# --------------------------------------------------------------------------------------------
def time_relevance(attributions: np.ndarray, mode: str = "abs") -> np.ndarray:
    """One relevance value per sample: (n, window, leads) -> (n, window).

    ``mode='abs'`` sums the magnitudes over leads (how much a time step matters, either way),
    ``'signed'`` sums the signed values (evidence for the class minus evidence against).
    (n, window) input is returned unchanged (already one value per sample).
    """
    a = np.asarray(attributions, dtype=float)
    if mode not in ("abs", "signed"):
        raise ValueError(f"mode must be 'abs' or 'signed', got {mode!r}")
    if a.ndim == 2:
        return a
    if a.ndim != 3:
        raise ValueError(f"attributions must be (n, window, leads), got shape {a.shape}")
    return np.abs(a).sum(axis=2) if mode == "abs" else a.sum(axis=2)


def pool_steps(relevance: np.ndarray, steps: int) -> np.ndarray:
    """Sum (n, window) relevance into ``steps`` equal blocks: (n, steps) (e.g. LSTM steps)."""
    r = np.asarray(relevance, dtype=float)
    if r.ndim != 2:
        raise ValueError(f"relevance must be (n, window), got shape {r.shape}")
    if steps < 1 or r.shape[1] % steps:
        raise ValueError(f"window {r.shape[1]} is not a multiple of {steps} steps")
    return r.reshape(len(r), steps, -1).sum(axis=2)


def _check_pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"need two (n, steps) arrays of the same shape, got {a.shape} and "
                         f"{b.shape}")
    return a, b


def rank_agreement(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman rank correlation between ``a[i]`` and ``b[i]`` for every beat: (n,).

    Ties get average ranks (scipy's ``rankdata``); a beat where either map is constant has no
    defined correlation and gets NaN.
    """
    from scipy.stats import rankdata

    a, b = _check_pair(a, b)
    ra = rankdata(a, axis=1)
    rb = rankdata(b, axis=1)
    ra -= ra.mean(axis=1, keepdims=True)
    rb -= rb.mean(axis=1, keepdims=True)
    denom = np.sqrt((ra ** 2).sum(axis=1) * (rb ** 2).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = (ra * rb).sum(axis=1) / denom
    return np.where(denom > 0, rho, np.nan)


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
def segment_relevance(relevance: np.ndarray, n_segments: int = 16) -> np.ndarray:
    """Sum (n, window) relevance over the time segments of ``utils.segments``: (n, n_segments)."""
    from .segments import segment_bounds

    r = np.asarray(relevance, dtype=float)
    if r.ndim != 2:
        raise ValueError(f"relevance must be (n, window), got shape {r.shape}")
    bounds = segment_bounds(r.shape[1], n_segments)
    return np.stack([r[:, a:b].sum(axis=1) for a, b in bounds], axis=1)


def top_segment(relevance: np.ndarray, n_segments: int = 16) -> np.ndarray:
    """Index of the time segment with the largest summed relevance, per beat: (n,)."""
    return np.argmax(segment_relevance(relevance, n_segments), axis=1)


def remove_segment(X: np.ndarray, segments: np.ndarray, n_segments: int = 16,
                   fill: str = "interpolate") -> np.ndarray:
    """Copy of beats ``X`` (n, window, leads) with time segment ``segments[i]`` of beat i
    removed on every lead.

    ``fill='interpolate'`` draws a straight line between the samples just outside the segment
    (the beat keeps a plausible shape, only the waveform inside is gone); ``'zero'`` puts the
    z-scored beat's mean (0) there.
    """
    from .segments import segment_bounds

    X = np.array(X, dtype=np.float32, copy=True)
    segments = np.asarray(segments)
    if X.ndim != 3:
        raise ValueError(f"X must be (n, window, leads), got shape {X.shape}")
    if segments.shape != (len(X),):
        raise ValueError(f"segments must have one index per beat ({len(X)}), got "
                         f"{segments.shape}")
    if fill not in ("interpolate", "zero"):
        raise ValueError(f"fill must be 'interpolate' or 'zero', got {fill!r}")
    if np.any((segments < 0) | (segments >= n_segments)):
        raise ValueError(f"segment indices must be in [0, {n_segments})")
    bounds = segment_bounds(X.shape[1], n_segments)
    window = X.shape[1]
    for i, s in enumerate(segments):
        a, b = bounds[s]
        if fill == "zero":
            X[i, a:b] = 0.0
            continue
        left = X[i, a - 1] if a > 0 else X[i, b % window]
        right = X[i, b] if b < window else left
        w = (np.arange(a, b) - (a - 1)) / (b - a + 1)
        X[i, a:b] = left[None, :] * (1 - w[:, None]) + right[None, :] * w[:, None]
    return X


def perturbation_test(model, X: np.ndarray, targets, relevances: Mapping[str, np.ndarray],
                      n_segments: int = 16, fill: str = "interpolate",
                      random_baseline: bool = True, seed: int = config.SEED):
    """Remove each method's most relevant time segment and measure the probability drop.

    ``relevances`` maps a method name to (n, window) relevance (higher = more important for
    the target class). For every beat and method the top segment (:func:`top_segment`) is
    removed (:func:`remove_segment`) and ``p_target(x) - p_target(x without segment)`` is
    recorded. ``random_baseline`` adds a uniformly random segment per beat (fixed ``seed``) as
    the chance level. Returns a DataFrame with one row per beat: columns ``drop <method>`` and
    ``segment <method>``, plus ``p_original``.
    """
    import pandas as pd

    from .models import predict_proba

    X = np.asarray(X, dtype=np.float32)
    n = len(X)
    targets = np.broadcast_to(np.asarray(targets, dtype=int), (n,))
    chosen = {name: top_segment(r, n_segments) for name, r in relevances.items()}
    for name, r in relevances.items():
        if np.shape(r)[0] != n:
            raise ValueError(f"relevance {name!r} has {np.shape(r)[0]} beats, X has {n}")
    if random_baseline:
        chosen["random"] = np.random.default_rng(seed).integers(0, n_segments, size=n)
    rows = np.arange(n)
    p0 = predict_proba(model, X)[rows, targets]
    # One batch for all perturbed copies: fewer (slow) Keras predict calls.
    batch = np.concatenate([remove_segment(X, seg, n_segments, fill) for seg in chosen.values()])
    p = predict_proba(model, batch)[np.arange(len(batch)), np.tile(targets, len(chosen))]
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
    from .data import validate_beats
    from .models import autoencoder_alignment

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

    from .plotting import LEAD_NAMES, beat_time

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
    ax2.legend(fontsize=7, loc="upper right")
    if title:
        ax.set_title(title, fontsize=9)
    return ax
