"""Headless Debian Chromium for the browser tests (tests/browser, tests/site).

Playwright would download a browser of its own (no internet here): it drives Debian's
Chromium (``CHROMIUM``, default ``/usr/bin/chromium``) with everything that phones home
switched off.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]


@contextlib.contextmanager
def chromium_browser(make_target: str):
    """Debian's Chromium driven by Playwright (fails with the fix when it is missing)."""
    import pytest
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).is_file():
        pytest.fail(f"Chromium not found at {CHROMIUM}: run `make {make_target}`, which "
                    "installs it (apt-get install chromium), or set CHROMIUM=/path/to/chromium")
    with sync_playwright() as pw:
        instance = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                      headless=True)
        try:
            yield instance
        finally:
            instance.close()
