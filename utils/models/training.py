"""Training, saving and checking the 8-class course models, and the recipe pieces every model
family shares (class weights, prior shift, time limit, sealed configs, verified weights).

:mod:`utils.models.catalog` loads and trains a model of any family by name (``make models``).

Each model lives in ``data/models/<name>/`` (committed): ``model.weights.h5``, ``history.json``
(loss/accuracy per epoch) and ``config.json`` (the spec it was trained with, the beat-extraction
settings, the metrics on its test split and the training time). :func:`load_spec_model` refuses
weights whose config no longer matches the code, so notebooks never run on stale models.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from utils.core import config
from utils.data.mitdb import (BeatData, Split, get_split, load_beats, sha256_file,
                              subsample_majority)
from utils.core.config import LOGITS_LAYER
from utils.core.explain import predict_scores
from utils.models.metrics import evaluate_predictions
from utils.models.metrics import evaluate_model

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@dataclass(frozen=True)
class ModelSpec:
    """Everything that defines a trained model: architecture, data split and training recipe."""
    builder: str
    split: str
    kwargs: dict = field(default_factory=dict)
    epochs: int = 30
    batch_size: int = 128
    cap_per_class: int = 12000
    learning_rate: float = 3e-3
    patience: int = 4
    max_minutes: float = 14.0
    only_class: str | None = None  # autoencoder: train on one class only (N)
    seed: int = config.SEED


MODEL_SPECS: dict[str, ModelSpec] = {
    "cnn_holdout": ModelSpec("fcn", "holdout"),
    "cnn_patient": ModelSpec("fcn", "patient"),
    "lstm_holdout": ModelSpec("lstm", "holdout"),
    "lstm_patient": ModelSpec("lstm", "patient"),
    "attention_holdout": ModelSpec("lstm_attention", "holdout"),
    "autoencoder_normal": ModelSpec("attention_autoencoder", "holdout", epochs=25,
                                    cap_per_class=12000, only_class="N"),
}


def class_weights(y: np.ndarray, power: float = 0.5) -> dict[int, float]:
    """Inverse-frequency class weights softened by ``power`` (0.5 = inverse square root),
    normalised to mean 1 over the classes present."""
    counts = np.bincount(y, minlength=len(config.CLASSES)).astype(float)
    present = counts > 0
    w = np.zeros_like(counts)
    w[present] = (counts[present].sum() / counts[present]) ** power
    w[present] /= w[present].mean()
    return {int(i): float(w[i]) for i in np.flatnonzero(present)}


def prior_shift(y_full: np.ndarray, y_trained: np.ndarray, weights: dict[int, float],
                n_classes: int = len(config.CLASSES)) -> np.ndarray:
    """Per-class log-ratio between the true class prior and the effective training prior.
    Training on a subsampled, class-weighted set teaches the model the prior
    ``n_c * w_c`` instead of the true one; adding ``log(pi_true / pi_train)`` to the logits
    undoes that (Saerens et al. 2002, "Adjusting the outputs of a classifier to new a priori
    probabilities"). Classes absent from training get 0. ``n_classes``: length of the
    result (the model's number of outputs; 8 course classes by default).
    """
    k = n_classes
    true = np.bincount(y_full, minlength=k).astype(float)
    eff = np.bincount(y_trained, minlength=k) * np.array([weights.get(i, 0.0) for i in range(k)])
    shift = np.zeros(k)
    ok = (true > 0) & (eff > 0)
    shift[ok] = np.log(true[ok] / true[ok].sum()) - np.log(eff[ok] / eff[ok].sum())
    return shift


def calibrate_prior(model, X_val: np.ndarray, y_val: np.ndarray, shift: np.ndarray,
                    grid: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0),
                    metric=None) -> float:
    """Add ``lam * shift`` to the bias of the ``logits`` layer, ``lam`` chosen on the
    validation beats (true class mix) by macro-F1 - or by ``metric(y_true, y_pred)`` (higher
    is better, NaN counts as worst) - ties to the smaller correction.

    The test beats are never used. Gradients (hence every explanation) are unchanged; only
    the class scores move by a constant. Returns the chosen ``lam``.
    """
    if metric is None:
        def metric(y_true, y_pred):
            return evaluate_predictions(y_true, y_pred)["macro_f1"]
    logits = predict_scores(model, X_val, "logits")
    scores = np.array([metric(y_val, (logits + lam * shift).argmax(1)) for lam in grid],
                      dtype=float)
    scores = np.nan_to_num(scores, nan=-np.inf)
    lam = grid[int(np.argmax(np.round(scores, 4)))]
    dense = model.get_layer(LOGITS_LAYER)
    kernel, bias = dense.get_weights()
    dense.set_weights([kernel, bias + lam * shift.astype(bias.dtype)])
    return float(lam)


def pool_beats(X: np.ndarray, pool: int) -> np.ndarray:
    """Average-pool beats (n, window, leads) by ``pool`` along time (autoencoder targets)."""
    n, t, c = X.shape
    if t % pool:
        raise ValueError(f"window {t} is not divisible by pool {pool}")
    return X.reshape(n, t // pool, pool, c).mean(axis=2)


def model_dir(name: str) -> Path:
    """Folder of a trained model."""
    return config.MODELS_DIR / name


def beat_settings() -> dict:
    """The beat-extraction settings a trained 8-class model depends on (stored in its config)."""
    return {"window": config.WINDOW, "r_offset": config.R_OFFSET,
            "classes": list(config.CLASSES), "fs": config.BEAT_FS}


def _spec(name: str) -> ModelSpec:
    if name not in MODEL_SPECS:
        raise ValueError(f"Unknown model {name!r}; known: {', '.join(MODEL_SPECS)}")
    return MODEL_SPECS[name]


def time_limit(minutes: float):
    """Keras callback that stops training after ``minutes`` (keeps ``make models`` bounded)."""
    import keras

    class TimeLimit(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            if time.perf_counter() - self.start > minutes * 60:
                self.model.stop_training = True

    return TimeLimit()


def train(name: str, data: BeatData | None = None, verbose: int = 2) -> dict:
    """Train model ``name`` from scratch with fixed seeds and save it; returns its config."""
    import keras
    import tensorflow as tf

    spec = _spec(name)
    data = data if data is not None else load_beats()
    split = get_split(data, spec.split)
    keras.utils.set_random_seed(spec.seed)
    tf.config.experimental.enable_op_determinism()

    train_idx = split.train
    if spec.only_class is not None:
        cls = config.CLASSES.index(spec.only_class)
        train_idx = train_idx[data.y[train_idx] == cls]
        val_idx = split.val[data.y[split.val] == cls]
    else:
        val_idx = split.val
    train_idx = subsample_majority(data.y, train_idx, spec.cap_per_class, seed=spec.seed)
    rng = np.random.default_rng(spec.seed)
    train_idx = rng.permutation(train_idx)

    model = build_spec(name)
    is_ae = spec.builder == "attention_autoencoder"
    X_tr, X_val = data.X[train_idx], data.X[val_idx]
    if is_ae:
        pool = spec.kwargs.get("pool", 4)
        y_tr, y_val = pool_beats(X_tr, pool), pool_beats(X_val, pool)
        loss, metrics, weights = "mse", [], None
    else:
        y_tr, y_val = data.y[train_idx], data.y[val_idx]
        loss, metrics = "sparse_categorical_crossentropy", ["accuracy"]
        weights = class_weights(y_tr)
    model.compile(optimizer=keras.optimizers.Adam(spec.learning_rate), loss=loss,
                  metrics=metrics)
    callbacks = [
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=spec.patience,
                                      restore_best_weights=True),
        keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.3, patience=2),
        time_limit(spec.max_minutes),
    ]
    start = time.perf_counter()
    hist = model.fit(X_tr, y_tr, validation_data=(X_val, y_val), epochs=spec.epochs,
                     batch_size=spec.batch_size, class_weight=weights, callbacks=callbacks,
                     shuffle=True, verbose=verbose)
    seconds = time.perf_counter() - start
    epochs_run = len(hist.history["loss"])
    prior = None
    if not is_ae:
        shift = prior_shift(data.y[split.train], y_tr, weights)
        lam = calibrate_prior(model, X_val, y_val, shift)
        prior = {"lambda": lam, "shift": [round(float(v), 4) for v in shift]}

    if is_ae:
        test_idx = split.test[data.y[split.test] == config.CLASSES.index(spec.only_class)]
        recon = model.predict(data.X[test_idx], batch_size=1024, verbose=0)
        target = pool_beats(data.X[test_idx], spec.kwargs.get("pool", 4))
        test_metrics = {"test_mse_normal": float(np.mean((recon - target) ** 2))}
    else:
        test_metrics = evaluate_model(model, data.X[split.test], data.y[split.test])

    folder = model_dir(name)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_weights(folder / "model.weights.h5")
    history = {k: [round(float(v), 6) for v in vals] for k, vals in hist.history.items()}
    (folder / "history.json").write_text(json.dumps(history, indent=1))
    cfg = {
        "name": name,
        "spec": asdict(spec),
        "beats": beat_settings(),
        "n_train": int(len(train_idx)),
        "n_val": int(len(val_idx)),
        "epochs_run": epochs_run,
        "train_seconds": round(seconds, 1),
        "beats_per_second": round(len(train_idx) * epochs_run / seconds, 1),
        "prior_correction": prior,
        "test": test_metrics,
        "environment": {"tensorflow": tf.__version__, "keras": keras.__version__,
                        "python": platform.python_version(), "machine": platform.machine(),
                        "cpus": os.cpu_count()},
    }
    cfg["weights_sha256"] = sha256_file(folder / "model.weights.h5")
    (folder / "config.json").write_text(json.dumps(cfg, indent=1))
    return seal_config(folder)


#: Key of ``config.json`` that holds the SHA-256 of everything else in it.
CONFIG_CHECKSUM_KEY = "config_sha256"


def config_digest(cfg: dict) -> str:
    """SHA-256 of a model config without :data:`CONFIG_CHECKSUM_KEY` (canonical JSON)."""
    body = {k: v for k, v in cfg.items() if k != CONFIG_CHECKSUM_KEY}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"))
                          .encode()).hexdigest()


def seal_config(folder: Path) -> dict:
    """Add the checksum of ``folder/config.json`` to it (after training); returns the config.
    Its metrics (``test`` and the like) are shown by the notebooks, so they are covered like
    the weights: :func:`check_config` refuses a file edited afterwards."""
    path = Path(folder) / "config.json"
    cfg = json.loads(path.read_text())
    cfg[CONFIG_CHECKSUM_KEY] = config_digest(cfg)
    path.write_text(json.dumps(cfg, indent=1))
    return cfg


def check_config(cfg: dict, path: Path, name: str | Path) -> dict:
    """Raise :class:`ModelFileError` unless ``cfg`` (read from ``path``) matches its checksum."""
    stored = cfg.get(CONFIG_CHECKSUM_KEY)
    if not stored:
        raise ModelFileError(f"{path} records no {CONFIG_CHECKSUM_KEY}, so its metrics and "
                             f"settings cannot be verified. {_restore_hint(name)}")
    if config_digest(cfg) != stored:
        raise ModelFileError(f"{path} does not match the {CONFIG_CHECKSUM_KEY} it records: "
                             f"a value (e.g. a test metric) was edited. {_restore_hint(name)}")
    return cfg


class ModelFileError(ValueError):
    """A saved model file is missing, empty, truncated or altered (message: file, cause, fix)."""


def _restore_hint(name: str | Path) -> str:
    folder = Path(name) if isinstance(name, Path) else model_dir(name)
    try:
        shown = folder.relative_to(config.ROOT)
    except ValueError:
        shown = folder
    return (f"Restore the committed files with `git checkout -- {shown}/` or retrain with "
            f"`make models`.")


def read_config(name: str) -> dict:
    """The saved ``config.json`` of a trained model (clear error when missing or damaged)."""
    path = model_dir(name) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"No trained model {name!r} at {path}: run `make models`.")
    text = path.read_text(errors="replace")
    try:
        cfg = json.loads(text)
        if not isinstance(cfg, dict):
            raise ValueError("not a JSON object")
    except ValueError as err:
        cause = "is empty" if not text.strip() else f"is not valid JSON ({err})"
        raise ModelFileError(f"{path} {cause}: truncated or damaged. "
                             f"{_restore_hint(name)}") from None
    return check_config(cfg, path, name)


def read_history(name: str) -> dict[str, list[float]]:
    """Training history (per-epoch loss/metrics) of a trained model."""
    return json.loads((model_dir(name) / "history.json").read_text())


def verify_weights(name: str | Path, cfg: dict | None = None) -> Path:
    """Check ``model.weights.h5`` of ``name`` (a course model name, or a model folder such as a
    multimodal fold) against the SHA-256 in its ``config.json``.

    Raises :class:`ModelFileError` naming the file, the cause (missing, empty, other bytes
    than recorded: truncated, bit errors, or another model's weights copied over it) and the
    fix. Returns the weights path.
    """
    folder = Path(name) if isinstance(name, Path) else model_dir(name)
    if cfg is None:
        cfg = read_config(name) if not isinstance(name, Path) else json.loads(
            (folder / "config.json").read_text())
    weights = folder / "model.weights.h5"
    config_path = folder / "config.json"
    if not weights.is_file():
        raise ModelFileError(f"{weights} is missing. {_restore_hint(name)}")
    expected = cfg.get("weights_sha256")
    if not expected:
        raise ModelFileError(f"{config_path} records no weights_sha256, so {weights} cannot "
                             f"be verified. {_restore_hint(name)}")
    size = weights.stat().st_size
    if size == 0:
        raise ModelFileError(f"{weights} is empty (0 bytes). {_restore_hint(name)}")
    actual = sha256_file(weights)
    if actual != expected:
        raise ModelFileError(
            f"{weights} ({size} bytes) does not match the SHA-256 recorded in {config_path} "
            f"(expected {expected[:12]}..., got {actual[:12]}...): the file is truncated or "
            f"altered, or another model's weights were copied over it. {_restore_hint(name)}")
    return weights


def build_spec(name: str):
    """An untrained 8-class model of :data:`MODEL_SPECS` ``name``."""
    from utils.models.networks import BUILDERS  # lazy: TensorFlow loads only to build a model

    spec = _spec(name)
    return BUILDERS[spec.builder](**spec.kwargs)


def load_spec_model(name: str, retrain: bool = False, data: BeatData | None = None):
    """The committed 8-class model ``name`` of :data:`MODEL_SPECS` (retrained first when
    ``retrain=True``), after checking its config and weights; see
    :func:`utils.models.catalog.load_trained`, which loads a model of any family by name."""
    if retrain:
        train(name, data=data)
    cfg = read_config(name)
    expected = json.loads(json.dumps(asdict(_spec(name))))
    if cfg.get("spec") != expected or cfg.get("beats") != beat_settings():
        raise ValueError(
            f"Saved model {name!r} was trained with other settings than the current code "
            f"(saved {cfg.get('spec')} / {cfg.get('beats')}). Run `make models` to retrain it.")
    weights = verify_weights(name, cfg)
    model = build_spec(name)
    try:
        model.load_weights(weights)
    except Exception as err:  # verified bytes that still do not fit the architecture
        raise ModelFileError(f"{weights} could not be loaded into {name!r} "
                             f"({type(err).__name__}: {err}). {_restore_hint(name)}") from err
    return model
