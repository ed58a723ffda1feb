"""The method registry (utils.core.methods, utils.explainers.registry) and the explanation
contract, checked for every method it declares: the call, the targets, the output, the shape of
the values, the completeness gap, the options recorded and the global random state."""
from __future__ import annotations

import numpy as np
import pytest

from test_validation import EXPLAINERS, FAST, _good  # the same calls as the validation tests
from utils.core.explain import UNITS, Explanation
from utils.core.methods import register
from utils.explainers import registry
from utils.explainers.registry import METHODS, methods_for, taxonomy
from utils.studies import evaluation_grid as grid


@pytest.mark.parametrize("name", list(METHODS))
def test_every_method_keeps_the_contract(request, name):
    method = METHODS[name]
    fixture, call = EXPLAINERS[name]
    model = request.getfixturevalue(fixture)
    X = _good(3)
    # counterfactual references hold classes 0 and 1 only
    targets = np.array([1, 0, 1]) if method.family == "counterfactual" else np.array([1, 0, 2])
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    exp = call(model, X, targets)
    after = np.random.get_state()[1]
    assert np.array_equal(before, after), f"{name} touched NumPy's global random state"
    assert isinstance(exp, Explanation)
    assert exp.scope == method.scope and exp.kind == method.kind
    if method.scope == "local":
        assert exp.values.shape == X.shape
        assert exp.target.tolist() == targets.tolist()
    else:
        assert exp.values.shape == (1, *X.shape[1:])
    assert exp.output == "logits"
    assert (exp.delta is not None) == method.delta
    if exp.delta is not None:
        assert exp.delta.shape == (len(X),) and exp.score_change is not None
    if exp.native is not None:
        assert exp.unit == method.unit and exp.unit in UNITS
    # every option recorded, the defaults filled in, the given ones as given
    assert set(method.defaults) <= set(exp.options)
    for key, value in FAST.get(name, {}).items():
        if not isinstance(value, np.ndarray):
            assert exp.options[key] == (list(value) if isinstance(value, tuple) else value)


@pytest.mark.parametrize("name", list(METHODS))
def test_unknown_options_and_outputs_are_refused(request, name):
    method = METHODS[name]
    model = request.getfixturevalue(EXPLAINERS[name][0])
    with pytest.raises(TypeError, match="unknown option"):
        method.function(model, _good(2), 0, not_an_option=1)
    with pytest.raises(ValueError, match="output must be"):
        method.function(model, _good(2), 0, output="softmax")


def test_declarations_are_checked():
    with pytest.raises(TypeError, match="method\\(model, X, targets"):
        register("bad_signature", "bad")(lambda model, X, *, output="logits": None)
    with pytest.raises(TypeError, match="no \\*\\*kwargs"):
        def loose(model, X, targets, *, output="logits", **options):
            return None
        register("loose", "loose")(loose)
    with pytest.raises(TypeError, match="seed"):
        def unseeded(model, X, targets, *, output="logits"):
            return None
        register("unseeded", "unseeded", stochastic=True)(unseeded)
    with pytest.raises(ValueError, match="declared twice"):
        def again(model, X, targets, *, output="logits"):
            return None
        register("lime", "LIME again")(again)
    with pytest.raises(ValueError, match="invalid declaration"):
        register("scope", "scope", scope="regional")


def test_methods_for_each_course_model():
    labels = {name: [m.label for m in methods_for(name, family="attribution", scope="local")]
              for name in ("cnn_holdout", "lstm_holdout", "attention_holdout")}
    assert "CAM" in labels["cnn_holdout"] and "CAM" not in labels["lstm_holdout"]
    assert "LRP" in labels["cnn_holdout"] and "LRP" not in labels["lstm_holdout"]
    assert "attention" in labels["attention_holdout"] and "attention" not in labels["cnn_holdout"]
    assert "Grad-CAM" in labels["lstm_holdout"]
    assert registry.architecture("multimodal_ds1") == "multimodal"
    with pytest.raises(ValueError, match="unknown course model"):
        registry.architecture("resnet")


def test_the_grid_and_the_taxonomy_read_the_registry():
    for name in ("cnn_holdout", "lstm_patient", "attention_holdout"):
        expected = [m.label for m in methods_for(name, family="attribution", scope="local")
                    if m.name not in grid.SKIPPED]
        assert list(grid.explainers_for(name, np.zeros((1, 256, 2)))) == expected
        cheap = [m.label for m in methods_for(name, family="attribution", scope="local",
                                              single_pass=True) if m.name not in grid.SKIPPED]
        assert list(grid.explainers_for(name, None, cheap_only=True)) == cheap
        assert set(grid.stochastic_labels(name)) == {
            m.label for m in methods_for(name) if m.stochastic and m.label in expected}
    table = taxonomy()
    assert list(table.index) == [m.label for m in METHODS.values()]
    assert table.loc["CAM", "models"] == "fcn" and table.loc["PFI", "scope"] == "global"
