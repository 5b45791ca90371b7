"""The ``results.json`` schema: key names, the metrics in it, and writing it.

Per method (``results["methods"][m]``): ``wer`` and ``cer`` (mean/std/n over seeds and ``per_seed``),
``by_condition`` and ``by_snr`` (mean/std/n per name, with ``relative_vs_<baseline>``), ``se`` (mean/std/n
per SE metric), ``num_utts``, ``relative_wer_vs_<baseline>``, ``significance_vs_<baseline>``
(``bootstrap``, ``sign_test``), ``p_value_vs_<baseline>``, ``diagnostics`` and ``runs`` (provenance per
seed); optionally ``real_voice`` = ``{"clean": {"wer": ..}, "noisy": {"wer": ..}}`` from recorded
voices. At the top: ``methods``, ``noisy_input``, ``baseline``, ``seeds``, ``significance`` (the tests
in words), ``provenance`` and ``plots``. Keys against the baseline carry its name, so a comparison
against ``sum`` has ``relative_wer_vs_sum``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from gradremedy.atomic import atomic_write_text

BASELINE = "sum"
SE_METRICS = ("pesq", "stoi", "si_snr", "si_snr_improvement")
DIAGNOSTICS = ("conflict_rate", "cos_mean", "norm_ratio_median", "rescale_rate", "clip_rate")
BREAKDOWNS = ("by_condition", "by_snr")
REAL_VOICE_CONDITIONS = ("clean", "noisy")


def vs(name: str, baseline: str) -> str:
    """The key of a comparison against ``baseline``: ``vs("p_value", "sum") == "p_value_vs_sum"``."""
    return f"{name}_vs_{baseline}"


def baseline_of(results: Mapping[str, Any]) -> str:
    return str(results.get("baseline", BASELINE))


def write_results(results: Mapping[str, Any], path: Path) -> None:
    """``results.json``, atomically; NaN/inf become null so that any JSON reader accepts it."""
    atomic_write_text(path, json.dumps(json_safe(results), indent=2, sort_keys=False) + "\n")


def json_safe(value: Any) -> Any:
    """``value`` with non-finite floats as None, paths as text and numpy scalars as Python numbers."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic):
        return json_safe(value.item())
    return value


def sorted_buckets(names: Iterable[str]) -> list[str]:
    """SNR buckets in numeric order ("-5..0" before "0..5"); other names alphabetically after them."""

    def key(name: str) -> tuple[int, float, str]:
        match = re.search(r"-?\d+(\.\d+)?", name)
        return (0, float(match.group()), name) if match else (1, 0.0, name)

    return sorted(names, key=key)
