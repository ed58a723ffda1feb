"""Modality importance of the multimodal model across patient-wise folds, and against the
patients' age, sex and medication (issue 15; after Ellis et al., IEEE BIBE 2021).

The fold models ``multimodal_fold1..5`` (:data:`utils.models.multimodal.FOLDS`) were trained on
patient-wise folds of the 44 non-paced records: every record is a test record of exactly one
fold. For each fold, this module explains test beats of that fold only:

* :func:`fold_modality_analysis` - per test beat, the share of the absolute relevance in each
  modality (lead MLII, chest lead, rhythm features; :func:`utils.assess.modality.modality_shares`)
  under LRP (:func:`utils.explainers.lrp.lrp`) and Integrated Gradients (:func:`integrated_gradients_multi`),
  for correctly and incorrectly classified beats drawn stratified by record
  (:func:`utils.data.sampling.sample_by_record`); per-class shares per fold, their spread over folds
  (:func:`utils.assess.modality.fold_spread`), Kendall's W of the folds' modality rankings per class
  (:func:`utils.assess.modality.fold_concordance`, with an exact permutation p-value) and, as the
  ablation view, permutation importance per modality (:func:`modality_pfi`).
* :func:`record_modality_shares` - per record the mean LRP share of each modality, from the fold
  in which the record was a test record; :func:`clinical_associations` tests them against age,
  sex and medication classes (:func:`utils.data.clinical.association_tests`, BH-corrected), and
  :func:`plot_clinical` draws the one figure.

Rhythm input. The model standardises the nine RR features inside (``rhythm_norm``: ``(rr - mean)
/ sd`` with the training statistics). That layer is an affine map whose bias (``-mean / sd``)
LRP would treat as a neuron of its own, so relevance at the raw features in seconds would blow
up wherever a feature is near its mean. Both explainers therefore see the **standardised**
features (:func:`standardised_model`: the same function with ``rhythm_norm`` replaced by the
identity and the features standardised beforehand), just as the beat input is z-scored per beat.
The IG baseline is then zero for both inputs: a flat (z-scored) beat at the average rhythm of
the training patients.

Which class is explained: the **predicted** class (``target="pred"``, the model's decision; for
correct beats it is the true class). Beats are grouped by their **true** class.
"""
from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np

from utils.core import config
from utils.core.config import LOGITS_LAYER
from utils.core.explain import Explanation, check_targets
from utils.assess.modality import MODALITIES, fold_concordance, fold_spread, modality_shares
from utils.core.explain import score_model
from utils.explainers.integrated_gradients import quadrature
from utils.models.multimodal import FOLDS
from utils.models.multimodal import load_fold_predictions
from utils.explainers.lrp import lrp
from utils.data.aami import load_aami_beats
from utils.models.multimodal import CV_RECORDS, FOLDS, load_named, model_inputs
from utils.data.sampling import sample_by_record
from utils.models.multimodal import CV_RECORDS, FOLDS, load_named
from utils.data.clinical import association_tests
from utils.data.clinical import SAME_PATIENT, clinical_table
from utils.plotting import DIVERGING_CMAP, MIN_FONT_SIZE

#: Classes of the multimodal models (AAMI N, SVEB, VEB, F).
CLASSES: tuple[str, ...] = ("N", "SVEB", "VEB", "F")
#: Explainers compared here.
METHODS: tuple[str, ...] = ("lrp", "ig")


# ------------------------------------------------------------------------------------------------
# The model as the explainers see it
# ------------------------------------------------------------------------------------------------
def _norm_stats(model) -> tuple[np.ndarray, np.ndarray]:
    layer = model.get_layer("rhythm_norm")
    mean = np.asarray(layer.mean, dtype=np.float64).reshape(-1)
    var = np.asarray(layer.variance, dtype=np.float64).reshape(-1)
    return mean, var


def standardise_rhythm(model, rr: np.ndarray) -> np.ndarray:
    """RR features ``rr`` (n, 9) standardised with the model's ``rhythm_norm`` statistics
    (what that layer computes: ``(rr - mean) / max(sd, keras epsilon)``)."""
    import keras

    mean, var = _norm_stats(model)
    sd = np.maximum(np.sqrt(var), keras.config.epsilon())
    return ((np.asarray(rr, dtype=np.float64) - mean) / sd).astype(np.float32)


def standardised_model(model):
    """A copy of a two-input multimodal model whose ``rhythm`` input takes standardised features
    (:func:`standardise_rhythm`): ``rhythm_norm`` becomes a linear ``Activation`` (identity),
    every other layer keeps its name and weights. Same outputs as ``model`` on
    ``[X, standardise_rhythm(model, rr)]``."""
    import keras

    def clone(layer):
        if layer.name == "rhythm_norm":
            return keras.layers.Activation("linear", name="rhythm_norm")
        return layer.__class__.from_config(layer.get_config())

    copy = keras.models.clone_model(model, clone_function=clone)
    for layer in copy.layers:
        if layer.weights and layer.name != "rhythm_norm":
            layer.set_weights(model.get_layer(layer.name).get_weights())
    return copy


# ------------------------------------------------------------------------------------------------
# Explainers for a two-input model
# ------------------------------------------------------------------------------------------------
def _call(model, arrays: Sequence[np.ndarray], batch_size: int = 1024) -> np.ndarray:
    """Outputs of ``model`` on ``arrays`` by direct calls (``model.predict`` traces a new
    function for every model, seconds each on a loaded machine)."""
    arrays = [np.asarray(a, np.float32) for a in arrays]
    n = len(arrays[0])
    out = [np.asarray(model([a[s:s + batch_size] for a in arrays] if len(arrays) > 1
                            else arrays[0][s:s + batch_size], training=False))
           for s in range(0, n, batch_size)]
    return np.concatenate(out)


def integrated_gradients_multi(model, inputs: Sequence[np.ndarray], targets, *,
                               output: str = "logits", baselines=None, n_steps: int = 32,
                               method: str = "gausslegendre", max_batch: int = 2048
                               ) -> Explanation:
    """Integrated Gradients of a model with several inputs (all interpolated together).
    ``inputs``: one array per model input (same n); ``baselines``: ``None`` (zeros) or one array
    per input, broadcastable. Same quadrature as :mod:`utils.explainers.integrated_gradients` (alibi's
    weights); written here because that module explains single-input models only. Returns an
    :class:`~utils.core.explain.Explanation`: ``values`` the attributions of the first (beat) input,
    ``extras["inputs"]`` those of every input, ``delta`` the completeness gap
    ``sum(all attributions) - (F(x) - F(baseline))`` per beat.
    """
    import tensorflow as tf

    xs = [np.asarray(x, dtype=np.float32) for x in inputs]
    n = len(xs[0])
    if any(len(x) != n for x in xs) or n == 0:
        raise ValueError("inputs need the same, non-zero number of beats")
    bs = ([np.zeros_like(x) for x in xs] if baselines is None else
          [np.ascontiguousarray(np.broadcast_to(np.asarray(b, np.float32), x.shape))
           for b, x in zip(baselines, xs)])
    if len(bs) != len(xs):
        raise ValueError(f"{len(bs)} baselines for {len(xs)} inputs")
    net = score_model(model, output)
    t = check_targets(targets, n, int(net.output_shape[-1]))
    alphas, weights = quadrature(n_steps, method)
    chunk = max(1, int(max_batch) // int(n_steps))
    parts: list[list[np.ndarray]] = [[] for _ in xs]
    for s in range(0, n, chunk):
        x_c = [tf.constant(x[s:s + chunk]) for x in xs]
        b_c = [tf.constant(b[s:s + chunk]) for b in bs]
        m = int(x_c[0].shape[0])
        paths = [tf.reshape(b[None] + tf.reshape(alphas, (-1,) + (1,) * len(x.shape))
                            * (x - b)[None], (-1,) + tuple(x.shape[1:]))
                 for x, b in zip(x_c, b_c)]
        tt = tf.constant(np.tile(t[s:s + chunk], len(alphas)))
        with tf.GradientTape() as tape:
            tape.watch(paths)
            y = tf.gather(net(paths, training=False), tt, axis=1, batch_dims=1)
        grads = tape.gradient(y, paths)
        for i, (g, x, b) in enumerate(zip(grads, x_c, b_c)):
            g = tf.reshape(g, (len(alphas), m) + tuple(x.shape[1:]))
            parts[i].append((tf.tensordot(weights, g, axes=1) * (x - b)).numpy())
    attributions = [np.concatenate(p).astype(np.float64) for p in parts]

    def scores(arrays):
        out = _call(net, arrays)
        return out[np.arange(n), t].astype(np.float64)

    score, reference = scores(xs), scores(bs)
    total = sum(a.reshape(n, -1).sum(axis=1) for a in attributions)
    beat = next(i for i, a in enumerate(attributions) if a.ndim == 3)
    return Explanation(attributions[beat], t, "integrated_gradients", output,
                       delta=total - (score - reference), score=score, reference=reference,
                       extras={"inputs": attributions, "n_steps": int(n_steps)})


def modality_pfi(model, inputs: Sequence[np.ndarray], y: np.ndarray, *, repeats: int = 3,
                 seed: int = config.SEED, n_classes: int = len(CLASSES)):
    """Permutation importance of each modality (the ablation view), per true class.
    A modality is "switched off" by permuting it across the given beats (lead MLII: lead 0 of
    the beat input, chest lead: lead 1, rhythm features: rows of the rhythm input), ``repeats``
    times; the importance is the drop of each class's recall (fraction of its beats classified
    correctly). Permuted beats pair one patient's lead with another's: the out-of-distribution
    inputs the gradient-based view avoids. ``utils.explainers.pfi`` permutes segments of one beat input,
    hence this small version for several inputs.

    Returns a tidy DataFrame: class, modality, drop (mean over repeats), sd, n.
    """
    import pandas as pd

    xs = [np.asarray(a, dtype=np.float32) for a in inputs]
    y = np.asarray(y).astype(int)

    def recall(arrays):
        pred = _call(model, arrays).argmax(1)
        return np.array([np.mean(pred[y == c] == c) if np.any(y == c) else np.nan
                         for c in range(n_classes)])

    base = recall(xs)
    rng = np.random.default_rng(seed)
    rows = []
    for name in MODALITIES:
        drops = []
        for _ in range(int(repeats)):
            perm = rng.permutation(len(y))
            shuffled = [a.copy() for a in xs]
            if name == MODALITIES[2]:
                shuffled[1] = xs[1][perm]
            else:
                lead = MODALITIES.index(name)
                shuffled[0][:, :, lead] = xs[0][perm][:, :, lead]
            drops.append(base - recall(shuffled))
        drops = np.array(drops)
        for c in range(n_classes):
            if np.any(y == c):
                rows.append({"class": CLASSES[c], "modality": name,
                             "drop": float(drops[:, c].mean()),
                             "sd": float(drops[:, c].std(ddof=1)) if repeats > 1 else np.nan,
                             "n": int(np.sum(y == c))})
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------------------
# Consistency statistic
# ------------------------------------------------------------------------------------------------
def kendalls_w_permutation_p(w: float, m: int, n: int, n_perm: int = 20000,
                             seed: int = config.SEED) -> float:
    """P(W >= w) when ``m`` raters rank ``n`` items independently at random.
    Exact (all ``(n!)^m`` rankings) when that is at most 10^6 - e.g. 3 modalities and up to 7
    folds - else a Monte-Carlo estimate with ``n_perm`` draws. The chi-square p-value of
    :func:`utils.assess.modality.kendalls_w` is poor for so few items and raters.
    """
    if not np.isfinite(w):
        return float("nan")
    perms = np.array(list(itertools.permutations(range(1, n + 1))), dtype=float)
    def stat(rank_sums):
        s = ((rank_sums - rank_sums.mean(axis=-1, keepdims=True)) ** 2).sum(axis=-1)
        return 12 * s / (m ** 2 * (n ** 3 - n))
    if len(perms) ** m <= 10 ** 6:
        sums = np.zeros((1, n))
        for _ in range(m):      # every combination of one permutation per rater
            sums = (sums[:, None, :] + perms[None, :, :]).reshape(-1, n)
        ws = stat(sums)
    else:
        rng = np.random.default_rng(seed)
        ws = stat(perms[rng.integers(0, len(perms), size=(n_perm, m))].sum(axis=1))
    return float(np.mean(ws >= w - 1e-12))


def consistency(shares_by_fold: Mapping) -> "object":
    """Kendall's W per class over folds (:func:`utils.assess.modality.fold_concordance`) with the exact
    permutation p-value (``p_perm``) and the mean fold spread (sd) of the class's shares."""
    conc = fold_concordance(shares_by_fold)
    spread = fold_spread(shares_by_fold)
    sd = spread.groupby("class")["sd"].mean()
    conc["p_perm"] = [kendalls_w_permutation_p(w, int(m), int(k)) if np.isfinite(w) else np.nan
                      for w, m, k in zip(conc["W"], conc["folds"], conc["modalities"])]
    conc["mean_sd"] = conc["class"].map(sd)
    return conc


# ------------------------------------------------------------------------------------------------
# The fold analysis
# ------------------------------------------------------------------------------------------------
@dataclass
class FoldAnalysis:
    """Result of :func:`fold_modality_analysis` (all tables tidy pandas DataFrames).
    ``beats``: one row per explained beat and method (fold, record, sample, class, pred,
    outcome, method, one column per modality, ``relative_gap``: the LRP conservation gap or
    the IG completeness gap relative to the explained logit / its change from the baseline). ``shares``: per method, outcome ("correct" /
    "incorrect"), fold and class the mean shares and ``n``. ``spread``: their spread over folds
    (:func:`utils.assess.modality.fold_spread`). ``concordance``: Kendall's W per method, outcome and
    class (:func:`consistency`); ``matched``: the same for correct beats subsampled to the
    number of incorrect beats of each fold and class (so a difference in W is not just one of
    sample size), median over ``matched_draws`` draws. ``pfi``: recall drop per fold, class and
    modality. ``metrics``: AAMI test scores per fold (from the saved configs). ``samples``:
    records and beats behind each fold's sample per outcome and class (and how many were
    available). ``seconds``: wall-clock time per step and the process CPU time
    (``cpu_total``; the machine may be shared).
    """
    beats: object
    shares: object
    spread: object
    concordance: object
    matched: object
    pfi: object
    metrics: object
    samples: object = None
    seconds: dict = field(default_factory=dict)

    def summary(self):
        """Kendall's W (with ``p_perm``) and the mean fold sd of the shares per method, class
        and outcome - correct, incorrect, and correct with n matched to the incorrect beats
        (median over the draws) - one row per method and class (a small table to print)."""
        import pandas as pd

        c = self.concordance
        parts = []
        for outcome in ("correct", "incorrect"):
            part = c[c.outcome == outcome].set_index(["method", "class"])
            parts.append(part[["W", "p_perm", "mean_sd", "folds"]].add_suffix(f" {outcome}"))
        m = self.matched.set_index(["method", "class"])[["W", "mean_sd"]]
        parts.append(m.add_suffix(" correct, matched n"))
        out = pd.concat(parts, axis=1).reset_index()
        order = {k: i for i, k in enumerate(CLASSES)}
        return out.sort_values(["method", "class"], key=lambda col: col.map(
            lambda v: order.get(v, v) if col.name == "class" else v)).reset_index(drop=True)


def _metrics_row(name: str, cfg: dict) -> dict:
    res = cfg.get("test_fold", {})
    return {"fold": name, "test_records": len(cfg["test_records"]), "beats": res.get("n"),
            **{k: res.get(k) for k in ("accuracy", "SVEB Se", "SVEB +P", "VEB Se", "VEB +P",
                                       "F Se", "F +P")},
            "epochs_run": cfg.get("epochs_run"), "train_seconds": cfg.get("train_seconds")}


def fold_metrics(names: Sequence[str] | None = None):
    """AAMI scores of each fold model on its own test records (read from the saved configs,
    nothing is run): a DataFrame with one row per fold, records, beats, accuracy, Se and +P of
    SVEB, VEB and F, epochs and training seconds."""
    import json

    import pandas as pd

    rows = []
    for name in (list(FOLDS) if names is None else names):
        path = config.MODELS_DIR / name / "config.json"
        if not path.is_file():
            raise FileNotFoundError(f"No trained fold model at {path}: run `make models`.")
        rows.append(_metrics_row(name, json.loads(path.read_text())))
    return pd.DataFrame(rows)


def _fold_beats(name: str, beats):
    """The test beats of fold model ``name`` with its saved predictions (checked aligned)."""
    import json

    cfg = json.loads((config.MODELS_DIR / name / "config.json").read_text())
    test = beats.of_records(cfg["test_records"])
    saved = load_fold_predictions(name)
    if len(saved["pred"]) != len(test) or not (
            np.array_equal(saved["sample"], test.sample)
            and np.array_equal(saved["record"], test.record.astype(saved["record"].dtype))):
        raise ValueError(f"saved predictions of {name} do not match its test beats; "
                         "rebuild the beats or retrain with `make models`")
    return cfg, test, saved["pred"].astype(int)


def explain_modalities(model, X: np.ndarray, rr: np.ndarray, targets, *,
                       methods: Sequence[str] = METHODS, lrp_rule: str = "epsilon",
                       lrp_epsilon: float = 0.25, ig_steps: int = 32) -> dict:
    """Per-beat modality shares of a two-input multimodal ``model`` for beats ``X`` with RR
    features ``rr`` and explained classes ``targets``: method -> (shares DataFrame,
    Explanation). Both explainers run on :func:`standardised_model`."""

    net = standardised_model(model)
    inputs = [np.asarray(X, np.float32), standardise_rhythm(model, rr)]
    out = {}
    for method in methods:
        if method == "lrp":
            exp = lrp(net, inputs, targets, rule=lrp_rule, epsilon=lrp_epsilon)
        elif method == "ig":
            exp = integrated_gradients_multi(net, inputs, targets, n_steps=ig_steps)
        else:
            raise ValueError(f"method must be in {METHODS}, got {method!r}")
        out[method] = (modality_shares(exp), exp)
    return out


def fold_modality_analysis(names: Sequence[str] | None = None, beats=None, *,
                           per_record_correct: int = 2, per_record_incorrect: int = 2,
                           methods: Sequence[str] = METHODS, lrp_rule: str = "epsilon",
                           lrp_epsilon: float = 0.25, ig_steps: int = 16,
                           pfi_per_record: int | None = 5, pfi_repeats: int = 2,
                           matched_draws: int = 20, seed: int = config.SEED,
                           load_model: Callable | None = None) -> FoldAnalysis:
    """Modality importance of the fold models on their own test beats, and its consistency.
    For each fold model in ``names`` (default: every :data:`utils.models.multimodal.FOLDS` model), the
    test beats of that fold are split by the saved predictions into correct and incorrect ones
    and sampled stratified by record within each true class (at most ``per_record_correct`` /
    ``per_record_incorrect`` beats per record and class; class Q is left out). Each sampled beat
    is explained with LRP (``lrp_rule``, default epsilon) and IG (``ig_steps``) for its
    predicted class; the shares of the absolute relevance per modality are averaged per fold,
    outcome and true class. Consistency over folds: Kendall's W per class (folds = raters,
    modalities = items) with an exact permutation p-value, and the spread (sd, range) of every
    share over folds; the matched-n control repeats W for correct beats drawn in the numbers of
    the incorrect ones. ``pfi_per_record`` (``None`` to skip): beats per record and class for
    the permutation importance per modality (all outcomes). ``load_model``: name -> model (tests).

    With the defaults it explains about 350 beats per method in all (see ``samples``).
    """
    import pandas as pd

    clock = {"load": 0.0, "explain": 0.0, "pfi": 0.0}
    cpu0 = time.process_time()
    names = list(FOLDS) if names is None else list(names)
    load_model = load_named if load_model is None else load_model
    t0 = time.perf_counter()
    beats = beats if beats is not None else load_aami_beats(CV_RECORDS)
    clock["load"] += time.perf_counter() - t0
    rows, pfi_rows, metrics, samples = [], [], [], []
    for fold, name in enumerate(names):
        t0 = time.perf_counter()
        cfg, test, pred = _fold_beats(name, beats)
        model = load_model(name)
        clock["load"] += time.perf_counter() - t0
        metrics.append(_metrics_row(name, cfg))
        keep = test.y < len(CLASSES)
        correct = sample_by_record(test.y, test.record, per_record_correct,
                                   mask=keep & (pred == test.y), seed=seed + fold)
        wrong = sample_by_record(test.y, test.record, per_record_incorrect,
                                 mask=keep & (pred != test.y), seed=seed + fold)
        for outcome_name, drawn, pool_mask in (
                ("correct", correct, keep & (pred == test.y)),
                ("incorrect", wrong, keep & (pred != test.y))):
            samples.append(_sample_table(test, drawn.indices, pool_mask).assign(
                fold=name, outcome=outcome_name))
        idx = np.concatenate([correct.indices, wrong.indices])
        outcome = np.array(["correct"] * len(correct) + ["incorrect"] * len(wrong))
        t0 = time.perf_counter()
        if len(idx):
            shares = explain_modalities(model, test.X[idx], test.rr[idx], pred[idx],
                                        methods=methods, lrp_rule=lrp_rule,
                                        lrp_epsilon=lrp_epsilon, ig_steps=ig_steps)
            for method, (table, exp) in shares.items():
                frame = table.copy()
                ref = exp.score_change
                frame["relative_gap"] = np.abs(exp.delta) / np.maximum(np.abs(ref), 1e-6)
                frame.insert(0, "fold", name)
                frame.insert(1, "record", test.record[idx])
                frame.insert(2, "sample", test.sample[idx])
                frame.insert(3, "class", [CLASSES[c] for c in test.y[idx]])
                frame.insert(4, "pred", [CLASSES[c] for c in pred[idx]])
                frame.insert(5, "outcome", outcome)
                frame.insert(6, "method", method)
                rows.append(frame)
        clock["explain"] += time.perf_counter() - t0
        if pfi_per_record:
            t0 = time.perf_counter()
            pool = sample_by_record(test.y, test.record, pfi_per_record, mask=keep,
                                    seed=seed + 100 + fold).indices
            p = modality_pfi(model, model_inputs(model, test.X[pool], test.rr[pool]),
                             test.y[pool], repeats=pfi_repeats, seed=seed + fold)
            p.insert(0, "fold", name)
            pfi_rows.append(p)
            clock["pfi"] += time.perf_counter() - t0
    per_beat = pd.concat(rows, ignore_index=True)
    shares, spread, conc, matched = _summaries(per_beat, matched_draws, seed)
    pfi = pd.concat(pfi_rows, ignore_index=True) if pfi_rows else pd.DataFrame()
    samples = pd.concat(samples, ignore_index=True)
    samples = samples[["fold", "outcome", *[c for c in samples.columns
                                            if c not in ("fold", "outcome")]]]
    clock["total"] = clock["load"] + clock["explain"] + clock["pfi"]
    clock["cpu_total"] = time.process_time() - cpu0
    return FoldAnalysis(per_beat, shares, spread, conc, matched, pfi, pd.DataFrame(metrics),
                        samples, {k: round(v, 2) for k, v in clock.items()})


def _sample_table(test, idx: np.ndarray, pool: np.ndarray):
    """Records and beats behind a drawn sample, per AAMI class (and what was available)."""
    import pandas as pd

    rows = []
    for c, cls in enumerate(CLASSES):
        sel = idx[test.y[idx] == c]
        avail = pool & (test.y == c)
        rows.append({"class": cls, "beats": int(len(sel)),
                     "records": int(len(np.unique(test.record[sel]))),
                     "beats_available": int(avail.sum()),
                     "records_available": int(len(np.unique(test.record[avail])))})
    return pd.DataFrame(rows)


def _class_tables(frame) -> dict:
    """fold -> class-mean shares (index: class) of one method and outcome."""
    out = {}
    for fold, part in frame.groupby("fold", sort=False):
        t = part.groupby("class", sort=False)[list(MODALITIES)].mean()
        t["n"] = part.groupby("class", sort=False).size()
        t.index.name = "class"
        out[fold] = t.loc[[c for c in CLASSES if c in t.index]]
    return out


def _summaries(per_beat, matched_draws: int, seed: int):
    import pandas as pd

    shares, spread, conc, matched = [], [], [], []
    for (method, outcome), frame in per_beat.groupby(["method", "outcome"], sort=False):
        tables = _class_tables(frame)
        for fold, t in tables.items():
            shares.append(t.reset_index().assign(method=method, outcome=outcome, fold=fold))
        spread.append(fold_spread(tables).assign(method=method, outcome=outcome))
        conc.append(consistency(tables).assign(method=method, outcome=outcome))
    rng = np.random.default_rng(seed)
    for method, frame in per_beat.groupby("method", sort=False):
        good, bad = frame[frame.outcome == "correct"], frame[frame.outcome == "incorrect"]
        need = bad.groupby(["fold", "class"]).size()
        draws = []
        for _ in range(int(matched_draws)):
            parts = []
            for (fold, cls), k in need.items():
                pool = good[(good.fold == fold) & (good["class"] == cls)]
                if len(pool):
                    parts.append(pool.iloc[rng.choice(len(pool), min(k, len(pool)),
                                                      replace=False)])
            if parts:
                sub = pd.concat(parts)
                draws.append(consistency(_class_tables(sub)))
        if draws:
            d = pd.concat(draws).groupby("class", sort=False)[["W", "mean_sd"]].median()
            matched.append(d.reset_index().assign(method=method))
    shares = pd.concat(shares, ignore_index=True)
    shares = shares[["method", "outcome", "fold", "class", *MODALITIES, "n"]]
    spread = pd.concat(spread, ignore_index=True)
    spread = spread[["method", "outcome", *[c for c in spread.columns
                                            if c not in ("method", "outcome")]]]
    conc = pd.concat(conc, ignore_index=True)
    conc = conc[["method", "outcome", *[c for c in conc.columns
                                        if c not in ("method", "outcome")]]]
    matched = pd.concat(matched, ignore_index=True) if matched else pd.DataFrame(
        columns=["class", "W", "mean_sd", "method"])
    return shares, spread, conc, matched


# ------------------------------------------------------------------------------------------------
# Clinical and demographic variables
# ------------------------------------------------------------------------------------------------
def record_modality_shares(names: Sequence[str] | None = None, beats=None, *,
                           per_record: int = 20, classes: Sequence[str] | None = ("N",),
                           correct_only: bool = True, lrp_rule: str = "epsilon",
                           lrp_epsilon: float = 0.25, seed: int = config.SEED,
                           load_model: Callable | None = None):
    """Per record: the mean LRP share of each modality over its beats, explained by the fold
    model for which the record was a test record (so every record is explained by a model that
    never saw that patient).

    ``classes``: true classes whose beats count (default N only: every record has N beats, and
    a record's share would otherwise mostly reflect its class mix; ``None`` = all four), at most
    ``per_record`` per record and class (:func:`utils.data.sampling.sample_by_record`);
    ``correct_only``: only correctly classified beats. Returns a DataFrame indexed by record:
    one column per modality, ``n_beats`` and ``fold``.
    """
    import pandas as pd

    names = list(FOLDS) if names is None else list(names)
    load_model = load_named if load_model is None else load_model
    beats = beats if beats is not None else load_aami_beats(CV_RECORDS)
    wanted = (list(range(len(CLASSES))) if classes is None
              else [CLASSES.index(c) for c in classes])
    frames = []
    for fold, name in enumerate(names):
        _, test, pred = _fold_beats(name, beats)
        mask = np.isin(test.y, wanted) & ((pred == test.y) if correct_only else True)
        idx = sample_by_record(test.y, test.record, per_record, mask=mask,
                               seed=seed + fold).indices
        if not len(idx):
            continue
        shares, _ = explain_modalities(load_model(name), test.X[idx], test.rr[idx], pred[idx],
                                       methods=("lrp",), lrp_rule=lrp_rule,
                                       lrp_epsilon=lrp_epsilon)["lrp"]
        shares["record"] = test.record[idx]
        shares["fold"] = name
        frames.append(shares)
    frame = pd.concat(frames, ignore_index=True)
    out = frame.groupby("record")[list(MODALITIES)].mean()
    out["n_beats"] = frame.groupby("record").size()
    out["fold"] = frame.groupby("record")["fold"].first()
    return out


def clinical_associations(record_shares, table=None, **options):
    """Tests of the per-record modality shares (:func:`record_modality_shares`) against age,
    sex and medication classes: :func:`utils.data.clinical.association_tests` on the modality
    columns (records of one patient averaged; Benjamini-Hochberg over the whole table)."""

    return association_tests(record_shares[list(MODALITIES)], table, **options)


def plot_clinical(record_shares, tests, table=None, modality: str = MODALITIES[2],
                  title: str = "Multimodal fold models, LRP-epsilon, share per patient "
                               "(correct N beats)"):
    """One figure of the clinical tests: (left) the effect size of every test (rows: age, sex,
    medication classes that were tested; columns: modalities) on the diverging map centred at
    zero with a colour bar, BH-corrected p-values written in the cells; (right) the per-patient
    share of ``modality`` against age, marker by sex. Returns the figure."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import TwoSlopeNorm

    table = clinical_table(list(record_shares.index)) if table is None else table
    run = tests[tests["p"].notna()]
    variables = list(dict.fromkeys(run["variable"]))
    grid = np.full((len(variables), len(MODALITIES)), np.nan)
    p_bh = np.full_like(grid, np.nan)
    for _, r in run.iterrows():
        i, j = variables.index(r["variable"]), list(MODALITIES).index(r["outcome"])
        grid[i, j], p_bh[i, j] = r["effect_size"], r["p_bh"]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 0.45 * len(variables) + 2.4),
                                  gridspec_kw={"width_ratios": [1.3, 1]}, layout="constrained")
    im = ax.imshow(grid, cmap=DIVERGING_CMAP, norm=TwoSlopeNorm(0.0, -1.0, 1.0), aspect="auto")
    for i in range(grid.shape[0]):
        for j in range(grid.shape[1]):
            if np.isfinite(grid[i, j]):
                ax.text(j, i, f"p_BH={p_bh[i, j]:.2f}", ha="center", va="center",
                        fontsize=MIN_FONT_SIZE)
    ax.set_xticks(range(len(MODALITIES)), MODALITIES)
    labels = [f"{v} (rho)" if v == "age" else (f"{v} (F vs M)" if v == "sex" else v)
              for v in variables]
    ax.set_yticks(range(len(variables)), labels)
    ax.grid(False)
    ax.set_title("age: Spearman rho; sex, medication (with vs without):\nrank-biserial r")
    fig.colorbar(im, ax=ax, label="effect size", pad=0.02)
    # right: one point per patient
    shares = record_shares[list(MODALITIES)].copy()
    shares.index = shares.index.astype(str)
    patient = [SAME_PATIENT.get(r, r) for r in shares.index]
    per_patient = shares.groupby(patient).mean()
    info = table.loc[per_patient.index]
    known = info["age"].notna().to_numpy()
    for sex, marker in (("F", "o"), ("M", "s")):
        m = (info["sex"] == sex).to_numpy() & known
        ax2.scatter(info["age"][m].astype(float), per_patient[modality][m], marker=marker,
                    label=sex, alpha=0.8)
    ax2.set_xlabel("age (years)")
    ax2.set_ylabel(f"share of |relevance|: {modality}")
    ax2.set_ylim(0, max(1e-3, float(per_patient[modality].max()) * 1.1))
    ax2.legend(title="sex", loc="best")
    ax2.set_title(f"{modality} vs age\n({int(known.sum())} patients with known age)")
    fig.suptitle(f"{title} ({len(per_patient)} patients)")
    return fig
