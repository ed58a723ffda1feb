"""Shared pytest fixtures: the MIT-BIH mirror (skipped with a reason when absent) and beats."""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest  # noqa: E402

from utils import config, data  # noqa: E402


def _find_db():
    for candidate in (config.mitdb_env_dir(), config.DATA_DIR / "mitdb"):
        if candidate is not None and (candidate / "100.hea").is_file():
            return candidate
    return None


@pytest.fixture(scope="session")
def mitdb_dir():
    """Folder of the MIT-BIH database; tests needing it skip when it is absent (CI has it)."""
    path = _find_db()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must provide the database: set {config.MITDB_ENV}")
        pytest.skip(f"MIT-BIH not available: set {config.MITDB_ENV} or run `make data`")
    return path


@pytest.fixture(scope="session")
def beats(mitdb_dir):
    """All beats of the database (from the cache after the first extraction)."""
    return data.load_beats(db_dir=mitdb_dir, progress=False)
