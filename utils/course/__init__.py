"""Instructor and maintainer tooling (not course material: learners need not read it).

- ``grading``: nbgrader workflow behind ``make student`` and ``make grade``;
- ``sandbox``, ``answers``, ``checking``: ``make grade``'s bubblewrap sandbox, the plain-data
  answers a sandbox exports, and the trusted check of those answers; ``limits`` (memory,
  processes, file size of a sandbox), ``watchdog`` (a cell time limit that cannot be ignored),
  ``readback`` (reading the files a sandbox left without trusting them) and ``sanitize``
  (learner outputs and markdown made inert for the feedback and the formgrader);
- ``execute``: re-executes the notebooks in place (``make notebooks``);
- ``portable``: the notebooks under perturbed numerics (``make test-portable``);
- ``benchmark``: ``make bench``;
- ``seal``: checksums for committed results and model configs that predate them (maintainers);
- ``learner``: the learner's JupyterLab (``make lab``) and the instructor's (``make instructor``);
- ``layout``: where the weeks and the deep dives live (``notebooks/``, ``work/``, releases);
- ``exercises``: the exercise template (``exercise_passed``, ``forbid``) and its checker.
"""
