"""Execute notebooks in place (``make notebooks``), the way ``pytest --nbval`` will re-run them.

``python -m utils.course.execute notebooks/01_*.ipynb ...`` runs each notebook top to bottom with the
current Python (the course's virtual environment), from the ``notebooks/`` folder, and saves the
outputs into the file. Prints the wall time of each notebook.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def execute_notebook(path: Path, timeout: int = 1800) -> float:
    """Run ``path`` in place with nbclient; returns the wall time in seconds."""
    import nbformat
    from nbclient import NotebookClient

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=False,
                            resources={"metadata": {"path": str(path.parent.resolve())}})
    start = time.perf_counter()
    client.execute()
    seconds = time.perf_counter() - start
    nbformat.write(nb, path)
    return seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("notebooks", nargs="+", type=Path)
    args = parser.parse_args(argv)
    for nb in args.notebooks:
        seconds = execute_notebook(nb)
        print(f"{nb}: executed in {seconds:.1f} s", flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
