"""Grad-CAM (Selvaraju et al. 2019) for the course CNN and LSTM: one function, one ``layer``.

:func:`grad_cam` explains the **class score** (the logits, before the softmax, as in the paper;
``output="probs"`` is possible) with the feature maps ``A`` (n, steps, channels) of ``layer``:
the gradients of the score with respect to ``A`` are averaged over time to give one weight per
channel, ``alpha_k = mean_t dy/dA_k(t)``, and the map is ``ReLU(sum_k alpha_k A_k(t))``.

* CNN: ``layer="conv_last"`` (default); its maps keep the beat length, so steps = samples.
* LSTM: ``layer="lstm"``, the hidden states ``h_t`` (channels = hidden units, time = LSTM
  steps after the pooling); the layer must return sequences.

The map of ``steps`` values is ``Explanation.native``; ``values`` is that map placed on the
beat's samples by :func:`utils.core.explain.to_samples` (linear interpolation between step centres)
and shared by both leads (the feature maps mix the leads).

Written with ``tf.GradientTape`` (no library offers Grad-CAM for Keras 3 1-D models); the
feature maps and gradients are also exposed (:func:`feature_maps_and_gradients`) for teaching.
"""
from __future__ import annotations

import numpy as np

from utils.core.explain import (Explanation, check_beats, check_targets, require_layer,
                                score_model, to_samples)
from utils.core.methods import register

#: Layers Grad-CAM reads by default, the first the model has: the CNN's last convolution, the
#: LSTM of the recurrent models.
DEFAULT_LAYERS: tuple[str, ...] = ("conv_last", "lstm")


def feature_maps_and_gradients(model, X: np.ndarray, targets, layer: str = "conv_last", *,
                               output: str = "logits", batch_size: int = 512
                               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Feature maps ``A`` (n, steps, channels) of ``layer``, the gradients ``dy_c/dA`` of the
    target class score, and the scores (n, n_classes) of the explained ``output``."""
    import keras
    import tensorflow as tf

    X = check_beats(model, X)
    feat = require_layer(model, layer, "Grad-CAM").output
    if isinstance(feat, (list, tuple)):  # e.g. an LSTM with return_state
        feat = feat[0]
    if len(feat.shape) != 3:
        raise ValueError(f"Grad-CAM needs (steps, channels) feature maps; layer {layer!r} gives "
                         f"{tuple(feat.shape[1:])} (an LSTM needs return_sequences=True)")
    sub = keras.Model(model.inputs, [feat, score_model(model, output).output])
    targets = check_targets(targets, len(X), int(sub.outputs[1].shape[-1]))
    maps, grads, scores = [], [], []
    for start in range(0, len(X), batch_size):
        xb = tf.convert_to_tensor(X[start:start + batch_size])
        tb = tf.constant(targets[start:start + batch_size])
        with tf.GradientTape() as tape:
            A, out = sub(xb, training=False)
            y = tf.gather(out, tb, axis=1, batch_dims=1)
        maps.append(A.numpy())
        grads.append(tape.gradient(y, A).numpy())
        scores.append(out.numpy())
    return np.concatenate(maps), np.concatenate(grads), np.concatenate(scores)


@register("grad_cam", "Grad-CAM", models=("fcn", "lstm", "lstm_attention"), unit="steps")
def grad_cam(model, X: np.ndarray, targets, *, output: str = "logits", layer: str | None = None,
             relu: bool = True) -> Explanation:
    """Grad-CAM of class ``targets`` at ``layer`` (``"conv_last"`` for the CNN, ``"lstm"`` for
    the LSTM). ReLU'd (``relu=False`` keeps the negative evidence, for teaching); not
    normalised (units: class score per step). ``native`` (n, steps), ``values`` (n, window,
    leads) interpolated to the samples and shared by the leads."""
    if layer is None:   # the last convolution of the CNN, the LSTM layer of the LSTMs
        names = {lay.name for lay in model.layers}
        layer = next((n for n in DEFAULT_LAYERS if n in names), DEFAULT_LAYERS[0])
    A, G, _ = feature_maps_and_gradients(model, X, targets, layer, output=output)
    cam = (G.mean(axis=1, keepdims=True) * A).sum(axis=2)      # (n, steps)
    if relu:
        cam = np.maximum(cam, 0.0)
    window, leads = model.input_shape[1:]
    t = check_targets(targets, len(cam), model.output_shape[-1])
    return Explanation(to_samples(cam, "steps", window, leads, mode="interp"), t, "grad_cam",
                       output, native=cam, unit="steps", options={"layer": layer},
                       extras={"layer": layer, "relu": relu})
