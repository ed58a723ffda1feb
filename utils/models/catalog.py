"""Every trained model of the course by name: build, load, train (``make models`` runs :func:`main`).

Three families share one namespace: the 8-class models of
:data:`utils.models.training.MODEL_SPECS` (``cnn_holdout``, ``lstm_patient``, ...), the AAMI
models of :data:`utils.models.multimodal.SPECS` (``multimodal_ds1``, the folds
``multimodal_fold1..5``, ...) and the final model of the DS1 selection protocol
(:data:`utils.models.protocol_model.NAME`, ``docs/PROTOCOL.md``). Each family trains and checks
its own models; this module only dispatches by name, so the families never import each other.
"""
from __future__ import annotations

import argparse

from utils.data.mitdb import BeatData, load_beats
from utils.models import multimodal, protocol_model, training


def all_names() -> list[str]:
    """Every model ``make models`` trains: the 8-class models, the AAMI models (trained on DS1)
    and the final model of the DS1 selection protocol."""
    return list(training.MODEL_SPECS) + list(multimodal.SPECS) + [protocol_model.NAME]


def build(name: str):
    """An untrained model ``name`` (an 8-class or an AAMI model)."""
    if name in multimodal.SPECS:
        mspec = multimodal.SPECS[name]
        return multimodal.build_multimodal(mspec.modalities, **mspec.kwargs)
    return training.build_spec(name)


def load_trained(name: str, retrain: bool = False, data: BeatData | None = None):
    """Load the committed weights of ``name`` (or retrain first when ``retrain=True``).

    Raises ``ValueError`` if the saved config no longer matches the code's spec or the beat
    settings (window, R offset, classes): the weights would be meaningless; and
    :class:`utils.models.training.ModelFileError` (a ``ValueError``) when a file is damaged or
    the weights are not the ones the config was written for (SHA-256 check).
    """
    if name in multimodal.SPECS:
        if retrain:
            multimodal.train_named(name)
        return multimodal.load_named(name)
    if name == protocol_model.NAME:
        if retrain:
            protocol_model.train_final()
        return protocol_model.load_final()
    return training.load_spec_model(name, retrain=retrain, data=data)


def main(argv: list[str] | None = None) -> None:
    """Command line: ``python -m utils.models.catalog [names...]`` (default: all models)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("names", nargs="*", default=all_names(),
                        help=f"models to train (default all: {', '.join(all_names())})")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in all_names()]
    if unknown:
        parser.error(f"unknown model(s) {unknown}; known: {', '.join(all_names())}")
    data = load_beats()
    for name in args.names:
        print(f"== training {name}", flush=True)
        if name == protocol_model.NAME:
            protocol_model.train_final()
            cfg = training.seal_config(training.model_dir(name))
            d = cfg["aami_ds2"]
            print(f"== {name}: {cfg['spec']['candidate']} lambda {cfg['spec']['lambda']}, "
                  f"{cfg['train_seconds']} s, DS2 (AAMI) SVEB Se {d['sveb_se']} +P "
                  f"{d['sveb_ppv']}, VEB Se {d['veb_se']} +P {d['veb_ppv']}", flush=True)
            continue
        if name in multimodal.SPECS:
            multimodal.train_named(name)
            cfg = training.seal_config(training.model_dir(name))
            part = "DS2" if "test_ds2" in cfg else f"fold {cfg['fold'] + 1} test records"
            test = cfg.get("test_ds2") or cfg["test_fold"]
            print(f"== {name}: {cfg['epochs_run']} epochs, {cfg['train_seconds']} s, {part} (AAMI) "
                  f"SVEB Se {test['SVEB Se']} +P {test['SVEB +P']}, VEB Se {test['VEB Se']} "
                  f"+P {test['VEB +P']}", flush=True)
            continue
        cfg = training.train(name, data=data)
        test = cfg["test"]
        summary = {k: test[k] for k in ("accuracy", "macro_f1") if k in test} or test
        print(f"== {name}: {cfg['epochs_run']} epochs, {cfg['train_seconds']} s, "
              f"{cfg['beats_per_second']} beats/s, test {summary}", flush=True)


if __name__ == "__main__":
    main()
