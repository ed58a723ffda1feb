"""Every explanation method of the course, as declared where it is defined
(:func:`utils.core.methods.register`), and which of them fit a course model.

    >>> from utils.explainers.registry import METHODS, methods_for, taxonomy
    >>> [m.label for m in methods_for("lstm_holdout")]
    ['PFI', ..., 'Grad-CAM', ...]

Importing this module imports every explainer, so :data:`METHODS` is complete. How to add a
method: ``docs/LAYOUT.md``.
"""
from __future__ import annotations

from utils.core import methods as _declared
from utils.core.methods import Method
from utils.explainers import (attention, cam, counterfactual, gradcam,  # noqa: F401 (declare)
                              integrated_gradients, lime_shap, lrp, pfi, saliency)
from utils.models import multimodal, training

#: The order the course teaches the methods in (tables and figures list them so).
ORDER: tuple[str, ...] = (
    "pfi", "pfi_alibi", "lime", "kernel_shap", "gradient_shap", "cam", "grad_cam",
    "integrated_gradients", "integrated_gradients_batched", "integrated_gradients_checked",
    "lrp", "saliency", "gradient_x_input", "attention", "nearest_unlike_neighbour",
    "native_guide", "wachter")

#: name -> :class:`~utils.core.methods.Method`, every method of the course in :data:`ORDER`.
METHODS: dict[str, Method] = {name: _declared.METHODS[name] for name in ORDER}
if set(METHODS) != set(_declared.METHODS):
    raise RuntimeError("utils.explainers.registry.ORDER must list every declared method: "
                       f"{sorted(set(_declared.METHODS) ^ set(METHODS))}")


def architecture(model_name: str) -> str:
    """The architecture of a course model by its name (``"fcn"``, ``"lstm"``,
    ``"lstm_attention"``, ``"multimodal"``), from the specs it is trained from."""
    if model_name in training.MODEL_SPECS:
        return training.MODEL_SPECS[model_name].builder
    if model_name in multimodal.SPECS:
        return "multimodal"
    raise ValueError(f"unknown course model {model_name!r}")


def methods_for(model_name: str, *, family: str | None = None, scope: str | None = None,
                single_pass: bool | None = None) -> list[Method]:
    """The methods that fit course model ``model_name``, in :data:`ORDER`; optionally only one
    ``family`` (``"attribution"``/``"counterfactual"``), ``scope`` or cost (``single_pass``)."""
    arch = architecture(model_name)
    return [m for m in METHODS.values() if m.applies_to(arch)
            and (family is None or m.family == family)
            and (scope is None or m.scope == scope)
            and (single_pass is None or m.single_pass == single_pass)]


def taxonomy():
    """The taxonomy table of week 4: one row per method (label), with its scope, kind, family,
    the models it fits, the outputs it explains, its native unit, whether it is random and
    whether it reports a completeness gap (``delta``)."""
    import pandas as pd  # lazy: pandas is needed only for this table

    rows = [{"method": m.label, "scope": m.scope, "kind": m.kind, "family": m.family,
             "models": ", ".join(m.models), "outputs": ", ".join(m.outputs), "unit": m.unit,
             "random": "seed" if m.stochastic else "no", "delta": "yes" if m.delta else "no",
             "targets": m.targets}
            for m in METHODS.values()]
    return pd.DataFrame(rows).set_index("method")
