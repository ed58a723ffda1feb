"""The README stays a newcomer's page: short, the two commands first, every docs page linked."""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from utils.core.config import ROOT

README = ROOT / "README.md"
#: Issue 28: "README at most about 1,200 words"; this is the hard limit.
MAX_WORDS = 1300
#: Lines that a newcomer sees before scrolling (GitHub, a laptop screen).
FIRST_SCREEN_LINES = 50
_LINK = re.compile(r"\]\(([^)\s]+)\)")


def words(text: str) -> int:
    """Words as ``wc -w`` counts them: runs of non-blank characters."""
    return len(text.split())


def first_screen(text: str) -> str:
    return "\n".join(text.splitlines()[:FIRST_SCREEN_LINES])


def test_readme_is_short():
    count = words(README.read_text())
    assert count <= MAX_WORDS, f"README.md has {count} words (at most {MAX_WORDS}): move " \
        "reference material into a docs/ page and link it from the README's table"


def test_first_screen_has_the_two_commands_python_and_costs():
    top = first_screen(README.read_text())
    blocks = "\n".join(re.findall(r"```bash\n(.*?)```", top, flags=re.S))
    for command in ("make lab", "make test"):
        assert re.search(rf"^{command}\b", blocks, flags=re.M), f"{command} not on the first screen"
    assert "3.10, 3.11 or 3.12" in top and "3.13" in top
    for cost in (".venv", "MIT-BIH", "GiB", "min"):
        assert cost in top, f"{cost!r} (time, disk or RAM) not on the first screen"


def test_every_docs_page_is_linked_and_every_docs_link_resolves():
    links = _LINK.findall(README.read_text())
    docs = {link.split("#")[0] for link in links if link.startswith("docs/")}
    missing = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").glob("*.md")
                     if p.relative_to(ROOT).as_posix() not in docs)
    assert not missing, f"docs pages the README does not link: {missing}"
    assert not [d for d in docs if not (ROOT / d).is_file()]


def _settings_without_environment(monkeypatch):
    for name in ("COURSE_REPOSITORY", "COURSE_BRANCH", "COURSE_SITE_URL",
                 "COURSE_RELEASE_REPOSITORY", "COURSE_RELEASE_BRANCH"):
        monkeypatch.delenv(name, raising=False)
    spec = importlib.util.spec_from_file_location("readme_site_settings",
                                                  ROOT / "site" / "site_settings.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_badges_are_the_placeholders_of_the_settings(monkeypatch):
    """The README's badges are what site/site_settings.py makes with its default placeholders:
    Colab opens the learner release (never the course's notebooks with the solutions)."""
    settings = _settings_without_environment(monkeypatch)
    text = README.read_text()
    block = text[text.index("<!-- badges -->"):text.index("<!-- /badges -->")]
    week1 = sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))[0].name
    urls = _LINK.findall(block)
    assert settings.colab_url(f"notebooks/{week1}") in urls
    assert settings.binder_url("work") in urls and settings.SITE_URL in urls
    assert not [u for u in urls if "colab" in u and f"/blob/{settings.BRANCH}/" in u]


@pytest.mark.parametrize("text, expected", [("a b\n c", 3), ("`make lab` | x", 4), ("", 0)])
def test_words_counts_like_wc(text, expected):
    assert words(text) == expected
