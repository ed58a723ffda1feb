"""Week 4 capstone: every explanation method of the course evaluated on every course model.

The full grid - faithfulness (deletion/insertion with ROAD's noisy linear imputation and the flat
fill, against random orders), stability (max-sensitivity, seed-to-seed, method-to-method) and
plausibility (relevance mass in the measured wave windows against chance) for LIME, Kernel SHAP,
gradient SHAP, CAM, Grad-CAM, Integrated Gradients, LRP and attention, on the CNN and the LSTM of
the holdout and the patient split - costs many minutes on 2 cores (LIME, Kernel SHAP, gradient
SHAP and the completeness-checked IG are rerun for every noise draw and seed), more than the
3-minute budget of a notebook. Week 4 runs :func:`run_grid` live with ``cheap_only=True`` (the
single-pass methods: CAM, Grad-CAM, LRP, gradient x input, attention); this script computes the
full grid and writes three CSV files to ``data/evaluation/`` (``python -m
utils.course.evaluation_grid``, or ``make evaluation``; ``--only split:model`` runs one model,
for parallel processes, and ``--merge`` joins them). The settings below are the one place
where the sample and the explainers' options are defined (the notebook imports them).

Subsampling (and what it costs): one test beat per record, from at most ``MAX_RECORDS`` records
per class (8 beats per split), explained for the class the model predicts. Medians over 8
beats of 8 classes are a first look, not a per-class result (the notebook prints the records
behind them).
"""
from __future__ import annotations

import argparse
import functools
import time
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from .. import config

#: Beats per record and records per class of the evaluation sample.
PER_RECORD, MAX_RECORDS = 1, 1
#: Models evaluated, per split (the attention model exists for the holdout split only).
MODELS: dict[str, dict[str, str]] = {
    "holdout": {"CNN": "cnn_holdout", "LSTM": "lstm_holdout", "LSTM + attention": "attention_holdout"},
    "patient": {"CNN": "cnn_patient", "LSTM": "lstm_patient"},
}
#: Cheap settings of the expensive explainers (the price: noisier maps, see the seed rows).
LIME_SAMPLES, SHAP_SAMPLES, GRADSHAP_SAMPLES = 100, 64, 16
#: Integrated Gradients: Gauss-Legendre steps tried in turn, completeness tolerance.
IG_STEPS, IG_TOLERANCE = (32, 128, 512), 0.03
#: Metric settings (utils.evaluate.evaluate_methods).
N_RANDOM, SENSITIVITY_DRAWS, RADIUS, SEEDS = 2, 2, 0.05, (1, 2)
#: Wave windows whose "P wave" is not a P wave (ventricular and paced beats).
NO_P_WAVE = ("V", "/", "f")
WAVES = ("P wave", "QRS", "ST-T", "pacing spike")
#: Where the grid is written.
OUT_DIR = Path(__file__).resolve().parents[2] / "data" / "evaluation"


def sample_beats(data, split):
    """The evaluation beats of a split's test part: :func:`utils.sampling.sample_by_record`
    with ``PER_RECORD`` beat from at most ``MAX_RECORDS`` records per class. Returns
    ``(indices into data, RecordSample)``."""
    from ..sampling import sample_by_record

    pick = sample_by_record(data.y[split.test], data.record[split.test], PER_RECORD,
                            max_records=MAX_RECORDS, seed=config.SEED)
    return split.test[pick.indices], pick


def beat_windows(y, windows: Mapping[str, Mapping[str, tuple[int, int]]] | None = None
                 ) -> dict[str, np.ndarray]:
    """Per-beat wave windows ``{wave: (n, 2) samples}`` from each beat's class (measured windows
    of :func:`utils.waves.wave_windows` unless ``windows`` = ``{class: {wave: (a, b)}}``); NaN
    where the class has no such wave (no pacing spike; no P wave for ``NO_P_WAVE``)."""
    if windows is None:
        from ..waves import wave_windows

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
    which :func:`utils.evaluate.evaluate_methods` computes first), so the maps can be reused for
    per-class tables without explaining the beats twice."""

    def __init__(self, explainer: Callable):
        self.explainer = explainer
        self.first = None

    def __call__(self, model, X, targets, **options):
        exp = self.explainer(model, X, targets, **options)
        if self.first is None:
            self.first = exp
        return exp


def checked_ig(model, X, targets, **_):
    """Integrated Gradients with the course's completeness rule, median (isoelectric) baseline."""
    from ..evidence import checked_integrated_gradients
    from ..integrated_gradients import baselines_for

    return checked_integrated_gradients(model, X, targets, baselines=baselines_for(X, "median"),
                                        steps=IG_STEPS, tolerance=IG_TOLERANCE)


def explainers_for(model_name: str, background: np.ndarray, cheap_only: bool = False
                   ) -> dict[str, Callable]:
    """``{method: explainer}`` for a course model (CAM and LRP for the CNN only, attention for
    the attention model; ``cheap_only``: the single-pass methods, for the live check)."""
    from ..attention import attention_readout
    from ..cam import class_activation_map
    from ..gradcam import grad_cam
    from ..lime_shap import gradient_shap, kernel_shap_segments, lime_segments
    from ..lrp import gradient_x_input, lrp

    cnn = model_name.startswith("cnn")
    out: dict[str, Callable] = {}
    if not cheap_only:
        out["LIME"] = functools.partial(lime_segments, n_samples=LIME_SAMPLES)
        out["Kernel SHAP"] = functools.partial(kernel_shap_segments, n_samples=SHAP_SAMPLES)
        out["gradient SHAP"] = functools.partial(gradient_shap, background=background,
                                                 n_samples=GRADSHAP_SAMPLES)
    if cnn:
        out["CAM"] = class_activation_map
    out["Grad-CAM"] = functools.partial(grad_cam, layer="conv_last" if cnn else "lstm")
    if not cheap_only:
        out["IG"] = checked_ig
    if cnn:
        out["LRP"] = functools.partial(lrp, rule="epsilon")
    out["gradient x input"] = gradient_x_input
    if model_name.startswith("attention"):
        out["attention"] = attention_readout
    return out


STOCHASTIC = {"LIME": "seed", "Kernel SHAP": "seed", "gradient SHAP": "seed"}


def evaluate_model(model, X, targets, y, explainers: Mapping[str, Callable]):
    """Run :func:`utils.evaluate.evaluate_methods` with the course settings. Returns
    ``(tidy, maps)``: the tidy method x metric rows and each method's Explanation."""
    from .. import evaluate as ev

    rec = {name: Recorder(f) for name, f in explainers.items()}
    tidy = ev.evaluate_methods(rec, model, X, targets, windows=beat_windows(y),
                               stochastic={k: v for k, v in STOCHASTIC.items() if k in rec},
                               seeds=SEEDS, n_random=N_RANDOM,
                               sensitivity_draws=SENSITIVITY_DRAWS, radius=RADIUS)
    return tidy, {name: r.first for name, r in rec.items()}


def run_grid(data=None, models: Mapping[str, Mapping[str, str]] = MODELS, log=print,
             cheap_only: bool = False):
    """The grid: ``(metrics, per_class, agreement)`` tidy DataFrames (see module doc);
    ``cheap_only``: the single-pass methods only (what week 4 runs live)."""
    import pandas as pd

    from .. import evaluate as ev
    from ..data import get_split, load_beats
    from ..explain import predict_scores
    from ..sampling import sample_by_record
    from ..training import load_trained

    data = load_beats(progress=False) if data is None else data
    metrics, per_class, agree = [], [], []
    for split_name, names in models.items():
        split = get_split(data, split_name)
        idx, pick = sample_beats(data, split)
        bg_pick = sample_by_record(
            data.y[split.train], data.record[split.train], 1, max_records=MAX_RECORDS,
            seed=config.SEED)
        background = data.X[split.train[bg_pick.indices]]
        X, y = data.X[idx], data.y[idx]
        log(f"{split_name}: {len(idx)} beats\n{pick}")
        for label, name in names.items():
            model = load_trained(name, data=data)
            pred = predict_scores(model, X, "probs").argmax(axis=1)
            tidy, maps = evaluate_model(model, X, pred, y,
                                         explainers_for(name, background, cheap_only))
            if "IG" in maps:
                extras = maps["IG"].extras
                tidy = pd.concat([tidy, pd.DataFrame([
                    {"method": "IG", "metric": "ig_max_rel_error",
                     "value": float(np.max(extras["relative_error"])), "n": len(X)},
                    {"method": "IG", "metric": "ig_flagged",
                     "value": float(np.sum(extras["flagged"])), "n": len(X)}])])
            metrics.append(tidy.assign(split=split_name, model=label))
            for method, exp in maps.items():
                table = ev.wave_mass_table(exp, y, beat_windows(y)).reset_index()
                per_class.append(table.assign(split=split_name, model=label, method=method))
            if len(maps) < 2:
                continue
            ma = ev.method_agreement(maps).groupby(["method_a", "method_b"], sort=False)[
                ["spearman", "top_segment"]].agg({"spearman": "median", "top_segment": "mean"})
            agree.append(ma.reset_index().assign(split=split_name, model=label))
            log(f"  {label} ({name}): {len(maps)} methods")
    return (pd.concat(metrics, ignore_index=True), pd.concat(per_class, ignore_index=True),
            pd.concat(agree, ignore_index=True))


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
