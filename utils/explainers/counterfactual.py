"""Counterfactual explanations of beats: "what would make this beat normal?" (issue 26).

A counterfactual of a beat ``x`` for a target class ``t`` is a beat ``x'`` close to ``x`` that
the model assigns to ``t``. Three methods, all under the course contract
``method(model, X, targets, *, output=..., **options)`` and all returning a
:class:`Counterfactual` (an :class:`~utils.core.explain.Explanation` whose ``values`` are the change
``x' - x`` in sample space, so it plots, slices and compares like every other explanation):

* :func:`nearest_unlike_neighbour` - the trivial baseline: the closest training beat of the
  target class (Euclidean or DTW) that the model assigns to the target, taken whole;
* :func:`native_guide` - Native Guide (Delaney, Greene & Keane 2021, ICCBR; authors' code
  e-delaney/Instance-Based_CFE_TSC): take that neighbour, find the contiguous window where its
  class activation map (CAM) for the target is largest, copy that window of the neighbour into
  the beat, and grow the window until the decision flips;
* :func:`wachter` - a gradient baseline after Wachter, Mittelstadt & Russell (2018): minimise
  ``lambda * hinge(target margin) + beta * ||x' - x||_1`` with TensorFlow's GradientTape
  (proximal gradient steps: soft-thresholding for the L1 proximity penalty, so that untouched
  samples stay exactly unchanged), raising ``lambda`` for beats that are not valid yet.

Why written here: no library fits the course stack. alibi 0.9.6's ``Counterfactual``,
``CounterfactualProto`` and ``CEM`` use the TF1 API (``tf.compat.v1`` sessions) and do not
support Keras 3 models; TSInterpret 0.4.7 (Native Guide, COMTE, TSEvo) needs torch and pins
scikit-learn 1.3.0, opencv 4.6 and tqdm < 4.66, which clash with the course pins. DTW comes
from dtaidistance (C implementation). Metrics live in :mod:`utils.assess.counterfactual_metrics`.
No global random state: every method is deterministic, and :func:`wachter` takes an
``np.random.Generator`` for its optional random start.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

import numpy as np

from utils.assess.counterfactual_metrics import validity
from utils.core.explain import (Explanation, check_beats, check_output, check_targets,
                                predict_scores)
from utils.explainers.cam import class_activation_map
from utils.core.explain import score_model
from utils.assess.counterfactual_metrics import dtw_band
from utils.core.methods import register

#: Distances of the neighbour search.
DISTANCES: tuple[str, ...] = ("euclidean", "dtw")
#: Default Sakoe-Chiba band of the DTW search, in samples (10 % of the beat: 0.14 s).
DTW_WINDOW: int = 26
#: Keys every :class:`Counterfactual` carries in ``extras``.
REQUIRED: tuple[str, ...] = ("original", "counterfactual", "scores_before", "scores_after",
                             "seconds")


@dataclass(frozen=True, repr=False)
class Counterfactual(Explanation):
    """Result of every counterfactual method: an :class:`Explanation` with

    * ``values``: the change ``x' - x`` (n, window, leads), signed (z-score units);
    * ``target``: the class each counterfactual is for;
    * ``extras["original"]`` / ``["counterfactual"]``: ``x`` and ``x'`` (n, window, leads);
    * ``extras["scores_before"]`` / ``["scores_after"]``: the model's scores (``output``:
      logits or probabilities) of ``x`` and ``x'``, (n, classes);
    * ``options``: the options used (a dict, as every Explanation), ``extras["seconds"]``: wall
      time of the whole call; method-specific arrays (neighbour index, window) beside them.

    Slicing (``cf[mask]``) keeps every per-beat array aligned, like every Explanation.
    """
    def __post_init__(self) -> None:
        super().__post_init__()
        missing = [k for k in REQUIRED if k not in self.extras]
        if missing:
            raise ValueError(f"a Counterfactual needs extras {missing}")
        x, xc = self.extras["original"], self.extras["counterfactual"]
        if np.shape(x) != self.values.shape or np.shape(xc) != self.values.shape:
            raise ValueError("original, counterfactual and values must have the same shape")

    @property
    def original(self) -> np.ndarray:
        return self.extras["original"]

    @property
    def counterfactual(self) -> np.ndarray:
        return self.extras["counterfactual"]

    @property
    def scores_before(self) -> np.ndarray:
        return self.extras["scores_before"]

    @property
    def scores_after(self) -> np.ndarray:
        return self.extras["scores_after"]

    @property
    def valid(self) -> np.ndarray:
        """(n,) bool: the model decides the target for the counterfactual."""
        return validity(self.scores_after, self.target)

    @property
    def pred_before(self) -> np.ndarray:
        return self.scores_before.argmax(axis=1)

    @property
    def pred_after(self) -> np.ndarray:
        return self.scores_after.argmax(axis=1)


def _result(model, X, X_cf, t, method: str, output: str, kind: str, options: dict,
            seconds: float, scores_before=None, **arrays) -> Counterfactual:
    X_cf = np.asarray(X_cf, dtype=np.float32)
    before = predict_scores(model, X, output) if scores_before is None else scores_before
    after = predict_scores(model, X_cf, output)
    extras = {"original": np.asarray(X, np.float64), "counterfactual": X_cf.astype(np.float64),
              "scores_before": before, "scores_after": after, "seconds": float(seconds),
              **arrays}
    return Counterfactual(X_cf.astype(np.float64) - np.asarray(X, np.float64), t, method, output,
                          kind=kind, extras=extras, options=dict(options))


def _n_classes(model) -> int:
    return int(model.output_shape[-1])


# ------------------------------------------------------------------------------------------------
# Neighbour search
# ------------------------------------------------------------------------------------------------
def _check_reference(model, reference, reference_y) -> tuple[np.ndarray, np.ndarray]:
    if reference is None or reference_y is None:
        raise ValueError("pass reference= (training beats) and reference_y= (their classes)")
    R = check_beats(model, reference)
    ry = np.asarray(reference_y).reshape(-1)
    if len(ry) != len(R):
        raise ValueError(f"{len(ry)} reference classes for {len(R)} reference beats")
    return R, ry.astype(np.int64)


def pairwise_distances(X, R, distance: str = "euclidean", dtw_window: int | None = DTW_WINDOW
                       ) -> np.ndarray:
    """(n, m) distances between beats ``X`` (n, window, leads) and ``R`` (m, window, leads):
    Euclidean over samples and leads, or multivariate DTW (dtaidistance's ``dtw_ndim``, the
    same definition as :func:`utils.assess.counterfactual_metrics.dtw_distance`) with a Sakoe-Chiba
    band of ``dtw_window`` samples (``None``: no band)."""
    X = np.asarray(X, dtype=np.float64)
    R = np.asarray(R, dtype=np.float64)
    if distance == "euclidean":
        a = X.reshape(len(X), -1)
        b = R.reshape(len(R), -1)
        sq = (a ** 2).sum(1)[:, None] + (b ** 2).sum(1)[None, :] - 2 * a @ b.T
        return np.sqrt(np.clip(sq, 0, None))
    if distance == "dtw":
        from dtaidistance import dtw_ndim

        series = np.ascontiguousarray(np.concatenate([X, R]))
        kw = dtw_band(dtw_window)
        full = dtw_ndim.distance_matrix_fast(series, block=((0, len(X)), (len(X), len(series))),
                                             compact=False, parallel=True, **kw)
        return np.asarray(full)[:len(X), len(X):]
    raise ValueError(f"distance must be one of {DISTANCES}, got {distance!r}")


def find_neighbours(model, X, targets, reference, reference_y, *, distance: str = "euclidean",
                    dtw_window: int | None = DTW_WINDOW, require_predicted: bool = True,
                    output: str = "logits") -> tuple[np.ndarray, np.ndarray]:
    """For each beat, the index into ``reference`` of its nearest unlike neighbour: the closest
    reference beat of class ``targets[i]`` (and, with ``require_predicted``, that the model
    also assigns to that class, so that the neighbour itself is a valid counterfactual).
    Returns (indices (n,), distances (n,)); ``ValueError`` when a target has no candidate."""
    X = check_beats(model, X)
    R, ry = _check_reference(model, reference, reference_y)
    t = check_targets(targets, len(X), _n_classes(model))
    if distance not in DISTANCES:
        raise ValueError(f"distance must be one of {DISTANCES}, got {distance!r}")
    ok = np.ones(len(R), bool)
    if require_predicted:
        ok = predict_scores(model, R, output).argmax(axis=1) == ry
    idx = np.full(len(X), -1, np.int64)
    dist = np.full(len(X), np.nan)
    for c in np.unique(t):
        cand = np.flatnonzero((ry == c) & ok)
        if not len(cand):
            raise ValueError(f"no reference beat of class {c}"
                             + (" that the model assigns to it" if require_predicted else ""))
        rows = np.flatnonzero(t == c)
        d = pairwise_distances(X[rows], R[cand], distance, dtw_window)
        best = d.argmin(axis=1)
        idx[rows] = cand[best]
        dist[rows] = d[np.arange(len(rows)), best]
    return idx, dist


@register("nearest_unlike_neighbour", "NUN", kind="model-agnostic", family="counterfactual",
          targets="the class each counterfactual is for")
def nearest_unlike_neighbour(model, X, targets, *, output: str = "logits", reference=None,
                             reference_y=None, distance: str = "euclidean",
                             dtw_window: int | None = DTW_WINDOW,
                             require_predicted: bool = True) -> Counterfactual:
    """The nearest unlike neighbour itself as the counterfactual (the trivial baseline).
    ``reference``/``reference_y``: training beats and their classes (the candidates);
    ``distance``: ``"euclidean"`` or ``"dtw"``. Valid by construction with
    ``require_predicted`` (the default), but it replaces the whole beat by another patient's.
    """
    check_output(output)
    start = time.perf_counter()
    X = check_beats(model, X)
    t = check_targets(targets, len(X), _n_classes(model))
    R, ry = _check_reference(model, reference, reference_y)
    idx, dist = find_neighbours(model, X, t, R, ry, distance=distance, dtw_window=dtw_window,
                                require_predicted=require_predicted, output=output)
    seconds = time.perf_counter() - start
    options = {"distance": distance, "dtw_window": dtw_window,
               "require_predicted": require_predicted, "n_reference": len(R)}
    return _result(model, X, R[idx], t, f"nun_{distance}", output, "model-agnostic", options,
                   seconds, neighbour=idx, neighbour_distance=dist)


# ------------------------------------------------------------------------------------------------
# Native Guide
# ------------------------------------------------------------------------------------------------
def best_window(cam: np.ndarray, length: int) -> int:
    """Start of the contiguous window of ``length`` samples with the largest summed ``cam``
    (n,) - the "most influential subsequence" of Native Guide (first one on ties)."""
    cam = np.asarray(cam, dtype=np.float64).reshape(-1)
    if not 1 <= length <= len(cam):
        raise ValueError(f"length must be in [1, {len(cam)}], got {length}")
    c = np.concatenate([[0.0], np.cumsum(cam)])
    return int(np.argmax(c[length:] - c[:-length]))


def window_lengths(window: int, step: int, min_length: int | None = None) -> np.ndarray:
    """The window lengths Native Guide tries, shortest first: ``step, 2 step, ...`` and the
    whole beat."""
    if step < 1:
        raise ValueError(f"step must be at least 1, got {step}")
    first = step if min_length is None else max(1, int(min_length))
    return np.unique(np.concatenate([np.arange(first, window + 1, step), [window]]))


@register("native_guide", "Native Guide", models=("fcn",), family="counterfactual",
          targets="the class each counterfactual is for")
def native_guide(model, X, targets, *, output: str = "logits", reference=None,
                 reference_y=None, distance: str = "euclidean",
                 dtw_window: int | None = DTW_WINDOW, step: int = 4,
                 require_predicted: bool = True, guide: str = "cam") -> Counterfactual:
    """Native Guide counterfactuals (Delaney et al. 2021).

    1. the nearest unlike neighbour ``x_nun`` of each beat among ``reference`` beats of the
       target class (:func:`find_neighbours`, ``distance`` Euclidean or DTW);
    2. the CAM of ``x_nun`` for the target class (:func:`utils.explainers.cam.class_activation_map`, one
       map shared by the leads) ranks its samples; ``guide="uniform"`` ignores it (a
       centred window, for the ablation "does the CAM help?");
    3. for window lengths ``step, 2 step, ...`` (:func:`window_lengths`) the window of that
       length with the largest summed CAM (:func:`best_window`) is copied from ``x_nun`` into
       ``x``, both leads; the shortest length whose beat the model assigns to the target is
       the counterfactual. The paper grows the window one sample at a time; ``step=1`` does
       exactly that, the default 4 (22 ms) evaluates 4x fewer candidates in one batch.

    Needs a GAP network with the course layer names (``conv_last``, ``logits``).
    ``extras``: ``neighbour`` (index into ``reference``), ``neighbour_distance``, ``start``
    and ``stop`` of the copied window (samples), ``length``.
    """
    check_output(output)
    if guide not in ("cam", "uniform"):
        raise ValueError(f"guide must be 'cam' or 'uniform', got {guide!r}")
    start_time = time.perf_counter()
    X = check_beats(model, X)
    t = check_targets(targets, len(X), _n_classes(model))
    R, ry = _check_reference(model, reference, reference_y)
    lengths = window_lengths(X.shape[1], int(step))
    idx, dist = find_neighbours(model, X, t, R, ry, distance=distance, dtw_window=dtw_window,
                                require_predicted=require_predicted, output=output)
    nun = R[idx]
    if guide == "cam":
        cam = class_activation_map(model, nun, t).native            # (n, window)
    else:
        cam = -np.abs(np.arange(X.shape[1]) - (X.shape[1] - 1) / 2)[None].repeat(len(X), 0)
    window = X.shape[1]
    starts = np.array([[best_window(cam[i], L) for L in lengths] for i in range(len(X))])
    # every candidate of every beat in one batch: (n * lengths, window, leads)
    grid = np.arange(window)
    inside = ((grid[None, None, :] >= starts[:, :, None])
              & (grid[None, None, :] < (starts + lengths[None, :])[:, :, None]))
    cands = np.where(inside[..., None], nun[:, None], X[:, None])
    scores = predict_scores(model, cands.reshape(-1, *X.shape[1:]), output)
    flips = scores.argmax(axis=1).reshape(len(X), len(lengths)) == t[:, None]
    first = np.where(flips.any(axis=1), flips.argmax(axis=1), len(lengths) - 1)
    rows = np.arange(len(X))
    X_cf = cands[rows, first]
    seconds = time.perf_counter() - start_time
    options = {"distance": distance, "dtw_window": dtw_window, "step": int(step),
               "require_predicted": require_predicted, "guide": guide,
               "n_reference": len(R), "n_lengths": len(lengths)}
    return _result(model, X, X_cf, t, f"native_guide_{distance}", output, "model-specific",
                   options, seconds, neighbour=idx, neighbour_distance=dist,
                   start=starts[rows, first], stop=starts[rows, first] + lengths[first],
                   length=lengths[first].astype(np.int64))


# ------------------------------------------------------------------------------------------------
# Wachter-style gradient counterfactual
# ------------------------------------------------------------------------------------------------
def _margin(z, t, n_classes):
    """max_{k != t} z_k - z_t per beat (negative = the target wins)."""
    import tensorflow as tf

    onehot = tf.one_hot(t, n_classes, dtype=z.dtype)
    z_t = tf.reduce_sum(z * onehot, axis=1)
    z_other = tf.reduce_max(z - 1e9 * onehot, axis=1)
    return z_other - z_t


@register("wachter", "Wachter", family="counterfactual", single_pass=False,
          targets="the class each counterfactual is for")
def wachter(model, X, targets, *, output: str = "logits", lam: float = 1.0,
            beta: float = 0.3, kappa: float = 0.5, learning_rate: float = 0.02,
            max_steps: int = 300, check_every: int = 25, lam_factor: float = 2.0,
            init_noise: float = 0.0, rng: np.random.Generator | None = None
            ) -> Counterfactual:
    """Gradient counterfactuals with an L1 proximity penalty (after Wachter et al. 2018).
    Minimises, per beat, ``lam * max(0, margin(x') + kappa) + beta * ||x' - x||_1`` where
    ``margin = max_{k != t} z_k - z_t`` on the model's ``output`` (logits by default) and
    ``kappa`` is the margin the target must win by. Proximal gradient descent (ISTA, as in
    CEM): a gradient step on the hinge (``tf.GradientTape``), then soft-thresholding of the
    change by ``learning_rate * beta``, so samples the margin does not need stay exactly
    unchanged. Each beat's gradient is divided by the largest |gradient| of its margin at the
    start, ``G``: ``learning_rate`` is then in z-score units per step for the most sensitive
    sample, and a sample moves only while ``lam * |d margin / d x_i| / G > beta``, so ``beta``
    in (0, 1) is a relative sparsity threshold. Every ``check_every`` steps ``lam`` is
    multiplied by ``lam_factor`` for beats that are not valid yet (Wachter's schedule); the
    valid ``x'`` with the smallest L1 change seen at a check is kept, else the last one (then
    invalid, shown as such). ``init_noise``: standard deviation of a random start around ``x``
    (needs ``rng``; default 0, deterministic).

    On a linear model the result is known in closed form (tests): only the samples with the
    largest weight difference change, by the amount that makes the target win by ``kappa``.
    """
    import tensorflow as tf

    check_output(output)
    for name, v in (("lam", lam), ("learning_rate", learning_rate), ("lam_factor", lam_factor)):
        if not v > 0:
            raise ValueError(f"{name} must be positive, got {v}")
    if beta < 0 or kappa < 0 or init_noise < 0:
        raise ValueError("beta, kappa and init_noise must be non-negative")
    if int(max_steps) < 1 or int(check_every) < 1:
        raise ValueError("max_steps and check_every must be at least 1")
    if init_noise > 0 and rng is None:
        raise ValueError("init_noise needs rng=np.random.Generator (no global random state)")
    start_time = time.perf_counter()
    X = check_beats(model, X)
    net = score_model(model, output)
    n_classes = int(net.output_shape[-1])
    t = check_targets(targets, len(X), n_classes)
    x0 = tf.constant(X)
    tt = tf.constant(t)

    with tf.GradientTape() as tape:       # the scale G of each beat's margin gradient
        tape.watch(x0)
        m0 = _margin(net(x0, training=False), tt, n_classes)
    g0 = np.abs(tape.gradient(m0, x0).numpy()).reshape(len(X), -1).max(axis=1)
    scale = tf.constant(np.where(g0 > 0, g0, 1.0).astype(np.float32)[:, None, None])

    delta0 = (rng.normal(0, init_noise, X.shape).astype(np.float32) if init_noise > 0
              else np.zeros_like(X))
    delta = tf.Variable(delta0)
    lam_v = tf.Variable(np.full(len(X), lam, np.float32))
    lr = float(learning_rate)
    shrink = float(learning_rate * beta)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            m = _margin(net(x0 + delta, training=False), tt, n_classes)
            loss = tf.reduce_sum(lam_v * tf.nn.relu(m + kappa))
        d = delta - lr * tape.gradient(loss, delta) / scale
        delta.assign(tf.sign(d) * tf.nn.relu(tf.abs(d) - shrink))

    best = X.copy()
    best_l1 = np.full(len(X), np.inf)
    for i in range(int(max_steps)):
        step()
        if (i + 1) % int(check_every) == 0 or i + 1 == int(max_steps):
            d = delta.numpy()
            ok = predict_scores(model, X + d, output).argmax(axis=1) == t
            l1 = np.abs(d).reshape(len(X), -1).sum(axis=1)
            better = ok & (l1 < best_l1)
            best[better] = X[better] + d[better]
            best_l1[better] = l1[better]
            lam_v.assign(np.where(ok, lam_v.numpy(), lam_v.numpy() * lam_factor))
    never = ~np.isfinite(best_l1)
    best[never] = X[never] + delta.numpy()[never]
    seconds = time.perf_counter() - start_time
    options = {"lam": lam, "beta": beta, "kappa": kappa, "learning_rate": learning_rate,
               "max_steps": int(max_steps), "check_every": int(check_every),
               "lam_factor": lam_factor, "init_noise": init_noise}
    return _result(model, X, best, t, "wachter", output, "model-specific", options, seconds,
                   lam_final=lam_v.numpy().astype(np.float64), gradient_scale=g0)


#: The course's counterfactual methods by name (each under the one contract).
METHODS = {"nun": nearest_unlike_neighbour, "native_guide": native_guide, "wachter": wachter}

Method = Literal["nun", "native_guide", "wachter"]
