"""Run one learner notebook in a bubblewrap sandbox (``make grade``).

Each submission runs in its own ``bwrap`` namespace sandbox (Debian package ``bubblewrap``):

- its own PID, network, IPC, UTS, cgroup and user namespaces (``--unshare-all``): it sees no
  other process (not the grader, not other learners), has no network, and every process in it
  dies with it (``--die-with-parent``; the notebook's time limit kills the whole namespace);
- a file system made of read-only binds only: the system (``/usr``...), the Python and the
  virtual environment, the course library ``utils/``, the trained models ``data/models``, the
  stored results ``data/results``, the beat cache and the MIT-BIH copy; plus ``/sandbox`` (read-write): its own copy of the
  notebook, where it writes the executed notebook and its exported answers. The instructor
  sources (``notebooks/``, ``build/nbgrader/source``), the gradebook, the CSV files and the
  other learners' folders are simply not there;
- no capabilities (``--cap-drop ALL``), a fresh session (no terminal injection);
- resource limits set by the grader (:mod:`utils.course.limits`): memory and processes for
  the whole sandbox (a control group where one can be made, rlimits otherwise) and the size
  of any file it writes.

Inside, :func:`run_notebook` (``python -m utils.course.sandbox``) executes the notebook cell by
cell with nbclient (errors allowed, a time limit per cell that interrupts and then kills a
kernel that ignores the interrupt, :mod:`utils.course.watchdog`; outputs kept up to a budget
per cell, :data:`MAX_CELL_OUTPUT_CHARS`) and, just before each test cell,
exports the variables the test reads with :func:`utils.course.answers.export`. The executed
notebook is saved after every cell, so a kernel that dies or a notebook that runs out of time
keeps what it had done: an exercise that hangs or crashes costs only itself and those after
it that depended on the dead kernel.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from utils.core.config import DATA_DIR, MITDB_ENV, ROOT
from . import limits as limits_module
from .limits import Limits
from . import watchdog

#: Mount point of the learner's own folder inside the sandbox.
SANDBOX_DIR = "/sandbox"
#: System paths bound read-only when they exist.
SYSTEM_PATHS: tuple[str, ...] = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64",
                                 "/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d",
                                 "/etc/passwd", "/etc/group", "/etc/nsswitch.conf",
                                 "/etc/localtime", "/etc/fonts", "/etc/alternatives",
                                 "/etc/ssl/certs")
INSTALL_HINT = ("Install bubblewrap (as root: `apt-get install -y bubblewrap`; "
                "`make grade` tries this itself when run as root).")


class SandboxUnavailable(RuntimeError):
    """bubblewrap is missing or cannot create namespaces here (message says what to do)."""


def bwrap_path() -> str:
    """Path of the ``bwrap`` executable; raises :class:`SandboxUnavailable` with the fix."""
    path = shutil.which("bwrap")
    if path is None:
        raise SandboxUnavailable(f"`bwrap` not found: grading runs every submission in a "
                                 f"bubblewrap sandbox. {INSTALL_HINT}")
    return path


def check_sandbox() -> None:
    """Start a trivial sandbox once; raises :class:`SandboxUnavailable` with the reason."""
    cmd = [bwrap_path(), "--unshare-all", "--die-with-parent", "--cap-drop", "ALL",
           *_ro_binds(SYSTEM_PATHS), "--proc", "/proc", "--dev", "/dev", "true"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise SandboxUnavailable(
            f"bubblewrap cannot create a sandbox here: {result.stderr.strip()}. It needs "
            "unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1) or, in a "
            "container, one started with namespaces allowed (e.g. docker --privileged or "
            "--security-opt seccomp=unconfined).")


def _ro_binds(paths: Sequence[str | Path], dest: Sequence[str | Path] | None = None
              ) -> list[str]:
    args: list[str] = []
    for i, path in enumerate(paths):
        target = dest[i] if dest is not None else path
        args += ["--ro-bind-try", str(path), str(target)]
    return args


def _venv_python() -> Path:
    """The environment's Python, by a path that keeps the venv (its ``pyvenv.cfg``) visible."""
    return Path(sys.prefix).resolve() / "bin" / Path(sys.executable).name


def data_binds() -> list[tuple[Path, Path]]:
    """``(real path, path in the sandbox)`` of the course data bound read-only."""
    pairs = [(ROOT / "utils", ROOT / "utils"), (DATA_DIR / "models", DATA_DIR / "models")]
    # results: the stored results of slow analyses (utils.core.results), read by the notebooks
    # aami: the AAMI beat cache of week 1 (utils.data.aami), rebuilt outside the sandbox when missing
    for folder in (DATA_DIR / "cache", DATA_DIR / "aami", DATA_DIR / "mitdb", DATA_DIR / "results"):
        if folder.exists():
            pairs.append((folder.resolve(), folder))
    real = _mitdb_real_path()
    if real is not None:
        pairs.append((real, real))
    return pairs


def _mitdb_real_path() -> Path | None:
    """The resolved ``MITDB_DIR`` (links followed), or None when unset or missing: the path
    the sandbox binds the database at and hands to the notebook (a link under /tmp would be
    hidden by the sandbox's fresh /tmp)."""
    env = os.environ.get(MITDB_ENV, "").strip()
    if env and Path(env).expanduser().exists():
        return Path(env).expanduser().resolve()
    return None


def sandbox_command(workdir: Path, argv: Sequence[str]) -> list[str]:
    """The ``bwrap`` command line that runs ``argv`` with ``workdir`` as ``/sandbox``."""
    python = _venv_python()
    venv = Path(sys.prefix).resolve()
    ro = [*SYSTEM_PATHS, str(Path(sys.base_prefix).resolve()), str(venv)]
    # A fresh /tmp (and /proc, /dev) first: bwrap applies its mounts in order, so binds of
    # paths under /tmp (a clone of the course in /tmp, its venv) must come after it.
    cmd = [bwrap_path(), "--unshare-all", "--die-with-parent", "--new-session",
           "--cap-drop", "ALL", "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp",
           *_ro_binds(ro)]
    for real, inside in data_binds():
        cmd += ["--ro-bind", str(real), str(inside)]
    env = {"PATH": f"{python.parent}:/usr/bin:/bin", "HOME": "/tmp", "PYTHONPATH": str(ROOT),
           "JUPYTER_PATH": f"{SANDBOX_DIR}/jupyter", "JUPYTER_RUNTIME_DIR": "/tmp/runtime",
           "JUPYTER_CONFIG_DIR": "/tmp/jupyter", "IPYTHONDIR": "/tmp/ipython",
           "MPLCONFIGDIR": "/tmp/matplotlib", "MPLBACKEND": "Agg", "LANG": "C.UTF-8",
           "PYTHONDONTWRITEBYTECODE": "1"}
    for name in ("TF_CPP_MIN_LOG_LEVEL", "PYTHONHASHSEED", MITDB_ENV, "OMP_NUM_THREADS"):
        if os.environ.get(name):
            env[name] = os.environ[name]
    mitdb = _mitdb_real_path()
    if mitdb is not None:
        env[MITDB_ENV] = str(mitdb)   # where data_binds put it
    cmd += ["--bind", str(Path(workdir).resolve()), SANDBOX_DIR, "--chdir", SANDBOX_DIR,
            "--clearenv"]
    for key, value in env.items():
        cmd += ["--setenv", key, value]
    return cmd + ["--", *argv]


@dataclass(frozen=True)
class SandboxResult:
    """How a sandboxed run ended: exit code, wall time, whether the notebook limit hit."""

    returncode: int
    seconds: float
    timed_out: bool
    log: str
    peak_memory_mb: float | None = None


def prepare_workdir(workdir: Path, notebook, plan: dict) -> None:
    """Fill ``workdir`` (emptied) with the notebook to run, the export plan and a kernelspec."""
    import nbformat

    workdir = Path(workdir)
    if workdir.exists():
        shutil.rmtree(workdir)
    (workdir / "answers").mkdir(parents=True)
    nbformat.write(notebook, workdir / "input.ipynb")
    (workdir / "plan.json").write_text(json.dumps(plan))
    spec_dir = workdir / "jupyter" / "kernels" / "python3"
    spec_dir.mkdir(parents=True)
    spec = {"argv": [str(_venv_python()), "-m", "ipykernel_launcher", "-f",
                     "{connection_file}"],
            "display_name": "Python 3 (sandbox)", "language": "python"}
    (spec_dir / "kernel.json").write_text(json.dumps(spec))


def _log_tail(path: Path, size: int = 4000) -> str:
    """The last ``size`` bytes of the sandbox log (which the learner's code can fill)."""
    with open(path, "rb") as log:
        log.seek(0, os.SEEK_END)
        log.seek(max(0, log.tell() - size))
        return log.read().decode(errors="replace")


def run_sandboxed(workdir: Path, cell_timeout: int, notebook_timeout: int,
                  limits: Limits | None = None) -> SandboxResult:
    """Execute ``workdir/input.ipynb`` in a sandbox (see :func:`prepare_workdir`).

    Kills the whole sandbox after ``notebook_timeout`` seconds; ``limits`` (default
    :class:`~utils.course.limits.Limits`) bound its memory, processes and file sizes. Never
    raises for anything the notebook does; the results are the files it left in ``workdir``.
    """
    limits = Limits() if limits is None else limits
    argv = [str(_venv_python()), "-m", "utils.course.sandbox", "--cell-timeout",
            str(int(cell_timeout))]
    workdir = Path(workdir)
    log_path = workdir.parent / (workdir.name + ".log")
    cgroup_file = workdir.parent / (workdir.name + ".cgroups")
    cmd = limits_module.wrap(limits, sandbox_command(workdir, argv), cgroup_file)
    start = time.perf_counter()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True,
                                env={**os.environ, "PYTHONPATH": str(ROOT)})
        timed_out = False
        try:
            proc.wait(timeout=notebook_timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            os.killpg(proc.pid, signal.SIGKILL)  # bwrap's namespace dies with it
            proc.wait()
    seconds = time.perf_counter() - start
    folders = [Path(line) for line in cgroup_file.read_text().splitlines()] \
        if cgroup_file.is_file() else []
    peak = limits_module.peak_memory_mb(folders)
    limits_module.remove_cgroups(folders)
    text = _log_tail(log_path)
    return SandboxResult(proc.returncode, seconds, timed_out, text, peak)


# --------------------------------------------------------------------------- inside the sandbox
EXPORT_CODE = ("__import__('utils.course.answers', fromlist=['export']).export("
               "globals(), {names!r}, {path!r})")


#: Characters of output one cell may leave (more is dropped, with a note in the notebook).
MAX_CELL_OUTPUT_CHARS: int = 200_000


def _bounded_client_class():
    """nbclient's ``NotebookClient`` that stops storing a cell's outputs past a budget (a cell
    printing 200 MB would otherwise be held in memory and written to ``output.ipynb``)."""
    from nbclient import NotebookClient

    class BoundedClient(NotebookClient):
        budget = MAX_CELL_OUTPUT_CHARS

        def output(self, outs, msg, display_id, cell_index):
            content = msg.get("content", {})
            size = len(str(content.get("text", ""))) + sum(
                len(str(v)) for v in (content.get("data") or {}).values()) + \
                len(str(content.get("traceback", "")))
            used = self._used.get(cell_index, 0) + size
            self._used[cell_index] = used
            if used > self.budget:
                self._dropped[cell_index] = self._dropped.get(cell_index, 0) + size
                return None
            return super().output(outs, msg, display_id, cell_index)

        def reset_budget(self, cell_index: int) -> None:
            self._used = {cell_index: 0}
            self._dropped = {}

    return BoundedClient


def run_notebook(directory: Path = Path(SANDBOX_DIR), cell_timeout: int = 900) -> None:
    """Execute ``directory/input.ipynb`` cell by cell into ``directory/output.ipynb``.

    ``plan.json`` maps a cell index to ``{"grade_id", "names"}``: before that cell the names
    are exported to ``answers/<grade_id>``. A dead kernel ends the run (what was saved stays).
    """
    import nbformat
    from nbclient.exceptions import DeadKernelError
    from nbformat.v4 import new_code_cell, new_output

    directory = Path(directory)
    nb = nbformat.read(directory / "input.ipynb", as_version=4)
    plan = {int(k): v for k, v in json.loads((directory / "plan.json").read_text()).items()}
    status = {"state": "running", "cells": len(nb.cells), "done": 0}

    def save() -> None:
        nbformat.write(nb, directory / "output.ipynb")
        (directory / "status.json").write_text(json.dumps(status))

    client = _bounded_client_class()(nb, timeout=None, kernel_name="python3",
                                     allow_errors=True,
                                     resources={"metadata": {"path": str(directory)}})
    client.reset_budget(0)
    save()
    over_time, fired = "", threading.Event()
    with client.setup_kernel():
        try:
            for index, cell in enumerate(nb.cells):
                if index in plan:
                    names, gid = plan[index]["names"], plan[index]["grade_id"]
                    probe = new_code_cell(EXPORT_CODE.format(
                        names=list(names), path=str(directory / "answers" / gid)))
                    watchdog.execute(client, probe, index, cell_timeout, store_history=False)
                if cell.cell_type == "code":
                    client.reset_budget(index)
                    over_time = f"cell {index} ran over {cell_timeout} s"
                    if watchdog.execute(client, cell, index, cell_timeout, fired=fired):
                        cell.outputs.append(new_output("stream", name="stderr", text=(
                            f"[the grader interrupted this cell after {cell_timeout} s]\n")))
                    over_time = ""
                    if client._dropped:
                        cell.outputs.append(new_output("stream", name="stderr", text=(
                            f"[output truncated by the grader: {client._dropped[index]} more "
                            f"characters not kept]\n")))
                status["done"] = index + 1
                save()
            status["state"] = "finished"
        except DeadKernelError as err:
            status["state"] = (f"kernel killed: {over_time} and ignored the interrupt"
                               if over_time and fired.is_set() else
                               f"kernel died (memory or process limit, or killed): {err}")[:300]
        finally:
            save()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="run the notebook in /sandbox (used by "
                                     "utils.course.grading inside bubblewrap)")
    parser.add_argument("--dir", type=Path, default=Path(SANDBOX_DIR))
    parser.add_argument("--cell-timeout", type=int, default=900)
    args = parser.parse_args(argv)
    run_notebook(args.dir, args.cell_timeout)


if __name__ == "__main__":
    main()
