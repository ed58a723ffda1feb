"""MIT-BIH Arrhythmia Database: verified download, beat extraction, caching and splits.

The database is read with ``wfdb`` (PhysioNet's own reader). Three ways to get it, tried in
this order by :func:`ensure_mitdb`:

1. ``data/mitdb`` inside the repository, if every record file is there and verified;
2. the directory named by the environment variable ``MITDB_DIR`` (used in place, verified);
3. a download of ``mitdb`` from PhysioNet with ``wfdb.dl_files`` into a temporary folder that is
   renamed to ``data/mitdb`` only after every file passed its SHA-256 check.

Checksums come from PhysioNet's ``SHA256SUMS.txt``; the lines for the 144 record files are
committed as ``utils/mitdb_sha256.txt`` so that a damaged local copy of the sums file cannot
vouch for damaged data.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from tqdm.auto import tqdm

from utils.core import config

#: The 48 records of the database (PhysioNet's RECORDS file).
RECORDS: tuple[str, ...] = (
    "100", "101", "102", "103", "104", "105", "106", "107", "108", "109", "111", "112",
    "113", "114", "115", "116", "117", "118", "119", "121", "122", "123", "124", "200",
    "201", "202", "203", "205", "207", "208", "209", "210", "212", "213", "214", "215",
    "217", "219", "220", "221", "222", "223", "228", "230", "231", "232", "233", "234",
)
#: Annotation symbols that mark a beat (PhysioNet ``ecgcodes``); used for RR intervals.
BEAT_SYMBOLS: frozenset[str] = frozenset("NLRBAaJSVrFejnE/fQ?")
EXTENSIONS: tuple[str, ...] = ("hea", "dat", "atr")
CHECKSUM_FILE: Path = Path(__file__).with_name("mitdb_sha256.txt")
#: Bump when the extraction code changes so that old caches are never reused.
EXTRACTION_VERSION: int = 1


class DatabaseError(RuntimeError):
    """The local MIT-BIH copy is missing, incomplete or damaged (message names file and fix)."""


# --------------------------------------------------------------------------------------------
# Checksums and getting the database
# --------------------------------------------------------------------------------------------
def read_checksums(path: Path = CHECKSUM_FILE) -> dict[str, str]:
    """Parse a ``SHA256SUMS.txt``-style file into ``{filename: hexdigest}``."""
    sums: dict[str, str] = {}
    for line in Path(path).read_text().splitlines():
        parts = line.split()
        if len(parts) == 2:
            sums[parts[1].lstrip("*")] = parts[0].lower()
    return sums


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Return the SHA-256 hex digest of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def required_files(records: Iterable[str] = RECORDS) -> list[str]:
    """File names (``100.hea``, ``100.dat``, ``100.atr``, ...) needed for ``records``."""
    return [f"{rec}.{ext}" for rec in records for ext in EXTENSIONS]


def _advice(directory: Path) -> str:
    """How to fix a bad file, depending on where the folder comes from."""
    directory = Path(directory)
    env_dir = config.mitdb_env_dir()
    if env_dir is not None and _same(directory, env_dir):
        return (f"This folder is your own copy ({config.MITDB_ENV}={env_dir}): put an intact "
                f"copy of the file there (from https://physionet.org/content/mitdb/1.0.0/), or "
                f"unset {config.MITDB_ENV} so that `make data` downloads the database into "
                f"data/mitdb.")
    return (f"Delete the file (or the whole folder {directory}) and run `make data` again: "
            "it downloads only what is missing or damaged.")


def _same(a: Path, b: Path) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return False


def check_folder(directory: Path, what: str = "MIT-BIH directory") -> Path:
    """Raise :class:`DatabaseError` unless ``directory`` is an existing, readable folder."""
    directory = Path(directory)
    if directory.is_file():
        raise DatabaseError(
            f"{what} {directory} is a file, not a folder: {config.MITDB_ENV} (or data/mitdb) "
            f"must name the folder that holds 100.hea, 100.dat, 100.atr, ...")
    if not directory.is_dir():
        raise DatabaseError(
            f"{what} {directory} does not exist. Run `make data`, or set "
            f"{config.MITDB_ENV} to a folder holding the mitdb files.")
    try:
        next(iter(os.scandir(directory)), None)
    except PermissionError:
        raise DatabaseError(
            f"{what} {directory} cannot be read (permission denied). Make it readable "
            f"(e.g. `chmod -R u+rX {directory}`) or point {config.MITDB_ENV} to a readable "
            "copy.") from None
    return directory


def verify_database(directory: Path, records: Iterable[str] = RECORDS,
                    progress: bool = False) -> None:
    """Check that ``directory`` holds every file of ``records`` with PhysioNet's SHA-256.

    Raises :class:`DatabaseError` naming the first missing, unreadable, truncated or altered
    file and how to fix it where it lives (your ``MITDB_DIR`` copy or the downloaded
    ``data/mitdb``). Returns ``None`` when everything matches.
    """
    directory = check_folder(Path(directory))
    sums = read_checksums()
    files = required_files(records)
    for name in tqdm(files, desc="verify mitdb", disable=not progress, unit="file"):
        if name not in sums:
            raise DatabaseError(f"No published checksum for {name}: not an MIT-BIH record file.")
        path = directory / name
        if not path.is_file():
            raise DatabaseError(f"{path} is missing. {_advice(directory)}")
        try:
            digest = sha256_file(path)
        except PermissionError:
            raise DatabaseError(
                f"{path} cannot be read (permission denied). Make it readable "
                f"(`chmod u+r {path}`) or point {config.MITDB_ENV} to a readable copy."
            ) from None
        if digest != sums[name]:
            raise DatabaseError(
                f"{path} does not match PhysioNet's SHA-256 (truncated or altered file). "
                f"{_advice(directory)}")


def is_complete(directory: Path, records: Iterable[str] = RECORDS) -> bool:
    """True when ``directory`` passes :func:`verify_database`."""
    try:
        verify_database(directory, records)
    except DatabaseError:
        return False
    return True


#: Seconds without an answer from PhysioNet before a download gives up (wfdb sets none).
DOWNLOAD_TIMEOUT: float = 30.0


def _no_network_message(err: BaseException, partial: Path) -> str:
    kept = (f" The files downloaded so far stay in {partial} and are reused next time."
            if partial.is_dir() else "")
    return (f"Could not download MIT-BIH from PhysioNet ({type(err).__name__}: {err}). "
            f"If this machine has no internet access (or PhysioNet does not answer within "
            f"{DOWNLOAD_TIMEOUT:.0f} s), copy the database onto it instead - the 48 records' "
            f".hea, .dat and .atr files from https://physionet.org/content/mitdb/1.0.0/ - and "
            f"set {config.MITDB_ENV} to that folder, e.g. `make data {config.MITDB_ENV}="
            f"/path/to/mitdb` (it is verified and used in place).{kept}")


def _wfdb_timeout(seconds: float):
    """Give wfdb's HTTP session a timeout (wfdb passes none to requests, so a server that
    accepts but never answers would hang the download forever)."""
    import requests.adapters
    from wfdb.io import _url

    class TimeoutAdapter(requests.adapters.HTTPAdapter):
        def send(self, request, **kwargs):
            if kwargs.get("timeout") is None:
                kwargs["timeout"] = seconds
            return super().send(request, **kwargs)

    session = _url._get_session()  # wfdb's one shared session
    for prefix in ("http://", "https://"):
        session.mount(prefix, TimeoutAdapter(pool_maxsize=2, pool_block=True))


def download_mitdb(target: Path, records: Sequence[str] = RECORDS,
                   timeout: float | None = None) -> Path:
    """Download ``records`` of ``mitdb`` from PhysioNet into ``target`` and verify them.

    Files go to ``target.parent/<name>.partial`` first; only a fully verified folder is renamed
    to ``target``, so an interrupted download never looks complete. A rerun keeps the files
    that already match their checksum (in the partial folder or an earlier ``target``) and
    fetches the others again. Without network (or after ``timeout`` seconds without an answer,
    default :data:`DOWNLOAD_TIMEOUT`) raises :class:`DatabaseError` with what to do instead,
    leaving no empty or half-written file behind.
    """
    import wfdb  # imported lazily: only needed when downloading

    target = Path(target)
    if target.exists() and not target.is_dir():
        check_folder(target)  # raises: a file where the database folder should be
    partial = target.with_name(target.name + ".partial")
    partial.mkdir(parents=True, exist_ok=True)
    sums = read_checksums()
    _wfdb_timeout(DOWNLOAD_TIMEOUT if timeout is None else timeout)
    current: Path | None = None
    try:
        for name in tqdm(required_files(records), desc="download mitdb", unit="file"):
            done = partial / name
            if done.is_file() and sha256_file(done) == sums[name]:
                continue  # verified by an earlier, interrupted run: keep it
            old = target / name
            if old.is_file() and sha256_file(old) == sums[name]:
                shutil.copy2(old, done)  # a good file of an earlier (damaged) copy
                continue
            current = done
            wfdb.dl_files(config.PHYSIONET_DB, str(partial), [name], keep_subdirs=False,
                          overwrite=True)
            current = None
    except Exception as err:  # requests/urllib3/wfdb errors: no network, timeout, HTTP 404...
        if current is not None and current.exists():
            current.unlink()  # half-written
        if partial.is_dir() and not any(partial.iterdir()):
            partial.rmdir()
        raise DatabaseError(_no_network_message(err, partial)) from err
    verify_database(partial, records)  # raises and keeps the .partial folder for a retry
    if target.exists():
        shutil.rmtree(target)
    partial.rename(target)
    return target


def ensure_mitdb(data_dir: Path | None = None, records: Sequence[str] = RECORDS,
                 download: bool = True) -> Path:
    """Return a verified folder of the MIT-BIH database (see module docstring for the order).

    ``data_dir`` defaults to ``data/mitdb`` in the repository. A folder named by ``MITDB_DIR``
    that fails verification is an error (it is never silently replaced by a download).
    """
    local = Path(data_dir) if data_dir is not None else config.DATA_DIR / "mitdb"
    if is_complete(local, records):
        return local
    env_dir = config.mitdb_env_dir()
    if env_dir is not None:
        verify_database(env_dir, records)
        return env_dir
    if not download:
        raise DatabaseError(
            f"No verified MIT-BIH copy in {local} and {config.MITDB_ENV} is not set. "
            "Run `make data` or set the variable to a local copy.")
    return download_mitdb(local, records)


# --------------------------------------------------------------------------------------------
# Reading records and cutting beats
# --------------------------------------------------------------------------------------------
@dataclass
class Record:
    """One MIT-BIH record in the course's canonical lead order.

    ``signal`` is (n_samples, 2) in mV; channel 0 is MLII (V5 in records 102 and 104), channel 1
    the chest lead. ``leads`` holds the original lead names in that order.
    """

    name: str
    signal: np.ndarray
    leads: tuple[str, str]
    ann_samples: np.ndarray
    ann_symbols: np.ndarray
    fs: int = config.FS


def canonical_lead_order(sig_names: Sequence[str]) -> list[int]:
    """Channel indices that put MLII first; records without MLII keep their order.

    >>> canonical_lead_order(["V5", "MLII"])
    [1, 0]
    """
    if len(sig_names) != 2:
        raise ValueError(f"Expected two leads, got {list(sig_names)}")
    if "MLII" in sig_names:
        first = list(sig_names).index("MLII")
        return [first, 1 - first]
    return [0, 1]


def load_record(name: str, db_dir: Path) -> Record:
    """Read one record (signals in mV + reference annotations) with ``wfdb``."""
    import wfdb

    if name not in RECORDS:
        raise ValueError(f"Unknown MIT-BIH record {name!r}; valid: {', '.join(RECORDS)}")
    path = str(Path(db_dir) / name)
    rec = wfdb.rdrecord(path)
    ann = wfdb.rdann(path, "atr")
    order = canonical_lead_order(rec.sig_name)
    return Record(
        name=name,
        signal=rec.p_signal[:, order].astype(np.float32),
        leads=(rec.sig_name[order[0]], rec.sig_name[order[1]]),
        ann_samples=np.asarray(ann.sample, dtype=np.int64),
        ann_symbols=np.asarray(ann.symbol),
        fs=int(rec.fs),
    )


def decimate_record(record: Record, factor: int = config.DECIMATE) -> Record:
    """Lower the sampling rate by ``factor`` (polyphase anti-alias filter from scipy) and map
    the annotation samples onto the new rate."""
    from scipy.signal import resample_poly

    if factor == 1:
        return record
    signal = resample_poly(record.signal, 1, factor, axis=0).astype(np.float32)
    samples = np.round(record.ann_samples / factor).astype(np.int64)
    return Record(record.name, signal, record.leads, samples, record.ann_symbols,
                  record.fs // factor)


def normalise_beats(beats: np.ndarray, eps: float = 1e-6
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Z-score each beat per lead. ``beats`` is (n, window, leads).

    Returns ``(normalised, mean, std)`` with mean/std of shape (n, leads) so that
    ``normalised * std[:, None] + mean[:, None]`` restores millivolts.
    """
    beats = np.asarray(beats, dtype=np.float32)
    if beats.ndim != 3:
        raise ValueError(f"beats must be (n, window, leads), got shape {beats.shape}")
    mean = beats.mean(axis=1)
    std = beats.std(axis=1) + eps
    return (beats - mean[:, None, :]) / std[:, None, :], mean, std


@dataclass
class BeatData:
    """Beats of the 8 course classes from all records, plus everything needed to trace them.

    Arrays are aligned on the first axis (one row per beat):
    ``X`` (n, window, 2) z-scored per beat and lead; ``y`` class index into ``config.CLASSES``;
    ``record`` record name; ``sample`` R-peak sample in the decimated record (``BEAT_FS``); ``rr_prev``/``rr_next``
    RR intervals in seconds (NaN at record edges); ``mean``/``std`` (n, 2) to restore mV.
    """

    X: np.ndarray
    y: np.ndarray
    record: np.ndarray
    sample: np.ndarray
    rr_prev: np.ndarray
    rr_next: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    leads: dict[str, tuple[str, str]]
    settings: dict
    annotated: dict[str, int] = field(default_factory=dict)
    dropped_edge: dict[str, int] = field(default_factory=dict)
    other_symbols: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.y)

    @property
    def symbols(self) -> np.ndarray:
        """Class symbol of every beat (``'N'``, ``'V'``, ...)."""
        return np.asarray(config.CLASSES)[self.y]

    def millivolts(self, idx: np.ndarray | int | slice = slice(None)) -> np.ndarray:
        """Beats ``idx`` in mV (undoing the per-beat normalisation)."""
        return self.X[idx] * self.std[idx][..., None, :] + self.mean[idx][..., None, :]

    def class_counts(self) -> dict[str, int]:
        """Number of extracted beats per class, in ``config.CLASSES`` order."""
        counts = np.bincount(self.y, minlength=len(config.CLASSES))
        return {c: int(n) for c, n in zip(config.CLASSES, counts)}

    def subset(self, idx: np.ndarray) -> "BeatData":
        """A new :class:`BeatData` with the rows ``idx`` (metadata kept)."""
        arrays = {k: getattr(self, k)[idx] for k in
                  ("X", "y", "record", "sample", "rr_prev", "rr_next", "mean", "std")}
        return BeatData(**arrays, leads=self.leads, settings=self.settings,
                        annotated=self.annotated, dropped_edge=self.dropped_edge,
                        other_symbols=self.other_symbols)


def rr_intervals(ann_samples: np.ndarray, ann_symbols: np.ndarray, fs: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Previous and next RR interval (s) for every annotation, using beat annotations only.

    Non-beat annotations (rhythm changes, noise, ...) get the intervals of the surrounding
    beats; the first/last beat of a record gets NaN on the open side.
    """
    is_beat = np.isin(ann_symbols, list(BEAT_SYMBOLS))
    beat_samples = ann_samples[is_beat]
    pos = np.searchsorted(beat_samples, ann_samples)
    prev_s = np.full(len(ann_samples), np.nan)
    next_s = np.full(len(ann_samples), np.nan)
    has_prev = pos > 0
    prev_s[has_prev] = ann_samples[has_prev] - beat_samples[pos[has_prev] - 1]
    nxt = np.where(is_beat, pos + 1, pos)
    has_next = nxt < len(beat_samples)
    next_s[has_next] = beat_samples[nxt[has_next]] - ann_samples[has_next]
    return prev_s / fs, next_s / fs


def extract_beats(record: Record, window: int = config.WINDOW,
                  r_offset: int = config.R_OFFSET,
                  symbols: Sequence[str] = config.CLASSES) -> dict:
    """Cut a fixed window around every annotated beat of the course classes in ``record``.

    ``record`` is used at its own rate; :func:`load_beats` decimates it to ``config.BEAT_FS``.

    The window is ``[R - r_offset, R - r_offset + window)``. Beats whose window would leave the
    record are dropped and counted in ``dropped_edge``; other annotation symbols are counted in
    ``other_symbols``. Returns raw (mV) beats; normalisation is done by the caller.

    ``symbols`` are the annotation symbols to keep (default: the 8 course classes); ``y``
    indexes into it. :mod:`utils.data.aami` passes the AAMI symbols outside the course classes.
    """
    if not 0 <= r_offset < window:
        raise ValueError(f"r_offset must be in [0, window), got {r_offset} for window {window}")
    keep_symbols = tuple(symbols)
    symbols, samples = record.ann_symbols, record.ann_samples
    rr_prev, rr_next = rr_intervals(samples, symbols, record.fs)
    is_class = np.isin(symbols, keep_symbols)
    other = Counter(symbols[~is_class].tolist())
    start = samples - r_offset
    inside = (start >= 0) & (start + window <= len(record.signal))
    keep = is_class & inside
    dropped = Counter(symbols[is_class & ~inside].tolist())
    annotated = Counter(symbols[is_class].tolist())
    idx = start[keep][:, None] + np.arange(window)[None, :]
    class_index = {c: i for i, c in enumerate(keep_symbols)}
    return {
        "beats": record.signal[idx].reshape(-1, window, record.signal.shape[1]),
        "y": np.array([class_index[s] for s in symbols[keep]], dtype=np.int64),
        "sample": samples[keep],
        "rr_prev": rr_prev[keep].astype(np.float32),
        "rr_next": rr_next[keep].astype(np.float32),
        "annotated": annotated,
        "dropped_edge": dropped,
        "other_symbols": other,
    }


class CacheError(ValueError):
    """The beat cache is unreadable, damaged or altered (it is then rebuilt)."""


#: Arrays of a :class:`BeatData`, in the order they enter the cache checksum.
CACHE_ARRAYS: tuple[str, ...] = ("X", "y", "record", "sample", "rr_prev", "rr_next", "mean",
                                 "std")


def _cache_path(settings: dict) -> Path:
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    return config.DATA_DIR / "cache" / f"beats_{key}.npz"


def arrays_sha256(arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 over the dtype, shape and bytes of the :data:`CACHE_ARRAYS` of ``arrays``."""
    digest = hashlib.sha256()
    for name in CACHE_ARRAYS:
        arr = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}|{arr.dtype.str}|{arr.shape}|".encode())
        digest.update(memoryview(arr).cast("B"))
    return digest.hexdigest()


def expected_class_counts(records: Sequence[str], dropped_edge: dict[str, int]
                          ) -> dict[str, int] | None:
    """Beats per class the extraction must give for the whole database: PhysioNet's published
    totals (``config.PUBLISHED_TOTALS``) minus the beats dropped at record edges. ``None``
    for a subset of the records (no published totals)."""
    if sorted(records) != sorted(RECORDS):
        return None
    return {c: int(config.PUBLISHED_TOTALS[c] - dropped_edge.get(c, 0)) for c in config.CLASSES}


def check_beats(data: "BeatData") -> None:
    """Raise :class:`CacheError` when the class counts of ``data`` are not the expected ones.

    For the whole database: counts = published totals minus the edge beats, and at most four
    beats per record dropped at the edges (a window of ``WINDOW`` samples loses at most a
    beat or two at each end of a record).
    """
    records = data.settings.get("records", [])
    counts = data.class_counts()
    expected = expected_class_counts(records, data.dropped_edge)
    if expected is None:
        return
    dropped = sum(data.dropped_edge.values())
    if dropped > 4 * len(records):
        raise CacheError(f"{dropped} edge beats dropped (at most {4 * len(records)} possible)")
    wrong = {c: (counts[c], expected[c]) for c in config.CLASSES if counts[c] != expected[c]}
    if wrong:
        shown = ", ".join(f"{c}: {got} instead of {want}" for c, (got, want) in wrong.items())
        raise CacheError(f"class counts differ from PhysioNet's published totals ({shown})")


def load_beats(db_dir: Path | None = None, records: Sequence[str] = RECORDS,
               window: int = config.WINDOW, r_offset: int = config.R_OFFSET,
               use_cache: bool = True, progress: bool = True) -> BeatData:
    """Extract (or load from cache) the beats of ``records``.

    The cache file under ``data/cache/`` is keyed by a hash of the settings (records, window,
    R offset, classes, extraction version), so changing any of them re-extracts. It carries a
    SHA-256 of its arrays and the expected class counts: a cache that cannot be read, fails
    its checksum or has other class counts (a damaged or altered file) is reported on stderr
    and rebuilt from the database, and so is one without a checksum (written before checksums
    existed, or with its checksum removed).
    """
    records = tuple(records)
    settings = {"records": list(records), "window": int(window), "r_offset": int(r_offset),
                "decimate": config.DECIMATE, "classes": list(config.CLASSES),
                "version": EXTRACTION_VERSION}
    cache = _cache_path(settings)
    if use_cache and cache.exists():
        try:
            return read_cache(cache)
        except CacheError as err:
            print(f"The beat cache {cache} is damaged or altered ({err}); rebuilding it from "
                  f"MIT-BIH (about a minute).", file=sys.stderr, flush=True)
    data = extract_all(db_dir, records, window, r_offset, settings, progress)
    if use_cache:
        try:
            _write_cache(cache, data)
        except OSError as err:  # read-only cache folder (e.g. in the grading sandbox)
            print(f"Could not write the beat cache {cache} ({err}); using the beats in "
                  f"memory.", file=sys.stderr, flush=True)
    return data


def extract_all(db_dir: Path | None, records: Sequence[str], window: int, r_offset: int,
                settings: dict, progress: bool = True) -> BeatData:
    """Extract the beats of ``records`` from the (verified) database; see :func:`load_beats`."""
    if db_dir is None:
        db_dir = ensure_mitdb(records=records)  # verifies what it returns
    else:
        db_dir = Path(db_dir)
        verify_database(db_dir, records)
    parts: dict[str, list] = {k: [] for k in
                              ("beats", "y", "sample", "rr_prev", "rr_next", "record")}
    leads: dict[str, tuple[str, str]] = {}
    annotated, dropped, other = Counter(), Counter(), Counter()
    for name in tqdm(records, desc="extract beats", unit="record", disable=not progress):
        rec = decimate_record(load_record(name, db_dir))
        out = extract_beats(rec, window, r_offset)
        leads[name] = rec.leads
        for key in ("beats", "y", "sample", "rr_prev", "rr_next"):
            parts[key].append(out[key])
        parts["record"].append(np.full(len(out["y"]), name))
        annotated += out["annotated"]
        dropped += out["dropped_edge"]
        other += out["other_symbols"]
    X, mean, std = normalise_beats(np.concatenate(parts["beats"]))
    return BeatData(
        X=X, y=np.concatenate(parts["y"]), record=np.concatenate(parts["record"]),
        sample=np.concatenate(parts["sample"]), rr_prev=np.concatenate(parts["rr_prev"]),
        rr_next=np.concatenate(parts["rr_next"]), mean=mean, std=std, leads=leads,
        settings=settings, annotated=dict(annotated), dropped_edge=dict(dropped),
        other_symbols=dict(other))


def _write_cache(path: Path, data: BeatData) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {k: getattr(data, k) for k in CACHE_ARRAYS}
    meta = {"leads": data.leads, "settings": data.settings, "annotated": data.annotated,
            "dropped_edge": data.dropped_edge, "other_symbols": data.other_symbols,
            "class_counts": data.class_counts(), "sha256": arrays_sha256(arrays)}
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")  # one per writer
    try:
        np.savez(tmp, **arrays, meta=np.array(json.dumps(meta)))
        tmp.replace(path)  # atomic: a crash never leaves a half-written cache
    finally:
        tmp.unlink(missing_ok=True)


def read_cache(path: Path) -> BeatData:
    """Read and verify a beat cache file; raises :class:`CacheError` naming the cause.

    Checks: a readable ``.npz`` (zip CRC of every member), the SHA-256 of the arrays, the
    stored class counts against the labels, and (whole database) PhysioNet's totals.
    """
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise CacheError("empty file")
        with np.load(path, allow_pickle=False) as npz:
            meta = json.loads(str(npz["meta"]))
            arrays = {k: npz[k] for k in CACHE_ARRAYS}
    except CacheError:
        raise
    except Exception as err:  # BadZipFile, EOFError, KeyError, ValueError, OSError...
        raise CacheError(f"unreadable: {type(err).__name__}: {err}") from None
    stored = meta.pop("sha256", None)
    expected_counts = meta.pop("class_counts", None)
    if stored is None:  # class counts alone miss changed beats or swapped labels
        raise CacheError("written without a checksum (its beats cannot be verified)")
    if arrays_sha256(arrays) != stored:
        raise CacheError("its arrays do not match the SHA-256 stored with them")
    meta["leads"] = {k: tuple(v) for k, v in meta["leads"].items()}
    try:
        data = BeatData(**arrays, **meta)
    except TypeError as err:
        raise CacheError(f"unexpected content: {err}") from None
    if len({len(a) for a in arrays.values()}) != 1:
        raise CacheError("arrays of different lengths")
    if expected_counts is not None and data.class_counts() != expected_counts:
        raise CacheError("its labels do not match the class counts stored with them")
    check_beats(data)
    data.cache_verified = "sha256"
    return data


def check_cache(records: Sequence[str] = RECORDS, rebuild: bool = True) -> str:
    """``make data``: verify the beat cache of the default settings; rebuild a damaged one
    (and upgrade one without a checksum). Returns a one-line report."""
    settings = {"records": list(records), "window": config.WINDOW,
                "r_offset": config.R_OFFSET, "decimate": config.DECIMATE,
                "classes": list(config.CLASSES), "version": EXTRACTION_VERSION}
    path = _cache_path(settings)
    if not path.exists():
        return f"beat cache: none yet ({path} is built on first use)"
    try:
        data = read_cache(path)
        return f"beat cache verified: {path} ({len(data)} beats, SHA-256 and class counts)"
    except CacheError as err:
        cause = str(err)
    if not rebuild:
        raise CacheError(f"{path}: {cause}")
    print(f"The beat cache {path} is {cause}; rebuilding it.", file=sys.stderr, flush=True)
    data = extract_all(None, tuple(records), config.WINDOW, config.R_OFFSET, settings)
    _write_cache(path, data)
    return f"beat cache rebuilt: {path} ({len(data)} beats)"


# --------------------------------------------------------------------------------------------
# Splits
# --------------------------------------------------------------------------------------------
#: Patient-level split. De Chazal et al. (2004) DS1/DS2 (the standard inter-patient split) for
#: the 44 non-paced records, plus the 4 paced records divided so that paced (/) and
#: paced-fusion (f) beats occur on both sides: 104 and 107 train, 102 and 217 test.
PATIENT_TRAIN: tuple[str, ...] = (
    "101", "106", "108", "109", "112", "114", "115", "116", "118", "119", "122", "124",
    "201", "203", "205", "207", "208", "209", "215", "220", "223", "230", "104", "107")
PATIENT_TEST: tuple[str, ...] = (
    "100", "103", "105", "111", "113", "117", "121", "123", "200", "202", "210", "212",
    "213", "214", "219", "221", "222", "228", "231", "232", "233", "234", "102", "217")


@dataclass
class Split:
    """Indices into a :class:`BeatData` for training, validation (early stopping) and test."""

    name: str
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray

    def check_disjoint(self) -> None:
        """Raise ``AssertionError`` if any beat index appears in two parts."""
        a, b, c = (set(map(int, p)) for p in (self.train, self.val, self.test))
        assert not (a & b or a & c or b & c), f"split {self.name} overlaps"


def holdout_split(data: BeatData, test_size: float = 0.2, val_size: float = 0.1,
                  seed: int = config.SEED) -> Split:
    """Beat-level (intra-patient) stratified split: the same patients appear in every part."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(data))
    rest, test = train_test_split(idx, test_size=test_size, stratify=data.y, random_state=seed)
    train, val = train_test_split(rest, test_size=val_size, stratify=data.y[rest],
                                  random_state=seed)
    return Split("holdout", np.sort(train), np.sort(val), np.sort(test))


def patient_split(data: BeatData, val_size: float = 0.1, seed: int = config.SEED) -> Split:
    """Patient-level split: no record in both train and test (see ``PATIENT_TRAIN``).

    The validation part for early stopping is drawn from the training records only, so the
    test records are never used for model selection.
    """
    from sklearn.model_selection import train_test_split

    in_train = np.isin(data.record, PATIENT_TRAIN)
    test = np.flatnonzero(np.isin(data.record, PATIENT_TEST))
    train_idx = np.flatnonzero(in_train)
    train, val = train_test_split(train_idx, test_size=val_size, stratify=data.y[train_idx],
                                  random_state=seed)
    return Split("patient", np.sort(train), np.sort(val), np.sort(test))


def get_split(data: BeatData, name: str) -> Split:
    """``'holdout'`` or ``'patient'`` split of ``data``."""
    if name == "holdout":
        return holdout_split(data)
    if name == "patient":
        return patient_split(data)
    raise ValueError(f"Unknown split {name!r}: use 'holdout' or 'patient'")


def balanced_sample(y: np.ndarray, per_class: int, seed: int = config.SEED,
                    classes: Iterable[int] | None = None) -> np.ndarray:
    """Up to ``per_class`` indices of each class of ``y`` (fixed seed), sorted.

    Used to pick a small, fixed, class-balanced set of beats for explanations.
    """
    rng = np.random.default_rng(seed)
    classes = range(len(config.CLASSES)) if classes is None else classes
    out = []
    for c in classes:
        members = np.flatnonzero(y == c)
        take = min(per_class, len(members))
        out.append(rng.choice(members, size=take, replace=False))
    return np.sort(np.concatenate(out)) if out else np.array([], dtype=int)


def example_per_class(y: np.ndarray, *preferred: np.ndarray,
                      n_classes: int = len(config.CLASSES)) -> np.ndarray:
    """One index per class present in ``y``, for "one beat per class" figures.

    For each class, the first index whose beat satisfies the first boolean mask in
    ``preferred`` that has any hit for that class (e.g. "classified correctly by both models",
    then "by the CNN"), falling back to the first beat of the class. Classes absent from ``y``
    are skipped.
    """
    y = np.asarray(y)
    masks = [np.asarray(m, dtype=bool) for m in preferred]
    if any(m.shape != y.shape for m in masks):
        raise ValueError("every preference mask must have the shape of y")
    out = []
    for c in range(n_classes):
        for mask in (*masks, np.ones(len(y), dtype=bool)):
            hits = np.flatnonzero((y == c) & mask)
            if len(hits):
                out.append(int(hits[0]))
                break
    return np.array(out, dtype=int)


def subsample_majority(y: np.ndarray, idx: np.ndarray, cap: int, seed: int = config.SEED
                       ) -> np.ndarray:
    """Keep at most ``cap`` indices of each class among ``idx`` (for faster training)."""
    rng = np.random.default_rng(seed)
    keep = []
    for c in np.unique(y[idx]):
        members = idx[y[idx] == c]
        if len(members) > cap:
            members = rng.choice(members, size=cap, replace=False)
        keep.append(members)
    return np.sort(np.concatenate(keep))


def class_index(symbol: str) -> int:
    """Index of a class symbol in ``config.CLASSES`` (clear error for unknown symbols)."""
    try:
        return config.CLASSES.index(symbol)
    except ValueError:
        raise ValueError(f"Unknown beat class {symbol!r}; valid: {config.CLASSES}") from None


def main() -> None:
    """``python -m utils.data.mitdb`` (``make data``): get/verify the database and report it."""
    try:
        path = ensure_mitdb()
        verify_database(path, progress=True)
        print(f"MIT-BIH verified: {len(RECORDS)} records, {len(required_files())} files in "
              f"{path}")
        print(check_cache())
    except DatabaseError as err:
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    main()
