"""Training logs: CSV files with a fixed header, TensorBoard, and on-device metric accumulation.

Per-step values (losses, gradient norms, the surgery diagnostics) are summed on the device as tensors and
fetched to the host in one transfer every ``train.log_every`` steps, so logging costs one host sync per
logged step, not one per value per step. The CSV files are append-only; when a run resumes from a
checkpoint at step S, rows after S (written by the interrupted run after its last checkpoint) are dropped
first, so a resumed run's CSV is the same as an uninterrupted run's.
"""

from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path
from typing import Any

import torch

from gradremedy.atomic import atomic_write_text

# One row per logged optimizer step. Values are means over the steps since the previous row.
TRAIN_COLUMNS = (
    "step",
    "epoch",
    "lr",
    "loss",
    "se",
    "ctc",
    "att",
    "acc",
    "grad_norm",  # global norm of the combined gradient, before clipping
    # The engine's diagnostics under their own names (gradremedy/surgery/diagnostics.py), means over steps:
    "aux_norm",  # |s|: SE (auxiliary) gradient on the shared parameters
    "main_norm",  # |a|: ASR (main) gradient on the shared parameters
    "clip_frac",  # fraction of steps where the clip bound (global, or either task's per_task clip)
    "conflict_rate",  # fraction of groups with <s, a> < 0
    "cos_mean",  # mean cos(s, a) over groups
    "norm_ratio_median",  # median |s| / |a| over groups
    "rescale_rate",  # fraction of groups where GR's dominance rescale fired
    "skipped_steps",  # non-finite steps skipped so far (cumulative)
)

# One row per validation (each epoch end, and the end of training).
VALID_COLUMNS = ("step", "epoch", "loss", "se", "ctc", "att", "acc", "wer", "utts")


class CsvLog:
    """An append-only CSV file with a fixed header, truncated to ``resume_step`` when a run resumes."""

    def __init__(self, path: str | os.PathLike, columns: tuple[str, ...], resume_step: int = 0):
        self.path = Path(path)
        self.columns = columns
        self.path.parent.mkdir(parents=True, exist_ok=True)
        kept = self._rows_up_to(resume_step)
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(kept)
        atomic_write_text(self.path, buffer.getvalue())

    def _rows_up_to(self, step: int) -> list[dict[str, str]]:
        """Complete rows of an existing file with ``step <= step`` (a half-written last line is dropped)."""
        if not self.path.is_file():
            return []
        with open(self.path, newline="", encoding="utf-8") as f:
            text = f.read()
        if not text.endswith("\n"):  # killed in the middle of a line
            text = text[: text.rfind("\n") + 1]
        reader = csv.DictReader(io.StringIO(text))
        if tuple(reader.fieldnames or ()) != self.columns:
            return []  # written by another version: start the file afresh
        rows = []
        for row in reader:
            try:
                if int(row["step"]) <= step:
                    rows.append(row)
            except (TypeError, ValueError):
                continue
        return rows

    def append(self, row: dict[str, Any]) -> None:
        """Append one row; missing columns are left empty, floats written with 6 significant digits."""
        values = {name: _format(row.get(name)) for name in self.columns}
        with open(self.path, "a", newline="", encoding="utf-8") as f:
            csv.DictWriter(f, fieldnames=self.columns, lineterminator="\n").writerow(values)
            f.flush()


def _format(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.6g}"
    return str(value)


class DeviceAccumulator:
    """Running sums of scalar tensors, kept on their device until :meth:`fetch`."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}

    def add(self, name: str, value: torch.Tensor | float) -> None:
        if isinstance(value, torch.Tensor):
            value = value.detach().float().reshape(())
        if name in self.sums:
            self.sums[name] = self.sums[name] + value
        else:
            self.sums[name] = value if isinstance(value, torch.Tensor) else torch.tensor(float(value))
        self.counts[name] = self.counts.get(name, 0) + 1

    def add_all(self, values: dict[str, torch.Tensor | float]) -> None:
        for name, value in values.items():
            self.add(name, value)

    def fetch(self) -> dict[str, float]:
        """Means since the last fetch, moved to the host in one transfer; then reset."""
        if not self.sums:
            return {}
        names = list(self.sums)
        devices = {self.sums[n].device for n in names if isinstance(self.sums[n], torch.Tensor)}
        device = next(iter(devices)) if len(devices) == 1 else torch.device("cpu")
        stacked = torch.stack([self.sums[n].to(device) for n in names]).cpu().tolist()  # one sync
        means = {name: total / self.counts[name] for name, total in zip(names, stacked)}
        self.sums.clear()
        self.counts.clear()
        return means


class TrainingLogger:
    """Writes ``logs/metrics.csv``, ``logs/valid.csv`` and TensorBoard events under ``logs/tb``.

    ``enabled=False`` (every rank but 0 in distributed training) makes every method a no-op.
    """

    def __init__(self, log_dir: str | os.PathLike, resume_step: int = 0, enabled: bool = True):
        self.enabled = enabled
        if not enabled:
            return
        log_dir = Path(log_dir)
        self.metrics = CsvLog(log_dir / "metrics.csv", TRAIN_COLUMNS, resume_step)
        self.valid = CsvLog(log_dir / "valid.csv", VALID_COLUMNS, resume_step)
        # Imported here: TensorBoard is slow to import and only rank 0 needs it.
        from torch.utils.tensorboard import SummaryWriter

        # purge_step drops events after the resumed step that an interrupted run had written.
        self.tensorboard = SummaryWriter(
            str(log_dir / "tb"), purge_step=resume_step + 1 if resume_step else None
        )

    def log_train(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self.metrics.append(row)
        step = int(row["step"])
        for name in TRAIN_COLUMNS:
            value = row.get(name)
            if name in ("step", "epoch") or value is None:
                continue
            self.tensorboard.add_scalar(f"train/{name}", value, step)

    def log_valid(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self.valid.append(row)
        step = int(row["step"])
        for name in VALID_COLUMNS:
            value = row.get(name)
            if name in ("step", "epoch", "utts") or value is None:
                continue
            self.tensorboard.add_scalar(f"valid/{name}", value, step)
        self.tensorboard.flush()

    def close(self) -> None:
        if self.enabled:
            self.tensorboard.close()
