"""Where the course lives online: the one place to set before publishing the site.

Every link the site, the Colab badges and the README badges make is built from these values.
``OWNER/REPO`` is a placeholder: set ``COURSE_REPOSITORY`` (``owner/name`` on GitHub),
``COURSE_BRANCH`` and ``COURSE_SITE_URL`` in the environment of ``make site`` / ``make release``,
or edit the defaults here (and the README badges, see docs/SITE.md).

Colab opens the **learner release** (``make release``: no solutions, no hidden tests), never
the course's own ``notebooks/``, which hold the solutions. The release is published as the
branch ``COURSE_RELEASE_BRANCH`` (default ``learner``) of ``COURSE_RELEASE_REPOSITORY``
(default: the course repository); docs/SITE.md says how to push it there.
"""
from __future__ import annotations

import os

#: ``owner/name`` of the course repository on GitHub (Colab and Binder open it from there).
REPOSITORY: str = os.environ.get("COURSE_REPOSITORY", "OWNER/REPO")
#: The branch that Colab and Binder open.
BRANCH: str = os.environ.get("COURSE_BRANCH", "main")
#: Address of the published site (GitHub Pages: ``https://OWNER.github.io/REPO/``).
SITE_URL: str = os.environ.get("COURSE_SITE_URL", "https://OWNER.github.io/REPO/")
#: Where the learner release is published: Colab badges and the Colab set-up cell open it.
RELEASE_REPOSITORY: str = os.environ.get("COURSE_RELEASE_REPOSITORY", REPOSITORY)
#: The branch of :data:`RELEASE_REPOSITORY` that holds the learner release.
RELEASE_BRANCH: str = os.environ.get("COURSE_RELEASE_BRANCH", "learner")
#: Python that Colab must run: the course's pins (numpy<2, TensorFlow 2.17.1) need 3.10-3.12.
SUPPORTED_PYTHON: tuple[tuple[int, int], tuple[int, int]] = ((3, 10), (3, 12))


def github_url(path: str = "") -> str:
    """The page of ``path`` (a file of the repository) on GitHub, on :data:`BRANCH`."""
    base = f"https://github.com/{REPOSITORY}"
    return f"{base}/blob/{BRANCH}/{path}" if path else base


def release_target(repository: str | None = None, branch: str | None = None) -> tuple[str, str]:
    """``(repository, branch)`` of the published learner release (defaults: the settings).

    Raises ``ValueError`` when it is the course repository's own branch: Colab would then open
    the instructor notebooks, solutions and hidden tests included.
    """
    target = (repository or RELEASE_REPOSITORY, branch or RELEASE_BRANCH)
    if target == (REPOSITORY, BRANCH):
        raise ValueError(
            f"the learner release must be published apart from the course sources: "
            f"{target[0]}@{target[1]} is the course repository's branch, whose notebooks/ hold "
            "the solutions (set COURSE_RELEASE_BRANCH or COURSE_RELEASE_REPOSITORY)")
    return target


def colab_url(path: str, repository: str | None = None, branch: str | None = None) -> str:
    """The Colab address that opens the notebook ``path`` of the learner release
    (``notebooks/<week>.ipynb`` there) from GitHub: never the instructor version."""
    repository, branch = release_target(repository, branch)
    return f"https://colab.research.google.com/github/{repository}/blob/{branch}/{path}"


def binder_url(path: str | None = None) -> str:
    """The mybinder.org address of the repository, opening JupyterLab on ``path`` if given."""
    url = f"https://mybinder.org/v2/gh/{REPOSITORY}/{BRANCH}"
    return f"{url}?urlpath=lab/tree/{path}" if path else url
