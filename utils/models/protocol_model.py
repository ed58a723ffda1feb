"""The final model of the DS1 selection protocol (``docs/PROTOCOL.md``): trained on DS1, saved as
Keras weights (SHA-256 in ``config.json``), scored once on DS2.

:func:`train_final` fits the candidate the rule picked (:func:`utils.models.protocol.pick` on the
stored cross-validation, :func:`utils.models.protocol.stored_cv`) on all 22 DS1 records with the same
recipe as in the cross-validation (:func:`utils.models.protocol.fit_model`), turns it into one Keras
model (:func:`build_final`: the linear models become a ``Normalization`` + ``Dense`` layer with
the fitted coefficients; the Keras candidates are used as they are; the fusion averages its
members' probabilities) with the prior shift ``lambda * shift`` built in, saves it to
``data/models/protocol_ds1/`` and scores DS2 once (:func:`score_ds2`). ``make models`` runs it
(:func:`utils.models.catalog.main`).

Every DS2 figure follows from the committed weights and the code that computes the features
from the beats of each record (:func:`utils.models.protocol.feature_block`): :func:`load_final` +
:func:`predict_final` reproduce them.
"""
from __future__ import annotations

import json
import os
import platform
import time
from typing import Sequence

import numpy as np

from utils.core import config
from utils.models.protocol import CANDIDATES, FUSION_MEMBERS, N_CLASSES
from utils.core.config import LOGITS_LAYER
from utils.models.multimodal import build_multimodal
from utils.models.protocol import build_mlp
from utils.models.protocol import feature_block
from utils.models.protocol import FEATURE_SETS, MLP_RECIPE, MM_RECIPE
from utils.models.protocol import balanced_shift, feature_block, fit_model
from utils.data.aami import bootstrap, score
from utils.data.aami import flat
from utils.data.aami import DS1, DS2, load_aami_beats
from utils.data.mitdb import sha256_file
from utils.models.protocol import pick, selection_table, stored_cv
from utils.models.multimodal import beat_settings
from utils.models.training import verify_weights
from utils.models.patient_template import RR_DERIVED, RR_IRREGULARITY, TEMPLATE_FEATURES
from utils.models.protocol import FEATURE_SETS
from utils.data.rhythm import RR_FEATURES
from utils.data.aami import per_record
from utils.data.aami import GOAL

#: Name (folder under ``data/models/``) of the final model.
NAME: str = "protocol_ds1"
#: Bootstrap replicates and seed of the DS2 intervals (over records).
N_BOOT: int = 1000
#: The DS2 record left out in the "without 232" figures.
DOMINANT_RECORD: str = "232"


# --------------------------------------------------------------------------------------------
# Keras form of every candidate
# --------------------------------------------------------------------------------------------
def _linear_net(n_features: int, name: str):
    import keras
    from keras import layers

    inp = keras.Input((n_features,), name="features")
    x = layers.Normalization(name="features_norm")(inp)
    logits = layers.Dense(N_CLASSES, name=LOGITS_LAYER)(x)
    probs = layers.Activation("softmax", name="probs")(logits)
    return keras.Model(inp, probs, name=name)


def member_net(kind: str, n_features: int, name: str):
    """Untrained Keras network of classifier ``kind`` (:data:`utils.models.protocol.KINDS`)."""
    if kind in ("lda", "logistic"):
        return _linear_net(n_features, name)
    if kind == "mlp":
        return named(build_mlp(n_features), name)
    if kind == "mm":
        return named(build_multimodal(("beat", "rhythm"), n_rhythm=n_features), name)
    raise ValueError(f"no Keras form for kind {kind!r}")


def named(net, name: str):
    """The functional model ``net`` under the name ``name`` (same layers, same weights)."""
    import keras

    if net.name == name:
        return net
    return keras.Model(net.input, net.output, name=name)


def linear_weights(scaler, model) -> list[np.ndarray]:
    """Weights ``[mean, variance, count, kernel, bias]`` of :func:`_linear_net` for a fitted
    scikit-learn ``StandardScaler`` and ``LinearDiscriminantAnalysis`` / ``LogisticRegression``
    (all 4 classes present): the softmax of ``(x - mean) / scale @ coef.T + intercept`` is the
    model's ``predict_proba``."""
    if len(model.classes_) != N_CLASSES:
        raise ValueError(f"the linear model must know all {N_CLASSES} classes")
    var = np.asarray(scaler.scale_, np.float64) ** 2
    return [np.asarray(scaler.mean_, np.float32), var.astype(np.float32), np.asarray(0),
            np.asarray(model.coef_.T, np.float32), np.asarray(model.intercept_, np.float32)]


def _set_linear(net, scaler, model) -> None:
    mean, var, count, kernel, bias = linear_weights(scaler, model)
    norm = net.get_layer("features_norm")
    norm.set_weights([mean, var, count])
    norm.finalize_state()
    net.get_layer("logits").set_weights([kernel, bias])


def build_final(candidate: str, n_features: int, shift: np.ndarray | None = None,
                lam: float = 0.0, members: dict | None = None):
    """The Keras model of ``candidate`` with inputs ``beat`` (n, 256, 2; multimodal and fusion
    only) and ``features`` (n, ``n_features``), output ``probs`` = softmax(log p + lam shift).

    ``members``: trained member networks (name -> Keras model) to wrap; without them the
    members are built untrained (to load weights into). A single candidate keeps its own
    ``logits`` layer, whose bias takes ``lam * shift``; the fusion computes
    ``log(mean of the members' probabilities) + lam * shift`` in a ``prior_shift`` layer.
    """
    import keras
    from keras import layers

    kind = CANDIDATES[candidate][0]
    shift = np.zeros(N_CLASSES) if shift is None else np.asarray(shift, np.float64)
    names = FUSION_MEMBERS if kind == "fusion" else (candidate,)
    nets = {}
    for m in names:
        nets[m] = (members or {}).get(m) or member_net(CANDIDATES[m][0], n_features, m)
    beat = keras.Input((config.WINDOW, 2), name="beat")
    feats = keras.Input((n_features,), name="features")

    def call(m):
        net = nets[m]
        return net([beat, feats]) if CANDIDATES[m][0] == "mm" else net(feats)

    if kind != "fusion":     # the member network itself (explainers see its own layers)
        net = nets[candidate]
        if members is not None:     # fold the prior shift into the logits bias once
            dense = net.get_layer(LOGITS_LAYER)
            kernel, bias = dense.get_weights()
            dense.set_weights([kernel, bias + (lam * shift).astype(bias.dtype)])
        return net
    prior_shift = _prior_shift_layer()
    probs = layers.Average(name="fusion_mean")([call(m) for m in names])
    logits = prior_shift(lam * shift, name=LOGITS_LAYER)(probs)
    out = layers.Activation("softmax", name="probs")(logits)
    return keras.Model([beat, feats], out, name=NAME)


def _prior_shift_layer():
    """The ``PriorShift`` layer class (built here so that importing the module needs no
    TensorFlow)."""
    import keras

    class PriorShift(keras.layers.Layer):
        """``log(p) + shift`` with a stored (non-trainable) ``shift`` vector."""
        def __init__(self, shift=None, **kwargs):
            super().__init__(**kwargs)
            self._init = np.zeros(N_CLASSES) if shift is None else np.asarray(shift)

        def build(self, input_shape):
            self.shift = self.add_weight(shape=(N_CLASSES,), name="shift", trainable=False,
                                         initializer=keras.initializers.Constant(
                                             self._init.astype(np.float32)))

        def call(self, p):
            return keras.ops.log(keras.ops.maximum(p, 1e-12)) + self.shift

    return PriorShift


def final_inputs(model, beats, F: np.ndarray):
    """The input(s) of a :func:`build_final` model for beats and their features ``F``."""
    names = [t.name.split(":")[0] for t in model.inputs]
    F = np.asarray(F, np.float32)
    parts = {"beat": np.asarray(beats.X, np.float32), "features": F, "rhythm": F}
    arrays = [parts[n] for n in names]
    return arrays if len(arrays) > 1 else arrays[0]


def predict_final(model, beats, F: np.ndarray | None = None, feature_set: str | None = None,
                  batch_size: int = 1024) -> np.ndarray:
    """Predicted AAMI labels (0..3) of ``beats`` (all beats of each record: the features are
    per record). ``F``: their features, computed with ``feature_set`` when omitted."""

    if F is None:
        F = feature_block(beats, feature_set)[0]
    p = model.predict(final_inputs(model, beats, F), batch_size=batch_size, verbose=0)
    return np.asarray(p).argmax(axis=1).astype(np.int64)


# --------------------------------------------------------------------------------------------
# Training, saving, loading
# --------------------------------------------------------------------------------------------
def spec_of(choice: dict) -> dict:
    """What defines the final model: the chosen candidate and lambda and the fixed recipes."""
    cand = choice["candidate"]
    return {"candidate": cand, "kind": CANDIDATES[cand][0], "feature_set": CANDIDATES[cand][1],
            "features": list(FEATURE_SETS[CANDIDATES[cand][1]]),
            "members": list(FUSION_MEMBERS if CANDIDATES[cand][0] == "fusion" else (cand,)),
            "lambda": float(choice["lambda"]), "mlp": MLP_RECIPE, "mm": MM_RECIPE,
            "seed": config.SEED}


def _member_from_fit(kind: str, fitted, n_features: int, name: str):
    if kind in ("lda", "logistic"):
        net = _linear_net(n_features, name)
        _set_linear(net, *fitted.sklearn)
        return net
    return named(fitted.keras, name)


def fit_final(beats_ds1, spec: dict):
    """Fit the model of ``spec`` (:func:`spec_of`) on the DS1 beats; returns ``(model, shift,
    seconds)``."""

    F, _ = feature_block(beats_ds1, spec["feature_set"])
    y = np.asarray(beats_ds1.y)
    train = np.flatnonzero(y < N_CLASSES)
    start = time.perf_counter()
    members = {}
    for m in spec["members"]:
        kind = CANDIDATES[m][0]
        fitted = fit_model(kind, F, beats_ds1.X if kind == "mm" else None, y, train,
                           spec["seed"])
        members[m] = _member_from_fit(kind, fitted, F.shape[1], m)
    shift = balanced_shift(y[train])
    model = build_final(spec["candidate"], F.shape[1], shift, spec["lambda"], members)
    return model, shift, round(time.perf_counter() - start, 1)


def score_ds2(model, beats_ds2, feature_set: str) -> dict:
    """The single DS2 scoring: AAMI scores, 95 % bootstrap intervals over records, the same
    without :data:`DOMINANT_RECORD`, per-record SVEB / VEB, and the predicted labels."""

    pred = predict_final(model, beats_ds2, feature_set=feature_set)
    y, rec = np.asarray(beats_ds2.y), np.asarray(beats_ds2.record)
    out = {"pred": pred}
    for part, m in (("all", np.ones(len(y), bool)), ("without_232", rec != DOMINANT_RECORD)):
        out[part] = {"score": score(y[m], pred[m]),
                     "ci": bootstrap(y[m], pred[m], rec[m], n_boot=N_BOOT, seed=config.SEED)}
    return out


def _fraction(v) -> float | None:
    return None if v != v else round(float(v), 4)


def aami_ds2_entry(scored: dict) -> dict:
    """``aami_ds2`` of ``config.json``: sveb_se, sveb_ppv, veb_se, veb_ppv (fractions), their
    95 % intervals, the FPRs, and the same without record 232."""

    def block(part):
        f, ci = flat(part["score"]), part["ci"]
        keys = {"sveb_se": "SVEB Se", "sveb_ppv": "SVEB +P", "sveb_fpr": "SVEB FPR",
                "veb_se": "VEB Se", "veb_ppv": "VEB +P", "veb_fpr": "VEB FPR",
                "accuracy": "accuracy", "jk_index": "jk_index"}
        out = {k: _fraction(f[v]) for k, v in keys.items()}
        out.update({f"{k}_ci95": [_fraction(ci[v][0]), _fraction(ci[v][1])]
                    for k, v in keys.items()})
        out["confusion"] = part["score"]["confusion"]
        return out

    return {**block(scored["all"]), "n_boot": N_BOOT, "bootstrap": "records",
            "without_232": block(scored["without_232"])}


def train_final(beats=None, verbose: int = 1) -> dict:
    """Pick the final model by the rule on the stored DS1 cross-validation, fit it on DS1,
    save it to ``data/models/protocol_ds1/`` and score DS2 once. Returns its ``config.json``."""
    import keras
    import tensorflow as tf

    beats = beats if beats is not None else load_aami_beats()
    ds1, ds2 = beats.of_records(DS1), beats.of_records(DS2)
    cv = stored_cv(beats)
    table = selection_table(cv, ds1.y)
    choice = pick(table)
    spec = spec_of(choice)
    if verbose:
        print(f"rule picks {spec['candidate']} with lambda {spec['lambda']} "
              f"(DS1 out-of-fold metric {choice['metric']:.3f})", flush=True)
    model, shift, seconds = fit_final(ds1, spec)
    scored = score_ds2(model, ds2, spec["feature_set"])
    folder = config.MODELS_DIR / NAME
    folder.mkdir(parents=True, exist_ok=True)
    model.save_weights(folder / "model.weights.h5")

    cfg = {"name": NAME, "spec": spec, "beats": beat_settings(), "train_records": list(DS1),
           "n_train": int(np.sum(ds1.y < N_CLASSES)), "train_seconds": seconds,
           "shift": [round(float(v), 6) for v in shift],
           "selection": {"metric": "mean of SVEB F1 and VEB F1, pooled out-of-fold DS1",
                         "ds1_oof": {k: _fraction(v) for k, v in choice.items()
                                     if k not in ("candidate", "lambda")}},
           "aami_ds2": aami_ds2_entry(scored),
           "weights_sha256": sha256_file(folder / "model.weights.h5"),
           "environment": {"tensorflow": tf.__version__, "keras": keras.__version__,
                           "python": platform.python_version(), "cpus": os.cpu_count()}}
    (folder / "config.json").write_text(json.dumps(cfg, indent=1))
    return cfg


def read_final_config() -> dict:
    """``config.json`` of the final model."""
    path = config.MODELS_DIR / NAME / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"No final protocol model at {path}: run `make models`.")
    return json.loads(path.read_text())


def load_final():
    """The committed final model (weights checked against the SHA-256 of its config)."""
    folder = config.MODELS_DIR / NAME
    cfg = read_final_config()
    verify_weights(folder, cfg)
    n_features = len(feature_names(cfg["spec"]["feature_set"]))
    model = build_final(cfg["spec"]["candidate"], n_features)
    model.load_weights(folder / "model.weights.h5")
    return model


def feature_names(feature_set: str) -> list[str]:
    """Names of the features of ``feature_set`` (no beats needed)."""
    blocks = {"rr": RR_FEATURES, "rr_derived": RR_DERIVED, "irregularity": RR_IRREGULARITY,
              "template": TEMPLATE_FEATURES}
    return [n for b in FEATURE_SETS[feature_set] for n in blocks[b]]


def per_record_sveb(y: np.ndarray, pred: np.ndarray, record: np.ndarray,
                    records: Sequence[str] | None = None):
    """Per record with SVEB beats: SVEB n, Se, +P and the false SVEB (a DataFrame sorted by
    SVEB count, descending, then record)."""
    import pandas as pd

    t = per_record(np.asarray(y), np.asarray(pred), np.asarray(record))
    t = t[t["SVEB n"].astype(float) > 0][["SVEB n", "SVEB Se", "SVEB +P", "SVEB FP"]]
    if records is not None:
        t = t.loc[[r for r in records if r in t.index]]
    t = t.astype(float)
    t["record"] = t.index
    return t.sort_values(["SVEB n", "record"], ascending=[False, True]).drop(columns="record")


def goal_table(values: dict, intervals: dict | None = None):
    """The four goal figures (:data:`utils.data.aami.GOAL`, percent) of one model: value, 95 %
    interval, goal, and whether the **point estimate** and the **interval** (its lower end)
    reach the goal. ``values``/``intervals``: flat fractions as :func:`utils.data.aami.flat` and
    :func:`utils.data.aami.bootstrap` give them (``intervals`` optional)."""
    import pandas as pd

    rows = {}
    for key, goal in GOAL.items():
        v = 100 * float(values[key])
        row = {"value": round(v, 1)}
        if intervals is not None:
            lo, hi = (100 * float(x) for x in intervals[key])
            row.update({"low": round(lo, 1), "high": round(hi, 1)})
        row["goal"] = goal
        row["point estimate"] = "met" if v >= goal else "NOT met"
        if intervals is not None:
            row["interval"] = "met" if lo >= goal else "NOT met"
        rows[key] = row
    return pd.DataFrame(rows).T


def config_intervals(block: dict) -> dict:
    """``{'SVEB Se': (low, high), ...}`` (fractions) from an ``aami_ds2`` block of
    ``config.json``."""
    keys = {"sveb_se": "SVEB Se", "sveb_ppv": "SVEB +P", "sveb_fpr": "SVEB FPR",
            "veb_se": "VEB Se", "veb_ppv": "VEB +P", "veb_fpr": "VEB FPR",
            "accuracy": "accuracy", "jk_index": "jk_index"}
    return {v: tuple(block[f"{k}_ci95"]) for k, v in keys.items()}
