"""Course-wide constants: paths, the MIT-BIH beat classes and the beat-window geometry.

Every notebook and helper reads these values from here so that a change (say, a longer
window) propagates everywhere and invalidates the beat cache automatically.
"""
from __future__ import annotations

import os
from pathlib import Path

#: Repository root (the folder that holds ``utils/``, ``notebooks/`` and ``data/``).
ROOT: Path = Path(__file__).resolve().parent.parent
#: Git-ignored working data (database download, beat cache).
DATA_DIR: Path = ROOT / "data"
#: Committed trained models (weights + history + config).
MODELS_DIR: Path = DATA_DIR / "models"

#: Environment variable naming a local copy of the MIT-BIH Arrhythmia Database.
MITDB_ENV: str = "MITDB_DIR"
#: PhysioNet database name used by ``wfdb`` for downloads.
PHYSIONET_DB: str = "mitdb"

#: Sampling frequency of every MIT-BIH record (Hz).
FS: int = 360
#: The 8 beat classes of the course, in the order used for labels 0..7.
CLASSES: tuple[str, ...] = ("N", "L", "R", "V", "A", "F", "f", "/")
#: Human-readable class names (AAMI / PhysioNet wording).
CLASS_NAMES: dict[str, str] = {
    "N": "Normal",
    "L": "Left bundle branch block",
    "R": "Right bundle branch block",
    "V": "Premature ventricular contraction",
    "A": "Atrial premature beat",
    "F": "Fusion of ventricular and normal",
    "f": "Fusion of paced and normal",
    "/": "Paced",
}
#: Published annotation totals of the whole database for the 8 classes (PhysioNet).
PUBLISHED_TOTALS: dict[str, int] = {
    "N": 75052, "L": 8075, "R": 7259, "V": 7130, "/": 7028, "A": 2546, "f": 982, "F": 803,
}

#: Records are decimated by this factor before beats are cut (360 Hz -> 180 Hz): the ECG's
#: diagnostic content lies below 40 Hz, and halving the rate doubles the context a model sees
#: for the same cost.
DECIMATE: int = 2
#: Sampling frequency of the beat windows (Hz).
BEAT_FS: int = FS // DECIMATE
#: Beat window length in samples (256 samples = 1.42 s at 180 Hz): the annotated beat and,
#: at usual heart rates, the R peaks of its neighbours, so RR intervals (prematurity) are visible.
WINDOW: int = 256
#: Samples kept before the annotated R peak (112 samples = 0.62 s).
R_OFFSET: int = 112

#: Canonical lead order: channel 0 is MLII where the record has it (all but 102 and 104,
#: where the upper lead V5 takes its place), channel 1 is the other (chest) lead.
LEAD_ROLES: tuple[str, ...] = ("MLII (V5 in 102, 104)", "chest lead (V1/V2/V4/V5)")

SEED: int = 42


def mitdb_env_dir() -> Path | None:
    """Return the directory named by ``$MITDB_DIR`` (or ``None`` when unset/empty)."""
    value = os.environ.get(MITDB_ENV, "").strip()
    return Path(value).expanduser() if value else None
