"""This environment as the kernel of every notebook the course runs (grading, the lab).

Kept apart from :mod:`utils.course.grading` so that the learner release (``make release``),
which ships no grading code, can start its JupyterLab with the same kernel.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

KERNEL_NAME = "python3"


def ensure_venv_on_path(course_dir: Path) -> None:
    """Make nbgrader use this environment: its ``bin/`` on ``PATH``, its Python as kernel.

    ``make`` calls ``.venv/bin/python`` without activating the environment, so nbgrader would
    not find the ``alembic`` command it runs for the gradebook. And the ``python3`` kernel
    could resolve to another Python (a user-level kernelspec wins over the environment's): a
    kernelspec for this interpreter is put first on ``JUPYTER_PATH``, as nbval's
    ``--nbval-current-env`` does for the tests.
    """
    bindir = str(Path(sys.executable).parent)
    parts = os.environ.get("PATH", "").split(os.pathsep)
    if bindir not in parts:
        os.environ["PATH"] = os.pathsep.join([bindir, *filter(None, parts)])
    jupyter_dir = Path(course_dir).resolve() / "jupyter"
    spec_dir = jupyter_dir / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True, exist_ok=True)
    spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "Python 3 (ipykernel)", "language": "python"}
    (spec_dir / "kernel.json").write_text(json.dumps(spec, indent=1))
    paths = os.environ.get("JUPYTER_PATH", "").split(os.pathsep)
    if str(jupyter_dir) not in paths:
        os.environ["JUPYTER_PATH"] = os.pathsep.join([str(jupyter_dir), *filter(None, paths)])
