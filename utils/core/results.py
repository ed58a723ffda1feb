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
* ``code``: the course code that computes it, found from ``compute`` itself
  (:func:`code_reached`): every function and class of ``utils`` that ``compute`` reaches, by its
  source without comments and docstrings, and the module-level settings they read. Edit an
  explainer it calls and the stored result is recomputed; edit a plot function, a docstring or
  an unrelated function of the same module and the stored result stays valid;
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
want to commit; and :func:`code_reached` follows the functions it calls into other modules,
where joblib hashes one function's code.
"""
from __future__ import annotations

import ast
import dataclasses
import functools
import hashlib
import inspect
import io
import json
import os
import sys
import textwrap
import tokenize
from pathlib import Path
from types import CodeType
from typing import Callable, Iterable, Mapping

import numpy as np

from utils.core import config

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
        size = path.stat().st_size
        if size:
            with np.load(path, allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
    except Exception as err:  # BadZipFile, EOFError, zlib.error, OSError, KeyError, ValueError...
        raise ValueError(f"unreadable ({type(err).__name__}: {err})") from None
    if not size:
        raise ValueError("the file is empty")
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


#: Packages whose functions are part of a result's key when the computation reaches them.
TRACKED_PACKAGES: tuple[str, ...] = ("utils",)
#: Modules that never change a stored result (figures, notebook set-up, this cache): left out.
UNTRACKED_MODULES: tuple[str, ...] = ("utils.plotting", "utils.notebook", "utils.core.results")


def _tracked(module: str | None, packages: tuple[str, ...]) -> bool:
    module = module or ""
    if any(module == m or module.startswith(m + ".") for m in UNTRACKED_MODULES):
        return False
    return any(module == p or module.startswith(p + ".") for p in packages)


def normalised_source(obj) -> str | None:
    """The source of a function or class without its comments, docstrings and blank lines
    (``None`` where Python has no source, e.g. a function typed at a prompt). Plain text, so
    that the same code gives the same key on every Python version."""
    try:
        source = textwrap.dedent(inspect.getsource(obj))
    except (OSError, TypeError):
        return None
    lines = source.splitlines()
    drop: set[int] = set()
    try:
        tree = ast.parse(source)
    except SyntaxError:   # a lambda cut out of a longer statement: comments are still removed
        tree = None
    if tree is not None:
        for node in ast.walk(tree):
            body = getattr(node, "body", None)
            if (isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                    and body and isinstance(body[0], ast.Expr)
                    and isinstance(body[0].value, ast.Constant)
                    and isinstance(body[0].value.value, str)):
                drop.update(range(body[0].lineno - 1, body[0].end_lineno))
    try:
        comments = [tok.start for tok in tokenize.generate_tokens(io.StringIO(source).readline)
                    if tok.type == tokenize.COMMENT]
    except (tokenize.TokenError, IndentationError, SyntaxError):
        comments = []
    for row, col in comments:
        lines[row - 1] = lines[row - 1][:col]
    kept = [line.rstrip() for i, line in enumerate(lines) if i not in drop]
    return "\n".join(line for line in kept if line.strip())


def _stable(value, depth: int = 0):
    """A JSON-able form of a module-level setting (numbers, strings, containers of them,
    dataclasses), or ``None`` for anything else (functions, models, open files...)."""
    if depth > 4:
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.ndarray) and value.dtype != object and value.size <= 10_000:
        return [str(value.dtype), list(value.shape), hashlib.sha256(
            np.ascontiguousarray(value).tobytes()).hexdigest()]
    if isinstance(value, (tuple, list)):
        items = [_stable(v, depth + 1) for v in value]
        return None if any(i is None and v is not None for i, v in zip(items, value)) else items
    if isinstance(value, (set, frozenset)) and all(isinstance(v, (int, str)) for v in value):
        return sorted(value, key=str)
    if isinstance(value, dict) and all(isinstance(k, (str, int, float)) for k in value):
        items = {str(k): _stable(v, depth + 1) for k, v in value.items()}
        return None if any(items[str(k)] is None and v is not None for k, v in value.items()) \
            else items
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _stable(dataclasses.asdict(value), depth + 1)
    return None


def _code_objects(code: CodeType):
    yield code
    for const in code.co_consts:
        if isinstance(const, CodeType):
            yield from _code_objects(const)


def _referenced(func, packages: tuple[str, ...], settings: dict):
    """Functions, classes and partials that ``func``'s code names (globals, attributes of
    modules it names, closure cells, defaults); module-level settings it reads go to
    ``settings``."""
    glob = getattr(func, "__globals__", {})
    names: set[str] = set()
    for code in _code_objects(func.__code__):
        names.update(code.co_names)
        names.update(code.co_freevars)
    cells = [c.cell_contents for c in (func.__closure__ or ()) if _filled(c)]
    candidates = cells + list(func.__defaults__ or ()) \
        + list((func.__kwdefaults__ or {}).values())
    for name in sorted(names):
        if name not in glob:
            continue
        value = glob[name]
        if inspect.ismodule(value):
            if _tracked(value.__name__, packages):
                candidates += [getattr(value, n) for n in sorted(names) if hasattr(value, n)]
            continue
        if callable(value) or isinstance(value, (dict, list, tuple)) \
                or dataclasses.is_dataclass(value):
            candidates.append(value)
        stable = _stable(value)
        if stable is not None and not callable(value):
            settings[f"{func.__module__}.{name}"] = stable
    for value in candidates:
        yield from _callables(value)


def _callables(value, depth: int = 0):
    """The functions a value holds: itself, the items of a container, the fields of a
    dataclass instance (a registry entry that names its function), two levels deep."""
    if callable(value) and not isinstance(value, type) or inspect.isclass(value):
        yield value
    if depth >= 2:
        return
    if isinstance(value, dict):
        items = list(value.values())
    elif isinstance(value, (list, tuple)):
        items = list(value)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        items = [getattr(value, f.name) for f in dataclasses.fields(value)]
    else:
        return
    for item in items:
        yield from _callables(item, depth + 1)


def _filled(cell) -> bool:
    try:
        cell.cell_contents
    except ValueError:
        return False
    return True


def code_reached(compute: Callable, packages: tuple[str, ...] = TRACKED_PACKAGES
                 ) -> tuple[dict[str, str | None], dict]:
    """What ``compute`` runs of the course's own code: ``(sources, settings)``.

    ``sources`` maps the qualified name of every function and class of ``packages`` (and of
    ``compute``'s own module, e.g. the notebook that defines it) reached from ``compute`` (the functions it names, the functions those name, and so on; a class with all
    its methods) to its :func:`normalised_source`; ``compute`` itself is in it whatever its
    module. ``settings`` holds the module-level constants those functions read. Figures
    (:mod:`utils.plotting`) and notebook set-up are never reached, so editing a plot leaves the
    key as it was. Found by reading the code objects, not by running anything: a method called
    only on an instance whose class the code never names is not seen (name the class, or add
    what it depends on to ``params``).
    """
    sources: dict[str, str | None] = {}
    settings: dict = {}
    # the compute function's own module too (a notebook's functions compute its results)
    own = getattr(compute, "__module__", None)
    packages = tuple(packages) + ((own,) if own and not _tracked(own, packages)
                                  and own not in UNTRACKED_MODULES else ())
    stack = [(compute, True)]
    while stack:
        obj, root = stack.pop()
        if isinstance(obj, functools.partial):
            stack += [(v, False) for v in (obj.func, *obj.args, *obj.keywords.values())
                      if callable(v)]
            continue
        if inspect.ismethod(obj):
            obj = obj.__func__
        if isinstance(obj, (staticmethod, classmethod)):
            obj = obj.__func__
        if not (inspect.isfunction(obj) or inspect.isclass(obj)):
            continue
        if not root and not _tracked(getattr(obj, "__module__", None), packages):
            continue
        key = f"{obj.__module__}.{obj.__qualname__}"
        if inspect.isfunction(obj) and getattr(obj, "__wrapped__", None) is not None:
            # a decorator's wrapper (functools.wraps gives it the name of what it wraps): its
            # own code under its own name, then the wrapped function
            code = obj.__code__
            key = f"{obj.__globals__.get('__name__')}.{getattr(code, 'co_qualname', code.co_name)}"
            stack.append((obj.__wrapped__, False))
            if key in sources:
                continue
            sources[key] = normalised_source(code)
            stack += [(v, False) for v in _referenced(obj, packages, settings)]
            continue
        if key in sources:
            continue
        source = normalised_source(obj)
        if source is None and not root:   # generated code (a dataclass's __init__): its class
            continue                      # is in the key already
        sources[key] = source
        if inspect.isclass(obj):
            for member in vars(obj).values():
                if isinstance(member, property):
                    member = member.fget
                if isinstance(member, (staticmethod, classmethod)):
                    member = member.__func__
                if inspect.isfunction(member):
                    stack.append((member, False))
            continue
        stack += [(v, False) for v in _referenced(obj, packages, settings)]
    return sources, settings


def code_digest(compute: Callable, packages: tuple[str, ...] = TRACKED_PACKAGES) -> str:
    """SHA-256 over :func:`code_reached` of ``compute``: the part of a result's key that says
    which code computed it."""
    sources, settings = code_reached(compute, packages)
    payload = {"sources": {k: sources[k] for k in sorted(sources)}, "settings": settings}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def result_key(inputs: Iterable = (), models: Iterable = (), compute: Callable | None = None,
               params: Mapping | None = None) -> str:
    """The key of a result (first 16 hex digits of a SHA-256; see the module docstring)."""
    digest = hashlib.sha256()
    for arr in inputs:
        _update_array(digest, arr)
    for model in models:
        digest.update(model_digest(model).encode())
    if compute is not None:
        digest.update(code_digest(compute).encode())
    digest.update(json.dumps(params or {}, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:16]


def cached(name: str, compute: Callable[[], Mapping[str, np.ndarray]], *, inputs: Iterable = (),
           models: Iterable = (), params: Mapping | None = None,
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
    key = result_key(inputs, models, compute, params)
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
