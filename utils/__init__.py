"""Shared helpers of the ECG explainability course, one subpackage per concern.

Import what you use, e.g. ``from utils.models.catalog import load_trained``. From the ground up
(a package imports only the ones above it in this list; ``docs/LAYOUT.md`` has the whole map):

* ``core`` - the :class:`~utils.core.explain.Explanation` result and calling contract, beat
  shapes, segments, perturbations, constants (``core.config``), stored results;
* ``data`` - MIT-BIH beats, sampling by record, rhythm features, AAMI classes, clinical data;
* ``models`` - networks, the feature baseline, training, the multimodal and protocol models, and
  ``models.catalog`` (any trained model by name);
* ``assess`` - judging explanations: faithfulness, sanity, stability, plausibility, relevance;
* ``explainers`` - one module per method: ``pfi``, ``lime_shap``, ``cam``, ``gradcam``,
  ``saliency``, ``integrated_gradients``, ``lrp``, ``attention``, ``counterfactual``;
* ``studies`` - the analyses behind stored results (evaluation grid, modality folds, ...);
* ``course`` - instructor and maintainer tooling (grading, sandbox, release, benchmark);
  learners need not read it.

Beside them, ``plotting`` (figures; imports only ``core``) and ``notebook`` (the first call of
every notebook).
"""
