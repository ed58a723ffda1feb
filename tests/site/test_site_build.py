"""The site's sources: pages found by glob, links, API pages per module, landing page."""
from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

import check_env
import site_build
import site_settings
from test_site_learner_view import toy_notebook
from utils.core.config import ROOT


def test_rewrite_links():
    pages = {"README.md", "docs/FIGURES.md", "notebooks/01_a.ipynb"}
    gh = site_settings.github_url
    assert site_build.rewrite_links("[w1](notebooks/01_a.ipynb)", "README.md", pages) \
        == "[w1](notebooks/01_a.ipynb)"
    assert site_build.rewrite_links("see [rules](../docs/FIGURES.md#style)",
                                    "notebooks/01_a.ipynb", pages) \
        == "see [rules](../docs/FIGURES.md#style)"
    assert site_build.rewrite_links("[data](utils/data/mitdb.py) and [mk](Makefile#L3)",
                                    "README.md", pages) \
        == f"[data]({gh('utils/data/mitdb.py')}) and [mk]({gh('Makefile')}#L3)"
    assert site_build.rewrite_links("[src](../utils/explainers/cam.py)", "notebooks/01_a.ipynb", pages) \
        == f"[src]({gh('utils/explainers/cam.py')})"
    for unchanged in ("[x](https://physionet.org)", "[y](#section)", "![fig](figure.png)",
                      "[m](mailto:a@b.c)"):
        assert site_build.rewrite_links(unchanged, "README.md", pages) == unchanged


def test_strip_badges():
    text = f"# Title\n{site_build.BADGES_BEGIN}\n[![b](x.svg)](y)\n{site_build.BADGES_END}\nbody\n"
    assert site_build.strip_badges(text) == "# Title\nbody\n"
    assert site_build.strip_badges("no badges\n") == "no badges\n"


def _touch(path: Path, text: str = '"""doc"""\n') -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_api_pages_follow_the_package_layout(tmp_path):
    for name in ("pkg/__init__.py", "pkg/a.py", "pkg/_private.py", "pkg/sub/__init__.py",
                 "pkg/sub/x.py", "pkg/sub/deeper/__init__.py", "pkg/sub/deeper/y.py",
                 "pkg/sub/_hidden.py", "pkg/__pycache__/a.cpython-311.pyc", "pkg/notes/readme.py"):
        _touch(tmp_path / name)
    pages = site_build.api_pages(tmp_path, "pkg")
    assert pages == {"pkg": ["pkg"], "pkg.a": ["pkg.a"],
                     "pkg.sub": ["pkg.sub", "pkg.sub.deeper", "pkg.sub.deeper.y", "pkg.sub.x"]}
    with pytest.raises(ValueError):
        site_build.api_pages(tmp_path, "missing")


def test_api_pages_of_utils():
    pages = site_build.api_pages(ROOT)
    modules = {p.stem for p in (ROOT / "utils").glob("*.py") if not p.stem.startswith("_")}
    assert {f"utils.{m}" for m in modules} <= set(pages)
    for sub in (p for p in (ROOT / "utils").iterdir() if (p / "__init__.py").is_file()):
        assert pages[f"utils.{sub.name}"][0] == f"utils.{sub.name}"
        assert {f"utils.{sub.name}.{p.stem}" for p in sub.glob("[!_]*.py")} \
            <= set(pages[f"utils.{sub.name}"])
    page = site_build.api_page("utils.course", pages["utils.course"])
    assert ".. automodule:: utils.course.grading" in page


def fake_repository(root: Path) -> None:
    """A repository with one week, one deep dive, a README with badges and links, a doc."""
    (root / "notebooks" / "deep_dives").mkdir(parents=True)
    nbformat.write(toy_notebook(), root / "notebooks" / "01_toy.ipynb")
    dive = nbformat.v4.new_notebook()
    dive.cells = [nbformat.v4.new_markdown_cell("# A fake deep dive\n\n## 1. Only section"),
                  nbformat.v4.new_code_cell("print('hello')")]
    dive.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text="hello\n")]
    nbformat.write(dive, root / "notebooks" / "deep_dives" / "zz_fake.ipynb")
    (root / "README.md").write_text(
        f"# Course\n{site_build.BADGES_BEGIN}\n[![b](https://x/b.svg)](https://y)\n"
        f"{site_build.BADGES_END}\nWeek [one](notebooks/01_toy.ipynb), "
        "[rules](docs/RULES.md), [code](utils/m.py).\n")
    _touch(root / "docs" / "RULES.md", "# Rules\n\nBack to the [README](../README.md).\n")
    _touch(root / "utils" / "__init__.py")
    _touch(root / "utils" / "m.py")


def test_prepare_sources_picks_up_deep_dives(tmp_path):
    repo, src = tmp_path / "repo", tmp_path / "src"
    fake_repository(repo)
    summary = site_build.prepare_sources(src, repo, npm_dir=None)
    assert summary["notebooks"] == ["notebooks/01_toy.ipynb", "notebooks/deep_dives/zz_fake.ipynb"]
    assert summary["docs"] == ["README.md", "docs/RULES.md"]
    assert summary["api_pages"] == ["utils", "utils.m"]
    index = (src / "index.md").read_text()
    assert "### Deep dives" in index and "[A fake deep dive](notebooks/deep_dives/zz_fake.ipynb)" in index
    assert "notebooks/deep_dives/zz_fake\n" in index and "notebooks/01_toy\n" in index
    dive = nbformat.read(src / "notebooks" / "deep_dives" / "zz_fake.ipynb", as_version=4)
    assert dive.cells[0].source.startswith("# A fake deep dive\n\n[![Launch Binder]"
                                           "(../../_static/badges/binder.svg)")
    assert "lab/tree/notebooks/deep_dives/zz_fake.ipynb" in dive.cells[0].source
    assert dive.cells[1].outputs[0].text == "hello\n"
    week = nbformat.read(src / "notebooks" / "01_toy.ipynb", as_version=4)
    assert "lab/tree/work/01_toy.ipynb" in week.cells[0].source  # Binder: the learner copy
    # Colab opens the week from the learner release; the ungraded fake deep dive is not in it
    assert f"({site_settings.colab_url('notebooks/01_toy.ipynb')})" in week.cells[0].source
    assert "/blob/learner/notebooks/01_toy.ipynb" in site_settings.colab_url(
        "notebooks/01_toy.ipynb", "me/course")
    assert "Open in Colab" not in dive.cells[0].source
    assert "raise NotImplementedError()" in week.cells[2].source
    readme = (src / "README.md").read_text()
    assert "https://x/b.svg" not in readme
    assert "[one](notebooks/01_toy.ipynb)" in readme
    assert f"[code]({site_settings.github_url('utils/m.py')})" in readme
    assert (src / "_static" / "badges" / "colab.svg").is_file()
    assert "automodule:: utils.m" in (src / "api" / "utils.m.md").read_text()


def test_site_notebook_replaces_the_colab_badge(tmp_path):
    import colab

    repo = tmp_path / "repo"
    fake_repository(repo)
    path = repo / "notebooks" / "01_toy.ipynb"
    colab.update(path, root=repo)
    notebook = next(n for n in site_build.find_notebooks(repo) if n.path.endswith("01_toy.ipynb"))
    nb = site_build.site_notebook(notebook, repo)
    roles = [c.metadata.get(colab.KEY) for c in nb.cells]
    assert roles.count("badge") == 0 and roles.count("setup") == 1
    assert nb.cells[0].source.startswith("# Toy week\n\n[![Launch Binder]")


@pytest.mark.parametrize("path, kind, graded, opens", [
    ("notebooks/01_toy.ipynb", "week", True, "work/01_toy.ipynb"),
    ("notebooks/deep_dives/D1_x.ipynb", "deep dive", True, "work/deep_dives/D1_x.ipynb"),
    ("notebooks/deep_dives/D9_read_only.ipynb", "deep dive", False,
     "notebooks/deep_dives/D9_read_only.ipynb"),
])
def test_binder_and_colab_open_the_learner_copy_of_a_graded_notebook(path, kind, graded, opens):
    """make lab (binder/postBuild) puts a week in work/ and a deep dive in work/deep_dives/;
    the learner release (Colab) has them in notebooks/ and notebooks/deep_dives/."""
    line = site_build.badge_line(site_build.Notebook(path, kind, "t", (), graded))
    assert site_settings.binder_url(opens) in line
    if graded:
        assert f"({site_settings.colab_url(path)})" in line
    else:
        assert "Open in Colab" not in line


def test_prepare_sources_of_this_repository(tmp_path):
    from utils.course import grading

    summary = site_build.prepare_sources(tmp_path / "src", ROOT, npm_dir=None)
    weeks = sorted(p.relative_to(ROOT).as_posix() for p in ROOT.glob(site_build.WEEK_GLOB))
    assert summary["notebooks"][:len(weeks)] == weeks
    # every course notebook (weeks, then deep dives) once: the deep dives are not doubled
    assert summary["notebooks"] == [p.relative_to(ROOT).as_posix()
                                    for p in grading.course_notebooks()]
    assert "README.md" in summary["docs"]
    json.dumps(summary)


def test_check_env_flags_a_shadowing_package(tmp_path):
    (tmp_path / "jinja2").mkdir()
    (tmp_path / "jinja2" / "__init__.py").write_text("")
    (tmp_path / "surely_not_installed_pkg").mkdir()
    (tmp_path / "surely_not_installed_pkg" / "__init__.py").write_text("")
    (tmp_path / "x-1.0.dist-info").mkdir()
    clashes = check_env.shadowed(tmp_path)
    assert len(clashes) == 1 and clashes[0].startswith("jinja2 (")
    assert check_env.top_level_names(tmp_path) == ["jinja2", "surely_not_installed_pkg"]
