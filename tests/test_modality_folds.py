"""Tests of utils.studies.modality_folds and the fold models of utils.models.multimodal (issue 15): the
patient-wise folds, the standardised-rhythm copy, multi-input IG, modality PFI, the exact
permutation p-value of Kendall's W, the fold analysis and the clinical table/figure on toy
models and tables (nothing is retrained here except one tiny toy fold)."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from utils.data import aami
from utils.core import config
from utils.models import multimodal as mm
from utils.studies import modality_folds as mf
from utils.assess.modality import MODALITIES
from utils.data.rhythm import RR_FEATURES

TINY = {"filters": (2, 2, 2), "rhythm_units": 3, "hidden": 4}


def _tiny_model(seed: int = 0, rr=None):
    import keras

    keras.utils.set_random_seed(seed)
    model = mm.build_multimodal(**TINY)
    rng = np.random.default_rng(seed)
    mm.fit_rhythm_norm(model, rr if rr is not None else rng.normal(1.0, 0.3, (200, 9)))
    return model


def _toy_beats(records=("100", "101", "103", "105", "106", "108"), n_per: int = 24, seed=0):
    rng = np.random.default_rng(seed)
    y = np.tile(np.repeat(np.arange(4), n_per // 4), len(records))
    n = len(y)
    X = rng.normal(0, 1, size=(n, config.WINDOW, 2)).astype(np.float32)
    X[:, 100:120, 0] += y[:, None]
    rr = rng.normal(1.0, 0.3, size=(n, len(RR_FEATURES))).astype(np.float32)
    rr[:, 7] -= 0.2 * y
    return aami.AamiBeats(X=X, y=y, symbol=np.array(list("NAVF"))[y],
                          record=np.repeat(list(records), n_per),
                          sample=np.tile(np.arange(n_per) * 300, len(records)),
                          rr=rr, mean=np.zeros((n, 2), np.float32),
                          std=np.ones((n, 2), np.float32))


# ------------------------------------------------------------------------------- folds
def test_cv_folds_partition_patients_and_keep_201_202_together():
    folds = mm.cv_folds()
    flat = [r for f in folds for r in f]
    assert sorted(flat) == sorted(mm.CV_RECORDS) and len(flat) == len(set(flat)) == 44
    assert not set(flat) & set(aami.PACED_RECORDS)
    assert any({"201", "202"} <= set(f) for f in folds)
    assert folds == mm.cv_folds()                                   # seeded
    with pytest.raises(ValueError):
        mm.cv_folds(k=1)


def test_cv_folds_stratify_rare_classes():
    """Five records hold all SVEB beats: each fold gets one of them; sizes differ by <= 1."""
    records = [str(r) for r in (100, 101, 103, 105, 106, 108, 109, 111, 112, 113, 114, 115,
                                116, 117, 118, 119, 121, 122, 123, 124)]
    beats = _toy_beats(records, n_per=8)
    rich = records[:5]
    y = np.where(np.isin(beats.record, rich), 1, 0)
    beats = dataclasses.replace(beats, y=y)
    folds = mm.cv_folds(beats, records, k=5)
    assert sorted(len(set(f) & set(rich)) for f in folds) == [1] * 5
    assert max(map(len, folds)) - min(map(len, folds)) <= 1


def test_fold_models_are_registered():
    from utils.models import training
    from utils.models import catalog

    assert set(mm.FOLDS) <= set(catalog.all_names())
    assert all(mm.SPECS[n] == mm.FOLD_SPEC for n in mm.FOLDS)
    assert len(mm.FOLDS) == mm.FOLD_K >= 5


def test_train_fold_on_toy_records(tmp_path, monkeypatch):
    """The `make models` path of a fold: test part never trained on or validated on, saved
    predictions aligned with the test beats, weights hash recorded and checked."""
    records = ("100", "101", "103", "105", "106", "108", "109", "111")
    beats = _toy_beats(records, n_per=16)
    spec = dataclasses.replace(mm.FOLD_SPEC, kwargs=TINY, epochs=1, cap_per_class=10,
                               n_val_records=1, max_minutes=1)
    monkeypatch.setattr(mm, "CV_RECORDS", records)
    monkeypatch.setattr(mm, "FOLD_K", 2)
    monkeypatch.setitem(mm.FOLDS, "toy_fold", 1)
    monkeypatch.setitem(mm.SPECS, "toy_fold", spec)
    monkeypatch.setattr(config, "MODELS_DIR", tmp_path)
    monkeypatch.setattr(mm, "validation_records",
                        lambda b, pool, n, seed, test_records: (pool[0],))
    cfg = mm.train_named("toy_fold", beats=beats, verbose=0)
    test = set(cfg["test_records"])
    assert test == set(mm.cv_folds(beats, records, 2)[1])
    assert not test & (set(cfg["train_records"]) | set(cfg["val_records"]))
    assert len(cfg["weights_sha256"]) == 64
    saved = mm.load_fold_predictions("toy_fold")
    part = beats.of_records(cfg["test_records"])
    assert np.array_equal(saved["sample"], part.sample) and len(saved["pred"]) == len(part)
    model = mm.load_named("toy_fold")
    assert np.array_equal(mm.predict(model, part), saved["pred"])
    (tmp_path / "toy_fold" / "model.weights.h5").write_bytes(b"broken")
    with pytest.raises(ValueError, match="SHA-256"):
        mm.load_named("toy_fold")


@pytest.mark.parametrize("name", sorted(mm.FOLDS))
def test_committed_fold_models(name):
    """The committed fold weights match their hash; the test parts partition the records."""
    from utils.models import training

    cfg = training.read_config(name)
    training.verify_weights(name, cfg)
    assert cfg["fold"] == mm.FOLDS[name] and cfg["k"] == mm.FOLD_K
    assert not set(cfg["test_records"]) & (set(cfg["train_records"]) | set(cfg["val_records"]))
    everyone = set(cfg["test_records"]) | set(cfg["train_records"]) | set(cfg["val_records"])
    assert everyone == set(mm.CV_RECORDS)
    others = [training.read_config(n)["test_records"] for n in mm.FOLDS if n != name]
    assert not any(set(o) & set(cfg["test_records"]) for o in others)
    assert cfg["train_seconds"] < 5 * 60
    saved = mm.load_fold_predictions(name)
    assert sorted(set(saved["record"])) == sorted(cfg["test_records"])
    assert len(saved["pred"]) == cfg["test_fold"]["n"]


def test_fold_metrics_of_committed_models():
    table = mf.fold_metrics()
    assert list(table["fold"]) == list(mm.FOLDS)
    assert table["test_records"].sum() == len(mm.CV_RECORDS)
    assert ((table["SVEB Se"] >= 0) & (table["SVEB Se"] <= 1)).all()


# ------------------------------------------------------------------- model and explainers
def test_standardised_model_is_the_same_function():
    from utils.core.explain import predict_scores

    model = _tiny_model()
    beats = _toy_beats(n_per=4)
    net = mf.standardised_model(model)
    a = predict_scores(model, [beats.X, beats.rr], "logits")
    b = predict_scores(net, [beats.X, mf.standardise_rhythm(model, beats.rr)], "logits")
    assert np.allclose(a, b, atol=1e-4)
    assert net.get_layer("rhythm_norm").__class__.__name__ == "Activation"


def _linear_two_input():
    """logits = W_b . mean_t(beat) + W_r . rhythm (no hidden ReLU): IG is exact."""
    import keras
    from keras import layers

    beat = keras.Input((config.WINDOW, 2), name="beat")
    rhythm = keras.Input((9,), name="rhythm")
    g = layers.GlobalAveragePooling1D(name="gap")(beat)
    x = layers.Concatenate(name="fusion")([g, rhythm])
    logits = layers.Dense(4, name="logits")(x)
    probs = layers.Activation("softmax", name="probs")(logits)
    model = keras.Model([beat, rhythm], probs)
    w = np.random.default_rng(1).normal(size=(11, 4)).astype(np.float32)
    model.get_layer("logits").set_weights([w, np.zeros(4, np.float32)])
    return model, w


def test_multi_input_ig_is_exact_on_a_linear_model_and_complete():
    model, w = _linear_two_input()
    rng = np.random.default_rng(2)
    X = rng.normal(size=(5, config.WINDOW, 2)).astype(np.float32)
    r = rng.normal(size=(5, 9)).astype(np.float32)
    t = np.array([0, 1, 2, 3, 1])
    exp = mf.integrated_gradients_multi(model, [X, r], t, n_steps=8)
    beat_attr, rhythm_attr = exp.extras["inputs"]
    assert np.allclose(rhythm_attr, r * w[2:, t].T, atol=1e-5)
    assert np.allclose(beat_attr, X * w[None, :2, t].transpose(2, 0, 1) / config.WINDOW,
                       atol=1e-6)
    assert np.abs(exp.delta).max() < 1e-4
    # a ReLU network: completeness holds up to the quadrature error
    model = mf.standardised_model(_tiny_model())
    exp = mf.integrated_gradients_multi(model, [X, r], t, n_steps=64)
    assert np.abs(exp.delta).max() < 0.05 * max(1.0, np.abs(exp.score_change).max())


def test_a_disconnected_modality_gets_no_relevance():
    """Zero the rhythm branch's weights: LRP and IG give the rhythm features no share,
    and its permutation changes nothing."""
    model = _tiny_model()
    dense = model.get_layer("rhythm_dense")
    dense.set_weights([np.zeros_like(w) for w in dense.get_weights()])
    beats = _toy_beats(n_per=8)
    targets = np.zeros(len(beats), dtype=int)
    out = mf.explain_modalities(model, beats.X, beats.rr, targets, ig_steps=8)
    for method in mf.METHODS:
        shares, _ = out[method]
        assert shares[MODALITIES[2]].max() == pytest.approx(0.0, abs=1e-9)
        assert np.allclose(shares.sum(axis=1), 1.0)
    pfi = mf.modality_pfi(model, [beats.X, beats.rr], beats.y, repeats=2)
    rhythm = pfi[pfi.modality == MODALITIES[2]]
    assert np.allclose(rhythm["drop"], 0.0)
    assert set(pfi["class"]) == set(mf.CLASSES)


# ------------------------------------------------------------------------ consistency
def test_permutation_p_of_kendalls_w():
    # two raters, three items: identical rankings happen with probability 1/3! = 1/6
    assert mf.kendalls_w_permutation_p(1.0, 2, 3) == pytest.approx(1 / 6)
    assert mf.kendalls_w_permutation_p(0.0, 5, 3) == pytest.approx(1.0)
    assert mf.kendalls_w_permutation_p(1.0, 5, 3) == pytest.approx(6 / 6 ** 5)
    # Monte-Carlo branch (too many rankings to enumerate) agrees with the chi-square roughly
    from utils.assess.modality import kendalls_w

    r = np.random.default_rng(0).normal(size=(6, 6))
    k = kendalls_w(r)
    p = mf.kendalls_w_permutation_p(k.w, 6, 6, n_perm=5000)
    assert abs(p - k.p) < 0.1


def _tables(rankings, n=5):
    """fold -> class table from per-fold share triples for one class 'N'."""
    return {f"f{i}": pd.DataFrame([list(s) + [n]], index=pd.Index(["N"], name="class"),
                                  columns=[*MODALITIES, "n"])
            for i, s in enumerate(rankings)}


def test_consistency_of_agreeing_and_disagreeing_folds():
    same = mf.consistency(_tables([(0.5, 0.2, 0.3)] * 4)).set_index("class")
    assert same.loc["N", "W"] == pytest.approx(1.0)
    assert same.loc["N", "p_perm"] == pytest.approx(6 / 6 ** 4)
    assert same.loc["N", "mean_sd"] == pytest.approx(0.0)
    mixed = mf.consistency(_tables([(0.5, 0.2, 0.3), (0.2, 0.5, 0.3), (0.3, 0.2, 0.5),
                                    (0.2, 0.3, 0.5)])).set_index("class")
    assert mixed.loc["N", "W"] < 0.5 and mixed.loc["N", "p_perm"] > 0.2
    assert mixed.loc["N", "mean_sd"] > 0.05


# ------------------------------------------------------------------- analysis on toy folds
@pytest.fixture()
def toy_folds(tmp_path, monkeypatch):
    """Three toy 'fold models' (random tiny networks) with saved configs and predictions."""
    monkeypatch.setattr(config, "MODELS_DIR", tmp_path)
    beats = _toy_beats(("100", "101", "103", "105", "106", "108"), n_per=24)
    folds = [("100", "101"), ("103", "105"), ("106", "108")]
    models = {}
    for i, recs in enumerate(folds):
        name = f"toy{i}"
        model = _tiny_model(seed=i, rr=beats.rr)
        models[name] = model
        part = beats.of_records(recs)
        pred = mm.predict(model, part)
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text(json.dumps({
            "test_records": list(recs), "test_fold": {"accuracy": 0.5}, "train_seconds": 1}))
        np.savez_compressed(tmp_path / name / mm.PREDICTIONS_FILE, record=part.record,
                            sample=part.sample, y=part.y, pred=pred)
    return beats, models


def test_fold_modality_analysis_tables(toy_folds):
    beats, models = toy_folds
    res = mf.fold_modality_analysis(list(models), beats, per_record_correct=2,
                                    per_record_incorrect=2, ig_steps=8, pfi_per_record=4,
                                    matched_draws=3, load_model=models.get)
    b = res.beats
    assert set(b["method"]) == {"lrp", "ig"} and set(b["fold"]) == set(models)
    shares = b[list(MODALITIES)].dropna()          # NaN: a beat with no relevance at all
    assert len(shares) > 0.8 * len(b) and np.allclose(shares.sum(axis=1), 1.0)
    # every explained beat is a test beat of its own fold, and 'correct' means pred == class
    for name, recs in zip(models, [("100", "101"), ("103", "105"), ("106", "108")]):
        assert set(b[b.fold == name]["record"]) <= set(recs)
    assert ((b["pred"] == b["class"]) == (b["outcome"] == "correct")).all()
    # at most 2 beats per record, class and outcome (stratified by record)
    assert b.groupby(["method", "fold", "record", "class", "outcome"]).size().max() <= 2
    assert {"W", "p_perm", "mean_sd", "outcome", "method"} <= set(res.concordance.columns)
    assert set(res.spread["modality"]) == set(MODALITIES)
    assert (res.shares["n"] > 0).all()
    assert set(res.pfi["modality"]) == set(MODALITIES)
    assert len(res.metrics) == 3 and res.seconds["total"] > 0
    assert (res.samples["beats"] <= res.samples["beats_available"]).all()
    assert set(res.samples["class"]) == set(mf.CLASSES)
    explained = b[b.method == "lrp"].groupby(["fold", "outcome"]).size()
    assert (res.samples.groupby(["fold", "outcome"])["beats"].sum() == explained).all()
    summary = res.summary()
    assert {"W correct", "W incorrect", "W correct, matched n", "p_perm correct"} <= set(
        summary.columns)


def test_record_shares_clinical_tests_and_figure(toy_folds):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from utils.data.clinical import MEDICATION_CLASSES
    from utils.plotting import DIVERGING_CMAP, MIN_FONT_SIZE, use_course_style

    beats, models = toy_folds
    shares = mf.record_modality_shares(list(models), beats, per_record=4, classes=None,
                                       correct_only=False, load_model=models.get)
    assert sorted(shares.index) == ["100", "101", "103", "105", "106", "108"]
    assert np.allclose(shares[list(MODALITIES)].dropna().sum(axis=1), 1.0)
    assert (shares["n_beats"] <= 16).all()
    recs = list(shares.index)
    table = pd.DataFrame({"patient": recs, "age": pd.array([30, 40, 50, 60, 70, 80], "Int64"),
                          "sex": ["F", "M", "F", "M", "F", "M"]}, index=recs)
    for c in MEDICATION_CLASSES:
        table[c] = pd.array([True, True, True, False, False, False], dtype="boolean")
    tests = mf.clinical_associations(shares, table)
    assert set(tests["outcome"]) == set(MODALITIES)
    assert tests["p_bh"].notna().any()
    use_course_style()
    fig = mf.plot_clinical(shares, tests, table)
    heat = fig.axes[0].images[0]
    assert heat.get_cmap().name == DIVERGING_CMAP
    assert heat.norm.vcenter == 0 and heat.norm.vmin == -1 and heat.norm.vmax == 1
    assert len(fig.axes) == 3                       # two panels and the colour bar
    for text in fig.findobj(matplotlib.text.Text):
        if text.get_text():
            assert text.get_fontsize() >= MIN_FONT_SIZE
    plt.close(fig)
