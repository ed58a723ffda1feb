"""The learner's JupyterLab (``make lab``) and the instructor's (``make instructor``).

``make lab`` must show a learner the notebooks *without* the answers and without nbgrader's
instructor tools. It therefore:

1. makes the learner versions fresh from the sources with the same nbgrader step as
   ``make student`` (:func:`utils.course.grading.build_course`: solutions replaced by
   ``raise NotImplementedError()``, hidden tests and outputs removed, every release checked for
   leaked solution lines), in a course folder of its own (``build/learner/nbgrader``), so that
   it never resets the instructor's gradebook in ``build/nbgrader``;
2. copies them into the learner's work folder ``work/`` (git-ignored, not under ``build/``, so
   that ``make clean`` keeps it), laid out like ``notebooks/``: the weeks in ``work/``, the
   deep dives in ``work/deep_dives/`` (:mod:`utils.course.layout`), so that the links between
   them work. A notebook already there is **never overwritten** - it holds the learner's
   answers; when its release changed, the fresh version is written beside it as
   ``<name>.new.ipynb`` and the learner is told;
3. starts JupyterLab on ``work/`` with a Jupyter configuration folder of its own
   (``build/learner/jupyter-config``, set as ``JUPYTER_CONFIG_DIR``, which Jupyter reads last,
   so it wins) that disables nbgrader's lab extension (``labconfig/page_config.json``: no
   Nbgrader menu, Validate button or Create Assignment panel) and its four server extensions
   (``jupyter_server_config.json``: no formgrader and none of their log warnings);
4. adds ``--allow-root`` when run as root (containers, CI), which Jupyter refuses otherwise.

``make instructor`` opens the source notebooks in ``notebooks/`` (solutions in) with the
default configuration, nbgrader's tools included.

The notebooks find the data and models wherever they are opened from: ``utils`` is installed
in editable mode, so ``utils.core.config.ROOT`` is this repository whatever the working folder.
"""
from __future__ import annotations

import argparse
import filecmp
import json
import os
import sys
from pathlib import Path
from typing import Sequence

from utils.core.config import ROOT
from . import layout
from .kernel import ensure_venv_on_path

#: Everything ``make lab`` generates (course folder, Jupyter configuration, kernelspec).
LEARNER_BUILD_DIR: Path = ROOT / "build" / "learner"
#: Where the learner works: learner versions copied once, never overwritten (git-ignored).
WORK_DIR: Path = ROOT / "work"
#: nbgrader's JupyterLab extension (menu, Validate button, Create Assignment, formgrader UI).
NBGRADER_LABEXTENSIONS: tuple[str, ...] = ("@jupyter/nbgrader",)
#: nbgrader's Jupyter server extensions (as listed by ``jupyter server extension list``).
NBGRADER_SERVER_EXTENSIONS: tuple[str, ...] = (
    "nbgrader.server_extensions.formgrader",
    "nbgrader.server_extensions.validate_assignment",
    "nbgrader.server_extensions.assignment_list",
    "nbgrader.server_extensions.course_list",
)


def write_learner_config(config_dir: Path) -> Path:
    """Write a Jupyter configuration folder that hides nbgrader's instructor tools.

    Returns ``config_dir``. Used as ``JUPYTER_CONFIG_DIR``: it is the highest-priority
    configuration folder, so the settings here override those of the environment
    (``.venv/etc/jupyter``, where installing nbgrader enabled its extensions).
    """
    config_dir = Path(config_dir)
    (config_dir / "labconfig").mkdir(parents=True, exist_ok=True)
    page = {"disabledExtensions": {name: True for name in NBGRADER_LABEXTENSIONS}}
    (config_dir / "labconfig" / "page_config.json").write_text(json.dumps(page, indent=1))
    server = {"ServerApp": {"jpserver_extensions": {name: False for name in
                                                    NBGRADER_SERVER_EXTENSIONS}}}
    (config_dir / "jupyter_server_config.json").write_text(json.dumps(server, indent=1))
    return config_dir


def release_learner_notebooks(notebooks: Sequence[Path] | None = None,
                              build_dir: Path = LEARNER_BUILD_DIR) -> list[Path]:
    """Make the learner versions of ``notebooks`` (weeks and deep dives) fresh from the
    sources (nbgrader).

    Returns the released notebooks (``build_dir/release/<name>.ipynb`` for a week,
    ``build_dir/release/deep_dives/<name>.ipynb`` for a deep dive). Raises like
    :func:`utils.course.grading.build_course` (e.g. a solution line left in a release).
    """
    from . import grading  # lazy: not in the learner release, which ships its notebooks released

    notebooks = grading.course_notebooks() if notebooks is None else [Path(p) for p in notebooks]
    build_dir = Path(build_dir)
    grading.build_course(notebooks, course_dir=build_dir / "nbgrader",
                         student_dir=build_dir / "release")
    return [build_dir / "release" / layout.learner_path(nb) for nb in notebooks]


def sync_work_folder(released: Sequence[Path], work_dir: Path = WORK_DIR) -> dict[str, str]:
    """Copy the learner versions into ``work_dir`` without ever losing a learner's work.

    Each notebook goes to its place in the course layout
    (:func:`utils.course.layout.learner_path`: a week to ``work_dir/<name>``, a deep dive to
    ``work_dir/deep_dives/<name>``). ``work_dir/.released/`` remembers, under the same
    relative path, the release each copy was made from. Returns ``{relative path: action}``
    (e.g. ``"01_week.ipynb"``, ``"deep_dives/D1_dive.ipynb"``): ``"new"`` (copied),
    ``"kept"`` (release unchanged), ``"updated"`` (the release changed and the learner had
    not edited the copy: replaced) or ``"kept, fresh copy: <name>.new.ipynb"`` (the release
    changed and the learner's copy differs from what was handed out: the fresh version is
    written beside it).
    """
    work_dir = Path(work_dir)
    (work_dir / ".released").mkdir(parents=True, exist_ok=True)
    actions: dict[str, str] = {}
    for path in map(Path, released):
        rel = layout.learner_path(path)
        key = rel.as_posix()
        target, stamp = work_dir / rel, work_dir / ".released" / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        stamp.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            target.write_bytes(path.read_bytes())
            actions[key] = "new"
        elif stamp.exists() and filecmp.cmp(stamp, path, shallow=False):
            actions[key] = "kept"
        elif filecmp.cmp(target, path, shallow=False):
            actions[key] = "kept"
        elif stamp.exists() and filecmp.cmp(stamp, target, shallow=False):
            target.write_bytes(path.read_bytes())
            actions[key] = "updated"
        else:
            fresh = target.with_name(target.stem + ".new.ipynb")
            fresh.write_bytes(path.read_bytes())
            actions[key] = f"kept, fresh copy: {fresh.name}"
        stamp.write_bytes(path.read_bytes())
    return actions


def lab_environment(build_dir: Path = LEARNER_BUILD_DIR,
                    base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment of the learner's JupyterLab: its own configuration and settings folders.

    The kernel is this interpreter (a kernelspec put first on ``JUPYTER_PATH``, as for
    grading), so a user-level ``python3`` kernel of another Python cannot take over.
    """
    env = dict(os.environ if base is None else base)
    build_dir = Path(build_dir).resolve()
    env["JUPYTER_CONFIG_DIR"] = str(write_learner_config(build_dir / "jupyter-config"))
    env["JUPYTERLAB_SETTINGS_DIR"] = str(build_dir / "lab-settings")
    news = build_dir / "lab-settings" / "@jupyterlab" / "apputils-extension"
    if not (news / "notification.jupyterlab-settings").exists():
        # No "get notified about Jupyter news?" pop-up (and no request to the internet).
        news.mkdir(parents=True, exist_ok=True)
        (news / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')
    env["JUPYTERLAB_WORKSPACES_DIR"] = str(build_dir / "lab-workspaces")
    saved = {k: os.environ.get(k) for k in ("PATH", "JUPYTER_PATH")}
    try:
        ensure_venv_on_path(build_dir)  # writes the kernelspec, sets PATH/JUPYTER_PATH
        env["PATH"] = os.environ["PATH"]
        env["JUPYTER_PATH"] = os.environ["JUPYTER_PATH"]
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    return env


def is_root() -> bool:
    """Whether this process runs as root (Jupyter then needs ``--allow-root``)."""
    return hasattr(os, "geteuid") and os.geteuid() == 0


def lab_command(notebook_dir: Path, extra: Sequence[str] = ()) -> list[str]:
    """The ``jupyter lab`` command line for ``notebook_dir`` (``--allow-root`` as root)."""
    cmd = [sys.executable, "-m", "jupyterlab", f"--notebook-dir={Path(notebook_dir).resolve()}"]
    if is_root():
        cmd.append("--allow-root")
    return cmd + list(extra)


def prepare_learner_lab(work_dir: Path = WORK_DIR, build_dir: Path = LEARNER_BUILD_DIR,
                        notebooks: Sequence[Path] | None = None,
                        released_dir: Path | None = None) -> tuple[list[str], dict[str, str]]:
    """Release, sync and configure: returns ``(command, environment)`` of the learner lab.

    ``released_dir`` holds learner versions made already (the learner release of ``make
    release``, which has no sources to make them from), laid out like ``notebooks/`` (deep
    dives in ``deep_dives/``): they are synced as they are.
    """
    if released_dir is not None:
        released = layout.notebooks_in(released_dir)
        if not released:
            raise ValueError(f"no learner notebooks in {released_dir}")
    else:
        released = release_learner_notebooks(notebooks, build_dir)
    for name, action in sync_work_folder(released, work_dir).items():
        print(f"{Path(work_dir) / name}: {action}")
    return lab_command(work_dir), lab_environment(build_dir)


def main(argv: list[str] | None = None) -> None:
    """``python -m utils.course.learner lab|instructor [-- jupyter lab options]``."""
    parser = argparse.ArgumentParser(description="JupyterLab for learners (make lab) or "
                                     "instructors (make instructor)")
    parser.add_argument("view", choices=("lab", "instructor"))
    parser.add_argument("--work-dir", type=Path, default=WORK_DIR,
                        help="learner work folder (default: work/)")
    parser.add_argument("--build-dir", type=Path, default=LEARNER_BUILD_DIR)
    parser.add_argument("--released", type=Path, default=None,
                        help="folder of learner notebooks released already (learner release)")
    parser.add_argument("--prepare-only", action="store_true",
                        help="release and configure, print the command, do not start Jupyter")
    args, extra = parser.parse_known_args(argv)
    extra = [a for a in extra if a != "--"]
    if args.view == "instructor":
        command, env = lab_command(ROOT / "notebooks", extra), dict(os.environ)
        print("Instructor view: the source notebooks in notebooks/ (solutions and hidden "
              "tests visible, nbgrader tools enabled).", flush=True)
    else:
        try:
            command, env = prepare_learner_lab(args.work_dir, args.build_dir,
                                               released_dir=args.released)
        except (ValueError, RuntimeError) as err:
            sys.exit(f"error: {err}")
        command += extra
        print(f"Learner view: the learner notebooks in {args.work_dir} (no solutions, no "
              "instructor tools). Your answers stay there; `make lab` never overwrites them.",
              flush=True)
    if args.prepare_only:
        print(" ".join(command))
        return
    os.execvpe(command[0], command, env)


if __name__ == "__main__":
    main()
