"""Tests of utils.explainers.pfi: permutation feature importance on beat segments and leads."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from utils.core import config
from utils.explainers import pfi
from utils.core.explain import Explanation
from utils.core.perturb import fill
from utils.explainers.pfi import (alibi_permutation_importance, class_relevance,
                                  flat_column_groups, label_predictor, lead_groups,
                                  permutation_importance, scores, segment_groups)

W, L = config.WINDOW, 2


def _beats(n: int = 120, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, W, L)).astype(np.float32)


def _segment6_model(X: np.ndarray) -> np.ndarray:
    """Toy classifier that only looks at lead 0, samples 96..111 (segment 6 of 16)."""
    X = np.asarray(X).reshape(len(X), W, L)
    return (X[:, 96:112, 0].mean(axis=1) > 0).astype(int)


def _lead1_model(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X).reshape(len(X), W, L)
    return (X[:, :, 1].mean(axis=1) > 0).astype(int)


def test_segment_groups_cover_each_sample_once():
    masks, names = segment_groups(16, 2)
    assert masks.shape == (32, W, L) and len(names) == 32
    assert np.all(masks.sum(axis=0) == 1)
    assert names[0].startswith("lead0") and names[16].startswith("lead1")
    leads, lead_names = lead_groups()
    assert leads.shape == (2, W, L) and leads[1, :, 1].all() and not leads[1, :, 0].any()
    assert lead_names == ["lead0 (whole)", "lead1 (whole)"]


def test_flat_column_groups_match_c_order():
    masks, _ = segment_groups(16, 2)
    cols = flat_column_groups(masks)
    X = _beats(3)
    flat = X.reshape(3, -1)
    for k in (0, 6, 17, 31):
        np.testing.assert_array_equal(flat[:, list(cols[k])], X[:, masks[k]])
    with pytest.raises(ValueError, match="masks must be"):
        flat_column_groups(masks[0])


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), k=st.integers(0, 31), n=st.integers(2, 20))
def test_permute_fill_keeps_values_and_leaves_rest(seed, k, n):
    X = _beats(n, seed)
    mask = segment_groups(16, 2)[0][k]
    out = fill(X, mask, "permute", seed=np.random.default_rng(seed))
    np.testing.assert_array_equal(out[:, ~mask], X[:, ~mask])
    # the segment of each output beat is the whole segment of one input beat (rows moved together)
    seg_in = X[:, mask]
    seg_out = out[:, mask]
    rows_in = {r.tobytes() for r in seg_in}
    assert all(r.tobytes() in rows_in for r in seg_out)
    np.testing.assert_array_equal(np.sort(seg_out, axis=0), np.sort(seg_in, axis=0))


def test_replacement_for_pfi_uses_the_mean_beat_by_default():
    X = _beats(40)
    y = _lead1_model(X)
    mean = permutation_importance(_lead1_model, X, y, features="leads", how="mean")
    ref = permutation_importance(_lead1_model, X, y, features="leads", how="mean",
                                 reference=X.mean(axis=0))
    np.testing.assert_array_equal(pfi.mean(mean, "accuracy"), pfi.mean(ref, "accuracy"))
    assert mean.extras["how"] == "mean" and mean.extras["n_repeats"] == 1
    with pytest.raises(ValueError, match="how must be"):
        permutation_importance(_lead1_model, X, y, features="leads", how="shuffle-samples")


def test_scores_per_class_recall():
    y = np.array([0, 0, 1, 1, 3])
    pred = np.array([0, 1, 1, 1, 0])
    s = scores(y, pred)
    assert s["accuracy"] == pytest.approx(0.6)
    assert s["recall_N"] == pytest.approx(0.5) and s["recall_L"] == 1.0 and s["recall_V"] == 0.0
    assert "recall_R" not in s  # absent class
    assert 0 < s["macro_f1"] < 1


def test_pfi_finds_the_only_segment_the_model_uses():
    X = _beats(200)
    y = _segment6_model(X)
    masks, names = segment_groups(16, 2)
    res = permutation_importance(_segment6_model, X, y, features=masks, names=names,
                                 n_repeats=3, seed=1)
    assert isinstance(res, Explanation) and res.scope == "global"
    assert res.extras["drops"]["accuracy"].shape == (32, 3)
    imp = pfi.mean(res, "accuracy")
    assert imp[6] > 0.3
    assert np.all(imp[np.arange(32) != 6] == 0)
    assert pfi.top(res, "macro_f1", 1) == [names[6]]
    assert res.extras["base"]["accuracy"] == 1.0
    assert pfi.table(res).shape == (32, 3)
    # native: mean drop per segment; values: that drop on every sample of the segment
    np.testing.assert_array_equal(res.native[0], pfi.mean(res))
    assert res.values.shape == (1, W, L)
    assert np.all(res.values[0, 96:112, 0] == pfi.mean(res)[6])
    np.testing.assert_array_equal(res.extras["std"], pfi.std(res))
    # the named features give the same answer; deterministic for a fixed seed
    again = permutation_importance(_segment6_model, X, y, features="segments", n_repeats=3,
                                   seed=1)
    np.testing.assert_array_equal(again.extras["drops"]["macro_f1"],
                                  res.extras["drops"]["macro_f1"])
    assert again.extras["names"] == names


def test_pfi_lead_importance_and_replacement_scheme():
    X = _beats(150, seed=3)
    y = _lead1_model(X)
    res = permutation_importance(_lead1_model, X, y, features="leads", n_repeats=4)
    assert res.unit == "leads"
    assert pfi.mean(res, "accuracy")[0] == 0 and pfi.mean(res, "accuracy")[1] > 0.3
    zero = permutation_importance(_lead1_model, X, y, features="leads", how="zero")
    assert zero.extras["n_repeats"] == 1 and np.all(pfi.std(zero, "accuracy") == 0)
    # zeroing lead 1 makes every beat class 0: recall of class 1 (L) drops to 0
    assert pfi.mean(zero, "recall_L")[1] == pytest.approx(1.0)
    assert pfi.mean(zero, "recall_N")[1] == pytest.approx(0.0)
    top = pfi.top_per_class(zero, k=1)
    assert list(top.index) == ["N (Normal)", "L (Left bundle branch block)"]
    assert top.iloc[1, 0] == "lead1 (whole) (1.00)"
    pc = pfi.per_class(zero)
    assert pc.shape == (len(config.CLASSES), 2) and np.isnan(pc[3]).all()


def test_pfi_bad_input():
    X = _beats(10)
    masks, _ = segment_groups(16, 2)
    y = np.zeros(10, dtype=int)
    with pytest.raises(ValueError, match="10 class indices"):
        permutation_importance(_segment6_model, X, y[:5])
    with pytest.raises(ValueError, match="feature masks"):
        permutation_importance(_segment6_model, X, y, features=masks[:, :100])
    with pytest.raises(ValueError, match="features must be"):
        permutation_importance(_segment6_model, X, y, features="waves")
    with pytest.raises(ValueError, match="n_repeats"):
        permutation_importance(_segment6_model, X, y, n_repeats=0)
    with pytest.raises(ValueError, match="names"):
        permutation_importance(_segment6_model, X, y, names=["a"])
    with pytest.raises(ValueError, match="unknown metric"):
        permutation_importance(_segment6_model, X, y, features=masks[:2], metric="auc")
    with pytest.raises(ValueError, match="unknown metric"):
        pfi.mean(permutation_importance(_segment6_model, X, y, features=masks[:2]), "auc")
    with pytest.raises(ValueError, match="at least 2 beats"):
        permutation_importance(_segment6_model, X[:1], y[:1])


def test_alibi_agrees_with_own_implementation():
    X = _beats(200, seed=5)
    y = _segment6_model(X)
    masks, names = segment_groups(16, 2)
    ali = alibi_permutation_importance(_segment6_model, X, y, features=masks, names=names,
                                       n_repeats=5, metric="accuracy")
    own = permutation_importance(_segment6_model, X, y, features=masks, names=names,
                                 n_repeats=5)
    assert ali.extras["drops"]["accuracy"].shape == (32, 5) and ali.scope == "global"
    assert int(np.argmax(pfi.mean(ali))) == 6
    assert np.all(pfi.mean(ali)[np.arange(32) != 6] == 0)
    assert abs(pfi.mean(ali)[6] - pfi.mean(own, "accuracy")[6]) < 0.1
    with pytest.raises(ValueError, match="metric"):
        alibi_permutation_importance(_segment6_model, X, y, metric="auc")


def test_label_predictor_with_tiny_keras_model():
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((W, L))
    out = keras.layers.Dense(3, activation="softmax")(keras.layers.Flatten()(inp))
    model = keras.Model(inp, out)
    predict = label_predictor(model)
    X = _beats(7)
    labels = predict(X)
    assert labels.shape == (7,) and labels.dtype.kind == "i"
    np.testing.assert_array_equal(predict(X.reshape(7, -1)), labels)  # flattened (alibi) input
    np.testing.assert_array_equal(labels, model.predict(X, verbose=0).argmax(1))
    # a Keras model is accepted by PFI directly (labels 0..2 of this toy)
    exp = permutation_importance(model, X, labels, features="leads", n_repeats=1)
    assert exp.extras["base"]["accuracy"] == 1.0
    with pytest.raises(ValueError, match="leads-first"):
        predict(X.transpose(0, 2, 1))
    bad = X.copy()
    bad[2, 5, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        predict(bad)


def test_class_relevance_spreads_segments():
    per_class = np.zeros((len(config.CLASSES), 32))
    per_class[3, 6] = 0.5  # class V, lead 0 segment 6
    per_class[0, 16] = np.nan  # NaN (absent class) becomes 0
    rel = class_relevance(per_class, np.array([3, 0]))
    assert rel.shape == (2, W, L)
    assert np.all(rel[0, 96:112, 0] == 0.5) and rel[0].sum() == pytest.approx(0.5 * 16)
    assert np.all(rel[1] == 0)
    with pytest.raises(ValueError, match="per_class"):
        class_relevance(per_class[:, :10], np.array([0]))
    with pytest.raises(ValueError, match=r"\[0, 8\)"):
        class_relevance(per_class, np.array([9]))
