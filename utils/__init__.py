"""Shared helpers of the ECG explainability course.

Import the submodules you need, e.g. ``from utils import data, models, explain``:

* ``config`` (constants, lead names, wave windows), ``data``, ``models``, ``training``,
  ``evaluation``, ``plotting``, ``notebook`` - data, networks and figures;
* ``explain`` - the :class:`~utils.explain.Explanation` result and the pieces every explainer
  shares; ``perturb`` - replacing part of a beat; ``segments`` - beat segments as features;
* explainers, all called ``method(model, X, targets, *, output=..., **options)``: ``pfi``,
  ``lime_shap``, ``cam``, ``gradcam``, ``integrated_gradients``, ``attention``;
* ``baseline`` (an interpretable feature model) and ``relevance`` (from local to global).

Instructor tooling (grading, notebook execution, benchmark) lives in ``utils.course``.
"""
__all__ = ["attention", "baseline", "cam", "config", "data", "evaluation", "explain",
           "gradcam", "integrated_gradients", "lime_shap", "models", "perturb", "pfi",
           "plotting", "relevance", "segments", "training"]
