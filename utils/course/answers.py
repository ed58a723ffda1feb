"""Learners' answers as plain data: exported in the sandbox, checked by the grader's own kernel.

The learner's kernel (inside the grading sandbox) calls :func:`export` just before each test
cell: the variables the test reads are written to ``<answers>/<test grade id>.json`` (a tagged
JSON tree) and ``.npz`` (numeric/bool/str arrays, saved and loaded **without pickle**). The
grader's trusted kernel, which has re-executed the instructor notebook, calls :func:`inject` to
put one learner's values in place of its own, runs the test cell (hidden tests included), and
:func:`restore` to put its own values back.

Only plain data crosses: ``None``, ``bool``, ``int``, ``float``, ``complex``, ``str``, numpy
scalars and arrays (no object dtype), and lists, tuples and dicts (string or integer keys) of
these. Anything else (a function, a model, a DataFrame) is recorded as *not exportable*; the
grader then uses the outcome of the visible test as run in the sandbox (see
``utils.course.grading``). Written here because no library does exactly this: ``json`` alone
loses arrays and ``np.savez`` alone needs pickle for nested containers.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable

import numpy as np

#: Largest answer file the grader reads (bytes): more is not an exercise answer.
MAX_BYTES: int = 64 * 1024 * 1024
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


def _decode(node: Any, arrays) -> Any:
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
        items = [_decode(v, arrays) for v in node["items"]]
        return items if kind == "list" else tuple(items)
    if kind == "dict":
        return {_decode(k, arrays): _decode(v, arrays) for k, v in node["items"]}
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


def load(path: str | Path) -> tuple[dict[str, Any], dict[str, str]]:
    """Read an exported answer file (trusted side): ``(values, status)``. No pickle is used.

    Raises ``ValueError`` for a missing, oversized or malformed file.
    """
    path = Path(path)
    meta_path, npz_path = path.with_suffix(".json"), path.with_suffix(".npz")
    if not meta_path.is_file() or not npz_path.is_file():
        raise ValueError("no answers were exported (the notebook stopped before this test)")
    if meta_path.stat().st_size + npz_path.stat().st_size > MAX_BYTES:
        raise ValueError(f"exported answers larger than {MAX_BYTES} bytes")
    try:
        meta = json.loads(meta_path.read_text())
        with np.load(npz_path, allow_pickle=False) as npz:
            values = {str(name): _decode(node, npz) for name, node in meta["values"].items()}
        status = {str(k): str(v) for k, v in meta["status"].items()}
    except Exception as err:  # any malformed file is the learner's problem, never a crash
        raise ValueError(f"unreadable exported answers ({type(err).__name__}: {err})") from None
    return values, status


def inject(namespace: dict, path: str | Path) -> dict[str, Any]:
    """Put a learner's exported values into ``namespace``; returns what :func:`restore` needs.

    A name the learner left undefined is removed from ``namespace`` (so the test raises
    ``NameError`` as it would in the learner's notebook). Raises ``ValueError`` when nothing
    was exported or a value is not exportable (the caller then scores from the sandbox).
    """
    values, status = load(path)
    saved = {name: namespace.get(name, UNDEFINED) for name in status}
    for name, state in status.items():
        if state == "ok":
            namespace[name] = values[name]
        elif state == "undefined":
            namespace.pop(name, None)
    return saved


def restore(namespace: dict, saved: dict[str, Any]) -> None:
    """Undo :func:`inject`: the grader's own values back in ``namespace``."""
    for name, value in saved.items():
        if value is UNDEFINED:
            namespace.pop(name, None)
        else:
            namespace[name] = value
