"""Representative beats: sampling stratified by record, and spread across patients.

Beat indices of :class:`utils.data.mitdb.BeatData` are sorted by record, so "the first k beats of a
class" all come from one patient (L from record 109, R and A from 118, ...). Every class summary
of the course (class-mean beat, class-mean relevance, lead and region shares, misclassified
examples) is therefore built from a sample drawn here:

* :func:`sample_by_record` - for each class, up to ``per_record`` beats from **every** record
  that has the class (random within the record, fixed seed). A ``mask`` restricts the pool
  (e.g. correctly classified beats, or misclassified ones: :func:`sample_misclassified`).
* :func:`sample_report` - the records and beats behind each class of an index set (print it
  beside the summary it feeds); :func:`first_k_per_class` reproduces the old "first k by index"
  pick, for the before/after comparison.
* :func:`examples_from_distinct_records` - one example beat per class, no two from the same
  record where the data allow it.
* :func:`bootstrap_over_records` - a per-beat statistic's estimate with a percentile interval
  from resampling **records** (patients), not beats: beats of one record are not independent,
  so a bootstrap over beats would report a spread far too narrow.
* :func:`per_record_spread` - the statistic per record (one row per patient).
* :func:`stability_curve` - how much the estimate of a class summary still moves between
  random samples at a given cap per record (used to choose :data:`PER_RECORD`).

Plain numpy/pandas; written here because scikit-learn's group-aware tools split data
(GroupKFold, GroupShuffleSplit) but do not draw capped per-group samples or group bootstraps.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np

from utils.core import config

#: Default cap of beats per record and class for class summaries. Measured with
#: :func:`stability_curve` on the class-mean beat of the holdout test beats: the chance noise of
#: the class mean (relative to its norm) at 1 / 5 / 10 / 20 beats per record is 0.17-0.57 /
#: 0.09-0.28 / 0.07-0.16 / 0.04-0.11 over the classes, while the spread between patients
#: (bootstrap over records) stays 0.20-0.55. At 20 the noise is 0.13-0.22 of the between-patient
#: spread (0.27 for f, 3 records): more beats per record no longer change the picture much,
#: only more records would.
PER_RECORD: int = 20


@dataclass(frozen=True)
class RecordSample:
    """Indices drawn by :func:`sample_by_record` and the report of what is behind them.

    ``indices`` are sorted; ``report`` is the :func:`sample_report` table (one row per class);
    ``per_record`` the cap that was used. ``str(sample)`` is the one-line-per-class summary to
    print beside a figure or table.
    """

    indices: np.ndarray
    report: "object"          # pandas.DataFrame (kept untyped to avoid importing pandas here)
    per_record: int | None
    seed: int
    extras: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.indices)

    def __str__(self) -> str:
        return format_report(self.report)


def _as_1d(a, name: str) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {a.shape}")
    return a


def sample_by_record(y, record, per_record: int = PER_RECORD, *, mask=None,
                     classes: Iterable[int] | None = None, max_records: int | None = None,
                     seed: int = config.SEED) -> RecordSample:
    """Beats of each class, up to ``per_record`` from every record that has the class.

    Parameters
    ----------
    y, record : (n,) class index and record name of every beat (``BeatData.y``, ``.record``).
    per_record : cap of beats per record and class (all beats of a record below the cap).
    mask : optional (n,) boolean pool (e.g. ``pred == y`` for correct beats).
    classes : class indices to sample (default: every class present in the pool).
    max_records : only for expensive explainers (LIME, Kernel SHAP): at most this many records
        per class, drawn at random; ``None`` (default) keeps every record of the class.
    seed : the draw is a pure function of its arguments.

    Within a record the beats are drawn at random without replacement (not the first ones:
    beats of a record are in time order, and the start of a recording is not representative).
    """
    y = _as_1d(y, "y")
    record = _as_1d(record, "record")
    if len(record) != len(y):
        raise ValueError(f"{len(record)} record names for {len(y)} labels")
    if int(per_record) < 1:
        raise ValueError(f"per_record must be at least 1, got {per_record}")
    pool = np.ones(len(y), dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    if pool.shape != y.shape:
        raise ValueError(f"mask must have the shape of y {y.shape}, got {pool.shape}")
    rng = np.random.default_rng(seed)
    classes = sorted(set(np.unique(y[pool]).tolist())) if classes is None else list(classes)
    chosen = []
    for c in classes:
        members = np.flatnonzero(pool & (y == c))
        if not len(members):
            continue
        names, inverse = np.unique(record[members], return_inverse=True)
        keep = range(len(names))
        if max_records is not None and len(names) > int(max_records):
            keep = np.sort(rng.choice(len(names), size=int(max_records), replace=False))
        for r in keep:
            in_rec = members[inverse == r]
            take = min(int(per_record), len(in_rec))
            chosen.append(rng.choice(in_rec, size=take, replace=False))
    idx = np.sort(np.concatenate(chosen)).astype(np.int64) if chosen else np.zeros(0, np.int64)
    report = sample_report(y, record, idx, available=pool)
    return RecordSample(idx, report, int(per_record), int(seed))


def sample_misclassified(y, pred, record, per_record: int = 5, *, seed: int = config.SEED,
                         classes: Iterable[int] | None = None, max_records: int | None = None
                         ) -> RecordSample:
    """Misclassified beats (``pred != y``) stratified by record within each **true** class.

    A small cap (default 5) keeps a figure of misclassified beats from being one patient's
    beats; the report shows how many records each class's errors come from.
    """
    y = _as_1d(y, "y")
    pred = _as_1d(pred, "pred")
    if pred.shape != y.shape:
        raise ValueError(f"pred {pred.shape} and y {y.shape} differ in length")
    return sample_by_record(y, record, per_record, mask=pred != y, classes=classes,
                            max_records=max_records, seed=seed)


def first_k_per_class(y, k: int, mask=None, n_classes: int = len(config.CLASSES)) -> np.ndarray:
    """The first ``k`` beats of each class by index (optionally among ``mask``): the pick of
    week 2's former ``pick_per_class``. Kept only to show what it selects (one record per class)
    next to :func:`sample_by_record`."""
    y = _as_1d(y, "y")
    pool = np.ones(len(y), dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    out = [np.flatnonzero(pool & (y == c))[:k] for c in range(n_classes)]
    return np.sort(np.concatenate(out)).astype(np.int64)


def sample_report(y, record, idx, available=None):
    """Records and beats behind each class of the index set ``idx``.

    One row per class present in ``idx`` (course order), columns: ``records`` (distinct records
    in the sample), ``beats``, ``records_available`` and ``beats_available`` (in ``available``,
    default all beats), ``max_per_record`` (beats of the most frequent record) and
    ``top_record`` / ``top_share`` (that record and its share of the class's sampled beats).
    """
    import pandas as pd

    y = _as_1d(y, "y")
    record = _as_1d(record, "record")
    idx = np.asarray(idx, dtype=np.int64).reshape(-1)
    pool = np.ones(len(y), dtype=bool) if available is None else np.asarray(available, bool)
    rows = {}
    for c in np.unique(y[idx]) if len(idx) else []:
        sel = idx[y[idx] == c]
        names, counts = np.unique(record[sel], return_counts=True)
        avail = pool & (y == c)
        top = int(np.argmax(counts))
        rows[config.CLASSES[int(c)]] = {
            "records": len(names), "beats": int(len(sel)),
            "records_available": int(len(np.unique(record[avail]))),
            "beats_available": int(avail.sum()),
            "max_per_record": int(counts[top]), "top_record": str(names[top]),
            "top_share": float(counts[top] / len(sel)),
        }
    cols = ["records", "beats", "records_available", "beats_available", "max_per_record",
            "top_record", "top_share"]
    table = pd.DataFrame.from_dict(rows, orient="index", columns=cols)
    order = [c for c in config.CLASSES if c in table.index]
    return table.loc[order]


def format_report(report) -> str:
    """One line per class: ``L: 80 beats from 4/4 records (largest 109: 25%)``."""
    lines = []
    for cls, row in report.iterrows():
        lines.append(f"{cls}: {row['beats']} beats from {row['records']}/"
                     f"{row['records_available']} records (largest {row['top_record']}: "
                     f"{row['top_share']:.0%})")
    return "\n".join(lines)


def examples_from_distinct_records(y, record, *preferred, seed: int = config.SEED,
                                   n_classes: int = len(config.CLASSES)) -> np.ndarray:
    """One example beat per class present in ``y``, drawn so that no two classes share a
    record where the data allow it (classes with the fewest records choose first).

    ``preferred`` are boolean masks tried in order (e.g. "correct by both models", then
    "correct by the CNN"); a class falls back to all its beats when no mask has a hit. Within
    the allowed records the record and then the beat are drawn at random (fixed seed).
    """
    y = _as_1d(y, "y")
    record = _as_1d(record, "record")
    masks = [np.asarray(m, dtype=bool) for m in preferred]
    if any(m.shape != y.shape for m in masks):
        raise ValueError("every preference mask must have the shape of y")
    rng = np.random.default_rng(seed)
    present = [c for c in range(n_classes) if np.any(y == c)]
    present.sort(key=lambda c: len(np.unique(record[y == c])))
    used: set[str] = set()
    out = {}
    for c in present:
        for mask in (*masks, np.ones(len(y), dtype=bool)):
            hits = np.flatnonzero((y == c) & mask)
            if len(hits):
                break
        names = np.unique(record[hits])
        fresh = [r for r in names if r not in used]
        rec = rng.choice(fresh if fresh else names)
        out[c] = int(rng.choice(hits[record[hits] == rec]))
        used.add(str(rec))
    return np.array([out[c] for c in sorted(out)], dtype=np.int64)


# ------------------------------------------------------------------------------------------------
# Spread across patients
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BootstrapResult:
    """A statistic of per-beat values with a percentile interval from resampling records.

    ``estimate`` the statistic on the beats given; ``low``/``high`` the percentile interval
    (``level``, e.g. 0.95); ``std`` the standard deviation of the replicates; the arrays have the
    shape of the statistic (a scalar for a mean of scalars, (window, leads) for a mean map).
    """

    estimate: np.ndarray
    low: np.ndarray
    high: np.ndarray
    std: np.ndarray
    n_records: int
    n_beats: int
    n_boot: int
    level: float

    def __str__(self) -> str:
        if np.ndim(self.estimate) == 0:
            return (f"{float(self.estimate):.3g} [{float(self.low):.3g}, {float(self.high):.3g}] "
                    f"({self.level:.0%} CI over {self.n_records} records, {self.n_beats} beats)")
        return (f"statistic of shape {np.shape(self.estimate)}, {self.level:.0%} CI over "
                f"{self.n_records} records, {self.n_beats} beats")


def bootstrap_over_records(values, record, statistic: str | Callable = "mean",
                           n_boot: int = 1000, level: float = 0.95,
                           seed: int = config.SEED) -> BootstrapResult:
    """Cluster (record) bootstrap of a statistic of per-beat ``values`` (n, ...).

    Each replicate draws as many records as there are, with replacement, and takes **all**
    beats of each drawn record (Davison & Hinkley 1997, sec. 3.8: resample the independent
    units). ``statistic="mean"`` (the default, fast: per-record sums) or a callable mapping an
    (m, ...) array to a scalar or array. With a single record the interval collapses to the
    estimate (there is no spread across patients to measure) - report it as such.
    """
    v = np.asarray(values, dtype=np.float64)
    record = _as_1d(record, "record")
    if len(v) != len(record):
        raise ValueError(f"{len(v)} values for {len(record)} record names")
    if not len(v):
        raise ValueError("no values to bootstrap")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    names, inverse = np.unique(record, return_inverse=True)
    k = len(names)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, k, size=(int(n_boot), k))
    if statistic == "mean":
        flat = v.reshape(len(v), -1)
        sums = np.zeros((k, flat.shape[1]))
        np.add.at(sums, inverse, flat)
        counts = np.bincount(inverse, minlength=k).astype(np.float64)
        estimate = flat.mean(axis=0)
        reps = sums[draws].sum(axis=1) / counts[draws].sum(axis=1)[:, None]
        shape = v.shape[1:]
        reps = reps.reshape((int(n_boot),) + shape)
        estimate = estimate.reshape(shape)
    elif callable(statistic):
        groups = [np.flatnonzero(inverse == r) for r in range(k)]
        estimate = np.asarray(statistic(v), dtype=np.float64)
        reps = np.stack([np.asarray(statistic(v[np.concatenate([groups[r] for r in d])]),
                                    dtype=np.float64) for d in draws])
    else:
        raise ValueError(f"statistic must be 'mean' or a callable, got {statistic!r}")
    alpha = (1 - level) / 2
    low, high = np.quantile(reps, [alpha, 1 - alpha], axis=0)
    return BootstrapResult(estimate, low, high, reps.std(axis=0), k, len(v), int(n_boot),
                           float(level))


def per_record_spread(values, record, y=None):
    """Mean of a per-beat scalar per record (and class, when ``y`` is given): one row per
    (class,) record with ``mean`` and ``beats``. Shows how much patients differ, which a mean
    over pooled beats hides."""
    import pandas as pd

    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1:
        raise ValueError(f"values must be one scalar per beat, got shape {v.shape}")
    record = _as_1d(record, "record")
    if len(record) != len(v):
        raise ValueError(f"{len(v)} values for {len(record)} record names")
    frame = pd.DataFrame({"record": record, "value": v})
    keys = ["record"]
    if y is not None:
        frame["class"] = np.asarray(config.CLASSES)[_as_1d(y, "y")]
        keys = ["class", "record"]
    out = frame.groupby(keys, sort=True)["value"].agg(mean="mean", beats="size").reset_index()
    if y is not None:
        out["class"] = pd.Categorical(out["class"], categories=list(config.CLASSES), ordered=True)
        out = out.sort_values(["class", "record"]).reset_index(drop=True)
    return out


def class_bootstrap_table(values, y, record, n_boot: int = 1000, level: float = 0.95,
                          seed: int = config.SEED):
    """Per class: mean of a per-beat scalar, its record-bootstrap interval, the records and
    beats behind it and the range of the per-record means (the table to print beside a
    per-class summary)."""
    import pandas as pd

    v = np.asarray(values, dtype=np.float64)
    y = _as_1d(y, "y")
    record = _as_1d(record, "record")
    if not len(v) == len(y) == len(record):
        raise ValueError("values, y and record must have the same length")
    rows = {}
    for c in np.unique(y):
        sel = y == c
        res = bootstrap_over_records(v[sel], record[sel], n_boot=n_boot, level=level, seed=seed)
        rec_means = per_record_spread(v[sel], record[sel])["mean"]
        rows[config.CLASSES[int(c)]] = {
            "mean": float(res.estimate), "ci_low": float(res.low), "ci_high": float(res.high),
            "records": res.n_records, "beats": res.n_beats,
            "record_min": float(rec_means.min()), "record_max": float(rec_means.max())}
    table = pd.DataFrame.from_dict(rows, orient="index")
    return table.loc[[c for c in config.CLASSES if c in table.index]]


def stability_curve(values, y, record, caps: Iterable[int] = (1, 2, 5, 10, 20, 50),
                    n_repeats: int = 10, n_boot: int = 200, seed: int = config.SEED):
    """How stable a class-mean summary is as a function of the cap of beats per record.

    ``values`` (n, ...) are per-beat quantities (a beat, a relevance map, a scalar) from a pool
    that holds at least ``max(caps)`` beats per record where the record has them. For each class
    and cap, ``n_repeats`` record-stratified samples are drawn and their class means compared:

    * ``sampling_rel`` - the norm of the difference between the class means of two independent
      samples, divided by sqrt(2) and by the norm of the pooled class mean: the chance noise of
      one sample's class mean (averaged over ``n_repeats - 1`` pairs);
    * ``records_rel`` - the norm of the record-bootstrap standard deviation of the class mean,
      relative to the same norm: the spread between patients, which more beats per record
      cannot reduce.

    A cap is enough when ``sampling_rel`` is well below ``records_rel``.
    """
    import pandas as pd

    v = np.asarray(values, dtype=np.float64)
    y = _as_1d(y, "y")
    record = _as_1d(record, "record")
    flat = v.reshape(len(v), -1)
    rows = []
    for c in np.unique(y):
        sel = np.flatnonzero(y == c)
        ref = flat[sel].mean(axis=0)
        norm = np.linalg.norm(ref) or 1.0
        for cap in caps:
            means = []
            for r in range(int(n_repeats)):
                s = sample_by_record(y[sel], record[sel], cap, seed=seed + 1000 * r)
                means.append(flat[sel][s.indices].mean(axis=0))
            means = np.stack(means)
            pair = [np.linalg.norm(means[i] - means[i + 1]) / np.sqrt(2)
                    for i in range(0, len(means) - 1)]
            s0 = sample_by_record(y[sel], record[sel], cap, seed=seed)
            boot = bootstrap_over_records(flat[sel][s0.indices], record[sel][s0.indices],
                                          n_boot=n_boot, seed=seed)
            rows.append({"class": config.CLASSES[int(c)], "per_record": int(cap),
                         "beats": len(s0.indices), "records": boot.n_records,
                         "sampling_rel": float(np.mean(pair) / norm) if pair else np.nan,
                         "records_rel": float(np.linalg.norm(boot.std) / norm)})
    return pd.DataFrame(rows)
