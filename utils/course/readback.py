"""Reading files a sandboxed learner run left behind, without trusting them (``make grade``).

Everything under a sandbox folder was writable by the learner's code, so every file read back
may be a symbolic link (to another learner's folder, to the trusted reference answers), a named
pipe (an ``open`` that never returns), a device, a huge file, or a small compressed file that
decompresses to gigabytes. The functions here are the only way the grader reads such files:

- :func:`read_regular`: walks the path one component at a time with ``openat`` and
  ``O_NOFOLLOW`` (a link anywhere in the path is refused, not followed), opens non-blocking
  (a FIFO cannot block), accepts regular files only (``fstat``), refuses files over a size
  limit and stops reading after a time limit;
- :func:`load_npz`: reads an ``.npz`` from those bytes member by member, checking each
  ``.npy`` header (dtype without objects, shape) *before* reading its data, so the limit
  applies to the decompressed size; no pickle.

Written here because the standard library has the pieces (``os.open`` with ``dir_fd``,
``zipfile``, ``numpy.lib.format``) but no "open untrusted path" helper.
"""
from __future__ import annotations

import errno
import io
import os
import stat
import time
import zipfile
from pathlib import Path, PurePosixPath

import numpy as np
from numpy.lib import format as npy_format

#: Seconds one :func:`read_regular` may take (reading a regular file takes milliseconds).
READ_SECONDS: float = 10.0


class UntrustedFileError(ValueError):
    """A file from a sandbox that the grader refuses (link, pipe, too large, malformed)."""


def _open_flags() -> int:
    return os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)


def read_regular(base: Path, relative: str, max_bytes: int,
                 seconds: float = READ_SECONDS) -> bytes:
    """The bytes of ``base/relative``, where ``base`` is trusted and ``relative`` is not.

    Raises :class:`UntrustedFileError` when a component of ``relative`` is a link, ``..`` or
    not a folder, the file is not a regular file, is larger than ``max_bytes`` or cannot be
    read in ``seconds``; ``FileNotFoundError`` when it does not exist.
    """
    parts = PurePosixPath(relative).parts
    if not parts or any(p in ("", ".", "..", "/") for p in parts):
        raise UntrustedFileError(f"bad relative path {relative!r}")
    dir_flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(str(base), dir_flags)
    try:
        for part in parts[:-1]:
            try:
                nxt = os.open(part, dir_flags, dir_fd=fd)
            except NotADirectoryError:
                raise UntrustedFileError(f"{relative}: {part} is a link or not a folder") \
                    from None
            except OSError as err:
                if err.errno == errno.ELOOP:  # a symbolic link, with O_NOFOLLOW
                    raise UntrustedFileError(f"{relative}: {part} is a link") from None
                raise
            os.close(fd)
            fd = nxt
        try:
            file_fd = os.open(parts[-1], _open_flags(), dir_fd=fd)
        except OSError as err:
            if err.errno == errno.ELOOP:
                raise UntrustedFileError(f"{relative} is a symbolic link") from None
            raise
    finally:
        os.close(fd)
    try:
        info = os.fstat(file_fd)
        if not stat.S_ISREG(info.st_mode):
            raise UntrustedFileError(f"{relative} is not a regular file")
        if info.st_size > max_bytes:
            raise UntrustedFileError(f"{relative} is larger than {max_bytes} bytes "
                                     f"({info.st_size})")
        deadline = time.monotonic() + seconds
        chunks, total = [], 0
        while True:
            if time.monotonic() > deadline:
                raise UntrustedFileError(f"{relative}: reading took more than {seconds} s")
            chunk = os.read(file_fd, min(1 << 20, max_bytes + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > max_bytes:  # grew while being read
                raise UntrustedFileError(f"{relative} is larger than {max_bytes} bytes")
        return b"".join(chunks)
    finally:
        os.close(file_fd)


def load_npz(data: bytes, max_bytes: int, max_arrays: int = 10_000) -> dict[str, np.ndarray]:
    """Arrays of an ``.npz`` given as bytes, at most ``max_bytes`` once decompressed.

    Each member's ``.npy`` header is read first: object dtypes (pickles) are refused and the
    data size (``prod(shape) * itemsize``) counts against ``max_bytes`` before any of it is
    decompressed. Raises :class:`UntrustedFileError` for anything else.
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as err:
        raise UntrustedFileError(f"not an .npz file ({type(err).__name__})") from None
    if len(members) > max_arrays:
        raise UntrustedFileError(f"more than {max_arrays} arrays")
    budget = max_bytes
    out: dict[str, np.ndarray] = {}
    for member in members:
        name = member.filename
        if not name.endswith(".npy"):
            raise UntrustedFileError(f"unexpected member {name!r}")
        try:
            with archive.open(member) as stream:
                version = npy_format.read_magic(stream)
                if version == (1, 0):
                    shape, fortran, dtype = npy_format.read_array_header_1_0(stream)
                elif version in ((2, 0), (3, 0)):
                    shape, fortran, dtype = npy_format.read_array_header_2_0(stream)
                else:
                    raise UntrustedFileError(f"{name}: .npy version {version}")
                if dtype.hasobject or dtype.kind not in "biufcUS":
                    raise UntrustedFileError(f"{name}: dtype {dtype} is not plain data")
                count = 1
                for dim in shape:
                    count *= int(dim)
                nbytes = count * dtype.itemsize
                if nbytes > budget:
                    raise UntrustedFileError(f"arrays larger than {max_bytes} bytes once "
                                             f"decompressed")
                budget -= nbytes
                raw = stream.read(nbytes)
                if len(raw) != nbytes:
                    raise UntrustedFileError(f"{name}: truncated array data")
        except UntrustedFileError:
            raise
        except Exception as err:  # zlib/CRC errors, bad headers: the learner's problem
            raise UntrustedFileError(f"{name}: unreadable ({type(err).__name__}: "
                                     f"{str(err)[:100]})") from None
        array = np.frombuffer(raw, dtype=dtype, count=count).copy()
        out[name[:-4]] = array.reshape(shape, order="F" if fortran else "C")
    return out


def read_json(base: Path, relative: str, max_bytes: int):
    """``json.loads`` of :func:`read_regular` (``ValueError`` when it is not JSON)."""
    import json

    return json.loads(read_regular(base, relative, max_bytes))


def read_notebook(base: Path, relative: str, max_bytes: int):
    """An untrusted notebook (nbformat 4) read with :func:`read_regular`; ``ValueError`` (or
    :class:`UntrustedFileError`) when it is refused or not a notebook."""
    import nbformat

    data = read_regular(base, relative, max_bytes)
    try:
        return nbformat.reads(data.decode("utf-8", errors="replace"), as_version=4)
    except Exception as err:  # the learner controls this file
        raise ValueError(f"{relative} is not a notebook ({type(err).__name__})") from None
