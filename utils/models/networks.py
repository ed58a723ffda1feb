"""Keras models of the course, sized for a 2-core laptop CPU.

* :func:`build_fcn` - fully convolutional network with global average pooling (Wang et al. 2017),
  so that the class activation map (CAM) is exact.
* :func:`build_lstm` - LSTM classifier; the hidden states of every time step are averaged
  (GAP over time) so that a Grad-CAM-style relevance per time step is well defined.
* :func:`build_lstm_attention` - LSTM followed by additive (Bahdanau) attention whose weights can
  be read out with :func:`attention_model`.
* :func:`build_attention_autoencoder` - small recurrent seq2seq autoencoder with dot-product
  attention from decoder to encoder states (alignment matrix readable).

Every classifier ends in a linear ``logits`` layer (``utils.core.config.LOGITS_LAYER``) followed by a
``probs`` softmax, so explainers can target either the class score (logit) or the probability
(``utils.core.explain.score_model``).
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import layers, ops  # noqa: E402

from utils.core import config  # noqa: E402
from utils.core.config import LOGITS_LAYER  # noqa: E402
from utils.core.beats import validate_beats

N_CLASSES = len(config.CLASSES)
INPUT_SHAPE = (config.WINDOW, 2)


@keras.saving.register_keras_serializable(package="ecg_xai")
class TemporalAttention(layers.Layer):
    """Additive (Bahdanau) attention over time steps of a sequence.
    ``score_t = v^T tanh(W h_t + b)``, ``alpha = softmax_t(score)``, ``context = sum_t alpha_t h_t``.
    Called on ``(batch, time, features)`` it returns ``context`` (batch, features), or
    ``(context, alpha)`` with ``alpha`` (batch, time) when ``return_attention=True``.

    Written by hand because Keras' ``AdditiveAttention`` needs a separate query and has no
    learned query vector for self-pooling of one sequence (the classic "attention pooling").
    """
    def __init__(self, units: int = 32, return_attention: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.return_attention = return_attention

    def build(self, input_shape):
        features = int(input_shape[-1])
        self.W = self.add_weight(name="W", shape=(features, self.units),
                                 initializer="glorot_uniform")
        self.b = self.add_weight(name="b", shape=(self.units,), initializer="zeros")
        self.v = self.add_weight(name="v", shape=(self.units, 1), initializer="glorot_uniform")

    def call(self, h):
        scores = ops.squeeze(ops.matmul(ops.tanh(ops.matmul(h, self.W) + self.b), self.v), -1)
        alpha = ops.softmax(scores, axis=-1)
        context = ops.sum(h * ops.expand_dims(alpha, -1), axis=1)
        if self.return_attention:
            return context, alpha
        return context

    def get_config(self) -> dict:
        return {**super().get_config(), "units": self.units,
                "return_attention": self.return_attention}


def fcn_blocks(x, filters: tuple[int, ...] = (32, 32, 64), kernels: tuple[int, ...] = (9, 9, 9),
               dilations: tuple[int, ...] = (1, 4, 16)):
    """The convolutional branch of :func:`build_fcn` applied to the tensor ``x``:
    [Conv1D-BN-ReLU] per entry (layers ``conv1``, ``conv2``, ..., the last one ``conv_last``)
    and global average pooling (``gap``). Shared with :mod:`utils.models.multimodal`."""
    if not len(filters) == len(kernels) == len(dilations):
        raise ValueError("filters, kernels and dilations must have the same length")
    for i, (f, k, d) in enumerate(zip(filters, kernels, dilations)):
        name = "conv_last" if i == len(filters) - 1 else f"conv{i + 1}"
        x = layers.Conv1D(f, k, padding="same", dilation_rate=d, name=f"{name}_conv")(x)
        x = layers.BatchNormalization(name=f"{name}_bn")(x)
        x = layers.Activation("relu", name=name)(x)
    return layers.GlobalAveragePooling1D(name="gap")(x)


def build_fcn(filters: tuple[int, ...] = (32, 32, 64), kernels: tuple[int, ...] = (9, 9, 9),
              dilations: tuple[int, ...] = (1, 4, 16),
              input_shape: tuple[int, int] = INPUT_SHAPE, n_classes: int = N_CLASSES
              ) -> keras.Model:
    """Wang et al. (2017) FCN: [Conv1D-BN-ReLU] x 3, global average pooling, linear logits.
    ``padding='same'`` keeps the time axis at the input length, so the last conv block
    (``conv_last``) gives a CAM at the resolution of the beat.

    One deviation from Wang et al.: dilated convolutions (1, 4, 16). Global average pooling
    discards *where* a feature occurs, so with Wang's small kernels (8/5/3, receptive field 14
    samples) the network cannot relate the beat to its neighbours (RR interval, prematurity);
    the dilations widen the receptive field to 169 samples (0.94 s) at the same cost.
    """
    inputs = keras.Input(input_shape, name="beat")
    x = fcn_blocks(inputs, filters, kernels, dilations)
    logits = layers.Dense(n_classes, name=LOGITS_LAYER)(x)
    probs = layers.Activation("softmax", name="probs")(logits)
    return keras.Model(inputs, probs, name="fcn")


def build_lstm(units: int = 64, pool: int = 4, input_shape: tuple[int, int] = INPUT_SHAPE,
               n_classes: int = N_CLASSES) -> keras.Model:
    """LSTM classifier: fixed average pooling by ``pool`` (64 steps at 45 Hz: 4x fewer
    recurrent steps for CPU speed and easier training, QRS still 4-5 steps wide), an LSTM
    returning every hidden state (layer ``lstm``), mean over time, linear logits."""
    inputs = keras.Input(input_shape, name="beat")
    x = layers.AveragePooling1D(pool, name="downsample")(inputs) if pool > 1 else inputs
    h = layers.LSTM(units, return_sequences=True, name="lstm")(x)
    x = layers.GlobalAveragePooling1D(name="time_mean")(h)
    logits = layers.Dense(n_classes, name=LOGITS_LAYER)(x)
    probs = layers.Activation("softmax", name="probs")(logits)
    return keras.Model(inputs, probs, name="lstm")


def build_lstm_attention(units: int = 64, attention_units: int = 32, pool: int = 4,
                         input_shape: tuple[int, int] = INPUT_SHAPE,
                         n_classes: int = N_CLASSES) -> keras.Model:
    """LSTM + additive attention pooling (layer ``attention``) + linear logits."""
    inputs = keras.Input(input_shape, name="beat")
    x = layers.AveragePooling1D(pool, name="downsample")(inputs) if pool > 1 else inputs
    h = layers.LSTM(units, return_sequences=True, name="lstm")(x)
    context, _ = TemporalAttention(attention_units, return_attention=True, name="attention")(h)
    logits = layers.Dense(n_classes, name=LOGITS_LAYER)(context)
    probs = layers.Activation("softmax", name="probs")(logits)
    return keras.Model(inputs, probs, name="lstm_attention")


def attention_model(model: keras.Model) -> keras.Model:
    """A model mapping beats to ``(probs, attention weights)`` for an attention classifier.
    The weights have one value per LSTM time step (``WINDOW // pool`` = 64) and sum to 1.
    """
    att = model.get_layer("attention")
    return keras.Model(model.inputs, [model.output, att.output[1]])


def build_attention_autoencoder(units: int = 32, pool: int = 4,
                                input_shape: tuple[int, int] = INPUT_SHAPE) -> keras.Model:
    """Recurrent seq2seq autoencoder with dot-product (Luong) attention.
    The beat is average-pooled by ``pool`` (64 steps at 45 Hz). An LSTM encoder reads it; an
    LSTM decoder, started from the encoder's final state and fed only its own position
    (a learned constant per step, so it cannot copy the input), queries the encoder states with
    ``keras.layers.Attention``. Output: the pooled beat. The alignment matrix (decoder step x
    encoder step) is read with :func:`autoencoder_alignment`.
    """
    steps = input_shape[0] // pool
    inputs = keras.Input(input_shape, name="beat")
    x = layers.AveragePooling1D(pool, name="downsample")(inputs)
    enc, state_h, state_c = layers.LSTM(units, return_sequences=True, return_state=True,
                                        name="encoder")(x)
    positions = PositionQueries(steps, units, name="positions")(x)
    dec = layers.LSTM(units, return_sequences=True, name="decoder")(
        positions, initial_state=[state_h, state_c])
    context, scores = layers.Attention(name="alignment")([dec, enc],
                                                        return_attention_scores=True)
    out = layers.Concatenate(name="concat")([dec, context])
    recon = layers.TimeDistributed(layers.Dense(input_shape[1]), name="reconstruction")(out)
    return keras.Model(inputs, recon, name="attention_autoencoder")


@keras.saving.register_keras_serializable(package="ecg_xai")
class PositionQueries(layers.Layer):
    """A learned vector per decoder time step, broadcast over the batch (decoder inputs)."""
    def __init__(self, steps: int, dim: int, **kwargs):
        super().__init__(**kwargs)
        self.steps, self.dim = steps, dim

    def build(self, input_shape):
        self.table = self.add_weight(name="table", shape=(self.steps, self.dim),
                                     initializer="random_normal")

    def call(self, x):
        batch = ops.shape(x)[0]
        return ops.broadcast_to(ops.expand_dims(self.table, 0), (batch, self.steps, self.dim))

    def get_config(self) -> dict:
        return {**super().get_config(), "steps": self.steps, "dim": self.dim}


def autoencoder_alignment(model: keras.Model) -> keras.Model:
    """Model mapping beats to ``(pooled input, reconstruction, alignment (batch, dec, enc))``."""
    _, scores = model.get_layer("alignment").output
    return keras.Model(model.inputs,
                       [model.get_layer("downsample").output, model.output, scores])


BUILDERS = {
    "fcn": build_fcn,
    "lstm": build_lstm,
    "lstm_attention": build_lstm_attention,
    "attention_autoencoder": build_attention_autoencoder,
}


def fold_batchnorm_weights(kernel: np.ndarray, bias, bn: layers.BatchNormalization
                           ) -> tuple[np.ndarray, np.ndarray]:
    """Fold an inference-mode BatchNormalization into the linear layer (Conv1D or Dense) before
    it: ``w' = w * s``, ``b' = (b - mean) * s + beta`` with ``s = gamma / sqrt(var + eps)``
    (per output channel, the last axis of ``kernel``). ``bias`` may be 0 (layer without bias).
    The one definition of BN folding in the course (used by
    :func:`utils.explainers.integrated_gradients.fold_batchnorm` and :mod:`utils.explainers.lrp`)."""
    channels = int(np.shape(kernel)[-1])
    if tuple(bn.moving_mean.shape) != (channels,):
        raise ValueError(f"BatchNormalization {bn.name!r} has {bn.moving_mean.shape} statistics "
                         f"for {channels} channels (it must normalise the channel axis)")
    gamma = np.asarray(bn.gamma.numpy()) if bn.scale else np.ones(channels)
    beta = np.asarray(bn.beta.numpy()) if bn.center else np.zeros(channels)
    mean = np.asarray(bn.moving_mean.numpy())
    var = np.asarray(bn.moving_variance.numpy())
    scale = gamma / np.sqrt(var + bn.epsilon)
    return (np.asarray(kernel) * scale,
            (np.asarray(bias) - mean) * scale + beta * np.ones(channels))


def predict_proba(model: keras.Model, X: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """Class probabilities for a batch of beats (validated: shape and finiteness)."""
    X = validate_beats(X, window=model.input_shape[1], leads=model.input_shape[2])
    return np.asarray(model.predict(X, batch_size=batch_size, verbose=0))
