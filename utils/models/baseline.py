"""An inherently interpretable baseline: a handful of textbook beat features (RR intervals,
QRS width, amplitudes of the P/QRS/T waves) and a shallow decision tree or a logistic regression
on them (scikit-learn).

A cardiologist can read every feature, every split of the tree and every coefficient of the
regression; the price is that the features must be designed by hand and a few numbers cannot
capture every morphology (see week 1). Times are in seconds relative to the annotated R peak.
"""
from __future__ import annotations

import numpy as np

from utils.core import config
from utils.data.aami import AAMI_CLASSES, DS1, DS2, AamiBeats
from utils.data.mitdb import subsample_majority

#: Names of the columns returned by :func:`beat_features` (units in brackets).
FEATURE_NAMES: tuple[str, ...] = (
    "rr_prev [s]",          # interval to the previous beat: short for premature beats (V, A)
    "rr_next [s]",          # interval to the next beat: long after a compensatory pause
    "rr_ratio",             # rr_prev / rr_next: prematurity independent of the heart rate
    "qrs_width [s]",        # duration of the steep part of the QRS (both leads): wide in V, L, R, /
    "r_amp_lead0 [mV]",     # signed largest QRS deflection in MLII (negative for many V beats)
    "qrs_area_lead1 [mV s]",  # signed QRS area in the chest lead: V1 positive in RBBB, negative in LBBB
    "p_wave_lead0 [mV]",    # mean deflection before the QRS in MLII: P wave (absent/abnormal in A, /)
    "t_wave_lead0 [mV]",    # mean deflection after the QRS in MLII: T wave (inverted after wide QRS)
    "max_slope_lead0 [mV/s]",  # steepest slope in MLII: pacemaker spikes in paced beats
)

#: Windows (s from the R peak) used by :func:`beat_features`.
QRS_SEARCH: tuple[float, float] = (-0.15, 0.15)
R_WINDOW: tuple[float, float] = (-0.05, 0.05)
QRS_AREA: tuple[float, float] = (-0.06, 0.10)
P_WINDOW: tuple[float, float] = (-0.25, -0.08)
T_WINDOW: tuple[float, float] = (0.15, 0.40)


def _window(t0: float, t1: float, fs: int, r_offset: int, length: int) -> slice:
    """Sample slice of ``[t0, t1)`` seconds from the R peak, clipped to the beat."""
    a = max(0, r_offset + int(round(t0 * fs)))
    b = min(length, r_offset + int(round(t1 * fs)))
    if b <= a:
        raise ValueError(f"window {t0}..{t1} s is empty for a beat of {length} samples")
    return slice(a, b)


def qrs_width(beats_mv: np.ndarray, fs: int = config.BEAT_FS, r_offset: int = config.R_OFFSET,
              threshold: float = 0.2) -> np.ndarray:
    """Approximate QRS duration (s) of each beat (n, window, leads) in mV.

    The slope magnitude ``|dx/dt|`` summed over the leads is searched within
    ``QRS_SEARCH`` around the R peak; the QRS is the span from the first to the last sample
    whose slope exceeds ``threshold`` x the beat's largest slope there. A simple, readable rule
    (not a clinical delineator): it tends to over-estimate noisy beats.
    """
    beats_mv = _check_beats(beats_mv)
    win = _window(*QRS_SEARCH, fs, r_offset, beats_mv.shape[1])
    slope = np.abs(np.diff(beats_mv[:, win, :], axis=1)).sum(axis=2)  # (n, samples-1)
    above = slope >= threshold * slope.max(axis=1, keepdims=True)
    first = above.argmax(axis=1)
    last = above.shape[1] - 1 - above[:, ::-1].argmax(axis=1)
    return (last - first + 1) / fs


def beat_features(beats_mv: np.ndarray, rr_prev: np.ndarray, rr_next: np.ndarray,
                  fs: int = config.BEAT_FS, r_offset: int = config.R_OFFSET) -> np.ndarray:
    """The :data:`FEATURE_NAMES` of each beat: (n, 9) float array.

    ``beats_mv`` (n, window, 2) in millivolts (``data.millivolts(idx)``), ``rr_prev``/``rr_next``
    (n,) in seconds (NaN at record edges is kept: impute it in the model pipeline). Wave
    amplitudes are measured from the beat's median, a robust stand-in for the isoelectric line.
    """
    beats_mv = _check_beats(beats_mv)
    rr_prev = np.asarray(rr_prev, dtype=float)
    rr_next = np.asarray(rr_next, dtype=float)
    n, length, _ = beats_mv.shape
    if rr_prev.shape != (n,) or rr_next.shape != (n,):
        raise ValueError(f"rr_prev/rr_next must have shape ({n},), got {rr_prev.shape} and "
                         f"{rr_next.shape}")
    x = beats_mv - np.median(beats_mv, axis=1, keepdims=True)
    w = {name: _window(*bounds, fs, r_offset, length) for name, bounds in
         (("r", R_WINDOW), ("area", QRS_AREA), ("p", P_WINDOW), ("t", T_WINDOW))}
    r_seg = x[:, w["r"], 0]
    r_amp = r_seg[np.arange(n), np.abs(r_seg).argmax(axis=1)]
    with np.errstate(divide="ignore", invalid="ignore"):
        rr_ratio = np.where(rr_next > 0, rr_prev / rr_next, np.nan)
    return np.column_stack([
        rr_prev,
        rr_next,
        rr_ratio,
        qrs_width(beats_mv, fs, r_offset),
        r_amp,
        x[:, w["area"], 1].sum(axis=1) / fs,
        x[:, w["p"], 0].mean(axis=1),
        x[:, w["t"], 0].mean(axis=1),
        np.abs(np.diff(beats_mv[:, :, 0], axis=1)).max(axis=1) * fs,
    ]).astype(float)


def features_frame(data, idx: np.ndarray):
    """:func:`beat_features` of the beats ``idx`` of a :class:`~utils.data.mitdb.BeatData` as a
    pandas DataFrame (columns :data:`FEATURE_NAMES`, plus the class symbol in ``class``)."""
    import pandas as pd

    idx = np.asarray(idx)
    feats = beat_features(data.millivolts(idx), data.rr_prev[idx], data.rr_next[idx])
    frame = pd.DataFrame(feats, columns=list(FEATURE_NAMES))
    frame["class"] = np.asarray(config.CLASSES)[data.y[idx]]
    return frame


def fit_baseline(features: np.ndarray, y: np.ndarray, kind: str = "tree", max_depth: int = 4,
                 seed: int = config.SEED):
    """Fit an interpretable classifier on beat features.

    ``kind='tree'``: a depth-``max_depth`` decision tree (rules readable with
    :func:`tree_rules`); ``kind='logistic'``: a standardised multinomial logistic regression
    (coefficients readable with :func:`coefficient_table`). Both weight classes by inverse
    frequency (``class_weight='balanced'``) and impute missing RR intervals with the training
    median. Returns a fitted scikit-learn ``Pipeline``.
    """
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.tree import DecisionTreeClassifier

    features = np.asarray(features, dtype=float)
    y = np.asarray(y)
    if features.ndim != 2 or len(features) != len(y):
        raise ValueError(f"features must be (n, n_features) aligned with y; got {features.shape}"
                         f" and {y.shape}")
    if kind == "tree":
        if max_depth < 1:
            raise ValueError(f"max_depth must be >= 1, got {max_depth}")
        steps = [("impute", SimpleImputer(strategy="median")),
                 ("model", DecisionTreeClassifier(max_depth=max_depth, class_weight="balanced",
                                                  random_state=seed))]
    elif kind == "logistic":
        steps = [("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler()),
                 ("model", LogisticRegression(class_weight="balanced", max_iter=2000,
                                              random_state=seed))]
    else:
        raise ValueError(f"kind must be 'tree' or 'logistic', got {kind!r}")
    return Pipeline(steps).fit(features, y)


def tree_rules(pipeline, feature_names=FEATURE_NAMES, decimals: int = 3) -> str:
    """The fitted tree of :func:`fit_baseline` as indented if/else rules with class symbols."""
    from sklearn.tree import export_text

    tree = pipeline.named_steps["model"]
    if not hasattr(tree, "tree_"):
        raise ValueError("tree_rules needs a pipeline fitted with kind='tree'")
    text = export_text(tree, feature_names=list(feature_names), decimals=decimals)
    # export_text names classes by their label (0..7); show the class symbols instead
    for label in sorted(tree.classes_, reverse=True):
        text = text.replace(f"class: {label}\n", f"class: {config.CLASSES[int(label)]}\n")
    return text


def coefficient_table(pipeline, feature_names=FEATURE_NAMES, decimals: int = 2):
    """Coefficients of the logistic regression (rows = classes, columns = standardised
    features): +1 means one standard deviation of the feature raises that class's log-odds by 1
    (with two classes scikit-learn keeps one row, for the second class)."""
    import pandas as pd

    model = pipeline.named_steps["model"]
    if not hasattr(model, "coef_"):
        raise ValueError("coefficient_table needs a pipeline fitted with kind='logistic'")
    index = [config.CLASSES[int(c)] for c in model.classes_]
    if len(model.coef_) == 1:  # two classes: one row, for the second (positive) class
        index = index[1:]
    return pd.DataFrame(model.coef_, index=index, columns=list(feature_names)).round(decimals)


def _check_beats(beats_mv: np.ndarray) -> np.ndarray:
    beats_mv = np.asarray(beats_mv, dtype=float)
    if beats_mv.ndim != 3 or beats_mv.shape[2] < 2:
        raise ValueError(f"beats must be (n, window, 2 leads) in mV, got shape {beats_mv.shape}")
    if not np.all(np.isfinite(beats_mv)):
        raise ValueError("beats contain NaN or infinite values")
    return beats_mv


# --------------------------------------------------------------------------------------------
# On the AAMI beats (week 1): the interpretable tree and 1-nearest-neighbour on the features
# --------------------------------------------------------------------------------------------
def baseline_features(beats: AamiBeats) -> np.ndarray:
    """:data:`utils.models.baseline.FEATURE_NAMES` of every beat (RR intervals, QRS width, wave
    amplitudes), with the RR intervals of :mod:`utils.data.rhythm` (edges filled)."""
    return beat_features(beats.millivolts(), beats.rr_prev, beats.rr_next)


def holdout_records_split(beats: AamiBeats, test_size: float = 0.2, seed: int = config.SEED
                          ) -> tuple[np.ndarray, np.ndarray]:
    """The intra-patient (leaky) split of the AAMI beats of DS1 + DS2: beats drawn at random,
    stratified by class, so every patient is on both sides. Returns (train, test) indices."""
    from sklearn.model_selection import train_test_split

    idx = np.flatnonzero(np.isin(beats.record, DS1 + DS2))
    train, test = train_test_split(idx, test_size=test_size, stratify=beats.y[idx],
                                   random_state=seed)
    return np.sort(train), np.sort(test)


def fit_predict_baseline(kind: str, features: np.ndarray, y: np.ndarray, train: np.ndarray,
                         test: np.ndarray, cap_per_class: int = 10000,
                         seed: int = config.SEED) -> np.ndarray:
    """Fit a baseline on ``features[train]`` and predict ``features[test]`` (AAMI labels).

    ``kind='tree'``: the depth-4 class-balanced decision tree of :func:`utils.models.baseline.
    fit_baseline`; ``kind='1nn'``: scikit-learn's 1-nearest-neighbour classifier on the
    standardised features (median-imputed), with at most ``cap_per_class`` training beats per
    class (fixed seed) to keep it fast. Q beats are not trained on.
    """
    from sklearn.impute import SimpleImputer
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    train = np.asarray(train)
    train = train[y[train] < AAMI_CLASSES.index("Q")]
    if kind == "tree":
        model = fit_baseline(features[train], y[train], kind="tree", seed=seed)
    elif kind == "1nn":
        train = subsample_majority(y, train, cap_per_class, seed=seed)
        model = make_pipeline(SimpleImputer(strategy="median"), StandardScaler(),
                              KNeighborsClassifier(n_neighbors=1))
        model.fit(features[train], y[train])
    else:
        raise ValueError(f"kind must be 'tree' or '1nn', got {kind!r}")
    return np.asarray(model.predict(features[test]), dtype=np.int64)
