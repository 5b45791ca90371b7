"""The PNG plots of a comparison (matplotlib, Agg backend): WER per method, WER by SNR and by noise
condition, training curves and the gradient diagnostics of ``sum`` and ``gr``."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gradremedy.atomic import atomic_path
from gradremedy.experiments.report.runs import RunRecord, log_column, ordered_methods
from gradremedy.experiments.report.schema import sorted_buckets
from gradremedy.surgery.registry import method_names

DIAGNOSTIC_METHODS = ("sum", "gr")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


_METHOD_ORDER = ("asr_only", *method_names())  # the registry's order


def _color(method: str) -> str:
    """One colour per method across every plot."""
    index = _METHOD_ORDER.index(method) if method in _METHOD_ORDER else len(_METHOD_ORDER)
    return f"C{index % 10}"


def _save(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    return path


def plot_wer(results: Mapping[str, Any], path: Path) -> Path:
    """Bar per method: mean test WER with the seed std as error bar, each seed as a dot."""
    plt = _pyplot()
    methods = list(results["methods"])
    fig, ax = plt.subplots(figsize=(1.2 * len(methods) + 2.5, 3.6))
    means = [results["methods"][m]["wer"]["mean"] or 0.0 for m in methods]
    stds = [results["methods"][m]["wer"]["std"] or 0.0 for m in methods]
    ax.bar(methods, means, yerr=stds, capsize=4, color=[_color(m) for m in methods], alpha=0.8)
    for i, method in enumerate(methods):
        seeds = list(results["methods"][method]["wer"]["per_seed"].values())
        ax.scatter([i] * len(seeds), seeds, color="black", s=10, zorder=3)
    ax.set_ylabel("test WER (%)")
    ax.set_title("WER per method (mean ± std over seeds; dots: seeds)")
    return _save(fig, path)


def plot_wer_breakdown(results: Mapping[str, Any], key: str, path: Path) -> Path | None:
    """WER per SNR bucket (lines) or per noise condition (grouped bars), one series per method."""
    methods = [m for m in results["methods"] if results["methods"][m].get(key)]
    if not methods:
        return None
    plt = _pyplot()
    names = sorted_buckets({n for m in methods for n in results["methods"][m][key]})
    fig, ax = plt.subplots(figsize=(max(5.0, 0.9 * len(names) + 3), 3.8))
    x = np.arange(len(names))
    width = 0.8 / len(methods)
    for i, method in enumerate(methods):
        table = results["methods"][method][key]
        mean = np.array([table[n]["mean"] if n in table else np.nan for n in names], dtype=float)
        std = np.array([table[n]["std"] if n in table else np.nan for n in names], dtype=float)
        if key == "by_snr":
            ax.errorbar(x, mean, yerr=std, marker="o", capsize=3, label=method, color=_color(method))
        else:
            offset = -0.4 + (i + 0.5) * width
            ax.bar(x + offset, mean, width, yerr=std, capsize=2, label=method, color=_color(method))
    ax.set_xticks(x, names, rotation=30 if len(names) > 6 else 0)
    ax.set_xlabel("SNR bucket (dB)" if key == "by_snr" else "noise condition")
    ax.set_ylabel("test WER (%)")
    ax.set_title("WER by SNR" if key == "by_snr" else "WER by noise condition")
    ax.legend(fontsize=8)
    return _save(fig, path)


def _mean_curve(logs: Sequence[Mapping[str, np.ndarray]], what: str) -> tuple[np.ndarray, np.ndarray]:
    """Mean over runs of one logged value against ``step`` (steps any run logged; NaNs ignored)."""
    by_step: dict[float, list[float]] = {}
    for log in logs:
        steps = log_column(log, "step")
        values = log_column(log, what)
        if steps is None or values is None:
            continue
        for step, value in zip(steps, values):
            if math.isfinite(step) and math.isfinite(value):
                by_step.setdefault(step, []).append(value)
    steps = np.array(sorted(by_step), dtype=float)
    return steps, np.array([np.mean(by_step[s]) for s in steps], dtype=float)


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    if values.size < 2 * window or window < 2:
        return values
    kernel = np.ones(window) / window
    padded = np.concatenate([np.full(window - 1, values[0]), values])
    return np.convolve(padded, kernel, mode="valid")


def plot_training_curves(runs: Sequence[RunRecord], path: Path) -> Path | None:
    """Training loss and validation accuracy over steps, per method, mean over seeds."""
    methods = ordered_methods(runs)
    panels = (("train", "loss", "training loss"), ("valid", "valid_acc", "validation accuracy"))
    curves = {}
    for source, what, _ in panels:
        for method in methods:
            logs = [r.train_log if source == "train" else r.valid_log for r in runs if r.method == method]
            steps, values = _mean_curve(logs, what)
            if steps.size:
                curves[(source, method)] = (steps, values)
    if not curves:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, (source, _, label) in zip(axes, panels):
        for method in methods:
            if (source, method) in curves:
                steps, values = curves[(source, method)]
                shown = _smooth(values, max(1, steps.size // 50)) if source == "train" else values
                marker = "o" if steps.size < 20 else None
                ax.plot(steps, shown, marker=marker, label=method, color=_color(method))
        ax.set_xlabel("step")
        ax.set_ylabel(label)
        ax.set_title(f"{label} (mean over seeds)")
        if ax.has_data():
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes)
    return _save(fig, path)


def plot_gradient_diagnostics(runs: Sequence[RunRecord], path: Path) -> Path | None:
    """The paper's analysis for ``sum`` and ``gr``: conflict rate, distribution of cos(s, a), norm
    ratio |s|/|a| and how often GR rescales, over training (mean over seeds)."""
    methods = [m for m in DIAGNOSTIC_METHODS if any(r.method == m for r in runs)]
    panels = (
        ("conflict_rate", "conflict rate (<s,a> < 0)"),
        ("cos", "cos(s, a)"),
        ("norm_ratio_median", "|s| / |a|"),
        ("rescale_rate", "GR rescale rate"),
    )
    logs = {m: [r.train_log for r in runs if r.method == m] for m in methods}
    if not any(log_column(log, name) is not None for m in methods for log in logs[m] for name, _ in panels):
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, 4, figsize=(17, 3.6))
    for ax, (name, label) in zip(axes, panels):
        for method in methods:
            if name == "cos":  # distribution over logged steps and seeds
                values = [
                    c[np.isfinite(c)] for log in logs[method] if (c := log_column(log, name)) is not None
                ]
                if values and np.concatenate(values).size:
                    pooled = np.concatenate(values)
                    ax.hist(pooled, bins=40, range=(-1, 1), alpha=0.5, label=method, color=_color(method))
                continue
            steps, values = _mean_curve(logs[method], name)
            if steps.size:
                smoothed = _smooth(values, max(1, steps.size // 50))
                ax.plot(steps, smoothed, label=method, color=_color(method))
        if name == "cos":
            ax.axvline(0.0, color="black", lw=0.8)
            ax.set_xlabel("cos(s, a) per logged step")
            ax.set_ylabel("count")
        else:
            ax.set_xlabel("step")
            ax.set_ylabel(label)
            if name == "norm_ratio_median" and ax.has_data():
                ax.set_yscale("log")
        ax.set_title(label)
        if ax.has_data():
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes)
    return _save(fig, path)


def write_plots(results: Mapping[str, Any], runs: Sequence[RunRecord], plot_dir: Path) -> dict[str, str]:
    """Every plot that has data; returns {name: file name relative to the report}."""
    made = {
        "wer": plot_wer(results, plot_dir / "wer.png"),
        "wer_by_snr": plot_wer_breakdown(results, "by_snr", plot_dir / "wer_by_snr.png"),
        "wer_by_condition": plot_wer_breakdown(results, "by_condition", plot_dir / "wer_by_condition.png"),
        "training_curves": plot_training_curves(runs, plot_dir / "training_curves.png"),
        "gradient_diagnostics": plot_gradient_diagnostics(runs, plot_dir / "gradient_diagnostics.png"),
    }
    return {name: f"{plot_dir.name}/{p.name}" for name, p in made.items() if p is not None}
