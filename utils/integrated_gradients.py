"""Integrated Gradients (Sundararajan et al. 2017) for the course models, and its axioms.

* :func:`integrated_gradients` - alibi's ``IntegratedGradients`` (Klaise et al. 2021) on the
  class score (logit, default) or the probability; returns (n, window, leads).
* :func:`batched_integrated_gradients` - the same quantity in plain TensorFlow: every
  interpolation point of a chunk of beats goes through the network in one batched
  forward + backward pass (alibi loops over small internal batches and converts to numpy in
  between). Same quadrature weights as alibi (``alibi.utils.approximation_methods``), so the
  two agree to float precision; it is the fast path for step sweeps and larger samples.
* :func:`completeness_error` - ``|sum(attributions) - (F(x) - F(baseline))|`` relative to
  ``|F(x) - F(baseline)|`` per beat (the completeness axiom).
* :func:`make_baseline` - reference inputs for ECG: zeros, flat line at the median, blurred
  beat, a mean beat.
* :func:`fold_batchnorm` - a functionally equal FCN without BatchNorm layers (BN folded into
  the convolutions), to check implementation invariance.
"""
from __future__ import annotations

import os
import weakref

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from .data import validate_beats  # noqa: E402
from .data import format_targets  # noqa: E402

OUTPUTS = ("logits", "probs")
BASELINES = ("zero", "median", "blur", "mean")


def _check_output(output: str) -> None:
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")


_SCORE_MODELS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def score_model(model, output: str = "logits"):
    """The model whose output is explained: the logits (class scores) or the probabilities."""
    _check_output(output)
    if output == "probs":
        return model
    cached = _SCORE_MODELS.get(model)
    if cached is None:
        from .models import logits_model

        cached = logits_model(model)
        _SCORE_MODELS[model] = cached
    return cached


def class_scores(model, X: np.ndarray, targets, output: str = "logits",
                 batch_size: int = 1024) -> np.ndarray:
    """``F_target(X)``: the explained output of each beat for its target class, shape (n,)."""
    X = validate_beats(X, window=model.input_shape[1], leads=model.input_shape[2])
    m = score_model(model, output)
    out = np.asarray(m.predict(X, batch_size=batch_size, verbose=0), dtype=np.float64)
    t = format_targets(targets, len(X), out.shape[1])
    return out[np.arange(len(X)), t]


def _baselines_like(X: np.ndarray, baselines) -> np.ndarray:
    if baselines is None:
        return np.zeros_like(X)
    b = np.asarray(baselines, dtype=np.float32)
    try:
        return np.ascontiguousarray(np.broadcast_to(b, X.shape))
    except ValueError:
        raise ValueError(f"baselines of shape {b.shape} cannot be broadcast to the beats "
                         f"{X.shape}") from None


def _check_steps(n_steps: int, method: str) -> None:
    from alibi.utils.approximation_methods import SUPPORTED_METHODS

    if method not in SUPPORTED_METHODS:
        raise ValueError(f"method must be one of {SUPPORTED_METHODS}, got {method!r}")
    if int(n_steps) < 2:
        raise ValueError(f"n_steps must be at least 2, got {n_steps}")


def integrated_gradients(model, X: np.ndarray, targets, baselines=None, n_steps: int = 50,
                         method: str = "gausslegendre", output: str = "logits",
                         internal_batch_size: int = 1000) -> np.ndarray:
    """Integrated Gradients with alibi's ``IntegratedGradients``: (n, window, leads).

    ``targets``: int or one class index per beat. ``baselines``: ``None`` (zeros, as in the
    image domain) or an array broadcastable to ``X`` (see :func:`make_baseline`).
    ``output='logits'`` explains the class score (default, like Grad-CAM), ``'probs'`` the
    softmax probability.
    """
    from alibi.explainers import IntegratedGradients

    _check_steps(n_steps, method)
    X = validate_beats(X, window=model.input_shape[1], leads=model.input_shape[2])
    B = _baselines_like(X, baselines)
    m = score_model(model, output)
    t = format_targets(targets, len(X), int(m.output_shape[-1]))
    ig = IntegratedGradients(m, method=method, n_steps=int(n_steps),
                             internal_batch_size=internal_batch_size)
    explanation = ig.explain(X, baselines=B, target=t)
    return np.asarray(explanation.attributions[0], dtype=np.float64)


def quadrature(n_steps: int, method: str = "gausslegendre") -> tuple[np.ndarray, np.ndarray]:
    """Path positions ``alphas`` in [0, 1] and weights of alibi's integral ``method``."""
    from alibi.utils.approximation_methods import approximation_parameters

    _check_steps(n_steps, method)
    step_sizes, alphas = approximation_parameters(method)
    return (np.asarray(alphas(int(n_steps)), dtype=np.float32),
            np.asarray(step_sizes(int(n_steps)), dtype=np.float32))


_GRAD_FNS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _path_gradient_fn(m):
    """A compiled function: weighted sum of gradients along the straight paths of a chunk."""
    import tensorflow as tf

    fn = _GRAD_FNS.get(m)
    if fn is not None:
        return fn

    @tf.function(reduce_retracing=True)
    def path_grads(x, b, t, alphas, weights):
        steps = tf.shape(alphas)[0]
        n = tf.shape(x)[0]
        a = tf.reshape(alphas, (-1, 1, 1, 1))
        paths = tf.reshape(b[None] + a * (x - b)[None], (-1,) + tuple(x.shape[1:]))
        tt = tf.tile(t, [steps])
        with tf.GradientTape() as tape:
            tape.watch(paths)
            out = m(paths, training=False)
            y = tf.gather(out, tt, axis=1, batch_dims=1)
        g = tf.reshape(tape.gradient(y, paths), (steps, n) + tuple(x.shape[1:]))
        return tf.tensordot(weights, g, axes=1) * (x - b)

    _GRAD_FNS[m] = path_grads
    return path_grads


def batched_integrated_gradients(model, X: np.ndarray, targets, baselines=None,
                                 n_steps: int = 50, method: str = "gausslegendre",
                                 output: str = "logits", max_batch: int = 2048) -> np.ndarray:
    """Integrated Gradients in plain TensorFlow, same result as :func:`integrated_gradients`.

    Beats are processed in chunks of ``max_batch // n_steps`` (at least 1): all
    ``n_steps x chunk`` interpolated inputs of a chunk go through one forward and one backward
    pass (a compiled ``tf.function``). Returns (n, window, leads) float64.
    """
    import tensorflow as tf

    _check_steps(n_steps, method)
    if max_batch < 1:
        raise ValueError(f"max_batch must be positive, got {max_batch}")
    X = validate_beats(X, window=model.input_shape[1], leads=model.input_shape[2])
    B = _baselines_like(X, baselines)
    m = score_model(model, output)
    t = format_targets(targets, len(X), int(m.output_shape[-1]))
    alphas, weights = quadrature(n_steps, method)
    fn = _path_gradient_fn(m)
    chunk = max(1, int(max_batch) // int(n_steps))
    out = []
    for s in range(0, len(X), chunk):
        out.append(fn(tf.constant(X[s:s + chunk]), tf.constant(B[s:s + chunk]),
                      tf.constant(t[s:s + chunk]), tf.constant(alphas),
                      tf.constant(weights)).numpy())
    return np.concatenate(out).astype(np.float64) if out else np.zeros(X.shape)


def completeness_error(model, X: np.ndarray, attributions: np.ndarray, targets,
                       baselines=None, output: str = "logits", eps: float = 1e-6
                       ) -> np.ndarray:
    """Relative completeness error of each beat, shape (n,).

    ``|sum(attributions) - (F(x) - F(baseline))| / max(|F(x) - F(baseline)|, eps)`` where
    ``F`` is the explained output (logit by default) of the target class.
    """
    X = validate_beats(X, window=model.input_shape[1], leads=model.input_shape[2])
    attributions = np.asarray(attributions, dtype=np.float64)
    if attributions.shape != X.shape:
        raise ValueError(f"attributions {attributions.shape} do not match the beats {X.shape}")
    B = _baselines_like(X, baselines)
    delta = class_scores(model, X, targets, output) - class_scores(model, B, targets, output)
    gap = attributions.reshape(len(X), -1).sum(axis=1) - delta
    return np.abs(gap) / np.maximum(np.abs(delta), eps)


def make_baseline(X: np.ndarray, kind: str = "zero", reference: np.ndarray | None = None,
                  sigma: float = 8.0) -> np.ndarray:
    """Baseline beats (n, window, leads) for Integrated Gradients.

    * ``'zero'``: all zeros. Beats are z-scored per beat and lead, so this is a flat line at
      the beat's own mean level (not 0 mV).
    * ``'median'``: a flat line at the median of each beat and lead (close to the isoelectric
      line, since most of a beat window is baseline).
    * ``'blur'``: the beat smoothed by a Gaussian filter of ``sigma`` samples (keeps slow
      waves, removes the sharp QRS).
    * ``'mean'``: ``reference`` (one beat (window, leads), e.g. the training-set mean or a
      class-mean beat) repeated for every beat.
    """
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 3:
        raise ValueError(f"X must be (n, window, leads), got {X.shape}")
    if kind == "zero":
        return np.zeros_like(X)
    if kind == "median":
        return np.broadcast_to(np.median(X, axis=1, keepdims=True), X.shape).astype(np.float32)
    if kind == "blur":
        from scipy.ndimage import gaussian_filter1d

        if sigma <= 0:
            raise ValueError(f"sigma must be positive, got {sigma}")
        return gaussian_filter1d(X, sigma=sigma, axis=1, mode="nearest").astype(np.float32)
    if kind == "mean":
        if reference is None:
            raise ValueError("kind='mean' needs a reference beat (window, leads)")
        ref = np.asarray(reference, dtype=np.float32)
        if ref.shape != X.shape[1:]:
            raise ValueError(f"reference beat {ref.shape} does not match beats {X.shape[1:]}")
        return np.broadcast_to(ref, X.shape).astype(np.float32)
    raise ValueError(f"kind must be one of {BASELINES}, got {kind!r}")


def fold_batchnorm(model):
    """A functionally equal copy of a :func:`utils.models.build_fcn` network without BatchNorm.

    Each ``Conv1D -> BatchNormalization`` pair (inference mode) is replaced by one ``Conv1D``
    with ``w' = w * gamma / sqrt(var + eps)`` and ``b' = (b - mean) * gamma / sqrt(var + eps)
    + beta`` (the usual deployment optimisation). Layer names ``conv*``, ``gap``, ``logits``,
    ``probs`` are kept, so Grad-CAM and IG run on both models alike.
    """
    import keras
    from keras import layers

    from .models import fold_batchnorm_weights

    inputs = keras.Input(model.input_shape[1:], name="beat")
    x = inputs
    convs = [lay for lay in model.layers if isinstance(lay, layers.Conv1D)]
    if not convs:
        raise ValueError(f"model {model.name!r} has no Conv1D layers to fold")
    new_weights = []
    for conv in convs:
        block = conv.name[:-len("_conv")] if conv.name.endswith("_conv") else conv.name
        try:
            bn = model.get_layer(f"{block}_bn")
        except ValueError:
            raise ValueError(f"no BatchNormalization layer {block}_bn after {conv.name}") from None
        w, b = conv.get_weights() if conv.use_bias else (conv.get_weights()[0], 0.0)
        new_weights.append(fold_batchnorm_weights(w, b, bn))
        x = layers.Conv1D(conv.filters, conv.kernel_size, padding=conv.padding,
                          dilation_rate=conv.dilation_rate, name=f"{block}_conv")(x)
        x = layers.Activation("relu", name=block)(x)
    x = layers.GlobalAveragePooling1D(name="gap")(x)
    logits = layers.Dense(model.get_layer("logits").units, name="logits")(x)
    probs = layers.Activation("softmax", name="probs")(logits)
    folded = keras.Model(inputs, probs, name=f"{model.name}_folded")
    for conv, (w, b) in zip(convs, new_weights):
        folded.get_layer(conv.name).set_weights([w.astype(np.float32), b.astype(np.float32)])
    folded.get_layer("logits").set_weights(model.get_layer("logits").get_weights())
    return folded


def saturating_model(gain: float = 4.0, window: int = 256, leads: int = 2):
    """A tiny hand-set network whose class-1 score saturates: ``z_1 = min(1, gain * g)`` with
    ``g = mean_t ReLU(x_t, lead 0)`` (layer ``conv_last`` = ReLU of lead 0, then GAP), and
    ``z_0 = 1 - z_1``. Built with the course layer names (``conv_last``, ``logits``, ``probs``)
    so Grad-CAM and IG run on it unchanged. Once ``gain * g >= 1`` every gradient is zero:
    the textbook failure of gradient-based maps (sensitivity, Sundararajan et al. 2017)."""
    import keras
    from keras import layers

    if gain <= 0:
        raise ValueError(f"gain must be positive, got {gain}")
    inputs = keras.Input((window, leads), name="beat")
    x = layers.Conv1D(1, 1, name="conv_last_conv")(inputs)
    x = layers.Activation("relu", name="conv_last")(x)
    g = layers.GlobalAveragePooling1D(name="gap")(x)
    s = layers.Dense(1, activation="relu", name="saturation")(g)     # ReLU(1 - gain * g)
    logits = layers.Dense(2, name="logits")(s)                       # (s, 1 - s)
    probs = layers.Activation("softmax", name="probs")(logits)
    model = keras.Model(inputs, probs, name="saturating_toy")
    kernel = np.zeros((1, leads, 1), np.float32)
    kernel[0, 0, 0] = 1.0
    model.get_layer("conv_last_conv").set_weights([kernel, np.zeros(1, np.float32)])
    model.get_layer("saturation").set_weights([np.array([[-gain]], np.float32),
                                               np.array([1.0], np.float32)])
    model.get_layer("logits").set_weights([np.array([[1.0, -1.0]], np.float32),
                                           np.array([0.0, 1.0], np.float32)])
    return model
