"""Headless-browser test: no learner script runs in the feedback or the formgrader (issue 25).

One learner's synthetic-week submission (``tests/grading_attacks.py``) displays HTML with a
``<script>`` and an ``onerror`` image, JavaScript, an SVG with a script, a PNG whose data and
width try to break out of their attributes; its markdown has raw HTML, an ``onerror`` image,
a ``javascript:`` link and an ``onload`` SVG; a raw cell holds a script. It is graded by the
real ``make grade`` path (bubblewrap sandbox, trusted check, nbgrader), then Debian's Chromium
(Playwright) opens

- the learner's feedback HTML file, and
- the same submission in nbgrader's formgrader (a Jupyter server with the formgrader
  extension, run from the course folder, as the instructor would),

and checks, with Chrome's debugger protocol, that no script containing a payload was even
compiled (``Debugger.scriptParsed``: inline scripts and event-handler attributes are compiled
when they would run), that the payloads' variable ``window.__xss`` stays unset after every
element got mouse-over, error and load events, and that no ``javascript:`` link or ``on*``
attribute holding a payload is in the page, while the learner's text still shows (as text). Screenshots go to
``build/browser-test/``. Skipped unless ``BROWSER_TEST=1`` (``make browser-test``).
"""
from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

import pytest

from utils.core.config import ROOT
from utils.course import grading

if os.environ.get("BROWSER_TEST") != "1":
    pytest.skip("browser test: run `make browser-test`", allow_module_level=True)
playwright_api = pytest.importorskip("playwright.sync_api")

from grading_attacks import (SOLVED, XSS_MARKDOWN, XSS_OUTPUTS, learner_notebook,  # noqa: E402
                             sandbox_problem, with_manual_exercise)
from test_grading import SYNTH, synthetic_notebook, write  # noqa: E402
from browser_support import chromium_browser  # noqa: E402
from test_learner_lab import _free_port, serving  # noqa: E402

OUT = ROOT / "build" / "browser-test"
PAYLOAD_MARK = "__xss"

JS_PROVOKE = """() => {
  for (const el of document.querySelectorAll('*')) {
    for (const type of ['mouseover', 'mouseenter', 'click', 'error', 'load', 'focus'])
      try { el.dispatchEvent(new Event(type)); } catch (e) {}
  }
  const attrs = [];
  for (const el of document.querySelectorAll('*'))
    for (const a of el.attributes)
      if (a.name.toLowerCase().startsWith('on')) attrs.push(el.tagName + ' ' + a.name + '=' + a.value);
  const links = Array.from(document.querySelectorAll('[href],[src],[action],[formaction]'))
    .map(e => e.getAttribute('href') || e.getAttribute('src') || e.getAttribute('action') || '')
    .filter(u => /^\\s*(javascript|vbscript):/i.test(u));
  const mark = window['__' + 'xss'];
  return {xss: mark === undefined ? null : String(mark), attrs, links,
          text: document.body.innerText};
}"""


@pytest.fixture(scope="module")
def graded_xss(tmp_path_factory):
    problem = sandbox_problem()
    if problem is not None:
        pytest.fail(f"the grading sandbox cannot run here: {problem}")
    root = tmp_path_factory.mktemp("xss")
    source = write(with_manual_exercise(synthetic_notebook()), root / "notebooks" / SYNTH)
    course = root / "course"
    grading.build_course([source], course_dir=course, student_dir=None)
    released = course / "release" / "00_synthetic" / SYNTH
    nb = learner_notebook(released, XSS_MARKDOWN,
                          **{**SOLVED, "w0_ex1": SOLVED["w0_ex1"] + "\n" + XSS_OUTPUTS,
                             # the written answer (graded by hand) carries the payloads too
                             "w0_ex4": "Symmetric around 4.5.\n\n" + XSS_MARKDOWN})
    write(nb, root / "submissions" / "xss" / SYNTH)
    scores = grading.grade(root / "submissions", [source], course_dir=course,
                           csv_path=root / "grades.csv", timeout=60, notebook_timeout=300)
    assert set(scores["status"]) <= {"graded", grading.NEEDS_MANUAL}
    OUT.mkdir(parents=True, exist_ok=True)
    return course


@pytest.fixture(scope="module")
def browser():
    with chromium_browser("browser-test") as instance:
        yield instance


def _open_and_watch(browser, url: str, screenshot: Path) -> tuple[dict, list[str]]:
    """Open ``url``, provoke every event handler; return the page state and the sources of
    every compiled script that mentions the payloads' variable."""
    page = browser.new_page()
    cdp = page.context.new_cdp_session(page)
    parsed: list[str] = []
    cdp.on("Debugger.scriptParsed", lambda event: parsed.append(event["scriptId"]))
    cdp.send("Debugger.enable")
    page.goto(url, wait_until="load")
    page.wait_for_timeout(1500)  # onerror of broken images, late scripts
    state = page.evaluate(JS_PROVOKE)
    page.wait_for_timeout(500)
    # (the test's own scripts never spell the payloads' variable, so any compiled script
    # that does is a learner's)
    state["xss"] = page.evaluate(
        "() => { const m = window['__' + 'xss']; return m === undefined ? null : String(m); }")
    hits = []
    for script_id in parsed:
        try:
            source = cdp.send("Debugger.getScriptSource", {"scriptId": script_id})["scriptSource"]
        except Exception:
            continue
        if PAYLOAD_MARK in source:
            hits.append(source[:200])
    page.screenshot(path=str(screenshot), full_page=True)
    page.close()
    return state, hits


def _assert_inert(state: dict, hits: list[str]) -> None:
    assert state["xss"] is None, f"a learner script ran: window.__xss = {state['xss']}"
    assert hits == [], f"learner scripts were compiled: {hits}"
    # the formgrader's own page has handlers (onclick=toggle_name); none holds a payload
    assert [a for a in state["attrs"] if PAYLOAD_MARK in a] == [], state["attrs"]
    assert state["links"] == [], state["links"]
    for shown in ("XSS-MARKDOWN", "XSS-RAW-CELL", "removed by the grader"):
        assert shown in state["text"], shown


def test_feedback_file_runs_no_learner_script(graded_xss, browser):
    feedback = graded_xss / "feedback" / "xss" / "00_synthetic" / "00_synthetic.html"
    state, hits = _open_and_watch(browser, feedback.as_uri(), OUT / "feedback_xss.png")
    _assert_inert(state, hits)


@pytest.fixture(scope="module")
def formgrader(graded_xss):
    """nbgrader's formgrader on the graded course, as ``jupyter server`` from its folder."""
    port, token = _free_port(), secrets.token_hex(16)
    log = OUT / "formgrader.log"
    cmd = [sys.executable, "-m", "jupyter_server", "--no-browser", f"--port={port}",
           "--ip=127.0.0.1", f"--IdentityProvider.token={token}", "--allow-root",
           f"--ServerApp.root_dir={graded_xss}",
           "--ServerApp.jpserver_extensions={'nbgrader.server_extensions.formgrader': True}"]
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(OUT / "formgrader-config")}
    with serving(cmd, graded_xss, log, port, token, env=env) as url:
        yield url, token, log


def test_formgrader_view_runs_no_learner_script(graded_xss, formgrader, browser):
    from nbgrader.api import Gradebook

    url, token, log = formgrader
    with Gradebook(f"sqlite:///{graded_xss / 'gradebook.db'}") as gb:
        submission = gb.find_submission_notebook("00_synthetic", "00_synthetic", "xss")
        submission_id = submission.id
    page_url = f"{url}/formgrader/submissions/{submission_id}/?token={token}"
    state, hits = _open_and_watch(browser, page_url, OUT / "formgrader_xss.png")
    assert "XSS-MARKDOWN" in state["text"], (state["text"][:2000], log.read_text()[-3000:])
    _assert_inert(state, hits)


def test_harness_sees_a_script_that_runs(browser, tmp_path):
    """Control: the same checks on a page that does run the payloads fail as they should."""
    page = tmp_path / "unsafe.html"
    page.write_text("<html><body><p>XSS-MARKDOWN</p>"
                    "<img src=x onerror=\"window.__xss='img'\">"
                    "<script>window.__xss_inline = 1</script></body></html>")
    state, hits = _open_and_watch(browser, page.as_uri(), tmp_path / "unsafe.png")
    assert state["xss"] == "img"
    assert any("__xss_inline" in h for h in hits) and any("__xss='img'" in h for h in hits)
    assert any("onerror" in a for a in state["attrs"])
