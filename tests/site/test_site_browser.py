"""The built course site in a real browser (``make site-test``, after ``make site``).

The site in ``build/site/`` is served on 127.0.0.1 and every HTML page is opened in Debian's
headless Chromium (Playwright). Any request to another host is blocked and reported, so the
site works offline and maths cannot come from a CDN. For every page:

- no console error, no uncaught exception, no failed request or HTTP error;
- every image loads (``img.decode()`` resolves: the file is there and is an image);
- every internal link resolves: the file exists and, for ``page#anchor``, the anchor exists;
- maths: each ``.math`` element was typeset by the bundled MathJax (``mjx-container``, no
  ``mjx-merror``), and a page with maths loaded the site's own ``_static/mathjax``;
- no solution or hidden-test line of ``notebooks/`` (``grading.secret_lines``) is in the text of
  the page (``innerText`` and every ``<pre>``), and none is in the published notebook files
  (``_sources/**/*.ipynb``, checked with ``grading.leaked_lines``).

Screenshots: ``build/site-test/landing.png``, ``build/site-test/week.png`` (the first week
with maths) and ``build/site-test/week_exercise.png`` (its first exercise); ``build/site-test/report.json`` lists pages, links, images and maths counted.
Skipped unless ``SITE_TEST=1`` (set by ``make site-test``).
"""
from __future__ import annotations

import functools
import html
import http.server
import json
import os
import re
import threading
import time
import urllib.parse
from pathlib import Path

import pytest

from browser_support import chromium_browser  # tests/ is on sys.path under pytest
from utils.core.config import ROOT
from utils.course import grading

if os.environ.get("SITE_TEST") != "1":
    pytest.skip("site test: run `make site-test`", allow_module_level=True)
pytest.importorskip("playwright.sync_api")

SITE = Path(os.environ.get("SITE_DIR", ROOT / "build" / "site"))
OUT = ROOT / "build" / "site-test"
SOURCES = sorted((ROOT / "notebooks").glob("[0-9]*.ipynb")) + sorted(
    (ROOT / "notebooks" / "deep_dives").glob("*.ipynb"))

JS_IMAGES = """async () => {
  const imgs = Array.from(document.images);
  const broken = await Promise.all(imgs.map(img => {
    img.loading = 'eager';
    return img.decode().then(() => (img.naturalWidth > 0 ? null : img.currentSrc || img.src),
                             () => img.currentSrc || img.src);
  }));
  return {count: imgs.length, broken: broken.filter(x => x)};
}"""

JS_MATH = """async () => {
  const nodes = document.querySelectorAll('.math');
  if (!nodes.length) return {math: 0};
  if (!window.MathJax || !window.MathJax.startup) return {math: nodes.length, mathjax: false};
  await window.MathJax.startup.promise;
  const untypeset = Array.from(nodes).filter(n => !n.querySelector('mjx-container'));
  return {math: nodes.length, mathjax: true, typeset: nodes.length - untypeset.length,
          errors: document.querySelectorAll('mjx-merror').length,
          script: Array.from(document.scripts).map(s => s.src).filter(s => /mathjax/i.test(s)),
          sample: untypeset.slice(0, 3).map(n => n.textContent.slice(0, 80))};
}"""

JS_TEXT = """() => [document.body.innerText,
                  ...Array.from(document.querySelectorAll('pre')).map(p => p.textContent)]
                 .join('\\n')"""

JS_LINKS = """() => Array.from(document.querySelectorAll('a[href]')).map(a => a.href)"""


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # the test reports errors itself
        pass


@pytest.fixture(scope="module")
def server():
    if not (SITE / "index.html").is_file():
        pytest.fail(f"no site in {SITE}: run `make site` first (make site-test does)")
    handler = functools.partial(_QuietHandler, directory=str(SITE))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(scope="module")
def browser():
    with chromium_browser("site-test") as instance:
        yield instance


def html_pages(site: Path = SITE) -> list[str]:
    """Every HTML page of the site (theme files under ``_static`` excluded), as URL paths."""
    return sorted(p.relative_to(site).as_posix() for p in site.rglob("*.html")
                  if "_static" not in p.relative_to(site).parts)


@functools.lru_cache(maxsize=None)
def anchors(path: Path) -> frozenset[str]:
    """The ``id`` (and ``name``) attributes of an HTML file."""
    text = path.read_text(errors="replace")
    return frozenset(html.unescape(m) for m in
                     re.findall(r"""\s(?:id|name)=["']([^"']+)["']""", text))


def broken_internal_link(url: str, origin: str, site: Path = SITE) -> str | None:
    """Why ``url`` (a link on the site) does not resolve, or ``None`` when it does."""
    if not url.startswith(origin + "/"):
        return None  # external: not checked (offline)
    parsed = urllib.parse.urlparse(url)
    path = site / urllib.parse.unquote(parsed.path).lstrip("/")
    if path.is_dir():
        path = path / "index.html"
    if not path.is_file():
        return "no such file"
    if parsed.fragment and path.suffix == ".html":
        if urllib.parse.unquote(parsed.fragment) not in anchors(path):
            return f"no anchor #{parsed.fragment}"
    return None


@functools.lru_cache(maxsize=None)
def secret_lines() -> frozenset[str]:
    return frozenset(grading.course_secret_lines(SOURCES))


def leaked(text: str) -> list[str]:
    shown = {line.strip() for line in text.splitlines()}
    return sorted(secret_lines() & shown)


def test_every_page_in_the_browser(server, browser):
    pages = html_pages()
    assert "index.html" in pages and len(pages) > 10, pages
    week_pages = [f"notebooks/{s.stem}.html" for s in SOURCES if s.parent.name == "notebooks"]
    assert set(week_pages) <= set(pages), "a week is missing from the site"
    assert secret_lines(), "the notebooks must have solution lines to look for"
    OUT.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()

    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    external: list[str] = []

    def route(route_obj):
        host = urllib.parse.urlparse(route_obj.request.url).hostname
        if host == "127.0.0.1" or route_obj.request.url.startswith(("data:", "blob:")):
            route_obj.continue_()
        else:
            external.append(route_obj.request.url)
            route_obj.abort()

    context.route("**/*", route)
    problems: list[str] = []
    report = {"pages": len(pages), "links_checked": 0, "images": 0, "math": 0,
              "math_pages": []}
    screenshot_week = None
    for page_path in pages:
        page = context.new_page()
        errors: list[str] = []
        page.on("console", lambda msg, e=errors: e.append(f"console {msg.type}: {msg.text}")
                if msg.type == "error" else None)
        page.on("pageerror", lambda exc, e=errors: e.append(f"exception: {exc}"))
        page.on("requestfailed", lambda req, e=errors: e.append(
            f"request failed: {req.url} ({req.failure})") if "127.0.0.1" in req.url else None)
        page.on("response", lambda res, e=errors: e.append(f"HTTP {res.status}: {res.url}")
                if res.status >= 400 else None)
        page.goto(f"{server}/{page_path}", wait_until="load")

        images = page.evaluate(JS_IMAGES)
        report["images"] += images["count"]
        errors += [f"image does not load: {src}" for src in images["broken"]]

        math = page.evaluate(JS_MATH)
        if math["math"]:
            report["math"] += math["math"]
            report["math_pages"].append(page_path)
            if not math.get("mathjax"):
                errors.append(f"{math['math']} maths elements but MathJax did not start")
            else:
                if math["typeset"] != math["math"]:
                    errors.append(f"maths not typeset: {math['sample']}")
                if math["errors"]:
                    errors.append(f"{math['errors']} MathJax errors (mjx-merror)")
                if not all(s.startswith(server) and "/_static/mathjax/" in s
                           for s in math["script"]):
                    errors.append(f"MathJax not served by the site: {math['script']}")

        for url in page.evaluate(JS_LINKS):
            report["links_checked"] += url.startswith(server)
            why = broken_internal_link(url, server)
            if why:
                errors.append(f"broken link {url}: {why}")

        text = page.evaluate(JS_TEXT)
        errors += [f"solution line shown: {line!r}" for line in leaked(text)]
        if page_path.startswith("notebooks/"):
            # (the README and the API pages name the markers when they explain the format)
            for marker in (grading.BEGIN_SOLUTION, grading.BEGIN_HIDDEN, grading.END_SOLUTION):
                if marker in text:
                    errors.append(f"{marker!r} shown")
        if page_path in week_pages:
            # positive controls: the exercise stub and the page's own code are in the text
            # the check reads (so it would see a solution line if one were there)
            if "raise NotImplementedError()" not in text:
                errors.append("the exercise stub is not shown")
            if screenshot_week is None and math["math"]:
                screenshot_week = page_path
                page.screenshot(path=str(OUT / "week.png"))
                page.locator("pre", has_text="raise NotImplementedError()").first \
                    .scroll_into_view_if_needed()
                page.evaluate("() => window.scrollBy(0, -250)")
                page.screenshot(path=str(OUT / "week_exercise.png"))
        if page_path == "index.html":
            page.screenshot(path=str(OUT / "landing.png"))
        problems += [f"{page_path}: {e}" for e in errors]
        page.close()
    context.close()

    problems += [f"request to another host blocked (the site must work offline): {url}"
                 for url in sorted(set(external))]
    report.update(seconds=round(time.monotonic() - start, 1), week_screenshot=screenshot_week,
                  problems=problems)
    (OUT / "report.json").write_text(json.dumps(report, indent=1))
    assert report["math"] > 0, "no page with maths: the maths check checked nothing"
    assert report["images"] > 0 and report["links_checked"] > 0
    assert screenshot_week, "no week page with maths for the screenshot"
    assert not problems, "\n".join(problems[:50])


def test_published_notebooks_hold_no_solution():
    """The ``.ipynb`` files the site publishes (download button) are learner views."""
    published = {p.stem: p for p in (SITE / "_sources").rglob("*.ipynb")}
    assert {s.stem for s in SOURCES} <= set(published), "a notebook source is not published"
    for source in SOURCES:
        assert not grading.leaked_lines(source, published[source.stem])
        released = published[source.stem].read_text()
        for marker in (grading.BEGIN_SOLUTION, grading.BEGIN_HIDDEN):
            assert marker not in released


def test_no_solution_line_in_any_text_file():
    """Every text file of the site (pages, sources, search index, scripts) searched raw."""
    hits = []
    for path in SITE.rglob("*"):
        if not path.is_file() or path.suffix not in {".html", ".ipynb", ".txt", ".js",
                                                     ".md", ".json"}:
            continue
        if "_static" in path.relative_to(SITE).parts and "mathjax" in path.parts:
            continue  # the MathJax library
        text = path.read_text(errors="replace")
        text = html.unescape(text)
        lines = {line.strip() for line in re.split(r"\n|\\n", text)}
        hits += [f"{path.relative_to(SITE)}: {line!r}" for line in secret_lines() & lines]
    assert not hits, hits[:20]
