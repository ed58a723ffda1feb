"""Class activation maps (CAM, Zhou et al. 2016) of the global-average-pooling FCN.

For a network ``features -> GAP -> Dense`` the class score (logit) of class ``c`` is

    z_c = b_c + sum_k w_kc * mean_t A_k(t) = b_c + mean_t CAM_c(t),  CAM_c(t) = sum_k w_kc A_k(t)

where ``A`` (time, channels) are the feature maps of the last convolution block (layer
``conv_last``) and ``w``/``b`` the weights of the logits Dense layer. The CAM therefore needs
no gradients and decomposes the class score exactly: :func:`class_activation_map` reports the
gap of that identity per beat in ``Explanation.delta``.

Written by hand (a few lines of linear algebra) because none of the pinned libraries (alibi,
shap, lime) implements CAM; Grad-CAM lives in ``utils/explainers/gradcam.py``.
"""
from __future__ import annotations

import numpy as np

from utils.core.config import LOGITS_LAYER
from utils.core.explain import (Explanation, check_beats, check_output, check_targets,
                                completeness_gap, predict_scores, require_layer)
from utils.core.methods import register

#: The last convolution block of :func:`utils.models.networks.build_fcn` (feature maps of CAM/Grad-CAM).
FEATURE_LAYER = "conv_last"


def feature_maps(model, X: np.ndarray, layer: str = FEATURE_LAYER, batch_size: int = 512
                 ) -> np.ndarray:
    """Activations of ``layer`` (default the last convolution block): (n, time, channels)."""
    import keras

    X = check_beats(model, X)
    out = require_layer(model, layer, "feature_maps").output
    extractor = keras.Model(model.inputs, out)
    return np.asarray(extractor.predict(X, batch_size=batch_size, verbose=0), dtype=np.float64)


@register("cam", "CAM", models=("fcn",), outputs=("logits",), unit="steps", delta=True)
def class_activation_map(model, X: np.ndarray, targets, *, output: str = "logits"
                         ) -> Explanation:
    """Exact CAM of the GAP FCN for class ``targets``: one value per sample, shared by the leads.

    ``native`` (n, window) is the CAM itself (positive values push the class score up); it
    averages to the logit minus the bias, so ``delta`` = mean CAM + bias - logit (float
    rounding only). ``values`` copies the map to each lead (``exp.per_time("mean")`` gives it
    back). Only ``output="logits"``: the probability is not linear in the feature maps.
    """
    check_output(output)   # the registry admits only "logits": CAM decomposes the class score
    require_layer(model, FEATURE_LAYER, "CAM (a GAP network, utils.models.networks.build_fcn)")
    W, bias = require_layer(model, LOGITS_LAYER, "CAM").get_weights()   # W: (channels, classes)
    X = check_beats(model, X)
    t = check_targets(targets, len(X), W.shape[1])
    maps = feature_maps(model, X)
    if maps.ndim != 3 or maps.shape[1] != X.shape[1]:
        raise ValueError(f"layer {FEATURE_LAYER!r} gives maps of shape {maps.shape[1:]}; CAM "
                         f"needs (time = {X.shape[1]}, channels) (padding='same')")
    cam = np.einsum("ntk,kn->nt", maps, np.asarray(W, dtype=np.float64)[:, t])
    logits = predict_scores(model, X, "logits")[np.arange(len(X)), t]
    delta = completeness_gap(cam / cam.shape[1], logits - bias[t])
    return Explanation(np.repeat(cam[:, :, None], X.shape[2], axis=2), t, "cam", output,
                       native=cam, unit="steps", delta=delta, score=logits,
                       reference=np.asarray(bias, np.float64)[t])
