"""Evaluating explanations: sanity, faithfulness, stability and plausibility.

Every metric works on the course's explanation contract (:mod:`utils.core.explain`): an *explainer* is
a callable ``explainer(model, X, targets, **options) -> Explanation`` and a map is
``Explanation.values`` (n, window, leads). Four questions, one section each:

* **Sanity** (Adebayo et al. 2018, "Sanity checks for saliency maps"): cascading model-parameter
  randomisation. The weights of the layers are randomised from the top (logits) down, one more
  layer per step; an explanation that still looks the same after the model has been destroyed
  does not explain the model. :func:`cascading_randomisation`, :func:`model_randomisation`,
  :func:`randomisation_curve`.
* **Faithfulness**: deletion (most relevant segment first) and insertion curves over the
  lead-major segments of :mod:`utils.core.segments`, their areas, against random orders, with ROAD's
  noisy linear imputation (Rong et al. 2022, "A consistent and efficient evaluation strategy for
  attribution methods", ICML) or a flat fill. :func:`noisy_linear_imputation`,
  :func:`perturbation_curves`, :func:`faithfulness`.
* **Stability**: seed-to-seed agreement of stochastic explainers (:func:`seed_agreement`), the
  agreement between methods (:func:`method_agreement`, to be read next to the seed-to-seed
  figure) and max-sensitivity under small input noise (Yeh et al. 2019, "On the (in)fidelity
  and sensitivity of explanations", NeurIPS; :func:`max_sensitivity`).
* **Plausibility**: share of the relevance inside ECG wave windows against chance
  (:func:`wave_mass`, :func:`wave_mass_table`). The windows are an argument: they are defined
  once elsewhere (a dict ``name -> (start, stop)`` in samples, or per-beat arrays).

:func:`evaluate_methods` runs them for ``{name: explainer}`` and returns one tidy method x metric
table (:func:`metric_table` pivots it).

Which metrics come from Quantus (Hedström et al. 2023, quantus 0.6.0) and which are our own
----------------------------------------------------------------------------------------------------
Quantus is not a runtime dependency: every metric here is a few lines of numpy, and
``tests/test_evaluate.py`` pins each against Quantus's definition where Quantus can run it.

* MPRT: Quantus's ``MPRT`` *permutes* each layer's weights (with ``np.random.seed(seed + 1)``)
  instead of re-initialising them as Adebayo et al. do, and for Keras models its ``top_down``
  (cascading) order is broken in 0.6.0: the clone it randomises never gets the trained weights
  back, so every step is a fully random network. :func:`cascading_randomisation` is our own:
  ``mode="reinit"`` (the paper's) is the default; ``mode="permute", order="independent"``
  reproduces Quantus's ``layer_order="independent"`` scores exactly (pinned in the tests).
  Quantus also hands Keras explainers channel-last beats for the wrapped original model and
  channel-first ones for the randomised clones (compare maps only in one layout).
* ROAD: Quantus's ``ROAD`` orders single pixels, imputes on a 2-D image grid and reports only
  "prediction unchanged" booleans. On the course beats it fails both ways (tried on a toy
  Conv1D model): channel-last, its attribution-layout assertion; through a channel-first
  wrapper model, an ``IndexError`` in its 2-D neighbour imputation. We rank *segments*, impute
  along time per lead and report score curves; on a (leads, 1, time) array Quantus's
  ``noisy_linear_imputation`` solves exactly our problem, and the tests pin ours against it.
* FaithfulnessCorrelation (Quantus) fails on the course models (it rebuilds the top from the
  softmax ``Activation`` layer); deletion/insertion AUCs replace it.
* MaxSensitivity: same definition as Quantus's ``MaxSensitivity`` (uniform noise, Frobenius norm
  of the change relative to the map's norm); ours scales the noise to each beat's per-lead
  signal std and uses a fixed seed (pinned against Quantus in the tests).
* Seed-to-seed agreement, method agreement and wave-window mass are our own (Quantus has no
  seed-rerun metric; its ``RelevanceMassAccuracy`` needs one binary mask per beat and no chance
  level, which is the point of the ECG comparison).
"""
from __future__ import annotations

import itertools
from typing import Any, Callable, Iterator, Literal, Mapping, Sequence

import numpy as np

from utils.core import config
from utils.core.explain import (Explanation, check_output, check_targets, predict_scores,
                                rank_agreement, segment_sums)
from utils.core.segments import segment_mask

#: An explainer of the course: ``explainer(model, X, targets, **options) -> Explanation``.
Explainer = Callable[..., Explanation]
#: Ways of filling removed samples in the perturbation curves.
IMPUTATIONS: tuple[str, ...] = ("road", "zero")
#: Similarities reported by the randomisation test (per beat, original vs randomised map).
SIMILARITIES: tuple[str, ...] = ("spearman", "spearman_abs", "pearson_abs")


# ------------------------------------------------------------------------------------------------
# Shared
# ------------------------------------------------------------------------------------------------
def explain_values(explainer: Explainer, model, X: np.ndarray, targets, **options) -> np.ndarray:
    """Run ``explainer`` and return its sample-space map (n, window, leads), checked."""
    exp = explainer(model, X, targets, **options)
    if not isinstance(exp, Explanation):
        raise TypeError(f"an explainer must return utils.core.explain.Explanation, got {type(exp)}")
    if exp.values.shape != np.shape(X):
        raise ValueError(f"explanation of shape {exp.values.shape} for beats {np.shape(X)}")
    return exp.values


def _values(e) -> np.ndarray:
    return e.values if isinstance(e, Explanation) else np.asarray(e, dtype=np.float64)


def _pearson_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of each row of a with the same row of b (NaN for constant rows)."""
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    den = np.sqrt((a ** 2).sum(axis=1) * (b ** 2).sum(axis=1))
    return np.divide((a * b).sum(axis=1), den, out=np.full(len(a), np.nan), where=den > 0)


def map_similarity(a, b) -> dict[str, np.ndarray]:
    """Per-beat similarity of two maps of the same beats (SSIM-free, as in Adebayo et al.):
    Spearman of the signed values, Spearman and Pearson of the absolute values."""
    a, b = _values(a), _values(b)
    if a.shape != b.shape:
        raise ValueError(f"cannot compare maps of shapes {a.shape} and {b.shape}")
    fa, fb = np.abs(a).reshape(len(a), -1), np.abs(b).reshape(len(b), -1)
    return {"spearman": rank_agreement(a, b), "spearman_abs": rank_agreement(fa, fb),
            "pearson_abs": _pearson_rows(fa, fb)}


# ------------------------------------------------------------------------------------------------
# Sanity: cascading model-parameter randomisation (Adebayo et al. 2018)
# ------------------------------------------------------------------------------------------------
def weighted_layers(model) -> list[str]:
    """Names of the layers that hold weights, from the top (logits) down."""
    return [layer.name for layer in reversed(model.layers) if layer.get_weights()]


def cascading_randomisation(model, *, seed: int = config.SEED,
                            mode: Literal["reinit", "permute"] = "reinit",
                            order: Literal["cascading", "independent"] = "cascading"
                            ) -> Iterator[tuple[str, Any]]:
    """Yield ``(layer name, model)`` with the layers randomised one at a time, top down.

    ``order="cascading"`` (Adebayo et al.'s main test): step ``k`` has the top ``k`` weighted
    layers randomised. ``order="independent"``: step ``k`` has only layer ``k`` randomised.
    ``mode="reinit"`` (Adebayo et al.): the layer takes freshly initialised weights (its own
    initialisers, from a clone of the model built after ``keras.utils.set_random_seed(seed)``:
    Glorot kernels, zero biases, BatchNorm reset to the identity, orthogonal recurrent kernels).
    ``mode="permute"``: each weight array is permuted along its first axis after
    ``np.random.seed(seed + 1)``, Quantus's ``MPRT`` scheme (the weight distribution is kept).

    Written here because Quantus 0.6.0's Keras ``get_random_layer_generator`` clones the model
    without copying its weights back (``keras.models.clone_model`` re-initialises every layer),
    so its ``top_down`` steps all start from a fully random network; only its ``independent``
    order restores the weights, and that one pins ours in the tests.

    The original model is never changed. The yielded model is **one** clone modified in place
    (as Quantus does): use it before advancing the iterator. An untrained model built after
    ``set_random_seed(seed)`` is re-created exactly by ``reinit`` with the same seed. Side
    effects: ``reinit`` resets Keras' global seed and ``permute`` NumPy's legacy global seed.
    """
    import keras

    if mode not in ("reinit", "permute"):
        raise ValueError(f"mode must be 'reinit' or 'permute', got {mode!r}")
    if order not in ("cascading", "independent"):
        raise ValueError(f"order must be 'cascading' or 'independent', got {order!r}")
    original = model.get_weights()
    randomised = keras.models.clone_model(model)
    randomised.set_weights(original)
    fresh = None
    if mode == "reinit":
        keras.utils.set_random_seed(seed)
        fresh = keras.models.clone_model(model)
    for name in weighted_layers(model):
        if order == "independent":
            randomised.set_weights(original)
        layer = randomised.get_layer(name)
        if fresh is not None:
            new = fresh.get_layer(name).get_weights()
        else:
            np.random.seed(seed + 1)
            new = [np.random.permutation(w) for w in layer.get_weights()]
        layer.set_weights(new)
        yield name, randomised


def model_randomisation(explainer: Explainer, model, X: np.ndarray, targets, *,
                        seed: int = config.SEED, mode: Literal["reinit", "permute"] = "reinit",
                        order: Literal["cascading", "independent"] = "cascading",
                        reference: Explanation | np.ndarray | None = None,
                        include_rerun: bool = True, **options):
    """Cascading randomisation test of one explainer: a tidy ``pandas.DataFrame``.

    One row per (step, beat): ``step`` 0 is ``layer="original"`` (the explainer rerun on the
    unchanged model, compared with the reference: 1 for a deterministic method, the
    seed-to-seed level for a stochastic one; left out with ``include_rerun=False``), step ``k``
    has the top ``k`` weighted layers randomised (``layer`` names the last one; with
    ``order="independent"`` only that one, see :func:`cascading_randomisation`). Columns
    ``spearman``, ``spearman_abs``, ``pearson_abs`` (:func:`map_similarity` between the
    reference map and the map of the randomised model), ``beat``, ``target``.
    A faithful explainer decorrelates as more layers are randomised.
    ``reference``: the map of the original model (computed when ``None``);
    ``options`` go to every explainer call.
    """
    import pandas as pd

    t = check_targets(targets, len(X))
    ref = (_values(reference) if reference is not None
           else explain_values(explainer, model, X, t, **options))
    rows = []

    def add(step: int, layer: str, values: np.ndarray) -> None:
        sim = map_similarity(ref, values)
        rows.append(pd.DataFrame({"step": step, "layer": layer, "beat": np.arange(len(X)),
                                  "target": t, **sim}))

    if include_rerun:
        add(0, "original", explain_values(explainer, model, X, t, **options))
    steps = cascading_randomisation(model, seed=seed, mode=mode, order=order)
    for step, (name, randomised) in enumerate(steps, start=1):
        add(step, name, explain_values(explainer, randomised, X, t, **options))
    return pd.concat(rows, ignore_index=True)


def randomisation_curve(table, metric: str = "spearman_abs", agg: str = "median"):
    """The randomisation curve: ``agg`` of ``metric`` over the beats per step, indexed by layer
    name in cascade order (original first), as a ``pandas.Series``."""
    if metric not in SIMILARITIES:
        raise ValueError(f"metric must be one of {SIMILARITIES}, got {metric!r}")
    curve = table.groupby(["step", "layer"], sort=True)[metric].agg(agg)
    return curve.reset_index(level="step", drop=True).rename(f"{agg} {metric}")


# ------------------------------------------------------------------------------------------------
# Faithfulness: deletion / insertion over segments, ROAD imputation
# ------------------------------------------------------------------------------------------------
def noisy_linear_imputation(X: np.ndarray, removed: np.ndarray, noise: float = 0.01,
                            seed: int = config.SEED) -> np.ndarray:
    """ROAD's noisy linear imputation (Rong et al. 2022) on the time axis, per beat and lead.

    Every removed sample (``removed`` True; same shape as ``X`` (n, window, leads)) is replaced
    by the linear interpolation between the nearest kept samples of its lead (held constant
    beyond the first/last kept sample), plus Gaussian noise of std ``noise`` (in the units of
    ``X``: the course beats are z-scored per lead, so 0.01 = 1 % of the signal's std, ROAD's
    default). This is the solution of ROAD's neighbour-averaging equations on a 1-D grid (tested
    against Quantus's ``noisy_linear_imputation`` on (leads, 1, time) arrays). A lead with no kept
    sample is filled with 0 (the z-scored mean) plus noise. Kept samples are returned unchanged.
    """
    X = np.asarray(X, dtype=np.float64)
    removed = np.asarray(removed, dtype=bool)
    if removed.shape != X.shape or X.ndim != 3:
        raise ValueError(f"removed {removed.shape} must match beats (n, window, leads) {X.shape}")
    out = X.copy()
    grid = np.arange(X.shape[1])
    rng = np.random.default_rng(seed)
    for i, lead in zip(*np.nonzero(removed.any(axis=1))):
        gone = removed[i, :, lead]
        kept = ~gone
        if kept.any():
            out[i, gone, lead] = np.interp(grid[gone], grid[kept], X[i, kept, lead])
        else:
            out[i, :, lead] = 0.0
    if noise:
        out[removed] += noise * rng.standard_normal(int(removed.sum()))
    return out


def flat_fill(X: np.ndarray, removed: np.ndarray, value: float = 0.0, **_) -> np.ndarray:
    """Removed samples set to ``value`` (0 = the z-scored mean): the plain deletion, whose
    flat-line shape itself can tell the model what was removed (ROAD's criticism)."""
    X = np.asarray(X, dtype=np.float64)
    return np.where(np.asarray(removed, dtype=bool), value, X)


def impute(X: np.ndarray, removed: np.ndarray, imputation: str = "road", *,
           noise: float = 0.01, seed: int = config.SEED) -> np.ndarray:
    """Fill the removed samples: ``"road"`` (:func:`noisy_linear_imputation`) or ``"zero"``."""
    if imputation == "road":
        return noisy_linear_imputation(X, removed, noise=noise, seed=seed)
    if imputation == "zero":
        return flat_fill(X, removed)
    raise ValueError(f"imputation must be one of {IMPUTATIONS}, got {imputation!r}")


def segment_order(values, n_segments: int = 16, rank_by: Literal["signed", "abs"] = "signed",
                  seed: int = config.SEED) -> np.ndarray:
    """(n, leads*n_segments) feature indices, most relevant first, from the segment sums of a
    map (:func:`utils.core.explain.segment_sums`). ``rank_by="signed"`` ranks positive evidence for
    the target first (the usual deletion order); ties (e.g. the zeros of a ReLU'd Grad-CAM) are
    broken at random (``seed``) rather than by segment position."""
    if rank_by not in ("signed", "abs"):
        raise ValueError(f"rank_by must be 'signed' or 'abs', got {rank_by!r}")
    sums = segment_sums(_values(values), n_segments)
    score = np.abs(sums) if rank_by == "abs" else sums
    jitter = np.random.default_rng(seed).random(score.shape)
    return np.lexsort((jitter, -score), axis=-1)


def random_orders(n: int, n_features: int, n_orders: int = 5, seed: int = config.SEED
                  ) -> np.ndarray:
    """(n_orders, n, n_features) random feature orders (one per beat and draw)."""
    rng = np.random.default_rng(seed)
    return np.argsort(rng.random((n_orders, n, n_features)), axis=-1)


def _removed_masks(order: np.ndarray, mode: str, window: int, leads: int, n_segments: int
                   ) -> np.ndarray:
    """(n, F+1, window, leads) masks of removed samples after k = 0..F steps."""
    n, F = order.shape
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(F)[None, :].repeat(n, 0), axis=1)
    first_k = rank[:, None, :] < np.arange(F + 1)[None, :, None]          # (n, F+1, F)
    removed_feat = first_k if mode == "deletion" else ~first_k
    mask = segment_mask(window, n_segments, leads)                           # (F, window, leads)
    return np.tensordot(removed_feat.astype(np.float32), mask.astype(np.float32),
                        axes=(2, 0)) > 0.5


def perturbation_curves(model, X: np.ndarray, targets, order: np.ndarray, *,
                        mode: Literal["deletion", "insertion"] = "deletion",
                        imputation: str = "road", output: str = "probs", n_segments: int = 16,
                        noise: float = 0.01, seed: int = config.SEED) -> np.ndarray:
    """(n, F+1) target score after ``k = 0..F`` segments (F = leads*n_segments).

    ``deletion``: the first ``k`` features of ``order`` (most relevant first) are removed;
    ``insertion``: every feature is removed except the first ``k`` (step 0 is the fully
    imputed beat, step F the beat itself). Removed samples are filled by ``imputation``
    (:func:`impute`). Scores: ``output="probs"`` (default: bounded, so areas compare across
    beats) or ``"logits"``; batched through :func:`utils.core.explain.predict_scores`, so it works
    for the CNN and the LSTM alike.
    """
    if mode not in ("deletion", "insertion"):
        raise ValueError(f"mode must be 'deletion' or 'insertion', got {mode!r}")
    check_output(output)
    X = np.asarray(X, dtype=np.float64)
    n, window, leads = X.shape
    t = check_targets(targets, n)
    order = np.asarray(order)
    if order.shape != (n, leads * n_segments):
        raise ValueError(f"order must be (n, {leads * n_segments}), got {order.shape}")
    removed = _removed_masks(order, mode, window, leads, n_segments)         # (n, F+1, w, l)
    steps = removed.shape[1]
    beats = np.repeat(X[:, None], steps, axis=1).reshape(-1, window, leads)
    perturbed = impute(beats, removed.reshape(-1, window, leads), imputation,
                       noise=noise, seed=seed)
    scores = predict_scores(model, perturbed.astype(np.float32), output)
    return scores[np.arange(len(scores)), np.repeat(t, steps)].reshape(n, steps)


def curve_area(curves: np.ndarray) -> np.ndarray:
    """Area under each curve (n, F+1) over the fraction of features in [0, 1] (trapezoid):
    normalised by the number of steps, so 1 means "score 1 all along"."""
    curves = np.asarray(curves, dtype=np.float64)
    return np.trapz(curves, dx=1.0 / (curves.shape[1] - 1), axis=1)


def faithfulness(model, X: np.ndarray, targets, values, *,
                 imputations: Sequence[str] = IMPUTATIONS,
                 modes: Sequence[str] = ("deletion", "insertion"), n_random: int = 5,
                 output: str = "probs", n_segments: int = 16, noise: float = 0.01,
                 seed: int = config.SEED, with_curves: bool = False):
    """Deletion and insertion areas of an explanation against random orders: a tidy DataFrame.

    ``values``: an :class:`Explanation` or (n, window, leads) map, or ``None`` for the random
    orders only. Rows: (imputation, mode, order, beat) with ``order`` ``"explainer"`` or
    ``"random"`` (mean area over ``n_random`` random orders per beat) and column ``auc``
    (:func:`curve_area`). Good explanations: low deletion area, high insertion area, both
    beyond random. ``with_curves=True`` also returns the mean curves (imputation, mode, order,
    fraction, score).
    """
    import pandas as pd

    X = np.asarray(X, dtype=np.float64)
    n, window, leads = X.shape
    t = check_targets(targets, n)
    orders: dict[str, np.ndarray] = {}
    if values is not None:
        orders["explainer"] = segment_order(values, n_segments, seed=seed)[None]
    if n_random:
        orders["random"] = random_orders(n, leads * n_segments, n_random, seed=seed + 1)
    if not orders:
        raise ValueError("nothing to evaluate: give values or n_random > 0")
    rows, curves = [], []
    for imputation, mode, (name, stack) in itertools.product(imputations, modes, orders.items()):
        c = np.mean([perturbation_curves(model, X, t, o, mode=mode, imputation=imputation,
                                         output=output, n_segments=n_segments, noise=noise,
                                         seed=seed + j) for j, o in enumerate(stack)], axis=0)
        rows.append(pd.DataFrame({"imputation": imputation, "mode": mode, "order": name,
                                  "beat": np.arange(n), "target": t, "auc": curve_area(c)}))
        curves.append(pd.DataFrame({"imputation": imputation, "mode": mode, "order": name,
                                    "fraction": np.linspace(0, 1, c.shape[1]),
                                    "score": c.mean(axis=0)}))
    table = pd.concat(rows, ignore_index=True)
    return (table, pd.concat(curves, ignore_index=True)) if with_curves else table


# ------------------------------------------------------------------------------------------------
# Stability
# ------------------------------------------------------------------------------------------------
def agreement(a, b, n_segments: int = 16) -> dict[str, np.ndarray]:
    """Per-beat agreement of two maps on the segment level (the unit LIME/SHAP explain):
    Spearman of the lead-major segment sums and whether the top segment is the same."""
    sa, sb = segment_sums(_values(a), n_segments), segment_sums(_values(b), n_segments)
    return {"spearman": rank_agreement(sa, sb),
            "top_segment": (sa.argmax(axis=1) == sb.argmax(axis=1)).astype(float)}


def seed_agreement(explainer: Explainer, model, X: np.ndarray, targets,
                   seeds: Sequence[int] = (1, 2, 3), *, seed_arg: str | None = "seed",
                   n_segments: int = 16, **options):
    """Seed-to-seed agreement of an explainer: rerun with each seed (``options[seed_arg] =
    seed``; ``seed_arg=None`` reruns a deterministic method unchanged) and compare every pair
    of runs with :func:`agreement`. Tidy DataFrame (seed_a, seed_b, beat, spearman,
    top_segment). A deterministic method agrees with itself (1, 1)."""
    import pandas as pd

    if len(seeds) < 2:
        raise ValueError("seed_agreement needs at least two seeds")
    t = check_targets(targets, len(X))
    runs = {s: explain_values(explainer, model, X, t,
                              **({} if seed_arg is None else {seed_arg: s}), **options)
            for s in seeds}
    rows = [pd.DataFrame({"seed_a": a, "seed_b": b, "beat": np.arange(len(X)),
                          **agreement(runs[a], runs[b], n_segments)})
            for a, b in itertools.combinations(seeds, 2)]
    return pd.concat(rows, ignore_index=True)


def method_agreement(explanations: Mapping[str, Any], n_segments: int = 16):
    """Pairwise agreement between methods on the same beats (:func:`agreement`), as a tidy
    DataFrame (method_a, method_b, beat, spearman, top_segment): read it next to
    :func:`seed_agreement`, since two methods cannot agree better than one method with itself."""
    import pandas as pd

    rows = [pd.DataFrame({"method_a": a, "method_b": b,
                          "beat": np.arange(len(_values(explanations[a]))),
                          **agreement(explanations[a], explanations[b], n_segments)})
            for a, b in itertools.combinations(explanations, 2)]
    return pd.concat(rows, ignore_index=True)


def max_sensitivity(explainer: Explainer, model, X: np.ndarray, targets, *,
                    radius: float = 0.05, n_draws: int = 10, seed: int = config.SEED,
                    reference: Explanation | np.ndarray | None = None, **options) -> np.ndarray:
    """Max-sensitivity (Yeh et al. 2019) per beat, relative as in Quantus's ``MaxSensitivity``:

        max over draws of ||Phi(x + d) - Phi(x)||_F / ||Phi(x)||_F,  d ~ U[-r s, r s]

    with ``s`` each beat's per-lead signal std (so ``radius`` is a fraction of the signal) and
    ``n_draws`` draws (fixed ``seed``). The target class stays the one given (not re-predicted).
    0 for a map that does not move; NaN where the map is all zero.
    """
    X = np.asarray(X, dtype=np.float32)
    t = check_targets(targets, len(X))
    ref = (_values(reference) if reference is not None
           else explain_values(explainer, model, X, t, **options))
    scale = X.std(axis=1, keepdims=True)                                     # (n, 1, leads)
    rng = np.random.default_rng(seed)
    norm = np.sqrt((ref ** 2).reshape(len(X), -1).sum(axis=1))
    worst = np.zeros(len(X))
    for _ in range(n_draws):
        noise = rng.uniform(-radius, radius, size=X.shape).astype(np.float32) * scale
        moved = explain_values(explainer, model, X + noise, t, **options)
        diff = np.sqrt(((moved - ref) ** 2).reshape(len(X), -1).sum(axis=1))
        worst = np.maximum(worst, diff)
    return np.divide(worst, norm, out=np.full(len(X), np.nan), where=norm > 0)


# ------------------------------------------------------------------------------------------------
# Plausibility: relevance mass in ECG wave windows
# ------------------------------------------------------------------------------------------------
def _window_bounds(spec, n: int, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Start/stop arrays (n,) from ``(start, stop)`` or an (n, 2) array (NaN: absent)."""
    arr = np.asarray(spec, dtype=np.float64)
    if arr.shape == (2,):
        arr = np.broadcast_to(arr, (n, 2))
    if arr.shape != (n, 2):
        raise ValueError(f"a window is (start, stop) or an ({n}, 2) array, got {arr.shape}")
    ok = np.isfinite(arr).all(axis=1)
    if np.any((arr[ok, 0] < 0) | (arr[ok, 1] > window) | (arr[ok, 0] >= arr[ok, 1])):
        raise ValueError(f"window bounds must satisfy 0 <= start < stop <= {window}")
    return arr[:, 0], arr[:, 1]


def wave_mass(values, windows: Mapping[str, Any], *,
              mode: Literal["abs", "positive"] = "abs"):
    """Share of each beat's relevance inside each wave window, and the chance share.

    ``windows``: ``name -> (start, stop)`` in samples (same for every beat) or ``name -> (n, 2)``
    array (per-beat windows; NaN rows where the wave is absent, e.g. no pacing spike).
    Relevance: ``|values|`` summed over the leads (``mode="abs"``) or the positive part
    (``"positive"``: evidence *for* the target). Tidy DataFrame (beat, window, share, chance,
    lift = share / chance); chance is the window's share of the beat length
    ((stop - start) / window), what a map spread evenly over the beat would get.
    """
    import pandas as pd

    v = _values(values)
    n, window, _ = v.shape
    if mode == "abs":
        mag = np.abs(v).sum(axis=2)
    elif mode == "positive":
        mag = np.clip(v, 0, None).sum(axis=2)
    else:
        raise ValueError(f"mode must be 'abs' or 'positive', got {mode!r}")
    total = mag.sum(axis=1)
    csum = np.concatenate([np.zeros((n, 1)), np.cumsum(mag, axis=1)], axis=1)
    rows = []
    for name, spec in windows.items():
        start, stop = _window_bounds(spec, n, window)
        ok = np.isfinite(start) & np.isfinite(stop)
        a = np.where(ok, start, 0).round().astype(int)
        b = np.where(ok, stop, 0).round().astype(int)
        inside = csum[np.arange(n), b] - csum[np.arange(n), a]
        share = np.divide(inside, total, out=np.full(n, np.nan), where=(total > 0) & ok)
        chance = np.where(ok, (b - a) / window, np.nan)
        rows.append(pd.DataFrame({"beat": np.arange(n), "window": name, "share": share,
                                  "chance": chance, "lift": share / chance}))
    return pd.concat(rows, ignore_index=True)


def wave_mass_table(values, y: np.ndarray, windows: Mapping[str, Any], **kwargs):
    """:func:`wave_mass` averaged per class (rows: class symbol and window; columns share,
    chance, lift and n beats): mean share of relevance inside each window against chance."""
    mass = wave_mass(values, windows, **kwargs)
    y = np.asarray(y)
    mass["class"] = np.asarray(config.CLASSES)[y[mass["beat"].to_numpy()]]
    table = (mass.dropna(subset=["share"]).groupby(["class", "window"], sort=False)
             .agg(share=("share", "mean"), chance=("chance", "mean"), lift=("lift", "mean"),
                  n=("beat", "size")))
    return table


# ------------------------------------------------------------------------------------------------
# One table, method x metric
# ------------------------------------------------------------------------------------------------
def evaluate_methods(explainers: Mapping[str, Explainer], model, X: np.ndarray, targets, *,
                     windows: Mapping[str, Any] | None = None,
                     stochastic: Mapping[str, str] | None = None, seeds: Sequence[int] = (1, 2),
                     randomise: Sequence[str] = (), imputations: Sequence[str] = IMPUTATIONS,
                     n_random: int = 5, sensitivity_draws: int = 5, radius: float = 0.05,
                     output: str = "probs", seed: int = config.SEED):
    """Method x metric evaluation on representative beats: one tidy DataFrame
    (method, metric, value, n) with the median over the beats of each metric (the mean for
    the top-segment agreement, a 0/1 share, and for the mass lift).

    * ``deletion_<imp>`` / ``insertion_<imp>``: curve areas (:func:`faithfulness`), plus the
      same for ``method="random"`` (the mean of ``n_random`` random orders);
    * ``max_sensitivity`` (:func:`max_sensitivity`; ``sensitivity_draws=0`` skips it);
    * ``seed_spearman`` / ``seed_top_segment`` for the methods in ``stochastic``
      (``name -> seed keyword``), :func:`seed_agreement` over ``seeds``;
    * ``mprt_last_spearman_abs``: the randomisation curve's last value for the methods in
      ``randomise`` (:func:`model_randomisation`);
    * ``mass_lift_<window>`` (mean share / chance) when ``windows`` is given.

    ``targets``: the explained class per beat (e.g. the predicted class). The beats should be
    representative (stratified by record and class); per-class views are
    :func:`wave_mass_table` and :func:`faithfulness` on a class's beats.
    """
    import pandas as pd

    X = np.asarray(X, dtype=np.float32)
    t = check_targets(targets, len(X))
    stochastic = dict(stochastic or {})
    rows: list[dict] = []

    def add(method: str, metric: str, values, agg: Callable = np.nanmedian) -> None:
        v = np.asarray(values, dtype=np.float64)
        rows.append({"method": method, "metric": metric, "value": float(agg(v))
                     if np.isfinite(v).any() else np.nan, "n": int(np.isfinite(v).sum())})

    base = faithfulness(model, X, t, None, imputations=imputations, n_random=n_random,
                        output=output, seed=seed)
    for (imp, mode), part in base.groupby(["imputation", "mode"], sort=False):
        add("random", f"{mode}_{imp}", part["auc"])
    maps = {}
    for name, explainer in explainers.items():
        maps[name] = explain_values(explainer, model, X, t)
        faith = faithfulness(model, X, t, maps[name], imputations=imputations, n_random=0,
                             output=output, seed=seed)
        for (imp, mode), part in faith.groupby(["imputation", "mode"], sort=False):
            add(name, f"{mode}_{imp}", part["auc"])
        if sensitivity_draws:
            add(name, "max_sensitivity", max_sensitivity(explainer, model, X, t, radius=radius,
                                                         n_draws=sensitivity_draws, seed=seed,
                                                         reference=maps[name]))
        if name in stochastic:
            agree = seed_agreement(explainer, model, X, t, seeds, seed_arg=stochastic[name])
            add(name, "seed_spearman", agree["spearman"])
            add(name, "seed_top_segment", agree["top_segment"], np.nanmean)
        if name in randomise:
            curve = model_randomisation(explainer, model, X, t, seed=seed, reference=maps[name],
                                        include_rerun=False)
            last = curve[curve["step"] == curve["step"].max()]
            add(name, "mprt_last_spearman_abs", last["spearman_abs"])
        if windows is not None:
            mass = wave_mass(maps[name], windows)
            for win, part in mass.groupby("window", sort=False):
                add(name, f"mass_lift_{win}", part["lift"], np.nanmean)
    return pd.DataFrame(rows)


def metric_table(tidy, decimals: int = 3):
    """Pivot :func:`evaluate_methods` output: methods as rows, metrics as columns."""
    wide = tidy.pivot(index="method", columns="metric", values="value")
    order = list(dict.fromkeys(tidy["method"]))
    return wide.loc[order, list(dict.fromkeys(tidy["metric"]))].round(decimals)
