"""LIME and SHAP for ECG beats, on time segments per lead (week 2).

Interpretable features are the segments of :mod:`utils.core.segments` (lead-major, 16 per lead by
default, so 32 features for a two-lead beat). A binary vector ``z`` (one entry per segment)
describes a perturbed beat: ``z_k = 1`` keeps segment ``k`` as it is, ``z_k = 0`` switches it
off by writing a *replacement* there (:func:`utils.core.perturb.baseline`: ``how="zero"``, ``"mean"``
with a ``reference`` beat, ``"noise"``, ...). :class:`SegmentModel` turns a Keras classifier and
one beat into the function ``f(z)`` that LIME and Kernel SHAP explain.

* :func:`lime_segments` - LIME (Ribeiro et al. 2016) with ``lime.lime_base.LimeBase``: the
  perturbations are sampled here (like ``LimeTextExplainer`` does for words), the weighted
  local linear surrogate and its R^2 come from the ``lime`` package.
* :func:`kernel_shap_segments` - Kernel SHAP (Lundberg & Lee 2017) with
  ``shap.KernelExplainer`` on the same segments; the background is the all-off coalition.
* :func:`gradient_shap` - model-specific expected-gradients SHAP with
  ``shap.GradientExplainer`` at the level of samples (time x lead).

All three follow the course convention ``method(model, X, targets, *, output=..., **options)``
and return an :class:`~utils.core.explain.Explanation`; the segment methods keep their per-segment
values in ``native`` (``values`` spreads them over the samples, sums preserved), and SHAP's
``delta`` is the additivity gap ``sum(phi) - (f(x) - E[f(background)])``.
:func:`top_features` and :func:`pick_per_class` help to read them and choose beats.

Every sampling step takes a ``seed`` so the explanations are reproducible.
"""
from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np

from utils.core import config
from utils.core.explain import (Explanation, check_beats, check_output, check_targets,
                                completeness_gap, predict_scores, score_model,
                                seeded_global_random, to_samples)
from utils.core.perturb import baseline
from utils.core.segments import apply_mask
from utils.core.methods import register


class SegmentModel:
    """``f(z)``: class outputs of ``model`` for ``beat`` with the segments where ``z == 0``
    replaced by ``replacement`` (an array broadcastable to the beat, or a scalar).

    Called with ``Z`` (m, n_features) of 0/1 it returns (m, n_classes), or (m,) when
    ``target`` is given (the class explained). ``n_calls`` counts model evaluations.
    """

    def __init__(self, model, beat: np.ndarray, replacement: np.ndarray | float = 0.0,
                 n_segments: int = 16, output: str = "logits", target: int | None = None):
        beat = check_beats(model, np.asarray(beat, dtype=np.float32)[None])[0]
        self.model, self.output = model, check_output(output)
        self.beat, self.replacement, self.n_segments = beat, replacement, n_segments
        self.n_features = n_segments * beat.shape[1]
        self.target = target
        self.n_calls = 0

    def __call__(self, Z: np.ndarray) -> np.ndarray:
        Z = np.atleast_2d(np.asarray(Z))
        if Z.shape[1] != self.n_features:
            raise ValueError(f"Z has {Z.shape[1]} features, expected {self.n_features}")
        X = apply_mask(self.beat, Z > 0.5, self.replacement, n_segments=self.n_segments)
        self.n_calls += len(X)
        out = predict_scores(self.model, X, self.output)
        return out if self.target is None else out[:, self.target]


def _setup(model, X, targets, output, n_segments, how, reference, noise_scale, seed):
    """Validated beats, targets, and one replacement beat per beat (seed + i for noise)."""
    check_output(output)
    X = check_beats(model, X)
    t = check_targets(targets, len(X), model.output_shape[-1])
    if not 1 <= n_segments <= X.shape[1]:
        raise ValueError(f"n_segments must be in [1, {X.shape[1]}], got {n_segments}")
    repl = [baseline(x[None], how, reference=reference, noise_scale=noise_scale,
                     seed=seed + i)[0] for i, x in enumerate(X)]
    return X, t, repl


def _segment_explanation(native, t, method, output, n_segments, X, **fields) -> Explanation:
    values = to_samples(native, "segments", X.shape[1], X.shape[2], n_segments=n_segments,
                        preserve_sum=True)
    return Explanation(values, t, method, output, kind="model-agnostic", native=native,
                       unit="segments", **fields)


# --------------------------------------------------------------------------------------------
# LIME
# --------------------------------------------------------------------------------------------
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


@register("lime", "LIME", kind="model-agnostic", unit="segments", stochastic=True,
          single_pass=False)
def lime_segments(model, X: np.ndarray, targets, *, output: str = "logits", how: str = "zero",
                  reference: np.ndarray | None = None, n_samples: int = 500,
                  n_segments: int = 16, kernel_width: float = 0.25, noise_scale: float = 1.0,
                  seed: int = config.SEED) -> Explanation:
    """LIME on segments for each beat of ``X`` (n, window, leads) and class ``targets``.

    ``native`` (n, n_features): the surrogate's coefficients (effect of keeping a segment on
    the explained output). ``extras``: ``intercept``, ``score`` (weighted R^2 of the surrogate
    on the perturbations), ``local_pred`` (surrogate at the unperturbed beat) and
    ``prediction`` (the model's output there; compare with ``local_pred``).

    The same ``n_samples`` perturbation masks (``seed``) are used for every beat and all
    perturbed beats go through the model in one batch. Distances are cosine distances between
    a mask and the all-ones mask, weighted with :func:`lime_kernel`; the surrogate is
    ``lime``'s default Ridge(alpha=1) on all features (``feature_selection='none'``).
    """
    from lime.lime_base import LimeBase
    from sklearn.metrics import pairwise_distances

    X, t, repl = _setup(model, X, targets, output, n_segments, how, reference, noise_scale, seed)
    n, M = len(X), n_segments * X.shape[2]
    Z = lime_perturbations(M, n_samples, seed)
    distances = pairwise_distances(Z, Z[:1], metric="cosine").ravel()
    perturbed = np.concatenate([apply_mask(x, Z, r, n_segments=n_segments)
                                for x, r in zip(X, repl)])
    outputs = predict_scores(model, perturbed, output).reshape(n, n_samples, -1)
    base = LimeBase(lambda d: lime_kernel(d, kernel_width), random_state=seed)
    res = {k: [] for k in ("weights", "intercept", "r2", "local_pred", "score")}
    for i in range(n):
        intercept, exp, score, local = base.explain_instance_with_data(
            Z, outputs[i], distances, int(t[i]), num_features=M, feature_selection="none")
        w = np.zeros(M)
        for feature, value in exp:
            w[feature] = value
        res["weights"].append(w)
        res["intercept"].append(float(intercept))
        res["r2"].append(float(score))
        res["local_pred"].append(float(np.ravel(local)[0]))
        res["score"].append(float(outputs[i, 0, t[i]]))
    extras = {k: np.asarray(v) for k, v in res.items() if k not in ("weights", "score")}
    return _segment_explanation(np.asarray(res["weights"]), t, "lime", output, n_segments, X,
                                score=np.asarray(res["score"]), extras=extras)


# --------------------------------------------------------------------------------------------
# SHAP
# --------------------------------------------------------------------------------------------
@register("kernel_shap", "Kernel SHAP", kind="model-agnostic", unit="segments", delta=True,
          stochastic=True, single_pass=False)
def kernel_shap_segments(model, X: np.ndarray, targets, *, output: str = "logits",
                         how: str = "zero", reference: np.ndarray | None = None,
                         n_samples: int = 500, n_segments: int = 16, noise_scale: float = 1.0,
                         seed: int = config.SEED) -> Explanation:
    """Kernel SHAP on segments with ``shap.KernelExplainer``, one beat at a time.

    Background: the single all-zeros mask, i.e. *every segment replaced*, so
    ``E[f(background)] = f(replacement beat)`` and the SHAP values (``native``, (n, features))
    share ``f(x) - f(replacement)`` among the segments; ``delta`` is the additivity gap.
    ``l1_reg=False`` keeps all features (shap's default keeps only 10). ``n_samples``
    coalitions per beat (exact Shapley values would need ``2**n_features``). ``extras``:
    ``expected``, ``prediction`` and ``n_evaluations`` (model calls per beat, the largest).
    """
    import shap

    X, t, repl = _setup(model, X, targets, output, n_segments, how, reference, noise_scale, seed)
    M = n_segments * X.shape[2]
    values, expected, prediction, calls = [], [], [], []
    for i in range(len(X)):
        f = SegmentModel(model, X[i], repl[i], n_segments, output, target=int(t[i]))
        explainer = shap.KernelExplainer(f, np.zeros((1, M)))
        with seeded_global_random(seed):   # KernelExplainer samples with np.random
            phi = explainer.shap_values(np.ones((1, M)), nsamples=n_samples, l1_reg=False,
                                        silent=True)
        values.append(np.asarray(phi, dtype=float).reshape(M))
        expected.append(float(np.ravel(explainer.expected_value)[0]))
        prediction.append(float(f(np.ones((1, M)))[0]))
        calls.append(f.n_calls)
    values, expected, prediction = map(np.asarray, (values, expected, prediction))
    return _segment_explanation(values, t, "kernel_shap", output, n_segments, X,
                                delta=completeness_gap(values, prediction - expected),
                                score=prediction, reference=expected,
                                extras={"n_evaluations": int(np.max(calls))})


@register("gradient_shap", "gradient SHAP", delta=True, stochastic=True, single_pass=False)
def gradient_shap(model, X: np.ndarray, targets, *, output: str = "logits",
                  background: np.ndarray | None = None, n_samples: int = 100, seed: int = config.SEED,
                  batch_size: int = 50) -> Explanation:
    """Expected-gradients SHAP (``shap.GradientExplainer``) per sample and lead.

    ``background`` (b, window, leads) are reference beats (e.g. training beats of every
    class); ``n_samples`` background/interpolation draws per beat. Only the target class is
    differentiated (one single-output model per class present in ``targets``), which is
    ``n_classes`` times cheaper than letting shap explain every output.
    Additivity holds only approximately (Monte-Carlo estimate of an integral): ``delta``.
    """
    import keras
    import shap

    X = check_beats(model, X)
    background = np.zeros_like(X[:1]) if background is None else check_beats(model, background)
    t = check_targets(targets, len(X), model.output_shape[-1])
    head = score_model(model, output).output
    f_x, f_bg = predict_scores(model, X, output), predict_scores(model, background, output)
    f_bg = f_bg.mean(axis=0)
    values = np.zeros(X.shape, dtype=float)
    for c in np.unique(t):
        rows = np.flatnonzero(t == c)
        single = keras.Model(model.inputs, keras.layers.Lambda(
            lambda z, c=int(c): z[:, c:c + 1], name=f"class_{int(c)}")(head))
        with warnings.catch_warnings():  # shap passes a bare tensor to the named input
            warnings.filterwarnings("ignore", message="The structure of `inputs`")
            explainer = shap.GradientExplainer(single, background, batch_size=batch_size)
            with seeded_global_random(None):   # shap seeds np.random with rseed
                sv = explainer.shap_values(X[rows], nsamples=n_samples, rseed=seed + int(c))
        values[rows] = np.asarray(sv, dtype=float).reshape(len(rows), *X.shape[1:])
    expected, prediction = f_bg[t], f_x[np.arange(len(X)), t]
    return Explanation(values, t, "gradient_shap", output,
                       delta=completeness_gap(values, prediction - expected),
                       score=prediction, reference=expected,
                       extras={"n_evaluations": int(n_samples)})


# --------------------------------------------------------------------------------------------
# Reading explanations
# --------------------------------------------------------------------------------------------
def top_features(values: np.ndarray, labels: Sequence[str], k: int = 3) -> list[str]:
    """Names of the ``k`` features with the largest (signed) value, largest first."""
    values = np.asarray(values, dtype=float).ravel()
    if len(values) != len(labels):
        raise ValueError(f"{len(values)} values but {len(labels)} labels")
    order = np.argsort(-values, kind="stable")[:k]
    return [labels[i] for i in order]


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
