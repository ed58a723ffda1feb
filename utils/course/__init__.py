"""Instructor and maintainer tooling (not course material: learners need not read it).

- ``grading``: nbgrader workflow behind ``make student`` and ``make grade``;
- ``execute``: re-executes the notebooks in place (``make notebooks``);
- ``benchmark``: ``make bench``.
"""
