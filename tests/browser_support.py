"""Headless Debian Chromium for the browser tests (tests/browser, tests/site).

Playwright would download a browser of its own (no internet here): it drives Debian's
Chromium (``CHROMIUM``, default ``/usr/bin/chromium``) with everything that phones home
switched off.
"""
from __future__ import annotations

import os

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]
