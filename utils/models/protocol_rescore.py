"""Re-score DS2 from the committed weights of the protocol's final model alone.

``python -m utils.models.protocol_rescore`` loads ``data/models/protocol_ds1`` (SHA-256 checked), computes
the features of every DS2 record from its own beats, predicts, scores (AAMI, bootstrap over
records) and checks the confusion matrix against ``config.json``. No stored prediction and no DS1
beat is read. Kept apart from :mod:`utils.models.protocol_model`, whose source keys stored results.
"""
from __future__ import annotations
from utils.data.aami import DS2, load_aami_beats
from utils.models.protocol_model import aami_ds2_entry, load_final, read_final_config, score_ds2


def rescore() -> dict:
    """The fresh ``aami_ds2`` entry (:func:`utils.models.protocol_model.aami_ds2_entry`); raises
    ``AssertionError`` when the DS2 confusion matrix differs from ``config.json``."""

    cfg = read_final_config()
    model = load_final()
    fresh = aami_ds2_entry(score_ds2(model, load_aami_beats(DS2), cfg["spec"]["feature_set"]))
    if fresh["confusion"] != cfg["aami_ds2"]["confusion"]:
        raise AssertionError("the committed weights do not reproduce the DS2 confusion matrix "
                             "of config.json")
    return fresh


def main() -> None:
    entry = rescore()
    print({k: entry[k] for k in ("sveb_se", "sveb_ppv", "veb_se", "veb_ppv")},
          "- the same DS2 confusion matrix as config.json")


if __name__ == "__main__":
    main()
