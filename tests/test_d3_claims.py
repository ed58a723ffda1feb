"""The statements of deep dive D3's text about the committed modality study (stored result
``week4_modality``): they were asserts in the notebook, and a changed fold model or analysis
must fail here rather than leave the text describing another result."""
from __future__ import annotations

import numpy as np
import pytest

from utils.studies import modality_folds as mf
from utils.studies import modality_study as ms
from utils.assess.modality import MODALITIES


@pytest.fixture(scope="module")
def study():
    return ms.load_study()


def test_the_example_beats_are_explained_as_in_the_fold_analysis(study):
    beats = study.analysis.beats.set_index(["method", "record", "sample"])
    ex = study.examples
    for k in range(len(ex)):
        for method in ("lrp", "ig"):
            stored = beats.loc[(method, ex.loc[k, "record"], ex.loc[k, "sample"]),
                               list(MODALITIES)].to_numpy().ravel()
            shown = [ex.loc[k, f"{method} {m}"] for m in MODALITIES]
            assert np.allclose(shown, stored, atol=1e-5)


def test_the_papers_pattern_holds_only_for_lrp_on_n_beats(study):
    """D3 section 3: W significant for correct, not for misclassified beats, in one of six cells."""
    summary = study.analysis.summary().set_index(["method", "class"])
    holds = [(m, c) for m in ("lrp", "ig") for c in ("N", "SVEB", "VEB")
             if summary.loc[(m, c), "p_perm correct"] < 0.05 <= summary.loc[(m, c), "p_perm incorrect"]]
    assert holds == [("lrp", "N")]


def test_no_clinical_association_survives_the_correction(study):
    """D3 'What can and cannot be concluded': 30 tests run, smallest BH-corrected p above 0.4."""
    from utils.data.clinical import clinical_table

    clinical = clinical_table(list(study.record_shares.index))
    tests = mf.clinical_associations(study.record_shares, clinical)
    run = tests[tests.p.notna()]
    assert len(run) == 30
    assert run.p_bh.min() > 0.4
