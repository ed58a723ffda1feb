"""The method registry: every explanation method declares once what it is (after alibi's
``DEFAULT_META_*`` in ``alibi/api/defaults.py``).

Each explainer is decorated where it is defined::

    @register("grad_cam", "Grad-CAM", kind="model-specific", models=("fcn", "lstm", "lstm_attention"),
              unit="steps")
    def grad_cam(model, X, targets, *, output="logits", layer=None, relu=True) -> Explanation:

and so declares its name (``Explanation.method``), its label (tables, figures), its scope
(local/global), its kind (model-agnostic/-specific), the architectures it applies to (builder
names of :mod:`utils.models.networks`: ``fcn``, ``lstm``, ``lstm_attention``, or ``multimodal``;
``any`` for every model), the outputs it explains, the unit of its ``native`` values, whether it
draws random numbers (then it takes ``seed``) and whether it reports a completeness gap. Its
default options are the keyword-only defaults of its signature, read here, so they are written
once. The decorated function checks the options it is given (an unknown name is a
``TypeError``, an output it does not explain a ``ValueError``) and records the options actually
used in ``Explanation.options``.

:data:`METHODS` holds the declarations; :mod:`utils.explainers.registry` imports every explainer
(so that all are declared) and answers which methods fit a model; the evaluation grid, week 4's
taxonomy table and the tests read it.
"""
from __future__ import annotations

import dataclasses
import functools
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from utils.core.explain import OUTPUTS, UNITS, Explanation

#: Architectures a method can apply to (builders of utils.models.networks, and the AAMI models).
ARCHITECTURES: tuple[str, ...] = ("fcn", "lstm", "lstm_attention", "multimodal")
#: What a method produces: a relevance map, or counterfactual beats (with their difference).
FAMILIES: tuple[str, ...] = ("attribution", "counterfactual")


@dataclass(frozen=True)
class Method:
    """What one explanation method is (see the module docstring)."""

    name: str
    label: str
    function: Callable = field(repr=False, compare=False)
    scope: str = "local"
    kind: str = "model-specific"
    family: str = "attribution"
    models: tuple[str, ...] = ("any",)
    outputs: tuple[str, ...] = OUTPUTS
    unit: str = "samples"
    stochastic: bool = False
    delta: bool = False
    single_pass: bool = True
    targets: str = "the class explained in each beat"
    defaults: dict[str, Any] = field(default_factory=dict, compare=False)

    def applies_to(self, architecture: str) -> bool:
        """Whether the method fits a model built by ``architecture``."""
        return "any" in self.models or architecture in self.models


#: name -> declaration, in the order the explainers were declared.
METHODS: dict[str, Method] = {}


def plain(value: Any) -> Any:
    """An option as a plain, printable value: arrays by dtype and shape, functions by name."""
    if isinstance(value, np.ndarray):
        return f"array{value.shape} {value.dtype}"
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)) and all(
            v is None or isinstance(v, (bool, int, float, str)) for v in value):
        return list(value)
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.random.Generator):
        return "np.random.Generator"
    return getattr(value, "__name__", type(value).__name__)


def register(name: str, label: str, *, scope: str = "local", kind: str = "model-specific",
             family: str = "attribution", models: tuple[str, ...] = ("any",),
             outputs: tuple[str, ...] = OUTPUTS, unit: str = "samples",
             stochastic: bool = False, delta: bool = False, single_pass: bool = True,
             targets: str = "the class explained in each beat") -> Callable:
    """Declare the explainer it decorates (see the module docstring)."""
    if scope not in ("local", "global") or kind not in ("model-agnostic", "model-specific") \
            or family not in FAMILIES or unit not in UNITS or not set(outputs) <= set(OUTPUTS) \
            or not set(models) <= set(ARCHITECTURES) | {"any"}:
        raise ValueError(f"invalid declaration of method {name!r}")

    def decorate(function: Callable) -> Callable:
        signature = inspect.signature(function)
        params = signature.parameters
        if list(params)[:3] != ["model", "X", "targets"] or "output" not in params:
            raise TypeError(f"{function.__name__} must be method(model, X, targets, *, "
                            f"output=..., **options)")
        if any(p.kind is p.VAR_KEYWORD for p in params.values()):
            raise TypeError(f"{function.__name__}: name every option (no **kwargs)")
        if stochastic and "seed" not in params:
            raise TypeError(f"{function.__name__} draws random numbers: it takes a seed")
        defaults = {k: p.default for k, p in params.items()
                    if p.kind is p.KEYWORD_ONLY and p.default is not p.empty}
        if name in METHODS:
            raise ValueError(f"method {name!r} is declared twice")

        @functools.wraps(function)
        def explainer(model, X, targets=None, **options) -> Explanation:
            unknown = sorted(set(options) - set(defaults)
                             - {k for k, p in params.items() if p.kind is p.KEYWORD_ONLY})
            if unknown:
                raise TypeError(f"{name}: unknown option(s) {unknown}; its options are "
                                f"{sorted(defaults)}")
            output = options.get("output", defaults.get("output", "logits"))
            if output not in outputs:
                raise ValueError(f"output must be one of {tuple(outputs)} for {name} (the "
                                 f"outputs it explains), got {output!r}")
            exp = function(model, X, targets, **options)
            used = {**defaults, **options, **exp.options}   # an explainer may resolve one
            return dataclasses.replace(exp, options={k: plain(v) for k, v in used.items()})

        method = Method(name=name, label=label, function=explainer, scope=scope, kind=kind,
                        family=family, models=tuple(models), outputs=tuple(outputs), unit=unit,
                        stochastic=stochastic, delta=delta, single_pass=single_pass,
                        targets=targets, defaults=defaults)
        METHODS[name] = method
        explainer.method = method
        return explainer

    return decorate
