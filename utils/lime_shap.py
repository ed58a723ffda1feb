"""LIME and SHAP for ECG beats, on time segments per lead (week 2).

Interpretable features are the segments of :mod:`utils.segments` (lead-major, 16 per lead by
default, so 32 features for a two-lead beat). A binary vector ``z`` (one entry per segment)
describes a perturbed beat: ``z_k = 1`` keeps segment ``k`` as it is, ``z_k = 0`` switches it
off by writing a *replacement* there (:func:`replacement_beat`: zeros, a mean beat or noise).
:class:`SegmentModel` turns a Keras classifier and one beat into the function ``f(z)`` that
LIME and Kernel SHAP explain.

* :func:`lime_segments` - LIME (Ribeiro et al. 2016) with ``lime.lime_base.LimeBase``: the
  perturbations are sampled here (like ``LimeTextExplainer`` does for words), the weighted
  local linear surrogate and its R^2 come from the ``lime`` package.
* :func:`kernel_shap_segments` - Kernel SHAP (Lundberg & Lee 2017) with
  ``shap.KernelExplainer`` on the same segments; the background is the all-off coalition.
* :func:`gradient_shap` - model-specific expected-gradients SHAP with
  ``shap.GradientExplainer`` at the level of samples (time x lead).
* :func:`additivity_error` - the SHAP efficiency check ``sum(phi) = f(x) - E[f(background)]``.
* :func:`rank_agreement`, :func:`top_features`, :func:`segment_sums`, :func:`pick_per_class`
  - comparing explanations and choosing the beats to explain (per-class averages and the
  share per wave are in :mod:`utils.relevance`).

Every sampling step takes a ``seed`` so the explanations are reproducible.
"""
from __future__ import annotations

import warnings
import weakref
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from . import config
from .data import format_targets
from .segments import apply_mask, segment_mask

REPLACEMENTS: tuple[str, ...] = ("zero", "mean", "noise")
OUTPUTS: tuple[str, ...] = ("probs", "logits")


# --------------------------------------------------------------------------------------------
# Perturbation: switching segments off
# --------------------------------------------------------------------------------------------
def replacement_beat(kind: str, beat: np.ndarray, mean_beat: np.ndarray | None = None,
                     noise_scale: float = 1.0, seed: int = config.SEED) -> np.ndarray:
    """The values written into a switched-off segment, as a full beat (window, leads).

    * ``"zero"``: 0 everywhere. Beats are z-scored per beat and lead, so this is a flat line
      at the beat's own mean level (no waveform, no information).
    * ``"mean"``: ``mean_beat`` (e.g. the average training beat): the segment looks
      "typical" instead of empty, so the model is not confronted with impossible beats.
    * ``"noise"``: Gaussian noise with standard deviation ``noise_scale`` (fixed ``seed``).
    """
    beat = np.asarray(beat, dtype=np.float32)
    if beat.ndim != 2:
        raise ValueError(f"beat must be one beat (window, leads), got shape {beat.shape}")
    if kind == "zero":
        return np.zeros_like(beat)
    if kind == "mean":
        if mean_beat is None:
            raise ValueError("replacement 'mean' needs mean_beat (e.g. X_train.mean(axis=0))")
        mean_beat = np.asarray(mean_beat, dtype=np.float32)
        if mean_beat.shape != beat.shape:
            raise ValueError(f"mean_beat {mean_beat.shape} does not match beat {beat.shape}")
        return mean_beat
    if kind == "noise":
        if noise_scale < 0:
            raise ValueError(f"noise_scale must be >= 0, got {noise_scale}")
        rng = np.random.default_rng(seed)
        return (noise_scale * rng.standard_normal(beat.shape)).astype(np.float32)
    raise ValueError(f"Unknown replacement {kind!r}; use one of {REPLACEMENTS}")


_LOGIT_NETS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _logits_net(model):
    """The model cut at its ``logits`` layer, built once per model (each new Keras model
    compiles its own predict function, which costs about a second on a small CPU)."""
    import keras

    if model not in _LOGIT_NETS:
        _LOGIT_NETS[model] = keras.Model(model.inputs, model.get_layer("logits").output)
    return _LOGIT_NETS[model]


def _predictor(model, output: str) -> Callable[[np.ndarray], np.ndarray]:
    """Batched forward pass returning probabilities or logits (float64)."""
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
    net = model if output == "probs" else _logits_net(model)

    def predict(X: np.ndarray, batch_size: int = 2048) -> np.ndarray:
        # predict_on_batch runs Keras' compiled predict step: eager calls of an LSTM are
        # ~10x slower and model.predict adds a data pipeline per call, which dominates for
        # the many small batches that Kernel SHAP sends.
        out = [np.asarray(net.predict_on_batch(X[i:i + batch_size]))
               for i in range(0, len(X), batch_size)]
        return np.concatenate(out).astype(np.float64)

    return predict


class SegmentModel:
    """``f(z)``: class outputs of ``model`` for ``beat`` with the segments where ``z == 0``
    replaced by ``replacement`` (an array broadcastable to the beat, or a scalar).

    Called with ``Z`` (m, n_features) of 0/1 it returns (m, n_classes), or (m,) when
    ``target`` is given (the class explained). ``n_calls`` counts model evaluations.
    ``predict`` (optional) reuses a forward pass built once for many beats.
    """

    def __init__(self, model, beat: np.ndarray, replacement: np.ndarray | float = 0.0,
                 n_segments: int = 16, output: str = "probs", target: int | None = None,
                 predict: Callable[[np.ndarray], np.ndarray] | None = None):
        beat = np.asarray(beat, dtype=np.float32)
        if beat.ndim != 2:
            raise ValueError(f"beat must be one beat (window, leads), got shape {beat.shape}")
        self.beat, self.replacement, self.n_segments = beat, replacement, n_segments
        self.n_features = n_segments * beat.shape[1]
        self.target = target
        self.n_calls = 0
        self._predict = predict if predict is not None else _predictor(model, output)

    def __call__(self, Z: np.ndarray) -> np.ndarray:
        Z = np.atleast_2d(np.asarray(Z))
        if Z.shape[1] != self.n_features:
            raise ValueError(f"Z has {Z.shape[1]} features, expected {self.n_features}")
        X = apply_mask(self.beat, Z > 0.5, self.replacement, n_segments=self.n_segments)
        self.n_calls += len(X)
        out = self._predict(X)
        return out if self.target is None else out[:, self.target]


def _beats(X: np.ndarray) -> np.ndarray:
    from .data import validate_beats

    X = np.asarray(X, dtype=np.float32)
    return validate_beats(X, window=X.shape[1] if X.ndim == 3 else config.WINDOW)


def _replacements(kind: str, X: np.ndarray, mean_beat, noise_scale: float, seed: int
                  ) -> list[np.ndarray]:
    return [replacement_beat(kind, x, mean_beat, noise_scale, seed + i) for i, x in enumerate(X)]


# --------------------------------------------------------------------------------------------
# LIME
# --------------------------------------------------------------------------------------------
@dataclass
class LimeResult:
    """LIME explanations of ``n`` beats on ``n_features`` segments.

    ``weights`` (n, n_features) surrogate coefficients (effect of keeping a segment on the
    explained output), ``intercept`` (n,), ``score`` (n,) weighted R^2 of the surrogate on the
    perturbations, ``local_pred`` (n,) surrogate at the unperturbed beat, ``prediction`` (n,)
    the model's output there (compare with ``local_pred``).
    """

    weights: np.ndarray
    intercept: np.ndarray
    score: np.ndarray
    local_pred: np.ndarray
    prediction: np.ndarray


def lime_perturbations(n_features: int, n_samples: int, seed: int = config.SEED) -> np.ndarray:
    """(n_samples, n_features) 0/1 masks; row 0 keeps everything (LIME's convention).

    As in ``LimeTextExplainer``: for each row draw how many segments to switch off (uniform in
    1..n_features-1), then which ones.
    """
    if n_samples < 2:
        raise ValueError(f"n_samples must be >= 2, got {n_samples}")
    if n_features < 2:
        raise ValueError(f"n_features must be >= 2, got {n_features}")
    rng = np.random.default_rng(seed)
    Z = np.ones((n_samples, n_features), dtype=np.int8)
    n_off = rng.integers(1, n_features, size=n_samples)
    for row in range(1, n_samples):
        Z[row, rng.choice(n_features, n_off[row], replace=False)] = 0
    return Z


def lime_kernel(distances: np.ndarray, kernel_width: float = 0.25) -> np.ndarray:
    """Exponential kernel of LIME: ``sqrt(exp(-d^2 / width^2))`` on cosine distances."""
    d = np.asarray(distances, dtype=float)
    return np.sqrt(np.exp(-(d ** 2) / kernel_width ** 2))


def lime_segments(model, X: np.ndarray, targets: int | np.ndarray, replacement: str = "zero",
                  mean_beat: np.ndarray | None = None, n_samples: int = 500,
                  n_segments: int = 16, kernel_width: float = 0.25, output: str = "probs",
                  noise_scale: float = 1.0, seed: int = config.SEED) -> LimeResult:
    """LIME on segments for each beat of ``X`` (n, window, leads) and class ``targets``.

    The same ``n_samples`` perturbation masks (``seed``) are used for every beat and all
    perturbed beats go through the model in one batch. Distances are cosine distances between
    a mask and the all-ones mask, weighted with :func:`lime_kernel`; the surrogate is
    ``lime``'s default Ridge(alpha=1) on all features (``feature_selection='none'``).
    """
    from lime.lime_base import LimeBase
    from sklearn.metrics import pairwise_distances

    X = _beats(X)
    n, window, leads = X.shape
    t = format_targets(targets, n)
    M = n_segments * leads
    Z = lime_perturbations(M, n_samples, seed)
    distances = pairwise_distances(Z, Z[:1], metric="cosine").ravel()
    repl = _replacements(replacement, X, mean_beat, noise_scale, seed)
    perturbed = np.concatenate([apply_mask(x, Z, r, n_segments=n_segments)
                                for x, r in zip(X, repl)])
    outputs = _predictor(model, output)(perturbed).reshape(n, n_samples, -1)
    base = LimeBase(lambda d: lime_kernel(d, kernel_width), random_state=seed)
    res = {k: [] for k in ("weights", "intercept", "score", "local_pred", "prediction")}
    for i in range(n):
        intercept, exp, score, local = base.explain_instance_with_data(
            Z, outputs[i], distances, int(t[i]), num_features=M, feature_selection="none")
        w = np.zeros(M)
        for feature, value in exp:
            w[feature] = value
        res["weights"].append(w)
        res["intercept"].append(float(intercept))
        res["score"].append(float(score))
        res["local_pred"].append(float(np.ravel(local)[0]))
        res["prediction"].append(float(outputs[i, 0, t[i]]))
    return LimeResult(**{k: np.asarray(v) for k, v in res.items()})


# --------------------------------------------------------------------------------------------
# SHAP
# --------------------------------------------------------------------------------------------
@dataclass
class ShapResult:
    """SHAP values with what is needed to check additivity.

    ``values`` (n, n_features) or (n, window, leads); ``expected`` (n,) = E[f(background)];
    ``prediction`` (n,) = f(x) for the explained class; ``n_evaluations`` model calls per beat.
    """

    values: np.ndarray
    expected: np.ndarray
    prediction: np.ndarray
    n_evaluations: int = 0


def kernel_shap_segments(model, X: np.ndarray, targets: int | np.ndarray,
                         replacement: str = "zero", mean_beat: np.ndarray | None = None,
                         n_samples: int = 500, n_segments: int = 16, output: str = "probs",
                         noise_scale: float = 1.0, seed: int = config.SEED) -> ShapResult:
    """Kernel SHAP on segments with ``shap.KernelExplainer``, one beat at a time.

    Background: the single all-zeros mask, i.e. *every segment replaced*, so
    ``E[f(background)] = f(replacement beat)`` and the SHAP values share ``f(x) - f(replacement)``
    among the segments. ``l1_reg=False`` keeps all features (shap's default keeps only 10).
    ``n_samples`` coalitions per beat (exact Shapley values would need ``2**n_features``).
    """
    import shap

    X = _beats(X)
    n, window, leads = X.shape
    t = format_targets(targets, n)
    M = n_segments * leads
    repl = _replacements(replacement, X, mean_beat, noise_scale, seed)
    predict = _predictor(model, output)
    values, expected, prediction, calls = [], [], [], []
    for i in range(n):
        f = SegmentModel(model, X[i], repl[i], n_segments, output, target=int(t[i]),
                         predict=predict)
        explainer = shap.KernelExplainer(f, np.zeros((1, M)))
        np.random.seed(seed)  # KernelExplainer samples coalitions with np.random
        phi = explainer.shap_values(np.ones((1, M)), nsamples=n_samples, l1_reg=False,
                                    silent=True)
        values.append(np.asarray(phi, dtype=float).reshape(M))
        expected.append(float(np.ravel(explainer.expected_value)[0]))
        prediction.append(float(f(np.ones((1, M)))[0]))
        calls.append(f.n_calls)
    return ShapResult(np.asarray(values), np.asarray(expected), np.asarray(prediction),
                      int(np.max(calls)))


def gradient_shap(model, X: np.ndarray, targets: int | np.ndarray, background: np.ndarray,
                  n_samples: int = 100, output: str = "logits", seed: int = config.SEED,
                  batch_size: int = 50) -> ShapResult:
    """Expected-gradients SHAP (``shap.GradientExplainer``) per sample and lead.

    ``background`` (b, window, leads) are reference beats (e.g. training beats of every
    class); ``n_samples`` background/interpolation draws per beat. Only the target class is
    differentiated (one single-output model per class present in ``targets``), which is
    ``n_classes`` times cheaper than letting shap explain every output.
    Additivity holds only approximately (Monte-Carlo estimate of an integral).
    """
    import keras
    import shap

    X = _beats(X)
    background = _beats(background)
    t = format_targets(targets, len(X))
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
    head = model.output if output == "probs" else model.get_layer("logits").output
    predict = _predictor(model, output)
    f_x, f_bg = predict(X), predict(background).mean(axis=0)
    values = np.zeros(X.shape, dtype=float)
    for c in np.unique(t):
        rows = np.flatnonzero(t == c)
        single = keras.Model(model.inputs, keras.layers.Lambda(
            lambda z, c=int(c): z[:, c:c + 1], name=f"class_{int(c)}")(head))
        with warnings.catch_warnings():  # shap passes a bare tensor to the named input
            warnings.filterwarnings("ignore", message="The structure of `inputs`")
            explainer = shap.GradientExplainer(single, background, batch_size=batch_size)
            sv = explainer.shap_values(X[rows], nsamples=n_samples, rseed=seed + int(c))
        values[rows] = np.asarray(sv, dtype=float).reshape(len(rows), *X.shape[1:])
    return ShapResult(values, f_bg[t], f_x[np.arange(len(X)), t], n_samples)


def additivity_error(result: ShapResult) -> np.ndarray:
    """Per beat ``sum(values) - (prediction - expected)``: 0 for exact SHAP values."""
    values = np.asarray(result.values, dtype=float).reshape(len(result.values), -1)
    return values.sum(axis=1) - (np.asarray(result.prediction) - np.asarray(result.expected))


# --------------------------------------------------------------------------------------------
# Summaries
# --------------------------------------------------------------------------------------------
def rank_agreement(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman rank correlation between two explanations of the same beats, row by row.

    ``a`` and ``b`` are (n, n_features) (or one explanation each); returns (n,). A constant
    row gives NaN (no ranking).
    """
    from scipy.stats import spearmanr

    a, b = np.atleast_2d(np.asarray(a, float)), np.atleast_2d(np.asarray(b, float))
    if a.shape != b.shape:
        raise ValueError(f"explanations differ in shape: {a.shape} vs {b.shape}")
    out = np.full(len(a), np.nan)
    for i, (u, v) in enumerate(zip(a, b)):
        if np.ptp(u) > 0 and np.ptp(v) > 0:
            out[i] = spearmanr(u, v).statistic
    return out


def top_features(values: np.ndarray, labels: Sequence[str], k: int = 3) -> list[str]:
    """Names of the ``k`` features with the largest (signed) value, largest first."""
    values = np.asarray(values, dtype=float).ravel()
    if len(values) != len(labels):
        raise ValueError(f"{len(values)} values but {len(labels)} labels")
    order = np.argsort(-values, kind="stable")[:k]
    return [labels[i] for i in order]



def segment_sums(values: np.ndarray, n_segments: int = 16) -> np.ndarray:
    """Sum sample-level attributions (n, window, leads) within each segment: (n, n_features),
    lead-major like :mod:`utils.segments`, so that gradient SHAP can be compared with the
    segment methods (SHAP values are additive, so the sums are the segments' SHAP values)."""
    values = np.asarray(values, dtype=float)
    if values.ndim != 3:
        raise ValueError(f"values must be (n, window, leads), got shape {values.shape}")
    n, window, leads = values.shape
    mask = segment_mask(window, n_segments, leads).astype(float)
    return np.tensordot(values, mask, axes=([1, 2], [1, 2]))


def pick_per_class(idx: np.ndarray, y: np.ndarray, keep: np.ndarray, per_class: int,
                   n_classes: int = len(config.CLASSES)) -> np.ndarray:
    """The first ``per_class`` entries of ``idx`` of each class with ``keep`` true, sorted.

    ``idx``, ``y`` (labels of ``idx``) and ``keep`` (e.g. "correctly classified") are aligned;
    used to fix a small, class-balanced sample of beats to explain.
    """
    idx, y, keep = np.asarray(idx), np.asarray(y), np.asarray(keep, dtype=bool)
    if not len(idx) == len(y) == len(keep):
        raise ValueError("idx, y and keep must have the same length")
    chosen = [idx[keep & (y == c)][:per_class] for c in range(n_classes)]
    return np.sort(np.concatenate(chosen)).astype(int)
