"""One module per explanation method, each ``method(model, X, targets, *, output=...) ->
Explanation`` (see :mod:`utils.core.explain`). Learners read these; they import ``core``,
``data``, ``models`` and ``assess`` (never a study).
"""
