"""Build the course website (``make site``): learner views of the notebooks, docs, API pages.

``python site/site_build.py [--out build/site]`` does three things:

1. **Sources** (``build/site-src/``, rebuilt every time), laid out like the repository so that
   the relative links of the README and the docs keep working:

   - ``index.md``: the landing page (what the course is, the syllabus read from the notebooks,
     who it is for, how to run it);
   - ``notebooks/<week>.ipynb`` for every ``notebooks/[0-9]*.ipynb`` and
     ``notebooks/deep_dives/<name>.ipynb`` for every ``notebooks/deep_dives/*.ipynb`` (found by
     glob, so a new deep dive appears without editing anything here): the **learner view** of
     each committed, executed notebook (:func:`learner_view.learner_view`: solutions and hidden
     tests removed by nbgrader, exercise outputs dropped, other outputs kept), never
     re-executed, with a header of launch badges (Binder, Colab, GitHub);
   - ``README.md`` and ``docs/*.md``, their links to repository files that are not pages of
     the site pointed at the file on GitHub;
   - ``api/<module>.md``: one page per module of ``utils`` and one per subpackage (with its
     modules), found on the file system, so a reorganised ``utils/`` needs no edit here;
     Sphinx autodoc renders them from the docstrings;
   - ``_static/mathjax/``: MathJax 3 from npm (``site/package-lock.json``, installed by
     ``make site`` into ``build/site-npm/``), served by the site itself: no CDN.

2. **HTML**: ``python -m sphinx -b html -c site build/site-src build/site`` (MyST-NB renders
   the stored outputs; ``nb_execution_mode = "off"``).

3. **Report**: pages, size and build time (``build/site/site-build.json``).
"""
from __future__ import annotations

import argparse
import json
import os
import posixpath
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat

SITE_DIR = Path(__file__).resolve().parent
ROOT = SITE_DIR.parent
sys.path.insert(0, str(SITE_DIR))
sys.path.insert(0, str(ROOT))

import site_settings  # noqa: E402
from learner_view import learner_view  # noqa: E402

from utils.course import layout  # noqa: E402

#: Default folders (all git-ignored, under build/).
SRC_DIR = ROOT / "build" / "site-src"
OUT_DIR = ROOT / "build" / "site"
NPM_DIR = ROOT / "build" / "site-npm"
#: The notebooks of the site, as globs relative to the repository.
WEEK_GLOB = "notebooks/[0-9]*.ipynb"
DEEP_DIVE_GLOB = "notebooks/deep_dives/*.ipynb"
#: The documentation pages besides the notebooks.
DOC_GLOBS = ("README.md", "docs/*.md")
#: The Python package documented in the API reference.
API_PACKAGE = "utils"
#: Parts of MathJax 3's ``es5/`` folder that the site serves: the TeX-to-HTML component, the
#: TeX extensions it loads on demand, its fonts, the menu and the accessibility tools (with
#: the speech-rule engine they load). The SVG/MathML bundles and the Node.js entry are left out.
MATHJAX_PARTS = ("tex-chtml.js", "input", "output/chtml", "ui", "a11y", "adaptors", "sre")
#: Marks the README's badge block, which the site replaces with its own header.
BADGES_BEGIN, BADGES_END = "<!-- badges -->", "<!-- /badges -->"
#: Metadata key of the cells that ``site/colab.py`` inserts (replaced on the site).
COLAB_KEY = "course_colab"

_LINK = re.compile(r"(!?)\[((?:[^\[\]]|\[[^\]]*\])*)\]\(([^)\s]+)(\s+\"[^\"]*\")?\)")


@dataclass(frozen=True)
class Notebook:
    """One notebook of the site: its repository path, kind and title."""

    path: str  # relative to the repository, posix
    kind: str  # "week" or "deep dive"
    title: str
    sections: tuple[str, ...]
    graded: bool  # has nbgrader exercises (Binder then opens the learner copy in work/, the
    # deep dives in work/deep_dives/)


def notebook_title(nb) -> tuple[str, tuple[str, ...]]:
    """The first ``#`` heading of ``nb`` and its ``##`` headings (numbering kept)."""
    title, sections = "", []
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        for line in cell.source.splitlines():
            if line.startswith("# ") and not title:
                title = line[2:].strip()
            elif line.startswith("## "):
                sections.append(line[3:].strip())
    return title, tuple(sections)


def find_notebooks(root: Path = ROOT) -> list[Notebook]:
    """The weekly notebooks, then the deep dives, each sorted by file name."""
    found = []
    for kind, pattern in (("week", WEEK_GLOB), ("deep dive", DEEP_DIVE_GLOB)):
        for path in sorted(Path(root).glob(pattern)):
            nb = nbformat.read(path, as_version=4)
            title, sections = notebook_title(nb)
            graded = any((c.metadata.get("nbgrader") or {}) for c in nb.cells)
            found.append(Notebook(path.relative_to(root).as_posix(), kind,
                                  title or path.stem, sections, graded))
    return found


def api_pages(root: Path = ROOT, package: str = API_PACKAGE) -> dict[str, list[str]]:
    """``{page module: [modules documented on that page]}`` for the API reference.

    Every module directly in ``package`` gets a page of its own; every subpackage gets one
    page holding the subpackage and all its modules (nested subpackages included). Found on
    the file system (nothing is imported), private modules (``_name``) skipped.
    """
    base = Path(root) / package.replace(".", "/")
    if not (base / "__init__.py").is_file():
        raise ValueError(f"{base} is not a package")
    pages: dict[str, list[str]] = {package: [package]}
    for entry in sorted(base.iterdir()):
        name = entry.stem
        if name.startswith("_"):
            continue
        if entry.is_file() and entry.suffix == ".py":
            pages[f"{package}.{name}"] = [f"{package}.{name}"]
        elif entry.is_dir() and (entry / "__init__.py").is_file():
            modules = []
            for sub in sorted(entry.rglob("*.py")):
                parts = sub.relative_to(base.parent).with_suffix("").parts
                if parts[-1] == "__init__":
                    parts = parts[:-1]
                if any(part.startswith("_") for part in parts):
                    continue
                modules.append(".".join(parts))
            # tree order: the subpackage, then each module and nested subpackage by name
            pages[f"{package}.{name}"] = sorted(modules, key=lambda m: tuple(m.split(".")))
    return pages


def rewrite_links(text: str, page: str, pages: set[str]) -> str:
    """Point the relative links of ``page`` (repository path) at the right place.

    A link to another page of the site stays relative (Sphinx resolves it); a link to any other
    repository file (``utils/data/mitdb.py``, ``Makefile``...) goes to that file on GitHub, because
    the site does not hold it. External links, anchors and images are left alone.
    """
    folder = posixpath.dirname(page)

    def fix(match: re.Match) -> str:
        bang, label, target, title = match.group(1), match.group(2), match.group(3), \
            match.group(4) or ""
        if bang or re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("#"):
            return match.group(0)
        path, _, anchor = target.partition("#")
        resolved = posixpath.normpath(posixpath.join(folder, path)) if path else page
        if resolved in pages or resolved.startswith("../"):
            return match.group(0)
        url = site_settings.github_url(resolved) + (f"#{anchor}" if anchor else "")
        return f"[{label}]({url}{title})"

    return _LINK.sub(fix, text)


def strip_badges(text: str) -> str:
    """``text`` without the README's badge block (the site shows its own, served locally)."""
    return re.sub(re.escape(BADGES_BEGIN) + r".*?" + re.escape(BADGES_END) + r"\n?", "",
                  text, flags=re.S)


def _relative(from_page: str, target: str) -> str:
    return posixpath.relpath(target, posixpath.dirname(from_page) or ".")


def released_path(notebook: Notebook) -> str | None:
    """The notebook's path in the learner release (``make release``), or None when the release
    does not hand it out. The release holds every graded notebook (``grading.course_notebooks``:
    the weeks in ``notebooks/``, the deep dives in ``notebooks/deep_dives/``)."""
    if not notebook.graded:
        return None
    return f"notebooks/{layout.learner_path(notebook.path).as_posix()}"


def badge_line(notebook: Notebook) -> str:
    """Markdown of the launch badges of one notebook page (images served by the site).

    Colab opens the notebook of the published learner release (no solutions), so only the
    notebooks the release hands out get a Colab badge."""
    page = notebook.path
    # a graded notebook opens as the learner's copy that `make lab` (binder/postBuild) made
    binder_path = f"work/{layout.learner_path(page).as_posix()}" if notebook.graded else page
    release = released_path(notebook)
    parts = [
        (site_settings.binder_url(binder_path), "Launch Binder", "binder.svg"),
        *([(site_settings.colab_url(release), "Open in Colab", "colab.svg")]
          if release else []),
        (site_settings.github_url(page), "Source on GitHub", "github.svg"),
    ]
    return " ".join(f"[![{alt}]({_relative(page, '_static/badges/' + svg)})]({url})"
                    for url, alt, svg in parts)


def site_notebook(notebook: Notebook, root: Path = ROOT):
    """The page version of one notebook: learner view, launch header, Colab cells handled.

    The Colab badge cell that ``site/colab.py`` may have put into the notebook is replaced by
    the site's own header (all launch badges, images served locally); its set-up cell stays.
    """
    nb = learner_view(Path(root) / notebook.path)
    nb.cells = [c for c in nb.cells if c.metadata.get(COLAB_KEY) != "badge"]
    header = nbformat.v4.new_markdown_cell(
        badge_line(notebook) + "\n\n" +
        ("*The learner view: exercises show the code stub a learner fills in; their outputs, "
         "the solutions and the hidden tests are not published. Every other output is the "
         "one stored in the course notebook.*" if notebook.graded else ""))
    header.metadata[COLAB_KEY] = "site-header"
    title_at = next((i for i, c in enumerate(nb.cells) if c.cell_type == "markdown"
                     and c.source.lstrip().startswith("# ")), -1)
    if title_at >= 0:  # the header goes under the title, which stays the page title
        cell = nb.cells[title_at]
        first, _, rest = cell.source.lstrip().partition("\n")
        cell.source = first + "\n\n" + header.source + ("\n\n" + rest if rest.strip() else "")
    else:
        nb.cells.insert(0, header)
    return nb


def _write_markdown_cells(nb, page: str, pages: set[str]) -> None:
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = rewrite_links(cell.source, page, pages)


def _landing_colab(weeks: list[Notebook]) -> str:
    """Colab address of the first week in the learner release (GitHub page without weeks)."""
    return site_settings.colab_url(released_path(weeks[0])) if weeks else site_settings.github_url()


def landing_page(notebooks: list[Notebook], docs: list[str], api: dict[str, list[str]]) -> str:
    """The site's ``index.md``: what, syllabus, for whom, how to run, and the tables of contents."""
    weeks = [n for n in notebooks if n.kind == "week"]
    dives = [n for n in notebooks if n.kind == "deep dive"]

    def row(n: Notebook) -> str:
        topics = " · ".join(re.sub(r"^\d+[a-z]?\.\s*", "", s) for s in n.sections)
        return f"| [{n.title}]({n.path}) | {topics or '-'} |"

    lines = [
        "# Explainable ML for ECG time-series classification", "",
        f"[![Launch Binder](_static/badges/binder.svg)]({site_settings.binder_url('work')}) "
        f"[![Open in Colab](_static/badges/colab.svg)]"
        f"({_landing_colab(weeks)}) "
        f"[![Source on GitHub](_static/badges/github.svg)]({site_settings.github_url()})", "",
        "An open, four-week course on **explainability (XAI) for deep time-series classifiers "
        "in healthcare**, on the real **MIT-BIH Arrhythmia Database** (48 two-lead half-hour "
        "ECG records). Beats cut around the annotated R peaks are classified by Keras models "
        "(a fully convolutional network, an LSTM, an LSTM with attention), and each week asks "
        "what the models looked at: permutation importance, LIME and SHAP, CAM and Grad-CAM, "
        "Integrated Gradients and LRP, attention - and whether those explanations can be "
        "trusted.", "",
        "## Syllabus", "",
        "| notebook | sections |", "|---|---|",
        *[row(n) for n in weeks], "",
    ]
    if dives:
        lines += ["### Deep dives", "", "| notebook | sections |", "|---|---|",
                  *[row(n) for n in dives], ""]
    lines += [
        "## Who it is for", "",
        "Learners who know Python, NumPy and the basics of neural networks (a first course in "
        "deep learning) and want to explain a time-series classifier, in medicine or "
        "elsewhere. No cardiology is assumed: the notebooks introduce the ECG as far as the "
        "explanations need it. Everything runs on a laptop CPU (2 cores): models are "
        "trained once and stored, slow analyses are stored results.", "",
        "## How to run it", "",
        "The pages of this site are the notebooks as a learner gets them, with the outputs "
        "stored in the course repository (nothing is re-run to build the site). To run them:",
        "",
        "- **On your computer** (Python 3.10-3.12): clone the repository, then `make lab`. It "
        "installs the pinned packages, downloads and verifies MIT-BIH, and opens JupyterLab on "
        "`work/` with the learner notebooks (your answers are never overwritten).",
        "- **Binder** (nothing to install): the *Launch Binder* badge builds the same "
        "environment and opens the learner notebooks in JupyterLab. The first build takes a "
        "while; work is lost when the session ends, so download your notebook.",
        "- **Colab**: the *Open in Colab* badge of each week's and deep dive's page opens "
        "that notebook from the learner release (no solutions). The notebook's first code "
        "cell installs the course's pinned packages and MIT-BIH. They need Python 3.10-3.12: "
        "on a newer Colab runtime the cell stops before installing anything and says how to "
        "switch the runtime version (*Runtime > Change runtime type > Runtime version*).", "",
        "Exercises are graded with nbgrader: in the learner notebooks each exercise is a cell "
        "with `raise NotImplementedError()` to replace and a test cell to run. This site never "
        "shows solutions or hidden tests.", "",
        "```{toctree}", ":caption: Weeks", ":maxdepth: 1", "",
        *[n.path.removesuffix(".ipynb") for n in weeks], "```", "",
    ]
    if dives:
        lines += ["```{toctree}", ":caption: Deep dives", ":maxdepth: 1", "",
                  *[n.path.removesuffix(".ipynb") for n in dives], "```", ""]
    lines += ["```{toctree}", ":caption: Documentation", ":maxdepth: 1", "",
              *[("About the repository (README) <README>" if d == "README.md"
                 else d.removesuffix(".md")) for d in docs], "api/index", "```", ""]
    return "\n".join(lines)


def api_index(api: dict[str, list[str]]) -> str:
    lines = ["# API reference", "",
             f"The `{API_PACKAGE}` package, one page per module or subpackage, from its "
             "docstrings.", "", "```{toctree}", ":maxdepth: 1", "", *sorted(api), "```", ""]
    return "\n".join(lines)


def api_page(page: str, modules: list[str]) -> str:
    lines = [f"# `{page}`", ""]
    for module in modules:
        if module != page:
            lines += [f"## `{module}`", ""]
        lines += ["```{eval-rst}", f".. automodule:: {module}", "   :members:", "```", ""]
    return "\n".join(lines)


def copy_mathjax(npm_dir: Path, static: Path) -> Path:
    """Copy the MathJax parts the site serves from ``npm_dir`` into ``static/mathjax``."""
    es5 = Path(npm_dir) / "node_modules" / "mathjax" / "es5"
    if not (es5 / "tex-chtml.js").is_file():
        raise FileNotFoundError(
            f"MathJax not found in {es5}: run `make site` (it runs `npm ci` in {npm_dir}), or "
            f"`cp site/package*.json {npm_dir}/ && npm ci --prefix {npm_dir}`")
    target = Path(static) / "mathjax"
    for part in MATHJAX_PARTS:
        src = es5 / part
        if src.is_dir():
            shutil.copytree(src, target / part)
        else:
            (target / part).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target / part)
    return target


def prepare_sources(src: Path = SRC_DIR, root: Path = ROOT, npm_dir: Path | None = NPM_DIR
                    ) -> dict:
    """Write the Sphinx sources of the site into ``src`` (emptied first); returns a summary."""
    src, root = Path(src), Path(root)
    if src.exists():
        shutil.rmtree(src)
    src.mkdir(parents=True)
    notebooks = find_notebooks(root)
    docs = [p.relative_to(root).as_posix() for pattern in DOC_GLOBS
            for p in sorted(root.glob(pattern))]
    pages = {n.path for n in notebooks} | set(docs)

    for notebook in notebooks:
        nb = site_notebook(notebook, root)
        _write_markdown_cells(nb, notebook.path, pages)
        target = src / notebook.path
        target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, target)
    for doc in docs:
        text = (root / doc).read_text()
        if doc == "README.md":
            text = strip_badges(text)
        target = src / doc
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(rewrite_links(text, doc, pages))

    api = api_pages(root)
    (src / "api").mkdir()
    (src / "api" / "index.md").write_text(api_index(api))
    for page, modules in api.items():
        (src / "api" / f"{page}.md").write_text(api_page(page, modules))
    (src / "index.md").write_text(landing_page(notebooks, docs, api))

    static = src / "_static"
    shutil.copytree(SITE_DIR / "static", static)
    if npm_dir is not None:
        copy_mathjax(npm_dir, static)
    return {"notebooks": [n.path for n in notebooks], "docs": docs, "api_pages": sorted(api)}


def run_sphinx(src: Path = SRC_DIR, out: Path = OUT_DIR, log: Path | None = None) -> int:
    """``sphinx-build -b html`` with ``site/conf.py``; returns the number of warnings."""
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    doctrees = Path(src).parent / "site-doctrees"
    if doctrees.exists():
        shutil.rmtree(doctrees)
    log = Path(log) if log else Path(src).parent / "site-warnings.txt"
    cmd = [sys.executable, "-m", "sphinx", "-b", "html", "-q", "-c", str(SITE_DIR),
           "-d", str(doctrees), "-w", str(log), str(src), str(out)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        filter(None, [str(ROOT), os.environ.get("PYTHONPATH", "")])))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    subprocess.run(cmd, check=True, env=env)
    warnings = [line for line in log.read_text().splitlines() if "WARNING" in line]
    return len(warnings)


def folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    parser.add_argument("--src", type=Path, default=SRC_DIR)
    parser.add_argument("--npm-dir", type=Path, default=NPM_DIR,
                        help="folder where `npm ci` installed site/package-lock.json")
    args = parser.parse_args(argv)
    start, cpu0 = time.perf_counter(), time.process_time()
    summary = prepare_sources(args.src, ROOT, args.npm_dir)
    prepared = time.perf_counter() - start
    warnings = run_sphinx(args.src, args.out)
    wall = time.perf_counter() - start
    children = os.times()
    html = sorted(p.relative_to(args.out).as_posix() for p in args.out.rglob("*.html")
                  if "_static" not in p.parts)
    report = {**summary, "html_pages": html, "warnings": warnings,
              "size_bytes": folder_size(args.out), "seconds_wall": round(wall, 1),
              "seconds_prepare": round(prepared, 1),
              "seconds_cpu": round(time.process_time() - cpu0 + children.children_user
                                   + children.children_system, 1)}
    (args.out / "site-build.json").write_text(json.dumps(report, indent=1))
    print(f"site: {len(html)} pages in {args.out} ({report['size_bytes'] / 1e6:.1f} MB), "
          f"{wall:.0f} s wall, {report['seconds_cpu']:.0f} s CPU, {warnings} Sphinx warnings "
          f"(build/site-warnings.txt)")


if __name__ == "__main__":
    main()
