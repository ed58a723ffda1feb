"""Judging explanations and relevance maps: faithfulness, sanity, stability, plausibility
(``evaluate``), local-to-global aggregation (``relevance``), wave windows, modality shares,
counterfactual metrics. They take an :class:`~utils.core.explain.Explanation` or its values, and
import only ``core``, ``data`` and ``models``.
"""
