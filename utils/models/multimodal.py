"""Multimodal beat classifier: beat morphology (both leads) + rhythm (RR features).

Two separate inputs, so that every explainer can tell the modalities apart:

* ``beat`` (n, 256, 2): the z-scored beat window, through the course's FCN branch
  (:func:`utils.models.networks.fcn_blocks`: dilated [Conv1D-BN-ReLU] x 3 + global average pooling);
* ``rhythm`` (n, 9): the :data:`utils.data.rhythm.RR_FEATURES` in seconds / ratios, standardised
  inside the model by a ``Normalization`` layer fitted on the training beats (its statistics
  are saved with the weights), then a small ReLU layer.

The two embeddings are concatenated (``fusion``), pass one ReLU layer and end in a linear
``logits`` layer and a ``probs`` softmax, like every classifier of the course
(:data:`utils.core.config.LOGITS_LAYER`). ``modalities=("beat",)`` and ``("rhythm",)`` give the
morphology-only and rhythm-only variants with the same layers.

Output classes: the four AAMI EC57 classes N, SVEB, VEB, F (:data:`OUTPUT_CLASSES`, labels
0..3 = the first four of :data:`utils.data.aami.AAMI_CLASSES`). The benchmark scores in AAMI
classes, the training records DS1 contain beats of symbols outside the 8 course classes
(j, a, J, E, e) that belong to these classes, and the paced classes (/ and f) do not occur in
the non-paced records; Q (8 unclassifiable beats in DS1) is too rare to learn and is never
predicted. The 8-class view of the course is recovered per symbol with
:func:`utils.data.aami.symbol_recall` (e.g. how many L beats are called N).

Training (:func:`train_on_records`) takes explicit record lists, so the same code trains the
committed models (DS1 minus a few validation records, chosen by :func:`validation_records`
from DS1 only) and the patient-wise folds of other analyses; DS2 is never read there.
"""
from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from utils.core import config
from utils.data.aami import AAMI_CLASSES, DS1, DS2, AamiBeats
from utils.core.config import LOGITS_LAYER
from utils.data.rhythm import RR_FEATURES
from utils.data.clinical import SAME_PATIENT
from utils.data.mitdb import subsample_majority
from utils.data.aami import score
from utils.models.training import time_limit, calibrate_prior, class_weights, prior_shift
from utils.data.aami import flat
from utils.data.mitdb import sha256_file
from utils.models.training import verify_weights
from utils.data.rhythm import LOCAL_BEATS, RR_FEATURES
from utils.data.aami import bootstrap, load_aami_beats, score
from utils.data.aami import load_aami_beats, score

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

#: Classes predicted by the multimodal models (AAMI labels 0..3).
OUTPUT_CLASSES: tuple[str, ...] = AAMI_CLASSES[:4]
#: Names of the model inputs, in the order of ``model.inputs``.
MODALITIES: tuple[str, ...] = ("beat", "rhythm")


def build_multimodal(modalities: Sequence[str] = MODALITIES,
                     filters: tuple[int, ...] = (16, 16, 32), kernels: tuple[int, ...] = (9, 9, 9),
                     dilations: tuple[int, ...] = (1, 4, 16), rhythm_units: int = 16,
                     hidden: int = 32, dropout: float = 0.2, n_rhythm: int = len(RR_FEATURES),
                     window: int = config.WINDOW, n_classes: int = len(OUTPUT_CLASSES)):
    """The multimodal network (see module docstring) with the inputs ``modalities``.
    The ``rhythm_norm`` layer starts as the identity; :func:`fit_rhythm_norm` sets it to the
    training statistics (saved with the weights).
    """
    import keras
    from keras import layers

    from utils.models.networks import fcn_blocks  # lazy: TensorFlow loads only when this runs

    modalities = tuple(modalities)
    if not modalities or set(modalities) - set(MODALITIES) or len(set(modalities)) != len(
            modalities):
        raise ValueError(f"modalities must be a non-empty subset of {MODALITIES}, "
                         f"got {modalities}")
    modalities = tuple(m for m in MODALITIES if m in modalities)  # canonical input order
    inputs, branches = [], []
    if "beat" in modalities:
        beat = keras.Input((window, 2), name="beat")
        inputs.append(beat)
        branches.append(fcn_blocks(beat, filters, kernels, dilations))
    if "rhythm" in modalities:
        rhythm = keras.Input((n_rhythm,), name="rhythm")
        inputs.append(rhythm)
        norm = layers.Normalization(name="rhythm_norm")
        x = norm(rhythm)
        norm.set_weights(_norm_weights(np.zeros(n_rhythm), np.ones(n_rhythm)))
        norm.finalize_state()  # Keras 3: the layer reads mean/variance set by finalize_state
        branches.append(layers.Dense(rhythm_units, activation="relu", name="rhythm_dense")(x))
    x = (layers.Concatenate(name="fusion")(branches) if len(branches) > 1 else branches[0])
    x = layers.Dense(hidden, activation="relu", name="fusion_dense")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    logits = layers.Dense(n_classes, name=LOGITS_LAYER)(x)
    probs = layers.Activation("softmax", name="probs")(logits)
    return keras.Model(inputs if len(inputs) > 1 else inputs[0], probs,
                       name="multimodal_" + "_".join(modalities))


def _norm_weights(mean: np.ndarray, variance: np.ndarray) -> list[np.ndarray]:
    """Weights (mean, variance, count) of a Keras 3 ``Normalization`` layer."""
    return [np.asarray(mean, np.float32), np.asarray(variance, np.float32), np.asarray(0)]


def fit_rhythm_norm(model, rr_train: np.ndarray) -> None:
    """Set the model's ``rhythm_norm`` layer to the mean/variance of ``rr_train`` (no-op for
    a model without the rhythm input)."""
    try:
        layer = model.get_layer("rhythm_norm")
    except ValueError:
        return
    rr_train = np.asarray(rr_train, dtype=float)
    layer.set_weights(_norm_weights(rr_train.mean(0), rr_train.var(0) + 1e-6))
    layer.finalize_state()


def model_inputs(model, X: np.ndarray, rr: np.ndarray):
    """The input(s) of ``model`` for beats ``X`` and RR features ``rr``: a list
    ``[X, rr]`` for the two-input model, else the one array its input needs."""
    names = [t.name.split(":")[0] for t in model.inputs]
    parts = {"beat": np.asarray(X, np.float32), "rhythm": np.asarray(rr, np.float32)}
    arrays = [parts[n] for n in names]
    return arrays if len(arrays) > 1 else arrays[0]


def predict_proba(model, X: np.ndarray, rr: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """Class probabilities (n, 4) of beats ``X`` with RR features ``rr``."""
    return np.asarray(model.predict(model_inputs(model, X, rr), batch_size=batch_size,
                                    verbose=0))


def predict(model, beats: AamiBeats, batch_size: int = 1024) -> np.ndarray:
    """Predicted AAMI labels (0..3) of ``beats``."""
    return predict_proba(model, beats.X, beats.rr, batch_size).argmax(axis=1)


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MultimodalSpec:
    """Architecture and training recipe of a multimodal model."""
    modalities: tuple[str, ...] = MODALITIES
    kwargs: dict = field(default_factory=dict)
    cap_per_class: int = 6000
    epochs: int = 12
    batch_size: int = 128
    learning_rate: float = 3e-3
    class_weight_power: float = 0.5
    patience: int = 3
    max_minutes: float = 6.0
    n_val_records: int = 4
    seed: int = config.SEED


#: The committed multimodal models (trained on DS1 by ``make models``).
SPECS: dict[str, MultimodalSpec] = {
    "multimodal_ds1": MultimodalSpec(("beat", "rhythm")),
    "morphology_ds1": MultimodalSpec(("beat",)),
    "rhythm_ds1": MultimodalSpec(("rhythm",)),
}


def validation_records(beats: AamiBeats, records: Sequence[str] = DS1, n_val: int = 4,
                       seed: int = config.SEED, min_share: float = 0.05,
                       test_records: Sequence[str] = DS2) -> tuple[str, ...]:
    """``n_val`` records of ``records`` held out for early stopping and the prior correction.
    Drawn at random (fixed seed) until the held-out records hold at least ``min_share`` of the
    SVEB and of the VEB beats of ``records`` and at most half of either (so both parts can
    learn and judge them). Only ``records`` are looked at - pass DS1, never DS2 (or, for a
    cross-validation fold, its training records; ``test_records`` = that fold's test part).
    """
    records = tuple(records)
    if set(records) & set(test_records):
        raise ValueError("validation records must come from the training records, not DS2 "
                         "(or the fold's test records)")
    sub = beats.of_records(records)
    total = np.array([np.sum(sub.y == 1), np.sum(sub.y == 2)], dtype=float)
    rng = np.random.default_rng(seed)
    for _ in range(1000):
        val = tuple(sorted(rng.choice(records, size=n_val, replace=False).tolist()))
        m = np.isin(sub.record, val)
        share = np.array([np.sum(sub.y[m] == 1), np.sum(sub.y[m] == 2)]) / np.maximum(total, 1)
        if np.all(share >= min_share) and np.all(share <= 0.5):
            return val
    raise RuntimeError("no validation records with enough SVEB and VEB beats found")


def patient_folds(records: Sequence[str] = DS1, k: int = 5, seed: int = config.SEED
                  ) -> list[tuple[str, ...]]:
    """``k`` disjoint groups of ``records`` (a seeded random permutation dealt round-robin),
    for patient-wise cross-validation: every record is in exactly one fold."""
    records = tuple(records)
    if not 2 <= k <= len(records):
        raise ValueError(f"k must be in [2, {len(records)}], got {k}")
    perm = np.random.default_rng(seed).permutation(len(records))
    return [tuple(sorted(records[i] for i in perm[f::k])) for f in range(k)]


# --------------------------------------------------------------------------------------------
# Patient-wise cross-validation folds (issue 15: is modality importance consistent over folds?)
# --------------------------------------------------------------------------------------------
#: Records of the cross-validation: the 44 non-paced records (DS1 + DS2). DS2 is no longer a
#: held-out benchmark here: every record is a test record of exactly one fold.
CV_RECORDS: tuple[str, ...] = DS1 + DS2
#: Number of folds.
FOLD_K: int = 5
#: The cheaper recipe of the fold models (about 3-4 minutes per fold on 2 shared cores):
#: fewer beats per class, fewer epochs, a 3.5-minute cap checked after each epoch.
FOLD_SPEC = MultimodalSpec(("beat", "rhythm"), cap_per_class=2500, epochs=8, patience=2,
                           max_minutes=3.5)
#: Committed fold models: name -> fold index (0-based) of :func:`cv_folds`.
FOLDS: dict[str, int] = {f"multimodal_fold{i + 1}": i for i in range(FOLD_K)}
SPECS.update(dict.fromkeys(FOLDS, FOLD_SPEC))


def cv_folds(beats: AamiBeats | None = None, records: Sequence[str] = CV_RECORDS,
             k: int = FOLD_K, seed: int = config.SEED) -> list[tuple[str, ...]]:
    """``k`` disjoint test parts of ``records`` for patient-wise cross-validation.
    Patients, not records, are dealt: the two records of one patient (201 and 202,
    :data:`utils.data.clinical.SAME_PATIENT`) always share a fold. Without ``beats``: a seeded random
    deal. With ``beats`` the deal is stratified on the rare classes, which sit in a few records
    (SVEB: 232, 222, 209, 220; F: 208, 213): patients are taken in decreasing order of their
    largest share of the SVEB, VEB or F beats, and each goes to the fold (among those not yet
    full) where the sum over these classes of the squared fold share grows least (seeded random
    ties), so no fold's training part loses (almost) all of a class. Only annotation counts are
    used, never a model's results. Fold sizes differ by at most one patient.
    """
    records = tuple(records)
    patients: dict[str, list[str]] = {}
    for r in records:
        patients.setdefault(SAME_PATIENT.get(r, r), []).append(r)
    if not 2 <= k <= len(patients):
        raise ValueError(f"k must be in [2, {len(patients)}], got {k}")
    rng = np.random.default_rng(seed)
    keys = list(patients)
    folds: list[list[str]] = [[] for _ in range(k)]
    if beats is None:
        for i, j in enumerate(rng.permutation(len(keys))):
            folds[i % k].extend(patients[keys[j]])
        return [tuple(sorted(f)) for f in folds]
    counts = np.array([[np.sum(np.isin(beats.record, patients[p]) & (beats.y == c))
                        for c in (1, 2, 3)] for p in keys], dtype=float)
    share = counts / np.maximum(counts.sum(axis=0), 1)
    order = np.lexsort((rng.random(len(keys)), -share.max(axis=1)))
    load = np.zeros((k, share.shape[1]))
    n_patients = np.zeros(k, dtype=int)
    small, n_big = divmod(len(keys), k)       # n_big folds get small + 1 patients
    for i in order:
        big_left = np.sum(n_patients > small) < n_big
        open_ = np.flatnonzero((n_patients < small) | ((n_patients == small) & big_left))
        cost = ((load[open_] + share[i]) ** 2).sum(axis=1) + 1e-9 * rng.random(len(open_))
        f = open_[int(np.argmin(cost))]
        folds[f].extend(patients[keys[i]])
        load[f] += share[i]
        n_patients[f] += 1
    return [tuple(sorted(f)) for f in folds]


def _cap(y: np.ndarray, idx: np.ndarray, cap: int, seed: int) -> np.ndarray:

    return subsample_majority(y, idx, cap, seed=seed)


def train_on_records(beats: AamiBeats, train_records: Sequence[str],
                     val_records: Sequence[str], spec: MultimodalSpec = MultimodalSpec(),
                     verbose: int = 0):
    """Train a model of ``spec`` on the beats of ``train_records``; early stopping and the
    prior correction use ``val_records`` (other patients). Returns ``(model, info)`` where
    ``info`` holds the history, counts, training time and the validation AAMI scores.

    Reusable for patient-wise folds: pass each fold's records. Beats of class Q are not
    trained on. Deterministic for fixed inputs (seeded, deterministic TF ops).
    """
    import keras
    import tensorflow as tf

    train_records, val_records = tuple(train_records), tuple(val_records)
    if set(train_records) & set(val_records):
        raise ValueError("train and validation records overlap")
    keras.utils.set_random_seed(spec.seed)
    tf.config.experimental.enable_op_determinism()
    k = len(OUTPUT_CLASSES)
    trainable = beats.y < k
    tr_all = np.flatnonzero(np.isin(beats.record, train_records) & trainable)
    val = np.flatnonzero(np.isin(beats.record, val_records) & trainable)
    if len(tr_all) == 0 or len(val) == 0:
        raise ValueError("no training or no validation beats for these records")
    tr = np.random.default_rng(spec.seed).permutation(
        _cap(beats.y, tr_all, spec.cap_per_class, spec.seed))
    model = build_multimodal(spec.modalities, **spec.kwargs)
    fit_rhythm_norm(model, beats.rr[tr])
    weights = class_weights(beats.y[tr], power=spec.class_weight_power)
    model.compile(optimizer=keras.optimizers.Adam(spec.learning_rate),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    x_tr = model_inputs(model, beats.X[tr], beats.rr[tr])
    x_val = model_inputs(model, beats.X[val], beats.rr[val])
    callbacks = [
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=spec.patience,
                                      restore_best_weights=True),
        keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.3, patience=2),
        time_limit(spec.max_minutes),
    ]
    start = time.perf_counter()
    hist = model.fit(x_tr, beats.y[tr], validation_data=(x_val, beats.y[val]),
                     epochs=spec.epochs, batch_size=spec.batch_size, class_weight=weights,
                     callbacks=callbacks, shuffle=True, verbose=verbose)
    seconds = time.perf_counter() - start
    shift = prior_shift(beats.y[tr_all], beats.y[tr], weights, n_classes=k)
    lam = calibrate_prior(model, x_val, beats.y[val], shift, metric=_jk_index)
    val_pred = np.asarray(model.predict(x_val, batch_size=1024, verbose=0)).argmax(1)
    info = {
        "train_records": list(train_records), "val_records": list(val_records),
        "n_train": int(len(tr)), "n_val": int(len(val)),
        "epochs_run": len(hist.history["loss"]), "train_seconds": round(seconds, 1),
        "prior_correction": {"lambda": lam, "shift": [round(float(v), 4) for v in shift]},
        "history": {k_: [round(float(v), 6) for v in vals] for k_, vals in hist.history.items()},
        "val": _compact(score(beats.y[val], val_pred)),
    }
    return model, info


def _jk_index(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """The benchmark's jk index (:func:`utils.data.aami.score`): the prior correction of the
    multimodal models is chosen by it on the validation records (DS1)."""

    return score(y_true, y_pred)["jk_index"]


def _compact(result: dict) -> dict:

    return {k: (None if v != v else round(float(v), 4)) for k, v in flat(result).items()}


def save(model, folder: Path, spec: MultimodalSpec, info: dict, extra: dict | None = None
         ) -> None:
    """Write ``model.weights.h5``, ``history.json`` and ``config.json`` to ``folder``
    (one folder per model or per fold)."""
    import keras
    import tensorflow as tf

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_weights(folder / "model.weights.h5")

    (folder / "history.json").write_text(json.dumps(info["history"], indent=1))
    cfg = {"spec": json.loads(json.dumps(asdict(spec))), "beats": beat_settings(),
           **{k: v for k, v in info.items() if k != "history"}, **(extra or {}),
           "weights_sha256": sha256_file(folder / "model.weights.h5"),
           "environment": {"tensorflow": tf.__version__, "keras": keras.__version__,
                           "python": platform.python_version(), "cpus": os.cpu_count()}}
    (folder / "config.json").write_text(json.dumps(cfg, indent=1))


def load(folder: Path, spec: MultimodalSpec | None = None):
    """Rebuild and load a model saved by :func:`save`. With ``spec``, refuse a folder whose
    saved spec or beat settings differ from it (stale weights)."""
    folder = Path(folder)
    path = folder / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"No trained multimodal model at {folder}: run `make models`.")
    cfg = json.loads(path.read_text())
    if spec is not None and (cfg["spec"] != json.loads(json.dumps(asdict(spec)))
                             or cfg["beats"] != beat_settings()):
        raise ValueError(f"Model in {folder} was trained with other settings than the code; "
                         "run `make models` to retrain it.")

    verify_weights(folder, cfg)  # SHA-256 of the weights, as for every course model
    saved = cfg["spec"]
    model = build_multimodal(tuple(saved["modalities"]), **_kwargs(saved["kwargs"]))
    model.load_weights(folder / "model.weights.h5")
    return model


def _kwargs(kwargs: dict) -> dict:
    return {k: (tuple(v) if isinstance(v, list) else v) for k, v in kwargs.items()}


def beat_settings() -> dict:
    """The beat and rhythm settings an AAMI model depends on (stored in its config)."""
    return {"window": config.WINDOW, "r_offset": config.R_OFFSET, "fs": config.BEAT_FS,
            "classes": list(OUTPUT_CLASSES), "rr_features": list(RR_FEATURES),
            "local_beats": LOCAL_BEATS}


def train_named(name: str, beats: AamiBeats | None = None, verbose: int = 2) -> dict:
    """Train the committed model ``name`` of :data:`SPECS` on DS1 (validation records from
    DS1), score it on DS2 once, and save it to ``data/models/<name>/``. Returns its config."""

    if name in FOLDS:
        return train_fold(name, beats, verbose=verbose)
    spec = SPECS[name]
    beats = beats if beats is not None else load_aami_beats()
    val = validation_records(beats, DS1, spec.n_val_records, spec.seed)
    train = tuple(r for r in DS1 if r not in val)
    model, info = train_on_records(beats, train, val, spec, verbose=verbose)
    test = beats.of_records(DS2)
    pred = predict(model, test)
    res = score(test.y, pred)
    ci = bootstrap(test.y, pred, test.record)
    extra = {"name": name, "test_ds2": {**_compact(res), "confusion": res["confusion"],
                                         "bootstrap_95": {k: [round(v[0], 4), round(v[1], 4)]
                                                          for k, v in ci.items()
                                                          if k != "n_boot"}}}
    save(model, config.MODELS_DIR / name, spec, info, extra)
    return json.loads((config.MODELS_DIR / name / "config.json").read_text())


def load_named(name: str):
    """The committed model ``name`` of :data:`SPECS` (checked against the current spec)."""
    if name not in SPECS:
        raise ValueError(f"Unknown multimodal model {name!r}; known: {', '.join(SPECS)}")
    return load(config.MODELS_DIR / name, SPECS[name])


PREDICTIONS_FILE = "test_predictions.npz"


def _with_same_patient(records: Sequence[str], pool: Sequence[str]) -> tuple[str, ...]:
    """``records`` plus the other records of their patients that are in ``pool``."""
    patient = {r: SAME_PATIENT.get(r, r) for r in pool}
    chosen = {patient.get(r, SAME_PATIENT.get(r, r)) for r in records}
    return tuple(sorted(set(records) | {r for r in pool if patient[r] in chosen}))


def train_fold(name: str, beats: AamiBeats | None = None, verbose: int = 2) -> dict:
    """Train the fold model ``name`` of :data:`FOLDS` and save it to ``data/models/<name>/``.
    Test part: fold ``FOLDS[name]`` of :func:`cv_folds` (stratified by SVEB beats). The other
    records train; the early-stopping / prior-correction records are drawn from them
    (:func:`validation_records` with the fold's test part forbidden). The model is scored once
    on its test part (``test_fold`` in ``config.json``: AAMI scores and confusion) and the
    predicted label of every test beat is saved beside it (:data:`PREDICTIONS_FILE`: record,
    sample, y, pred), so analyses need not re-run the model on all test beats. Returns the
    config.
    """
    spec = SPECS[name]
    beats = beats if beats is not None else load_aami_beats(CV_RECORDS)
    folds = cv_folds(beats, CV_RECORDS, FOLD_K, spec.seed)
    test_records = folds[FOLDS[name]]
    pool = tuple(r for r in CV_RECORDS if r not in test_records)
    val = validation_records(beats, pool, spec.n_val_records, spec.seed,
                             test_records=test_records)
    val = _with_same_patient(val, pool)   # 201 and 202 never split between train and val
    train = tuple(r for r in pool if r not in val)
    model, info = train_on_records(beats, train, val, spec, verbose=verbose)
    test = beats.of_records(test_records)
    start = time.perf_counter()
    pred = predict(model, test)
    res = score(test.y, pred)
    extra = {"name": name, "fold": FOLDS[name], "k": FOLD_K, "test_records": list(test_records),
             "test_seconds": round(time.perf_counter() - start, 1),
             "test_fold": {**_compact(res), "confusion": res["confusion"],
                           "n": int(len(test))}}
    folder = config.MODELS_DIR / name
    save(model, folder, spec, info, extra)
    np.savez_compressed(folder / PREDICTIONS_FILE, record=test.record.astype("<U3"),
                        sample=test.sample.astype(np.int32), y=test.y.astype(np.int8),
                        pred=pred.astype(np.int8))
    return json.loads((folder / "config.json").read_text())


def load_fold_predictions(name: str) -> dict[str, np.ndarray]:
    """The saved test predictions of fold model ``name`` (record, sample, y, pred)."""
    path = config.MODELS_DIR / name / PREDICTIONS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"No test predictions at {path}: run `make models`.")
    with np.load(path) as npz:
        return {k: npz[k] for k in ("record", "sample", "y", "pred")}
