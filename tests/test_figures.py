"""The figure rules of docs/FIGURES.md, checked on the course's plotting functions."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402
from matplotlib.text import Text  # noqa: E402

from utils import plotting  # noqa: E402

T = plotting.beat_time()


@pytest.fixture(autouse=True)
def _style():
    with plt.rc_context():
        plotting.use_course_style()
        yield
    plt.close("all")


def _beat(offset: float = 0.0) -> np.ndarray:
    """Two leads in mV with very different levels, so a stacked offset would show."""
    qrs = np.exp(-(T / 0.02) ** 2)
    return np.stack([1.5 * qrs + 0.1, -0.6 * qrs - 9.0 + offset], axis=1)


def _collections(ax) -> list[LineCollection]:
    return [c for child in ax.child_axes for c in child.collections
            if isinstance(c, LineCollection) and c.get_array() is not None]


def _texts(fig) -> list[Text]:
    fig.canvas.draw()
    return [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]


def test_signed_relevance_uses_a_centred_diverging_map_with_a_colour_bar():
    beat = _beat()
    relevance = np.stack([np.gradient(beat[:, 0]), 0.2 * np.gradient(beat[:, 1])], axis=1)
    ax = plotting.plot_relevance(beat, relevance + 0.01, title="signed")  # not symmetric data
    collections = _collections(ax)
    assert len(collections) == 2
    for lc in collections:
        norm = lc.norm
        assert norm.vmin == pytest.approx(-norm.vmax)
        assert norm(0.0) == pytest.approx(0.5)
        assert lc.get_cmap().name == plotting.DIVERGING_CMAP
        assert lc.colorbar is not None or collections[-1].colorbar is not None
    assert collections[-1].colorbar is not None


def test_non_negative_relevance_uses_a_sequential_map_from_zero_with_a_colour_bar():
    beat = _beat()
    ax = plotting.plot_relevance(beat, np.abs(np.gradient(beat[:, 0])), signed=False,
                                 label="Grad-CAM")
    collections = _collections(ax)
    assert collections[-1].colorbar is not None
    assert collections[-1].colorbar.ax.get_ylabel() == "Grad-CAM"
    for lc in collections:
        assert lc.norm.vmin == 0.0
        assert lc.get_cmap().name == plotting.SEQUENTIAL_CMAP


def test_symmetric_false_is_the_old_name_of_signed_false():
    ax = plotting.plot_relevance(_beat(), np.linspace(0, 1, len(T)), symmetric=False)
    assert _collections(ax)[0].norm.vmin == 0.0


def test_signed_relevance_on_a_sequential_map_is_refused():
    with pytest.raises(ValueError, match="negative"):
        plotting.plot_relevance(_beat(), np.linspace(-1, 1, len(T)), signed=False)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(-1e3, 1e3), min_size=2, max_size=40))
def test_relevance_norm_is_centred_at_zero(values):
    norm = plotting.relevance_norm(np.array(values), signed=True)
    assert norm(0.0) == pytest.approx(0.5)
    assert np.all(np.abs(np.array(values)) <= norm.vmax + 1e-9)


@pytest.mark.parametrize("draw", ["beat", "relevance"])
def test_each_lead_on_its_own_axis_with_true_millivolt_ticks(draw):
    beat = _beat()
    fig, ax = plt.subplots()
    if draw == "beat":
        plotting.plot_beat(beat, ax=ax)
    else:
        plotting.plot_relevance(beat, np.gradient(beat, axis=0), ax=ax)
    fig.canvas.draw()
    leads = [child for child in ax.child_axes if hasattr(child, "_course_lead")]
    assert len(leads) == 2
    for lead, child in enumerate(leads):
        lo, hi = child.get_ylim()
        y = beat[:, lead]
        # the axis spans this lead's own values (no offset), with a small margin
        assert lo <= y.min() and hi >= y.max()
        assert hi - lo <= 1.5 * np.ptp(y)
        ticks = [t for t in child.get_yticks() if lo <= t <= hi]
        assert len(ticks) >= 2 and all(y.min() - 0.2 * np.ptp(y) <= t <= y.max()
                                       + 0.2 * np.ptp(y) for t in ticks)
        assert "mV" in child.get_ylabel() and plotting.LEAD_SHORT[lead] in child.get_ylabel()
    # lead 1 at -9 mV reads -9 mV: its tick labels are true values
    labels = [float(t.get_text().replace("\u2212", "-")) for t in leads[1].get_yticklabels()
              if t.get_text()]
    assert min(labels) < -8.5


@pytest.mark.parametrize("make", ["beat", "relevance", "class_averages", "segments"])
def test_all_text_is_at_least_8_points(make):
    beat = _beat()
    if make == "beat":
        fig = plotting.plot_beat(beat, title="a title").figure
    elif make == "relevance":
        fig = plotting.plot_relevance(beat, np.gradient(beat, axis=0), title="t").figure
    elif make == "class_averages":
        y = np.repeat(np.arange(8), 2)
        fig = plotting.plot_class_averages(np.repeat(beat[None], 16, 0),
                                           np.repeat(np.gradient(beat, axis=0)[None], 16, 0), y,
                                           title="class averages")
    else:
        fig = plotting.plot_segment_importance(np.linspace(-1, 1, 32), title="t").figure
    sizes = {t.get_text(): t.get_fontsize() for t in _texts(fig)}
    assert sizes and min(sizes.values()) >= plotting.MIN_FONT_SIZE, sizes


def test_class_averages_share_one_centred_colour_bar():
    beat = _beat()
    y = np.repeat(np.arange(8), 2)
    relevance = np.repeat(np.gradient(beat, axis=0)[None], 16, 0) * (1 + y)[:, None, None]
    fig = plotting.plot_class_averages(np.repeat(beat[None], 16, 0), relevance, y, label="IG")
    norms = {id(lc.norm) for ax in fig.axes for lc in _collections(ax)}
    assert len(norms) == 1  # one scale for all panels
    colorbars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert len(colorbars) == 1 and colorbars[0].get_ylabel() == "IG"
    lc = _collections(fig.axes[0])[0]
    assert lc.norm(0.0) == pytest.approx(0.5)
    assert lc.norm.vmax == pytest.approx(np.abs(relevance[y == 7].mean(0)).max())


def test_setup_notebook_applies_the_course_style(monkeypatch):
    plt.rcParams["axes.titlesize"] = 5
    plotting.use_course_style()
    for key in ("axes.titlesize", "axes.labelsize", "xtick.labelsize", "ytick.labelsize",
                "legend.fontsize"):
        size = plt.rcParams[key]
        assert isinstance(size, str) or size >= plotting.MIN_FONT_SIZE, key
    import inspect

    from utils import notebook
    assert "use_course_style()" in inspect.getsource(notebook.setup_notebook)


def test_one_colour_per_method_and_every_spelling_finds_it():
    from matplotlib.colors import to_rgb

    from utils.plotting import METHOD_COLOURS, method_colour
    rgb = [to_rgb(c) for c in METHOD_COLOURS.values()]
    assert len(set(rgb)) == len(rgb), "two methods share a colour"
    assert method_colour("integrated_gradients") == method_colour("IG")
    assert method_colour("lrp_epsilon") == method_colour("LRP")
    assert method_colour("Grad-CAM (LSTM)") == method_colour("grad_cam")
    assert method_colour("Attention") == METHOD_COLOURS["attention"]
    with pytest.raises(KeyError):
        method_colour("astrology")
