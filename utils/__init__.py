"""Shared helpers of the ECG explainability course (data, models, explainers, plotting).

Import the submodules you need, e.g. ``from utils import data, models, explainers``.
"""
__all__ = ["config", "data", "evaluation", "models", "training"]
