"""Age, sex and medications of the MIT-BIH patients, and tests of per-patient values against them.

Each MIT-BIH header ends with free-text comments (``wfdb.rdheader(...).comments``)::

    69 M 1085 1629 x1          <- age, sex, then tape/recorder numbers (not documented; kept raw)
    Aldomet, Inderal           <- medications ("None" if none)
    The PVCs are uniform. ...  <- notes, possibly several lines

An age of ``-1`` or ``?`` means unknown (records 103 and 219), as does a medication line
``?``/``unknown``/``Medications unknown``; a second line that reads like prose (a sentence) is
taken as a note and the medications as unknown. Records 201 and 202 come from the same patient
(same analog tape), so the database holds 47 patients (:data:`SAME_PATIENT`).

Medications are grouped into the classes a clinician would use (:data:`MEDICATIONS`, one row per
name found in the headers; Vaughan Williams classes for antiarrhythmics). ``"Diapres"`` is not
a brand we could identify with certainty and is kept in ``"other"``. No patient takes a
calcium-channel blocker, so that class is empty (listed so that the table says so).

:func:`association_tests` tests per-patient values (e.g. a modality share) against age
(Spearman), sex and every medication class (Mann-Whitney U) with effect sizes and the
Benjamini-Hochberg correction (``scipy.stats.false_discovery_control``; statsmodels is not
installed). With 47 patients, 3-20 per medication class, and medication confounded with the
arrhythmia that it treats (digoxin and class IA drugs go with atrial fibrillation and PVCs),
these tests can flag an association but never a cause.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from utils.core import config
from utils.data.mitdb import RECORDS

#: Medication classes in display order (Vaughan Williams classes for antiarrhythmics).
MEDICATION_CLASSES: tuple[str, ...] = (
    "beta_blocker", "cardiac_glycoside", "antiarrhythmic_IA", "antiarrhythmic_IB",
    "calcium_channel_blocker", "diuretic", "nitrate", "central_antihypertensive",
    "anticoagulant", "other",
)

#: Name in the headers -> (generic name, class). The course's documented grouping.
MEDICATIONS: dict[str, tuple[str, str]] = {
    "inderal": ("propranolol", "beta_blocker"),                       # also Vaughan Williams II
    "digoxin": ("digoxin", "cardiac_glycoside"),
    "pronestyl": ("procainamide", "antiarrhythmic_IA"),
    "quinidine": ("quinidine", "antiarrhythmic_IA"),
    "quinaglute": ("quinidine gluconate", "antiarrhythmic_IA"),
    "norpace": ("disopyramide", "antiarrhythmic_IA"),
    "dilantin": ("phenytoin", "antiarrhythmic_IB"),                   # anticonvulsant, class IB
    "lasix": ("furosemide", "diuretic"),                              # loop diuretic
    "hydrochlorthiazide": ("hydrochlorothiazide", "diuretic"),        # spelling of the headers
    "hydrochlorothiazide": ("hydrochlorothiazide", "diuretic"),
    "hydrodiuril": ("hydrochlorothiazide", "diuretic"),
    "hygroton": ("chlorthalidone", "diuretic"),
    "isordil": ("isosorbide dinitrate", "nitrate"),
    "nitropaste": ("nitroglycerin ointment", "nitrate"),
    "aldomet": ("methyldopa", "central_antihypertensive"),
    "coumadin": ("warfarin", "anticoagulant"),
    "heparin": ("heparin", "anticoagulant"),
    "kcl": ("potassium chloride", "other"),                           # electrolyte supplement
    "xyloprim": ("allopurinol", "other"),                             # gout
    "diapres": ("unidentified brand", "other"),
}

#: Records of one patient: record -> the record that represents the patient.
SAME_PATIENT: dict[str, str] = {"202": "201"}

_UNKNOWN = re.compile(r"^(\?+|unknown|n/?a|medications?:?\s*(unknown|\?+|n/?a))$", re.I)
_NONE = re.compile(r"^(none|no medications?|medications?:?\s*none)$", re.I)


@dataclass(frozen=True)
class PatientInfo:
    """What one header says about its patient. ``None`` means unknown; ``medications`` is an
    empty tuple for "None" (no medication)."""

    age: int | None
    sex: str | None
    medications: tuple[str, ...] | None
    notes: str = ""
    raw: tuple[str, ...] = field(default=(), repr=False)

    @property
    def classes(self) -> frozenset[str] | None:
        """Medication classes (``None`` when the medications are unknown)."""
        if self.medications is None:
            return None
        return frozenset(medication_class(m) for m in self.medications)


def medication_class(name: str) -> str:
    """Class of one medication name as written in a header (``"other"`` if not in the table)."""
    return MEDICATIONS.get(name.strip().lower(), ("", "other"))[1]


def _parse_age_sex(line: str) -> tuple[int | None, str | None]:
    tokens = line.replace(",", " ").split()
    age = sex = None
    if tokens:
        try:
            value = int(tokens[0])
            age = value if 0 <= value < 130 else None
        except ValueError:
            age = None
    if len(tokens) > 1 and tokens[1].upper() in ("M", "F"):
        sex = tokens[1].upper()
    return age, sex


def _looks_like_prose(line: str) -> bool:
    items = [s.strip() for s in line.split(",")]
    return line.rstrip().endswith(".") or any(len(s.split()) > 3 for s in items)


def parse_comments(comments: Sequence[str]) -> PatientInfo:
    """Parse the comment lines of one MIT-BIH header (see the module docstring).
    Line 1: age and sex. Line 2 (and following lines while a line ends with a comma):
    comma-separated medications, ``None``, or an unknown marker. The rest: notes."""
    lines = [c.strip().lstrip("#").strip() for c in comments]
    lines = [c for c in lines if c]
    if not lines:
        return PatientInfo(None, None, None, "", tuple(comments))
    age, sex = _parse_age_sex(lines[0])
    rest = lines[1:]
    medications: tuple[str, ...] | None = None
    if rest and not _looks_like_prose(rest[0]):
        med_text = rest.pop(0)
        while med_text.endswith(",") and rest:
            med_text += " " + rest.pop(0)
        med_text = med_text.strip()
        if _UNKNOWN.match(med_text):
            medications = None
        elif _NONE.match(med_text):
            medications = ()
        else:
            med_text = re.sub(r"^medications?\s*:\s*", "", med_text, flags=re.I)
            medications = tuple(m.strip() for m in med_text.split(",") if m.strip())
    return PatientInfo(age, sex, medications, " ".join(rest), tuple(comments))


def read_patient_info(record: str, db_dir: Path | str | None = None) -> PatientInfo:
    """Parse the header comments of one record (``wfdb.rdheader``); ``db_dir`` defaults to
    ``$MITDB_DIR`` (read only, no download)."""
    import wfdb

    directory = Path(db_dir) if db_dir is not None else config.mitdb_env_dir()
    if directory is None:
        raise ValueError("no database directory: pass db_dir or set $MITDB_DIR")
    header = wfdb.rdheader(str(directory / str(record)))
    return parse_comments(header.comments or [])


def clinical_table(records: Sequence[str] | None = None, db_dir: Path | str | None = None):
    """One row per record: ``record``, ``patient`` (201 for 202), ``age``, ``sex``,
    ``medications`` (names joined by ", ", "" for none, NaN if unknown), ``unknown_meds``, one
    boolean column per :data:`MEDICATION_CLASSES` entry (``<NA>`` when unknown) and
    ``unlisted`` (names not in :data:`MEDICATIONS`). A pandas DataFrame indexed by record."""
    import pandas as pd

    rows = []
    for rec in (RECORDS if records is None else records):
        info = read_patient_info(rec, db_dir)
        row = {"record": str(rec), "patient": SAME_PATIENT.get(str(rec), str(rec)),
               "age": info.age, "sex": info.sex,
               "medications": None if info.medications is None else ", ".join(info.medications),
               "unknown_meds": info.medications is None,
               "unlisted": ", ".join(m for m in (info.medications or ())
                                     if m.lower() not in MEDICATIONS)}
        for c in MEDICATION_CLASSES:
            row[c] = pd.NA if info.classes is None else (c in info.classes)
        rows.append(row)
    table = pd.DataFrame(rows).set_index("record")
    table["age"] = table["age"].astype("Int64")
    for c in MEDICATION_CLASSES:
        table[c] = table[c].astype("boolean")
    return table


def medication_table():
    """The documented grouping as a DataFrame: header name, generic name, class."""
    import pandas as pd

    return pd.DataFrame([{"name": k, "generic": g, "class": c} for k, (g, c) in
                         MEDICATIONS.items()]).sort_values(["class", "name"]).reset_index(drop=True)


# ------------------------------------------------------------------------------------------------
# Statistics
# ------------------------------------------------------------------------------------------------
def benjamini_hochberg(p_values) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (``scipy.stats.false_discovery_control``, method
    ``"bh"``); NaN entries (tests not run) are left out of the family and stay NaN."""
    from scipy.stats import false_discovery_control

    p = np.asarray(p_values, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        out[ok] = false_discovery_control(p[ok], method="bh")
    return out


def rank_biserial(x, y) -> tuple[float, float]:
    """Mann-Whitney U test of ``x`` against ``y`` (two-sided, scipy) and the rank-biserial
    correlation ``r = 2 U_x / (n_x n_y) - 1`` in [-1, 1] (positive: ``x`` tends to be larger).
    Returns ``(r, p)``."""
    from scipy.stats import mannwhitneyu

    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    res = mannwhitneyu(x, y, alternative="two-sided")
    return 2 * float(res.statistic) / (len(x) * len(y)) - 1, float(res.pvalue)


def association_tests(values, table=None, *, min_group: int = 3, by_patient: bool = True):
    """Test per-record values against age, sex and each medication class.
    ``values``: a pandas Series or DataFrame indexed by record (one column per outcome, e.g.
    the share of relevance of each modality). ``table``: :func:`clinical_table` (read from the
    headers when ``None``). With ``by_patient`` the records of one patient (201/202) are
    averaged first, so each patient counts once.

    Tests: age - Spearman's rho; sex - Mann-Whitney U, F vs M, rank-biserial r; each medication
    class - Mann-Whitney U, with vs without, rank-biserial r. Patients with the variable unknown
    are left out. A test with fewer than ``min_group`` patients in a group is not run (p NaN,
    ``note`` says why). ``p_bh``: Benjamini-Hochberg over every test in the returned table.

    Returns a tidy DataFrame: outcome, variable, test, n, n_group (patients with the class /
    F), effect, effect_size, p, p_bh, note.
    """
    import pandas as pd
    from scipy.stats import spearmanr

    if table is None:
        table = clinical_table()
    frame = values.to_frame() if isinstance(values, pd.Series) else pd.DataFrame(values)
    frame.index = frame.index.astype(str)
    missing = sorted(set(frame.index) - set(table.index))
    if missing:
        raise ValueError(f"values for records without a header row: {missing}")
    info = table.loc[frame.index]
    if by_patient:
        frame = frame.groupby(info["patient"].values).mean()
        info = info.groupby("patient").first().loc[frame.index]
    rows = []
    for outcome in frame.columns:
        v = frame[outcome].astype(float)
        known = v.notna() & info["age"].notna()
        row = {"outcome": outcome, "variable": "age", "test": "Spearman",
               "n": int(known.sum()), "n_group": np.nan, "effect": "rho"}
        if known.sum() >= max(min_group, 3):
            rho, p = spearmanr(info["age"][known].astype(float), v[known])
            rows.append({**row, "effect_size": float(rho), "p": float(p), "note": ""})
        else:
            rows.append({**row, "effect_size": np.nan, "p": np.nan, "note": "too few patients"})
        groups = [("sex", info["sex"] == "F", info["sex"].notna(), "F vs M")]
        for c in MEDICATION_CLASSES:
            groups.append((c, info[c].fillna(False).astype(bool), info[c].notna(),
                           "with vs without"))
        for name, member, known_var, label in groups:
            ok = known_var.astype(bool) & v.notna()
            x, y = v[ok & member], v[ok & ~member]
            row = {"outcome": outcome, "variable": name, "test": f"Mann-Whitney U ({label})",
                   "n": int(ok.sum()), "n_group": int(len(x)), "effect": "rank-biserial r"}
            if min(len(x), len(y)) < min_group:
                rows.append({**row, "effect_size": np.nan, "p": np.nan,
                             "note": f"group smaller than {min_group}"})
                continue
            r, p = rank_biserial(x, y)
            rows.append({**row, "effect_size": r, "p": p, "note": ""})
    out = pd.DataFrame(rows)
    out["p_bh"] = benjamini_hochberg(out["p"].to_numpy())
    return out[["outcome", "variable", "test", "n", "n_group", "effect", "effect_size", "p",
                "p_bh", "note"]]
