"""The class workflow through nbgrader's exchange (utils/course/exchange.py), end to end.

A local exchange folder and two learner accounts, as on a JupyterHub whose single-user
servers run in containers: every learner's process is the OS user ``jovyan`` and
``JUPYTERHUB_USER`` names the learner (nbgrader's own rule, ``nbgrader.utils.get_username``);
each learner has their own home and working folder. The instructor releases the synthetic
week and the synthetic deep dive of ``test_deep_dives.py`` (which link to each other), both
learners fetch the week with nbgrader's command line, alice the deep dive too, they answer and
submit, the instructor collects (flat: ``SUBMISSIONS/<learner>/<notebook>.ipynb``), ``make
grade`` grades what was collected; then one learner resubmits, and the next collect + grade
grades only that one. Needs bubblewrap for the grading step.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from test_grading import SYNTH, write
from test_deep_dives import DIVE, DIVE_AID, DIVE_SOLVED, synthetic_deep_dive, synthetic_week
from grading_attacks import SOLVED
from test_grading_sandbox import needs_sandbox
from utils.course import exchange, gradebook, layout

#: Heavy end to end (nbgrader's command line, two gradings): `make test-class`.
pytestmark = pytest.mark.class_workflow

COURSE_ID = "xai-test"
AID = "00_synthetic"
#: A learner's nbgrader command as in a hub container (see the module docstring).
LEARNER = (
    "import sys, nbgrader.utils as u\n"
    "u.get_osusername = lambda: 'jovyan'\n"
    "from nbgrader.apps.nbgraderapp import NbGraderApp\n"
    "NbGraderApp.launch_instance(argv=sys.argv[1:])\n")


def learner(name: str, home: Path, exchange_root: Path, *args: str) -> str:
    """Run ``nbgrader <args>`` as learner ``name`` in their home; returns the output."""
    home.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTER")}
    env.update(HOME=str(home), JUPYTERHUB_USER=name)
    out = subprocess.run([sys.executable, "-c", LEARNER, *args, "--course", COURSE_ID,
                          f"--Exchange.root={exchange_root}"], cwd=home, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout + out.stderr


def answer(path: Path, **cells: str) -> None:
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid in cells:
            cell.source = cells[gid]
    nbformat.write(nb, path)


@pytest.fixture(scope="module")
def workflow(tmp_path_factory):
    root = tmp_path_factory.mktemp("exchange")
    source = write(synthetic_week(), root / "notebooks" / SYNTH)
    dive = write(synthetic_deep_dive(), root / "notebooks" / "deep_dives" / DIVE)
    xroot, staging = root / "exchange", root / "build" / "exchange"
    subs, course = root / "submissions", root / "build" / "nbgrader"
    released = exchange.release([source, dive], xroot, COURSE_ID, staging)
    homes = {name: root / "home" / name for name in ("alice", "bob")}
    listed = learner("alice", homes["alice"], xroot, "list")
    for name, home in homes.items():
        learner(name, home, xroot, "fetch_assignment", AID)
    learner("alice", homes["alice"], xroot, "fetch_assignment", DIVE_AID)
    links = layout.broken_notebook_links(homes["alice"], [homes["alice"] / AID / SYNTH,
                                                          homes["alice"] / DIVE_AID / DIVE])
    week_text = (homes["alice"] / AID / SYNTH).read_text()
    answer(homes["alice"] / AID / SYNTH, **SOLVED)
    answer(homes["alice"] / DIVE_AID / DIVE, d0_ex1=DIVE_SOLVED)
    answer(homes["bob"] / AID / SYNTH, w0_ex1=SOLVED["w0_ex1"])
    for name, home in homes.items():
        learner(name, home, xroot, "submit", AID)
    learner("alice", homes["alice"], xroot, "submit", DIVE_AID)
    collected = exchange.collect(subs, None, xroot, COURSE_ID, staging)
    kwargs = dict(course_dir=course, csv_path=root / "grades.csv", timeout=30, jobs=2,
                  engine="threads")
    first = gradebook.grade_class(subs, [source, dive], **kwargs)
    answer(homes["bob"] / AID / SYNTH, **SOLVED)  # bob finishes and resubmits
    learner("bob", homes["bob"], xroot, "submit", AID)
    recollected = exchange.collect(subs, None, xroot, COURSE_ID, staging)
    second = gradebook.grade_class(subs, [source, dive], **kwargs)
    return {"released": released, "listed": listed, "collected": collected, "first": first,
            "recollected": recollected, "second": second, "xroot": xroot, "subs": subs,
            "links": links, "week_text": week_text, "course": course}


def _total(scores, who):
    """Points and maximum of ``who`` over the notebooks handed in (as make grade's ``max``)."""
    rows = scores[(scores["learner"] == who) & (scores["status"] != "missing")]
    return rows["score"].sum(), rows["max_score"].sum()


@needs_sandbox
def test_release_fetch_submit_collect(workflow):
    assert workflow["released"] == [AID, DIVE_AID]
    assert AID in workflow["listed"] and DIVE_AID in workflow["listed"]
    assert (workflow["xroot"] / COURSE_ID / "outbound" / AID / SYNTH).is_file()
    assert (workflow["xroot"] / COURSE_ID / "outbound" / DIVE_AID / DIVE).is_file()
    # collected flat by unique name, the deep dive beside the week
    assert workflow["collected"] == {"alice": [SYNTH, DIVE], "bob": [SYNTH]}
    assert sorted(p.relative_to(workflow["subs"]).as_posix()
                  for p in workflow["subs"].rglob("*.ipynb")) == \
        [f"alice/{SYNTH}", f"alice/{DIVE}", f"bob/{SYNTH}"]
    inbound = sorted(p.name.split("+")[0] for p in
                     (workflow["xroot"] / COURSE_ID / "inbound").iterdir())
    assert inbound == ["alice", "alice", "bob", "bob"]


@needs_sandbox
def test_links_between_fetched_assignments_resolve(workflow):
    """nbgrader's fetch puts each assignment in a folder of its own: the week's link to the
    deep dive and the deep dive's link back are rewritten for that layout and resolve."""
    assert "../D0_synthetic/D0_synthetic.ipynb#the-peak" in workflow["week_text"]
    assert workflow["links"] == []


@needs_sandbox
def test_make_grade_grades_what_was_collected(workflow):
    first = workflow["first"]
    assert first.graded == [("alice", AID), ("alice", DIVE_AID), ("bob", AID)]
    assert _total(first.scores, "alice") == (8.0, 8.0)
    assert _total(first.scores, "bob") == (2.0, 6.0)  # no deep dive: not counted in max
    # the rewritten links are the instructor's markdown: shown as written, not escaped
    graded = nbformat.read(workflow["course"] / "autograded" / "alice" / AID / SYNTH,
                           as_version=4)
    assert any("<b>[deep dive D0](../D0_synthetic/D0_synthetic.ipynb#the-peak)</b>" in c.source
               for c in graded.cells if c.cell_type == "markdown")


@needs_sandbox
def test_resubmission_is_collected_and_graded_alone(workflow):
    second = workflow["second"]
    assert second.graded == [("bob", AID)]
    assert sorted(second.skipped) == [("alice", AID), ("alice", DIVE_AID)]
    assert _total(second.scores, "bob") == (6.0, 6.0)
