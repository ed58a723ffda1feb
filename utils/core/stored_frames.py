"""Tables (pandas DataFrames) as plain arrays, so that :func:`utils.core.results.cached` can store
them in an ``.npz`` file without pickles.

:func:`frames_to_arrays` turns a mapping ``name -> DataFrame`` into arrays (one per column, text
columns as unicode strings, plus the column names and dtypes), :func:`arrays_to_frames` turns
them back. A round trip keeps the column order, the index (stored as columns and set again),
numeric and boolean columns and text; ``None``/NaN in a text column comes back as NaN. Text is stored
as numpy unicode (control characters such as a trailing NUL are not kept). Object
columns that mix numbers and text come back as text. Nullable pandas dtypes (``Int64``,
``boolean``) with missing values are stored as float / text and come back so: store plain
results, not annotated tables.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

_SEP = "__"
_NAN_TEXT = "\x00nan"          # marks a missing value in a text column


def _check_name(name: str) -> None:
    if not name or _SEP in name or not name.replace("_", "").isalnum():
        raise ValueError(f"table names are letters, digits and single '_', got {name!r}")


def frames_to_arrays(frames: Mapping[str, object]) -> dict[str, np.ndarray]:
    """Arrays that hold every DataFrame of ``frames`` (see the module docstring).

    Keys: ``<name>__columns`` (column names), ``<name>__index`` (names of the index levels
    stored as the first columns, empty for a default RangeIndex), ``<name>__kinds`` (``int``,
    ``float``, ``bool`` or ``text`` per column) and ``<name>__c<i>`` (column ``i``)."""
    import pandas as pd

    out: dict[str, np.ndarray] = {}
    for name, frame in frames.items():
        _check_name(name)
        if not isinstance(frame, pd.DataFrame):
            raise TypeError(f"{name!r} is a {type(frame).__name__}, not a DataFrame")
        index_names: list[str] = []
        if not (isinstance(frame.index, pd.RangeIndex) and frame.index.start == 0
                and frame.index.step == 1 and frame.index.name is None):
            index_names = [str(n) if n is not None else f"level_{i}"
                           for i, n in enumerate(frame.index.names)]
            frame = frame.copy()
            frame.index.names = index_names
            frame = frame.reset_index()
        columns = [str(c) for c in frame.columns]
        if len(set(columns)) != len(columns):
            raise ValueError(f"{name!r} has duplicate column names")
        kinds = []
        for i, col in enumerate(frame.columns):
            values = frame[col]
            if pd.api.types.is_bool_dtype(values.dtype) and not values.isna().any():
                arr, kind = values.to_numpy(dtype=bool), "bool"
            elif pd.api.types.is_integer_dtype(values.dtype) and not values.isna().any():
                arr, kind = values.to_numpy(dtype=np.int64), "int"
            elif pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(
                    values.dtype):
                arr, kind = values.to_numpy(dtype=np.float64, na_value=np.nan), "float"
            else:
                arr = np.array([_NAN_TEXT if (v is None or (isinstance(v, float) and np.isnan(v))
                                              or v is pd.NA) else str(v) for v in values],
                               dtype=str)
                kind = "text"
                if not len(arr):
                    arr = np.zeros(0, dtype="<U1")
            out[f"{name}{_SEP}c{i}"] = arr
            kinds.append(kind)
        out[f"{name}{_SEP}columns"] = np.array(columns, dtype=str)
        out[f"{name}{_SEP}index"] = np.array(index_names, dtype=str)
        out[f"{name}{_SEP}kinds"] = np.array(kinds, dtype=str)
    return out


def arrays_to_frames(arrays: Mapping[str, np.ndarray]) -> dict[str, object]:
    """The DataFrames stored by :func:`frames_to_arrays` (other keys are ignored)."""
    import pandas as pd

    names = sorted(k[:-len(_SEP + "columns")] for k in arrays if k.endswith(_SEP + "columns"))
    out = {}
    for name in names:
        columns = [str(c) for c in np.asarray(arrays[f"{name}{_SEP}columns"])]
        kinds = [str(k) for k in np.asarray(arrays[f"{name}{_SEP}kinds"])]
        data = {}
        for i, (col, kind) in enumerate(zip(columns, kinds)):
            arr = np.asarray(arrays[f"{name}{_SEP}c{i}"])
            if kind == "int":
                data[col] = arr.astype(np.int64)
            elif kind == "float":
                data[col] = arr.astype(np.float64)
            elif kind == "bool":
                data[col] = arr.astype(bool)
            else:
                data[col] = pd.Series([np.nan if v == _NAN_TEXT else str(v) for v in arr],
                                      dtype=object)
        frame = pd.DataFrame(data, columns=columns)
        index = [str(n) for n in np.asarray(arrays[f"{name}{_SEP}index"])]
        if index:
            frame = frame.set_index(index)
        out[name] = frame
    return out
