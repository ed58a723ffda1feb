"""The site's tooling lives in site/ (outside utils/): make its modules importable here."""
from __future__ import annotations

import sys
from pathlib import Path

SITE_DIR = Path(__file__).resolve().parents[2] / "site"
if str(SITE_DIR) not in sys.path:
    sys.path.insert(0, str(SITE_DIR))
