"""Tests of utils.data.mitdb: checksums, record reading, beat extraction, caching and splits."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from utils.core import config
from utils.data import mitdb as data
from utils.core import beats as beats_module

RECORD = "100"


@pytest.fixture()
def copy_100(tmp_path, mitdb_dir):
    """A private copy of record 100 that tests may damage."""
    for ext in data.EXTENSIONS:
        shutil.copy(mitdb_dir / f"{RECORD}.{ext}", tmp_path / f"{RECORD}.{ext}")
    return tmp_path


def test_checksum_file_covers_all_records():
    sums = data.read_checksums()
    assert set(data.required_files()) <= set(sums)
    assert len(data.required_files()) == 144
    assert all(len(v) == 64 for v in sums.values())


def test_verify_good_copy(copy_100):
    data.verify_database(copy_100, [RECORD])
    assert data.is_complete(copy_100, [RECORD])


def test_verify_missing_file(copy_100):
    (copy_100 / "100.atr").unlink()
    with pytest.raises(data.DatabaseError, match=r"100\.atr is missing"):
        data.verify_database(copy_100, [RECORD])


def test_verify_truncated_file(copy_100):
    path = copy_100 / "100.dat"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(data.DatabaseError, match=r"100\.dat does not match"):
        data.verify_database(copy_100, [RECORD])


def test_verify_tampered_file(copy_100):
    path = copy_100 / "100.hea"
    raw = bytearray(path.read_bytes())
    raw[5] ^= 1  # one flipped bit
    path.write_bytes(bytes(raw))
    with pytest.raises(data.DatabaseError, match=r"100\.hea does not match"):
        data.verify_database(copy_100, [RECORD])
    assert not data.is_complete(copy_100, [RECORD])


def test_verify_missing_directory(tmp_path):
    with pytest.raises(data.DatabaseError, match="does not exist"):
        data.verify_database(tmp_path / "nope", [RECORD])


def test_ensure_uses_env_dir(monkeypatch, tmp_path, copy_100):
    monkeypatch.setenv(config.MITDB_ENV, str(copy_100))
    assert data.ensure_mitdb(tmp_path / "empty", records=[RECORD], download=False) == copy_100


def test_ensure_rejects_damaged_env_dir(monkeypatch, tmp_path, copy_100):
    (copy_100 / "100.dat").write_bytes(b"junk")
    monkeypatch.setenv(config.MITDB_ENV, str(copy_100))
    with pytest.raises(data.DatabaseError, match="100.dat"):
        data.ensure_mitdb(tmp_path / "empty", records=[RECORD], download=False)


def test_ensure_without_any_copy(monkeypatch, tmp_path):
    monkeypatch.delenv(config.MITDB_ENV, raising=False)
    with pytest.raises(data.DatabaseError, match="make data"):
        data.ensure_mitdb(tmp_path / "empty", records=[RECORD], download=False)


def test_canonical_lead_order():
    assert data.canonical_lead_order(["MLII", "V1"]) == [0, 1]
    assert data.canonical_lead_order(["V5", "MLII"]) == [1, 0]
    assert data.canonical_lead_order(["V5", "V2"]) == [0, 1]
    with pytest.raises(ValueError):
        data.canonical_lead_order(["MLII"])


def test_load_record_lead_order(mitdb_dir):
    assert data.load_record("114", mitdb_dir).leads == ("MLII", "V5")  # stored V5, MLII
    assert data.load_record("102", mitdb_dir).leads == ("V5", "V2")  # no MLII
    rec = data.load_record("100", mitdb_dir)
    assert rec.signal.shape == (650000, 2) and rec.fs == config.FS
    with pytest.raises(ValueError, match="Unknown MIT-BIH record"):
        data.load_record("999", mitdb_dir)


def test_extract_record_100_counts(mitdb_dir):
    rec = data.decimate_record(data.load_record("100", mitdb_dir))
    out = data.extract_beats(rec)
    # Record 100: 2239 N, 33 A, 1 V annotated (PhysioNet's record table).
    assert out["annotated"] == {"N": 2239, "A": 33, "V": 1}
    kept = np.bincount(out["y"], minlength=8)
    dropped = sum(out["dropped_edge"].values())
    assert kept.sum() + dropped == 2273
    assert out["beats"].shape == (kept.sum(), config.WINDOW, 2)
    assert "+" in out["other_symbols"]  # rhythm annotations are counted, not kept


def test_extract_edge_beats_dropped():
    sig = np.random.default_rng(0).normal(size=(1000, 2)).astype(np.float32)
    rec = data.Record("100", sig, ("MLII", "V1"), np.array([5, 500, 995]),
                      np.array(["N", "V", "N"]), fs=180)
    out = data.extract_beats(rec, window=64, r_offset=20)
    assert out["dropped_edge"] == {"N": 2}
    assert out["y"].tolist() == [config.CLASSES.index("V")]
    np.testing.assert_array_equal(out["beats"][0], sig[480:544])


def test_extract_rejects_bad_offset():
    rec = data.Record("100", np.zeros((100, 2), np.float32), ("MLII", "V1"),
                      np.array([50]), np.array(["N"]))
    with pytest.raises(ValueError, match="r_offset"):
        data.extract_beats(rec, window=32, r_offset=40)


def test_rr_intervals_ignore_non_beats():
    samples = np.array([0, 100, 150, 300])
    symbols = np.array(["N", "N", "+", "V"])
    prev, nxt = data.rr_intervals(samples, symbols, fs=100)
    assert np.isnan(prev[0]) and prev[1] == 1.0 and prev[3] == 2.0
    assert nxt[0] == 1.0 and nxt[1] == 2.0 and np.isnan(nxt[3])
    assert prev[2] == 0.5 and nxt[2] == 1.5  # the rhythm note sits between beats


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 6), st.integers(8, 40), st.integers(1, 2))
def test_normalise_invertible(n, window, leads):
    rng = np.random.default_rng(n * window)
    beats = rng.normal(2.0, 3.0, size=(n, window, leads)).astype(np.float32)
    z, mean, std = data.normalise_beats(beats)
    assert z.shape == beats.shape
    np.testing.assert_allclose(z.mean(axis=1), 0, atol=1e-4)
    np.testing.assert_allclose(z * std[:, None] + mean[:, None], beats, rtol=1e-4, atol=1e-4)


def test_all_beats_match_published_totals(mitdb_beats):
    total_annotated = mitdb_beats.annotated
    assert total_annotated == config.PUBLISHED_TOTALS
    kept = mitdb_beats.class_counts()
    for c in config.CLASSES:
        assert kept[c] + mitdb_beats.dropped_edge.get(c, 0) == config.PUBLISHED_TOTALS[c]
    assert sum(mitdb_beats.dropped_edge.values()) < 200  # only beats at record edges are lost
    assert mitdb_beats.X.shape == (len(mitdb_beats), config.WINDOW, 2)
    assert np.isfinite(mitdb_beats.X).all()
    assert set(np.unique(mitdb_beats.record)) == set(data.RECORDS)
    np.testing.assert_allclose(mitdb_beats.millivolts(0), mitdb_beats.millivolts(slice(0, 1))[0])


def test_cache_is_keyed_by_settings(mitdb_beats, mitdb_dir):
    key_default = data._cache_path(mitdb_beats.settings)
    other = dict(mitdb_beats.settings, window=128)
    assert data._cache_path(other) != key_default
    assert key_default.is_file()
    again = data.load_beats(db_dir=mitdb_dir, progress=False)
    np.testing.assert_array_equal(again.y, mitdb_beats.y)


def test_load_beats_small_window_is_separate_cache(mitdb_dir):
    small = data.load_beats(db_dir=mitdb_dir, records=["100"], window=64, r_offset=20,
                            progress=False)
    assert small.X.shape[1:] == (64, 2)
    assert small.settings["window"] == 64


@pytest.mark.parametrize("name", ["holdout", "patient"])
def test_splits_disjoint_and_complete(mitdb_beats, name):
    split = data.get_split(mitdb_beats, name)
    split.check_disjoint()
    assert len(split.train) + len(split.val) + len(split.test) == len(mitdb_beats)
    for part in (split.train, split.test):
        assert set(np.unique(mitdb_beats.y[part])) == set(range(8)), "every class on both sides"


def test_patient_split_has_no_shared_record(mitdb_beats):
    split = data.patient_split(mitdb_beats)
    train_records = set(mitdb_beats.record[np.concatenate([split.train, split.val])])
    test_records = set(mitdb_beats.record[split.test])
    assert not train_records & test_records
    assert train_records | test_records == set(data.RECORDS)


def test_holdout_is_stratified(mitdb_beats):
    split = data.holdout_split(mitdb_beats)
    full = np.bincount(mitdb_beats.y, minlength=8) / len(mitdb_beats)
    test = np.bincount(mitdb_beats.y[split.test], minlength=8) / len(split.test)
    np.testing.assert_allclose(test, full, atol=2e-3)


def test_get_split_unknown():
    with pytest.raises(ValueError, match="Unknown split"):
        data.get_split(None, "random")


def test_balanced_and_subsample():
    y = np.array([0] * 50 + [1] * 5 + [2] * 20)
    idx = data.balanced_sample(y, 10)
    assert np.bincount(y[idx]).tolist() == [10, 5, 10]
    np.testing.assert_array_equal(idx, data.balanced_sample(y, 10))
    sub = data.subsample_majority(y, np.arange(len(y)), cap=8)
    assert np.bincount(y[sub]).tolist() == [8, 5, 8]


def test_example_per_class_prefers_masks_in_order():
    y = np.array([0, 0, 1, 1, 3])
    right = np.array([False, True, False, False, True])
    cnn = np.array([True, True, False, True, True])
    np.testing.assert_array_equal(data.example_per_class(y), [0, 2, 4])
    np.testing.assert_array_equal(data.example_per_class(y, right), [1, 2, 4])
    np.testing.assert_array_equal(data.example_per_class(y, right, cnn), [1, 3, 4])
    with pytest.raises(ValueError, match="shape"):
        data.example_per_class(y, right[:2])


def test_validate_beats_messages():
    good = np.zeros((3, config.WINDOW, 2))
    assert beats_module.validate_beats(good).dtype == np.float32
    with pytest.raises(ValueError, match="one beat"):
        beats_module.validate_beats(np.zeros((config.WINDOW, 2)))
    with pytest.raises(ValueError, match="shape"):
        beats_module.validate_beats(np.zeros((3, 100, 2)))
    bad = good.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        beats_module.validate_beats(bad)
    with pytest.raises(ValueError, match="leads-first"):
        beats_module.validate_beats(np.zeros((3, 2, config.WINDOW)))
    with pytest.raises(ValueError, match="no beats"):
        beats_module.validate_beats(np.zeros((0, config.WINDOW, 2)))
    with pytest.raises(ValueError, match="numeric"):
        beats_module.validate_beats([["a"]])


def test_wave_windows():
    w = config.wave_windows()
    assert list(w) == list(config.WAVE_WINDOWS)
    a, b = w["QRS"]
    assert (a, b) == (config.R_OFFSET - 11, config.R_OFFSET + 11)   # +-0.06 s at 180 Hz
    custom = config.wave_windows(windows={"QRS": (-0.10, 0.14)})
    assert custom == {"QRS": (config.R_OFFSET - 18, config.R_OFFSET + 25)}
    with pytest.raises(ValueError, match="empty"):
        config.wave_windows(windows={"QRS": (0.1, 0.1)})


def test_class_index():
    assert data.class_index("V") == 3
    with pytest.raises(ValueError, match="Unknown beat class"):
        data.class_index("Q")


def _fake_dl_files(source, corrupt: str | None = None):
    """A stand-in for ``wfdb.dl_files`` that copies from the local mirror (no network here)."""
    def dl_files(db, dl_dir, files, keep_subdirs=True, overwrite=False):
        assert db == config.PHYSIONET_DB
        for name in files:
            payload = (source / name).read_bytes()
            if name == corrupt:
                payload = payload[:-10]  # an interrupted transfer
            (Path(dl_dir) / name).write_bytes(payload)
    return dl_files


def test_download_verifies_then_renames(monkeypatch, tmp_path, mitdb_dir):
    import wfdb

    monkeypatch.setattr(wfdb, "dl_files", _fake_dl_files(mitdb_dir))
    target = data.download_mitdb(tmp_path / "mitdb", records=[RECORD])
    assert target == tmp_path / "mitdb"
    assert data.is_complete(target, [RECORD])
    assert not (tmp_path / "mitdb.partial").exists()


def test_failed_download_never_looks_complete(monkeypatch, tmp_path, mitdb_dir):
    import wfdb

    monkeypatch.setattr(wfdb, "dl_files", _fake_dl_files(mitdb_dir, corrupt="100.dat"))
    with pytest.raises(data.DatabaseError, match=r"100\.dat does not match"):
        data.download_mitdb(tmp_path / "mitdb", records=[RECORD])
    assert not (tmp_path / "mitdb").exists()  # only the .partial folder, kept for a retry
    assert (tmp_path / "mitdb.partial" / "100.hea").is_file()
    # ensure_mitdb downloads when neither the folder nor MITDB_DIR holds the database
    # and a rerun fetches the damaged file again instead of keeping it
    monkeypatch.delenv(config.MITDB_ENV, raising=False)
    monkeypatch.setattr(wfdb, "dl_files", _fake_dl_files(mitdb_dir))
    assert data.ensure_mitdb(tmp_path / "mitdb", records=[RECORD]) == tmp_path / "mitdb"
