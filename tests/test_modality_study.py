"""Tests of utils.studies.modality_study: the committed stored result of week 4's section 6 is current
(its key matches the fold models, their predictions and the code) and holds what the notebook
reads."""
from __future__ import annotations

import numpy as np
import pytest

from utils.studies import modality_study as ms
from utils.assess.modality import MODALITIES
from utils.core.results import RESULTS_DIR, result_key


def test_the_committed_result_is_current_and_complete():
    key = result_key(compute=ms.compute, **ms.key_parts())
    path = RESULTS_DIR / f"{ms.NAME}-{key}.npz"
    if not path.is_file():
        pytest.fail(f"{path.name} is missing: the fold models or the code of the modality analysis "
                    "changed; run utils.studies.modality_study.load_study(recompute=True) (or week 4 with "
                    "RECOMPUTE = True) and commit data/results/")
    study = ms.load_study()
    a = study.analysis
    assert set(a.beats["method"]) == {"lrp", "ig"}
    shares = a.beats[list(MODALITIES)].dropna()
    assert np.allclose(shares.sum(axis=1), 1.0)
    # at most 2 beats per record, class and outcome, stratified by record
    assert a.beats.groupby(["method", "record", "class", "outcome"]).size().max() <= 2
    assert len(study.record_shares) == 44 and (study.record_shares["n_beats"] > 0).all()
    k = len(ms.EXAMPLE_CLASSES)
    assert list(study.examples["class"]) == list(ms.EXAMPLE_CLASSES)
    assert study.example_mv.shape == (k, 256, 2)
    for beat_rel, rhythm_rel in study.example_maps.values():
        assert beat_rel.shape == (k, 256, 2) and rhythm_rel.shape == (k, 9)
    # the example maps give the shares stored beside them
    for method, (beat_rel, rhythm_rel) in study.example_maps.items():
        mass = np.stack([np.abs(beat_rel[..., 0]).sum(1), np.abs(beat_rel[..., 1]).sum(1),
                         np.abs(rhythm_rel).sum(1)], axis=1)
        mass = mass / mass.sum(axis=1, keepdims=True)
        stored = study.examples[[f"{method} {m}" for m in MODALITIES]].to_numpy()
        assert np.allclose(mass, stored, atol=1e-5)


def test_the_stored_examples_are_what_the_code_computes():
    """Not only current: the first stored example, explained again now by
    ``explain_modalities`` with its fold model, gives the stored relevance maps and shares."""
    from utils.data.aami import load_aami_beats
    from utils.models.multimodal import load_named
    from utils.studies import modality_folds as mf

    study = ms.load_study()
    row = study.examples.iloc[0]
    beats = load_aami_beats(ms.CV_RECORDS)
    idx = int(np.flatnonzero((beats.record == row["record"]) & (beats.sample == row["sample"]))[0])
    np.testing.assert_allclose(beats.millivolts(idx), study.example_mv[0], atol=1e-5)
    model = load_named(row["fold"])
    target = np.array([mf.CLASSES.index(row["pred"])])
    out = mf.explain_modalities(model, beats.X[idx:idx + 1], beats.rr[idx:idx + 1], target,
                                ig_steps=ms.IG_STEPS)
    assert set(out) == set(study.example_maps)
    for method, (shares, exp) in out.items():
        beat_rel, rhythm_rel = exp.extras["inputs"]
        stored_beat, stored_rhythm = study.example_maps[method]
        scale = max(np.abs(stored_beat[0]).max(), np.abs(stored_rhythm[0]).max())
        np.testing.assert_allclose(beat_rel[0], stored_beat[0], atol=1e-4 * scale)
        np.testing.assert_allclose(rhythm_rel[0], stored_rhythm[0], atol=1e-4 * scale)
        for m in MODALITIES:
            assert abs(float(shares[m].iloc[0]) - row[f"{method} {m}"]) < 1e-4
