"""Add the missing checksums to committed artefacts: ``python -m utils.course.seal`` (maintainers).

Stored results (``data/results/*.npz``) and model configs (``data/models/*/config.json``) carry
SHA-256 checksums that every load checks (:mod:`utils.core.results`, :mod:`utils.models.training`); a file
without one is recomputed or refused. Files written by code that predates the checksums (e.g. a
branch merged later) are sealed here once, deliberately, after checking that they are the
committed versions (``git diff`` shows nothing). Files that already carry a checksum are
verified, never rewritten: a wrong checksum is reported, not "fixed".
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from utils.core import config
from utils.core import results
from utils.models import training


def seal_results(folder: Path) -> tuple[list[str], list[str]]:
    """Seal the stored results of ``folder`` without a checksum; ``(sealed, failing)``."""
    sealed, failing = [], []
    for path in sorted(Path(folder).glob("*.npz")):
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        if results.CHECKSUM_KEY in arrays:
            try:
                results.read_verified(path)
            except ValueError as err:
                failing.append(f"{path.name}: {err}")
            continue
        results.write_verified(path, arrays)
        results.read_verified(path)
        sealed.append(path.name)
    return sealed, failing


def seal_configs(folder: Path) -> tuple[list[str], list[str]]:
    """Seal the model configs under ``folder`` without a checksum; ``(sealed, failing)``."""
    sealed, failing = [], []
    for path in sorted(Path(folder).glob("*/config.json")):
        cfg = json.loads(path.read_text())
        if training.CONFIG_CHECKSUM_KEY in cfg:
            try:
                training.check_config(cfg, path, path.parent)
            except training.ModelFileError as err:
                failing.append(str(err))
            continue
        training.seal_config(path.parent)
        sealed.append(path.parent.name)
    return sealed, failing


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    done_r, bad_r = seal_results(results.RESULTS_DIR)
    done_c, bad_c = seal_configs(config.MODELS_DIR)
    print(f"stored results sealed: {done_r or 'none'}")
    print(f"model configs sealed: {done_c or 'none'}")
    for line in bad_r + bad_c:
        print(f"CHECKSUM MISMATCH (not changed): {line}", file=sys.stderr)
    if bad_r or bad_c:
        sys.exit(1)


if __name__ == "__main__":
    main()
