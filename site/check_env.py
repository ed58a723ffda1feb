"""Check that the site's packages (build/site-env) fit the course's .venv without clashing.

Run by ``make site`` after installing ``requirements-site.txt`` with ``--no-deps --target``:

1. no module of the site environment shadows one the course environment already has (the
   site packages only add, so the pinned course stack is what autodoc imports);
2. every requirement of every installed package is met by the two together (``pip check``
   over ``sys.path``, which holds both).
"""
from __future__ import annotations

import importlib.machinery
import subprocess
import sys
from pathlib import Path


def top_level_names(site_env: Path) -> list[str]:
    """Importable top-level names installed in ``site_env``."""
    names = []
    for entry in sorted(Path(site_env).iterdir()):
        if entry.name in {"bin", "__pycache__"} or entry.name.endswith((".dist-info", ".pth")):
            continue
        if entry.is_dir() or entry.suffix in {".py", ".so"}:
            names.append(entry.name.split(".")[0])
    return names


def shadowed(site_env: Path) -> list[str]:
    """Names of ``site_env`` that the rest of ``sys.path`` also provides (as a real module)."""
    site_env = Path(site_env).resolve()
    others = [p for p in sys.path if p and Path(p).resolve() != site_env]
    clashes = []
    for name in top_level_names(site_env):
        spec = importlib.machinery.PathFinder.find_spec(name, others)
        if spec is not None and spec.origin not in (None, "namespace"):
            clashes.append(f"{name} ({spec.origin})")
    return clashes


def main() -> int:
    site_env = Path(sys.argv[1] if len(sys.argv) > 1 else "build/site-env")
    clashes = shadowed(site_env)
    if clashes:
        print(f"error: {site_env} shadows packages of the course environment: {clashes}\n"
              "       remove them from requirements-site.txt (the course pins must win)")
        return 1
    check = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True,
                           text=True)
    if check.returncode:
        print(f"error: the site packages and the course environment do not fit:\n"
              f"{check.stdout}{check.stderr}")
        return 1
    print(f"{site_env}: {len(top_level_names(site_env))} packages, none shadows the course "
          "environment; pip check: no broken requirement")
    return 0


if __name__ == "__main__":
    sys.exit(main())
