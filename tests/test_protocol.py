"""Tests of the DS1 selection protocol (utils.models.protocol, utils.models.protocol_model) on toy data with
known answers, and of the fold property on the real DS1 annotation counts."""
from __future__ import annotations

import importlib
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from utils.core import config
from utils.models import protocol as P
from utils.models import protocol_model as PM


def _labels(counts: dict[str, tuple[int, int, int]]):
    """Toy labels: record -> (N, SVEB, VEB) beats."""
    y, rec = [], []
    for r, (n, s, v) in counts.items():
        y += [0] * n + [1] * s + [2] * v
        rec += [r] * (n + s + v)
    return np.array(y), np.array(rec)


TOY = {"a": (10, 200, 0), "b": (10, 90, 5), "c": (10, 60, 50), "d": (10, 40, 0),
       "e": (10, 35, 1), "f": (10, 3, 0), "g": (10, 2, 7), "h": (10, 1, 0), "i": (10, 0, 30),
       "j": (10, 0, 0), "k": (10, 4, 0), "l": (10, 2, 0)}


def test_folds_serpentine_and_property():
    y, rec = _labels(TOY)
    folds = P.ds1_folds(y, rec, tuple(TOY), k=5)
    # the five richest records (a, b, c, d, e) go to different folds
    rich_fold = {r: i for i, f in enumerate(folds) for r in f if r in "abcde"}
    assert sorted(rich_fold.values()) == list(range(5))
    # serpentine: the 6th richest (k: 4 beats) joins the fold of the 5th (e), the 7th (f) the 4th
    assert "k" in folds[rich_fold["e"]] and "f" in folds[rich_fold["d"]]
    P.check_folds(folds, y, rec, tuple(TOY), rich=30)
    assert folds == P.ds1_folds(y, rec, tuple(TOY), k=5)      # deterministic


def test_check_folds_rejects_a_fold_with_one_sveb_record():
    y, rec = _labels(TOY)
    ok = [("a", "b"), ("c", "d", "e", "f", "g", "h", "i", "j", "k", "l")]
    with pytest.raises(ValueError, match="fold 0"):
        P.check_folds([("a", "j"), tuple(r for r in TOY if r not in "aj")], y, rec, tuple(TOY))
    P.check_folds(ok, y, rec, tuple(TOY))
    with pytest.raises(ValueError, match="partition"):
        P.check_folds([("a", "b"), ("c",)], y, rec, tuple(TOY))
    with pytest.raises(ValueError):
        P.ds1_folds(y, rec, tuple(TOY), k=1)


def test_real_ds1_folds_hold_sveb_of_several_records(mitdb_dir):
    from utils.data.aami import DS1, load_aami_beats

    ds1 = load_aami_beats().of_records(DS1)
    folds = P.ds1_folds(ds1.y, ds1.record, DS1)
    P.check_folds(folds, ds1.y, ds1.record, DS1)
    # the folds written in docs/PROTOCOL.md
    assert folds[0] == ("101", "106", "205", "209")
    assert folds[4] == ("116", "208", "220", "223")


def test_balanced_weights_and_shift():
    y = np.array([0] * 90 + [1] * 10)
    w = P.balanced_weights(y)
    assert w[0] * 90 == pytest.approx(w[1] * 10) == pytest.approx(50)
    shift = P.balanced_shift(y)
    # two classes present: log(0.9) - log(0.5) and log(0.1) - log(0.5); absent classes 0
    assert shift[:2] == pytest.approx([np.log(0.9 / 0.5), np.log(0.1 / 0.5)])
    assert shift[2:] == pytest.approx([0.0, 0.0])


def test_shifted_labels_moves_a_balanced_decision_to_the_prior():
    proba = np.array([[0.45, 0.55, 0.0, 0.0], [0.6, 0.4, 0.0, 0.0]])
    shift = np.log([0.9, 0.1, 1e-9, 1e-9]) - np.log(0.5)
    assert P.shifted_labels(proba, shift, 0.0).tolist() == [1, 0]
    assert P.shifted_labels(proba, shift, 1.0).tolist() == [0, 0]
    assert P.shifted_labels(proba, shift, -1.0).tolist() == [1, 1]


def test_selection_metric_known_values():
    y = np.array([0, 0, 0, 0, 1, 1, 2, 2, 3])
    assert P.selection_metric(y, y) == pytest.approx(1.0)
    assert P.selection_metric(y, np.zeros_like(y)) == 0.0
    pred = np.array([0, 0, 0, 1, 1, 0, 2, 2, 2])
    # SVEB: Se 1/2, +P 1/2 -> F1 0.5; VEB: Se 1, +P 1 (the F beat called VEB is no false VEB)
    assert P.selection_metric(y, pred) == pytest.approx(0.75)


def test_pick_rule_and_ties():
    import pandas as pd

    t = pd.DataFrame([
        {"candidate": "mm_template", "lambda": 0.0, "metric": 0.6001},
        {"candidate": "lda_rrt", "lambda": 0.5, "metric": 0.5996},     # ties at 3 decimals
        {"candidate": "lda_rrt", "lambda": -0.25, "metric": 0.6004},   # nearer 0 wins
        {"candidate": "logistic_rrt", "lambda": 0.0, "metric": 0.55}])
    assert P.pick(t)["candidate"] == "lda_rrt" and P.pick(t)["lambda"] == -0.25
    t.loc[3, "metric"] = 0.7
    assert P.pick(t)["candidate"] == "logistic_rrt"


@given(st.lists(st.floats(0.01, 1.0), min_size=4, max_size=4),
       st.floats(-1.0, 1.0))
@settings(max_examples=30, deadline=None)
def test_fusion_of_identical_members_is_the_member(p, lam):
    p = np.asarray(p)[None] / np.sum(p)
    fused = P.fusion_proba([p, p, p])
    shift = np.array([0.3, -1.0, -0.5, -2.0])
    assert np.allclose(fused, p)
    assert P.shifted_labels(fused, shift, lam).tolist() == P.shifted_labels(p, shift, lam).tolist()


def _toy_features(n_per=60, seed=0):
    """Four classes separated along the first two of 5 features."""
    rng = np.random.default_rng(seed)
    centres = np.array([[0, 0], [3, 0], [0, 3], [3, 3]], float)
    y = np.repeat(np.arange(4), n_per)
    F = rng.normal(size=(len(y), 5))
    F[:, :2] += centres[y]
    return F.astype(np.float32), y


@pytest.mark.parametrize("kind", ["lda", "logistic"])
def test_linear_candidates_and_their_keras_form(kind):
    F, y = _toy_features()
    train = np.arange(0, len(y), 2)
    test = np.arange(1, len(y), 2)
    predict = P.fit_model(kind, F, None, y, train)
    proba = predict(F[test])
    assert np.allclose(proba.sum(1), 1) and np.mean(proba.argmax(1) == y[test]) > 0.8
    net = PM._linear_net(F.shape[1], kind)
    PM._set_linear(net, *predict.sklearn)
    keras_proba = np.asarray(net.predict(F[test], verbose=0))
    assert np.abs(keras_proba - proba).max() < 1e-4


def test_mlp_candidate_learns_the_toy():
    F, y = _toy_features(n_per=1000)     # 8 epochs of batch 256: enough steps to learn
    predict = P.fit_model("mlp", F, None, y, np.arange(len(y)))
    assert np.mean(predict(F).argmax(1) == y) > 0.8
    with pytest.raises(ValueError):
        P.fit_model("tree", F, None, y, np.arange(len(y)))
    with pytest.raises(ValueError, match="beats X"):
        P.fit_model("mm", F, None, y, np.arange(len(y)))


def test_out_of_fold_never_predicts_with_its_own_records():
    F, y = _toy_features(n_per=40)
    rec = np.array(["r%d" % (i % 4) for i in range(len(y))])
    proba, shift = P.out_of_fold("lda", F, None, y, rec, [("r0", "r1"), ("r2",)])
    assert np.all(np.isnan(proba[rec == "r3"])) and np.all(np.isfinite(proba[rec != "r3"]))
    # fold ("r2",) was trained on r0, r1, r3: its shift is that of their labels
    assert np.allclose(shift[rec == "r2"][0], P.balanced_shift(y[rec != "r2"]))


def test_fusion_model_output_equals_the_numpy_rule(beats):
    """build_final('fusion') = softmax(log(mean of member probabilities) + lambda * shift)."""
    n_feat = 33
    rng = np.random.default_rng(1)
    F = rng.normal(size=(len(beats), n_feat)).astype(np.float32)
    shift = np.array([0.7, -2.0, -1.5, -2.5])
    model = PM.build_final("fusion", n_feat, shift, lam=0.5, members={})
    inputs = [beats, F]
    out = np.asarray(model.predict(inputs, verbose=0), np.float64)
    member_p = []
    for m in P.FUSION_MEMBERS:
        layer = model.get_layer(m)
        x = [beats, F] if P.CANDIDATES[m][0] == "mm" else F
        member_p.append(np.asarray(layer.predict(x, verbose=0), np.float64))
    logits = np.log(np.mean(member_p, axis=0)) + 0.5 * shift
    expected = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    assert np.abs(out - expected).max() < 1e-5


def test_single_candidate_folds_the_shift_into_the_bias():
    F, y = _toy_features()
    predict = P.fit_model("logistic", F, None, y, np.arange(len(y)))
    net = PM._member_from_fit("logistic", predict, F.shape[1], "logistic_rrt")
    shift = np.array([1.0, -1.0, 0.5, -0.5])
    model = PM.build_final("logistic_rrt", F.shape[1], shift, lam=0.75,
                           members={"logistic_rrt": net})
    got = np.asarray(model.predict(F, verbose=0), np.float64)
    expected = np.log(predict(F)) + 0.75 * shift
    expected = np.exp(expected) / np.exp(expected).sum(1, keepdims=True)
    assert np.abs(got - expected).max() < 1e-4


@pytest.mark.parametrize("candidate", ["mm_rr", "fusion"])
def test_weights_round_trip(tmp_path, beats, candidate):
    n = 17 if candidate == "mm_rr" else 33
    F = np.random.default_rng(2).normal(size=(len(beats), n)).astype(np.float32)
    model = PM.build_final(candidate, n, np.array([0.5, -1, -1, -2]), 0.25, members={})
    model.save_weights(tmp_path / "w.weights.h5")
    again = PM.build_final(candidate, n)
    again.load_weights(tmp_path / "w.weights.h5")
    a = model.predict([beats, F], verbose=0)
    b = again.predict(PM.final_inputs(again, type("B", (), {"X": beats})(), F), verbose=0)
    assert np.array_equal(a, b)


def test_feature_names_match_the_sets():
    assert len(PM.feature_names("rr")) == 17
    assert len(PM.feature_names("rrt")) == 33
    assert PM.feature_names("rrt")[:9] == list(importlib.import_module("utils.data.rhythm").RR_FEATURES)


def test_per_record_sveb_sorted_and_only_records_with_sveb():
    y = np.array([1, 1, 0, 0, 1, 0, 0])
    pred = np.array([1, 0, 0, 1, 1, 0, 0])
    rec = np.array(["x", "x", "x", "y", "z", "w", "w"])
    t = PM.per_record_sveb(y, pred, rec)
    assert list(t.index) == ["x", "z"]
    assert t.loc["x", "SVEB Se"] == 0.5 and t.loc["z", "SVEB Se"] == 1.0


def test_aami_ds2_entry_has_the_fields_the_issue_asks_for():
    from utils.data.aami import bootstrap, score

    y = np.array([0, 0, 1, 1, 2, 2, 0, 1])
    pred = np.array([0, 1, 1, 0, 2, 2, 0, 1])
    rec = np.array(list("aabbccdd"))
    part = {"score": score(y, pred), "ci": bootstrap(y, pred, rec, n_boot=20)}
    entry = PM.aami_ds2_entry({"all": part, "without_232": part})
    for k in ("sveb_se", "sveb_ppv", "veb_se", "veb_ppv"):
        assert 0 <= entry[k] <= 1
        lo, hi = entry[f"{k}_ci95"]
        assert lo <= hi
    assert entry["sveb_se"] == pytest.approx(2 / 3, abs=1e-4)
    assert config.SEED == 42


# ------------------------------------------------------------------ record 232 (utils.studies.record232)
def test_swap_intervention_follows_the_input_the_toy_decides_on():
    """A toy 'model' that decides on the rhythm only: swapping rhythm moves every decision,
    swapping the beat none."""
    from utils.studies import record232 as R

    rng = np.random.default_rng(0)
    X = rng.normal(size=(10, 8, 2))
    rr = np.zeros((10, 9))
    rr[:4, 7] = 0.6          # caught: premature against the local rhythm
    rr[4:, 7] = 0.9          # missed

    def predict(X_, rr_):
        return (rr_[:, 7] < 0.7).astype(int)

    res = R.swap_intervention(predict, X, rr, np.arange(4, 10), np.arange(4))
    assert res["missed + caught rhythm"] == 1.0 and res["missed + caught beat"] == 0.0
    assert res["caught + missed rhythm"] == 0.0 and res["caught + missed beat"] == 1.0
    assert res["missed"] == 6 and res["caught"] == 4
    with pytest.raises(ValueError):
        R.swap_intervention(predict, X, rr, np.arange(0), np.arange(4))


def test_groups_and_rr_profile():
    from utils.studies import record232 as R

    y = np.array([0, 1, 1, 1, 0])
    pred = np.array([0, 1, 0, 2, 0])
    g = R.groups(y, pred)
    assert g["SVEB caught"].tolist() == [1] and g["SVEB missed"].tolist() == [2]
    assert g["N (called N)"].tolist() == [0, 4]
    rr = np.arange(45, dtype=float).reshape(5, 9)
    t = R.rr_profile(rr, g, y)
    assert t.loc["SVEB missed", "after SVEB"] == 1.0 and t.loc["SVEB caught", "after SVEB"] == 0
    assert t.loc["N (called N)", "pre_rr"] == np.median([0.0, 36.0])


def test_goal_table_says_which_of_point_and_interval_meets_the_goal():
    values = {"SVEB Se": 0.80, "SVEB +P": 0.40, "VEB Se": 0.95, "VEB +P": 0.825}
    ci = {"SVEB Se": (0.77, 0.9), "SVEB +P": (0.2, 0.5), "VEB Se": (0.9, 0.98),
          "VEB +P": (0.564, 0.937)}
    t = PM.goal_table(values, ci)
    assert t.loc["VEB +P", "point estimate"] == "met" and t.loc["VEB +P", "interval"] == "NOT met"
    assert t.loc["SVEB Se", "interval"] == "met"
    assert t.loc["SVEB +P", "point estimate"] == "met" and t.loc["SVEB +P", "interval"] == "NOT met"
    assert "interval" not in PM.goal_table(values).columns
    block = {f"{k}_ci95": [0.1, 0.2] for k in ("sveb_se", "sveb_ppv", "sveb_fpr", "veb_se",
                                                "veb_ppv", "veb_fpr", "accuracy", "jk_index")}
    assert PM.config_intervals(block)["VEB +P"] == (0.1, 0.2)


def test_committed_final_model_reproduces_its_ds2_scores_on_record_232(mitdb_dir):
    """The committed weights (SHA-256 checked on load) give the confusion matrix of record 232
    that config.json implies (all DS2 minus DS2 without 232), from the beats alone."""
    from utils.data.aami import confusion, load_aami_beats

    cfg = PM.read_final_config()
    assert cfg["spec"] == PM.spec_of({"candidate": cfg["spec"]["candidate"],
                                      "lambda": cfg["spec"]["lambda"]})
    model = PM.load_final()
    rec = load_aami_beats().of_records(["232"])
    pred = PM.predict_final(model, rec, feature_set=cfg["spec"]["feature_set"])
    d = cfg["aami_ds2"]
    expected = np.array(d["confusion"]) - np.array(d["without_232"]["confusion"])
    assert np.array_equal(confusion(rec.y, pred), expected)


def test_rescore_from_the_weights_alone_matches_config(mitdb_dir):
    """The whole DS2 scored again from the committed weights (about 30 s): the figures of
    config.json follow from the weights and the beats."""
    from utils.models.protocol_rescore import rescore

    fresh = rescore()
    stored = PM.read_final_config()["aami_ds2"]
    for k in ("sveb_se", "sveb_ppv", "veb_se", "veb_ppv"):
        assert fresh[k] == stored[k] and fresh[f"{k}_ci95"] == stored[f"{k}_ci95"]
