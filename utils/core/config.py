"""Course-wide constants: paths, the MIT-BIH beat classes and the beat-window geometry.

Every notebook and helper reads these values from here so that a change (say, a longer
window) propagates everywhere and invalidates the beat cache automatically.
"""
from __future__ import annotations

import os
from pathlib import Path

#: Repository root (the folder that holds ``utils/``, ``notebooks/`` and ``data/``).
ROOT: Path = Path(__file__).resolve().parents[2]
#: Git-ignored working data (database download, beat cache).
DATA_DIR: Path = ROOT / "data"
#: Committed trained models (weights + history + config).
MODELS_DIR: Path = DATA_DIR / "models"

#: Environment variable naming a local copy of the MIT-BIH Arrhythmia Database.
MITDB_ENV: str = "MITDB_DIR"
#: PhysioNet database name used by ``wfdb`` for downloads.
PHYSIONET_DB: str = "mitdb"

#: Name of the class-score layer of every course classifier (the softmax follows it): the
#: networks name it, the explainers read it.
LOGITS_LAYER: str = "logits"

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


#: Display names of the two leads (channel order of :data:`LEAD_ROLES`), used by every figure
#: and table.
LEAD_NAMES: tuple[str, ...] = ("lead 0 (MLII)", "lead 1 (chest)")
#: Short lead names (the y label of each lead's own axis, table columns).
LEAD_SHORT: tuple[str, ...] = ("MLII", "chest")

#: Parts of a beat window in seconds from the annotated R peak, in order; ``None`` = window
#: edge. Fixed textbook times (P wave + PR before -0.06 s, QRS +-0.06 s, ST segment + T wave to
#: +0.45 s): approximate, since the true wave boundaries vary with heart rate and beat type.
WAVE_WINDOWS: dict[str, tuple[float | None, float | None]] = {
    "before P": (None, -0.30),
    "P wave + PR": (-0.30, -0.06),
    "QRS": (-0.06, 0.06),
    "ST-T": (0.06, 0.45),
    "after T": (0.45, None),
}


def wave_windows(fs: int = BEAT_FS, r_offset: int = R_OFFSET, window: int = WINDOW,
                 windows: dict[str, tuple[float | None, float | None]] | None = None
                 ) -> dict[str, tuple[int, int]]:
    """The ECG wave windows as sample ranges ``{name: (start, stop)}`` of a beat window: the
    one entry point for "where is the QRS" (default :data:`WAVE_WINDOWS`; pass ``windows``,
    e.g. measured from the data, to use other boundaries). Clipped to ``[0, window]``."""
    windows = WAVE_WINDOWS if windows is None else windows
    if fs <= 0 or window <= 0 or not 0 <= r_offset < window:
        raise ValueError(f"bad beat geometry: fs={fs}, window={window}, r_offset={r_offset}")

    def at(seconds: float | None, edge: int) -> int:
        if seconds is None:
            return edge
        return int(min(max(round(r_offset + seconds * fs), 0), window))

    out = {}
    for name, (t0, t1) in windows.items():
        a, b = at(t0, 0), at(t1, window)
        if b <= a:
            raise ValueError(f"wave window {name!r} ({t0}, {t1}) s is empty in this beat")
        out[name] = (a, b)
    return out
