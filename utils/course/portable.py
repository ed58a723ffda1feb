"""``make test-portable``: the notebooks re-executed under *perturbed numerics*, compared with nbval.

The committed outputs of a notebook are produced on one machine. Another CPU (AVX2 or AVX-512,
Intel, AMD or Apple Silicon), another BLAS or oneDNN code path, or another number of threads sums
floating-point numbers in another order, and a hash seed decides the iteration order of sets and
of dicts built from them. An output that changes with any of these is a red ``make test`` on a
learner's laptop. This command re-runs ``pytest --nbval`` with each of these knobs turned to the
other setting than the one the notebooks were executed with (see :data:`PERTURBED_ENV`), so that
such an output fails here, before it lands, instead of on the next machine.

Usage (what the Makefile runs)::

    python -m utils.course.portable NOTEBOOK... [PYTEST OPTIONS]

Every argument is passed on to ``python -m pytest``; the exit status is pytest's.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence

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


def main(argv: Sequence[str] | None = None) -> None:
    """Replace this process by pytest under :func:`perturbed_env` (so that stopping ``make``
    stops pytest too, and pytest's exit status is this command's)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(__doc__)
        sys.exit(0 if args else 2)
    env = perturbed_env()
    print(f"perturbed numerics: {describe(env)}", flush=True)
    os.execve(sys.executable, [sys.executable, "-m", "pytest", *args], env)


if __name__ == "__main__":
    main()
