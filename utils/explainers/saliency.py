"""Gradient maps: saliency (Simonyan, Vedaldi & Zisserman 2014) and gradient x input.

The plainest gradient explanation: how much the explained output (the class logit, or its
probability) changes for a tiny change of each input sample, ``d F_c / d x``. One backward pass
per batch, so it is the cheapest method of the course and the baseline every other gradient
method refines:

* :func:`saliency`: ``|d F_c / d x|`` (Simonyan et al.'s "image-specific class saliency", the
  magnitude; non-negative, plotted on the sequential map) or the signed gradient with
  ``absolute=False``;
* :func:`gradient_x_input`: ``x * d F_c / d x`` (Shrikumar et al. 2016; signed), the first-order
  Taylor term of ``F_c`` at ``x`` around an all-zero input. On a ReLU network without biases it
  equals LRP-0 (:mod:`utils.explainers.lrp`), and Integrated Gradients with a zero baseline and one step.

Written with ``tf.GradientTape`` (a dozen lines; alibi and shap offer no plain gradient map for
Keras 3 models). Single-input beat classifiers (n, window, leads); the calling convention of
every explainer (:mod:`utils.core.explain`).
"""
from __future__ import annotations

import numpy as np

from utils.core.explain import Explanation, check_beats, check_output, check_targets, score_model
from utils.core.methods import register


def input_gradients(model, X, targets, *, output: str = "logits"
                    ) -> tuple[np.ndarray, np.ndarray]:
    """``(gradients, targets)``: ``d F_t / d x`` (n, window, leads) of the explained output
    ``F`` (``output``) for the class ``targets`` of each beat, after validating the inputs."""
    import tensorflow as tf

    net = score_model(model, check_output(output))
    X = check_beats(model, X).astype(np.float32)
    t = check_targets(targets, len(X), int(net.output_shape[-1]))
    x = tf.constant(X)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = tf.gather(net(x, training=False), t, axis=1, batch_dims=1)
    return tape.gradient(y, x).numpy().astype(np.float64), t


@register("saliency", "saliency")
def saliency(model, X, targets, *, output: str = "logits", absolute: bool = True
             ) -> Explanation:
    """Saliency map ``|d F_c / d x|`` (``absolute=False``: the signed gradient) per beat."""
    grads, t = input_gradients(model, X, targets, output=output)
    values = np.abs(grads) if absolute else grads
    return Explanation(values=values, target=t, method="saliency", output=output)


@register("gradient_x_input", "gradient x input")
def gradient_x_input(model, X, targets, *, output: str = "logits") -> Explanation:
    """Gradient x input ``x * d F_c / d x`` of the explained output (one backward pass)."""
    grads, t = input_gradients(model, X, targets, output=output)
    X = np.asarray(X, dtype=np.float64)
    return Explanation(values=grads * X, target=t, method="gradient_x_input", output=output)
