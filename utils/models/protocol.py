"""The DS1 selection protocol of ``docs/PROTOCOL.md``: folds, candidates, out-of-fold scores.

Everything here reads DS1 only. DS2 is scored once, for the final model, by
:mod:`utils.models.protocol_model`.

* :func:`ds1_folds` - leave-records-out folds of DS1 (one record = one patient inside DS1; the
  second record of patient 201, 202, is in DS2) dealt so that every held-out fold holds SVEB
  beats of at least two records and at least one SVEB-rich record (>= :data:`RICH` beats).
* :func:`feature_block` - the per-beat features of a feature set (:data:`FEATURE_SETS`), computed
  per record from that record's beats only (:func:`utils.models.patient_template.feature_matrix`).
* :func:`fit_proba` - fits one candidate classifier (:data:`KINDS`) on training beats and returns
  class probabilities of test beats; every candidate is trained with *balanced* class weights
  (de Chazal 2004; Sellami & Hwang 2019), and the strength of the class re-weighting is then
  set after training by a prior shift ``lambda`` (:func:`shifted_labels`, Saerens et al. 2002),
  chosen on the out-of-fold predictions.
* :func:`out_of_fold` - the pooled out-of-fold probabilities of a candidate on DS1;
  :func:`selection_table` scores every candidate x lambda with :func:`selection_metric` (the
  mean of the SVEB and the VEB F1 score) and :func:`pick` applies the rule.

The out-of-fold probabilities are stored (:func:`stored_cv`, ``data/results/protocol_ds1_cv-*``)
because the two Keras candidates take several minutes per fold.
"""
from __future__ import annotations

import time
from typing import Sequence

import numpy as np

from utils.core import config
from utils.models.patient_template import feature_matrix
from utils.data.aami import score
from utils.core.config import LOGITS_LAYER
from utils.models import multimodal
from utils.models import patient_template
from utils.data.aami import DS1, load_aami_beats
from utils.core.results import cached
from utils.data.aami import flat, score
from utils.data.mitdb import subsample_majority
from utils.models.multimodal import build_multimodal

#: Classes predicted (AAMI N, SVEB, VEB, F; Q is never predicted and never trained on).
N_CLASSES: int = 4
#: Number of folds of the DS1 cross-validation.
K: int = 5
#: A record is SVEB-rich when it holds at least this many SVEB beats.
RICH: int = 30
#: Feature sets: blocks of :func:`utils.models.patient_template.feature_matrix`. ``rr``: the nine RR
#: features of :mod:`utils.data.rhythm` (RR normalised by the record mean and by the local mean, as
#: Lin & Yang 2014) + the six derived RR features + the two irregularity features; ``rrt``: the
#: same + the 16 per-patient template features.
FEATURE_SETS: dict[str, tuple[str, ...]] = {
    "rr": ("rr", "rr_derived", "irregularity"),
    "rrt": ("rr", "rr_derived", "irregularity", "template"),
}
#: Candidates, cheapest first (the order breaks ties): name -> (classifier kind, feature set).
#: ``mm_rr`` is the multimodal network with the RR features only (the control of
#: ``mm_template``: what the template features add to the Keras model); ``fusion`` averages
#: the probabilities of :data:`FUSION_MEMBERS`.
CANDIDATES: dict[str, tuple[str, str]] = {
    "lda_rr": ("lda", "rr"),
    "lda_rrt": ("lda", "rrt"),
    "logistic_rrt": ("logistic", "rrt"),
    "mlp_rrt": ("mlp", "rrt"),
    "mm_rr": ("mm", "rr"),
    "mm_template": ("mm", "rrt"),
    "fusion": ("fusion", "rrt"),
}
#: Members of the fusion candidate (mean of their balanced probabilities).
FUSION_MEMBERS: tuple[str, ...] = ("lda_rrt", "logistic_rrt", "mlp_rrt", "mm_template")
#: Classifier kinds fitted by :func:`fit_proba`.
KINDS: tuple[str, ...] = ("lda", "logistic", "mlp", "mm")
#: Prior-shift strengths tried for every candidate (0 = balanced classes as trained, 1 = the
#: training records' class mix, < 0 = rare classes weighted more than balanced).
LAMBDAS: tuple[float, ...] = (-0.5, -0.25, 0.0, 0.25, 0.5, 0.75, 1.0)
#: Training recipes of the Keras candidates (fixed epochs: no validation records, no early
#: stopping, no time limit - the result does not depend on the machine's load).
MLP_RECIPE: dict = {"hidden": 32, "dropout": 0.2, "epochs": 8, "batch_size": 256,
                    "learning_rate": 3e-3}
MM_RECIPE: dict = {"cap_per_class": 4000, "epochs": 10, "batch_size": 128,
                   "learning_rate": 3e-3}
#: Version of the stored cross-validation (bump when what is stored changes).
VERSION: int = 1


# --------------------------------------------------------------------------------------------
# Folds
# --------------------------------------------------------------------------------------------
def ds1_folds(y: np.ndarray, record: np.ndarray, records: Sequence[str], k: int = K
              ) -> list[tuple[str, ...]]:
    """``k`` disjoint held-out parts of ``records`` (annotation counts only, no model result).
    Records with SVEB beats are sorted by their SVEB count (descending, ties by name) and dealt
    in serpentine order (0, 1, .., k-1, k-1, .., 0, 0, 1, ..), so the ``k`` richest go to
    different folds and every fold gets SVEB beats of several records. The records without
    SVEB are then given, by decreasing VEB count, to the fold with the fewest records (ties:
    the fewest VEB beats, then the lowest fold number). :func:`check_folds` tests the result.
    """
    y, record = np.asarray(y), np.asarray(record)
    records = tuple(records)
    if not 2 <= k <= len(records):
        raise ValueError(f"k must be in [2, {len(records)}], got {k}")
    sveb = {r: int(np.sum((record == r) & (y == 1))) for r in records}
    veb = {r: int(np.sum((record == r) & (y == 2))) for r in records}
    with_sveb = sorted((r for r in records if sveb[r] > 0), key=lambda r: (-sveb[r], r))
    folds: list[list[str]] = [[] for _ in range(k)]
    for i, r in enumerate(with_sveb):
        lap, pos = divmod(i, k)
        folds[pos if lap % 2 == 0 else k - 1 - pos].append(r)
    for r in sorted((r for r in records if sveb[r] == 0), key=lambda r: (-veb[r], r)):
        f = min(range(k), key=lambda j: (len(folds[j]), sum(veb[x] for x in folds[j]), j))
        folds[f].append(r)
    return [tuple(sorted(f)) for f in folds]


def check_folds(folds: Sequence[Sequence[str]], y: np.ndarray, record: np.ndarray,
                records: Sequence[str], rich: int = RICH) -> None:
    """Raise ``ValueError`` unless ``folds`` partition ``records`` and every fold holds SVEB
    beats of at least two records, one of them with at least ``rich`` SVEB beats."""
    y, record = np.asarray(y), np.asarray(record)
    flat = [r for f in folds for r in f]
    if sorted(flat) != sorted(records) or len(set(flat)) != len(flat):
        raise ValueError("folds must partition the records (each exactly once)")
    for i, f in enumerate(folds):
        counts = [int(np.sum((record == r) & (y == 1))) for r in f]
        if sum(c > 0 for c in counts) < 2 or max(counts) < rich:
            raise ValueError(f"fold {i} {f}: SVEB beats per record {counts} - needs two records "
                             f"with SVEB and one with at least {rich}")


# --------------------------------------------------------------------------------------------
# Features, shifts, metric
# --------------------------------------------------------------------------------------------
def feature_block(beats, feature_set: str) -> tuple[np.ndarray, list[str]]:
    """Features ``feature_set`` (:data:`FEATURE_SETS`) of :class:`utils.data.aami.AamiBeats`
    ``beats`` (pass every beat of each record: templates and irregularity are per record)."""

    if feature_set not in FEATURE_SETS:
        raise ValueError(f"feature_set must be one of {tuple(FEATURE_SETS)}, got {feature_set!r}")
    F, names = feature_matrix(beats, FEATURE_SETS[feature_set])
    if not np.all(np.isfinite(F)):
        raise ValueError("features contain NaN or infinite values")
    return F.astype(np.float32), names


def balanced_weights(y: np.ndarray, n_classes: int = N_CLASSES) -> dict[int, float]:
    """Class weights ``n / (k n_c)`` of labels ``y`` (classes present only): every class gets
    the same total weight."""
    n = np.bincount(np.asarray(y), minlength=n_classes).astype(float)
    present = np.flatnonzero(n > 0)
    return {int(c): float(n.sum() / (len(present) * n[c])) for c in present}


def balanced_shift(y_train: np.ndarray, n_classes: int = N_CLASSES) -> np.ndarray:
    """Log ratio of the training records' class prior to the uniform prior a balanced model
    learnt: ``log pi_c - log (1 / k)`` for the ``k`` classes present, 0 for absent ones.
    ``log p + lambda * shift`` moves a balanced model towards the true class mix (lambda 1)."""
    n = np.bincount(np.asarray(y_train), minlength=n_classes)[:n_classes].astype(float)
    present = n > 0
    shift = np.zeros(n_classes)
    shift[present] = np.log(n[present] / n[present].sum()) + np.log(present.sum())
    return shift


def shifted_labels(proba: np.ndarray, shift: np.ndarray, lam: float) -> np.ndarray:
    """Labels ``argmax(log proba + lam * shift)`` (``shift`` (k,) or one row per beat)."""
    with np.errstate(divide="ignore"):
        logp = np.log(np.asarray(proba, np.float64))
    return np.argmax(logp + lam * np.asarray(shift, np.float64), axis=1).astype(np.int64)


def selection_metric(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """The one selection metric: the mean of the F1 scores of SVEB and of VEB (AAMI EC57 counts:
    an F beat called VEB is no false VEB; an undefined Se or +P counts as 0)."""

    cls = score(y_true, y_pred)["classes"]
    f1 = []
    for c in ("SVEB", "VEB"):
        se, ppv = (np.nan_to_num(cls[c][k]) for k in ("Se", "+P"))
        f1.append(2 * se * ppv / (se + ppv) if se + ppv > 0 else 0.0)
    return float(np.mean(f1))


# --------------------------------------------------------------------------------------------
# Candidates
# --------------------------------------------------------------------------------------------
def build_mlp(n_features: int, hidden: int = MLP_RECIPE["hidden"],
              dropout: float = MLP_RECIPE["dropout"], n_classes: int = N_CLASSES):
    """Keras MLP on standardised features: ``features_norm`` (Normalization, fitted by
    :func:`utils.models.multimodal.fit_rhythm_norm`-style statistics) -> Dense(hidden, ReLU) ->
    Dropout -> ``logits`` -> ``probs``."""
    import keras
    from keras import layers

    inp = keras.Input((n_features,), name="features")
    norm = layers.Normalization(name="features_norm")
    x = norm(inp)
    x = layers.Dense(hidden, activation="relu", name="hidden")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    logits = layers.Dense(n_classes, name=LOGITS_LAYER)(x)
    probs = layers.Activation("softmax", name="probs")(logits)
    return keras.Model(inp, probs, name="mlp_features")


def set_norm(layer, F: np.ndarray) -> None:
    """Set a Keras ``Normalization`` layer to the mean / variance of ``F`` (n, d)."""
    F = np.asarray(F, np.float64)
    layer.set_weights([F.mean(0).astype(np.float32), (F.var(0) + 1e-6).astype(np.float32),
                       np.asarray(0)])
    layer.finalize_state()


def _keras_fit(model, inputs, y, weights, recipe: dict) -> None:
    import keras

    model.compile(optimizer=keras.optimizers.Adam(recipe["learning_rate"]),
                  loss="sparse_categorical_crossentropy")
    model.fit(inputs, y, epochs=recipe["epochs"], batch_size=recipe["batch_size"],
              class_weight=weights, shuffle=True, verbose=0)


def _seed_keras(seed: int) -> None:
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def fit_model(kind: str, F: np.ndarray, X: np.ndarray | None, y: np.ndarray,
              train: np.ndarray, seed: int = config.SEED):
    """Fit classifier ``kind`` (:data:`KINDS`) with balanced class weights on ``train`` (Q
    beats left out). Returns a callable ``(F, X) -> probabilities (n, 4)``.

    ``lda``: shrinkage LDA (Ledoit-Wolf, lsqr) on standardised features with uniform priors;
    ``logistic``: L2 multinomial logistic regression (C=1) on standardised features, balanced
    beat weights; ``mlp``: :func:`build_mlp` (:data:`MLP_RECIPE`); ``mm``: the multimodal network
    of :func:`utils.models.multimodal.build_multimodal` whose ``rhythm`` input takes the features
    (beat morphology + RR + template features), trained on at most
    ``MM_RECIPE['cap_per_class']`` beats per class (:data:`MM_RECIPE`).
    """
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    F = np.asarray(F, np.float32)
    y = np.asarray(y)
    train = np.asarray(train)
    train = train[y[train] < N_CLASSES]
    weights = balanced_weights(y[train])
    if kind in ("lda", "logistic"):
        scaler = StandardScaler().fit(F[train].astype(np.float64))
        Z = scaler.transform(F[train].astype(np.float64))
        present = np.array(sorted(weights))
        if kind == "lda":
            model = LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto",
                                               priors=np.full(len(present), 1 / len(present)))
            model.fit(Z, y[train])
        else:
            model = LogisticRegression(C=1.0, max_iter=3000)
            model.fit(Z, y[train], sample_weight=np.array([weights[c] for c in y[train]]))

        def predict(F_new, X_new=None):
            p = model.predict_proba(scaler.transform(np.asarray(F_new, np.float64)))
            out = np.zeros((len(p), N_CLASSES))
            out[:, model.classes_] = p
            return out
        predict.sklearn = (scaler, model)
        return predict
    if kind == "mlp":
        _seed_keras(seed)
        tr = np.random.default_rng(seed).permutation(train)
        net = build_mlp(F.shape[1])
        set_norm(net.get_layer("features_norm"), F[tr])
        _keras_fit(net, F[tr], y[tr], weights, MLP_RECIPE)

        def predict(F_new, X_new=None):
            return np.asarray(net.predict(np.asarray(F_new, np.float32), batch_size=2048,
                                          verbose=0), np.float64)
        predict.keras = net
        return predict
    if kind == "mm":

        if X is None:
            raise ValueError("kind 'mm' needs the beats X")
        _seed_keras(seed)
        tr = np.random.default_rng(seed).permutation(
            subsample_majority(y, train, MM_RECIPE["cap_per_class"], seed=seed))
        net = build_multimodal(("beat", "rhythm"), n_rhythm=F.shape[1])
        set_norm(net.get_layer("rhythm_norm"), F[tr])
        _keras_fit(net, [np.asarray(X[tr], np.float32), F[tr]], y[tr],
                   balanced_weights(y[tr]), MM_RECIPE)

        def predict(F_new, X_new=None):
            return np.asarray(net.predict([np.asarray(X_new, np.float32),
                                           np.asarray(F_new, np.float32)], batch_size=1024,
                                          verbose=0), np.float64)
        predict.keras = net
        return predict
    raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")


def out_of_fold(kind: str, F: np.ndarray, X: np.ndarray | None, y: np.ndarray,
                record: np.ndarray, folds: Sequence[Sequence[str]], seed: int = config.SEED
                ) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold probabilities (n, 4) of classifier ``kind`` and the per-beat prior shift
    (n, 4) of the fold that predicted each beat (:func:`balanced_shift` of its training
    records). Beats in no fold get NaN."""
    record = np.asarray(record)
    proba = np.full((len(y), N_CLASSES), np.nan)
    shift = np.full((len(y), N_CLASSES), np.nan)
    for test_records in folds:
        te = np.isin(record, list(test_records))
        tr = np.flatnonzero(~te & (np.asarray(y) < N_CLASSES))
        predict = fit_model(kind, F, X, y, tr, seed)
        proba[te] = predict(F[te], None if X is None else X[te])
        shift[te] = balanced_shift(np.asarray(y)[tr])
    return proba, shift


def fusion_proba(members: Sequence[np.ndarray]) -> np.ndarray:
    """Fusion of classifiers: the mean of the members' (balanced) probabilities."""
    return np.mean(np.stack([np.asarray(m, np.float64) for m in members]), axis=0)


# --------------------------------------------------------------------------------------------
# The stored cross-validation and the rule
# --------------------------------------------------------------------------------------------
def run_cv(beats, folds: Sequence[Sequence[str]], candidates: Sequence[str] = tuple(CANDIDATES),
           seed: int = config.SEED, log=print) -> dict[str, np.ndarray]:
    """Out-of-fold probabilities of every candidate on the DS1 beats ``beats`` (arrays to
    store): ``proba_<name>`` (n, 4), ``shift`` (n, 4), ``fold`` (n,), ``seconds_<name>``
    (wall-clock fit + predict time of the candidate over all folds; the fusion's own cost is 0,
    it reuses its members)."""
    record = np.asarray(beats.record)
    out: dict[str, np.ndarray] = {}
    feats = {s: feature_block(beats, s)[0] for s in {CANDIDATES[c][1] for c in candidates}}
    fold = np.full(len(beats), -1, np.int8)
    for i, f in enumerate(folds):
        fold[np.isin(record, list(f))] = i
    out["fold"] = fold
    for name in candidates:
        kind, fs = CANDIDATES[name]
        if kind == "fusion":
            continue
        start = time.perf_counter()
        proba, shift = out_of_fold(kind, feats[fs], beats.X if kind == "mm" else None,
                                   beats.y, record, folds, seed)
        out[f"proba_{name}"] = proba.astype(np.float32)
        out[f"seconds_{name}"] = np.array(round(time.perf_counter() - start, 1))
        out["shift"] = shift.astype(np.float32)
        log(f"{name}: {out[f'seconds_{name}']} s")
    if "fusion" in candidates:
        out["proba_fusion"] = fusion_proba(
            [out[f"proba_{m}"] for m in FUSION_MEMBERS]).astype(np.float32)
        out["seconds_fusion"] = np.array(0.0)
    return out


def stored_cv(beats=None, recompute: bool = False) -> dict[str, np.ndarray]:
    """The stored DS1 cross-validation (:func:`run_cv` on the DS1 beats with :func:`ds1_folds`),
    computed and stored in ``data/results/protocol_ds1_cv-<key>.npz`` when missing or stale
    (key: DS1 beats, RR features, labels; this module, :mod:`utils.models.patient_template` and
    :mod:`utils.models.multimodal`; the recipes)."""
    import sys

    beats = beats if beats is not None else load_aami_beats()
    ds1 = beats.of_records(DS1)
    folds = ds1_folds(ds1.y, ds1.record, DS1)
    check_folds(folds, ds1.y, ds1.record, DS1)
    return cached("protocol_ds1_cv", lambda: run_cv(ds1, folds),
                  inputs=[ds1.X, ds1.rr, ds1.y, ds1.record.astype("<U3")],
                  params={"folds": [list(f) for f in folds], "candidates": list(CANDIDATES),
                          "mlp": MLP_RECIPE, "mm": MM_RECIPE, "seed": config.SEED,
                          "version": VERSION},
                  recompute=recompute)


def candidate_proba(cv: dict, name: str) -> np.ndarray:
    """Out-of-fold probabilities of candidate ``name`` from a stored cross-validation."""
    return np.asarray(cv[f"proba_{name}"], np.float64)


def selection_table(cv: dict, y: np.ndarray, candidates: Sequence[str] = tuple(CANDIDATES),
                    lambdas: Sequence[float] = LAMBDAS):
    """Every candidate x lambda on the pooled out-of-fold DS1 predictions: the selection
    metric and SVEB / VEB Se, +P (fractions). A pandas DataFrame, one row per pair, in the
    order of :data:`CANDIDATES` and :data:`LAMBDAS`."""
    import pandas as pd

    y = np.asarray(y)      # Q beats are scored (a Q beat called N is an error), never predicted
    rows = []
    for name in candidates:
        proba = candidate_proba(cv, name)
        for lam in lambdas:
            pred = shifted_labels(proba, cv["shift"], lam)
            f = flat(score(y, pred))
            rows.append({"candidate": name, "lambda": lam,
                         "metric": selection_metric(y, pred),
                         **{k: f[k] for k in ("SVEB Se", "SVEB +P", "VEB Se", "VEB +P")}})
    return pd.DataFrame(rows)


def pick(table) -> dict:
    """The rule of ``docs/PROTOCOL.md``: the candidate x lambda with the highest selection metric
    rounded to 3 decimals; ties go to the earlier candidate of :data:`CANDIDATES` (cheaper),
    then to the lambda nearest 0, then to the smaller lambda. Returns that row as a dict."""
    t = table.copy()
    t["_metric"] = -t["metric"].round(3)
    t["_order"] = t["candidate"].map({c: i for i, c in enumerate(CANDIDATES)})
    t["_abs"] = t["lambda"].abs()
    best = t.sort_values(["_metric", "_order", "_abs", "lambda"], kind="stable").iloc[0]
    return {k: (float(v) if isinstance(v, (float, np.floating)) else v)
            for k, v in best.items() if not k.startswith("_")}
