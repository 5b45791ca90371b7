"""Reading finished runs: the evaluation JSON and hypotheses, the training logs and ``run.json``.

Each log column is read under the one name the training loop writes (:data:`LOG_COLUMNS`); anything
missing (a method without an SE front end, a run without diagnostics) is simply absent.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gradremedy.errors import UserError

# What the report reads from logs/metrics.csv and logs/valid.csv (see gradremedy.train.logging).
LOG_COLUMNS = {
    "step": "step",
    "loss": "loss",  # metrics.csv: training loss
    "valid_acc": "acc",  # valid.csv: token accuracy
    "conflict_rate": "conflict_rate",
    "cos": "cos_mean",
    "norm_ratio_median": "norm_ratio_median",  # median |s| / |a| over groups, per logged step
    "rescale_rate": "rescale_rate",
    "clip_rate": "clip_frac",
}


@dataclass
class RunRecord:
    """Everything the report needs from one finished (method, seed) run."""

    method: str
    seed: int
    exp_dir: Path
    evaluation: dict[str, Any]
    hypotheses: dict[str, str] | None = None
    run_info: dict[str, Any] | None = None
    train_log: dict[str, np.ndarray] = field(default_factory=dict)
    valid_log: dict[str, np.ndarray] = field(default_factory=dict)
    eval_path: Path | None = None
    runner: dict[str, Any] = field(default_factory=dict)  # commands and wall times recorded by compare
    real_voice: dict[str, dict[str, Any]] = field(default_factory=dict)  # set name -> its evaluation JSON


def read_kaldi_text(path: Path) -> dict[str, str]:
    """``<utt> <words...>`` per line (Kaldi ``text`` and our ``.hyp.txt``); an utterance may have no words."""
    entries: dict[str, str] = {}
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not UTF-8 text") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        parts = line.strip().split(maxsplit=1)
        if parts[0] in entries:
            raise UserError(f"{path}:{number}: utterance '{parts[0]}' appears twice")
        entries[parts[0]] = parts[1] if len(parts) > 1 else ""
    return entries


def read_csv_columns(path: Path) -> dict[str, np.ndarray]:
    """A CSV file as float columns (blank or non-numeric cells are NaN); {} if the file is missing."""
    path = Path(path)
    if not path.is_file():
        return {}
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return {}
    columns: dict[str, np.ndarray] = {}
    for name in rows[0]:
        if name is None:
            continue
        values = []
        for row in rows:
            try:
                values.append(float(row.get(name) or "nan"))
            except ValueError:
                values.append(math.nan)
        columns[name] = np.asarray(values, dtype=np.float64)
    return columns


def hypothesis_path(eval_path: Path) -> Path:
    """``<stem>.hyp.txt`` beside the evaluation JSON ``<stem>.json``."""
    return eval_path.with_name(f"{eval_path.stem}.hyp.txt")


def load_run(
    method: str, seed: int, exp_dir: Path, eval_path: Path, runner: Mapping[str, Any] | None = None
) -> RunRecord:
    """Read one finished run; the evaluation JSON must exist, everything else is optional."""
    try:
        evaluation = json.loads(Path(eval_path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{eval_path}: evaluation results not found ({method} seed {seed})") from None
    except json.JSONDecodeError as err:
        raise UserError(f"{eval_path}: not valid JSON ({err.msg})") from None
    if not isinstance(evaluation, dict) or not is_number(evaluation.get("wer")):
        raise UserError(f"{eval_path}: no numeric 'wer' in the evaluation results")
    hyp_file = hypothesis_path(Path(eval_path))
    hypotheses = read_kaldi_text(hyp_file) if hyp_file.is_file() else None
    run_info = None
    run_json = Path(exp_dir) / "run.json"
    if run_json.is_file():
        try:
            run_info = json.loads(run_json.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            run_info = None
    return RunRecord(
        method=method,
        seed=seed,
        exp_dir=Path(exp_dir),
        evaluation=evaluation,
        hypotheses=hypotheses,
        run_info=run_info,
        train_log=read_csv_columns(Path(exp_dir) / "logs" / "metrics.csv"),
        valid_log=read_csv_columns(Path(exp_dir) / "logs" / "valid.csv"),
        eval_path=Path(eval_path),
        runner=dict(runner or {}),
    )


def is_number(value: Any) -> bool:
    """A finite int or float (not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def log_column(log: Mapping[str, np.ndarray], what: str) -> np.ndarray | None:
    """The column :data:`LOG_COLUMNS` names for ``what``, when it was logged with any finite value."""
    values = log.get(LOG_COLUMNS[what])
    return values if values is not None and np.isfinite(values).any() else None


def ordered_methods(runs: list[RunRecord] | tuple[RunRecord, ...]) -> list[str]:
    """The methods of ``runs`` in order of first appearance."""
    methods: list[str] = []
    for run in runs:
        if run.method not in methods:
            methods.append(run.method)
    return methods
