"""Verified artefacts (issue 17): model weights checked against the SHA-256 in their config,
and a beat cache that carries a checksum and the expected class counts.

Every test works on copies in ``tmp_path`` (``config.MODELS_DIR`` / ``config.DATA_DIR`` are
redirected): the committed models and the shared beat cache are never touched.
"""
from __future__ import annotations

import dataclasses

import json
import shutil

import numpy as np
import pytest

from utils.core import config
from utils.data import mitdb as data
from utils.models import training
from utils.models import catalog


# --------------------------------------------------------------------------- model weights
@pytest.fixture()
def models(tmp_path, monkeypatch):
    """Copies of the committed models in tmp_path (config.MODELS_DIR points there)."""
    for name in ("cnn_holdout", "cnn_patient", "lstm_holdout", "lstm_patient"):
        shutil.copytree(config.MODELS_DIR / name, tmp_path / name)
    monkeypatch.setattr(config, "MODELS_DIR", tmp_path)
    return tmp_path


@pytest.mark.parametrize("name", sorted(training.MODEL_SPECS))
def test_committed_configs_record_the_weights_hash(name):
    cfg = training.read_config(name)
    assert len(cfg["weights_sha256"]) == 64
    assert training.verify_weights(name) == training.model_dir(name) / "model.weights.h5"


def _flip_bit(path, offset_fraction=0.5):
    raw = bytearray(path.read_bytes())
    raw[int(len(raw) * offset_fraction)] ^= 0x01
    path.write_bytes(bytes(raw))


def test_intact_copy_loads(models):
    model = catalog.load_trained("lstm_holdout")
    assert model.input_shape[1:] == (config.WINDOW, 2)
    assert model.get_layer("logits").units == len(config.CLASSES)


@pytest.mark.parametrize("damage,cause", [
    (lambda p: _flip_bit(p), "does not match the SHA-256"),
    (lambda p: _flip_bit(p, 0.999), "does not match the SHA-256"),  # near the end: logits bias
    (lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]), "does not match"),
    (lambda p: p.write_bytes(b""), "is empty"),
    (lambda p: p.unlink(), "is missing"),
])
def test_damaged_weights_name_file_cause_and_fix(models, damage, cause):
    weights = models / "lstm_holdout" / "model.weights.h5"
    damage(weights)
    with pytest.raises(training.ModelFileError) as err:
        catalog.load_trained("lstm_holdout")
    message = str(err.value)
    assert cause in message and str(weights) in message
    assert "git checkout" in message and "make models" in message


@pytest.mark.parametrize("pair", [("lstm_patient", "lstm_holdout"),
                                  ("cnn_patient", "cnn_holdout")])
def test_swapped_weights_are_refused(models, pair):
    """The patient-split weights copied over the holdout model (same architecture)."""
    src, dst = pair
    shutil.copy(models / src / "model.weights.h5", models / dst / "model.weights.h5")
    with pytest.raises(training.ModelFileError, match="another model's weights"):
        catalog.load_trained(dst)


@pytest.mark.parametrize("content,cause", [("", "is empty"),
                                           ('{"name": "lstm_holdout", "spec": {', "not valid JSON"),
                                           ("[1, 2]", "not valid JSON")])
def test_damaged_config_names_file_and_fix(models, content, cause):
    path = models / "lstm_holdout" / "config.json"
    path.write_text(content)
    with pytest.raises(training.ModelFileError) as err:
        catalog.load_trained("lstm_holdout")
    assert cause in str(err.value) and str(path) in str(err.value)
    assert "git checkout" in str(err.value)


def test_config_without_hash_is_refused(models):
    path = models / "lstm_holdout" / "config.json"
    cfg = json.loads(path.read_text())
    del cfg["weights_sha256"]
    cfg[training.CONFIG_CHECKSUM_KEY] = training.config_digest(cfg)  # re-sealed: still refused
    path.write_text(json.dumps(cfg))
    with pytest.raises(training.ModelFileError, match="records no weights_sha256"):
        catalog.load_trained("lstm_holdout")


@pytest.mark.parametrize("edit", ["accuracy", "checksum removed", "macro_f1 as text"])
def test_edited_metric_in_config_is_refused(models, edit):
    """A metric the notebooks show (week 1 and 4 print ``test.accuracy``) edited by hand."""
    path = models / "cnn_holdout" / "config.json"
    cfg = json.loads(path.read_text())
    if edit == "accuracy":
        cfg["test"]["accuracy"] = 0.5
    elif edit == "checksum removed":
        cfg["test"]["accuracy"] = 0.5
        del cfg[training.CONFIG_CHECKSUM_KEY]
    else:
        cfg["test"]["macro_f1"] = str(cfg["test"]["macro_f1"])
    path.write_text(json.dumps(cfg, indent=1))
    with pytest.raises(training.ModelFileError, match="config_sha256") as err:
        training.read_config("cnn_holdout")
    assert "git checkout" in str(err.value)
    with pytest.raises(training.ModelFileError):
        catalog.load_trained("cnn_holdout")


def test_committed_configs_are_sealed():
    for name in catalog.all_names():
        training.read_config(name)  # raises when a checksum is missing or wrong


# --------------------------------------------------------------------------- beat cache
SETTINGS = {"records": ["100"], "window": 4, "r_offset": 1, "decimate": 2,
            "classes": list(config.CLASSES), "version": data.EXTRACTION_VERSION}


def small_beats(n: int = 60, records=("100",), seed: int = 0) -> data.BeatData:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, len(config.CLASSES), n)
    return data.BeatData(
        X=rng.normal(size=(n, 4, 2)).astype(np.float32), y=y,
        record=np.array([records[i % len(records)] for i in range(n)]),
        sample=np.arange(n) * 10, rr_prev=rng.random(n).astype(np.float32),
        rr_next=rng.random(n).astype(np.float32), mean=np.zeros((n, 2), np.float32),
        std=np.ones((n, 2), np.float32), leads={r: ("MLII", "V1") for r in records},
        settings=dict(SETTINGS, records=list(records)), annotated={}, dropped_edge={},
        other_symbols={})


@pytest.fixture()
def cache_file(tmp_path, monkeypatch):
    monkeypatch.setattr(config, "DATA_DIR", tmp_path)
    path = tmp_path / "cache" / "beats_test.npz"
    data._write_cache(path, small_beats())
    return path


def test_cache_round_trip_is_verified(cache_file):
    beats = data.read_cache(cache_file)
    assert beats.cache_verified == "sha256"
    np.testing.assert_array_equal(beats.y, small_beats().y)
    assert list(cache_file.parent.iterdir()) == [cache_file]  # no temporary file left


@pytest.mark.parametrize("damage,cause", [
    (lambda p: _flip_bit(p, 0.3), "unreadable|SHA-256"),
    (lambda p: p.write_bytes(p.read_bytes()[:-100]), "unreadable"),
    (lambda p: p.write_bytes(p.read_bytes()[:1000]), "unreadable"),
    (lambda p: p.write_bytes(b""), "empty"),
    (lambda p: p.write_bytes(b"not a zip file at all"), "unreadable"),
])
def test_damaged_cache_is_reported(cache_file, damage, cause):
    damage(cache_file)
    with pytest.raises(data.CacheError, match=cause):
        data.read_cache(cache_file)


def _rewrite(path, **changes):
    """Rewrite a well-formed cache with some arrays or meta entries changed (valid zip)."""
    with np.load(path) as npz:
        content = {k: npz[k] for k in npz.files}
    meta = json.loads(str(content.pop("meta")))
    for key, value in changes.items():
        if key in content:
            content[key] = value
        else:
            meta[key] = value
    meta = {k: v for k, v in meta.items() if v is not None}
    np.savez(path, **content, meta=np.array(json.dumps(meta)))


def test_cache_with_labels_changed_is_caught_by_checksum(cache_file):
    y = small_beats().y.copy()
    y[:20] = (y[:20] + 1) % len(config.CLASSES)
    _rewrite(cache_file, y=y)
    with pytest.raises(data.CacheError, match="SHA-256"):
        data.read_cache(cache_file)


def test_cache_with_labels_changed_and_checksum_redone_is_caught_by_counts(cache_file):
    beats = small_beats()
    y = beats.y.copy()
    y[:20] = (y[:20] + 1) % len(config.CLASSES)
    arrays = {k: getattr(beats, k) for k in data.CACHE_ARRAYS}
    arrays["y"] = y
    _rewrite(cache_file, y=y, sha256=data.arrays_sha256(arrays))
    with pytest.raises(data.CacheError, match="class counts"):
        data.read_cache(cache_file)


def _whole_database_beats() -> data.BeatData:
    """Labels with exactly the expected counts of the whole database (tiny windows)."""
    dropped = {"N": 63, "/": 8, "L": 6, "R": 7, "A": 1, "F": 1, "V": 2}
    y = np.concatenate([np.full(config.PUBLISHED_TOTALS[c] - dropped.get(c, 0), i)
                        for i, c in enumerate(config.CLASSES)])
    n = len(y)
    beats = data.BeatData(
        X=np.zeros((n, 1, 1), np.float32), y=y, record=np.full(n, "100"),
        sample=np.arange(n), rr_prev=np.zeros(n, np.float32), rr_next=np.zeros(n, np.float32),
        mean=np.zeros((n, 1), np.float32), std=np.ones((n, 1), np.float32),
        leads={"100": ("MLII", "V5")}, settings=dict(SETTINGS, records=list(data.RECORDS)),
        annotated=dict(config.PUBLISHED_TOTALS), dropped_edge=dropped, other_symbols={})
    return beats


def test_published_totals_catch_2000_relabelled_beats():
    beats = _whole_database_beats()
    data.check_beats(beats)  # the right counts pass
    y = beats.y.copy()
    y[np.flatnonzero(y == 0)[:2000]] = 3  # 2,000 N beats relabelled V
    with pytest.raises(data.CacheError, match="published totals"):
        data.check_beats(dataclasses.replace(beats, y=y))


@pytest.mark.parametrize("change", ["X", "y"])
def test_cache_without_checksum_is_refused_even_with_matching_counts(tmp_path, change):
    """Beats changed (or labels swapped, class counts kept) and the SHA-256 removed."""
    beats = small_beats()
    path = tmp_path / "legacy.npz"
    data._write_cache(path, beats)
    changed = {"X": beats.X + 1.0, "y": beats.y[::-1].copy()}[change]
    _rewrite(path, **{change: changed}, sha256=None)
    with pytest.raises(data.CacheError, match="without a checksum"):
        data.read_cache(path)


def test_cache_without_checksum_is_rebuilt_by_load_beats(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(config, "DATA_DIR", tmp_path)
    fresh = small_beats(seed=1)
    monkeypatch.setattr(data, "extract_all", lambda *a, **k: fresh)
    settings = {"records": ["100"], "window": config.WINDOW, "r_offset": config.R_OFFSET,
                "decimate": config.DECIMATE, "classes": list(config.CLASSES),
                "version": data.EXTRACTION_VERSION}
    path = data._cache_path(settings)
    path.parent.mkdir(parents=True)
    data._write_cache(path, small_beats(seed=1))
    _rewrite(path, X=fresh.X * 0.0, sha256=None)  # beats zeroed, checksum removed
    beats = data.load_beats(records=["100"], progress=False)
    assert "without a checksum" in capsys.readouterr().err
    np.testing.assert_array_equal(beats.X, fresh.X)
    assert data.read_cache(path).cache_verified == "sha256"


def test_damaged_cache_is_rebuilt_by_load_beats(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(config, "DATA_DIR", tmp_path)
    fresh = small_beats(seed=1)
    calls = []

    def fake_extract(db_dir, records, window, r_offset, settings, progress=True):
        calls.append(records)
        return fresh

    monkeypatch.setattr(data, "extract_all", fake_extract)
    settings = {"records": ["100"], "window": config.WINDOW, "r_offset": config.R_OFFSET,
                "decimate": config.DECIMATE, "classes": list(config.CLASSES),
                "version": data.EXTRACTION_VERSION}
    path = data._cache_path(settings)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"PK\x03\x04 truncated")
    beats = data.load_beats(records=["100"], progress=False)
    assert calls == [("100",)] and "damaged or altered" in capsys.readouterr().err
    np.testing.assert_array_equal(beats.y, fresh.y)
    assert data.read_cache(path).cache_verified == "sha256"  # rewritten, verified
    data.load_beats(records=["100"], progress=False)
    assert len(calls) == 1  # the rebuilt cache is used


def test_read_only_cache_folder_still_gives_beats(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(config, "DATA_DIR", tmp_path)
    monkeypatch.setattr(data, "extract_all", lambda *a, **k: small_beats())

    def refuse(path, beats):
        raise PermissionError("read-only file system")

    monkeypatch.setattr(data, "_write_cache", refuse)
    assert len(data.load_beats(records=["100"], progress=False)) == 60
    assert "using the beats in memory" in capsys.readouterr().err


def test_make_data_checks_and_rebuilds_the_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(config, "DATA_DIR", tmp_path)
    monkeypatch.setattr(data, "extract_all", lambda *a, **k: small_beats())
    assert "none yet" in data.check_cache(records=["100"])
    settings = {"records": ["100"], "window": config.WINDOW, "r_offset": config.R_OFFSET,
                "decimate": config.DECIMATE, "classes": list(config.CLASSES),
                "version": data.EXTRACTION_VERSION}
    path = data._cache_path(settings)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"")
    with pytest.raises(data.CacheError, match="empty"):
        data.check_cache(records=["100"], rebuild=False)
    assert "rebuilt" in data.check_cache(records=["100"])
    assert "verified" in data.check_cache(records=["100"])


def test_real_extraction_of_one_record_rebuilds_a_damaged_cache(tmp_path, monkeypatch,
                                                                  mitdb_dir):
    monkeypatch.setattr(config, "DATA_DIR", tmp_path)
    first = data.load_beats(db_dir=mitdb_dir, records=["100"], progress=False)
    cache = next((tmp_path / "cache").glob("beats_*.npz"))
    _flip_bit(cache, 0.6)
    again = data.load_beats(db_dir=mitdb_dir, records=["100"], progress=False)
    np.testing.assert_array_equal(first.X, again.X)
    assert data.read_cache(cache).cache_verified == "sha256"
