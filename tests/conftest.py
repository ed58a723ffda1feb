"""Shared pytest fixtures: the MIT-BIH mirror and its beats (skipped with a reason when absent),
and tiny untrained models and random beats for the fast unit tests of the explainers."""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from utils.core import config
from utils.data import mitdb as data  # noqa: E402

#: The session fixture ``attacked``: ONE grading run of every malicious learner (two modules).
pytest_plugins = ["grading_attacks"]
from utils.core.config import LOGITS_LAYER  # noqa: E402


def _find_db():
    for candidate in (config.mitdb_env_dir(), config.DATA_DIR / "mitdb"):
        if candidate is not None and (candidate / "100.hea").is_file():
            return candidate
    return None


@pytest.fixture(scope="session")
def mitdb_dir():
    """Folder of the MIT-BIH database; tests needing it skip when it is absent (CI has it)."""
    path = _find_db()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must provide the database: set {config.MITDB_ENV}")
        pytest.skip(f"MIT-BIH not available: set {config.MITDB_ENV} or run `make data`")
    return path


@pytest.fixture(scope="session")
def mitdb_beats(mitdb_dir):
    """All beats of the database (from the cache after the first extraction)."""
    return data.load_beats(db_dir=mitdb_dir, progress=False)


# ------------------------------------------------------------------ tiny models, random beats
@pytest.fixture(scope="session")
def beats() -> np.ndarray:
    """Six random z-scored-like beats (6, WINDOW, 2), float32."""
    return np.random.default_rng(0).normal(size=(6, config.WINDOW, 2)).astype(np.float32)


def _random_head(model, rng: np.random.Generator) -> None:
    """A random bias of the logits layer, so that no identity holds by accident."""
    w, b = model.get_layer(LOGITS_LAYER).get_weights()
    model.get_layer(LOGITS_LAYER).set_weights([w, rng.normal(size=b.shape).astype(np.float32)])


@pytest.fixture(scope="session")
def fcn():
    """A tiny course FCN (8, 8, 16 filters) with non-trivial BatchNorm statistics and bias."""
    import keras

    from utils.models.networks import build_fcn

    keras.utils.set_random_seed(0)
    model = build_fcn(filters=(8, 8, 16))
    rng = np.random.default_rng(1)
    for layer in model.layers:
        if layer.name.endswith("_bn"):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([gamma * rng.uniform(0.5, 1.5, gamma.shape), beta + 0.1,
                               rng.normal(size=mean.shape) * 0.1,
                               var + rng.uniform(0.1, 1, size=var.shape)])
    _random_head(model, rng)
    return model


@pytest.fixture(scope="session")
def lstm():
    """A tiny course LSTM (8 units, 64 steps) with a random bias."""
    import keras

    from utils.models.networks import build_lstm

    keras.utils.set_random_seed(0)
    model = build_lstm(units=8)
    _random_head(model, np.random.default_rng(1))
    return model


@pytest.fixture(scope="session")
def attention_lstm():
    """A tiny LSTM + attention classifier (8 units, 4 attention units)."""
    import keras

    from utils.models.networks import build_lstm_attention

    keras.utils.set_random_seed(0)
    return build_lstm_attention(units=8, attention_units=4)


@pytest.fixture(scope="session")
def linear_model():
    """``logits = W . flatten(x) + b``: every explainer's right answer is known in closed form."""
    import keras

    inputs = keras.Input((config.WINDOW, 2), name="beat")
    x = keras.layers.Flatten()(inputs)
    logits = keras.layers.Dense(8, name=LOGITS_LAYER)(x)
    probs = keras.layers.Activation("softmax", name="probs")(logits)
    model = keras.Model(inputs, probs)
    rng = np.random.default_rng(3)
    model.get_layer(LOGITS_LAYER).set_weights([rng.normal(0, 0.05, (config.WINDOW * 2, 8)),
                                               rng.normal(0, 0.1, 8)])
    return model


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "class_workflow: heavy end-to-end runs of the instructor's class workflow "
        "(make test-class; make test deselects them)")
