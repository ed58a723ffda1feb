"""Stored results of slow, deterministic computations (committed derived artefacts).

Some analyses of the course (global Integrated Gradients with the completeness check, the
cascading randomisation test, the method x metric grid) take longer than a notebook may take
on a 2-core laptop (3 minutes). They are deterministic, so a notebook computes them once with
:func:`cached` and stores the arrays in ``data/results/<name>-<key>.npz``; the files are
committed like the trained weights, so a fresh clone loads them in a second.

The key is a SHA-256 over everything the result depends on, so a stale file is never used:

* ``inputs``: the arrays the computation reads (beats, targets, baselines), by dtype, shape and
  bytes;
* ``models``: the Keras models, by their weights;
* ``code``: the modules that compute it, by their source text (edit the explainer and the stored
  result is recomputed);
* ``params``: any other settings (steps, seeds, names), as JSON.

A missing or stale file is recomputed and written (the old files of the same ``name`` are
removed); ``recompute=True`` (the notebooks' ``RECOMPUTE`` flag) always recomputes. Where the
folder cannot be written (the read-only ``data/results`` of the grading sandbox), the computed
result is returned unsaved with a warning.

Every file carries the SHA-256 of its arrays (:data:`CHECKSUM_KEY`, see :func:`arrays_sha256`),
checked on every load, like the weights of the models: a file that is empty, truncated, not a
valid archive, without a checksum, or whose arrays do not match it (one number changed) is
reported on stderr and recomputed; in a read-only folder (the grading sandbox, where the
recomputation could take longer than the notebook may run) it is refused with
:class:`StoredResultError` naming the file and the fix. Written by
hand rather than with ``joblib.Memory`` because joblib keys on the function's code only, not on
the weights of the models passed in or the modules it calls, and writes pickles we would not
want to commit.
"""
from __future__ import annotations

import hashlib
import inspect
import json
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Callable, Iterable, Mapping

import numpy as np

from . import config

#: Folder of the stored results (committed).
RESULTS_DIR: Path = config.DATA_DIR / "results"
#: Member of every stored ``.npz`` that holds the SHA-256 of the other arrays.
CHECKSUM_KEY: str = "__sha256__"


class StoredResultError(ValueError):
    """A stored result is damaged or altered and cannot be recomputed here (read-only)."""


def arrays_sha256(arrays: Mapping[str, np.ndarray]) -> str:
    """SHA-256 over the names, dtypes, shapes and bytes of ``arrays`` (sorted by name)."""
    digest = hashlib.sha256()
    for key in sorted(arrays):
        if key == CHECKSUM_KEY:
            continue
        digest.update(f"{key}|".encode())
        _update_array(digest, arrays[key])
    return digest.hexdigest()


def read_verified(path: Path) -> dict[str, np.ndarray]:
    """The arrays of a stored result after checking its SHA-256; ``ValueError`` saying why
    it cannot be used (empty, not an archive, truncated, no checksum, altered)."""
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise ValueError("the file is empty")
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except ValueError as err:
        if str(err) == "the file is empty":
            raise
        raise ValueError(f"unreadable ({type(err).__name__}: {err})") from None
    except Exception as err:  # BadZipFile, EOFError, zlib.error, OSError, KeyError...
        raise ValueError(f"unreadable ({type(err).__name__}: {err})") from None
    stored = arrays.pop(CHECKSUM_KEY, None)
    if stored is None:
        raise ValueError("it carries no SHA-256 of its arrays")
    if arrays_sha256(arrays) != str(stored):
        raise ValueError("its arrays do not match the SHA-256 stored with them (altered)")
    return arrays


def write_verified(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Write ``arrays`` with their SHA-256 to ``path`` atomically (a compressed ``.npz``)."""
    path = Path(path)
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez_compressed(tmp, **arrays, **{CHECKSUM_KEY: np.array(arrays_sha256(arrays))})
    tmp.replace(path)


def _update_array(digest, arr) -> None:
    arr = np.ascontiguousarray(np.asarray(arr))
    if arr.dtype == object:
        raise TypeError("object arrays cannot be hashed reliably; pass numeric or string arrays")
    digest.update(f"{arr.dtype.str}|{arr.shape}|".encode())
    digest.update(arr.tobytes())


def model_digest(model) -> str:
    """SHA-256 over the weights of a Keras model (names, shapes and values)."""
    digest = hashlib.sha256()
    for w in model.weights:
        digest.update(str(getattr(w, "path", w.name)).encode())
        _update_array(digest, np.asarray(w))
    return digest.hexdigest()


def code_digest(module: ModuleType | str) -> str:
    """SHA-256 of a module's source file (a module object or its dotted name)."""
    mod = sys.modules[module] if isinstance(module, str) else module
    path = inspect.getsourcefile(mod)
    if path is None:
        raise ValueError(f"{mod!r} has no source file")
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def result_key(inputs: Iterable = (), models: Iterable = (), code: Iterable = (),
               params: Mapping | None = None) -> str:
    """The key of a result (first 16 hex digits of a SHA-256; see the module docstring)."""
    digest = hashlib.sha256()
    for arr in inputs:
        _update_array(digest, arr)
    for model in models:
        digest.update(model_digest(model).encode())
    for module in code:
        digest.update(code_digest(module).encode())
    digest.update(json.dumps(params or {}, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:16]


def cached(name: str, compute: Callable[[], Mapping[str, np.ndarray]], *, inputs: Iterable = (),
           models: Iterable = (), code: Iterable = (), params: Mapping | None = None,
           recompute: bool = False, folder: Path | None = None) -> dict[str, np.ndarray]:
    """The arrays returned by ``compute()``, read from ``folder/<name>-<key>.npz`` when that
    file exists (and ``recompute`` is False), otherwise computed and stored there.

    ``compute`` returns a mapping of names to arrays (numbers or strings, no objects). The
    returned dict always holds numpy arrays, whether computed or read, so a notebook prints the
    same either way.
    """
    if not name or not name.replace("_", "").replace("-", "").isalnum():
        raise ValueError(f"name must be letters, digits, '_' or '-', got {name!r}")
    folder = Path(folder) if folder is not None else RESULTS_DIR
    key = result_key(inputs, models, code, params)
    path = folder / f"{name}-{key}.npz"
    if path.is_file() and not recompute:
        try:
            return read_verified(path)
        except ValueError as err:   # a damaged or altered file is recomputed, never trusted
            if not os.access(folder, os.W_OK):
                raise StoredResultError(
                    f"stored result {path} cannot be used: {err}. It cannot be recomputed "
                    f"here (read-only folder); restore it with `git checkout -- "
                    f"data/results/{path.name}` or recompute it where the folder is "
                    f"writable.") from None
            print(f"stored result {path.name} cannot be used ({err}); recomputing",
                  file=sys.stderr)
    result = {k: np.asarray(v) for k, v in dict(compute()).items()}
    for k, v in result.items():
        if v.dtype == object:
            raise TypeError(f"result {k!r} is an object array; store numbers or strings")
        if k == CHECKSUM_KEY:
            raise ValueError(f"{CHECKSUM_KEY!r} is reserved for the checksum")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        write_verified(path, result)
        for old in folder.glob(f"{name}-*.npz"):
            if old != path and len(old.stem) == len(name) + 17:
                old.unlink()
    except OSError as err:   # e.g. the read-only data/results of the grading sandbox
        print(f"stored result {path.name} could not be written ({err}); using it unsaved",
              file=sys.stderr)
    return result
