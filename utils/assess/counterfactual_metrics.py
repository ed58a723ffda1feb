"""Metrics of counterfactual beats, each defined once (issue 26).

A counterfactual ``x'`` of a beat ``x`` for a target class ``t`` is judged on (Delaney et al.
2021; Karlsson et al. 2020; Van Looveren & Klaise 2021):

* :func:`validity` - does the model decide ``t`` for ``x'``?
* :func:`proximity` - how far ``x'`` is from ``x``: L1, L2 (over samples and leads) or DTW
  (:func:`dtw_distance`, multivariate, dtaidistance);
* :func:`sparsity` - the share of (sample, lead) entries that changed (lower = sparser);
* :func:`contiguity` - the number of changed segments: runs of time steps where any lead
  changed (1 = one contiguous window);
* plausibility - is ``x'`` an ordinary beat of class ``t``? :class:`PlausibilityDetector`
  (LocalOutlierFactor or IsolationForest of scikit-learn, fitted on training beats of the
  target class, with a threshold calibrated on other real beats of that class) and
  :func:`autoencoder_ratio` (the reconstruction error of the course autoencoder, relative to
  real beats of the class it was trained on: the target-class half of Van Looveren & Klaise's
  IM1, since the course has an autoencoder for N only);
* run time: :func:`ms_per_beat`.

:func:`metric_table` puts them in one table per method with the spread across records.
Written here (numpy, scikit-learn, dtaidistance) because no pinned library has counterfactual
metrics for Keras models; tests/test_counterfactual_metrics.py cross-checks sparsity,
validity and proximity against wildboar's independent ``wildboar.metrics``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Mapping

import numpy as np
from utils.core.beats import validate_beats

#: Default tolerance below which a sample counts as unchanged (z-score units, float32 noise).
ATOL: float = 1e-6
#: Proximity measures of :func:`proximity`.
PROXIMITIES: tuple[str, ...] = ("l1", "l2", "dtw")


def _pair(X, X_cf) -> tuple[np.ndarray, np.ndarray]:
    X = np.asarray(X, dtype=np.float64)
    X_cf = np.asarray(X_cf, dtype=np.float64)
    if X.shape != X_cf.shape:
        raise ValueError(f"original {X.shape} and counterfactual {X_cf.shape} differ in shape")
    if X.ndim == 2:   # one lead: (n, window)
        X, X_cf = X[:, :, None], X_cf[:, :, None]
    if X.ndim != 3:
        raise ValueError(f"beats must be (n, window[, leads]), got {X.shape}")
    if not (np.all(np.isfinite(X)) and np.all(np.isfinite(X_cf))):
        raise ValueError("beats contain NaN or infinite values")
    return X, X_cf


def validity(scores_after, targets) -> np.ndarray:
    """(n,) bool: the model's decision for the counterfactual (argmax of its scores, logits or
    probabilities alike) is the target class."""
    s = np.asarray(scores_after, dtype=np.float64)
    t = np.asarray(targets).reshape(-1)
    if s.ndim != 2 or len(s) != len(t):
        raise ValueError(f"scores must be (n, classes) for {len(t)} targets, got {s.shape}")
    return s.argmax(axis=1) == t


def changed(X, X_cf, atol: float = ATOL) -> np.ndarray:
    """(n, window, leads) bool: entries where ``|x' - x| > atol``."""
    X, X_cf = _pair(X, X_cf)
    if atol < 0:
        raise ValueError(f"atol must be non-negative, got {atol}")
    return np.abs(X_cf - X) > atol


def sparsity(X, X_cf, atol: float = ATOL) -> np.ndarray:
    """(n,): share of the (sample, lead) entries that changed, in [0, 1] (lower = sparser;
    wildboar's ``compactness_score`` per beat)."""
    return changed(X, X_cf, atol).mean(axis=(1, 2))


def changed_segments(X, X_cf, atol: float = ATOL) -> list[np.ndarray]:
    """Per beat, the (k, 2) [start, stop) sample ranges where any lead changed."""
    step = changed(X, X_cf, atol).any(axis=2)           # (n, window)
    out = []
    for row in step:
        edges = np.diff(np.concatenate([[0], row.astype(np.int8), [0]]))
        out.append(np.stack([np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)], axis=1))
    return out


def contiguity(X, X_cf, atol: float = ATOL) -> np.ndarray:
    """(n,) int: the number of changed segments (0 = nothing changed, 1 = one window)."""
    return np.array([len(s) for s in changed_segments(X, X_cf, atol)], dtype=np.int64)


def dtw_distance(X, X_cf, window: int | None = None) -> np.ndarray:
    """(n,): multivariate DTW between each beat and its counterfactual (dtaidistance's
    ``dtw_ndim``: squared Euclidean distance between the lead vectors of matched samples,
    square root of the path sum; ``window``: dtaidistance's Sakoe-Chiba band, matched samples
    differ by less than ``window`` steps, so 1 is the diagonal (= L2); ``None`` = no band)."""
    from dtaidistance import dtw_ndim

    X, X_cf = _pair(X, X_cf)
    kw = dtw_band(window)
    return np.array([dtw_ndim.distance_fast(np.ascontiguousarray(a), np.ascontiguousarray(b),
                                            use_pruning=False, **kw)
                     for a, b in zip(X, X_cf)])


def dtw_band(window: int | None) -> dict:
    """dtaidistance's keyword for a band of ``window`` samples (``{}`` for none); rejects
    ``window < 1``, which dtaidistance would silently read as "no band"."""
    if window is None:
        return {}
    if int(window) < 1:
        raise ValueError(f"a DTW band must be at least 1 sample (1 = diagonal), got {window}")
    return {"window": int(window)}


def proximity(X, X_cf, kind: str = "l2", *, dtw_window: int | None = None) -> np.ndarray:
    """(n,): distance of each counterfactual to its beat over all samples and leads:
    ``"l1"`` (sum of |change|), ``"l2"`` (Euclidean norm of the change) or ``"dtw"``
    (:func:`dtw_distance`)."""
    if kind not in PROXIMITIES:
        raise ValueError(f"kind must be one of {PROXIMITIES}, got {kind!r}")
    if kind == "dtw":
        return dtw_distance(X, X_cf, dtw_window)
    X, X_cf = _pair(X, X_cf)
    d = (X_cf - X).reshape(len(X), -1)
    return np.abs(d).sum(axis=1) if kind == "l1" else np.sqrt((d ** 2).sum(axis=1))


def ms_per_beat(seconds: float, n: int) -> float:
    """Wall time per beat in milliseconds."""
    if n < 1:
        raise ValueError(f"need at least one beat, got {n}")
    return 1000.0 * float(seconds) / int(n)


# ------------------------------------------------------------------------------------------------
# Plausibility
# ------------------------------------------------------------------------------------------------
@dataclass
class PlausibilityDetector:
    """An out-of-distribution detector of one class's beats (flattened samples x leads).
    ``kind="lof"``: :class:`sklearn.neighbors.LocalOutlierFactor` with ``novelty=True``
    (deterministic); ``"iforest"``: :class:`sklearn.ensemble.IsolationForest` (seeded from the
    ``rng`` given to :meth:`fit`, no global random state). :meth:`score` is the outlier score
    (higher = more unusual: the LOF itself, or minus the forest's ``score_samples``).
    :meth:`calibrate` sets :attr:`threshold` to a quantile of the scores of *other* real beats
    of the class (not the fitted ones: LOF is optimistic on its own training points), so that
    :meth:`implausible` flags about ``1 - quantile`` of real beats.
    """
    kind: Literal["lof", "iforest"] = "lof"
    n_neighbors: int = 20
    threshold: float | None = None
    estimator: object = None

    def fit(self, X_train, rng: np.random.Generator | None = None) -> "PlausibilityDetector":
        X_train = _flat(X_train)
        if len(X_train) < 2:
            raise ValueError(f"need at least 2 beats of the class to fit, got {len(X_train)}")
        if self.kind == "lof":
            from sklearn.neighbors import LocalOutlierFactor

            est = LocalOutlierFactor(n_neighbors=min(self.n_neighbors, len(X_train) - 1),
                                     novelty=True)
        elif self.kind == "iforest":
            from sklearn.ensemble import IsolationForest

            if rng is None:
                raise ValueError("IsolationForest needs rng=np.random.Generator (no global "
                                 "random state)")
            est = IsolationForest(n_estimators=200, random_state=int(rng.integers(2 ** 31)))
        else:
            raise ValueError(f"kind must be 'lof' or 'iforest', got {self.kind!r}")
        self.estimator = est.fit(X_train)
        return self

    def score(self, X) -> np.ndarray:
        """(n,) outlier score (higher = more unusual for the class)."""
        if self.estimator is None:
            raise ValueError("fit the detector first")
        return -self.estimator.score_samples(_flat(X))

    def calibrate(self, X_real, quantile: float = 0.95) -> "PlausibilityDetector":
        """Threshold = the ``quantile`` of the scores of real beats ``X_real`` of the class."""
        if not 0 < quantile < 1:
            raise ValueError(f"quantile must be in (0, 1), got {quantile}")
        self.threshold = float(np.quantile(self.score(X_real), quantile))
        return self

    def implausible(self, X) -> np.ndarray:
        """(n,) bool: score above the calibrated threshold."""
        if self.threshold is None:
            raise ValueError("calibrate the detector first")
        return self.score(X) > self.threshold


def _flat(X) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim < 2 or not np.all(np.isfinite(X)):
        raise ValueError(f"beats must be finite (n, ...), got shape {X.shape}")
    return X.reshape(len(X), -1)


def autoencoder_errors(autoencoder, X, batch_size: int = 512) -> np.ndarray:
    """(n,) reconstruction error of the course autoencoder: the mean squared difference between
    its output and the average-pooled beat it reconstructs (the ``error`` of
    :func:`utils.explainers.attention.reconstruction_errors`, computed with one compiled predict step
    and numpy pooling instead of a second Keras model per call, which costs seconds)."""

    X = validate_beats(np.asarray(X, dtype=np.float32), window=autoencoder.input_shape[1],
                       leads=autoencoder.input_shape[2])
    pool = int(np.ravel(autoencoder.get_layer("downsample").pool_size)[0])
    steps = X.shape[1] // pool
    pooled = X[:, :steps * pool].reshape(len(X), steps, pool, X.shape[2]).mean(axis=2)
    recon = np.concatenate([np.asarray(autoencoder.predict_on_batch(X[i:i + batch_size]))
                            for i in range(0, len(X), batch_size)])
    return ((recon - pooled) ** 2).mean(axis=(1, 2)).astype(np.float64)


def autoencoder_ratio(autoencoder, X_cf, X_real=None, *, reference_error: float | None = None
                      ) -> np.ndarray:
    """(n,): reconstruction error of each counterfactual divided by the median error of real
    beats ``X_real`` of the class the autoencoder was trained on (or by ``reference_error``,
    that median computed once). About 1 = as well explained as a real beat of that class;
    larger = less plausible. The target-class term of IM1 (Van Looveren & Klaise 2021),
    normalised by real beats instead of by a second autoencoder of the original class, which
    the course does not have."""
    if reference_error is None:
        if X_real is None:
            raise ValueError("pass X_real (real beats of the class) or reference_error")
        reference_error = float(np.median(autoencoder_errors(autoencoder, X_real)))
    if not reference_error > 0:
        raise ValueError("the reference reconstruction error must be positive")
    return autoencoder_errors(autoencoder, X_cf) / float(reference_error)


# ------------------------------------------------------------------------------------------------
# One table
# ------------------------------------------------------------------------------------------------
def beat_metrics(X, X_cf, scores_after, targets, *, atol: float = ATOL,
                 dtw_window: int | None = None) -> dict[str, np.ndarray]:
    """Every per-beat metric that needs only the pair and the model's scores: validity, L1,
    L2, DTW, sparsity, contiguity (a dict of (n,) arrays)."""
    return {"valid": validity(scores_after, targets).astype(np.float64),
            "L1": proximity(X, X_cf, "l1"), "L2": proximity(X, X_cf, "l2"),
            "DTW": proximity(X, X_cf, "dtw", dtw_window=dtw_window),
            "sparsity": sparsity(X, X_cf, atol),
            "segments": contiguity(X, X_cf, atol).astype(np.float64)}


def metric_table(per_beat: Mapping[str, Mapping[str, np.ndarray]], record,
                 ms: Mapping[str, float] | None = None, statistic: str = "mean"):
    """Method x metric table with the spread across records.
    ``per_beat``: ``method -> {metric -> (n,) values}`` (the same beats for every method, in
    the order of ``record``). For each metric the ``statistic`` (``"mean"`` or ``"median"``)
    over beats, and in ``"<metric> records"`` the 10th-90th percentile of the per-record means
    (how much patients differ). NaN values (a metric that does not apply) are skipped.
    ``ms``: method -> ms per beat (added as a column). Rows sorted by method name.
    """
    import pandas as pd

    record = np.asarray(record)
    if statistic not in ("mean", "median"):
        raise ValueError(f"statistic must be 'mean' or 'median', got {statistic!r}")
    agg = np.nanmean if statistic == "mean" else np.nanmedian
    rows = {}
    for method in sorted(per_beat):
        row = {}
        for metric, values in per_beat[method].items():
            v = np.asarray(values, dtype=np.float64)
            if len(v) != len(record):
                raise ValueError(f"{method}/{metric}: {len(v)} values for {len(record)} beats")
            ok = np.isfinite(v)
            if not ok.any():
                row[metric], row[f"{metric} records"] = np.nan, ""
                continue
            row[metric] = float(agg(v[ok]))
            frame = pd.DataFrame({"r": record[ok], "v": v[ok]}).groupby("r")["v"].mean()
            lo, hi = np.quantile(frame.to_numpy(), [0.1, 0.9])
            row[f"{metric} records"] = f"{lo:.3g}-{hi:.3g}"
        if ms is not None:
            row["ms per beat"] = float(ms[method])
        rows[method] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "method"
    return table
