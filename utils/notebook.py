"""One call at the top of every notebook: quiet logs, fixed seeds, readable figures.

``setup_notebook()`` must run before TensorFlow is imported so that its C++ logging level is
applied; it imports TensorFlow itself afterwards (so later imports are free).
"""
from __future__ import annotations

import os
import random
import warnings

from utils.core import config
from utils.plotting import use_course_style


def setup_notebook(seed: int = config.SEED, threads: int | None = None) -> None:
    """Silence TensorFlow/absl chatter, fix every random seed and set plotting defaults.
    ``threads`` limits TensorFlow's intra-op threads (``None`` keeps the default).
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning)

    import numpy as np
    import keras
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")
    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
    random.seed(seed)
    np.random.seed(seed)
    keras.utils.set_random_seed(seed)
    np.set_printoptions(precision=4, suppress=True)

    use_course_style()  # the figure rules of docs/FIGURES.md (text >= 8 pt, ...)
    try:
        import pandas as pd

        pd.set_option("display.precision", 3)
        pd.set_option("display.width", 120)
    except ImportError:  # pragma: no cover - pandas is pinned in requirements
        pass


def residual(value: float, bound: float) -> str:
    """A residual that should be zero up to rounding, printed so that every CPU prints the same.
    The digits of a float-rounding residual (``1.8e-15`` here, ``0.0`` on the next machine) depend
    on the order in which the CPU summed, so a notebook prints the verdict ``"< 1e-9"`` instead.
    A residual at or above the bound is a real result and is printed with two significant digits
    and the bound: ``"= 0.25 (above the bound 1e-6)"``.
    """
    if abs(value) < bound:
        return f"< {_short(bound)}"
    return f"= {value:.2g} (above the bound {_short(bound)})"


def _short(bound: float) -> str:
    """``1e-09`` -> ``1e-9``: a bound, written without the padded exponent of float noise."""
    mantissa, _, exponent = f"{bound:.0e}".partition("e")
    return f"{mantissa}e{int(exponent)}"
