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
