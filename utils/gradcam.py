"""Grad-CAM (Selvaraju et al. 2019) for the course CNN and a Grad-CAM variant for the LSTM.

Both explain the **class score** (the output of the linear ``logits`` layer, before the softmax),
as in the original paper, and return one relevance value per sample of the beat, shape
``(n, window)``: the same map is shared by both leads (the feature maps mix the leads).

* :func:`grad_cam` - gradients of the class score with respect to the feature maps ``A`` of a
  convolutional layer (default ``conv_last``) are averaged over time to give one weight per
  channel, ``alpha_k = mean_t dy/dA_k(t)``; the map is ``ReLU(sum_k alpha_k A_k(t))``, then
  linearly interpolated to the beat length (identity for the FCN, whose layers keep the length).
* :func:`lstm_grad_cam` - the same recipe on the hidden states ``h_t`` of the ``lstm`` layer
  (channels = hidden units, time = LSTM steps after its pooling), interpolated to the beat.

Written with ``tf.GradientTape`` (no library offers Grad-CAM for Keras 3 1-D models); the
feature maps and gradients are also exposed (:func:`feature_maps_and_gradients`) for teaching.
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from .data import format_targets, validate_beats  # noqa: E402

#: Name of the layer whose output is the class score (logit) in every course classifier.
SCORE_LAYER = "logits"


def _layer_and_score_model(model, layer: str):
    """A Keras model mapping beats to ``(layer output, class scores)``."""
    import keras

    try:
        feat = model.get_layer(layer).output
    except ValueError:
        names = ", ".join(lay.name for lay in model.layers)
        raise ValueError(f"model {model.name!r} has no layer {layer!r}; layers: {names}") from None
    if isinstance(feat, (list, tuple)):  # e.g. an LSTM with return_state
        feat = feat[0]
    return keras.Model(model.inputs, [feat, model.get_layer(SCORE_LAYER).output])


def feature_maps_and_gradients(model, X: np.ndarray, targets, layer: str,
                               batch_size: int = 512) -> tuple[np.ndarray, np.ndarray,
                                                               np.ndarray]:
    """Feature maps ``A`` (n, steps, channels) of ``layer``, the gradients ``dy_c/dA`` of the
    target class score, and the class scores (n, n_classes) for a batch of beats."""
    import tensorflow as tf

    X = validate_beats(X, window=model.input_shape[1], leads=model.input_shape[2])
    sub = _layer_and_score_model(model, layer)
    n_classes = int(sub.outputs[1].shape[-1])
    targets = format_targets(targets, len(X), n_classes)
    maps, grads, scores = [], [], []
    for start in range(0, len(X), batch_size):
        xb = tf.convert_to_tensor(X[start:start + batch_size])
        tb = tf.constant(targets[start:start + batch_size])
        with tf.GradientTape() as tape:
            A, logits = sub(xb, training=False)
            y = tf.gather(logits, tb, axis=1, batch_dims=1)
        g = tape.gradient(y, A)
        maps.append(A.numpy())
        grads.append(g.numpy())
        scores.append(logits.numpy())
    if not maps:
        raise ValueError("X holds no beats")
    return np.concatenate(maps), np.concatenate(grads), np.concatenate(scores)


def upsample_to(relevance: np.ndarray, window: int) -> np.ndarray:
    """Linearly interpolate (n, steps) maps to (n, window) samples.

    Step ``t`` of a layer that pooled the beat by ``f = window / steps`` covers samples
    ``t*f .. t*f + f - 1``, so its value is placed at their centre ``t*f + (f-1)/2``
    (ends held constant). ``steps == window`` returns the input unchanged.
    """
    relevance = np.asarray(relevance, dtype=np.float64)
    if relevance.ndim != 2:
        raise ValueError(f"relevance must be (n, steps), got {relevance.shape}")
    steps = relevance.shape[1]
    if steps == window:
        return relevance.copy()
    if steps < 1 or steps > window:
        raise ValueError(f"cannot upsample {steps} steps to {window} samples")
    f = window / steps
    centres = np.arange(steps) * f + (f - 1) / 2
    grid = np.arange(window)
    return np.stack([np.interp(grid, centres, r) for r in relevance])


def _grad_cam_from(A: np.ndarray, G: np.ndarray, window: int, relu: bool) -> np.ndarray:
    alpha = G.mean(axis=1, keepdims=True)          # (n, 1, channels): one weight per channel
    cam = (alpha * A).sum(axis=2)                  # (n, steps)
    if relu:
        cam = np.maximum(cam, 0.0)
    return upsample_to(cam, window)


def grad_cam(model, X: np.ndarray, targets, layer: str = "conv_last",
             relu: bool = True) -> np.ndarray:
    """Grad-CAM of the class score ``targets`` at convolutional ``layer``: (n, window).

    ReLU'd (``relu=False`` keeps the negative evidence, for teaching), upsampled to the beat
    length, not normalised (units: class score per time step).
    """
    A, G, _ = feature_maps_and_gradients(model, X, targets, layer)
    if A.ndim != 3:
        raise ValueError(f"layer {layer!r} output has shape {A.shape[1:]}; Grad-CAM needs "
                         "(steps, channels) feature maps")
    return _grad_cam_from(A, G, model.input_shape[1], relu)


def lstm_grad_cam(model, X: np.ndarray, targets, layer: str = "lstm",
                  relu: bool = True) -> np.ndarray:
    """Grad-CAM variant for a recurrent classifier: (n, window).

    Gradients of the class score with respect to the hidden states ``h_t`` of ``layer``
    (which must return sequences) are averaged over time to weight each hidden unit; the
    weighted sum over units is the relevance of each step, ReLU'd and interpolated to the beat.
    """
    A, G, _ = feature_maps_and_gradients(model, X, targets, layer)
    if A.ndim != 3:
        raise ValueError(f"layer {layer!r} must return the hidden state of every time step "
                         f"(return_sequences=True); its output has shape {A.shape[1:]}")
    return _grad_cam_from(A, G, model.input_shape[1], relu)
