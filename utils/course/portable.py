"""``make test-portable``: the notebooks re-executed under *perturbed numerics*, compared with nbval.

The committed outputs of a notebook are produced on one machine. Another CPU (AVX2 or AVX-512,
Intel, AMD or Apple Silicon), another BLAS or oneDNN code path, or another number of threads sums
floating-point numbers in another order, and a hash seed decides the iteration order of sets and
of dicts built from them. An output that changes with any of these is a red ``make test`` on a
learner's laptop. This command re-runs ``pytest --nbval`` with each of these knobs turned to the
other setting than the one the notebooks were executed with (see :data:`PERTURBED_ENV`), so that
such an output fails here, before it lands, instead of on the next machine.

Usage (what the Makefile runs)::

    python -m utils.course.portable [--jobs N] NOTEBOOK... [PYTEST OPTIONS]

Every other argument is passed on to ``python -m pytest``; the exit status is pytest's. Under one
thread a notebook keeps one core busy, so with several notebooks and ``--jobs`` above 1 (default:
:func:`default_jobs`, the cores this process may use, at most 4, or ``PORTABLE_JOBS``) the
notebooks run in that many pytest processes at once, one notebook each; their reports are printed
one after the other and the exit status is the worst one. On CI's 2 cores this halves the pass.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

#: One thread everywhere: TensorFlow's intra- and inter-op pools, OpenMP (oneDNN) and BLAS. The
#: committed outputs come from the default (all cores), so reductions split differently.
SINGLE_THREAD = {
    "TF_NUM_INTRAOP_THREADS": "1",
    "TF_NUM_INTEROP_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}

#: The Makefile (and so ``make notebooks``) fixes ``PYTHONHASHSEED=0``; a set or a dict built
#: from one, printed in iteration order, comes out in another order under another seed.
OTHER_HASH_SEED = "1"


def perturbed_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) with the numerics turned to the other side.

    - ``TF_ENABLE_ONEDNN_OPTS``: TensorFlow's oneDNN kernels, on by default on x86-64 Linux,
      change the order of float32 sums in convolutions and matrix products; flipped.
    - :data:`SINGLE_THREAD`: one thread for TensorFlow, OpenMP and BLAS.
    - ``PYTHONHASHSEED``: another hash seed (:data:`OTHER_HASH_SEED`, or 0 if that one is set).
    """
    env = dict(os.environ if base is None else base)
    onednn_on = env.get("TF_ENABLE_ONEDNN_OPTS", "1") not in ("0", "false", "False")
    env["TF_ENABLE_ONEDNN_OPTS"] = "0" if onednn_on else "1"
    env.update(SINGLE_THREAD)
    env["PYTHONHASHSEED"] = "0" if env.get("PYTHONHASHSEED") == OTHER_HASH_SEED else OTHER_HASH_SEED
    return env


def describe(env: Mapping[str, str]) -> str:
    """One line naming the perturbed settings (printed before the run)."""
    keys = ["TF_ENABLE_ONEDNN_OPTS", *SINGLE_THREAD, "PYTHONHASHSEED"]
    return " ".join(f"{k}={env[k]}" for k in keys)


def default_jobs(env: Mapping[str, str] | None = None) -> int:
    """How many notebooks to run at once: ``PORTABLE_JOBS`` if set, else the cores this process
    may use (its CPU affinity, which a container limits), at most 4 (a TensorFlow kernel holds
    1-2 GB)."""
    env = os.environ if env is None else env
    if env.get("PORTABLE_JOBS"):
        return max(1, int(env["PORTABLE_JOBS"]))
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:      # macOS: no affinity call
        cores = os.cpu_count() or 1
    return max(1, min(cores, 4))


def split_args(args: Sequence[str]) -> tuple[int | None, list[str], list[str]]:
    """``(jobs, notebooks, pytest options)`` from the command line: ``--jobs N`` (or
    ``--jobs=N``) is this command's own, ``*.ipynb`` arguments are the notebooks, the rest goes
    to pytest unchanged, in order."""
    jobs: int | None = None
    notebooks: list[str] = []
    options: list[str] = []
    rest = list(args)
    while rest:
        arg = rest.pop(0)
        if arg == "--jobs":
            if not rest:
                raise SystemExit("--jobs needs a number")
            jobs = int(rest.pop(0))
        elif arg.startswith("--jobs="):
            jobs = int(arg.split("=", 1)[1])
        elif arg.endswith(".ipynb") and not arg.startswith("-"):
            notebooks.append(arg)
        else:
            options.append(arg)
    if jobs is not None and jobs < 1:
        raise SystemExit(f"--jobs must be at least 1, got {jobs}")
    return jobs, notebooks, options


def _run_one(notebook: str, options: Sequence[str], env: Mapping[str, str]
             ) -> tuple[str, int, str, float]:
    """One notebook in its own pytest process: ``(notebook, exit status, output, seconds)``."""
    start = time.monotonic()
    # no cache plugin: the processes would write one .pytest_cache at the same time
    done = subprocess.run([sys.executable, "-m", "pytest", notebook, *options,
                           "-p", "no:cacheprovider"],
                          env=dict(env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)
    return notebook, done.returncode, done.stdout, time.monotonic() - start


def run_parallel(notebooks: Sequence[str], options: Sequence[str], env: Mapping[str, str],
                 jobs: int) -> int:
    """Every notebook in its own pytest process, ``jobs`` at a time (in the order given: put the
    long ones first). Prints each report when its notebook is done; returns the worst status
    (pytest's 1, "tests failed", wins over its other codes)."""
    # A thread pool of subprocess waits, not multiprocessing: each job is an external process.
    statuses: list[int] = []
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for notebook, status, output, seconds in pool.map(
                lambda nb: _run_one(nb, options, env), notebooks):
            verdict = "passed" if status == 0 else f"FAILED (exit {status})"
            print(f"===== {notebook}: {verdict} in {seconds:.0f} s =====", flush=True)
            print(output.rstrip(), flush=True)
            statuses.append(status)
    failed = [s for s in statuses if s != 0]
    print(f"perturbed pass: {len(notebooks) - len(failed)} of {len(notebooks)} notebooks "
          f"passed ({jobs} at a time)", flush=True)
    if not failed:
        return 0
    return 1 if 1 in failed else max(failed)


def main(argv: Sequence[str] | None = None) -> None:
    """Run pytest under :func:`perturbed_env`. One notebook (or ``--jobs 1``): this process is
    replaced by pytest (so that stopping ``make`` stops pytest too, and pytest's exit status is
    this command's); several: :func:`run_parallel`."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(__doc__)
        sys.exit(0 if args else 2)
    jobs, notebooks, options = split_args(args)
    env = perturbed_env()
    jobs = min(jobs or default_jobs(), max(1, len(notebooks)))
    print(f"perturbed numerics: {describe(env)}", flush=True)
    if jobs == 1:
        os.execve(sys.executable, [sys.executable, "-m", "pytest", *notebooks, *options], env)
    sys.exit(run_parallel(notebooks, options, env, jobs))


if __name__ == "__main__":
    main()
