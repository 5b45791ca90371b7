"""Training logs: fixed-header CSV that a resume truncates, on-device accumulation, TensorBoard."""

from __future__ import annotations

import csv

import pytest
import torch

from gradremedy.train.logging import TRAIN_COLUMNS, CsvLog, DeviceAccumulator, TrainingLogger


def _rows(path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_csv_resume_drops_rows_after_the_checkpoint_and_a_torn_line(tmp_path) -> None:
    path = tmp_path / "metrics.csv"
    log = CsvLog(path, ("step", "loss"))
    for step in range(1, 6):
        log.append({"step": step, "loss": 1.0 / step})
    with open(path, "a") as f:
        f.write("6,0.1")  # killed while writing a line
    resumed = CsvLog(path, ("step", "loss"), resume_step=3)
    assert [r["step"] for r in _rows(path)] == ["1", "2", "3"]
    resumed.append({"step": 4})
    rows = _rows(path)
    assert [r["step"] for r in rows] == ["1", "2", "3", "4"]
    assert rows[-1]["loss"] == ""
    assert float(rows[1]["loss"]) == pytest.approx(0.5)


def test_fresh_start_keeps_only_the_header(tmp_path) -> None:
    path = tmp_path / "metrics.csv"
    log = CsvLog(path, ("step", "loss"))
    log.append({"step": 1, "loss": 2.0})
    CsvLog(path, ("step", "loss"), resume_step=0)
    assert path.read_text() == "step,loss\n"


def test_accumulator_means_and_reset() -> None:
    acc = DeviceAccumulator()
    acc.add("loss", torch.tensor(1.0))
    acc.add("loss", torch.tensor(3.0))
    acc.add("clip", torch.tensor(True).float())
    acc.add("lr", 0.5)
    means = acc.fetch()
    assert means == {"loss": 2.0, "clip": 1.0, "lr": 0.5}
    assert acc.fetch() == {}


def test_training_logger_writes_csv_and_tensorboard(tmp_path) -> None:
    logger = TrainingLogger(tmp_path / "logs")
    logger.log_train({"step": 10, "epoch": 1, "lr": 1e-3, "loss": 2.5, "conflict_rate": 0.5})
    logger.log_valid({"step": 10, "epoch": 1, "loss": 2.0, "acc": 0.4, "wer": 0.8, "utts": 3})
    logger.close()
    rows = _rows(tmp_path / "logs" / "metrics.csv")
    assert list(rows[0]) == list(TRAIN_COLUMNS)
    assert rows[0]["conflict_rate"] == "0.5" and rows[0]["grad_norm"] == ""
    assert _rows(tmp_path / "logs" / "valid.csv")[0]["wer"] == "0.8"
    assert any((tmp_path / "logs" / "tb").glob("events.out.tfevents.*"))


def test_disabled_logger_writes_nothing(tmp_path) -> None:
    logger = TrainingLogger(tmp_path / "logs", enabled=False)
    logger.log_train({"step": 1, "loss": 1.0})
    logger.close()
    assert not (tmp_path / "logs").exists()
