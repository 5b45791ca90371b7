"""Turn finished runs (eval JSON, hypotheses, training logs, run.json) into ``results.json``, PNG plots
and a markdown report.

Input per run: the evaluation JSON written by ``gradremedy eval`` (``wer``, ``cer``, ``by_condition``,
``by_snr``, ``se``) and its ``<stem>.hyp.txt``, plus ``logs/metrics.csv``, ``logs/valid.csv`` and
``run.json`` of the experiment directory. Anything missing (a method without an SE front end, a run
without diagnostics) is left out of the tables and plots rather than failing the report.

By concern: :mod:`.runs` reads the files, :mod:`.statistics` computes the numbers, :mod:`.schema` names
the keys of ``results.json`` and writes it, :mod:`.plots` draws and :mod:`.markdown` writes the report.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from gradremedy.atomic import atomic_write_text
from gradremedy.errors import UserError
from gradremedy.experiments.report.markdown import format_table, render_report
from gradremedy.experiments.report.plots import write_plots
from gradremedy.experiments.report.runs import RunRecord, hypothesis_path, load_run, read_kaldi_text
from gradremedy.experiments.report.schema import BASELINE, vs, write_results
from gradremedy.experiments.report.statistics import build_results
from gradremedy.experiments.significance import DEFAULT_BOOTSTRAP_SEED, DEFAULT_RESAMPLES

__all__ = [
    "BASELINE",
    "RunRecord",
    "build_results",
    "format_table",
    "hypothesis_path",
    "load_run",
    "read_kaldi_text",
    "render_report",
    "vs",
    "write_plots",
    "write_report",
    "write_results",
]


def write_report(
    runs: Sequence[RunRecord],
    references: Mapping[str, str] | None,
    out_dir: Path,
    *,
    baseline: str = BASELINE,
    provenance: Mapping[str, Any] | None = None,
    resamples: int = DEFAULT_RESAMPLES,
    bootstrap_seed: int = DEFAULT_BOOTSTRAP_SEED,
) -> dict[str, Any]:
    """Write ``results.json``, ``plots/*.png`` and ``report.md`` into ``out_dir``; return the results."""
    if not runs:
        raise UserError(f"{out_dir}: no finished runs to report on")
    out_dir = Path(out_dir)
    results = build_results(
        runs,
        references,
        baseline=baseline,
        provenance=provenance,
        resamples=resamples,
        bootstrap_seed=bootstrap_seed,
    )
    plots = write_plots(results, runs, out_dir / "plots")
    results["plots"] = plots
    write_results(results, out_dir / "results.json")
    atomic_write_text(out_dir / "report.md", render_report(results, plots))
    return results
