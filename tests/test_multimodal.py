"""Tests of utils.models.multimodal: the builder's variants and contract, normalisation, inputs,
patient-wise training on given records and the save/load round trip (tiny models)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from utils.data import aami
from utils.core import config
from utils.models import multimodal as mm
from utils.data.rhythm import RR_FEATURES

TINY = {"filters": (2, 2, 2), "rhythm_units": 3, "hidden": 4}


def test_variants_inputs_and_logits():
    import keras

    both = mm.build_multimodal(**TINY)
    assert [t.name.split(":")[0] for t in both.inputs] == ["beat", "rhythm"]
    assert both.get_layer("logits").get_config()["activation"] == "linear"
    assert both.output.shape[-1] == len(mm.OUTPUT_CLASSES) == 4
    # the same CNN branch as the course's FCN (shared code, same layer names)
    assert both.get_layer("conv_last_conv").get_config()["dilation_rate"] == (16,)
    morph = mm.build_multimodal(("beat",), **TINY)
    assert [t.name.split(":")[0] for t in morph.inputs] == ["beat"]
    assert "conv_last" in {layer.name for layer in morph.layers}
    with pytest.raises(ValueError):
        morph.get_layer("rhythm_dense")
    rhythm = mm.build_multimodal(("rhythm",), **TINY)
    assert rhythm.input_shape == (None, len(RR_FEATURES))
    assert not any(isinstance(la, keras.layers.Conv1D) for la in rhythm.layers)
    # input order is canonical whatever order the caller gives
    swapped = mm.build_multimodal(("rhythm", "beat"), **TINY)
    assert [t.name.split(":")[0] for t in swapped.inputs] == ["beat", "rhythm"]
    for bad in ((), ("beat", "beat"), ("ecg",)):
        with pytest.raises(ValueError):
            mm.build_multimodal(bad)


def test_probs_softmax_of_logits_and_explain_contract():
    from utils.core.explain import predict_scores

    model = mm.build_multimodal(**TINY)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(5, config.WINDOW, 2)).astype(np.float32)
    rr = rng.uniform(0.5, 1.5, size=(5, len(RR_FEATURES))).astype(np.float32)
    probs = mm.predict_proba(model, X, rr)
    assert np.allclose(probs.sum(1), 1, atol=1e-5)
    logits = predict_scores(model, mm.model_inputs(model, X, rr), output="logits")
    e = np.exp(logits - logits.max(1, keepdims=True))
    assert np.allclose(e / e.sum(1, keepdims=True), probs, atol=1e-5)


def test_rhythm_normalisation_is_fitted_and_saved(tmp_path):
    model = mm.build_multimodal(("rhythm",), **TINY)
    rng = np.random.default_rng(1)
    rr = rng.normal(3.0, 2.0, size=(500, len(RR_FEATURES)))
    mm.fit_rhythm_norm(model, rr)
    import keras

    norm = keras.Model(model.inputs, model.get_layer("rhythm_norm").output)
    z = norm.predict(rr.astype(np.float32), verbose=0)
    assert np.allclose(z.mean(0), 0, atol=1e-3) and np.allclose(z.std(0), 1, atol=1e-2)
    mm.fit_rhythm_norm(mm.build_multimodal(("beat",), **TINY), rr)  # no rhythm input: no-op


def _toy_beats(n_per=60, seed=0):
    """Six records; class visible in the rhythm features (pre_rr_local) and in the beat."""
    rng = np.random.default_rng(seed)
    recs = ["101", "106", "108", "109", "112", "114"]
    y = np.tile(np.repeat(np.arange(4), n_per // 4), len(recs))
    n = len(y)
    X = rng.normal(0, 0.1, size=(n, config.WINDOW, 2)).astype(np.float32)
    X[:, 100:120, 0] += y[:, None]
    rr = rng.uniform(0.9, 1.1, size=(n, len(RR_FEATURES))).astype(np.float32)
    rr[:, 7] = 1.0 - 0.15 * y
    return aami.AamiBeats(X=X, y=y, symbol=np.array(list("NAVF"))[y],
                          record=np.repeat(recs, n_per), sample=np.tile(np.arange(n_per), 6),
                          rr=rr, mean=np.zeros((n, 2), np.float32),
                          std=np.ones((n, 2), np.float32))


def test_train_on_records_save_load(tmp_path):
    beats = _toy_beats()
    spec = dataclasses.replace(mm.MultimodalSpec(), kwargs=TINY, epochs=2, cap_per_class=30,
                               max_minutes=1)
    model, info = mm.train_on_records(beats, ["101", "106", "108", "109"], ["112"], spec)
    assert info["train_records"] == ["101", "106", "108", "109"]
    assert info["n_train"] == 4 * 30 and info["epochs_run"] >= 1
    assert 0 <= info["val"]["accuracy"] <= 1
    with pytest.raises(ValueError, match="overlap"):
        mm.train_on_records(beats, ["101", "112"], ["112"], spec)
    mm.save(model, tmp_path / "fold0", spec, info)
    again = mm.load(tmp_path / "fold0", spec)
    test = beats.of_records(["114"])
    assert np.allclose(mm.predict_proba(model, test.X, test.rr),
                       mm.predict_proba(again, test.X, test.rr), atol=1e-5)
    other = dataclasses.replace(spec, epochs=3)
    with pytest.raises(ValueError, match="other settings"):
        mm.load(tmp_path / "fold0", other)
    # the weights are verified against the SHA-256 in config.json, as for every course model
    weights = tmp_path / "fold0" / "model.weights.h5"
    raw = bytearray(weights.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    weights.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="does not match the SHA-256"):
        mm.load(tmp_path / "fold0", spec)


def test_validation_records_come_from_training_records():
    beats = _toy_beats()
    val = mm.validation_records(beats, ["101", "106", "108", "109", "112", "114"], n_val=2)
    assert len(val) == 2 and set(val) <= {"101", "106", "108", "109", "112", "114"}
    with pytest.raises(ValueError, match="DS2"):
        mm.validation_records(beats, aami.DS2)


def test_registered_in_training():
    from utils.models import training
    from utils.models import catalog

    names = catalog.all_names()
    assert {"multimodal_ds1", "morphology_ds1", "rhythm_ds1"} <= set(names)
    assert set(training.MODEL_SPECS) <= set(names)
    model = catalog.build("rhythm_ds1")
    assert [t.name.split(":")[0] for t in model.inputs] == ["rhythm"]
    assert model.get_layer("logits").units == len(mm.OUTPUT_CLASSES)


def test_patient_folds_partition_records():
    folds = mm.patient_folds(aami.DS1, k=5)
    assert len(folds) == 5
    flat = [r for f in folds for r in f]
    assert sorted(flat) == sorted(aami.DS1) and len(set(flat)) == len(flat)
    assert {len(f) for f in folds} <= {4, 5}
    assert folds == mm.patient_folds(aami.DS1, k=5)  # seeded
    with pytest.raises(ValueError):
        mm.patient_folds(aami.DS1, k=1)


def test_train_named_scores_ds2_once_and_saves(monkeypatch, tmp_path):
    """The `make models` path on toy beats: DS1 records train, DS2 records are only scored."""
    toy = _toy_beats(n_per=40)
    recs = np.array(list(aami.DS1[:6]) + ["100", "232"])
    toy = aami.AamiBeats(X=np.concatenate([toy.X, toy.X[:80]]),
                         y=np.concatenate([toy.y, toy.y[:80]]),
                         symbol=np.concatenate([toy.symbol, toy.symbol[:80]]),
                         record=np.repeat(recs, 40), sample=np.tile(np.arange(40), 8),
                         rr=np.concatenate([toy.rr, toy.rr[:80]]),
                         mean=np.zeros((320, 2)), std=np.ones((320, 2)))
    spec = dataclasses.replace(mm.MultimodalSpec(), kwargs=TINY, epochs=1, cap_per_class=20,
                               n_val_records=2, max_minutes=1)
    monkeypatch.setitem(mm.SPECS, "tiny_mm", spec)
    monkeypatch.setattr(config, "MODELS_DIR", tmp_path)
    cfg = mm.train_named("tiny_mm", beats=toy, verbose=0)
    assert not set(cfg["train_records"]) & set(aami.DS2)
    assert not set(cfg["val_records"]) & set(aami.DS2)
    test = cfg["test_ds2"]
    assert 0 <= test["accuracy"] <= 1 and sum(map(sum, test["confusion"])) == 80
    lo, hi = test["bootstrap_95"]["accuracy"]
    assert lo <= test["accuracy"] <= hi or lo == hi
    model = mm.load_named("tiny_mm")   # the saved weights, checked against the saved config
    assert model.get_layer("logits").units == len(mm.OUTPUT_CLASSES)
    again = mm.load_named("tiny_mm")
    for a, b in zip(model.get_weights(), again.get_weights()):
        np.testing.assert_array_equal(a, b)
