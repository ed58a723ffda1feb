"""Tests of utils.data.clinical: header parsing (real MIT-BIH headers and odd ones), the medication
grouping, Benjamini-Hochberg and the association tests."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from utils.data.clinical import (MEDICATION_CLASSES, MEDICATIONS, association_tests,
                                 benjamini_hochberg, clinical_table, medication_class,
                                 medication_table, parse_comments, rank_biserial,
                                 read_patient_info)

MITDB = Path(os.environ.get("MITDB_DIR", "/nonexistent"))
needs_db = pytest.mark.skipif(not (MITDB / "232.hea").exists(),
                              reason="MIT-BIH headers not available ($MITDB_DIR)")


@needs_db
@pytest.mark.parametrize("record, age, sex, meds", [
    ("232", 76, "F", ("Aldomet", "Inderal")),
    ("100", 69, "M", ("Aldomet", "Inderal")),
    ("103", None, "M", ("Diapres", "Xyloprim")),            # age -1: unknown
    ("219", None, "M", ("Digoxin",)),
    ("208", 23, "F", ()),                                     # "None"; "N/A" in line 1
    ("203", 43, "M", ("Coumadin", "Digoxin", "Heparin", "Hygroton", "Lasix")),
    ("201", 68, "M", ("Digoxin", "Hydrochlorthiazide", "Inderal", "KCl")),
])
def test_real_headers(record, age, sex, meds):
    info = read_patient_info(record, MITDB)
    assert (info.age, info.sex, info.medications) == (age, sex, meds)


@needs_db
def test_notes_of_a_multi_line_header():
    info = read_patient_info("207", MITDB)
    assert info.notes.startswith("This is an extremely difficult record.")
    assert "SVTA" in info.notes                                 # all note lines are kept
    assert info.classes == frozenset({"cardiac_glycoside", "antiarrhythmic_IA"})


@pytest.mark.parametrize("comments, age, sex, meds", [
    (["? F 1000 1000 x1", "Medications unknown"], None, "F", None),
    (["-1 ? x1", "?"], None, None, None),
    (["71 m", "Digoxin,", "Lasix"], 71, "M", ("Digoxin", "Lasix")),          # continued line
    (["58 F", "Medications: Inderal, Isordil", "Note."], 58, "F", ("Inderal", "Isordil")),
    (["60 M", "The PVCs are uniform."], 60, "M", None),                       # no med line
    (["60 M", "none"], 60, "M", ()),
    ([], None, None, None),
    (["# 45 F 10 10 x2", "# Verapamil"], 45, "F", ("Verapamil",)),          # '#' kept by caller
])
def test_unusual_headers(comments, age, sex, meds):
    info = parse_comments(comments)
    assert (info.age, info.sex, info.medications) == (age, sex, meds)


def test_medication_classes():
    assert medication_class("Inderal") == "beta_blocker"
    assert medication_class(" digoxin ") == "cardiac_glycoside"
    assert medication_class("Quinaglute") == medication_class("Pronestyl") == "antiarrhythmic_IA"
    assert medication_class("Lasix") == medication_class("Hydrodiuril") == "diuretic"
    assert medication_class("Isordil") == "nitrate"
    assert medication_class("Verapamil") == "other"           # not in the table
    assert set(c for _, c in MEDICATIONS.values()) <= set(MEDICATION_CLASSES)
    table = medication_table()
    assert list(table.columns) == ["name", "generic", "class"] and len(table) == len(MEDICATIONS)
    assert parse_comments(["1 F", "None"]).classes == frozenset()
    assert parse_comments(["1 F", "unknown"]).classes is None


@needs_db
def test_clinical_table_of_the_database():
    t = clinical_table(db_dir=MITDB)
    assert len(t) == 48 and t.index[0] == "100"
    assert t["age"].notna().sum() == 46                      # 103 and 219 are unknown
    assert t["sex"].notna().all()
    assert t["unlisted"].eq("").all()                         # every name is in the table
    assert t.loc["202", "patient"] == "201"
    assert t["patient"].nunique() == 47
    assert bool(t.loc["232", "beta_blocker"]) and not bool(t.loc["232", "cardiac_glycoside"])
    assert not t["calcium_channel_blocker"].any()


def test_benjamini_hochberg_known_example():
    # sorted p 0.005, 0.01, 0.03, 0.04 (m = 4): 0.02, 0.02, 0.04, 0.04 after the step-up min
    np.testing.assert_allclose(benjamini_hochberg([0.01, 0.04, 0.03, 0.005]),
                               [0.02, 0.04, 0.04, 0.02])
    out = benjamini_hochberg([0.01, np.nan, 0.02])            # NaN: not in the family
    np.testing.assert_allclose(out[[0, 2]], [0.02, 0.02])
    assert np.isnan(out[1])
    assert np.all(benjamini_hochberg(np.random.default_rng(0).uniform(size=50)) <= 1)


def test_rank_biserial():
    r, p = rank_biserial([5, 6, 7], [1, 2, 3])                # complete separation
    assert r == pytest.approx(1.0) and p < 0.2
    r, _ = rank_biserial([1, 2, 3], [5, 6, 7])
    assert r == pytest.approx(-1.0)
    r, p = rank_biserial([1, 2, 3, 4], [1, 2, 3, 4])
    assert r == pytest.approx(0.0) and p == pytest.approx(1.0)


def _toy_table(n: int = 12) -> pd.DataFrame:
    records = [str(100 + i) for i in range(n)]
    t = pd.DataFrame({"patient": records, "age": pd.array(np.arange(n) * 5 + 20, "Int64"),
                      "sex": ["F", "M"] * (n // 2)}, index=records)
    for c in MEDICATION_CLASSES:
        t[c] = pd.array([False] * n, dtype="boolean")
    t["beta_blocker"] = pd.array([True] * (n // 2) + [False] * (n - n // 2), dtype="boolean")
    t["cardiac_glycoside"] = pd.array([True, False] + [pd.NA] * (n - 2), dtype="boolean")
    return t


def test_association_tests_find_planted_effects():
    t = _toy_table()
    # outcome rises with age; the first half (beta-blocker) is lower
    values = pd.Series(np.arange(12, dtype=float), index=t.index, name="share")
    out = association_tests(values, t).set_index("variable")
    assert out.loc["age", "effect_size"] == pytest.approx(1.0)
    assert out.loc["age", "p"] < 1e-6
    assert out.loc["beta_blocker", "effect_size"] == pytest.approx(-1.0)
    assert out.loc["beta_blocker", "n_group"] == 6
    assert abs(out.loc["sex", "effect_size"]) < 0.3           # alternating: no sex effect
    assert np.isnan(out.loc["cardiac_glycoside", "p"])        # 1 vs 1 known: not tested
    assert "smaller" in out.loc["cardiac_glycoside", "note"]
    tested = out["p"].notna()
    assert (out.loc[tested, "p_bh"] >= out.loc[tested, "p"] - 1e-15).all()
    assert out["p_bh"][~tested].isna().all()


def test_association_tests_count_a_patient_once():
    t = _toy_table()
    t.loc["101", "patient"] = "100"                            # two records, one patient
    values = pd.DataFrame({"a": np.arange(12.0), "b": -np.arange(12.0)}, index=t.index)
    out = association_tests(values, t)
    assert set(out["outcome"]) == {"a", "b"}
    assert out[out["variable"] == "age"]["n"].tolist() == [11, 11]
    with pytest.raises(ValueError, match="without a header"):
        association_tests(pd.Series([1.0], index=["999"]), t)
