"""Why does a model miss the SVEB beats of record 232? Tested with the course's own tools.

Record 232 holds 1,382 of DS2's 1,837 SVEB beats (sinus bradycardia with long pauses, RBBB,
frequent atrial premature beats). Week 1 used to explain the misses by "the SVEB beats follow
long pauses". Three views test that on a model's caught (called SVEB) and missed (called N)
SVEB beats of the record:

* :func:`rr_profile` - the rhythm the beats actually have: medians of the RR features per
  group (SVEB caught, SVEB missed, and the record's N beats for reference);
* :func:`relevance_shares` - where the relevance of the decision lies, per beat: the share of
  the absolute LRP and Integrated Gradients relevance in lead MLII, the chest lead and the
  rhythm input (as week 4, :func:`utils.studies.modality_folds.explain_modalities`; the explained class
  is the predicted one);
* :func:`swap_intervention` - the causal check: every missed beat gets the rhythm input of a
  caught beat (and, separately, the beat window of a caught beat), and every caught beat those
  of a missed beat; the share of decisions that follow the swapped input says which input the
  decision rests on.

:func:`study` runs the three for a two-input multimodal model (beat + rhythm features) and
returns arrays to store (:func:`utils.core.results.cached`).
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from utils.core import config
from utils.data.rhythm import RR_FEATURES
from utils.assess.modality import MODALITIES
from utils.studies.modality_folds import explain_modalities
from utils.models.multimodal import predict_proba

#: Group names: true SVEB called SVEB, true SVEB called N, and the record's N beats called N.
GROUPS: tuple[str, ...] = ("SVEB caught", "SVEB missed", "N (called N)")
#: RR features summarised by :func:`rr_profile` (names of :data:`utils.data.rhythm.RR_FEATURES`).
PROFILE: tuple[str, ...] = ("pre_rr", "pre_rr_norm", "pre_rr_local", "post_rr_local",
                            "local_rr_norm")


def groups(y: np.ndarray, pred: np.ndarray) -> dict[str, np.ndarray]:
    """Indices of the :data:`GROUPS` (AAMI labels: 0 N, 1 SVEB)."""
    y, pred = np.asarray(y), np.asarray(pred)
    return {GROUPS[0]: np.flatnonzero((y == 1) & (pred == 1)),
            GROUPS[1]: np.flatnonzero((y == 1) & (pred == 0)),
            GROUPS[2]: np.flatnonzero((y == 0) & (pred == 0))}


def rr_profile(rr: np.ndarray, index: dict[str, np.ndarray], y: np.ndarray | None = None):
    """Median of the :data:`PROFILE` RR features per group (rows) and the group size ``n``.
    With ``y`` (the labels of the rows, one record in time order) also ``after SVEB``: the share
    of the group's beats whose previous beat is an SVEB beat (inside a run of SVEB beats)."""
    import pandas as pd

    cols = [RR_FEATURES.index(c) for c in PROFILE]
    after = None if y is None else np.r_[False, np.asarray(y)[:-1] == 1]
    rows = {}
    for g, i in index.items():
        row = {"n": len(i), **{c: float(np.median(rr[i, k])) if len(i) else np.nan
                               for c, k in zip(PROFILE, cols)}}
        if after is not None:
            row["after SVEB"] = float(after[i].mean()) if len(i) else np.nan
        rows[g] = row
    return pd.DataFrame(rows).T


def swap_intervention(predict: Callable[[np.ndarray, np.ndarray], np.ndarray], X: np.ndarray,
                      rr: np.ndarray, missed: np.ndarray, caught: np.ndarray,
                      seed: int = config.SEED) -> dict[str, float]:
    """Swap one input between missed and caught SVEB beats and count the decisions that move.
    Each missed beat is paired with a caught beat drawn at random (with replacement, seeded)
    and each caught beat with a missed one. ``predict(X, rr)`` -> labels. Returns the share of

    * ``missed + caught rhythm``: missed beats called SVEB once they get a caught beat's rhythm
      input (their own beat window kept);
    * ``missed + caught beat``: missed beats called SVEB with a caught beat's window (own
      rhythm kept);
    * ``caught + missed rhythm`` / ``caught + missed beat``: caught beats still called SVEB
      with a missed beat's rhythm / window;

    and ``pairs`` (the number of missed and of caught beats)."""
    missed, caught = np.asarray(missed), np.asarray(caught)
    if len(missed) == 0 or len(caught) == 0:
        raise ValueError("need at least one missed and one caught beat")
    rng = np.random.default_rng(seed)
    to_caught = rng.choice(caught, size=len(missed), replace=True)
    to_missed = rng.choice(missed, size=len(caught), replace=True)
    out = {
        "missed + caught rhythm": predict(X[missed], rr[to_caught]),
        "missed + caught beat": predict(X[to_caught], rr[missed]),
        "caught + missed rhythm": predict(X[caught], rr[to_missed]),
        "caught + missed beat": predict(X[to_missed], rr[caught]),
    }
    res = {k: float(np.mean(v == 1)) for k, v in out.items()}
    res["missed"], res["caught"] = float(len(missed)), float(len(caught))
    return res


def relevance_shares(model, X: np.ndarray, rr: np.ndarray, targets: np.ndarray,
                     methods: Sequence[str] = ("lrp", "ig"), ig_steps: int = 32
                     ) -> dict[str, np.ndarray]:
    """Per beat and method the shares (n, 3) of the absolute relevance in MLII, the chest lead
    and the rhythm input (:data:`utils.assess.modality.MODALITIES`) and IG's completeness gap."""

    out = {}
    res = explain_modalities(model, X, rr, np.asarray(targets), methods=methods,
                             ig_steps=ig_steps)
    for method, (shares, exp) in res.items():
        out[method] = shares[list(MODALITIES)].to_numpy(np.float64)
        if exp.delta is not None:
            out[f"{method}_delta"] = np.asarray(exp.delta, np.float64)
    return out


def study(model, beats, record: str = "232", per_group: int = 150,
          seed: int = config.SEED) -> dict[str, np.ndarray]:
    """The three views for a two-input multimodal ``model`` on the beats of ``record``
    (:class:`utils.data.aami.AamiBeats`). Relevance: at most ``per_group`` beats per group drawn at
    random (seeded); RR profile and interventions: every beat. Arrays to store."""

    sub = beats.of_records([record])
    pred = predict_proba(model, sub.X, sub.rr).argmax(axis=1)
    index = groups(sub.y, pred)

    def predict(X, rr):
        return predict_proba(model, X, rr).argmax(axis=1)

    swap = swap_intervention(predict, sub.X, sub.rr, index[GROUPS[1]], index[GROUPS[0]], seed)
    rng = np.random.default_rng(seed)
    picked = {g: np.sort(rng.choice(i, size=min(per_group, len(i)), replace=False))
              for g, i in index.items()}
    out: dict[str, np.ndarray] = {"pred": pred.astype(np.int8), "y": sub.y.astype(np.int8),
                                  "sample": sub.sample.astype(np.int64)}
    for k, g in enumerate(GROUPS):
        idx = picked[g]
        out[f"explained_{k}"] = idx
        for method, arr in relevance_shares(model, sub.X[idx], sub.rr[idx], pred[idx]).items():
            out[f"{method}_{k}"] = arr
    out["swap_keys"] = np.array(list(swap))
    out["swap_values"] = np.array(list(swap.values()))
    return out


def share_table(stored: dict):
    """Median modality shares per group and method from :func:`study` (rows group, method)."""
    import pandas as pd

    rows = []
    for k, g in enumerate(GROUPS):
        for method in ("lrp", "ig"):
            arr = stored[f"{method}_{k}"]
            rows.append({"group": g, "method": method.upper(), "beats": len(arr),
                         **{m: float(np.median(arr[:, j])) for j, m in enumerate(MODALITIES)}})
    return pd.DataFrame(rows).set_index(["group", "method"])


def swap_table(stored: dict) -> dict[str, float]:
    """The intervention of :func:`study` as a dict."""
    return {str(k): float(v) for k, v in zip(stored["swap_keys"], stored["swap_values"])}
