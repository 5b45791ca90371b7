"""A tiny model learns four tone utterances by heart: training loss near zero and greedy CTC output equal
to the reference (validation on the training utterances themselves)."""

from __future__ import annotations

import csv
import shutil

from gradremedy.train import train

from .helpers import TINY_CONFIG, write_config, write_split

SENTENCES = [
    ["alpha", "bravo"],
    ["charlie", "delta", "alpha"],
    ["delta", "bravo", "charlie"],
    ["bravo", "alpha", "delta", "charlie"],
]


def test_tiny_model_overfits_four_utterances(tmp_path) -> None:
    write_split(tmp_path / "data" / "train", SENTENCES, seed=0)
    shutil.copytree(tmp_path / "data" / "train", tmp_path / "data" / "valid")
    config = write_config(
        tmp_path / "c.yaml",
        model={
            "label_smoothing": 0.0,
            "encoder": {**TINY_CONFIG["model"]["encoder"], "dropout": 0.0},
            "decoder": {"blocks": 1, "heads": 2, "ffn_dim": 64, "dropout": 0.0},
        },
        train={"max_steps": 110, "epochs": 1000, "lr": 0.005, "log_every": 10, "keep_best": 1},
    )
    summary = train(config_path=config, data_dir=tmp_path / "data", exp_dir=tmp_path / "exp", method="sum")
    final = summary["final_valid"]
    assert final["wer"] == 0.0  # greedy CTC transcribes every utterance exactly
    assert final["acc"] == 1.0
    assert final["ctc"] < 0.5 and final["att"] < 0.5  # per-utterance sums, from ~40 at the start
    with open(tmp_path / "exp" / "logs" / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert float(rows[-1]["ctc"]) < 0.05 * float(rows[0]["ctc"])
