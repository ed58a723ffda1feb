"""Tests of utils.data.aami: class mapping, splits, Se/+P/FPR on a hand-made confusion matrix,
kappa, the j/jk indices, per-record results, the bootstrap over records and the beat set."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score

from utils.data import aami
from utils.models import baseline
from utils.core import config
from utils.data import mitdb as data

# rows = reference N, SVEB, VEB, F, Q; columns = predicted
CM = np.array([[90, 5, 3, 2, 0],
               [4, 16, 0, 0, 0],
               [1, 0, 18, 1, 0],
               [0, 0, 2, 8, 0],
               [1, 0, 0, 0, 1]])


def _labels(cm):
    """Expand a confusion matrix into (y_true, y_pred)."""
    rows, cols = np.nonzero(cm)
    reps = cm[rows, cols]
    return np.repeat(rows, reps), np.repeat(cols, reps)


def test_symbol_mapping():
    assert aami.to_aami(list("NLRej")).tolist() == [0] * 5
    assert aami.to_aami(list("AaJS")).tolist() == [1] * 4
    assert aami.to_aami(list("VE")).tolist() == [2, 2]
    assert aami.to_aami(["F"]).tolist() == [3]
    assert aami.to_aami(list("/fQ")).tolist() == [4] * 3
    assert aami.to_aami(list("B!+~r")).tolist() == [-1] * 5
    assert set(aami.EXTRA_SYMBOLS) == set("ejaJSEQ")
    # the 8 course classes map as the table says
    assert aami.course_to_aami(np.arange(8)).tolist() == aami.to_aami(config.CLASSES).tolist()


def test_ds1_ds2_are_de_chazal_without_paced_records():
    assert len(aami.DS1) == len(aami.DS2) == 22
    assert not set(aami.DS1) & set(aami.DS2)
    assert not (set(aami.DS1) | set(aami.DS2)) & set(aami.PACED_RECORDS)
    assert set(aami.DS1) | set(aami.DS2) | set(aami.PACED_RECORDS) == set(data.RECORDS)
    assert {"101", "209", "223"} <= set(aami.DS1) and {"100", "213", "232"} <= set(aami.DS2)


def test_se_ppv_fpr_on_hand_made_confusion_matrix():
    m = aami.class_metrics(CM)
    total = CM.sum()  # 152
    assert total == 152
    # SVEB: TP 16, FN 4, FP 5 (column), TN = 152 - 16 - 4 - 5
    assert m["SVEB"]["Se"] == pytest.approx(16 / 20)
    assert m["SVEB"]["+P"] == pytest.approx(16 / 21)
    assert m["SVEB"]["FPR"] == pytest.approx(5 / (5 + 127))
    assert m["SVEB"]["n"] == 20
    # VEB with the AAMI exception: the 2 F beats called VEB are not false positives
    assert m["VEB"]["Se"] == pytest.approx(18 / 20)
    assert m["VEB"]["+P"] == pytest.approx(18 / 21)
    assert m["VEB"]["FPR"] == pytest.approx(3 / (3 + 127))
    plain = aami.class_metrics(CM, f_as_veb_exception=False)
    assert plain["VEB"]["+P"] == pytest.approx(18 / 23)
    assert plain["VEB"]["FPR"] == pytest.approx(5 / 132)
    # N and F
    assert m["N"]["Se"] == pytest.approx(0.9) and m["N"]["+P"] == pytest.approx(90 / 96)
    assert m["F"]["Se"] == pytest.approx(0.8) and m["F"]["+P"] == pytest.approx(8 / 11)
    # a class never predicted has an undefined +P
    empty = CM.copy()
    empty[:, 4] = 0
    assert np.isnan(aami.class_metrics(empty)["Q"]["+P"])


def test_score_accuracy_kappa_and_indices():
    y_true, y_pred = _labels(CM)
    res = aami.score(y_true, y_pred)
    assert res["confusion"] == CM.tolist()
    assert res["accuracy"] == pytest.approx(np.trace(CM) / CM.sum())
    assert res["kappa"] == pytest.approx(cohen_kappa_score(y_true, y_pred))
    j = 16 / 20 + 18 / 20 + 16 / 21 + 18 / 21
    assert res["j_index"] == pytest.approx(j)
    assert res["jk_index"] == pytest.approx(0.5 * res["kappa"] + 0.125 * j)
    perfect = aami.score(y_true, y_true)
    assert perfect["kappa"] == pytest.approx(1) and perfect["jk_index"] == pytest.approx(1)
    with pytest.raises(ValueError):
        aami.score(np.array([0, 5]), np.array([0, 0]))
    with pytest.raises(ValueError):
        aami.score(np.array([0, 1]), np.array([0]))


def _two_records():
    """Record 'a': every SVEB found; record 'b': none found (all called N)."""
    y_true = np.array([0] * 50 + [1] * 10 + [0] * 50 + [1] * 10)
    y_pred = np.array([0] * 50 + [1] * 10 + [0] * 50 + [0] * 10)
    records = np.array(["a"] * 60 + ["b"] * 60)
    return y_true, y_pred, records


def test_per_record():
    y_true, y_pred, records = _two_records()
    table = aami.per_record(y_true, y_pred, records)
    assert list(table.index) == ["a", "b"]
    assert table.loc["a", "SVEB Se"] == 1 and table.loc["b", "SVEB Se"] == 0
    assert table.loc["b", "SVEB n"] == 10 and table.loc["a", "beats"] == 60
    assert np.isnan(table.loc["b", "SVEB +P"])  # nothing predicted as SVEB


def test_bootstrap_resamples_records():
    y_true, y_pred, records = _two_records()
    ci = aami.bootstrap(y_true, y_pred, records, n_boot=200)
    lo, hi = ci["SVEB Se"]
    # replicates hold aa (Se 1), ab/ba (0.5) or bb (0): the interval spans record-level spread
    assert lo == pytest.approx(0) and hi == pytest.approx(1)
    assert ci["SVEB +P"] == (pytest.approx(1), pytest.approx(1))  # bb replicates: undefined
    assert ci["n_boot"] == 200
    # one record: no spread
    one = aami.bootstrap(y_true[:60], y_pred[:60], records[:60], n_boot=50)
    assert one["SVEB Se"] == (pytest.approx(1), pytest.approx(1))
    # a beat-level resampling would give a narrow interval; the record-level one is wide
    assert hi - lo > 0.5


def test_symbol_recall_and_table():
    symbols = np.array(list("NNLLAAVV"))
    y_pred = np.array([0, 0, 0, 1, 1, 0, 2, 2])
    rec = aami.symbol_recall(symbols, y_pred)
    assert rec == {"N": 1.0, "L": 0.5, "A": 0.5, "V": 1.0}
    y_true, y_pred2 = _labels(CM)
    res = aami.score(y_true, y_pred2)
    records = np.array(["a", "b"] * (len(y_true) // 2))
    tab = aami.table({"toy": res}, {"toy": aami.bootstrap(y_true, y_pred2, records, 50)})
    assert tab.loc["toy", "SVEB Se"].startswith("80.0 [")
    quoted = [i for i in tab.index if "[quoted]" in i]
    assert len(quoted) == len(aami.QUOTED)
    assert tab.loc[quoted[0], "SVEB Se"] == "75.9" and tab.loc[quoted[0], "VEB +P"] == "81.9"
    assert tab.loc[quoted[1], "SVEB Se"] == ""  # not reported there: left empty


def test_load_aami_beats_adds_the_other_symbols(mitdb_dir, mitdb_beats):
    recs = ("124", "232")  # 124 holds J and j beats, 232 A beats after long pauses
    out = aami.load_aami_beats(recs, data=mitdb_beats, db_dir=mitdb_dir, use_cache=False)
    import wfdb

    for rec in recs:
        ann = wfdb.rdann(str(mitdb_dir / rec), "atr")
        sym = np.asarray(ann.symbol)
        mine = out.symbol[out.record == rec]
        for s in aami.SYMBOL_TO_AAMI:
            # every annotated beat of an AAMI symbol is there, up to the few at the edges
            assert abs(np.sum(mine == s) - np.sum(sym == s)) <= 2, (rec, s)
        assert np.all(np.diff(out.sample[out.record == rec]) > 0)
    assert {"J", "j"} <= set(out.symbol[out.record == "124"].tolist())
    assert np.array_equal(out.y, aami.to_aami(out.symbol))
    assert out.X.shape == (len(out), config.WINDOW, 2) and np.all(np.isfinite(out.X))
    assert out.rr.shape == (len(out), 9) and np.all(np.isfinite(out.rr))
    # the course-class beats are the cached ones, RR intervals as in BeatData
    sub = mitdb_beats.subset(np.flatnonzero(mitdb_beats.record == "232"))
    m = (out.record == "232") & np.isin(out.symbol, config.CLASSES)
    assert np.array_equal(out.sample[m], sub.sample)
    assert np.allclose(out.X[m], sub.X)
    inner = np.isfinite(sub.rr_prev)
    assert np.allclose(out.rr_prev[m][inner], sub.rr_prev[inner], atol=1e-5)
    with pytest.raises(ValueError):
        aami.load_aami_beats(("999",), data=mitdb_beats, db_dir=mitdb_dir, use_cache=False)


def test_baselines_on_toy_features():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 50)
    feats = rng.normal(size=(200, 3)) + y[:, None] * 8.0  # well separated classes
    feats[0, 0] = np.nan  # imputed
    train, test = np.arange(0, 200, 2), np.arange(1, 200, 2)
    for kind in ("tree", "1nn"):
        pred = baseline.fit_predict_baseline(kind, feats, y, train, test)
        assert pred.shape == test.shape and np.mean(pred == y[test]) > 0.9
    # Q beats are never trained on
    yq = y.copy()
    yq[:10] = 4
    assert 4 not in baseline.fit_predict_baseline("1nn", feats, yq, np.arange(200), np.arange(200))
    with pytest.raises(ValueError):
        baseline.fit_predict_baseline("svm", feats, y, train, test)


def test_holdout_split_is_intra_patient():
    y = np.array([0, 1, 2, 3] * 25)
    recs = np.array((list(aami.DS1[:2]) + list(aami.DS2[:2])) * 25)
    toy = aami.AamiBeats(X=np.zeros((100, 1, 2)), y=y, symbol=np.array(["N"] * 100),
                         record=recs, sample=np.arange(100), rr=np.ones((100, 9)),
                         mean=np.zeros((100, 2)), std=np.ones((100, 2)))
    train, test = baseline.holdout_records_split(toy, test_size=0.2)
    assert len(test) == 20 and not set(train) & set(test)
    assert set(recs[train]) == set(recs[test])  # the same patients on both sides
