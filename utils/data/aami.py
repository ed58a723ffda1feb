"""The standard inter-patient benchmark: AAMI EC57 classes on de Chazal's DS1/DS2 split.

Classes (ANSI/AAMI EC57, as used by de Chazal, O'Dwyer & Reilly, IEEE TBME 51(7), 2004):

======  =========================================  =============================
class   MIT-BIH symbols                            meaning
======  =========================================  =============================
N       N, L, R, e, j                              normal and bundle branch block
SVEB    A, a, J, S                                 supraventricular ectopic
VEB     V, E                                       ventricular ectopic
F       F                                          fusion of ventricular and normal
Q       /, f, Q                                    paced, paced fusion, unclassifiable
======  =========================================  =============================

The four paced records (102, 104, 107, 217) are excluded, DS1 (22 records) is for training,
DS2 (22 records) for testing only. Every DS2 beat whose symbol maps to a class is scored -
including the symbols the course's 8-class beat cache leaves out (e, j, a, J, S, E, Q):
:func:`load_aami_beats` takes the 8 course classes from the cache
(:func:`utils.data.mitdb.load_beats`) and cuts the other AAMI beats from the records with the same
code (:func:`utils.data.mitdb.extract_beats` with other ``symbols``). Symbols outside the table
(``B``, ``r``, ``n``, ``?``, ``!`` and the non-beat annotations) are not scored; they still
count as beats for the RR features where :data:`utils.data.mitdb.BEAT_SYMBOLS` lists them. Beats
whose window leaves the record (a handful at the record edges) cannot be cut and are not
scored either (counted in ``dropped_edge``).

Scores (:func:`score`): per class sensitivity Se = TP/(TP+FN), positive predictive value
+P = TP/(TP+FP) and false positive rate FPR = FP/(FP+TN); the overall accuracy; Cohen's kappa
(scikit-learn); and Mondejar-Guerra's indices. Following AAMI EC57 (and de Chazal 2004,
Mondejar-Guerra 2019) a fusion beat (F) classified as VEB is not counted as a false positive
of VEB (``f_as_veb_exception``). The Q class is kept in the confusion matrix (the models of
the course never predict it; DS2 holds a handful of Q beats).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from utils.core import config
from utils.data.rhythm import LOCAL_BEATS, RR_FEATURES
from utils.data.mitdb import (PATIENT_TEST, PATIENT_TRAIN, BeatData, decimate_record,
                              ensure_mitdb, extract_beats, load_beats, load_record,
                              normalise_beats)
from utils.data.rhythm import record_features

#: The AAMI EC57 classes, in label order 0..4.
AAMI_CLASSES: tuple[str, ...] = ("N", "SVEB", "VEB", "F", "Q")
#: MIT-BIH beat symbol -> AAMI class.
SYMBOL_TO_AAMI: dict[str, str] = {
    **dict.fromkeys("NLRej", "N"), **dict.fromkeys("AaJS", "SVEB"),
    **dict.fromkeys("VE", "VEB"), "F": "F", **dict.fromkeys("/fQ", "Q"),
}
#: Symbols that map to an AAMI class but are not among the 8 course classes.
EXTRA_SYMBOLS: tuple[str, ...] = tuple(s for s in SYMBOL_TO_AAMI if s not in config.CLASSES)
#: Records with a pacemaker, excluded from the AAMI benchmark.
PACED_RECORDS: tuple[str, ...] = ("102", "104", "107", "217")
#: de Chazal et al. (2004) training set DS1 and test set DS2 (22 records each, no paced ones);
#: the same records as the course's patient split without its paced records.
DS1: tuple[str, ...] = tuple(r for r in PATIENT_TRAIN if r not in PACED_RECORDS)
DS2: tuple[str, ...] = tuple(r for r in PATIENT_TEST if r not in PACED_RECORDS)

#: Published DS2 results (percent), quoted from the papers, not recomputed here.
#: de Chazal, O'Dwyer & Reilly, IEEE TBME 51(7):1196-1206, 2004 (linear discriminants on
#: morphology and RR features). Mondejar-Guerra et al., Biomed. Signal Process. Control 47,
#: 2019 (ensemble of SVMs): accuracy and jk index as listed in the authors' repository README
#: (github.com/mondejar/ecg-classification, "Comparison with state-of-the-art").
QUOTED: dict[str, dict[str, float]] = {
    "de Chazal et al. 2004 (LD, morphology + RR) [quoted]": {
        "SVEB Se": 75.9, "SVEB +P": 38.5, "VEB Se": 77.7, "VEB +P": 81.9},
    "Mondejar-Guerra et al. 2019 (SVM ensemble) [quoted]": {
        "accuracy": 94.5, "jk_index": 77.3},
}
#: The goal of the course's multimodal model (ahead of de Chazal 2004 on all four numbers).
GOAL: dict[str, float] = {"SVEB Se": 76.0, "SVEB +P": 39.0, "VEB Se": 78.0, "VEB +P": 82.0}

_LABEL = {c: i for i, c in enumerate(AAMI_CLASSES)}


def to_aami(symbols: Sequence[str] | np.ndarray) -> np.ndarray:
    """AAMI label (index into :data:`AAMI_CLASSES`) of each MIT-BIH symbol; -1 if unmapped.
    >>> to_aami(["N", "L", "A", "E", "F", "/", "B"]).tolist()
    [0, 0, 1, 2, 3, 4, -1]
    """
    return np.array([_LABEL.get(SYMBOL_TO_AAMI.get(str(s), ""), -1) for s in symbols],
                    dtype=np.int64)


def course_to_aami(y: np.ndarray) -> np.ndarray:
    """Map labels of the 8 course classes (``config.CLASSES``) to AAMI labels."""
    table = to_aami(config.CLASSES)
    return table[np.asarray(y, dtype=np.int64)]


# --------------------------------------------------------------------------------------------
# Beats of the benchmark
# --------------------------------------------------------------------------------------------
@dataclass
class AamiBeats:
    """Every beat of ``records`` that maps to an AAMI class, with its RR features.
    Rows aligned on the first axis: ``X`` (n, window, 2) z-scored per beat and lead,
    ``symbol`` MIT-BIH symbol, ``y`` AAMI label, ``record``, ``sample`` (R peak at
    ``config.BEAT_FS``), ``rr`` (n, 9) :data:`utils.data.rhythm.RR_FEATURES`, ``mean``/``std``
    (n, 2) to restore mV. Sorted by record (in the order given) and time. ``dropped_edge``
    counts the extra-symbol beats too close to a record edge to be cut (the course classes'
    edge drops are in ``BeatData.dropped_edge``).
    """
    X: np.ndarray
    y: np.ndarray
    symbol: np.ndarray
    record: np.ndarray
    sample: np.ndarray
    rr: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    dropped_edge: dict[str, int] = field(default_factory=dict)

    _ARRAYS = ("X", "y", "symbol", "record", "sample", "rr", "mean", "std")

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, idx) -> "AamiBeats":
        """Rows ``idx`` (index array or boolean mask)."""
        return AamiBeats(**{k: getattr(self, k)[idx] for k in self._ARRAYS},
                         dropped_edge=self.dropped_edge)

    def of_records(self, records: Sequence[str]) -> "AamiBeats":
        """The beats of ``records``."""
        return self.subset(np.isin(self.record, list(records)))

    def millivolts(self, idx=slice(None)) -> np.ndarray:
        """Beats ``idx`` in mV (undoing the per-beat normalisation)."""
        return self.X[idx] * self.std[idx][..., None, :] + self.mean[idx][..., None, :]

    @property
    def rr_prev(self) -> np.ndarray:
        """Previous RR interval (s) - the same values as ``BeatData.rr_prev`` (edges filled)."""
        return self.rr[:, 0]

    @property
    def rr_next(self) -> np.ndarray:
        """Next RR interval (s)."""
        return self.rr[:, 1]

    def counts(self) -> dict[str, int]:
        """Beats per AAMI class."""
        n = np.bincount(self.y, minlength=len(AAMI_CLASSES))
        return {c: int(k) for c, k in zip(AAMI_CLASSES, n)}


def _aami_cache_path(records: Sequence[str]) -> Path:
    settings = {"records": list(records), "window": config.WINDOW, "r_offset": config.R_OFFSET,
                "decimate": config.DECIMATE, "extra": list(EXTRA_SYMBOLS), "version": 1,
                "rr_features": list(RR_FEATURES), "local_beats": LOCAL_BEATS}
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    return config.DATA_DIR / "aami" / f"aami_{key}.npz"


def load_aami_beats(records: Sequence[str] = DS1 + DS2, data: BeatData | None = None,
                    db_dir: Path | None = None, use_cache: bool = True) -> AamiBeats:
    """All AAMI beats of ``records`` (see the module docstring).
    The 8 course classes come from ``data`` (default: :func:`utils.data.mitdb.load_beats`, the shared
    cache); the other AAMI symbols are cut from the decimated records with
    :func:`utils.data.mitdb.extract_beats`, and the RR features of every beat are computed from all
    beat annotations of its record (:func:`utils.data.rhythm.record_features`). The result is cached
    in ``data/aami/`` (git-ignored; about 15 s to rebuild).
    """
    records = tuple(records)
    unknown = set(records) - set(PATIENT_TRAIN) - set(PATIENT_TEST)
    if unknown:
        raise ValueError(f"unknown records {sorted(unknown)}")
    cache = _aami_cache_path(records)
    if use_cache and cache.is_file():
        with np.load(cache) as npz:
            arrays = {k: npz[k] for k in AamiBeats._ARRAYS}
            dropped = json.loads(str(npz["dropped_edge"]))
        return AamiBeats(**arrays, dropped_edge=dropped)
    data = data if data is not None else load_beats(progress=False)
    db_dir = Path(db_dir) if db_dir is not None else ensure_mitdb(records=records)
    parts: dict[str, list] = {k: [] for k in AamiBeats._ARRAYS}
    dropped: dict[str, int] = {}
    for name in records:
        rec = decimate_record(load_record(name, db_dir))
        extra = extract_beats(rec, symbols=EXTRA_SYMBOLS)
        for s, k in extra["dropped_edge"].items():
            dropped[s] = dropped.get(s, 0) + int(k)
        course = np.flatnonzero(data.record == name)
        X_extra, mean_extra, std_extra = normalise_beats(extra["beats"]) if len(extra["y"]) \
            else (np.zeros((0, *data.X.shape[1:]), np.float32), np.zeros((0, 2), np.float32),
                  np.zeros((0, 2), np.float32))
        sample = np.concatenate([data.sample[course], extra["sample"]])
        order = np.argsort(sample, kind="stable")
        symbol = np.concatenate([data.symbols[course],
                                 np.asarray(EXTRA_SYMBOLS)[extra["y"]]]).astype("<U1")
        pieces = {
            "X": np.concatenate([data.X[course], X_extra]),
            "symbol": symbol,
            "sample": sample,
            "mean": np.concatenate([data.mean[course], mean_extra]),
            "std": np.concatenate([data.std[course], std_extra]),
        }
        pieces["y"] = to_aami(symbol)
        pieces["record"] = np.full(len(sample), name)
        pieces["rr"] = record_features(rec, sample)
        for k in AamiBeats._ARRAYS:
            parts[k].append(pieces[k][order])
    out = AamiBeats(**{k: np.concatenate(v) for k, v in parts.items()}, dropped_edge=dropped)
    if use_cache:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(cache.stem + ".tmp.npz")
        np.savez(tmp, **{k: getattr(out, k) for k in AamiBeats._ARRAYS},
                 dropped_edge=np.array(json.dumps(dropped)))
        tmp.replace(cache)
    return out


# --------------------------------------------------------------------------------------------
# Scores
# --------------------------------------------------------------------------------------------
def confusion(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """5x5 confusion matrix over :data:`AAMI_CLASSES` (rows = reference, columns = predicted)."""
    from sklearn.metrics import confusion_matrix

    return confusion_matrix(y_true, y_pred, labels=list(range(len(AAMI_CLASSES))))


def class_metrics(cm: np.ndarray, f_as_veb_exception: bool = True) -> dict[str, dict]:
    """Se, +P and FPR (fractions; NaN where undefined) of each class from a confusion matrix.
    ``cm[i, j]`` counts beats of reference class ``i`` predicted as ``j``. With
    ``f_as_veb_exception`` the F beats predicted as VEB are not false positives of VEB
    (AAMI EC57) - they still count as missed F beats.
    """
    cm = np.asarray(cm, dtype=float)
    total = cm.sum()
    out = {}
    for i, c in enumerate(AAMI_CLASSES):
        tp = cm[i, i]
        fn = cm[i].sum() - tp
        fp = cm[:, i].sum() - tp
        if f_as_veb_exception and c == "VEB":
            fp -= cm[_LABEL["F"], i]
        tn = total - tp - fn - fp
        if f_as_veb_exception and c == "VEB":
            tn -= cm[_LABEL["F"], i]  # neither FP nor TN: left out of the VEB FPR
        with np.errstate(divide="ignore", invalid="ignore"):
            out[c] = {"Se": tp / (tp + fn) if tp + fn else np.nan,
                      "+P": tp / (tp + fp) if tp + fp else np.nan,
                      "FPR": fp / (fp + tn) if fp + tn else np.nan,
                      "n": int(tp + fn)}
    return out


def kappa_from_confusion(cm: np.ndarray) -> float:
    """Cohen's kappa (scikit-learn's ``cohen_kappa_score``, weighted by the matrix counts)."""
    from sklearn.metrics import cohen_kappa_score

    cm = np.asarray(cm)
    rows, cols = np.nonzero(cm)
    if len(rows) == 0:
        return float("nan")
    return float(cohen_kappa_score(rows, cols, sample_weight=cm[rows, cols],
                                   labels=list(range(len(cm)))))


def score_confusion(cm: np.ndarray, f_as_veb_exception: bool = True) -> dict:
    """Every benchmark number of a confusion matrix (see :func:`score`)."""
    cm = np.asarray(cm)
    per_class = class_metrics(cm, f_as_veb_exception)
    s, v = per_class["SVEB"], per_class["VEB"]
    j = s["Se"] + v["Se"] + s["+P"] + v["+P"]
    kappa = kappa_from_confusion(cm)
    return {"n": int(cm.sum()), "accuracy": float(np.trace(cm) / cm.sum()) if cm.sum() else
            float("nan"), "kappa": kappa, "j_index": float(j),
            "jk_index": float(0.5 * kappa + 0.125 * j), "classes": per_class,
            "confusion": cm.tolist()}


def score(y_true: np.ndarray, y_pred: np.ndarray, f_as_veb_exception: bool = True) -> dict:
    """AAMI scores of predictions (labels into :data:`AAMI_CLASSES`).
    Returns ``n``, ``accuracy``, ``kappa`` (Cohen), ``j_index``, ``jk_index``, ``classes``
    (per class ``Se``, ``+P``, ``FPR``, ``n``) and ``confusion``.

    The indices are those of Mondejar-Guerra et al., "Heartbeat classification fusing temporal
    and morphological information of ECGs via ensemble of classifiers", Biomedical Signal
    Processing and Control 47 (2019), as implemented in the authors' code
    (github.com/mondejar/ecg-classification, ``python/evaluation_AAMI.py``; the README there
    credits the index to Mar et al., IEEE TBME 58(8), 2011):
    ``j_index = Se_SVEB + Se_VEB + +P_SVEB + +P_VEB`` (0..4) and
    ``jk_index = 0.5 * kappa + 0.125 * j_index`` (0..1, weights w1 = 0.5, w2 = 0.125).
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true {y_true.shape} and y_pred {y_pred.shape} differ in shape")
    if y_true.size and (y_true.min() < 0 or max(y_true.max(), y_pred.max()) >= len(AAMI_CLASSES)
                        or y_pred.min() < 0):
        raise ValueError("labels must be AAMI class indices 0..4 (use to_aami)")
    return score_confusion(confusion(y_true, y_pred), f_as_veb_exception)


def per_record(y_true: np.ndarray, y_pred: np.ndarray, records: np.ndarray):
    """Per-record SVEB and VEB results: a pandas DataFrame indexed by record with the beat
    count, the number of reference SVEB/VEB beats and Se/+P of each (NaN where undefined)."""
    import pandas as pd

    rows = {}
    for rec in dict.fromkeys(np.asarray(records).tolist()):
        m = np.asarray(records) == rec
        cls = class_metrics(confusion(y_true[m], y_pred[m]))
        rows[rec] = {"beats": int(m.sum()), "accuracy": float(np.mean(y_true[m] == y_pred[m])),
                     **{f"{c} {k}": cls[c][k] for c in ("SVEB", "VEB") for k in
                        ("n", "Se", "+P")},
                     **{f"{c} FP": int(np.sum((y_pred[m] == _LABEL[c]) & (y_true[m] != _LABEL[c])
                                              & ~((c == "VEB") & (y_true[m] == _LABEL["F"]))))
                        for c in ("SVEB", "VEB")}}
    return pd.DataFrame(rows).T


#: Numbers summarised by :func:`bootstrap` (flat names).
BOOT_KEYS: tuple[str, ...] = ("accuracy", "kappa", "j_index", "jk_index",
                              "SVEB Se", "SVEB +P", "SVEB FPR", "VEB Se", "VEB +P", "VEB FPR",
                              "N Se", "N +P", "F Se", "F +P")


def flat(result: dict) -> dict[str, float]:
    """A :func:`score` result as flat ``{'SVEB Se': ..., 'kappa': ...}`` (fractions)."""
    out = {k: result[k] for k in ("accuracy", "kappa", "j_index", "jk_index")}
    for c, m in result["classes"].items():
        out.update({f"{c} {k}": m[k] for k in ("Se", "+P", "FPR")})
    return out


def bootstrap(y_true: np.ndarray, y_pred: np.ndarray, records: np.ndarray,
              n_boot: int = 1000, level: float = 0.95, seed: int = config.SEED) -> dict:
    """Percentile confidence intervals by resampling *records* (patients) with replacement.
    Beats of one patient are not independent, so a beat-level bootstrap would give intervals
    far too narrow; each replicate draws as many records as there are, with replacement, and
    sums their confusion matrices. Returns ``{key: (low, high)}`` for :data:`BOOT_KEYS`
    (NaN-aware: replicates where a number is undefined are skipped) plus ``n_boot``.
    """
    records = np.asarray(records)
    names = list(dict.fromkeys(records.tolist()))
    cms = np.stack([confusion(y_true[records == r], y_pred[records == r]) for r in names])
    rng = np.random.default_rng(seed)
    values = {k: [] for k in BOOT_KEYS}
    for _ in range(n_boot):
        pick = rng.integers(0, len(names), len(names))
        f = flat(score_confusion(cms[pick].sum(axis=0)))
        for k in BOOT_KEYS:
            values[k].append(f[k])
    alpha = (1 - level) / 2
    out = {}
    for k, v in values.items():
        v = np.asarray(v, float)
        v = v[np.isfinite(v)]
        out[k] = (tuple(float(q) for q in np.quantile(v, [alpha, 1 - alpha])) if len(v)
                  else (float("nan"), float("nan")))
    out["n_boot"] = n_boot
    return out


def symbol_recall(symbols: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """For each MIT-BIH symbol, the fraction of its beats predicted in its own AAMI class
    (e.g. ``'L'``: L beats called N; ``'A'``: A beats called SVEB)."""
    symbols = np.asarray(symbols)
    ref = to_aami(symbols)
    return {s: float(np.mean(y_pred[symbols == s] == ref[symbols == s]))
            for s in SYMBOL_TO_AAMI if np.any(symbols == s)}


def table(results: dict[str, dict], intervals: dict[str, dict] | None = None,
          quoted: bool = True, digits: int = 1):
    """The benchmark table (percent): rows = methods, columns = Se/+P/FPR of SVEB and VEB,
    accuracy, kappa (x100) and jk-index (x100). ``results`` maps a name to a :func:`score`
    result; ``intervals`` (optional, same names) to a :func:`bootstrap` result, shown as
    ``value [low, high]``. The published rows of :data:`QUOTED` are appended (marked
    ``[quoted]``; numbers they do not report stay empty)."""
    import pandas as pd

    cols = ("SVEB Se", "SVEB +P", "SVEB FPR", "VEB Se", "VEB +P", "VEB FPR", "accuracy",
            "kappa", "jk_index")
    rows = {}
    for name, res in results.items():
        f = flat(res)
        ci = (intervals or {}).get(name)
        row = {}
        for c in cols:
            text = f"{100 * f[c]:.{digits}f}"
            if ci is not None and c in ci:
                lo, hi = ci[c]
                text += f" [{100 * lo:.{digits}f}, {100 * hi:.{digits}f}]"
            row[c] = text
        rows[name] = row
    if quoted:
        for name, q in QUOTED.items():
            rows[name] = {c: (f"{q[c]:.{digits}f}" if c in q else "") for c in cols}
    return pd.DataFrame(rows).T[list(cols)]
