"""Tests of utils.models.metrics and utils.plotting."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from utils import plotting
from utils.core import config
from utils.models import metrics as evaluation  # noqa: E402


def test_evaluate_predictions():
    y = np.array([0, 0, 0, 1, 1, 3])
    p = np.array([0, 0, 1, 1, 1, 0])
    r = evaluation.evaluate_predictions(y, p)
    assert r["accuracy"] == pytest.approx(4 / 6)
    assert r["recall"]["N"] == pytest.approx(2 / 3) and r["recall"]["V"] == 0
    assert np.isnan(r["recall"]["A"])  # absent class
    assert np.array(r["confusion"]).sum() == 6
    f1_n, f1_l, f1_v = 2 / 3, 0.8, 0.0
    assert r["macro_f1"] == pytest.approx((f1_n + f1_l + f1_v) / 3)
    table = evaluation.metrics_table({"m": r})
    assert table.loc["m", "accuracy"] == round(4 / 6, 3)
    with pytest.raises(ValueError, match="shape"):
        evaluation.evaluate_predictions(y, p[:3])


def test_beat_time_zero_at_r_peak():
    t = plotting.beat_time()
    assert t[config.R_OFFSET] == 0 and np.isclose(t[1] - t[0], 1 / config.BEAT_FS)


def test_plots_draw():
    rng = np.random.default_rng(0)
    beat = rng.normal(size=(config.WINDOW, 2))
    ax = plotting.plot_relevance(beat, rng.normal(size=(config.WINDOW, 2)), title="x")
    # each lead on its own axis, one coloured trace each
    assert [len(child.collections) for child in ax.child_axes] == [1, 1]
    plotting.plot_relevance(beat, rng.random(config.WINDOW), symmetric=False)
    with pytest.raises(ValueError, match="does not match"):
        plotting.plot_relevance(beat, np.zeros(10))
    plotting.plot_beat(beat)
    ax = plotting.plot_confusion(np.array([[5, 5], [0, 0]]), classes=["N", "L"], title="t")
    assert ax.images[0].get_array()[0, 0] == 50.0
    plotting.plot_history({"loss": [1, 0.5], "val_loss": [1.1, 0.6], "accuracy": [0.5, 0.9]})
    y = np.array([0, 0, 3])
    fig = plotting.plot_class_averages(rng.normal(size=(3, config.WINDOW, 2)),
                                       rng.normal(size=(3, config.WINDOW, 2)), y)
    assert sum(ax.get_visible() for ax in fig.axes) == 3  # 2 classes + the shared colour bar
    plotting.plot_segment_importance(rng.random(32), rng.random(32))
    plt.close("all")


def test_plots_take_an_explanation_as_shap_plots_do():
    """An Explanation plots the same as its arrays: values for the maps, native segment values
    (with PFI's spread) for the bar chart."""
    from utils.core.explain import Explanation

    rng = np.random.default_rng(3)
    beat = rng.normal(size=(config.WINDOW, 2))
    values = rng.normal(size=(4, config.WINDOW, 2))
    exp = Explanation(values, [0, 1, 0, 3], "demo")
    a = plotting.plot_relevance(beat, exp[1])
    b = plotting.plot_relevance(beat, values[1])
    assert a.figure.axes[-1].get_ylim() == b.figure.axes[-1].get_ylim()   # the colour bars
    with pytest.raises(ValueError, match="exp\\[i\\]"):
        plotting.plot_relevance(beat, exp)
    figs = [plotting.plot_class_averages(values, r, np.array([0, 1, 0, 3])) for r in (exp, values)]
    assert [ax.get_title() for ax in figs[0].axes] == [ax.get_title() for ax in figs[1].axes]
    native = rng.normal(size=(1, 32))
    pfi = Explanation(np.zeros((1, config.WINDOW, 2)), [0], "pfi", scope="global",
                      native=native, unit="segments", extras={"std": np.full(32, 0.1)})
    bars = plotting.plot_segment_importance(pfi)
    heights = [p.get_height() for p in bars.patches]
    np.testing.assert_allclose(sorted(heights), sorted(native[0]))
    with pytest.raises(ValueError, match="no segment values"):
        plotting.plot_segment_importance(exp)
