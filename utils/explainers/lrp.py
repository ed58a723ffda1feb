"""Layer-wise relevance propagation (LRP; Bach et al. 2015) for the course networks.

LRP explains the class score (logit) ``z_c`` of one beat by passing it backwards, layer by layer,
from the ``logits`` layer to the input. For a linear layer ``z_k = sum_j a_j w_jk + b_k`` whose
outputs carry relevance ``R_k``, the rules of Montavon et al. (2019, "Layer-wise relevance
propagation: an overview") are

* **LRP-0**:       ``R_j = sum_k  a_j w_jk / z_k * R_k``
* **LRP-epsilon**: ``R_j = sum_k  a_j w_jk / (z_k + eps * sign(z_k)) * R_k`` (eps absorbs the
  relevance of weak or contradictory activations: sparser, less noisy maps);
* **LRP-gamma**:   ``R_j = sum_k  (a_j w_jk + gamma (a_j w_jk)^+)
  / sum_j' (a_j' w_j'k + gamma (a_j' w_j'k)^+) * R_k`` (favours positive contributions: more
  stable maps). For ReLU outputs (``a >= 0``) ``(a w)^+ = a w^+``, Montavon's form; at the input
  layer the beat is signed, so ``(a w)^+ = a^+ w^+ + a^- w^-`` (the "generalised" gamma rule);
* **composite** (Montavon et al. 2019, "which rule for which layer"): LRP-0 in the Dense layers, LRP-epsilon in
  the middle, LRP-gamma in the layers that read an input directly.

The bias is a neuron of constant activation 1 (``a_0 = 1, w_0k = b_k``): it takes its share of
``R_k`` and passes it nowhere. ReLUs pass relevance unchanged, average pooling (GAP,
AveragePooling1D) is a linear layer with positive weights, Concatenate splits relevance by slices.
**Conservation**: for LRP-0/epsilon, ``sum_j R_j = sum_k R_k (z_k - b_k) / (z_k + eps sign z_k)``:
relevance is lost only to the biases (BatchNorm shifts included, once folded) and to epsilon;
with zero biases and ``eps = 0`` it is exact (``delta = 0``). On a ReLU network LRP-0 equals
gradient x input (Ancona et al. 2018; with biases too, since ``R_k / z_k = d logit / d z_k``
layer by layer), so it shares that map's noise; epsilon and gamma are what make LRP differ.
:func:`lrp` reports the conservation gap per beat as ``delta``.

BatchNormalization after a Conv1D or Dense is first folded into it
(:func:`utils.models.networks.fold_batchnorm_weights`, the one folding rule of the course); a BN elsewhere is
an affine layer with a diagonal weight. Rules are applied to the folded network (folding changes
what LRP-epsilon and LRP-gamma return: see :func:`invariance_example`).

Implementation: the "gradient trick" of Montavon et al. (2019, "implementing LRP efficiently"):
with ``s = R / z_mod`` held constant, ``R_in = a * grad_a(sum(z_mod(a) * s))``, one tape per
layer.
**Why our own code**: no maintained LRP library supports TensorFlow 2.17 / Keras 3 (iNNvestigate
2.1.2 needs TensorFlow < 2.15; signxai TensorFlow <= 2.12; zennit and Captum are PyTorch), so this
is a small, readable TensorFlow version (float64) that walks any Keras functional graph made of
InputLayer, Conv1D, Dense, BatchNormalization, Normalization, ReLU activations,
GlobalAveragePooling1D, AveragePooling1D, Concatenate and Dropout layers up to ``logits``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from utils.core.config import LOGITS_LAYER
from utils.core.explain import (Explanation, check_beats, check_output, check_targets,  # noqa: E402
                                rank_agreement)
from utils.explainers.saliency import gradient_x_input  # noqa: E402,F401  (re-exported: compared with LRP-0)
from utils.explainers.integrated_gradients import batched_integrated_gradients
from utils.core.methods import register

RULES: tuple[str, ...] = ("zero", "epsilon", "gamma", "composite")


# ------------------------------------------------------------------------------------------------
# The network as a list of steps (a small graph compiler)
# ------------------------------------------------------------------------------------------------
@dataclass
class _Step:
    """One operation of the explained graph, in topological order.
    ``kind``: ``"linear"`` (Conv1D/Dense/BN as affine maps with weights), ``"pool"`` (average
    pooling: linear with positive implicit weights), ``"relu"``, ``"identity"``, ``"concat"``.
    ``fn(x, kernel)`` is the linear map without bias (``kernel`` ``None`` for pooling).
    """
    kind: str
    name: str
    inputs: list[int]
    output: int
    fn: Callable | None = None
    kernel: np.ndarray | None = None
    bias: np.ndarray | None = None
    layer_type: str = ""
    axis: int = -1
    sizes: list[int] = field(default_factory=list)
    reads_input: bool = False
    layer: Any = None          # the Keras layer the step comes from


def _conv_fn(layer):
    import tensorflow as tf

    if layer.padding not in ("valid", "same") or layer.data_format != "channels_last" \
            or getattr(layer, "groups", 1) != 1:
        raise ValueError(f"LRP supports channels-last Conv1D with 'valid'/'same' padding and no "
                         f"groups; {layer.name!r} has padding={layer.padding!r}")
    stride, dilation, padding = layer.strides[0], layer.dilation_rate[0], layer.padding.upper()
    return lambda x, k: tf.nn.convolution(x, k, strides=stride, padding=padding,
                                          dilations=dilation)


def _dense_fn(x, k):
    import tensorflow as tf

    return tf.tensordot(x, k, axes=[[len(x.shape) - 1], [0]])


def _scale_fn(x, k):   # BatchNormalization that could not be folded: diagonal weight
    return x * k


def _activation_kind(layer, activation) -> str:
    name = getattr(activation, "__name__", str(activation))
    if name in ("linear", "identity"):
        return "identity"
    if name == "relu":
        return "relu"
    raise ValueError(f"LRP here handles ReLU (and linear) activations only; layer "
                     f"{layer.name!r} uses {name!r}")


def _make_steps(layer, inputs: list[int], output: int, reads_input: bool) -> list[_Step]:
    """Translate one Keras layer into steps (a Conv1D/Dense with a ReLU gives two)."""
    from keras import layers

    tmp = -id(layer) - 1          # key of the pre-activation of a Conv1D/Dense with a ReLU
    if isinstance(layer, (layers.Conv1D, layers.Dense)):
        kind = _activation_kind(layer, layer.activation)
        kernel = np.asarray(layer.kernel.numpy(), dtype=np.float64)
        bias = (np.asarray(layer.bias.numpy(), dtype=np.float64) if layer.use_bias
                else np.zeros(kernel.shape[-1]))
        fn = _conv_fn(layer) if isinstance(layer, layers.Conv1D) else _dense_fn
        lin = _Step("linear", layer.name, inputs, output if kind == "identity" else tmp, fn,
                    kernel, bias, type(layer).__name__, reads_input=reads_input)
        return [lin] if kind == "identity" else [lin, _Step("relu", layer.name, [tmp], output)]
    if isinstance(layer, layers.BatchNormalization):
        c = int(layer.moving_mean.shape[0])
        gamma = layer.gamma.numpy() if layer.scale else np.ones(c)
        beta = layer.beta.numpy() if layer.center else np.zeros(c)
        scale = np.asarray(gamma / np.sqrt(layer.moving_variance.numpy() + layer.epsilon),
                           dtype=np.float64)
        bias = np.asarray(beta - layer.moving_mean.numpy() * scale, dtype=np.float64)
        return [_Step("linear", layer.name, inputs, output, _scale_fn, scale, bias,
                      "BatchNormalization", reads_input=reads_input)]
    if isinstance(layer, layers.Normalization):      # (x - mean) / sqrt(var): a diagonal layer
        import keras

        mean = np.asarray(layer.mean, dtype=np.float64).reshape(-1)
        var = np.asarray(layer.variance, dtype=np.float64).reshape(-1)
        last = int(layer.input.shape[-1])
        if layer.invert or mean.shape != (last,):
            raise ValueError(f"LRP handles Normalization over the last axis only ({layer.name!r})")
        scale = 1.0 / np.maximum(np.sqrt(var), keras.config.epsilon())
        return [_Step("linear", layer.name, inputs, output, _scale_fn, scale, -mean * scale,
                      "Normalization", reads_input=reads_input)]
    if isinstance(layer, layers.Activation):
        return [_Step(_activation_kind(layer, layer.activation), layer.name, inputs, output)]
    if isinstance(layer, layers.ReLU):
        if layer.max_value is not None or float(layer.negative_slope) != 0 \
                or float(layer.threshold) != 0:
            raise ValueError(f"LRP handles the plain ReLU only ({layer.name!r} is modified)")
        return [_Step("relu", layer.name, inputs, output)]
    if isinstance(layer, layers.Dropout):
        return [_Step("identity", layer.name, inputs, output)]
    if isinstance(layer, layers.GlobalAveragePooling1D):
        import tensorflow as tf

        if layer.data_format != "channels_last" or layer.keepdims:
            raise ValueError(f"{layer.name!r}: LRP needs channels-last GAP without keepdims")
        return [_Step("pool", layer.name, inputs, output,
                      lambda x, k: tf.reduce_mean(x, axis=1), layer_type="GAP",
                      reads_input=reads_input)]
    if isinstance(layer, layers.AveragePooling1D):
        import tensorflow as tf

        if layer.data_format != "channels_last":
            raise ValueError(f"{layer.name!r}: LRP needs channels-last pooling")
        size, stride, padding = layer.pool_size[0], layer.strides[0], layer.padding.upper()
        return [_Step("pool", layer.name, inputs, output,
                      lambda x, k: tf.nn.avg_pool1d(x, size, stride, padding),
                      layer_type="AveragePooling1D", reads_input=reads_input)]
    if isinstance(layer, layers.Concatenate):
        return [_Step("concat", layer.name, inputs, output, axis=int(layer.axis))]
    raise ValueError(f"LRP does not support layer {layer.name!r} ({type(layer).__name__}); "
                     "supported: Conv1D, Dense, BatchNormalization, Normalization, ReLU, "
                     "GlobalAveragePooling1D, AveragePooling1D, Concatenate, Dropout")


def _fold(steps: list[_Step]) -> list[_Step]:
    """Fold every BatchNormalization whose input is the (sole-consumer) output of a linear
    Conv1D/Dense step into that step (:func:`utils.models.networks.fold_batchnorm_weights`)."""
    from utils.models.networks import fold_batchnorm_weights  # lazy: TensorFlow loads only when this runs

    consumers: dict[int, int] = {}
    for s in steps:
        for k in s.inputs:
            consumers[k] = consumers.get(k, 0) + 1
    producer = {s.output: s for s in steps}
    out: list[_Step] = []
    for s in steps:
        src = producer.get(s.inputs[0]) if s.inputs else None
        if (s.layer_type == "BatchNormalization" and src is not None
                and src.layer_type in ("Conv1D", "Dense") and consumers[src.output] == 1):
            src.kernel, src.bias = fold_batchnorm_weights(src.kernel, src.bias, s.layer)
            src.name, src.output = f"{src.name}+{s.name}", s.output
            continue
        out.append(s)
    return out


class _Graph:
    """The explained network (model inputs -> ``logits``) as float64 steps."""
    def __init__(self, model, fold: bool = True):
        import keras

        try:
            top = model.get_layer(LOGITS_LAYER).output
        except ValueError:
            raise ValueError(f"LRP explains the {LOGITS_LAYER!r} layer; model {model.name!r} "
                             "has none") from None
        self.input_keys = [id(t) for t in model.inputs]
        self.input_shapes = [tuple(t.shape[1:]) for t in model.inputs]
        shapes: dict[int, tuple] = {}
        steps: list[_Step] = []
        done: set[int] = set()

        def visit(t) -> int:
            key = id(t)
            shapes[key] = tuple(t.shape[1:])
            if key in done:
                return key
            layer, node_index, _ = t._keras_history
            if isinstance(layer, keras.layers.InputLayer):
                if key not in self.input_keys:
                    raise ValueError(f"input {layer.name!r} is not an input of {model.name!r}")
                done.add(key)
                return key
            node = layer._inbound_nodes[node_index]
            ins = [visit(x) for x in node.input_tensors]
            new = _make_steps(layer, ins, key, any(k in self.input_keys for k in ins))
            for s in new:
                s.layer = layer
                if s.kind == "concat":
                    s.sizes = [int(shapes[k][s.axis]) for k in ins]
            steps.extend(new)
            done.add(key)
            return key

        self.top = visit(top)
        self.steps = _fold(steps) if fold else steps

    # -- forward and backward --------------------------------------------------------------------
    def forward(self, xs: list) -> dict:
        import tensorflow as tf

        acts = dict(zip(self.input_keys, xs))
        for s in self.steps:
            a = [acts[k] for k in s.inputs]
            if s.kind == "linear":
                acts[s.output] = s.fn(a[0], s.kernel) + s.bias
            elif s.kind == "pool":
                acts[s.output] = s.fn(a[0], None)
            elif s.kind == "relu":
                acts[s.output] = tf.nn.relu(a[0])
            elif s.kind == "identity":
                acts[s.output] = a[0]
            elif s.kind == "concat":
                acts[s.output] = tf.concat(a, axis=s.axis)
        return acts

    def backward(self, acts: dict, relevance, rule_of: Callable[[_Step], tuple[float, float]]
                 ) -> dict:
        import tensorflow as tf

        R: dict[int, Any] = {self.top: relevance}

        def add(key, r):
            R[key] = r if key not in R else R[key] + r

        for s in reversed(self.steps):
            if s.output not in R:         # a branch that does not reach the explained output
                continue
            r = R.pop(s.output)
            if s.kind in ("relu", "identity"):
                add(s.inputs[0], r)
            elif s.kind == "concat":
                for key, part in zip(s.inputs, tf.split(r, s.sizes, axis=s.axis)):
                    add(key, part)
            else:
                eps, gamma = rule_of(s)
                add(s.inputs[0], _linear_relevance(s, acts[s.inputs[0]], r, eps, gamma))
        return R


def _linear_relevance(s: _Step, a, r, eps: float, gamma: float):
    """Relevance of the inputs ``a`` of a linear step from that of its outputs ``r``, by the
    gradient trick: ``R_in = a * grad_a(sum(z(a) * stop_gradient(r / z_mod)))``."""
    import tensorflow as tf

    k = s.kernel
    b = s.bias if s.bias is not None else 0.0
    a_pos, a_neg = tf.nn.relu(a), tf.minimum(a, 0.0)
    if s.kind == "pool":      # positive implicit weights: (a w)^+ = a^+ w
        k_pos = k_neg = None
    else:
        k_pos, k_neg = np.maximum(k, 0.0), np.minimum(k, 0.0)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([a, a_pos, a_neg])
        z = s.fn(a, k)
        z_mod = z + b
        if gamma:
            z_pos = s.fn(a_pos, k_pos) + np.maximum(b, 0.0)
            if s.kind != "pool":
                z_neg = s.fn(a_neg, k_neg)
                z_pos = z_pos + z_neg
            z_mod = z_mod + gamma * z_pos
        if eps:
            z_mod = z_mod + eps * (2.0 * tf.cast(z_mod >= 0, z_mod.dtype) - 1.0)
        scale = tf.stop_gradient(tf.math.divide_no_nan(r, z_mod))
        terms = [tf.reduce_sum(z * scale)]
        if gamma:
            terms.append(tf.reduce_sum(s.fn(a_pos, k_pos) * scale))
            if s.kind != "pool":
                terms.append(tf.reduce_sum(z_neg * scale))
    out = a * tape.gradient(terms[0], a)
    if gamma:
        out = out + gamma * a_pos * tape.gradient(terms[1], a_pos)
        if s.kind != "pool":
            out = out + gamma * a_neg * tape.gradient(terms[2], a_neg)
    del tape
    return out


def _graph(model, fold: bool) -> _Graph:
    """The step list of ``model``, read afresh on every call (a few ms): no cache, so that
    changed weights (training, the parameter-randomisation sanity check) are always seen."""
    return _Graph(model, fold)


def _rule_of(rule: str, epsilon: float, gamma: float) -> Callable[[_Step], tuple[float, float]]:
    if rule == "zero":
        return lambda s: (0.0, 0.0)
    if rule == "epsilon":
        return lambda s: (epsilon, 0.0)
    if rule == "gamma":
        return lambda s: (0.0, gamma)

    def composite(s: _Step) -> tuple[float, float]:
        if s.reads_input and s.kind == "linear":
            return (0.0, gamma)
        if s.layer_type == "Dense":
            return (0.0, 0.0)
        return (epsilon, 0.0)

    return composite


# ------------------------------------------------------------------------------------------------
# The explainer
# ------------------------------------------------------------------------------------------------
@register("lrp", "LRP", models=("fcn", "multimodal"), outputs=("logits",), delta=True)
def lrp(model, X, targets, *, output: str = "logits", rule: str = "epsilon",
        epsilon: float = 0.25, gamma: float = 0.25, fold_batchnorm: bool = True,
        batch_size: int = 128) -> Explanation:
    """LRP relevance of the ``logits`` of class ``targets`` (course contract).
    ``X``: beats (n, window, leads), or for a multi-input model a list with one array per model
    input. ``rule``: ``"zero"`` (LRP-0), ``"epsilon"``, ``"gamma"`` or ``"composite"`` (see the
    module docstring); ``epsilon`` is absolute (in the unit of each layer's pre-activation),
    ``gamma`` the weight of the positive part. ``fold_batchnorm=False`` propagates through
    BatchNormalization as its own (diagonal) layer, for the invariance demonstration.

    Returns an :class:`~utils.core.explain.Explanation`: ``values`` the relevance of the (first)
    beat-shaped input, ``delta`` per beat ``sum(all relevance) - z_target`` (what biases and
    epsilon absorbed), ``extras``: ``"inputs"`` (relevance of every model input, in the model's
    input order), ``"score"`` (the explained logit), ``"rule"``, ``"epsilon"``, ``"gamma"``.
    Only ``output="logits"`` is defined: the softmax is not a layer LRP propagates through.
    """
    import tensorflow as tf

    check_output(output)   # the registry admits only "logits": the softmax is not propagated
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
    if epsilon < 0 or gamma < 0:
        raise ValueError(f"epsilon and gamma must be >= 0, got {epsilon}, {gamma}")
    g = _graph(model, bool(fold_batchnorm))
    xs = list(X) if isinstance(X, (list, tuple)) else [check_beats(model, X)]
    if len(xs) != len(g.input_keys):
        raise ValueError(f"model {model.name!r} has {len(g.input_keys)} inputs, got {len(xs)}")
    xs = [np.asarray(x, dtype=np.float64) for x in xs]
    for x, shape in zip(xs, g.input_shapes):
        if x.shape[1:] != tuple(shape) or len(x) != len(xs[0]):
            raise ValueError(f"input of shape {x.shape} does not match the model input "
                             f"(n,) + {tuple(shape)} (all inputs need the same n)")
        if not np.all(np.isfinite(x)):
            raise ValueError("inputs contain NaN or infinite values")
    n = len(xs[0])
    if n == 0:
        raise ValueError("X holds no beats (empty batch)")
    top_units = int(model.get_layer(LOGITS_LAYER).output.shape[-1])
    t = check_targets(targets, n, top_units)
    rule_of = _rule_of(rule, float(epsilon), float(gamma))

    rel = [[] for _ in xs]
    scores = []
    for start in range(0, n, batch_size):
        chunk = [tf.constant(x[start:start + batch_size]) for x in xs]
        acts = g.forward(chunk)
        logits = acts[g.top]
        onehot = tf.one_hot(t[start:start + batch_size], top_units, dtype=tf.float64)
        R = g.backward(acts, logits * onehot, rule_of)
        for i, key in enumerate(g.input_keys):
            rel[i].append(R[key].numpy() if key in R else np.zeros(chunk[i].shape))
        scores.append(tf.reduce_sum(logits * onehot, axis=1).numpy())
    inputs = [np.concatenate(r) for r in rel]
    score = np.concatenate(scores)
    total = sum(r.reshape(n, -1).sum(axis=1) for r in inputs)
    beat_inputs = [i for i, r in enumerate(inputs) if r.ndim == 3]
    if not beat_inputs:
        raise ValueError("the model has no (window, leads) input to return as values")
    return Explanation(values=inputs[beat_inputs[0]], target=t, method=f"lrp_{rule}",
                       output="logits", scope="local", kind="model-specific",
                       delta=total - score, score=score, reference=np.zeros_like(score),
                       extras={"inputs": inputs})


# ------------------------------------------------------------------------------------------------
# Implementation invariance: a rule that can fail it
# ------------------------------------------------------------------------------------------------
@dataclass
class InvarianceExample:
    """Two functionally equal networks and the maps of several methods on both.
    ``maps[method] = (map on model_a, map on model_b)`` (each (n, window, leads));
    ``table``: per method, the largest output difference of the two models (should be ~0), the
    largest map difference and the rank correlation of the two maps.
    """
    model_a: Any
    model_b: Any
    X: np.ndarray
    targets: np.ndarray
    maps: dict[str, tuple[np.ndarray, np.ndarray]]
    table: Any


def _toy_conv_net(kernel: np.ndarray, bias: np.ndarray, dense: np.ndarray, window: int,
                  name: str):
    import keras
    from keras import layers

    inputs = keras.Input((window, kernel.shape[1]), name="beat")
    x = layers.Conv1D(kernel.shape[2], kernel.shape[0], padding="same", name="conv_last_conv")(
        inputs)
    x = layers.Activation("relu", name="conv_last")(x)
    x = layers.GlobalAveragePooling1D(name="gap")(x)
    logits = layers.Dense(dense.shape[1], name=LOGITS_LAYER)(x)
    probs = layers.Activation("softmax", name="probs")(logits)
    model = keras.Model(inputs, probs, name=name)
    model.get_layer("conv_last_conv").set_weights([kernel.astype(np.float32),
                                                   bias.astype(np.float32)])
    model.get_layer(LOGITS_LAYER).set_weights([dense.astype(np.float32),
                                           np.zeros(dense.shape[1], np.float32)])
    return model


def invariance_example(window: int = 64, epsilon: float = 0.5, seed: int = 0
                       ) -> InvarianceExample:
    """Implementation invariance (Sundararajan et al. 2017) that LRP-epsilon fails.
    Network A: a 3-filter Conv1D + ReLU + GAP + Dense on a 2-lead toy signal. Network B: the same
    function with filter 0 **split into two filters with halved weights and bias**, each
    connected to the logits with filter 0's Dense weights (``relu(z/2) + relu(z/2) = relu(z)``).
    Gradient x input, Integrated Gradients and LRP-0 give the same maps on A and B (LRP-0: the
    ratio ``a w / z`` is unchanged by the halving); LRP-epsilon does not: the split filter's
    pre-activations are halved while epsilon is not, so it receives less relevance than before
    and the map changes shape. (BN folding is the other classic case: ``lrp(...,
    fold_batchnorm=False)`` differs from the folded network under the epsilon and gamma rules.)
    """
    import pandas as pd

    rng = np.random.default_rng(seed)
    tt = np.linspace(0, 1, window)
    X = np.stack([np.stack([np.sin(2 * np.pi * (3 + i) * tt) + 2 * np.exp(-((tt - 0.3 - 0.1 * i)
                                                                          / 0.05) ** 2),
                            np.cos(2 * np.pi * (2 + i) * tt) - np.exp(-((tt - 0.6) / 0.08) ** 2)],
                           axis=1) for i in range(3)]) + 0.1 * rng.normal(size=(3, window, 2))
    X = X.astype(np.float32)
    kernel = rng.normal(size=(5, 2, 3))
    bias = np.array([0.2, -0.1, 0.1])
    dense = np.abs(rng.normal(size=(3, 2))) + 0.5
    model_a = _toy_conv_net(kernel, bias, dense, window, "invariance_a")
    kernel_b = np.concatenate([kernel[:, :, :1] / 2, kernel[:, :, :1] / 2, kernel[:, :, 1:]],
                              axis=2)
    bias_b = np.concatenate([bias[:1] / 2, bias[:1] / 2, bias[1:]])
    dense_b = np.concatenate([dense[:1], dense[:1], dense[1:]], axis=0)
    model_b = _toy_conv_net(kernel_b, bias_b, dense_b, window, "invariance_b")
    targets = np.zeros(len(X), dtype=np.int64)

    methods: dict[str, Callable] = {
        "gradient_x_input": lambda m: gradient_x_input(m, X, targets).values,
        "integrated_gradients": lambda m: batched_integrated_gradients(m, X, targets,
                                                                       n_steps=128).values,
        "lrp_zero": lambda m: lrp(m, X, targets, rule="zero").values,
        "lrp_epsilon": lambda m: lrp(m, X, targets, rule="epsilon", epsilon=epsilon).values,
    }
    out_gap = float(np.abs(model_a.predict(X, verbose=0) - model_b.predict(X, verbose=0)).max())
    maps, rows = {}, []
    for name, fn in methods.items():
        a, b = fn(model_a), fn(model_b)
        maps[name] = (a, b)
        rows.append({"method": name, "max |output A - B|": out_gap,
                     "max |map A - map B|": float(np.abs(a - b).max()),
                     "relative map difference": float(np.abs(a - b).max() / np.abs(a).max()),
                     "median Spearman(A, B)": float(np.nanmedian(rank_agreement(a, b)))})
    return InvarianceExample(model_a, model_b, X, targets, maps,
                             pd.DataFrame(rows).set_index("method"))
