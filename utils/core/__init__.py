"""The ground floor: the :class:`~utils.core.explain.Explanation` type and the calling contract of
every explainer, beat shapes, segments and perturbations, course constants, and the store of
slow results. Read by everyone; imports nothing else of ``utils``.
"""
