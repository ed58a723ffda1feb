"""Week 4 capstone: every explanation method of the course evaluated on every course model.

The full grid - faithfulness (deletion/insertion with ROAD's noisy linear imputation and the flat
fill, against random orders), stability (max-sensitivity, seed-to-seed, method-to-method) and
plausibility (relevance mass in the measured wave windows against chance) for LIME, Kernel SHAP,
gradient SHAP, CAM, Grad-CAM, Integrated Gradients, LRP, saliency, gradient x input and attention,
on the CNN and the LSTM of the holdout and the patient split (and the holdout LSTM + attention) - costs many minutes on 2 cores (LIME, Kernel SHAP, gradient
SHAP and the completeness-checked IG are rerun for every noise draw and seed), more than the
3-minute budget of a notebook. Week 4 runs :func:`run_grid` live with ``cheap_only=True`` (the
single-pass methods: CAM, Grad-CAM, LRP, saliency, gradient x input, attention); this script
computes the full grid on the live sample and writes three CSV files to ``data/evaluation/`` (``python -m
utils.studies.evaluation_grid``, or ``make evaluation``; ``--only split:model`` runs one model,
for parallel processes, and ``--merge`` joins them). The settings below are the one place
where the sample and the explainers' options are defined (the notebook imports them).

The stored full grid (what week 4 shows): :func:`course_grid` returns the same three tables as
:func:`run_grid` for every method (saliency, gradient x input, CAM, Grad-CAM, LRP, attention,
and the slow LIME, Kernel SHAP, gradient SHAP and completeness-checked IG) on all five models,
computed once and stored with :func:`utils.core.results.cached` (one file
``data/results/evaluation_grid_<model>-<key>.npz`` per model, the DataFrames as plain column
arrays; reading all five takes a few seconds). The key covers the sampled beats, the gradient
SHAP background, the model's weights, the code the computation reaches (every function of
``utils`` that :func:`grid_model` calls, found by :func:`utils.core.results.code_reached`: the
explainers, the metrics, the sampling; not the plots, not the docstrings) and the settings.

Subsampling (and what it costs):

* live check (:func:`run_grid`, ``PER_RECORD, MAX_RECORDS = 1, 1``): one test beat per record
  from one record per class (8 beats per split); medians over 8 beats of 8 classes are a first
  look, not a per-class result.
* stored grid (:func:`course_grid`, ``COURSE_PER_RECORD, COURSE_MAX_RECORDS = 1, 4``): one beat
  from each of up to 4 records per class, so every per-class number of a class with >= 2
  records rests on several patients: holdout 31 beats (4 records per class, 3 for f, which has
  3), patient split 25 beats (N, V, A, F 4 records; R 3; L, f and / 2 each, all the split has).
  The single-pass methods are evaluated on these beats. The slow methods (LIME, Kernel SHAP,
  gradient SHAP, IG) are evaluated on ``SLOW_MAX_RECORDS = 1`` record per class (8 beats per
  split), with their own random baseline: their rows carry ``tier="slow"``, the others
  ``tier="all"``. Why: on the shared 2-core machine the first try, every method on the 31
  holdout beats, had not finished the holdout CNN after 4 minutes (at a load of 6-10); the
  measured full CNN grid on 8 beats costs 42 s of CPU, and the LSTMs cost more (IG with up to
  512 steps, LIME/SHAP samples through a recurrent net), so all methods on 4 records per class
  would have taken well over 15 minutes. Measured cost of the stored grid as committed
  (holdout and patient split in two processes, on the shared 2-core machine at a load of 7-11):
  CNN 360 s / LSTM 407 s / LSTM + attention 248 s wall for the holdout split (1075 s),
  CNN 345 s / LSTM 353 s for the patient split (753 s); about 18 minutes wall in all, roughly
  5 minutes of CPU (each process got about 0.16 of a core). Compare the slow methods with the
  ``tier="slow"`` random row, not the ``"all"`` one: the random deletion area moves with the
  sample (holdout LSTM: 0.38 on the 31 beats, 0.52 on the 8).
"""
from __future__ import annotations

import argparse
import functools
import time
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from utils.core import config
from utils.core.stored_frames import arrays_to_frames, frames_to_arrays
from utils.data.sampling import sample_by_record
from utils.explainers.registry import methods_for
from utils.assess import evaluate as ev
from utils.core.explain import predict_scores
from utils.data.mitdb import get_split, load_beats
from utils.models.catalog import load_trained
from utils.core.results import cached
from utils.assess.waves import wave_windows

#: Beats per record and records per class of the evaluation sample.
PER_RECORD, MAX_RECORDS = 1, 1
#: The sample of the stored full grid (:func:`course_grid`): beats per record, records per
#: class, and records per class for the slow methods (LIME, Kernel SHAP, gradient SHAP, IG).
COURSE_PER_RECORD, COURSE_MAX_RECORDS, SLOW_MAX_RECORDS = 1, 4, 1
#: Models evaluated, per split (the attention model exists for the holdout split only).
MODELS: dict[str, dict[str, str]] = {
    "holdout": {"CNN": "cnn_holdout", "LSTM": "lstm_holdout", "LSTM + attention": "attention_holdout"},
    "patient": {"CNN": "cnn_patient", "LSTM": "lstm_patient"},
}
#: Cheap settings of the expensive explainers (the price: noisier maps, see the seed rows).
LIME_SAMPLES, SHAP_SAMPLES, GRADSHAP_SAMPLES = 100, 64, 16
#: Integrated Gradients: Gauss-Legendre steps tried in turn, completeness tolerance.
IG_STEPS, IG_TOLERANCE = (32, 128, 512), 0.03
#: Metric settings (utils.assess.evaluate.evaluate_methods).
N_RANDOM, SENSITIVITY_DRAWS, RADIUS, SEEDS = 2, 2, 0.05, (1, 2)
#: Wave windows whose "P wave" is not a P wave (ventricular and paced beats).
NO_P_WAVE = ("V", "/", "f")
WAVES = ("P wave", "QRS", "ST-T", "pacing spike")
#: Where the grid is written.
OUT_DIR = config.DATA_DIR / "evaluation"


def sample_beats(data, split, per_record: int = PER_RECORD, max_records: int = MAX_RECORDS):
    """The evaluation beats of a split's test part: :func:`utils.data.sampling.sample_by_record`
    with ``per_record`` beat from at most ``max_records`` records per class. Returns
    ``(indices into data, RecordSample)``."""

    pick = sample_by_record(data.y[split.test], data.record[split.test], per_record,
                            max_records=max_records, seed=config.SEED)
    return split.test[pick.indices], pick


def beat_windows(y, windows: Mapping[str, Mapping[str, tuple[int, int]]] | None = None
                 ) -> dict[str, np.ndarray]:
    """Per-beat wave windows ``{wave: (n, 2) samples}`` from each beat's class (measured windows
    of :func:`utils.assess.waves.wave_windows` unless ``windows`` = ``{class: {wave: (a, b)}}``); NaN
    where the class has no such wave (no pacing spike; no P wave for ``NO_P_WAVE``)."""
    if windows is None:

        windows = {c: wave_windows(c) for c in config.CLASSES}
    y = np.asarray(y, dtype=int)
    out = {}
    for wave in WAVES:
        arr = np.full((len(y), 2), np.nan)
        for i, c in enumerate(y):
            cls = config.CLASSES[c]
            if wave in windows[cls] and not (wave == "P wave" and cls in NO_P_WAVE):
                arr[i] = windows[cls][wave]
        out[wave] = arr
    return out


class Recorder:
    """An explainer that keeps the result of its first call (the map of the unperturbed beats,
    which :func:`utils.assess.evaluate.evaluate_methods` computes first), so the maps can be reused for
    per-class tables without explaining the beats twice."""

    def __init__(self, explainer: Callable):
        self.explainer = explainer
        self.first = None

    def __call__(self, model, X, targets, **options):
        exp = self.explainer(model, X, targets, **options)
        if self.first is None:
            self.first = exp
        return exp


#: Options the grid gives each method (the rest are the method's declared defaults).
GRID_OPTIONS: dict[str, dict] = {
    "lime": {"n_samples": LIME_SAMPLES},
    "kernel_shap": {"n_samples": SHAP_SAMPLES},
    "gradient_shap": {"n_samples": GRADSHAP_SAMPLES},
    "integrated_gradients_checked": {"baselines": "median", "steps": IG_STEPS,
                                     "tolerance": IG_TOLERANCE},
    "lrp": {"rule": "epsilon"},
}
#: The grid runs the completeness-checked IG only (the course's rule), not its fixed-step forms.
SKIPPED: tuple[str, ...] = ("integrated_gradients", "integrated_gradients_batched")


def grid_methods(model_name: str, cheap_only: bool = False) -> list:
    """The local attribution methods of the registry that fit ``model_name`` and that the grid
    runs (``cheap_only``: the single-pass ones, for the live check)."""
    return [m for m in methods_for(model_name, family="attribution", scope="local",
                                   single_pass=True if cheap_only else None)
            if m.name not in SKIPPED]


def explainers_for(model_name: str, background: np.ndarray, cheap_only: bool = False
                   ) -> dict[str, Callable]:
    """``{label: explainer}`` for a course model, read from the method registry
    (:func:`utils.explainers.registry.methods_for`) with the grid's options; gradient SHAP
    draws its references from ``background``."""
    out: dict[str, Callable] = {}
    for m in grid_methods(model_name, cheap_only):
        options = dict(GRID_OPTIONS.get(m.name, {}))
        if m.name == "gradient_shap":
            options["background"] = background
        out[m.label] = functools.partial(m.function, **options) if options else m.function
    return out


def stochastic_labels(model_name: str) -> dict[str, str]:
    """``{label: "seed"}`` of the grid's methods that draw random numbers (their stability is
    measured over :data:`SEEDS`)."""
    return {m.label: "seed" for m in grid_methods(model_name) if m.stochastic}


def evaluate_model(model, X, targets, y, explainers: Mapping[str, Callable],
                   stochastic: Mapping[str, str] | None = None):
    """Run :func:`utils.assess.evaluate.evaluate_methods` with the course settings. Returns
    ``(tidy, maps)``: the tidy method x metric rows and each method's Explanation."""

    rec = {name: Recorder(f) for name, f in explainers.items()}
    tidy = ev.evaluate_methods(rec, model, X, targets, windows=beat_windows(y),
                               stochastic={k: v for k, v in (stochastic or {}).items()
                                           if k in rec},
                               seeds=SEEDS, n_random=N_RANDOM,
                               sensitivity_draws=SENSITIVITY_DRAWS, radius=RADIUS)
    return tidy, {name: r.first for name, r in rec.items()}


def _background(data, split, max_records: int = MAX_RECORDS) -> np.ndarray:
    """Training beats for gradient SHAP: one per record, at most ``max_records`` per class."""
    pick = sample_by_record(data.y[split.train], data.record[split.train], 1,
                            max_records=max_records, seed=config.SEED)
    return data.X[split.train[pick.indices]]


def grid_model(model, X, y, background, name: str, split_name: str, label: str,
               cheap_only: bool = False, methods: tuple[str, ...] | None = None):
    """One model's part of the grid: ``(metrics, per_class, agreement)`` tidy DataFrames for
    the beats ``X`` (true classes ``y``), explained for the predicted class. ``methods``: only
    these explainers (default all of :func:`explainers_for`)."""
    import pandas as pd

    explainers = explainers_for(name, background, cheap_only)
    if methods is not None:
        explainers = {k: f for k, f in explainers.items() if k in methods}
    pred = predict_scores(model, X, "probs").argmax(axis=1)
    tidy, maps = evaluate_model(model, X, pred, y, explainers, stochastic_labels(name))
    if "IG" in maps:
        extras = maps["IG"].extras
        tidy = pd.concat([tidy, pd.DataFrame([
            {"method": "IG", "metric": "ig_max_rel_error",
             "value": float(np.max(extras["relative_error"])), "n": len(X)},
            {"method": "IG", "metric": "ig_flagged",
             "value": float(np.sum(extras["flagged"])), "n": len(X)}])])
    metrics = tidy.assign(split=split_name, model=label)
    per_class = [ev.wave_mass_table(exp, y, beat_windows(y)).reset_index()
                 .assign(split=split_name, model=label, method=method)
                 for method, exp in maps.items()]
    agree = None
    if len(maps) >= 2:
        ma = ev.method_agreement(maps).groupby(["method_a", "method_b"], sort=False)[
            ["spearman", "top_segment"]].agg({"spearman": "median", "top_segment": "mean"})
        agree = ma.reset_index().assign(split=split_name, model=label)
    return metrics, pd.concat(per_class, ignore_index=True), agree


def run_grid(data=None, models: Mapping[str, Mapping[str, str]] = MODELS, log=print,
             cheap_only: bool = False):
    """The grid: ``(metrics, per_class, agreement)`` tidy DataFrames (see module doc);
    ``cheap_only``: the single-pass methods only (what week 4 runs live)."""
    import pandas as pd

    data = load_beats(progress=False) if data is None else data
    metrics, per_class, agree = [], [], []
    for split_name, names in models.items():
        split = get_split(data, split_name)
        idx, pick = sample_beats(data, split)
        background = _background(data, split)
        X, y = data.X[idx], data.y[idx]
        log(f"{split_name}: {len(idx)} beats\n{pick}")
        for label, name in names.items():
            model = load_trained(name, data=data)
            m, pc, ag = grid_model(model, X, y, background, name, split_name, label, cheap_only)
            metrics.append(m)
            per_class.append(pc)
            if ag is not None:
                agree.append(ag)
                log(f"  {label} ({name}): {pc.method.nunique()} methods")
    return (pd.concat(metrics, ignore_index=True), pd.concat(per_class, ignore_index=True),
            pd.concat(agree, ignore_index=True))


# ------------------------------------------------------------------------------------------------
# The full grid, computed once and stored (utils.core.results)
# ------------------------------------------------------------------------------------------------
def course_grid(data=None, recompute: bool = False, log=print,
                models: Mapping[str, Mapping[str, str]] = MODELS):
    """The full grid - every method (LIME, Kernel SHAP, gradient SHAP and completeness-checked
    IG included) on every course model - as :func:`run_grid`'s ``(metrics, per_class,
    agreement)``, on the course sample (``COURSE_PER_RECORD`` beat from at most
    ``COURSE_MAX_RECORDS`` records per class; the slow methods on ``SLOW_MAX_RECORDS``).

    Computed once per model and stored with :func:`utils.core.results.cached` (one file
    ``data/results/evaluation_grid_<model>-<key>.npz`` per model, keyed on the sampled beats,
    the background, the model's weights, the code the computation reaches (not the plots) and
    the settings);
    reading the stored files takes a few seconds. ``recompute=True`` recomputes (many minutes,
    see the module docstring). The tables carry a ``tier`` column: ``all`` (rows computed on the
    course sample) or ``slow`` (the slow methods and their own random baseline, on the smaller
    sample) where the two samples differ.
    """
    import pandas as pd

    data = load_beats(progress=False) if data is None else data
    parts: dict[str, list] = {p: [] for p in PARTS}
    for split_name, names in models.items():
        split = get_split(data, split_name)
        idx, pick = sample_beats(data, split, COURSE_PER_RECORD, COURSE_MAX_RECORDS)
        slow_idx, slow_pick = sample_beats(data, split, COURSE_PER_RECORD, SLOW_MAX_RECORDS)
        background = _background(data, split)
        log(f"{split_name}: {len(idx)} beats (slow methods: {len(slow_idx)})\n{pick}")
        for label, name in names.items():
            model = load_trained(name, data=data)

            def compute(model=model, name=name, label=label, split_name=split_name):
                start = time.time()
                out = {}
                if SLOW_MAX_RECORDS == COURSE_MAX_RECORDS:
                    tables = grid_model(model, data.X[idx], data.y[idx], background, name,
                                        split_name, label)
                    tables = [None if t is None else t.assign(tier="all") for t in tables]
                else:
                    cheap = grid_model(model, data.X[idx], data.y[idx], background, name,
                                       split_name, label, cheap_only=True)
                    slow_methods = tuple(set(explainers_for(name, background))
                                         - set(explainers_for(name, background, True)))
                    slow = grid_model(model, data.X[slow_idx], data.y[slow_idx], background,
                                      name, split_name, label, methods=slow_methods)
                    tables = [pd.concat([c.assign(tier="all"), s.assign(tier="slow")],
                                        ignore_index=True)
                              for c, s in zip(cheap, slow)]
                out.update(frames_to_arrays(dict(zip(PARTS, tables))))
                out["seconds"] = np.array(time.time() - start)
                log(f"  {label} ({name}): computed in {float(out['seconds']):.0f} s")
                return out

            arrays = cached(f"evaluation_grid_{name}", compute,
                            inputs=[data.X[idx], data.y[idx], data.X[slow_idx],
                                    data.y[slow_idx], background],
                            models=[model],
                            params={"name": name, "split": split_name, "label": label,
                                    "course": [COURSE_PER_RECORD, COURSE_MAX_RECORDS,
                                               SLOW_MAX_RECORDS],
                                    "lime": [LIME_SAMPLES, SHAP_SAMPLES, GRADSHAP_SAMPLES],
                                    "ig": [list(IG_STEPS), IG_TOLERANCE],
                                    "metrics": [N_RANDOM, SENSITIVITY_DRAWS, RADIUS,
                                                list(SEEDS)],
                                    "seed": config.SEED},
                            recompute=recompute)
            frames = arrays_to_frames(arrays)
            for part in PARTS:
                parts[part].append(frames[part])
    return tuple(pd.concat(parts[p], ignore_index=True) for p in PARTS)


def read_grid(out_dir: Path = OUT_DIR):
    """The committed grid ``(metrics, per_class, agreement)`` written by :func:`main`."""
    import pandas as pd

    return tuple(pd.read_csv(out_dir / f"{part}.csv") for part in PARTS)


PARTS = ("metrics", "per_class", "agreement")


def merge_parts(out_dir: Path = OUT_DIR) -> None:
    """Concatenate the per-model files of ``--only`` runs (``out_dir/parts``) in ``MODELS``
    order into the three grid files."""
    import pandas as pd

    for part in PARTS:
        tables = [pd.read_csv(out_dir / "parts" / f"{split}_{name}_{part}.csv")
                  for split, names in MODELS.items() for name in names.values()]
        pd.concat(tables, ignore_index=True).to_csv(out_dir / f"{part}.csv", index=False,
                                                    float_format="%.6g")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    parser.add_argument("--only", help="split:model_name (e.g. holdout:cnn_holdout), to run the "
                        "models in parallel processes; then --merge")
    parser.add_argument("--merge", action="store_true", help="merge the --only parts")
    args = parser.parse_args(argv)
    if args.merge:
        merge_parts(args.out)
        return
    start = time.time()
    models = MODELS
    if args.only:
        split_name, name = args.only.split(":")
        models = {split_name: {k: v for k, v in MODELS[split_name].items() if v == name}}
    parts = run_grid(models=models)
    out = args.out / "parts" if args.only else args.out
    out.mkdir(parents=True, exist_ok=True)
    prefix = f"{args.only.replace(':', '_')}_" if args.only else ""
    for part, table in zip(PARTS, parts):
        table.to_csv(out / f"{prefix}{part}.csv", index=False, float_format="%.6g")
    print(f"written to {out} in {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
