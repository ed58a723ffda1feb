"""Grading on Dask distributed (utils/course/distributed.py) against serial grading.

One class of four learners of the synthetic week (a written answer included) is graded three
times: serially (``engine="threads"``, one sandbox at a time), on a real ``LocalCluster`` of
two worker processes, and again on that cluster where the worker running a learner's
sandbox is killed (SIGKILL) mid-task. All three gradebooks must give exactly the same
scores; the killed task must have been run again by a live worker, and every learner must be
recorded once. Wall times are printed (``-s``). Needs bubblewrap.
"""
from __future__ import annotations

import json
import os
import signal
import threading
import time

import pytest

from test_grading import SYNTH, synthetic_notebook, write
from grading_attacks import SOLVED, learner_notebook, with_manual_exercise
from test_grading_sandbox import needs_sandbox
from utils.course import distributed, grading, gradebook

#: Heavy end to end (three gradings of a class): `make test-class`, not `make test`.
pytestmark = pytest.mark.class_workflow

LEARNERS = {
    "full": dict(SOLVED, w0_ex4="Symmetric around 4.5."),
    "partial": {"w0_ex1": SOLVED["w0_ex1"]},
    "raises": dict(SOLVED, w0_ex2="raise ValueError('learner bug')"),
    "empty": {},
}


def _executing(dask_worker):
    """(pid, keys of the tasks running now) of a Dask worker (run with ``client.run``)."""
    return os.getpid(), sorted(str(ts.key) for ts in dask_worker.state.executing)


def _kill_first_sandbox(client, done: threading.Event, after: float = 1.0) -> dict:
    """Wait until a worker runs a sandbox task, let it run ``after`` s, then SIGKILL it."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not done.is_set():
        for address, (pid, keys) in client.run(_executing).items():
            sandbox_keys = [k for k in keys if k.startswith("sandbox-")]
            if sandbox_keys:
                time.sleep(after)
                pid_now, keys_now = client.run(_executing, workers=[address])[address]
                if pid_now == pid and sandbox_keys[0] in keys_now:
                    os.kill(pid, signal.SIGKILL)
                    return {"pid": pid, "key": sandbox_keys[0], "address": address}
        time.sleep(0.2)
    raise AssertionError("no sandbox task seen running on a worker")


def _scores(report):
    cols = ["learner", "exercise", "score", "max_score", "status"]
    return (report.scores[cols].sort_values(["learner", "exercise"]).reset_index(drop=True))


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    root = tmp_path_factory.mktemp("distributed")
    source = write(with_manual_exercise(synthetic_notebook()), root / "notebooks" / SYNTH)
    grading.build_course([source], course_dir=root / "release", student_dir=None)
    released = root / "release" / "release" / "00_synthetic" / SYNTH
    subs = root / "submissions"
    for name, cells in LEARNERS.items():
        write(learner_notebook(released, **cells), subs / name / SYNTH)
    common = dict(csv_path=None, timeout=30, feedback=False)
    out = {}
    start = time.perf_counter()
    out["serial"] = gradebook.grade_class(subs, [source], course_dir=root / "serial",
                                          engine="threads", jobs=1, **common)
    out["serial_s"] = time.perf_counter() - start
    with distributed.grading_client(jobs=2) as client:  # one cluster for both Dask runs
        out["workers"] = len(client.scheduler_info()["workers"])
        start = time.perf_counter()
        # trusted checks in chunks of 2 learners: two trusted tasks, same scores
        out["dask"] = gradebook.grade_class(subs, [source], course_dir=root / "dask",
                                            engine="dask", client=client, trusted_chunk=2,
                                            **common)
        out["dask_s"] = time.perf_counter() - start
        done, result = threading.Event(), {}

        def run():
            try:
                result["report"] = gradebook.grade_class(
                    subs, [source], course_dir=root / "killed", engine="dask", client=client,
                    **common)
            except BaseException as err:  # noqa: BLE001 - re-raised in the test
                result["error"] = err
            finally:
                done.set()

        thread = threading.Thread(target=run)
        thread.start()
        out["kill"] = _kill_first_sandbox(client, done)
        thread.join(600)
        if "error" in result:
            raise result["error"]
        out["killed"] = result["report"]
    out["killed_tasks"] = json.loads((root / "killed" / distributed.TASKS_FILE).read_text())
    out["root"] = root
    print(f"\nserial (1 sandbox at a time): {out['serial_s']:.1f} s; LocalCluster with "
          f"{out['workers']} workers: {out['dask_s']:.1f} s (4 learners; wall times on a "
          f"loaded machine)")
    print(f"killed worker pid {out['kill']['pid']} while it ran {out['kill']['key']}")
    print(json.dumps(out["killed_tasks"]))
    return out


@needs_sandbox
def test_local_cluster_has_two_workers(graded):
    assert graded["workers"] == 2


@needs_sandbox
def test_local_cluster_gives_exactly_the_serial_scores(graded):
    serial, dask = _scores(graded["serial"]), _scores(graded["dask"])
    assert len(serial) == 4 * 4  # 4 learners x (3 autograded + 1 written)
    assert serial.equals(dask), f"serial:\n{serial}\ndask:\n{dask}"
    by_learner = serial.groupby("learner")["score"].sum(min_count=1).to_dict()
    assert by_learner == {"empty": 0.0, "full": 6.0, "partial": 2.0, "raises": 5.0}


@needs_sandbox
def test_killed_worker_task_is_retried_nothing_lost_or_doubled(graded):
    assert _scores(graded["serial"]).equals(_scores(graded["killed"]))
    assert sorted(graded["killed"].graded) == sorted((n, "00_synthetic") for n in LEARNERS)
    tasks = graded["killed_tasks"]
    assert sorted(t["learner"] for t in tasks) == sorted(LEARNERS)  # each exactly once
    killed_learner = graded["kill"]["key"].split("-")[1]
    rerun = next(t for t in tasks if t["learner"] == killed_learner)
    assert not rerun["worker"].endswith(f":{graded['kill']['pid']}"), \
        "the killed task's result must come from a live worker"
    from nbgrader.api import Gradebook

    db = grading.nbgrader_config(graded["root"] / "killed").CourseDirectory.db_url
    with Gradebook(db) as gb:
        subs = gb.find_assignment("00_synthetic").submissions
        assert sorted(s.student.id for s in subs) == sorted(LEARNERS)
