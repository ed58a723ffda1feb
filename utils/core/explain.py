"""The one explanation contract of the course: a result type and a calling convention.

Every explainer of the course (PFI, LIME, Kernel/gradient SHAP, CAM, Grad-CAM, saliency,
Integrated Gradients, LRP, attention) is called the same way, like Captum's ``attribute()``::

    exp = method(model, X, targets, *, output="logits", **options)   # -> Explanation

and returns one :class:`Explanation` (after alibi's and shap's ``Explanation``):

* ``values``: relevance **in sample space**, shape ``(n, window, leads)``, so that every map can
  be plotted, averaged, compared and tested the same way;
* ``native``: the values in the unit the method really explains (time steps of an LSTM, segments
  of LIME/SHAP/PFI, feature maps of a convolution), mapped to samples by :func:`to_samples`;
* ``delta``: the completeness / additivity gap per beat where the method has one, else ``None``.

This module also holds the pieces every explainer shares, each defined once: the score model
(:func:`score_model`: logits or probabilities, built once per model), target checking
(:func:`check_targets`), the upsampler (:func:`to_samples`), the segment aggregator
(:func:`segment_sums`) and :func:`rank_agreement`.
"""
from __future__ import annotations

import contextlib
import weakref
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

from utils.core import config
from utils.core.config import LOGITS_LAYER
from utils.core.beats import validate_beats
from utils.core.segments import segment_mask

#: What an explanation explains: the class score before the softmax, or the probability.
OUTPUTS: tuple[str, ...] = ("logits", "probs")
#: Native units of an explanation (what one entry of ``native`` covers).
UNITS: tuple[str, ...] = ("samples", "steps", "segments", "leads")

Output = Literal["logits", "probs"]


@dataclass(frozen=True)
class Explanation:
    """Result of every explainer of the course.
    Attributes
    ----------
    values : (n, window, leads) relevance in sample space (signed unless the method is not).
    target : (n,) explained class per beat.
    method : short name, e.g. ``"integrated_gradients"``.
    output : ``"logits"`` or ``"probs"``: which model output was explained.
    scope : ``"local"`` (one map per beat) or ``"global"`` (one summary, e.g. PFI).
    kind : ``"model-agnostic"`` or ``"model-specific"``.
    native : values in the method's own unit (``unit``), or ``None`` when that is samples.
    unit : unit of ``native``: ``"samples"``, ``"steps"``, ``"segments"`` or ``"leads"``.
    delta : (n,) completeness/additivity gap per beat, or ``None`` when the method has none:
        ``sum(values) - (score - reference)`` (Captum's name).
    extras : anything else the method reports (LIME R², PFI spread, attention weights ...).
    score : (n,) the explained output (``output``) of the target class at the beat, where the
        method computes it (the one name for SHAP's prediction, CAM's logit, LRP's score).
    reference : (n,) the same output at the method's reference input (IG's baseline, SHAP's
        expected value over the background, CAM's bias), where it has one.
    options : the options the explainer was called with, defaults filled in (recorded by
        :func:`utils.core.methods.register`), as plain values (arrays by their shape).
    """
    values: np.ndarray
    target: np.ndarray
    method: str
    output: str = "logits"
    scope: str = "local"
    kind: str = "model-specific"
    native: np.ndarray | None = None
    unit: str = "samples"
    delta: np.ndarray | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    score: np.ndarray | None = None
    reference: np.ndarray | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        values = np.asarray(self.values, dtype=np.float64)
        if values.ndim != 3:
            raise ValueError(f"Explanation.values must be (n, window, leads), got {values.shape}")
        target = np.asarray(self.target, dtype=np.int64).reshape(-1)
        if self.scope == "local" and len(target) != len(values):
            raise ValueError(f"{len(target)} targets for {len(values)} maps")
        if self.output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {self.output!r}")
        if self.scope not in ("local", "global"):
            raise ValueError(f"scope must be 'local' or 'global', got {self.scope!r}")
        if self.kind not in ("model-agnostic", "model-specific"):
            raise ValueError(f"kind must be 'model-agnostic' or 'model-specific', got {self.kind!r}")
        if self.unit not in UNITS:
            raise ValueError(f"unit must be one of {UNITS}, got {self.unit!r}")
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "target", target)
        if self.native is not None:
            object.__setattr__(self, "native", np.asarray(self.native, dtype=np.float64))
        for name in ("delta", "score", "reference"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, np.asarray(getattr(self, name), dtype=np.float64))

    # -- shap-like slicing ---------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.values)

    def __getitem__(self, idx) -> "Explanation":
        """Select beats (an int, a slice, an index array or a boolean mask), like shap's."""
        if isinstance(idx, (int, np.integer)):
            idx = [int(idx)]
        n = len(self)

        def take(a):
            if isinstance(a, np.ndarray) and a.ndim >= 1 and len(a) == n:
                return a[idx]
            return a

        extras = {k: take(v) for k, v in self.extras.items()}
        return replace(self, values=self.values[idx], target=self.target[idx],
                       native=take(self.native), delta=take(self.delta), extras=extras,
                       score=take(self.score), reference=take(self.reference))

    @property
    def score_change(self) -> np.ndarray | None:
        """(n,) ``score - reference``: what a complete attribution sums to."""
        if self.score is None or self.reference is None:
            return None
        return self.score - self.reference

    @property
    def shape(self) -> tuple[int, ...]:
        return self.values.shape

    def per_time(self, mode: Literal["abs", "signed", "mean"] = "abs") -> np.ndarray:
        """(n, window): relevance summed over the leads (``"abs"``: magnitudes, how much a time
        step matters either way; ``"signed"``: evidence for minus against) or averaged
        (``"mean"``: the one map of methods that share it across leads, CAM, Grad-CAM)."""
        if mode == "abs":
            return np.abs(self.values).sum(axis=2)
        if mode == "signed":
            return self.values.sum(axis=2)
        if mode == "mean":
            return self.values.mean(axis=2)
        raise ValueError(f"mode must be 'abs', 'signed' or 'mean', got {mode!r}")

    def total(self) -> np.ndarray:
        """(n,): the summed (signed) relevance of each beat (what completeness compares)."""
        return self.values.sum(axis=(1, 2))

    def max_delta(self) -> float | None:
        """Largest completeness/additivity gap, or ``None`` when the method has none."""
        return None if self.delta is None else float(np.nanmax(np.abs(self.delta)))

    def __repr__(self) -> str:
        gap = "" if self.delta is None else f", max |delta| {self.max_delta():.3g}"
        return (f"Explanation({self.method}, {self.scope}, {self.kind}, output={self.output}, "
                f"values {self.values.shape}, native {self.unit}{gap})")


# ------------------------------------------------------------------------------------------------
# Shared pieces
# ------------------------------------------------------------------------------------------------
def relevance_values(relevance) -> np.ndarray:
    """Relevance as a float array: an :class:`Explanation` gives its ``values`` (sample
    space), anything else is converted (what plots and metrics take)."""
    if isinstance(relevance, Explanation):
        return relevance.values
    return np.asarray(relevance, dtype=np.float64)


@contextlib.contextmanager
def seeded_global_random(seed: int | None):
    """Seed NumPy's global generator for a library call that draws from it and takes no
    ``np.random.Generator`` (shap's explainers, alibi's permutation importance), and give the
    caller's global state back afterwards, so no explainer changes it. ``seed=None``: the state
    is only kept (the library may seed it itself)."""
    state = np.random.get_state()
    try:
        if seed is not None:
            np.random.seed(seed)
        yield
    finally:
        np.random.set_state(state)


def check_output(output: str) -> str:
    """``output`` if it is ``"logits"`` or ``"probs"``; otherwise a clear ``ValueError``."""
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
    return output


_SCORE_MODELS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def score_model(model, output: str = "logits"):
    """The network whose output is explained: the model cut at its ``logits`` layer, or the
    model itself for ``"probs"``. Built once per model and cached (each new Keras model compiles
    its own predict function, which costs about a second on a small CPU)."""
    check_output(output)
    if output == "probs":
        return model
    cached = _SCORE_MODELS.get(model)
    if cached is None:
        import keras

        try:
            layer = model.get_layer(LOGITS_LAYER)
        except ValueError:
            raise ValueError(f"model {model.name!r} has no {LOGITS_LAYER!r} layer; explain "
                             "output='probs' or use a course classifier") from None
        cached = keras.Model(model.inputs, layer.output)
        _SCORE_MODELS[model] = cached
    return cached


def predict_scores(model, X, output: str = "logits", batch_size: int = 2048) -> np.ndarray:
    """Batched forward pass of :func:`score_model` as float64, (n, n_classes).
    ``predict_on_batch`` runs Keras' compiled predict step: eager calls of an LSTM are about
    10x slower and ``model.predict`` adds a data pipeline per call, which dominates for the many
    small batches that Kernel SHAP and the perturbation tests send.
    """
    net = score_model(model, output)
    if isinstance(X, (list, tuple)):   # multi-input model: a list of arrays with equal n
        n = len(X[0])
        out = [np.asarray(net.predict_on_batch([x[i:i + batch_size] for x in X]))
               for i in range(0, n, batch_size)]
    else:
        n = len(X)
        out = [np.asarray(net.predict_on_batch(X[i:i + batch_size]))
               for i in range(0, n, batch_size)]
    if not out:
        raise ValueError("X holds no beats (empty batch)")
    return np.concatenate(out).astype(np.float64)


def check_beats(model, X) -> np.ndarray:
    """``X`` validated for ``model`` (shape (n, window, leads) of its input, n >= 1, finite):
    :func:`utils.core.beats.validate_beats` with the model's window and leads."""

    shape = getattr(model, "input_shape", None)
    if not (isinstance(shape, tuple) and len(shape) == 3):
        raise ValueError(f"expected a Keras classifier of beats (n, window, leads), got "
                         f"{type(model).__name__} with input shape {shape}")
    return validate_beats(X, window=shape[1], leads=shape[2])


def require_layer(model, name: str, method: str):
    """The layer ``name`` of ``model``, or a ``ValueError`` saying which method needs it and
    which layers the model has."""
    try:
        return model.get_layer(name)
    except ValueError:
        names = ", ".join(layer.name for layer in model.layers)
        raise ValueError(f"{method} needs a layer {name!r}; model {model.name!r} has: "
                         f"{names}") from None


def class_scores(model, X, targets, output: str = "logits") -> np.ndarray:
    """``F_target(X)``: the explained output (logit or probability) of each beat for its target
    class, (n,). What completeness (IG), additivity (SHAP) and the CAM identity compare."""
    X = check_beats(model, X)
    out = predict_scores(model, X, output)
    t = check_targets(targets, len(X), out.shape[1])
    return out[np.arange(len(X)), t]


def check_targets(targets, n: int, n_classes: int = len(config.CLASSES)) -> np.ndarray:
    """Targets as an int array of length ``n`` (an int is repeated); rejects wrong lengths,
    non-integers (2.5) and classes outside ``[0, n_classes)`` with a ``ValueError``."""
    arr = np.asarray(targets)
    if arr.ndim == 0:
        arr = arr.reshape(1).repeat(n)
    if arr.ndim != 1 or len(arr) != n:
        raise ValueError(f"targets must be an int or an array of {n} class indices, "
                         f"got shape {np.shape(targets)}")
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.integer)
                                 or np.issubdtype(arr.dtype, np.floating)):
        raise ValueError(f"targets must be integer class indices, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)) or not np.all(np.equal(np.mod(arr, 1), 0)):
            raise ValueError("targets must be integer class indices (got non-integer values)")
    arr = arr.astype(np.int64)
    if arr.size and (arr.min() < 0 or arr.max() >= n_classes):
        raise ValueError(f"targets must lie in [0, {n_classes}); got {arr.min()}..{arr.max()}")
    return arr


def to_samples(native: np.ndarray, unit: str, window: int = config.WINDOW, leads: int = 2,
               *, n_segments: int | None = None, mode: Literal["hold", "interp"] = "hold",
               preserve_sum: bool = False) -> np.ndarray:
    """Map native values onto the beat's samples: the one upsampler of the course.

    * ``unit="samples"``: ``native`` is (n, window, leads), returned unchanged, or (n, window),
      copied to every lead (split equally between them with ``preserve_sum``).
    * ``unit="steps"``: ``native`` (n, steps) or (n, steps, leads); step ``t`` covers samples
      ``[t*f, (t+1)*f)`` with ``f = window / steps`` (the pooling in front of an LSTM or the
      stride of a convolution). ``mode="hold"`` repeats each value over its samples;
      ``mode="interp"`` places it at the centre of its samples and interpolates linearly (ends
      held), which draws a smooth Grad-CAM. ``preserve_sum`` divides by ``f`` so that the sum per
      beat is unchanged (attention weights still sum to 1, IG sums still add up); a map without
      a lead axis is then also split equally between the leads.
    * ``unit="segments"``: ``native`` (n, leads*n_segments), lead-major (feature ``k`` is lead
      ``k // n_segments``, segment ``k % n_segments``); each value is written on every sample of
      its segment (``preserve_sum`` divides by the segment length).

    Returns (n, window, leads) float64. Without ``preserve_sum`` a per-time map is copied to
    every lead (``Explanation.per_time("mean")`` gives it back); with it, the sum over samples
    *and leads* equals the native sum.
    """
    a = np.asarray(native, dtype=np.float64)
    if not np.all(np.isfinite(a)):
        raise ValueError("native values contain NaN or infinite values")
    if unit == "samples":
        if a.ndim == 2:
            a = np.repeat(a[:, :, None], leads, axis=2) / (leads if preserve_sum else 1)
        if a.ndim != 3 or a.shape[1] != window:
            raise ValueError(f"sample values must be (n, {window}[, leads]), got {a.shape}")
        return a
    if unit == "segments":

        if a.ndim != 2:
            raise ValueError(f"segment values must be (n, features), got {a.shape}")
        n_seg = n_segments if n_segments is not None else a.shape[1] // leads
        if n_seg * leads != a.shape[1]:
            raise ValueError(f"{a.shape[1]} features are not {leads} leads x {n_seg} segments")
        mask = segment_mask(window, n_seg, leads).astype(np.float64)   # (features, window, leads)
        if preserve_sum:
            mask = mask / mask.sum(axis=(1, 2), keepdims=True)
        return np.tensordot(a, mask, axes=(1, 0))
    if unit == "steps":
        if a.ndim == 2:
            a = a[:, :, None]
        if a.ndim != 3:
            raise ValueError(f"step values must be (n, steps[, leads]), got {a.shape}")
        steps = a.shape[1]
        if steps == window:                       # one step per sample: nothing to map
            mode = "hold"
        if not 1 <= steps <= window:
            raise ValueError(f"cannot map {steps} steps onto {window} samples")
        f = window / steps
        if mode == "hold":
            owner = np.minimum((np.arange(window) // f).astype(int), steps - 1)
            out = a[:, owner, :]
            if preserve_sum:
                counts = np.bincount(owner, minlength=steps).astype(np.float64)
                out = out / counts[owner][None, :, None]
        elif mode == "interp":
            if preserve_sum:
                raise ValueError("preserve_sum needs mode='hold'")
            centres = np.arange(steps) * f + (f - 1) / 2
            grid = np.arange(window)
            out = np.stack([np.stack([np.interp(grid, centres, a[i, :, j])
                                      for j in range(a.shape[2])], axis=1)
                            for i in range(len(a))]) if len(a) else np.zeros((0, window, a.shape[2]))
        else:
            raise ValueError(f"mode must be 'hold' or 'interp', got {mode!r}")
        if out.shape[2] == 1 and leads > 1:
            out = np.repeat(out, leads, axis=2) / (leads if preserve_sum else 1)
        return out
    raise ValueError(f"unit must be one of {UNITS[:3]}, got {unit!r}")


def segment_sums(values, n_segments: int = 16) -> np.ndarray:
    """Aggregate sample-space values (n, window, leads) - or an :class:`Explanation`, or a
    per-time map (n, window) - into lead-major segment sums (n, leads*n_segments): the one
    segment aggregator (inverse of :func:`to_samples` with ``unit="segments",
    preserve_sum=True``; with equal blocks it also pools samples into LSTM steps)."""

    v = values.values if isinstance(values, Explanation) else np.asarray(values, dtype=np.float64)
    if v.ndim == 2:
        v = v[:, :, None]
    if v.ndim != 3:
        raise ValueError(f"values must be (n, window[, leads]), got {v.shape}")
    mask = segment_mask(v.shape[1], n_segments, v.shape[2]).astype(np.float64)
    return np.tensordot(v, mask, axes=([1, 2], [1, 2]))


def completeness_gap(values, score_change) -> np.ndarray:
    """Per beat ``sum(values) - score_change``: the completeness (IG, CAM) or additivity (SHAP)
    gap, 0 for an exact decomposition of ``score_change = F(x) - F(reference)``."""
    v = np.asarray(values, dtype=np.float64)
    change = np.asarray(score_change, dtype=np.float64).reshape(-1)
    if len(v) != len(change):
        raise ValueError(f"{len(v)} maps for {len(change)} score changes")
    return v.reshape(len(v), -1).sum(axis=1) - change


def rank_agreement(a, b) -> np.ndarray:
    """Spearman rank correlation per beat between two explanations (or arrays) of the same
    beats, over all their entries (ties averaged, scipy.stats.spearmanr). NaN where either map is
    constant. Accepts :class:`Explanation` or arrays (n, ...)."""
    from scipy.stats import spearmanr

    a = a.values if isinstance(a, Explanation) else np.asarray(a, dtype=np.float64)
    b = b.values if isinstance(b, Explanation) else np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"cannot compare maps of shapes {a.shape} and {b.shape}")
    a = a.reshape(len(a), -1)
    b = b.reshape(len(b), -1)
    out = np.full(len(a), np.nan)
    for i in range(len(a)):
        if np.ptp(a[i]) > 0 and np.ptp(b[i]) > 0:
            out[i] = spearmanr(a[i], b[i]).statistic
    return out
