"""The class workflow through nbgrader's exchange (utils/course/exchange.py), end to end.

A local exchange folder and two learner accounts, as on a JupyterHub whose single-user
servers run in containers: every learner's process is the OS user ``jovyan`` and
``JUPYTERHUB_USER`` names the learner (nbgrader's own rule, ``nbgrader.utils.get_username``);
each learner has their own home and working folder. The instructor releases the synthetic
week, both learners fetch it with nbgrader's command line, answer and submit, the instructor
collects, ``make grade`` grades what was collected; then one learner resubmits, and the next
collect + grade grades only that one. Needs bubblewrap for the grading step.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from test_grading import SYNTH, synthetic_notebook, write
from grading_attacks import SOLVED
from test_grading_sandbox import needs_sandbox
from utils.course import exchange, gradebook

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
    source = write(synthetic_notebook(), root / "notebooks" / SYNTH)
    xroot, staging = root / "exchange", root / "build" / "exchange"
    subs, course = root / "submissions", root / "build" / "nbgrader"
    released = exchange.release([source], xroot, COURSE_ID, staging)
    homes = {name: root / "home" / name for name in ("alice", "bob")}
    listed = learner("alice", homes["alice"], xroot, "list")
    for name, home in homes.items():
        learner(name, home, xroot, "fetch_assignment", AID)
    answer(homes["alice"] / AID / SYNTH, **SOLVED)
    answer(homes["bob"] / AID / SYNTH, w0_ex1=SOLVED["w0_ex1"])
    for name, home in homes.items():
        learner(name, home, xroot, "submit", AID)
    collected = exchange.collect(subs, None, xroot, COURSE_ID, staging)
    kwargs = dict(course_dir=course, csv_path=root / "grades.csv", timeout=30, jobs=2,
                  engine="threads")
    first = gradebook.grade_class(subs, [source], **kwargs)
    answer(homes["bob"] / AID / SYNTH, **SOLVED)  # bob finishes and resubmits
    learner("bob", homes["bob"], xroot, "submit", AID)
    recollected = exchange.collect(subs, None, xroot, COURSE_ID, staging)
    second = gradebook.grade_class(subs, [source], **kwargs)
    return {"released": released, "listed": listed, "collected": collected, "first": first,
            "recollected": recollected, "second": second, "xroot": xroot}


def _total(scores, who):
    rows = scores[scores["learner"] == who]
    return rows["score"].sum(), rows["max_score"].sum()


@needs_sandbox
def test_release_fetch_submit_collect(workflow):
    assert workflow["released"] == [AID]
    assert AID in workflow["listed"]
    assert (workflow["xroot"] / COURSE_ID / "outbound" / AID / SYNTH).is_file()
    assert workflow["collected"] == {"alice": [SYNTH], "bob": [SYNTH]}
    inbound = sorted(p.name.split("+")[0] for p in
                     (workflow["xroot"] / COURSE_ID / "inbound").iterdir())
    assert inbound == ["alice", "bob", "bob"]


@needs_sandbox
def test_make_grade_grades_what_was_collected(workflow):
    first = workflow["first"]
    assert first.graded == [("alice", AID), ("bob", AID)]
    assert _total(first.scores, "alice") == (6.0, 6.0)
    assert _total(first.scores, "bob") == (2.0, 6.0)


@needs_sandbox
def test_resubmission_is_collected_and_graded_alone(workflow):
    second = workflow["second"]
    assert second.graded == [("bob", AID)] and second.skipped == [("alice", AID)]
    assert _total(second.scores, "bob") == (6.0, 6.0)
