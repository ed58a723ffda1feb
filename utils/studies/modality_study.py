"""Week 4's modality-importance study (Ellis et al., IEEE BIBE 2021, on the course's fold
models), computed once and stored with :func:`utils.core.results.cached`.

:func:`load_study` returns a :class:`ModalityStudy`:

* ``analysis``: :func:`utils.studies.modality_folds.fold_modality_analysis` with its defaults - LRP
  (epsilon 0.25) and Integrated Gradients (16 steps) modality shares of the five patient-wise
  fold models on their own test beats, correct and incorrect ones, at most 2 per record, class
  and outcome; spread and Kendall's W over folds; permutation importance per modality;
* ``record_shares``: :func:`utils.studies.modality_folds.record_modality_shares` with its defaults (the
  mean LRP share per record over at most 20 correctly classified N beats, each record
  explained by the fold model that never saw it), the input of the clinical tests;
* ``examples``: for the local view, the first correctly classified beat of each class in
  :data:`EXAMPLE_CLASSES` of the analysis sample, in mV, with its LRP and IG maps (beat input
  and the nine standardised rhythm features) and its RR features.

The computation takes about 30 s of CPU time (1.5 minutes on a loaded 2-core machine), more
than week 4's budget allows next to the rest of the notebook, so the tables and arrays are
stored in ``data/results/week4_modality-<key>.npz`` (committed). The key covers the fold
models' weight files (SHA-256), their saved test predictions (which pin the explained beats),
the code of :mod:`utils.studies.modality_folds`, :mod:`utils.assess.modality`, :mod:`utils.explainers.lrp`, this module and
:mod:`utils.core.stored_frames`, and the settings; ``load_study(recompute=True)`` computes it again
(it needs the AAMI beat cache of :func:`utils.data.aami.load_aami_beats`).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from utils.core import config
from utils.explainers import lrp
from utils.assess import modality
from utils.studies import modality_folds
from utils.core import stored_frames
from utils.models.multimodal import FOLDS, load_fold_predictions
from utils.studies import modality_folds as mf
from utils.data.aami import load_aami_beats
from utils.assess.modality import MODALITIES
from utils.models.multimodal import CV_RECORDS, FOLDS, load_named
from utils.core.stored_frames import frames_to_arrays
from utils.studies.modality_folds import METHODS, FoldAnalysis
from utils.core.results import cached
from utils.core.stored_frames import arrays_to_frames

#: Name of the stored result (``data/results/<NAME>-<key>.npz``).
NAME = "week4_modality"
#: Classes with one example beat each in the local view.
EXAMPLE_CLASSES: tuple[str, ...] = ("N", "SVEB", "VEB")
#: IG steps: the same as the fold analysis's default.
IG_STEPS = 16
#: Version of what is stored (bump when the stored content changes).
VERSION = 1


@dataclass
class ModalityStudy:
    """The stored study (see the module docstring). ``examples``: one row per example beat
    (fold, record, sample, class, pred and the LRP and IG shares); ``example_mv`` (k, 256, 2);
    ``example_maps``: method -> ``(beat relevance (k, 256, 2), rhythm relevance (k, 9))``;
    ``example_rr`` (k, 9) raw RR features; ``example_rr_z`` (k, 9) standardised ones."""

    analysis: object
    record_shares: object
    examples: object
    example_mv: np.ndarray
    example_maps: dict
    example_rr: np.ndarray
    example_rr_z: np.ndarray


def _weights_digest(name: str) -> str:
    path = config.MODELS_DIR / name / "model.weights.h5"
    if not path.is_file():
        raise FileNotFoundError(f"No trained fold model at {path}: run `make models`.")
    return hashlib.sha256(path.read_bytes()).hexdigest()


def key_parts() -> dict:
    """``inputs`` and ``params`` of the stored result (for :func:`utils.core.results.cached`
    and :func:`utils.core.results.result_key`)."""
    inputs = []
    for name in FOLDS:
        saved = load_fold_predictions(name)
        inputs += [saved[k] for k in ("record", "sample", "y", "pred")]
    return {"inputs": inputs,
            "params": {"weights": {n: _weights_digest(n) for n in FOLDS},
                       "fold_analysis": "defaults", "record_shares": "defaults",
                       "examples": list(EXAMPLE_CLASSES), "ig_steps": IG_STEPS,
                       "version": VERSION}}


def compute() -> dict[str, np.ndarray]:
    """Run the study (slow) and return it as arrays (:func:`utils.core.stored_frames.frames_to_arrays`
    for the tables, plus the example arrays)."""
    import pandas as pd

    beats = load_aami_beats(CV_RECORDS)
    models = {name: load_named(name) for name in FOLDS}
    res = mf.fold_modality_analysis(beats=beats, load_model=models.get)
    rec = mf.record_modality_shares(beats=beats, load_model=models.get)
    lrp_rows = res.beats[(res.beats.method == "lrp") & (res.beats.outcome == "correct")]
    rows, mv, rr, rr_z, maps = [], [], [], [], {m: ([], []) for m in mf.METHODS}
    for cls in EXAMPLE_CLASSES:
        row = lrp_rows[lrp_rows["class"] == cls].iloc[0]
        idx = int(np.flatnonzero((beats.record == row["record"])
                                 & (beats.sample == row["sample"]))[0])
        model = models[row["fold"]]
        target = np.array([mf.CLASSES.index(row["pred"])])
        out = mf.explain_modalities(model, beats.X[idx:idx + 1], beats.rr[idx:idx + 1], target,
                                    ig_steps=IG_STEPS)
        info = {k: row[k] for k in ("fold", "record", "sample", "class", "pred")}
        for method, (shares, exp) in out.items():
            beat_rel, rhythm_rel = exp.extras["inputs"]
            maps[method][0].append(beat_rel[0])
            maps[method][1].append(rhythm_rel[0])
            info.update({f"{method} {m}": float(shares[m].iloc[0]) for m in MODALITIES})
        rows.append(info)
        mv.append(beats.millivolts(idx))
        rr.append(beats.rr[idx])
        rr_z.append(mf.standardise_rhythm(model, beats.rr[idx:idx + 1])[0])
    frames = {"beats": res.beats, "shares": res.shares, "spread": res.spread,
              "concordance": res.concordance, "matched": res.matched, "pfi": res.pfi,
              "metrics": res.metrics, "samples": res.samples, "record_shares": rec,
              "examples": pd.DataFrame(rows)}
    arrays = frames_to_arrays(frames)
    arrays["example_mv"] = np.array(mv, dtype=np.float32)
    arrays["example_rr"] = np.array(rr, dtype=np.float32)
    arrays["example_rr_z"] = np.array(rr_z, dtype=np.float32)
    for method, (beat_rel, rhythm_rel) in maps.items():
        arrays[f"example_{method}_beat"] = np.array(beat_rel)
        arrays[f"example_{method}_rhythm"] = np.array(rhythm_rel)
    return arrays


def load_study(recompute: bool = False) -> ModalityStudy:
    """The stored study (computed and stored first when missing or stale, or when
    ``recompute``)."""

    arrays = cached(NAME, compute, recompute=recompute, **key_parts())
    frames = arrays_to_frames(arrays)
    analysis = FoldAnalysis(**{k: frames[k] for k in ("beats", "shares", "spread",
                                                      "concordance", "matched", "pfi",
                                                      "metrics", "samples")})
    return ModalityStudy(analysis, frames["record_shares"], frames["examples"],
                         arrays["example_mv"],
                         {m: (arrays[f"example_{m}_beat"], arrays[f"example_{m}_rhythm"])
                          for m in METHODS},
                         arrays["example_rr"], arrays["example_rr_z"])
