"""Where the weeks and the deep dives live (utils/course/layout.py)."""
from __future__ import annotations

from pathlib import Path, PurePosixPath

import nbformat
import pytest
from nbformat.v4 import new_markdown_cell, new_notebook

from utils.course import layout


@pytest.mark.parametrize("path, rel, dive, minimum", [
    ("notebooks/01_week.ipynb", "01_week.ipynb", False, 3),
    ("notebooks/deep_dives/D1_dive.ipynb", "deep_dives/D1_dive.ipynb", True, 1),
    ("build/student/deep_dives/D1_dive.ipynb", "deep_dives/D1_dive.ipynb", True, 1),
    ("work/02_week.ipynb", "02_week.ipynb", False, 3),
])
def test_learner_path_and_minimum(path, rel, dive, minimum):
    assert layout.is_deep_dive(path) is dive
    assert layout.learner_path(Path(path)) == PurePosixPath(rel)
    assert layout.min_exercises(path) == minimum


def _notebook(path: Path, *markdown: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(new_notebook(cells=[new_markdown_cell(m) for m in markdown]), path)
    return path


def test_notebooks_in_lists_weeks_then_deep_dives(tmp_path):
    for rel in ("02_b.ipynb", "01_a.ipynb", "01_a.new.ipynb", "notes.ipynb",
                "deep_dives/D2_y.ipynb", "deep_dives/D1_x.ipynb", "deep_dives/D1_x.new.ipynb",
                "deep_dives/deeper/D9.ipynb"):
        _notebook(tmp_path / rel)
    assert [p.relative_to(tmp_path).as_posix() for p in layout.notebooks_in(tmp_path)] == [
        "01_a.ipynb", "02_b.ipynb", "deep_dives/D1_x.ipynb", "deep_dives/D2_y.ipynb"]


def test_notebook_links_finds_relative_notebook_links_only():
    nb = new_notebook(cells=[
        new_markdown_cell("See [D1](deep_dives/D1_x.ipynb#section-2) and [week 1](../01_a.ipynb "
                          "\"title\"), [site](https://example.org/02_b.ipynb), "
                          "[doc](../docs/X.md), <a href='02_b.ipynb'>week 2</a>."),
        nbformat.v4.new_code_cell("# [not a link](03_c.ipynb)")])
    assert layout.notebook_links(nb) == ["deep_dives/D1_x.ipynb", "../01_a.ipynb", "02_b.ipynb"]


def test_broken_notebook_links(tmp_path):
    _notebook(tmp_path / "01_a.ipynb", "[D1](deep_dives/D1_x.ipynb), [D2](deep_dives/D2.ipynb)")
    _notebook(tmp_path / "deep_dives" / "D1_x.ipynb", "[back](../01_a.ipynb), "
              "[outside](../../01_a.ipynb), [flat](01_a.ipynb)")
    assert layout.broken_notebook_links(tmp_path) == [
        "01_a.ipynb -> deep_dives/D2.ipynb", "deep_dives/D1_x.ipynb -> ../../01_a.ipynb",
        "deep_dives/D1_x.ipynb -> 01_a.ipynb"]


def test_exchange_links_point_at_sibling_assignment_folders():
    text = ("[D1](deep_dives/D1_x.ipynb#part-2), [back](../01_a.ipynb \"t\"), "
            "<a href=\"02_b.ipynb\">2</a>, [web](https://x.org/a.ipynb), [doc](../docs/A.md)")
    assert layout.exchange_links(text) == (
        "[D1](../D1_x/D1_x.ipynb#part-2), [back](../01_a/01_a.ipynb \"t\"), "
        "<a href=\"../02_b/02_b.ipynb\">2</a>, [web](https://x.org/a.ipynb), [doc](../docs/A.md)")
    assert layout.exchange_links("no link") == "no link"


def test_exchange_links_of_instructor_markdown_stay_trusted():
    """The grader shows instructor markdown as written: also with the exchange's links."""
    import hashlib

    from utils.course import checking

    cell = "<b>[D1](deep_dives/D1_x.ipynb)</b>"
    digests = checking.markdown_digests(new_notebook(cells=[new_markdown_cell(cell)]))
    for text in (cell, layout.exchange_links(cell)):
        assert hashlib.sha256(text.encode()).hexdigest() in digests
    assert len(digests) == 2
