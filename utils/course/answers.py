"""Learners' answers as plain data: exported in the sandbox, checked by the grader's own kernel.

The learner's kernel (inside the grading sandbox) calls :func:`export` just before each test
cell: the variables the test reads are written to ``<answers>/<test grade id>.json`` (a tagged
JSON tree) and ``.npz`` (numeric/bool/str arrays, saved and loaded **without pickle**). The
grader reads them back with :func:`load` (through :mod:`utils.course.readback`: no links, no
pipes, sizes limited after decompression), keeps only the names *it* expects (from the
instructor notebook, never from the learner's file), and hands its trusted kernel a verified
copy. That kernel, which has re-executed the instructor notebook, takes a :func:`snapshot` of
its namespace before any injection; for each learner it :func:`reset` s the namespace to that
snapshot, calls :func:`inject`, runs the test cell (hidden tests included); a final
:func:`reset` puts its own values back. No learner's value can outlive its own check.

Only plain data crosses: ``None``, ``bool``, ``int``, ``float``, ``complex``, ``str``, numpy
scalars and arrays (no object dtype), and lists, tuples and dicts (string or integer keys) of
these. Anything else (a function, a model, a DataFrame) is recorded as *not exportable*; the
grader then uses the outcome of the visible test as run in the sandbox (see
``utils.course.grading``). Written here because no library does exactly this: ``json`` alone
loses arrays and ``np.savez`` alone needs pickle for nested containers.
"""
from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from .readback import UntrustedFileError, load_npz, read_regular

#: Largest answer arrays the grader reads (bytes, after decompression): more is not an answer.
MAX_BYTES: int = 64 * 1024 * 1024
#: Largest ``.json`` part of an answer file (bytes).
MAX_JSON_BYTES: int = 8 * 1024 * 1024
#: Largest ``.npz`` part as stored (bytes, compressed or not).
MAX_NPZ_BYTES: int = MAX_BYTES + 1024 * 1024
#: Deepest nesting of lists / dicts read back.
MAX_DEPTH: int = 20
#: A value of the snapshot larger than this (bytes) is shared, not copied, between checks.
MAX_COPY_BYTES: int = 256 * 1024 * 1024
#: Marker in the grader's namespace for a name the learner did not define.
UNDEFINED = object()


class NotExportable(TypeError):
    """A value that is not plain data (function, model, DataFrame, object array...)."""


def _encode(value: Any, arrays: dict[str, np.ndarray], depth: int = 0) -> Any:
    if depth > 20:
        raise NotExportable("nested deeper than 20 levels")
    if value is None or isinstance(value, (bool, str)):
        return {"t": "v", "v": value}
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return {"t": "int", "v": str(int(value))}
    if isinstance(value, (float, np.floating)):
        number = float(value)
        return {"t": "float", "v": repr(number) if not math.isfinite(number) else number}
    if isinstance(value, np.bool_):
        return {"t": "v", "v": bool(value)}
    if isinstance(value, (complex, np.complexfloating)):
        return {"t": "complex", "v": [float(value.real), float(value.imag)]}
    if isinstance(value, np.ndarray):
        if value.dtype.hasobject or value.dtype.kind not in "biufcUS":
            raise NotExportable(f"array of dtype {value.dtype}")
        key = f"a{len(arrays)}"
        arrays[key] = np.ascontiguousarray(value)
        return {"t": "array", "key": key}
    if isinstance(value, (list, tuple)):
        return {"t": type(value).__name__,
                "items": [_encode(v, arrays, depth + 1) for v in value]}
    if isinstance(value, dict):
        items = []
        for k, v in value.items():
            if not isinstance(k, (str, int, np.integer)) or isinstance(k, bool):
                raise NotExportable(f"dict key of type {type(k).__name__}")
            items.append([_encode(k, arrays, depth + 1), _encode(v, arrays, depth + 1)])
        return {"t": "dict", "items": items}
    raise NotExportable(type(value).__name__)


def _decode(node: Any, arrays, depth: int = 0) -> Any:
    if depth > MAX_DEPTH:
        raise ValueError(f"nested deeper than {MAX_DEPTH} levels")
    kind = node["t"]
    if kind == "v":
        if node["v"] is not None and not isinstance(node["v"], (bool, str)):
            raise ValueError("bad plain value")
        return node["v"]
    if kind == "int":
        return int(node["v"])
    if kind == "float":
        return float(node["v"])
    if kind == "complex":
        return complex(*map(float, node["v"]))
    if kind == "array":
        return np.array(arrays[str(node["key"])])
    if kind in ("list", "tuple"):
        items = [_decode(v, arrays, depth + 1) for v in node["items"]]
        return items if kind == "list" else tuple(items)
    if kind == "dict":
        return {_decode(k, arrays, depth + 1): _decode(v, arrays, depth + 1)
                for k, v in node["items"]}
    raise ValueError(f"unknown answer tag {kind!r}")


def export(namespace: dict, names: Iterable[str], path: str | Path) -> dict[str, str]:
    """Write ``names`` from ``namespace`` to ``path``.json / ``path``.npz; returns their status.

    Status per name: ``"ok"``, ``"undefined"`` or ``"not exportable: <type>"``.
    """
    path = Path(path)
    arrays: dict[str, np.ndarray] = {}
    values: dict[str, Any] = {}
    status: dict[str, str] = {}
    for name in names:
        if name not in namespace:
            status[name] = "undefined"
            continue
        try:
            values[name] = _encode(namespace[name], arrays)
            status[name] = "ok"
        except NotExportable as err:
            status[name] = f"not exportable: {err}"
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path.with_suffix(".npz"), **arrays)
    path.with_suffix(".json").write_text(json.dumps({"status": status, "values": values}))
    return status


def load(path: str | Path, names: Iterable[str] | None = None, base: str | Path | None = None
         ) -> tuple[dict[str, Any], dict[str, str]]:
    """Read an exported answer file: ``(values, status)``. No pickle, no trust.

    ``path`` is the file stem (``<answers>/<grade id>``). With ``base`` (a trusted folder),
    ``path`` is relative to it and every component is opened without following links (see
    :func:`utils.course.readback.read_regular`). With ``names`` (the trusted list of names the
    test reads), only those names are returned and every one gets a status: ``"ok"`` when the
    file holds a readable value, ``"not exportable: ..."`` when the file says so, otherwise
    ``"undefined"``; whatever else the file lists is ignored. Raises ``ValueError`` for a
    missing, oversized or malformed file.
    """
    if base is None:
        base, relative = Path(path).parent, Path(path).name
    else:
        relative = str(path)
    try:
        meta_bytes = read_regular(Path(base), f"{relative}.json", MAX_JSON_BYTES)
        npz_bytes = read_regular(Path(base), f"{relative}.npz", MAX_NPZ_BYTES)
    except FileNotFoundError:
        raise ValueError("no answers were exported (the notebook stopped before this test)") \
            from None
    except UntrustedFileError as err:
        raise ValueError(f"exported answers refused: {err}") from None
    except OSError as err:
        raise ValueError(f"exported answers unreadable ({type(err).__name__})") from None
    try:
        meta = json.loads(meta_bytes)
        file_values, file_status = meta["values"], meta["status"]
        if not isinstance(file_values, dict) or not isinstance(file_status, dict):
            raise ValueError("values and status must be objects")
        arrays = load_npz(npz_bytes, MAX_BYTES)
        wanted = list(file_values) if names is None else list(names)
        values = {str(n): _decode(file_values[n], arrays) for n in wanted if n in file_values}
    except Exception as err:  # any malformed file is the learner's problem, never a crash
        raise ValueError(f"unreadable exported answers ({type(err).__name__}: "
                         f"{str(err)[:200]})") from None
    if names is None:
        status = {str(k): str(v)[:200] for k, v in file_status.items()}
    else:
        status = {}
        for name in names:
            claimed = str(file_status.get(name, ""))[:200]
            status[name] = ("ok" if name in values else claimed
                            if claimed.startswith("not exportable") else "undefined")
    return values, status


# --------------------------------------------------------------------------- trusted kernel side
#: The trusted kernel's namespace before any injection (kept here, out of the user namespace).
_SNAPSHOT: dict[str, Any] = {}


def snapshot(namespace: dict) -> None:
    """Remember ``namespace`` (a shallow copy) before the learners' checks of one test."""
    _SNAPSHOT.clear()
    _SNAPSHOT.update(namespace)


def _nbytes(value: Any) -> int:
    if isinstance(value, np.ndarray):
        return int(value.nbytes)
    return 0


def reset(namespace: dict, fresh: Iterable[str] = ()) -> None:
    """Make ``namespace`` exactly the :func:`snapshot` again (same objects), with the names in
    ``fresh`` (what the test reads) deep-copied when they are mutable containers, so a test
    that changes them in place cannot carry one learner's effect to the next."""
    namespace.clear()
    namespace.update(_SNAPSHOT)
    for name in fresh:
        value = _SNAPSHOT.get(name)
        if isinstance(value, (np.ndarray, list, dict, set)) and \
                _nbytes(value) <= MAX_COPY_BYTES:
            try:
                namespace[name] = copy.deepcopy(value)
            except Exception:  # not copyable: shared, as before
                pass


def inject(namespace: dict, path: str | Path, names: Iterable[str]) -> None:
    """Put the values of ``names`` from the (trusted, verified) answer file ``path`` into
    ``namespace``; a name without a value is removed (the test then raises ``NameError`` as
    it would in the learner's notebook). Call :func:`reset` first."""
    names = list(names)
    values, _ = load(path, names)
    for name in names:
        if name in values:
            namespace[name] = values[name]
        else:
            namespace.pop(name, None)
