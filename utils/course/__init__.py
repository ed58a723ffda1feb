"""Instructor and maintainer tooling (not course material: learners need not read it).

- ``grading``: nbgrader workflow behind ``make student`` and ``make grade``;
- ``execute``: re-executes the notebooks in place (``make notebooks``);
- ``benchmark``: ``make bench``;
- ``learner``: the learner's JupyterLab (``make lab``) and the instructor's (``make instructor``);
- ``exercises``: the exercise template (``exercise_passed``, ``forbid``) and its checker.
"""
