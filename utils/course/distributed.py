"""Grading on Dask distributed: one task per learner-notebook, one machine or many.

``make grade`` runs the expensive part of grading, each learner-notebook in its bubblewrap
sandbox (:mod:`utils.course.sandbox`), as one task of a Dask distributed cluster, and the
trusted check of each week (:func:`utils.course.checking.run_trusted`: the instructor notebook
runs once and checks every learner's exported answers) as one task too. By default the
cluster is a ``LocalCluster`` on this machine (``JOBS`` worker processes, one task each), so
nothing else is needed; with ``DASK_SCHEDULER_ADDRESS=tcp://host:8786`` the same tasks go to
an existing cluster (``dask-jobqueue`` on Slurm, ``dask-kubernetes``; see
``docs/GRADING_AT_SCALE.md``). Every worker needs this repository and its environment (same
paths, the same ``.venv``, bubblewrap, the data) - a shared file system is *not* needed:

- a sandbox task receives the submitted notebook, the learner version and the instructor
  notebook as text, lays them out in a temporary course folder on the worker, runs the same
  :func:`utils.course.grading._sandbox_one`, and returns the files the sandbox left (its
  executed notebook, status and exported answers: plain data, at most
  :data:`MAX_RESULT_BYTES`) - nothing of the worker's disk is trusted or kept;
- a trusted task receives the instructor notebook and every learner's returned files, and
  returns the test outputs;
- the client (the machine running ``make grade``) writes those into the course folder and
  records them with nbgrader into the one gradebook.

A worker that dies mid-task (killed, out of memory, machine lost) is handled by Dask: the
scheduler gives its task to another worker (``distributed.scheduler.allowed-failures``, 3 by
default). A task's result is keyed by ``(learner, assignment)`` and taken once, so a retried
task is neither lost nor counted twice.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import nbformat

from . import grading, readback
from . import sandbox
from . import checking

#: Largest total size of the files one sandbox task sends back (bytes).
MAX_RESULT_BYTES: int = 256 * 1024 * 1024
#: Files of the sandbox folder that are sent back (the rest is input or the kernelspec).
RETURNED = ("output.ipynb", "status.json", "answers")
#: Learners checked by one trusted task (one run of the instructor notebook each): a class of
#: 1,000 is checked by 20 tasks in parallel instead of one long one.
TRUSTED_CHUNK: int = 50
#: Record of the last run's sandbox tasks in the course folder (worker, seconds).
TASKS_FILE = "dask_tasks.json"
#: Environment variable naming an existing Dask scheduler.
SCHEDULER_ENV = "DASK_SCHEDULER_ADDRESS"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SandboxOutcome:
    """What a sandbox task returns: the sandbox's files, or why the notebook failed."""

    learner: str
    assignment: str
    files: dict[str, bytes] | None
    note: str
    failure: str
    seconds: float
    worker: str


# --------------------------------------------------------------------------- worker side
def pack(folder: Path, names: tuple[str, ...] = RETURNED,
         limit: int = MAX_RESULT_BYTES) -> dict[str, bytes]:
    """Regular files under ``folder/<name>`` for each of ``names``, ``{relative path: bytes}``.

    Links and special files are skipped (the learner's code wrote this folder); raises
    ``ValueError`` beyond ``limit`` bytes in all."""
    folder = Path(folder)
    out: dict[str, bytes] = {}
    total = 0
    for name in names:
        top = folder / name
        paths = [top] if top.is_file() and not top.is_symlink() else (
            sorted(p for p in top.rglob("*")) if top.is_dir() and not top.is_symlink() else [])
        for path in paths:
            if path.is_symlink() or not path.is_file():
                continue
            rel = path.relative_to(folder).as_posix()
            try:  # the learner's code wrote this folder: no links, no pipes, bounded size
                data = readback.read_regular(folder, rel, limit - total)
            except readback.UntrustedFileError:
                continue
            total += len(data)
            out[rel] = data
    return out


def unpack(files: dict[str, bytes], folder: Path) -> Path:
    """Write ``files`` (from :func:`pack`) under ``folder`` (emptied first); returns it."""
    folder = Path(folder)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    root = folder.resolve()
    for rel, data in files.items():
        target = (folder / rel).resolve()
        if root not in target.parents:
            raise ValueError(f"refusing a result path outside the sandbox folder: {rel!r}")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return folder


def _worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def sandbox_task(learner: str, aid: str, name: str, submission: bytes, source: str,
                 release: str, timeout: int, notebook_timeout: int,
                 limits=None) -> SandboxOutcome:
    """Run one learner-notebook in a sandbox on this worker (see the module docstring)."""
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="grade-") as tmp:
        course = Path(tmp)
        for folder, data in (("submitted", submission), ("source", source.encode()),
                             ("release", release.encode())):
            parent = course / folder / (learner if folder == "submitted" else "") / aid
            parent.mkdir(parents=True)
            (parent / name).write_bytes(data)
        try:
            sandbox.check_sandbox()
            workdir, note = grading._sandbox_one(course, learner, aid, name, timeout,
                                                 notebook_timeout, limits)
            files, failure = pack(workdir), ""
        except grading.SandboxUnavailable:
            raise  # a worker without bubblewrap is a setup error, not a learner's failure
        except Exception as err:  # one submission never stops the others
            files, note, failure = None, "", f"failed: {err}"[:300]
    return SandboxOutcome(learner, aid, files, note, failure, time.perf_counter() - start,
                          _worker_name())


def trusted_task(aid: str, name: str, source: str, workdir_files: dict[str, dict[str, bytes]],
                 timeout: int) -> dict[str, dict[str, list]]:
    """Check every learner's answers of one week on this worker: ``{learner: {test: outputs}}``."""
    with tempfile.TemporaryDirectory(prefix="trusted-") as tmp:
        course = Path(tmp)
        src = course / "source" / aid / name
        src.parent.mkdir(parents=True)
        src.write_text(source)
        # the kernelspec of this environment, in a folder that outlives the task
        grading._ensure_venv_on_path(Path(tempfile.gettempdir()) / f"grading-{os.getuid()}")
        workdirs = {learner: unpack(files, course / "sandbox" / learner / aid)
                    for learner, files in workdir_files.items()}
        results = checking.run_trusted(src, workdirs, course / "trusted" / aid, timeout)
    return {learner: {gid: [dict(o) for o in outs] for gid, outs in by_test.items()}
            for learner, by_test in results.items()}


# --------------------------------------------------------------------------- client side
@contextlib.contextmanager
def grading_client(jobs: int = 1, scheduler: str | None = None) -> Iterator:
    """A Dask ``Client``: to ``scheduler`` (or ``DASK_SCHEDULER_ADDRESS``) when given, else
    to a ``LocalCluster`` of ``jobs`` worker processes with one thread each (a sandbox uses
    its own processes; the worker only waits for it)."""
    from distributed import Client, LocalCluster

    address = scheduler or os.environ.get(SCHEDULER_ENV, "").strip() or None
    if address:
        with Client(address) as client:
            yield client
        return
    # memory_limit=0: a notebook's memory is in the sandbox's processes, not the worker's,
    # and the worker's nanny must not restart a worker that is only waiting.
    with LocalCluster(n_workers=max(1, jobs), threads_per_worker=1, processes=True,
                      memory_limit=0, dashboard_address=None,
                      silence_logs=logging.ERROR) as cluster, Client(cluster) as client:
        yield client


def autograde(submissions: dict[str, dict[str, Path]], course_dir: Path = grading.COURSE_DIR,
              timeout: int = grading.CELL_TIMEOUT, feedback: bool = True, jobs: int = 1,
              notebook_timeout: int = grading.NOTEBOOK_TIMEOUT, scheduler: str | None = None,
              client=None, trusted_chunk: int | None = None,
              limits=None) -> dict[tuple[str, str], str]:
    """:func:`utils.course.grading.autograde` with the sandboxes and the trusted checks run as
    Dask tasks; returns ``{(learner, assignment): status}``. ``client`` is an existing Dask
    client (else :func:`grading_client` makes one). The learners of a week are checked in
    trusted tasks of ``trusted_chunk`` learners each (:data:`TRUSTED_CHUNK`), which run in
    parallel, each re-running the instructor notebook once."""
    trusted_chunk = TRUSTED_CHUNK if trusted_chunk is None else int(trusted_chunk)
    if trusted_chunk < 1:
        raise ValueError(f"trusted_chunk must be at least 1, got {trusted_chunk}")
    from distributed import as_completed

    course_dir = Path(course_dir).resolve()
    source = {p.name: p.parent.name for p in (course_dir / "source").glob("*/*.ipynb")}
    if not source:
        raise ValueError(f"no course in {course_dir}: run build_course (make student) first")
    tasks = []
    for learner, notebooks in submissions.items():
        for name, path in notebooks.items():
            if name not in source:
                raise ValueError(f"{path}: {name} is not a notebook of the course")
            aid = source[name]
            target = course_dir / "submitted" / learner / aid
            if target.exists():
                shutil.rmtree(target)
            target.mkdir(parents=True)
            shutil.copy2(path, target / name)
            tasks.append((learner, aid, name))
    if not tasks:
        return {}
    grading._ensure_venv_on_path(course_dir)
    for stale in ("sandbox", "results", "trusted"):
        shutil.rmtree(course_dir / stale, ignore_errors=True)
    text = {aid: ((course_dir / "source" / aid / name).read_text(),
                  (course_dir / "release" / aid / name).read_text())
            for name, aid in source.items()}

    status: dict[tuple[str, str], str] = {}
    ran: dict[tuple[str, str], tuple[Path, str]] = {}
    start = time.perf_counter()
    with contextlib.ExitStack() as stack:
        if client is None:
            client = stack.enter_context(grading_client(jobs, scheduler))
        workers = len(client.scheduler_info().get("workers", {}))
        grading._say(f"grading {len(tasks)} notebook(s) of {len(submissions)} learner(s) as "
                     f"Dask tasks on {workers} worker(s) ({client.scheduler.address})")
        futures = [client.submit(sandbox_task, learner, aid, name,
                                 (course_dir / "submitted" / learner / aid / name).read_bytes(),
                                 *text[aid], timeout, notebook_timeout, limits, pure=False,
                                 key=f"sandbox-{learner}-{aid}-{time.time_ns()}")
                   for learner, aid, name in tasks]
        files: dict[tuple[str, str], dict[str, bytes]] = {}
        runs: list[dict] = []
        for k, future in enumerate(as_completed(futures), start=1):
            out: SandboxOutcome = future.result()
            key = (out.learner, out.assignment)
            runs.append({"learner": out.learner, "assignment": out.assignment,
                         "worker": out.worker, "seconds": round(out.seconds, 2)})
            if key in status or key in ran:  # cannot happen: one future per task
                raise RuntimeError(f"{key} came back twice")
            if out.files is None:
                status[key] = out.failure
            else:
                workdir = unpack(out.files, course_dir / "sandbox" / out.learner / out.assignment)
                ran[key], files[key] = (workdir, out.note), out.files
            grading._say(f"[{k}/{len(tasks)}] {out.learner} / {out.assignment}: "
                         f"{out.failure or out.note or 'ran to the end'} ({out.seconds:.0f} s "
                         f"on {out.worker}; {time.perf_counter() - start:.0f} s elapsed)")

        checks = []
        for aid in sorted({aid for _, aid in ran}):
            name = next(n for n, a in source.items() if a == aid)
            learners = sorted(learner for (learner, a) in ran if a == aid)
            chunks = [learners[i:i + trusted_chunk]
                      for i in range(0, len(learners), trusted_chunk)]
            grading._say(f"checking {aid} for {len(learners)} learner(s) in "
                         f"{len(chunks)} trusted kernel(s)")
            for chunk in chunks:
                checks.append((aid, client.submit(
                    trusted_task, aid, name, text[aid][0],
                    {learner: files[(learner, aid)] for learner in chunk}, timeout,
                    pure=False, key=f"trusted-{aid}-{chunk[0]}-{time.time_ns()}")))
        tests: dict[str, dict[str, dict[str, list]]] = {}
        for aid, future in checks:
            tests.setdefault(aid, {}).update(future.result())
    # which worker ran each learner-notebook and for how long (docs/GRADING_AT_SCALE.md)
    (course_dir / TASKS_FILE).write_text(json.dumps(runs, indent=1))

    # the instructor's own markdown is kept as written; every other cell is sanitised
    trusted_md = {aid: checking.markdown_digests(nbformat.reads(text[aid][0], as_version=4))
                  for aid in text}
    for (learner, aid), (workdir, note) in sorted(ran.items()):
        checking.write_results(course_dir / "results" / learner / f"{aid}.json", workdir,
                               tests[aid].get(learner, {}), note, trusted_md[aid])
        status[(learner, aid)] = grading._record(course_dir, timeout, learner, aid, feedback)
    if feedback:
        grading.offline_feedback(course_dir / "feedback")
    grading._say(f"graded {len(tasks)} notebook(s) in {time.perf_counter() - start:.0f} s")
    return {(learner, aid): status[(learner, aid)] for learner, aid, _ in tasks}
