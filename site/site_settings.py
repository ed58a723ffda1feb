"""Where the course lives online: the one place to set before publishing the site.

Every link the site, the Colab badges and the README badges make is built from these values.
``OWNER/REPO`` is a placeholder: set ``COURSE_REPOSITORY`` (``owner/name`` on GitHub),
``COURSE_BRANCH`` and ``COURSE_SITE_URL`` in the environment of ``make site``, or edit the
defaults here (and the README badges, see docs/SITE.md).
"""
from __future__ import annotations

import os

#: ``owner/name`` of the course repository on GitHub (Colab and Binder open it from there).
REPOSITORY: str = os.environ.get("COURSE_REPOSITORY", "OWNER/REPO")
#: The branch that Colab and Binder open.
BRANCH: str = os.environ.get("COURSE_BRANCH", "main")
#: Address of the published site (GitHub Pages: ``https://OWNER.github.io/REPO/``).
SITE_URL: str = os.environ.get("COURSE_SITE_URL", "https://OWNER.github.io/REPO/")
#: Python that Colab must run: the course's pins (numpy<2, TensorFlow 2.17.1) need 3.10-3.12.
SUPPORTED_PYTHON: tuple[tuple[int, int], tuple[int, int]] = ((3, 10), (3, 12))


def github_url(path: str = "") -> str:
    """The page of ``path`` (a file of the repository) on GitHub, on :data:`BRANCH`."""
    base = f"https://github.com/{REPOSITORY}"
    return f"{base}/blob/{BRANCH}/{path}" if path else base


def colab_url(path: str) -> str:
    """The Colab address that opens the repository's notebook ``path`` from GitHub."""
    return f"https://colab.research.google.com/github/{REPOSITORY}/blob/{BRANCH}/{path}"


def binder_url(path: str | None = None) -> str:
    """The mybinder.org address of the repository, opening JupyterLab on ``path`` if given."""
    url = f"https://mybinder.org/v2/gh/{REPOSITORY}/{BRANCH}"
    return f"{url}?urlpath=lab/tree/{path}" if path else url
