"""Tests of utils.models.training: class weights, pooling, save/load round trip and config checks."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from utils.core import config
from utils.models import training
from utils.models import catalog


def test_class_weights_favour_rare_classes():
    y = np.array([0] * 90 + [1] * 10)
    w = training.class_weights(y)
    assert set(w) == {0, 1}
    assert w[1] > w[0]
    assert np.isclose(np.mean(list(w.values())), 1.0)
    assert np.isclose(w[1] / w[0], 3.0)  # sqrt(90 / 10)


def test_pool_beats():
    X = np.arange(16, dtype=float).reshape(1, 8, 2)
    pooled = training.pool_beats(X, 4)
    assert pooled.shape == (1, 2, 2)
    assert pooled[0, 0, 0] == np.mean([0, 2, 4, 6])
    with pytest.raises(ValueError):
        training.pool_beats(X, 3)


def test_unknown_model_name():
    with pytest.raises(ValueError, match="Unknown model"):
        catalog.build("resnet")


@pytest.fixture()
def tiny_spec(monkeypatch, tmp_path):
    """Register a tiny model spec and redirect the models folder to tmp_path."""
    spec = training.ModelSpec("fcn", "holdout", kwargs={"filters": (4, 4, 4)}, epochs=1,
                              cap_per_class=30, max_minutes=1)
    monkeypatch.setitem(training.MODEL_SPECS, "tiny", spec)
    monkeypatch.setattr(config, "MODELS_DIR", tmp_path)
    return spec


def _small(beats):
    """Beats of six records that together hold all 8 classes (fast to train on)."""
    return beats.subset(np.flatnonzero(np.isin(beats.record, ["100", "106", "207", "208",
                                                              "217", "212"])))


def test_train_save_load_round_trip(tiny_spec, mitdb_beats):
    small = _small(mitdb_beats)
    cfg = training.train("tiny", data=small, verbose=0)
    assert cfg["epochs_run"] == 1 and 0 <= cfg["test"]["accuracy"] <= 1
    assert len(training.read_history("tiny")["loss"]) == 1
    model = catalog.load_trained("tiny")
    from utils.models.networks import predict_proba
    X = small.X[:5]
    again = catalog.load_trained("tiny")
    np.testing.assert_allclose(predict_proba(model, X), predict_proba(again, X), atol=1e-6)


def test_load_refuses_stale_config(tiny_spec, mitdb_beats, monkeypatch):
    training.train("tiny", data=_small(mitdb_beats), verbose=0)
    changed = dataclasses.replace(tiny_spec, epochs=2)
    monkeypatch.setitem(training.MODEL_SPECS, "tiny", changed)
    with pytest.raises(ValueError, match="make models"):
        catalog.load_trained("tiny")


def test_missing_model_message(tiny_spec):
    with pytest.raises(FileNotFoundError, match="make models"):
        training.read_config("tiny")


@pytest.mark.parametrize("name", sorted(training.MODEL_SPECS))
def test_committed_models_match_code(name):
    """The committed weights were trained with the current spec and beat settings."""
    path = training.model_dir(name) / "config.json"
    if not path.is_file():
        pytest.fail(f"{name} has no committed weights: run `make models`")
    cfg = json.loads(path.read_text())
    assert cfg["spec"] == json.loads(json.dumps(dataclasses.asdict(training.MODEL_SPECS[name])))
    assert cfg["beats"]["window"] == config.WINDOW
    catalog.load_trained(name)  # raises on any mismatch


def test_prior_shift_undoes_subsampling_and_weights():
    y_full = np.array([0] * 900 + [1] * 100)
    y_trained = np.array([0] * 100 + [1] * 100)  # N subsampled to balance
    shift = training.prior_shift(y_full, y_trained, {0: 1.0, 1: 1.0})
    # log(0.9 / 0.5) and log(0.1 / 0.5) for the present classes, 0 for absent ones
    np.testing.assert_allclose(shift[:2], np.log([0.9 / 0.5, 0.1 / 0.5]))
    assert (shift[2:] == 0).all()


def test_calibrate_prior_moves_only_the_logit_bias():
    from utils.core.explain import predict_scores
    from utils.models.networks import build_fcn

    model = build_fcn(filters=(4, 4, 4))
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, config.WINDOW, 2)).astype(np.float32)
    before = predict_scores(model, X)
    shift = np.zeros(len(config.CLASSES))
    shift[0] = 100.0  # a huge push towards class 0 makes every prediction N
    y = np.zeros(40, dtype=int)
    lam = training.calibrate_prior(model, X, y, shift)
    after = predict_scores(model, X)
    assert lam > 0
    np.testing.assert_allclose(after - before, np.broadcast_to(lam * shift, after.shape),
                               atol=1e-3)
