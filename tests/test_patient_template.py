"""Tests of utils.models.patient_template on toy beats whose right answer is known."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from utils.models import patient_template as pt
from utils.data.rhythm import RR_FEATURES

RNG = np.random.default_rng(0)


def _rr(pre, post, local):
    pre, post, local = (np.asarray(v, float) for v in (pre, post, local))
    rec = np.full_like(pre, 1.0)
    return np.column_stack([pre, post, local, rec, pre / rec, post / rec, local / rec,
                            pre / local, post / local])


def test_names():
    assert len(pt.TEMPLATE_FEATURES) == 16 and len(set(pt.TEMPLATE_FEATURES)) == 16
    assert len(pt.RR_DERIVED) == 6
    assert len(RR_FEATURES) == 9


def test_rr_derived_premature_beat():
    # regular beat (1 s, 1 s) and a premature beat with a compensatory pause (0.6 s, 1.4 s)
    f = pt.rr_derived(_rr([1.0, 0.6], [1.0, 1.4], [1.0, 1.0]))
    col = {n: i for i, n in enumerate(pt.RR_DERIVED)}
    assert f[0, col["pre_minus_post"]] == pytest.approx(0.0)
    assert f[1, col["pre_minus_post"]] == pytest.approx(-0.8)
    assert f[1, col["post_over_pre"]] == pytest.approx(1.4 / 0.6)
    assert f[1, col["log_pre_rr_local"]] == pytest.approx(np.log(0.6))
    assert f[0, col["log_post_rr_local"]] == pytest.approx(0.0)


def test_rr_derived_rejects_bad_input():
    with pytest.raises(ValueError):
        pt.rr_derived(np.ones((3, 8)))
    with pytest.raises(ValueError):
        pt.rr_derived(_rr([0.0], [1.0], [1.0]))


def test_record_templates_median_per_record():
    X = np.zeros((5, 10, 2))
    X[:3] = 1.0
    X[2] = 7.0          # an outlier of record a: the median ignores it
    X[3:] = [[[2.0]], [[4.0]]]
    T = pt.record_templates(X, np.array(["a", "a", "a", "b", "b"]))
    assert np.all(T[:3] == 1.0)
    assert np.all(T[3:] == 3.0)
    Tm = pt.record_templates(X, np.array(["a", "a", "a", "b", "b"]), how="mean")
    assert np.allclose(Tm[:3], 3.0)
    with pytest.raises(ValueError):
        pt.record_templates(X, np.array(["a"]))
    with pytest.raises(ValueError):
        pt.record_templates(X, np.array(["a"] * 5), how="mode")


def test_template_features_identity_and_inversion():
    T = RNG.normal(size=(4, 256, 2))
    f = pt.template_features(T, T)
    col = {n: i for i, n in enumerate(pt.TEMPLATE_FEATURES)}
    corr = [i for n, i in col.items() if n.startswith("corr")]
    rms = [i for n, i in col.items() if n.startswith("rms")]
    assert np.allclose(f[:, corr], 1.0) and np.allclose(f[:, rms], 0.0)
    g = pt.template_features(-T, T)
    assert np.allclose(g[:, corr], -1.0)
    # a flat beat has no defined correlation: 0, not NaN
    h = pt.template_features(np.zeros_like(T), T)
    assert np.all(np.isfinite(h)) and np.allclose(h[:, corr], 0.0)


def test_template_features_sees_only_its_segment():
    """A change inside the P region moves the P and whole-window features only."""
    T = RNG.normal(size=(1, 256, 2))
    X = T.copy()
    X[0, 112 - 30:112 - 20, 0] += 5.0          # 0.11-0.17 s before R: P region, lead 0
    f = dict(zip(pt.TEMPLATE_FEATURES, pt.template_features(X, T)[0]))
    assert f["rms_p_lead0"] > 0.5 and f["rms_all_lead0"] > 0
    for name in ("rms_qrs_lead0", "rms_t_lead0", "rms_p_lead1", "rms_all_lead1"):
        assert f[name] == pytest.approx(0.0)


@settings(max_examples=25, deadline=None)
@given(scale=st.floats(0.1, 10), shift=st.floats(-5, 5))
def test_correlation_invariant_to_gain_and_offset(scale, shift):
    T = np.random.default_rng(1).normal(size=(3, 256, 2))
    X = T + 0.3 * np.random.default_rng(2).normal(size=T.shape)
    a = pt.template_features(X, T)
    b = pt.template_features(scale * X + shift, T)
    corr = [i for i, n in enumerate(pt.TEMPLATE_FEATURES) if n.startswith("corr")]
    assert np.allclose(a[:, corr], b[:, corr], atol=1e-9)


def test_weights_for():
    y = np.array([0] * 8 + [1] * 2)
    assert np.allclose(pt.weights_for(y, 0.0), 1.0)
    w = pt.weights_for(y, 1.0)
    assert np.isclose(w[y == 0].sum(), w[y == 1].sum())   # balanced: equal total weight


@pytest.mark.parametrize("kind", pt.KINDS)
def test_fit_predict_separable_toy(kind):
    """Two classes separated on the first feature, a third on the second: every kind gets
    them right, and Q (label 4) in the training indices is ignored."""
    rng = np.random.default_rng(0)
    n = 300
    y = np.repeat([0, 1, 2], n)
    F = rng.normal(scale=0.3, size=(3 * n, 3))
    F[y == 1, 0] += 3
    F[y == 2, 1] += 3
    F = np.vstack([F, [[9, 9, 9]]])
    y = np.append(y, 4)
    idx = rng.permutation(3 * n)
    train = np.append(idx[:600], 3 * n)
    test = idx[600:]
    pred = pt.fit_predict(F, y, train, test, kind=kind, power=1.0)
    assert np.mean(pred == y[test]) > 0.97
    with pytest.raises(ValueError):
        pt.fit_predict(F, y, train, test, kind="svm")


def test_cross_validate_uses_other_records_only():
    rng = np.random.default_rng(0)
    record = np.repeat(["a", "b", "c"], 100)
    y = np.tile(np.repeat([0, 1], 50), 3)
    F = rng.normal(size=(300, 2)) + 3 * y[:, None]
    pred = pt.cross_validate(F, y, record, [("a",), ("b",)], kind="logistic")
    assert np.all(pred[record == "c"] == -1)               # in no fold: not predicted
    assert np.mean(pred[record != "c"] == y[record != "c"]) > 0.95


def test_feature_matrix_blocks():
    from utils.data.aami import AamiBeats

    n = 6
    beats = AamiBeats(X=RNG.normal(size=(n, 256, 2)).astype(np.float32),
                      y=np.zeros(n, int), symbol=np.array(["N"] * n),
                      record=np.array(["100"] * 3 + ["101"] * 3), sample=np.arange(n),
                      rr=_rr(np.full(n, 0.8), np.full(n, 0.9), np.full(n, 0.85)).astype(
                          np.float32),
                      mean=np.zeros((n, 2), np.float32), std=np.ones((n, 2), np.float32))
    F, names = pt.feature_matrix(beats)
    assert F.shape == (n, 9 + 6 + 16) and len(names) == F.shape[1]
    F2, names2 = pt.feature_matrix(beats, ("template",))
    assert np.allclose(F2, F[:, 15:]) and names2 == list(pt.TEMPLATE_FEATURES)
    with pytest.raises(ValueError):
        pt.feature_matrix(beats, ("wavelets",))


def test_rr_irregularity_regular_vs_irregular():
    n = 40
    regular = np.full(n, 0.8)
    irregular = np.random.default_rng(0).uniform(0.4, 1.2, n)
    pre = np.concatenate([regular, irregular])
    rr = _rr(pre, pre, pre)
    record = np.array(["a"] * n + ["b"] * n)
    f = pt.rr_irregularity(rr, record, half=4)
    assert f.shape == (2 * n, 2) and len(pt.RR_IRREGULARITY) == 2
    assert np.allclose(f[:n], 0.0)
    assert np.all(f[n + 4: 2 * n - 4, 0] > 0.05)
    # windows never cross records: the first beat of b sees only b
    g = pt.rr_irregularity(rr[n:], record[n:], half=4)
    assert np.allclose(f[n:], g)
    with pytest.raises(ValueError):
        pt.rr_irregularity(rr, record[:3])


def test_fit_benchmark_toy_records():
    """Premature beats (short pre_rr, long post_rr) with an odd P region: learned on records
    a/b, found in record c; overlapping record lists are refused."""
    from utils.data.aami import AamiBeats

    rng = np.random.default_rng(0)
    parts = []
    for r in ("a", "b", "c"):
        n = 400
        y = (rng.random(n) < 0.15).astype(int)
        pre = np.where(y == 1, 0.55, 1.0) * rng.uniform(0.95, 1.05, n)
        post = np.where(y == 1, 1.4, 1.0) * rng.uniform(0.95, 1.05, n)
        X = np.tile(np.sin(np.linspace(0, 6, 256))[None, :, None], (n, 1, 2))
        X = X + 0.05 * rng.normal(size=X.shape)
        X[y == 1, 60:90, :] += 1.0
        parts.append(dict(X=X.astype(np.float32), y=y, symbol=np.where(y == 1, "A", "N"),
                          record=np.full(n, r), sample=np.arange(n),
                          rr=_rr(pre, post, np.ones(n)).astype(np.float32),
                          mean=np.zeros((n, 2), np.float32), std=np.ones((n, 2), np.float32)))
    beats = AamiBeats(**{k: np.concatenate([p[k] for p in parts]) for k in parts[0]})
    pred = pt.fit_benchmark(beats, ("a", "b"), ("c",))
    test = beats.of_records(("c",))
    assert pred.shape == test.y.shape
    assert np.mean(pred == test.y) > 0.97
    with pytest.raises(ValueError):
        pt.fit_benchmark(beats, ("a", "b"), ("b",))
