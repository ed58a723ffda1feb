"""Class activation maps (CAM, Zhou et al. 2016) of the global-average-pooling FCN.

For a network ``features -> GAP -> Dense`` the class score (logit) of class ``c`` is

    z_c = b_c + sum_k w_kc * mean_t A_k(t) = b_c + mean_t CAM_c(t),  CAM_c(t) = sum_k w_kc A_k(t)

where ``A`` (time, channels) are the feature maps of the last convolution block (layer
``conv_last``) and ``w``/``b`` the weights of the ``logits`` Dense layer. The CAM therefore needs
no gradients and decomposes the class score exactly; :func:`cam_score_decomposition` returns
both sides of that identity so that it can be checked numerically.

Written by hand (a few lines of linear algebra) because none of the pinned libraries (alibi,
shap, lime) implements CAM; Grad-CAM lives in ``utils/gradcam.py``.
"""
from __future__ import annotations

import numpy as np

from .data import format_targets

FEATURE_LAYER = "conv_last"
LOGITS_LAYER = "logits"


def _check_gap_model(model) -> None:
    names = {layer.name for layer in model.layers}
    missing = {FEATURE_LAYER, LOGITS_LAYER} - names
    if missing:
        raise ValueError(f"CAM needs a GAP network with layers {FEATURE_LAYER!r} and "
                         f"{LOGITS_LAYER!r} (utils.models.build_fcn); missing {sorted(missing)}")


def feature_maps(model, X: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """Activations of the last convolution block ``conv_last``: (n, time, channels)."""
    import keras

    from .data import validate_beats

    _check_gap_model(model)
    X = validate_beats(X, window=model.input_shape[1], leads=model.input_shape[2])
    extractor = keras.Model(model.inputs, model.get_layer(FEATURE_LAYER).output)
    return np.asarray(extractor.predict(X, batch_size=batch_size, verbose=0), dtype=np.float64)


def _cam_from_maps(model, maps: np.ndarray, targets: np.ndarray) -> np.ndarray:
    W, _ = model.get_layer(LOGITS_LAYER).get_weights()  # W: (channels, classes)
    return np.einsum("ntk,kn->nt", maps, np.asarray(W, dtype=np.float64)[:, targets])


def class_activation_map(model, X: np.ndarray, targets: int | np.ndarray) -> np.ndarray:
    """Exact CAM of the GAP FCN for class ``targets``: (n, window), one value per sample.

    Positive values push the logit of the target class up, negative values down. With
    ``padding='same'`` the feature maps have the input length, so no upsampling is needed.
    Not normalised and not ReLU'd (so that it averages to the logit minus the bias).
    """
    maps = feature_maps(model, X)
    n_classes = model.get_layer(LOGITS_LAYER).get_weights()[0].shape[1]
    t = format_targets(targets, len(maps), n_classes)
    cam = _cam_from_maps(model, maps, t)
    if cam.shape[1] != model.input_shape[1]:
        raise ValueError(f"feature maps have {cam.shape[1]} steps, the input "
                         f"{model.input_shape[1]}: CAM needs padding='same'")
    return cam


def cam_score_decomposition(model, X: np.ndarray, targets: int | np.ndarray
                            ) -> tuple[np.ndarray, np.ndarray]:
    """Both sides of ``logit_c = mean_t CAM_c(t) + b_c`` for each beat: ``(cam_mean_plus_bias,
    logits)``, each (n,). ``logits`` comes from the model's own ``logits`` layer, so the
    difference measures how exactly the CAM explains the score (float rounding only)."""
    import keras

    from .data import validate_beats

    _check_gap_model(model)
    X = validate_beats(X, window=model.input_shape[1], leads=model.input_shape[2])
    cam = class_activation_map(model, X, targets)
    n_classes = model.get_layer(LOGITS_LAYER).get_weights()[0].shape[1]
    t = format_targets(targets, len(X), n_classes)
    bias = model.get_layer(LOGITS_LAYER).get_weights()[1]
    logit_model = keras.Model(model.inputs, model.get_layer(LOGITS_LAYER).output)
    logits = np.asarray(logit_model.predict(X, batch_size=512, verbose=0), dtype=np.float64)
    return cam.mean(axis=1) + bias[t], logits[np.arange(len(X)), t]
