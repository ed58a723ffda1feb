"""Benchmark of the course on the current machine (``make bench``; not part of ``make test``).

Measures, in one run of this script so that ratios are comparable:

* beat extraction of the MIT-BIH records (cold = read + verify + decimate + cut, and from the
  ``.npz`` cache);
* training throughput of every model spec (beats/s for one epoch on CPU, on a fixed subset of
  the training split, with a warm-up fit first so graph tracing is not counted) next to the
  ``fit`` time that ``make models`` saved in ``data/models/<name>/config.json``;
* execution time and peak memory (RSS of the kernel's process tree, polled) of every course
  notebook, the weeks ``notebooks/[0-9]*.ipynb`` and the deep dives
  ``notebooks/deep_dives/*.ipynb``, run headless with nbclient in a temporary copy (the
  committed outputs are never touched);
* the cost per beat of every explainer of the course (PFI, LIME, Kernel SHAP, gradient SHAP,
  CAM, Grad-CAM, LSTM Grad-CAM, Integrated Gradients, attention read-out), on the trained
  models of ``data/models`` (untrained builds, marked as such, where weights are missing).
  PFI is timed on ``--pfi-beats`` test beats (default 1024; ``0`` = the whole test set, about
  20 min per run on 2 cores) and extrapolated linearly to the whole test set;
* the limit for Integrated Gradients: one batched forward+backward pass over the same
  ``n_steps x N`` interpolated inputs, and the ratios alibi-IG / limit and batched-IG / limit.

Every figure is the median of ``--repeats`` runs (after one warm-up call, reported separately
as "first call"), except the notebooks (``--notebook-repeats``, default 1: each run takes
minutes) and the IG limit (``--ig-repeats`` interleaved rounds, default 5). Results go to
``<out>/bench.json`` and ``<out>/bench.md`` (default ``build/bench``, git-ignored).

Usage::

    .venv/bin/python -m utils.course.benchmark [--quick] [--out DIR] [--repeats 3] [--sections ...]

``--quick`` uses tiny sizes (2 records, a few beats) and is what ``tests/test_benchmark.py``
runs as a smoke test. A measurement that fails is recorded as "not available" with the reason
instead of stopping the benchmark.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("PYTHONHASHSEED", "0")

import numpy as np  # noqa: E402

from utils.core.config import ROOT
from utils.course import layout
from utils.core import config
from utils.data import mitdb as D
from utils.data.mitdb import get_split
from utils.models.training import MODEL_SPECS, class_weights, pool_beats
from utils.models import training as T
from utils.models import catalog
from utils.models.training import model_dir
from utils.explainers.pfi import permutation_importance, segment_groups
from utils.data.mitdb import balanced_sample
from utils.explainers.integrated_gradients import integrated_gradients
from utils.explainers.attention import attention_readout
from utils.explainers.cam import class_activation_map
from utils.explainers.gradcam import grad_cam
from utils.explainers.lime_shap import gradient_shap, kernel_shap_segments, lime_segments
from utils.data.mitdb import balanced_sample, get_split
from utils.core.explain import score_model
from utils.explainers.integrated_gradients import batched_integrated_gradients, integrated_gradients
from utils.notebook import setup_notebook
from utils.data.mitdb import load_beats

SECTIONS: tuple[str, ...] = ("extraction", "training", "notebooks", "explainers", "ig_limit")
NOT_AVAILABLE = "not available"


# --------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------
@dataclass
class Settings:
    """Sizes of every measurement: ``Settings()`` for ``make bench``,
    ``Settings.quick_settings()`` for the smoke test (``--quick``)."""

    quick: bool = False
    repeats: int = 3
    notebook_repeats: int = 1
    records: int | None = None          # None = all 48 records
    train_beats: int = 2048             # beats per timed epoch (multiple of the batch size)
    models: tuple[str, ...] = ()        # () = every spec in utils.models.training.MODEL_SPECS
    explain_beats: int = 64             # beats for gradient/CAM/attention explainers
    perturb_beats: int = 4              # beats for LIME and Kernel SHAP (slow per beat)
    lime_samples: int = 500             # perturbations per beat (LIME / Kernel SHAP defaults)
    shap_background: int = 64           # background beats of gradient SHAP (class-balanced)
    shap_samples: int = 100             # draws per beat of gradient SHAP (its default)
    pfi_beats: int | None = 1024        # test beats timed (None = whole holdout test set);
    pfi_repeats: int = 1                # the whole-test-set time is extrapolated linearly
    pfi_segments: int = 16              # segments per lead (32 features, as in the course)
    ig_beats: int = 32
    ig_steps: int = 50
    ig_repeats: int = 5                 # interleaved rounds limit / alibi / batched
    ig_models: tuple[str, ...] = ("cnn_holdout", "lstm_holdout")
    notebooks: tuple[str, ...] = ()     # () = the weeks, then the deep dives
    notebook_timeout: int = 1800
    sections: tuple[str, ...] = SECTIONS

    @classmethod
    def quick_settings(cls) -> "Settings":
        """Tiny sizes: seconds per section, for the smoke test and development."""
        return cls(quick=True, repeats=2, notebook_repeats=1, records=2, train_beats=128,
                   models=("cnn_holdout",), explain_beats=4, perturb_beats=1, lime_samples=50,
                   shap_background=8, shap_samples=4, pfi_beats=16, pfi_repeats=1,
                   pfi_segments=2, ig_beats=4, ig_steps=8, ig_repeats=2,
                   ig_models=("cnn_holdout",))


# --------------------------------------------------------------------------------------------
# Timing helpers
# --------------------------------------------------------------------------------------------
def timed_runs(fn: Callable[[], Any], repeats: int, warmup: bool | Callable[[], Any] = True
               ) -> dict:
    """Call ``fn`` (once as warm-up when ``warmup``) then ``repeats`` times; wall times in s.
    ``warmup`` may be another callable (e.g. the same work on fewer beats) run instead.

    Returns ``{"first_s", "runs_s", "median_s", "result"}`` with the result of the last call.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    first = None
    result = None
    if warmup:
        start = time.perf_counter()
        result = (warmup if callable(warmup) else fn)()
        first = time.perf_counter() - start
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        runs.append(time.perf_counter() - start)
    return {"first_s": first, "runs_s": runs, "median_s": statistics.median(runs),
            "result": result}


def interleaved_runs(fns: dict[str, Callable[[], Any]], repeats: int) -> dict[str, dict]:
    """Like :func:`timed_runs` for several functions, alternating them round by round
    (warm-up of each first), so that all see the same machine load. Same keys as ``fns``."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    out = {k: {"first_s": None, "runs_s": [], "result": None} for k in fns}
    for k, fn in fns.items():
        start = time.perf_counter()
        out[k]["result"] = fn()
        out[k]["first_s"] = time.perf_counter() - start
    for _ in range(repeats):
        for k, fn in fns.items():
            start = time.perf_counter()
            out[k]["result"] = fn()
            out[k]["runs_s"].append(time.perf_counter() - start)
    for res in out.values():
        res["median_s"] = statistics.median(res["runs_s"])
    return out


def _round(x: float | None, digits: int = 4) -> float | None:
    return None if x is None else float(f"{x:.{digits}g}")


def _error_text(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip()
    return text.splitlines()[0][:200]


def _log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --------------------------------------------------------------------------------------------
# 1. Beat extraction
# --------------------------------------------------------------------------------------------
def bench_extraction(s: Settings) -> dict:
    """Cold extraction (verify + read + decimate + cut + normalise) and cached load.
    The cached load uses a cache written into a temporary data folder, so the benchmark neither
    depends on nor changes ``data/cache``.
    """
    records = D.RECORDS if s.records is None else D.RECORDS[: s.records]
    db_dir = D.ensure_mitdb(records=records)
    cold = timed_runs(lambda: D.load_beats(db_dir=db_dir, records=records, use_cache=False,
                                           progress=False), s.repeats, warmup=False)
    n_beats = len(cold["result"])
    saved = config.DATA_DIR
    with tempfile.TemporaryDirectory(prefix="bench_cache_") as tmp:
        config.DATA_DIR = Path(tmp)  # _cache_path reads config.DATA_DIR at call time
        try:
            D.load_beats(db_dir=db_dir, records=records, progress=False)  # writes the cache
            cached = timed_runs(lambda: D.load_beats(db_dir=db_dir, records=records,
                                                     progress=False), s.repeats, warmup=False)
        finally:
            config.DATA_DIR = saved
    return {
        "records": len(records), "beats": n_beats,
        "cold_s": _round(cold["median_s"]), "cold_runs_s": [_round(r) for r in cold["runs_s"]],
        "cold_beats_per_s": _round(n_beats / cold["median_s"]),
        "cache_s": _round(cached["median_s"]),
        "cache_runs_s": [_round(r) for r in cached["runs_s"]],
        "cache_beats_per_s": _round(n_beats / cached["median_s"]),
        "note": "cold = load_beats without its cache: SHA-256 verification + wfdb read + "
                "decimation + cutting + z-scoring (the OS file cache is warm after the first "
                "run); cache = load_beats reading the .npz it wrote",
    }


# --------------------------------------------------------------------------------------------
# 2. Training throughput
# --------------------------------------------------------------------------------------------
def _training_subset(name: str, data, n: int, seed: int
                     ) -> tuple[np.ndarray, np.ndarray, dict | None]:
    """``n`` training beats of spec ``name`` (its split/class filter) with targets and weights."""
    spec = MODEL_SPECS[name]
    idx = get_split(data, spec.split).train
    if spec.only_class is not None:
        idx = idx[data.y[idx] == config.CLASSES.index(spec.only_class)]
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(idx, size=min(n, len(idx)), replace=False))
    X = data.X[idx]
    if spec.builder == "attention_autoencoder":
        return X, pool_beats(X, spec.kwargs.get("pool", 4)), None
    y = data.y[idx]
    return X, y, class_weights(y)


def bench_training(s: Settings, data) -> dict:
    """Beats/s of one training epoch per model spec (committed weights are never touched)."""
    import keras

    names = list(s.models or T.MODEL_SPECS)
    rows = []
    for name in names:
        _log(f"training throughput: {name}")
        spec = T.MODEL_SPECS[name]
        row: dict[str, Any] = {"model": name}
        try:
            n = max(spec.batch_size, (s.train_beats // spec.batch_size) * spec.batch_size)
            X, y, weights = _training_subset(name, data, n, spec.seed)
            keras.utils.set_random_seed(spec.seed)
            model = catalog.build(name)
            is_ae = spec.builder == "attention_autoencoder"
            model.compile(optimizer=keras.optimizers.Adam(spec.learning_rate),
                          loss="mse" if is_ae else "sparse_categorical_crossentropy",
                          metrics=[] if is_ae else ["accuracy"])
            # warm-up on one batch traces the train step (not counted)
            start = time.perf_counter()
            model.fit(X[: spec.batch_size], y[: spec.batch_size], batch_size=spec.batch_size,
                      epochs=1, class_weight=weights, verbose=0)
            row["warmup_s"] = _round(time.perf_counter() - start)
            runs = timed_runs(lambda: model.fit(X, y, batch_size=spec.batch_size, epochs=1,
                                                class_weight=weights, shuffle=True, verbose=0),
                              s.repeats, warmup=False)
            row.update({"beats": len(X), "epoch_s": _round(runs["median_s"]),
                        "epoch_runs_s": [_round(r) for r in runs["runs_s"]],
                        "beats_per_s": _round(len(X) / runs["median_s"])})
            keras.backend.clear_session()
        except Exception as exc:  # noqa: BLE001 - record and go on
            row["status"] = f"{NOT_AVAILABLE}: {_error_text(exc)}"
        row.update(_saved_training(name))
        rows.append(row)
    saved = [r["make_models_train_s"] for r in rows if r.get("make_models_train_s") is not None]
    return {
        "rows": rows,
        "make_models_train_s": _round(sum(saved)) if saved else None,
        "make_models_complete": len(saved) == len(names) == len(T.MODEL_SPECS),
        "note": "beats/s: median of 1-epoch fits on a fixed training subset after a warm-up "
                "batch; make models: fit() seconds saved by `make models` in "
                "data/models/<name>/config.json (train_seconds; excludes data loading and "
                "test evaluation), measured when the models were trained",
    }


def _saved_training(name: str) -> dict:
    """``train_seconds`` & co. from ``data/models/<name>/config.json`` (None when missing)."""
    path = model_dir(name) / "config.json"
    if not path.is_file():
        return {"make_models_train_s": None, "make_models_beats_per_s": None,
                "make_models_epochs": None}
    cfg = json.loads(path.read_text())
    return {"make_models_train_s": cfg.get("train_seconds"),
            "make_models_beats_per_s": cfg.get("beats_per_second"),
            "make_models_epochs": cfg.get("epochs_run")}


# --------------------------------------------------------------------------------------------
# 3. Notebooks
# --------------------------------------------------------------------------------------------
class PeakRSS:
    """Poll the resident memory of a process tree in a thread; ``peak`` in bytes.
    ``pid_fn`` returns the root pid (or None while the process does not exist yet), so the
    poller can start before the kernel does. Polling rather than ``getrusage(RUSAGE_CHILDREN)``:
    a kernel forked from this (large) process counts the parent's pages until it execs, so
    the OS peak of the children would be this process's size, not the notebook's.
    """
    def __init__(self, pid_fn: Callable[[], int | None], interval: float = 0.1):
        self.pid_fn, self.interval = pid_fn, interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        import psutil

        pid = self.pid_fn()
        if pid is None:
            return
        try:
            root = psutil.Process(pid)
            procs = [root] + root.children(recursive=True)
        except psutil.Error:
            return
        total = 0
        for p in procs:
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
        self.peak = max(self.peak, total)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def __enter__(self) -> "PeakRSS":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _kernel_pid(client) -> int | None:
    km = getattr(client, "km", None)
    try:
        if km is None or not km.has_kernel:
            return None
        return getattr(km.provisioner, "pid", None)
    except Exception:  # noqa: BLE001 - the kernel may be starting or stopping
        return None


def run_notebook(path: Path, workdir: Path, timeout: int) -> dict:
    """Execute ``path`` headless with nbclient from ``workdir``; wall time and peak RSS.
    The executed notebook is written next to the copy in ``workdir`` (never over ``path``).
    """
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(workdir)}})
    status = "ok"
    with PeakRSS(lambda: _kernel_pid(client)) as mem:
        start = time.perf_counter()
        try:
            client.execute()
        except Exception as exc:  # noqa: BLE001 - CellExecutionError, timeouts: record them
            status = f"error: {_error_text(exc)}"
        seconds = time.perf_counter() - start
    nbformat.write(nb, workdir / path.name)
    return {"seconds": seconds, "peak_rss_mb": mem.peak / 2**20, "status": status}


def discover_notebooks(s: Settings) -> list[Path]:
    """``--notebooks`` if given, else the weeks (``notebooks/[0-9]*.ipynb``), then the deep
    dives (``notebooks/deep_dives/*.ipynb``), each sorted."""
    if s.notebooks:
        return [Path(p).resolve() for p in s.notebooks]
    return layout.notebooks_in(ROOT / "notebooks")


def bench_notebooks(s: Settings) -> dict:
    """Every notebook executed ``notebook_repeats`` times in a temporary copy of its folder."""
    paths = discover_notebooks(s)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_nb_") as tmp:
        for path in paths:
            # copy the notebook's folder so relative files (if any) resolve as in the repo
            work = Path(tmp) / path.parent.name
            if not work.exists():
                shutil.copytree(path.parent, work,
                                ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
            runs = []
            for k in range(s.notebook_repeats):
                _log(f"notebook {path.name} run {k + 1}/{s.notebook_repeats}")
                runs.append(run_notebook(path, work, s.notebook_timeout))
            ok = [r for r in runs if r["status"] == "ok"]
            use = ok or runs
            rows.append({
                "notebook": path.name,
                "seconds": _round(statistics.median(r["seconds"] for r in use)),
                "runs_s": [_round(r["seconds"]) for r in runs],
                "peak_rss_mb": _round(statistics.median(r["peak_rss_mb"] for r in use)),
                "status": "ok" if len(ok) == len(runs) else runs[-1]["status"],
            })
    return {
        "rows": rows,
        "total_s": _round(sum(r["seconds"] for r in rows)) if rows else 0.0,
        "max_peak_rss_mb": _round(max((r["peak_rss_mb"] for r in rows), default=0.0)),
        "repeats": s.notebook_repeats,
        "note": "nbclient, python3 kernel of this environment, run in a temporary copy of "
                "notebooks/; peak RSS = max over time of the summed RSS of the kernel process "
                "and its children, polled every 0.1 s",
    }


# --------------------------------------------------------------------------------------------
# 4. Explainers
# --------------------------------------------------------------------------------------------
class Skipped(Exception):
    """A measurement left out by the settings (no row in the report)."""


@dataclass
class Context:
    """Data shared by the explainer measurements."""
    data: Any
    split: Any
    X: np.ndarray                  # explain_beats beats of the test split (class-balanced)
    y: np.ndarray
    models: dict = field(default_factory=dict)
    trained: dict = field(default_factory=dict)

    def model(self, name: str):
        """Trained model ``name`` (an untrained build when no weights exist: cost is similar)."""
        if name not in self.models:

            try:
                self.models[name] = catalog.load_trained(name)
                self.trained[name] = True
            except (FileNotFoundError, ValueError, OSError):
                self.models[name] = catalog.build(name)
                self.trained[name] = False
        return self.models[name]


@dataclass
class Case:
    """One explainer measurement: ``fn`` explains ``beats`` beats of ``model``."""
    fn: Callable[[], Any]
    beats: int
    model: str
    warmup: Callable[[], Any] | None = None
    extra: dict = field(default_factory=dict)
    settings: str = ""  # what one beat costs, in words (shown in the table)


def _case_pfi(ctx: Context, s: Settings):
    masks, names = segment_groups(s.pfi_segments)
    model = ctx.model("cnn_holdout")
    test = ctx.split.test if s.pfi_beats is None else ctx.split.test[: s.pfi_beats]
    X, y = ctx.data.X[test], ctx.data.y[test]

    def run(n: int, repeats: int):
        return permutation_importance(model, X[:n], y[:n], features=masks, names=names,
                                      n_repeats=repeats)

    return Case(lambda: run(len(X), s.pfi_repeats), len(X), "cnn_holdout",
                warmup=lambda: run(16, 1),
                settings=f"{len(masks)} segments x {s.pfi_repeats} permutation, predictions "
                         f"on {len(X)} test beats",
                extra={"features": len(masks), "n_repeats": s.pfi_repeats,
                       "test_beats": len(ctx.split.test), "whole_test_set_s_per_repeat": None})


def _local_case(method: Callable, model_name: str, settings: str, beats: str = "explain",
                **options):
    """A case that explains the first beats of the context with ``method(model, X, y, ...)``."""
    def case(ctx: Context, s: Settings):
        n = {"explain": s.explain_beats, "perturb": s.perturb_beats, "ig": s.ig_beats}[beats]
        model = ctx.model(model_name)
        X, y = ctx.X[:n], ctx.y[:n]
        opts = {k: (v(ctx, s) if callable(v) else v) for k, v in options.items()}
        return Case(lambda: method(model, X, y, **opts), len(X), model_name,
                    settings=settings.format(s=s))
    return case


def _background(ctx: Context, s: Settings) -> np.ndarray:

    train = ctx.split.train
    per_class = max(1, s.shap_background // 8)
    return ctx.data.X[train[balanced_sample(ctx.data.y[train], per_class)]]


def _ig_case(model_name: str):
    def case(ctx: Context, s: Settings):
        if model_name not in s.ig_models:
            raise Skipped(f"{model_name} not in the IG models of these settings")
        return _local_case(integrated_gradients, model_name, "{s.ig_steps} steps, zero baseline",
                           beats="ig", n_steps=lambda c, s: s.ig_steps)(ctx, s)
    return case


def _explainers() -> tuple[tuple[str, Callable], ...]:
    """(method label, case builder). Cost is per beat explained (PFI: per test beat scored)."""
    return (
        ("PFI (test set, segments)", _case_pfi),
        ("LIME (segments)", _local_case(lime_segments, "cnn_holdout",
                                        "{s.lime_samples} perturbations, 32 segments",
                                        beats="perturb", n_samples=lambda c, s: s.lime_samples)),
        ("Kernel SHAP (segments)", _local_case(kernel_shap_segments, "cnn_holdout",
                                               "{s.lime_samples} coalitions, 32 segments",
                                               beats="perturb",
                                               n_samples=lambda c, s: s.lime_samples)),
        ("gradient SHAP", _local_case(gradient_shap, "cnn_holdout",
                                      "{s.shap_background} background beats, "
                                      "{s.shap_samples} draws", background=_background,
                                      n_samples=lambda c, s: s.shap_samples)),
        ("CAM", _local_case(class_activation_map, "cnn_holdout", "layer conv_last, no gradients")),
        ("Grad-CAM (CNN)", _local_case(grad_cam, "cnn_holdout", "layer conv_last")),
        ("Grad-CAM (LSTM)", _local_case(grad_cam, "lstm_holdout", "layer lstm", layer="lstm")),
        ("Integrated Gradients (alibi, CNN)", _ig_case("cnn_holdout")),
        ("Integrated Gradients (alibi, LSTM)", _ig_case("lstm_holdout")),
        ("attention read-out", _local_case(attention_readout, "attention_holdout",
                                           "weights per LSTM step, mapped to samples")),
    )


def make_context(data, s: Settings) -> Context:
    """A class-balanced, fixed sample of test beats for the explainers."""
    split = get_split(data, "holdout")
    n = max(s.explain_beats, s.perturb_beats, s.ig_beats)
    per_class = -(-n // len(config.CLASSES))
    idx = split.test[balanced_sample(data.y[split.test], per_class, seed=config.SEED)]
    rng = np.random.default_rng(config.SEED)
    idx = rng.permutation(idx)[:n]  # mix the classes so the first k beats are varied too
    return Context(data=data, split=split, X=data.X[idx], y=data.y[idx])


def bench_explainers(s: Settings, ctx: Context) -> dict:
    """Seconds per beat of every explainer (median of ``repeats`` after a warm-up call)."""
    rows = []
    for label, case in _explainers():
        _log(f"explainer: {label}")
        row: dict[str, Any] = {"method": label}
        try:
            c = case(ctx, s)
            runs = timed_runs(c.fn, s.repeats, warmup=c.warmup or True)
            per_beat = runs["median_s"] / c.beats
            row.update({"model": c.model, "beats": c.beats, "s_per_beat": _round(per_beat),
                        "settings": c.settings,
                        "first_call_s": _round(runs["first_s"]),
                        "runs_s": [_round(r) for r in runs["runs_s"]], "status": "ok", **c.extra})
            if "test_beats" in c.extra:  # PFI: cost is linear in the beats scored
                row["whole_test_set_s_per_repeat"] = _round(
                    per_beat * c.extra["test_beats"] / c.extra["n_repeats"])
            if ctx.trained.get(c.model) is False:
                row["status"] = "ok (untrained weights)"
        except Skipped:
            continue
        except Exception as exc:  # noqa: BLE001 - a failing explainer must not stop the rest
            row["status"] = f"{NOT_AVAILABLE}: failed ({_error_text(exc)})"
            traceback.print_exc()
        rows.append(row)
    return {"rows": rows,
            "note": "median wall time of one call / beats in the call, after a warm-up call "
                    "(first_call_s includes graph tracing); PFI counts test beats scored"}


# --------------------------------------------------------------------------------------------
# 5. Integrated Gradients: the limit
# --------------------------------------------------------------------------------------------
def interpolated_inputs(X: np.ndarray, n_steps: int, method: str = "gausslegendre",
                        baselines: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The ``n_steps * N`` inputs IG evaluates (alibi's alphas; step-major, like alibi).
    Returns ``(inputs (n_steps*N, ...), step_sizes (n_steps,))``.
    """
    from alibi.utils.approximation_methods import approximation_parameters

    if n_steps < 1:
        raise ValueError(f"n_steps must be >= 1, got {n_steps}")
    step_sizes_fn, alphas_fn = approximation_parameters(method)
    alphas = np.asarray(alphas_fn(n_steps), dtype=np.float32)
    base = np.zeros_like(X) if baselines is None else np.broadcast_to(baselines, X.shape)
    inputs = base[None] + alphas[:, None, None, None] * (X - base)[None]
    inputs = inputs.reshape((-1,) + X.shape[1:]).astype(np.float32)
    return inputs, np.asarray(step_sizes_fn(n_steps))


def gradient_pass(model) -> Callable:
    """A compiled function: gradients of the target logit w.r.t. a batch of inputs (one pass)."""
    import tensorflow as tf

    logits = score_model(model)

    @tf.function(reduce_retracing=True)
    def grads(x, targets):
        with tf.GradientTape() as tape:
            tape.watch(x)
            out = logits(x, training=False)
            score = tf.gather(out, targets, axis=1, batch_dims=1)
        return tape.gradient(score, x)

    return grads


def notebooks_ig_usage(folder: Path | None = None) -> dict[str, dict[str, int]]:
    """How often each notebook's code calls each IG implementation (text search)."""
    import re

    import nbformat

    patterns = {"batched_integrated_gradients": r"\bbatched_integrated_gradients\(",
                "integrated_gradients (alibi)": r"(?<![\w.])integrated_gradients\(",
                "alibi IntegratedGradients": r"\bIntegratedGradients\("}
    usage: dict[str, dict[str, int]] = {}
    for path in layout.notebooks_in(folder or ROOT / "notebooks"):
        nb = nbformat.read(path, as_version=4)
        code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
        counts = {k: len(re.findall(p, code)) for k, p in patterns.items()}
        counts = {k: v for k, v in counts.items() if v}
        if counts:
            usage[path.name] = counts
    return usage


def bench_ig_limit(s: Settings, ctx: Context) -> dict:
    """Time of one batched forward+backward pass vs alibi IG and the batched IG of utils.
    The three are timed in interleaved rounds (limit, alibi, batched, limit, ...) so that each
    ratio compares runs made under the same machine load; a ratio is the median over the
    rounds of the per-round ratio.
    """
    import tensorflow as tf

    rows = []
    for name in s.ig_models:
        _log(f"IG limit: {name}")
        row: dict[str, Any] = {"model": name}
        try:
            model = ctx.model(name)
            X, y = ctx.X[: s.ig_beats], ctx.y[: s.ig_beats]
            inputs, _ = interpolated_inputs(X, s.ig_steps)
            targets = np.tile(y, s.ig_steps).astype(np.int32)
            x_t, t_t = tf.constant(inputs), tf.constant(targets)
            grads = gradient_pass(model)
            fns: dict[str, Callable[[], Any]] = {
                "limit": lambda: grads(x_t, t_t).numpy(),
                "alibi": lambda: integrated_gradients(model, X, y, n_steps=s.ig_steps).values,
                "batched": lambda: batched_integrated_gradients(model, X, y,
                                                                n_steps=s.ig_steps).values}
            runs = interleaved_runs(fns, s.ig_repeats)
            row.update({"beats": len(X), "n_steps": s.ig_steps, "inputs": len(inputs),
                        "trained": ctx.trained.get(name)})
            for key, res in runs.items():
                row[f"{key}_s"] = _round(res["median_s"])
                row[f"{key}_runs_s"] = [_round(r) for r in res["runs_s"]]
                if key != "limit":
                    ratios = [a / b for a, b in zip(res["runs_s"], runs["limit"]["runs_s"])]
                    row[f"ratio_{key}"] = _round(statistics.median(ratios), 3)
            diff = np.abs(runs["batched"]["result"] - runs["alibi"]["result"])
            row["max_abs_diff"] = _round(float(diff.max()), 3)
            row["status"] = "ok"
        except Exception as exc:  # noqa: BLE001
            row["status"] = f"{NOT_AVAILABLE}: failed ({_error_text(exc)})"
            traceback.print_exc()
        rows.append(row)
    return {"rows": rows, "notebooks_use": notebooks_ig_usage(), "repeats": s.ig_repeats,
            "note": f"limit = one tf.function forward+backward pass (gradient of the target "
                    f"logit) over all n_steps x N interpolated inputs at once; the three are "
                    f"timed in {s.ig_repeats} interleaved rounds after a warm-up call each, "
                    f"times are medians and a ratio is the median of the per-round ratios"}


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------
def _fmt(x: Any, digits: int = 3) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        if x == 0:
            return "0"
        if abs(x) >= 100:
            return f"{x:,.0f}"
        return f"{x:.{digits}g}"
    return str(x)


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(_fmt(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _ms(x: float | None) -> float | None:
    return None if x is None else x * 1000


def render_markdown(res: dict) -> str:
    """The benchmark as Markdown tables (one per section, with the measuring conditions)."""
    meta = res["meta"]
    out = [f"# Benchmark ({'quick' if meta['quick'] else 'full'})", "",
           f"{meta['date_utc']} on {meta['machine']} ({meta['cpus']} CPUs), Python "
           f"{meta['python']}, TensorFlow {meta['tensorflow']}. Every figure is the median of "
           f"{meta['repeats']} runs taken in this one run of the script (notebooks: "
           f"{meta['notebook_repeats']} run each; IG limit: {meta['ig_repeats']} interleaved "
           f"rounds); whole benchmark "
           f"{_fmt(meta.get('benchmark_s'))} s.", ""]
    if "extraction" in res:
        e = res["extraction"]
        out += ["## Beat extraction", ""]
        if "status" in e:
            out += [e["status"], ""]
        else:
            out += [_table(["records", "beats", "cold (s)", "cold beats/s", "cache (s)",
                            "cache beats/s"],
                           [[e["records"], e["beats"], e["cold_s"], e["cold_beats_per_s"],
                             e["cache_s"], e["cache_beats_per_s"]]]), "", e["note"] + ".", ""]
    if "training" in res:
        t = res["training"]
        out += ["## Training throughput (CPU)", "",
                _table(["model", "beats/epoch", "epoch (s)", "beats/s", "make models fit (s)",
                        "make models beats/s", "epochs", "status"],
                       [[r["model"], r.get("beats"), r.get("epoch_s"), r.get("beats_per_s"),
                         r.get("make_models_train_s"), r.get("make_models_beats_per_s"),
                         r.get("make_models_epochs"), r.get("status", "ok")]
                        for r in t["rows"]]), "",
                f"Time of `make models` (sum of the saved fit times): "
                f"{_fmt(t['make_models_train_s'])} s"
                + ("" if t["make_models_complete"] else " (not every model measured/trained)")
                + ".", "", t["note"] + ".", ""]
    if "notebooks" in res:
        n = res["notebooks"]
        out += ["## Notebooks (headless)", ""]
        rows = [[r["notebook"], r["seconds"], r["peak_rss_mb"], r["status"]] for r in n["rows"]]
        rows.append(["**total** (RSS: largest)", n["total_s"], n["max_peak_rss_mb"], ""])
        out += [_table(["notebook", "time (s)", "peak RSS (MB)", "status"], rows), "",
                n["note"] + ".", ""]
    if "explainers" in res:
        x = res["explainers"]
        out += ["## Explainer cost per beat", "",
                _table(["method", "model", "settings", "beats", "ms/beat", "first call (s)",
                        "status"],
                       [[r["method"], r.get("model"), r.get("settings") or None, r.get("beats"),
                         _ms(r.get("s_per_beat")), r.get("first_call_s"), r["status"]]
                        for r in x["rows"]]), "",
                x["note"] + ".", ""]
        for r in x["rows"]:
            if r.get("whole_test_set_s_per_repeat") is not None:
                out += [f"PFI: {r['features']} segment features x {r['n_repeats']} permutation, "
                        f"timed on {r['beats']} test beats; whole holdout test set "
                        f"({r['test_beats']} beats): about "
                        f"{_fmt(r['whole_test_set_s_per_repeat'])} s per permutation repeat "
                        f"(extrapolated linearly: the cost is one prediction per beat, "
                        f"feature and repeat).", ""]
    if "ig_limit" in res:
        g = res["ig_limit"]
        out += ["## Integrated Gradients vs the limit", "",
                _table(["model", "beats x steps", "limit (s)", "alibi IG (s)", "alibi / limit",
                        "batched IG (s)", "batched / limit", "max \\|batched - alibi\\|", "status"],
                       [[r["model"],
                         f"{r['beats']} x {r['n_steps']}" if "beats" in r else None,
                         r.get("limit_s"), r.get("alibi_s"), r.get("ratio_alibi"),
                         r.get("batched_s"), r.get("ratio_batched"), r.get("max_abs_diff"),
                         r["status"]] for r in g["rows"]]), "",
                g["note"] + ".", ""]
        use = g["notebooks_use"]
        out += ["Notebooks calling IG (calls in the code cells): "
                + ("; ".join(f"{nb}: " + ", ".join(f"{k} x{v}" for k, v in calls.items())
                             for nb, calls in use.items()) or "none") + ".", ""]
    return "\n".join(out)


def machine_info(s: Settings) -> dict:
    import tensorflow as tf

    return {"date_utc": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": f"{platform.system()} {platform.machine()} {platform.processor()}".strip(),
            "cpus": os.cpu_count(), "python": platform.python_version(),
            "tensorflow": tf.__version__, "quick": s.quick, "repeats": s.repeats,
            "notebook_repeats": s.notebook_repeats, "ig_repeats": s.ig_repeats,
            "settings": asdict(s)}


def run(s: Settings, out: Path) -> dict:
    """Run the selected sections and write ``bench.json`` and ``bench.md`` into ``out``."""
    setup_notebook()  # quiet TF logs, fixed seeds
    res: dict[str, Any] = {"meta": machine_info(s)}
    start = time.perf_counter()
    if "extraction" in s.sections:
        _log("beat extraction")
        try:
            res["extraction"] = bench_extraction(s)
        except Exception as exc:  # noqa: BLE001
            res["extraction"] = {"status": f"{NOT_AVAILABLE}: {_error_text(exc)}"}
            traceback.print_exc()
    need_data = {"training", "explainers", "ig_limit"} & set(s.sections)
    data = None
    if need_data:

        data = load_beats(progress=False)
    if "training" in s.sections:
        res["training"] = bench_training(s, data)
    if "notebooks" in s.sections:
        res["notebooks"] = bench_notebooks(s)
    if {"explainers", "ig_limit"} & set(s.sections):
        ctx = make_context(data, s)
        if "explainers" in s.sections:
            res["explainers"] = bench_explainers(s, ctx)
        if "ig_limit" in s.sections:
            res["ig_limit"] = bench_ig_limit(s, ctx)
    res["meta"]["benchmark_s"] = _round(time.perf_counter() - start)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(res, indent=1, default=str))
    (out / "bench.md").write_text(render_markdown(res))
    return res


def parse_args(argv: list[str] | None = None) -> tuple[Settings, Path]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    p.add_argument("--out", type=Path, default=ROOT / "build" / "bench",
                   help="output folder for bench.json and bench.md (default build/bench)")
    p.add_argument("--repeats", type=int, help="runs per figure (median; default 3, quick 2)")
    p.add_argument("--notebook-repeats", type=int, help="runs per notebook (default 1)")
    p.add_argument("--ig-repeats", type=int,
                   help="interleaved rounds of the IG limit section (default 5, quick 2)")
    p.add_argument("--sections", nargs="+", choices=SECTIONS, help="only these sections")
    p.add_argument("--models", nargs="+", help="model specs for the training section")
    p.add_argument("--notebooks", nargs="+",
                   help="notebooks to run (default: the weeks notebooks/[0-9]*.ipynb, then "
                        "the deep dives notebooks/deep_dives/*.ipynb)")
    p.add_argument("--records", type=int, help="first K records for the extraction section")
    p.add_argument("--pfi-beats", type=int,
                   help="test beats for PFI (default 1024; 0 = whole test set)")
    a = p.parse_args(argv)
    s = Settings.quick_settings() if a.quick else Settings()
    if a.repeats is not None:
        s.repeats = a.repeats
    if a.ig_repeats is not None:
        s.ig_repeats = a.ig_repeats
    if a.notebook_repeats is not None:
        s.notebook_repeats = a.notebook_repeats
    if a.sections:
        s.sections = tuple(a.sections)
    if a.models:
        s.models = tuple(a.models)
    if a.notebooks:
        s.notebooks = tuple(a.notebooks)
    if a.records is not None:
        s.records = a.records
    if a.pfi_beats is not None:
        s.pfi_beats = a.pfi_beats or None
    if min(s.repeats, s.notebook_repeats, s.ig_repeats) < 1:
        p.error("--repeats, --notebook-repeats and --ig-repeats must be >= 1")
    return s, a.out


def main(argv: list[str] | None = None) -> None:
    settings, out = parse_args(argv)
    res = run(settings, out)
    print(render_markdown(res))
    print(f"wrote {out / 'bench.md'} and {out / 'bench.json'}")


if __name__ == "__main__":
    main()
