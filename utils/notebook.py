"""One call at the top of every notebook: quiet logs, fixed seeds, readable figures.

``setup_notebook()`` must run before TensorFlow is imported so that its C++ logging level is
applied; it imports TensorFlow itself afterwards (so later imports are free).
"""
from __future__ import annotations

import os
import random
import warnings

from . import config


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
    from .plotting import use_course_style

    use_course_style()  # the figure rules of docs/FIGURES.md (text >= 8 pt, ...)
    try:
        import pandas as pd

        pd.set_option("display.precision", 3)
        pd.set_option("display.width", 120)
    except ImportError:  # pragma: no cover - pandas is pinned in requirements
        pass
