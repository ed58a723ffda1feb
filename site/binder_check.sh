#!/bin/bash
# Check the Binder configuration as far as a machine without Binder can (docs/SITE.md):
# a fresh copy of the committed repository, a clean virtual environment with the Python on
# PATH (3.11, as binder/runtime.txt asks), `pip install -r binder/requirements.txt` as
# repo2docker runs it, then binder/postBuild and binder/start. MITDB_DIR, when set, stands in
# for the PhysioNet download. Not checked: repo2docker itself, the conda base environment of
# mybinder.org and its JupyterLab, the download from PhysioNet, Binder's memory limits.
# Usage: bash site/binder_check.sh [work folder, default build/binder-check]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="$(mkdir -p "${1:-$ROOT/build/binder-check}" && cd "${1:-$ROOT/build/binder-check}" && pwd)"
PYTHON="${PYTHON:-python3.11}"
rm -rf "$WORK/repo" "$WORK/venv"
mkdir -p "$WORK/repo"
git -C "$ROOT" archive --format=tar HEAD | tar -x -C "$WORK/repo"
"$PYTHON" -m venv "$WORK/venv"
export PATH="$WORK/venv/bin:$PATH"
unset PYTHONPATH
cd "$WORK/repo"
test "$(cat binder/runtime.txt)" = "python-$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
SECONDS=0
python -m pip install -q --upgrade pip
python -m pip install -q --no-cache-dir -r binder/requirements.txt
echo "requirements: ${SECONDS} s"
SECONDS=0
bash binder/postBuild
echo "postBuild: ${SECONDS} s"
python - <<'PY'
import json, subprocess
from pathlib import Path
from utils.core.config import ROOT
from utils.course import grading
assert ROOT == Path.cwd(), (ROOT, Path.cwd())          # utils installed from this copy
from utils.course import layout
work = layout.notebooks_in("work")                     # the weeks, then work/deep_dives/
sources = grading.course_notebooks()
assert [p.relative_to("work") for p in work] == [layout.learner_path(p) for p in sources], work
for source in sources:
    assert not grading.leaked_lines(source, Path("work") / layout.learner_path(source)), source
assert not layout.broken_notebook_links("work"), layout.broken_notebook_links("work")
print(f"learner notebooks in work/: {len(work)}, no solution line, links resolve")
assert list(Path("data/cache").glob("beats_*.npz")), "no beat cache"
out = subprocess.run(["bash", "binder/start", "jupyter", "server", "extension", "list"],
                     capture_output=True, text=True, check=True)
# JUPYTER_CONFIG_DIR (set by binder/start) is the configuration Jupyter reads last, so it wins:
# its section must list every nbgrader server extension as disabled (as in `make lab`).
import re
text = re.sub(r"\x1b\[[0-9;]*m", "", out.stdout + out.stderr)
config = str((Path("build") / "learner" / "jupyter-config").resolve())
section = text.split(f"Config dir: {config}")[1].split("Config dir:")[0]
states = re.findall(r"^\s*(nbgrader\.server_extensions\.\w+)\s+(enabled|disabled)", section, re.M)
assert len(states) == 4 and all(state == "disabled" for _, state in states), section
print("binder/start: nbgrader's server extensions disabled")
PY
echo "binder check passed"
