"""Turn finished runs (eval JSON, hypotheses, training logs, run.json) into ``results.json``, PNG plots
and a markdown report.

Input per run: the evaluation JSON written by ``gradremedy eval`` (``wer``, ``cer``, ``by_condition``,
``by_snr``, ``se``) and its ``<stem>.hyp.txt``, plus ``logs/metrics.csv``, ``logs/valid.csv`` and
``run.json`` of the experiment directory. Anything missing (a method without an SE front end, a run
without diagnostics) is left out of the tables and plots rather than failing the report.
"""

from __future__ import annotations

import csv
import json
import math
import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gradremedy.atomic import atomic_path, atomic_write_text
from gradremedy.errors import UserError
from gradremedy.experiments.significance import (
    DEFAULT_BOOTSTRAP_SEED,
    DEFAULT_RESAMPLES,
    mean_std,
    paired_bootstrap,
    relative_change,
    sign_test,
    utterance_errors,
)
from gradremedy.surgery.registry import method_names

BASELINE = "sum"
SE_METRICS = ("pesq", "stoi", "si_snr", "si_snr_improvement")
DIAGNOSTIC_METHODS = ("sum", "gr")
MIN_SEEDS_FOR_SIGN_TEST = 3

# Column names of logs/metrics.csv and logs/valid.csv, first match wins.
STEP_COLUMNS = ("step",)
LOSS_COLUMNS = ("loss",)
VALID_ACC_COLUMNS = ("acc", "valid_acc", "accuracy")
CONFLICT_COLUMNS = ("conflict_rate",)
COS_COLUMNS = ("cos_sa", "cos_mean", "mean_cos")
NORM_RATIO_COLUMNS = ("norm_ratio", "norm_ratio_mean", "ratio")
RESCALE_COLUMNS = ("rescale_rate",)
CLIP_COLUMNS = ("clip_frac",)


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


# ----------------------------------------------------------------------------------------------- reading


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
    if not isinstance(evaluation, dict) or not _is_number(evaluation.get("wer")):
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


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _wer_of(entry: Any) -> float | None:
    """A per-condition entry is either a WER number or a dict with a ``wer`` key."""
    if _is_number(entry):
        return float(entry)
    if isinstance(entry, Mapping) and _is_number(entry.get("wer")):
        return float(entry["wer"])
    return None


def _column(log: Mapping[str, np.ndarray], names: Sequence[str]) -> np.ndarray | None:
    for name in names:
        if name in log and np.isfinite(log[name]).any():
            return log[name]
    return None


# ------------------------------------------------------------------------------------------- statistics


def _ordered_methods(runs: Sequence[RunRecord]) -> list[str]:
    methods: list[str] = []
    for run in runs:
        if run.method not in methods:
            methods.append(run.method)
    return methods


def _breakdown(runs: Sequence[RunRecord], key: str, baseline_means: Mapping[str, float] | None) -> dict:
    """Mean/std over seeds of the WER per condition (``key`` = by_condition or by_snr)."""
    per_name: dict[str, list[float]] = {}
    for run in runs:
        table = run.evaluation.get(key) or {}
        if not isinstance(table, Mapping):
            continue
        for name, entry in table.items():
            wer = _wer_of(entry)
            if wer is not None:
                per_name.setdefault(str(name), []).append(wer)
    out = {}
    for name in _sorted_buckets(per_name):
        stats = mean_std(per_name[name])
        if baseline_means is not None:
            stats["relative_vs_sum"] = relative_change(stats["mean"], baseline_means.get(name))
        out[name] = stats
    return out


def _sorted_buckets(names: Iterable[str]) -> list[str]:
    """SNR buckets in numeric order ("-5..0" before "0..5"); other names alphabetically after them."""

    def key(name: str) -> tuple[int, float, str]:
        match = re.search(r"-?\d+(\.\d+)?", name)
        return (0, float(match.group()), name) if match else (1, 0.0, name)

    return sorted(names, key=key)


def _pooled_errors(runs: Sequence[RunRecord], references: Mapping[str, str]) -> dict[str, list[int]]:
    """Per-utterance [errors, reference words], summed over ``runs`` (one per seed)."""
    pooled: dict[str, list[int]] = {utt: [0, 0] for utt in references}
    for run in runs:
        for utt, count in utterance_errors(references, run.hypotheses or {}).items():
            pooled[utt][0] += count.errors
            pooled[utt][1] += count.words
    return pooled


def _significance(
    candidate: Sequence[RunRecord],
    baseline: Sequence[RunRecord],
    references: Mapping[str, str] | None,
    resamples: int,
    bootstrap_seed: int,
) -> dict[str, Any]:
    """Paired bootstrap (pooled over the seeds both have) and, with >= 3 seeds, a sign test.

    The bootstrap scores the test utterances that every pooled run decoded: the evaluator skips
    unusable utterances (unreadable audio, no transcript) and leaves them out of its WER, so they are
    left out here too rather than counted as errors.
    """
    result: dict[str, Any] = {"bootstrap": None, "sign_test": None}
    cand_seeds = {r.seed for r in candidate if r.hypotheses is not None}
    base_seeds = {r.seed for r in baseline if r.hypotheses is not None}
    shared = sorted(cand_seeds & base_seeds)
    if references and shared:
        pooled_runs = [r for r in [*candidate, *baseline] if r.seed in shared]
        decoded = set(references)
        for run in pooled_runs:
            decoded &= set(run.hypotheses or {})
        scored = {utt: references[utt] for utt in sorted(decoded)}
        cand = _pooled_errors([r for r in candidate if r.seed in shared], scored)
        base = _pooled_errors([r for r in baseline if r.seed in shared], scored)
        utts = sorted(scored)
        words = [cand[u][1] for u in utts]
        if sum(words) > 0:
            boot = paired_bootstrap(
                [cand[u][0] for u in utts],
                [base[u][0] for u in utts],
                words,
                resamples=resamples,
                seed=bootstrap_seed,
            )
            result["bootstrap"] = {
                "p_value": boot.p_value,
                "resamples": boot.resamples,
                "seed": boot.seed,
                "num_utts": boot.num_units,
                "seeds_pooled": shared,
                "delta_wer": boot.delta_wer,
                "delta_wer_ci95": list(boot.ci95),
            }
    cand_wer = {r.seed: float(r.evaluation["wer"]) for r in candidate}
    base_wer = {r.seed: float(r.evaluation["wer"]) for r in baseline}
    paired_seeds = sorted(set(cand_wer) & set(base_wer))
    if len(paired_seeds) >= MIN_SEEDS_FOR_SIGN_TEST:
        sign = sign_test([cand_wer[s] for s in paired_seeds], [base_wer[s] for s in paired_seeds])
        result["sign_test"] = {
            "p_value": sign.p_value,
            "wins": sign.wins,
            "losses": sign.losses,
            "ties": sign.ties,
            "seeds": paired_seeds,
        }
    return result


def _run_provenance(run: RunRecord) -> dict[str, Any]:
    info = run.run_info or {}
    keep = ("command", "seed", "git_commit", "wall_seconds", "train_seconds", "steps", "device", "versions")
    entry = {k: info[k] for k in keep if k in info}
    entry["exp_dir"] = str(run.exp_dir)
    entry["eval_path"] = str(run.eval_path) if run.eval_path else None
    entry["train_command"] = run.runner.get("train_command")
    entry["eval_command"] = run.runner.get("eval_command")
    entry["eval_wall_s"] = run.runner.get("eval_s")
    entry["host"] = run.runner.get("host")
    entry["run_json"] = info or None
    return entry


def build_results(
    runs: Sequence[RunRecord],
    references: Mapping[str, str] | None,
    *,
    baseline: str = BASELINE,
    provenance: Mapping[str, Any] | None = None,
    resamples: int = DEFAULT_RESAMPLES,
    bootstrap_seed: int = DEFAULT_BOOTSTRAP_SEED,
) -> dict[str, Any]:
    """The ``results.json`` mapping: per method WER/CER/by-condition/SE statistics over seeds, relative
    WER change and significance against ``baseline``, and provenance."""
    by_method: dict[str, list[RunRecord]] = {}
    for run in runs:
        by_method.setdefault(run.method, []).append(run)
    for method_runs in by_method.values():
        method_runs.sort(key=lambda r: r.seed)
    base_runs = by_method.get(baseline, [])
    base_wer = mean_std(r.evaluation["wer"] for r in base_runs)["mean"] if base_runs else None
    base_breakdowns = {
        key: {name: s["mean"] for name, s in _breakdown(base_runs, key, None).items()}
        for key in ("by_condition", "by_snr")
    }
    methods: dict[str, Any] = {}
    for method in _ordered_methods(runs):
        method_runs = by_method[method]
        entry: dict[str, Any] = {}
        for metric in ("wer", "cer"):
            values = {
                str(r.seed): float(r.evaluation[metric])
                for r in method_runs
                if _is_number(r.evaluation.get(metric))
            }
            entry[metric] = {**mean_std(values.values()), "per_seed": values}
        for key in ("by_condition", "by_snr"):
            entry[key] = _breakdown(method_runs, key, base_breakdowns[key] if base_runs else None)
        se: dict[str, Any] = {}
        for metric in SE_METRICS:
            values = [
                float(r.evaluation["se"][metric])
                for r in method_runs
                if isinstance(r.evaluation.get("se"), Mapping) and _is_number(r.evaluation["se"].get(metric))
            ]
            if values:
                se[metric] = mean_std(values)
        entry["se"] = se
        entry["num_utts"] = max((int(r.evaluation.get("num_utts") or 0) for r in method_runs), default=0)
        entry["relative_wer_vs_sum"] = relative_change(entry["wer"]["mean"], base_wer) if base_runs else None
        if method != baseline and base_runs:
            entry["significance_vs_sum"] = _significance(
                method_runs, base_runs, references, resamples, bootstrap_seed
            )
            boot = entry["significance_vs_sum"]["bootstrap"]
            entry["p_value_vs_sum"] = boot["p_value"] if boot else None
        else:
            entry["significance_vs_sum"] = None
            entry["p_value_vs_sum"] = None
        entry["diagnostics"] = _diagnostics_summary(method_runs)
        entry["runs"] = {str(r.seed): _run_provenance(r) for r in method_runs}
        methods[method] = entry
    noisy_input = {}
    for metric in SE_METRICS[:3]:  # the unprocessed noisy input, the same for every run that scored SE
        values = [
            float(r.evaluation["se"][f"{metric}_noisy"])
            for r in runs
            if isinstance(r.evaluation.get("se"), Mapping)
            and _is_number(r.evaluation["se"].get(f"{metric}_noisy"))
        ]
        if values:
            noisy_input[metric] = mean_std(values)
    return {
        "methods": methods,
        "noisy_input": noisy_input,
        "baseline": baseline,
        "seeds": sorted({r.seed for r in runs}),
        "significance": {
            "bootstrap": (
                f"paired bootstrap over test utterances, pooled over the seeds both methods share: "
                f"{resamples} resamples with replacement, numpy seed {bootstrap_seed}; p = fraction of "
                f"resamples where the method's WER is not lower than {baseline}'s (one-sided)"
            ),
            "sign_test": (
                f"exact one-sided sign test over per-seed WERs against {baseline} "
                f"(only with >= {MIN_SEEDS_FOR_SIGN_TEST} seeds)"
            ),
            "resamples": resamples,
            "seed": bootstrap_seed,
        },
        "provenance": dict(provenance or {}),
    }


def _diagnostics_summary(runs: Sequence[RunRecord]) -> dict[str, float] | None:
    """Means over steps (and seeds) of the gradient diagnostics, None when the runs logged none."""
    pooled: dict[str, list[np.ndarray]] = {}
    for run in runs:
        for name, columns in (
            ("conflict_rate", CONFLICT_COLUMNS),
            ("cos_mean", COS_COLUMNS),
            ("norm_ratio", NORM_RATIO_COLUMNS),
            ("rescale_rate", RESCALE_COLUMNS),
            ("clip_rate", CLIP_COLUMNS),
        ):
            column = _column(run.train_log, columns)
            if column is not None:
                pooled.setdefault(name, []).append(column[np.isfinite(column)])
    if not pooled:
        return None
    summary: dict[str, float] = {}
    for name, arrays in pooled.items():
        values = np.concatenate(arrays)
        if values.size:
            summary[name if name != "norm_ratio" else "norm_ratio_median"] = float(
                np.median(values) if name == "norm_ratio" else np.mean(values)
            )
    return summary


def write_results(results: Mapping[str, Any], path: Path) -> None:
    """``results.json``, atomically; NaN/inf become null so that any JSON reader accepts it."""
    atomic_write_text(path, json.dumps(_json_safe(results), indent=2, sort_keys=False) + "\n")


def _json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic):
        return _json_safe(value.item())
    return value


# ------------------------------------------------------------------------------------------------- plots


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
    names = _sorted_buckets({n for m in methods for n in results["methods"][m][key]})
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


def _mean_curve(
    logs: Sequence[Mapping[str, np.ndarray]], names: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Mean over runs of one column against ``step`` (steps any run logged; NaNs ignored)."""
    by_step: dict[float, list[float]] = {}
    for log in logs:
        steps = _column(log, STEP_COLUMNS)
        values = _column(log, names)
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
    methods = _ordered_methods(runs)
    panels = (("train", LOSS_COLUMNS, "training loss"), ("valid", VALID_ACC_COLUMNS, "validation accuracy"))
    curves = {}
    for source, names, _ in panels:
        for method in methods:
            logs = [r.train_log if source == "train" else r.valid_log for r in runs if r.method == method]
            steps, values = _mean_curve(logs, names)
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
        ("conflict_rate", CONFLICT_COLUMNS, "conflict rate (<s,a> < 0)"),
        ("cos", COS_COLUMNS, "cos(s, a)"),
        ("norm_ratio", NORM_RATIO_COLUMNS, "|s| / |a|"),
        ("rescale_rate", RESCALE_COLUMNS, "GR rescale rate"),
    )
    logs = {m: [r.train_log for r in runs if r.method == m] for m in methods}
    if not any(_column(log, names) is not None for m in methods for log in logs[m] for _, names, _ in panels):
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, 4, figsize=(17, 3.6))
    for ax, (name, columns, label) in zip(axes, panels):
        for method in methods:
            if name == "cos":  # distribution over logged steps and seeds
                values = [
                    c[np.isfinite(c)] for log in logs[method] if (c := _column(log, columns)) is not None
                ]
                if values and np.concatenate(values).size:
                    pooled = np.concatenate(values)
                    ax.hist(pooled, bins=40, range=(-1, 1), alpha=0.5, label=method, color=_color(method))
                continue
            steps, values = _mean_curve(logs[method], columns)
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
            if name == "norm_ratio" and ax.has_data():
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


# ---------------------------------------------------------------------------------------------- markdown


def _fmt(value: Any, digits: int = 2, sign: bool = False) -> str:
    if not _is_number(value):
        return "–"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def _fmt_stats(stats: Mapping[str, Any] | None, digits: int = 2) -> str:
    if not stats or stats.get("mean") is None:
        return "–"
    if (stats.get("n") or 0) < 2:
        return _fmt(stats["mean"], digits)
    return f"{_fmt(stats['mean'], digits)} ± {_fmt(stats['std'], digits)}"


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def _fmt_p(value: Any) -> str:
    if not _is_number(value):
        return "–"
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def format_table(results: Mapping[str, Any]) -> str:
    """The headline table as markdown: WER/CER per method, change against the baseline, p-values."""
    baseline = results.get("baseline", BASELINE)
    header = (
        f"| method | WER % | CER % | seeds | rel. WER vs {baseline} % | p bootstrap | p sign test |\n"
        "|---|---|---|---|---|---|---|"
    )
    lines = [header]
    for method, entry in results["methods"].items():
        sig = entry.get("significance_vs_sum") or {}
        sign = sig.get("sign_test") or {}
        cells = [
            method,
            _fmt_stats(entry["wer"]),
            _fmt_stats(entry["cer"]),
            str(entry["wer"].get("n", 0)),
            _fmt(entry.get("relative_wer_vs_sum"), 1, sign=True),
            _fmt_p(entry.get("p_value_vs_sum")),
            _fmt_p(sign.get("p_value")),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _breakdown_table(results: Mapping[str, Any], key: str, title: str) -> list[str]:
    methods = [m for m in results["methods"] if results["methods"][m].get(key)]
    if not methods:
        return []
    names = _sorted_buckets({n for m in methods for n in results["methods"][m][key]})
    lines = [f"| {title} | " + " | ".join(methods) + " |", "|---" * (len(methods) + 1) + "|"]
    for name in names:
        cells = []
        for method in methods:
            stats = results["methods"][method][key].get(name)
            cell = _fmt_stats(stats)
            if stats and _is_number(stats.get("relative_vs_sum")) and method != results.get("baseline"):
                cell += f" ({stats['relative_vs_sum']:+.1f} %)"
            cells.append(cell)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def render_report(results: Mapping[str, Any], plots: Mapping[str, str]) -> str:
    """The markdown report: tables, the tests used, plots and provenance."""
    baseline = results.get("baseline", BASELINE)
    prov = results.get("provenance", {})
    sig = results.get("significance", {})
    seeds = results.get("seeds", [])
    out = ["# Method comparison", ""]
    if prov.get("command"):
        out += [f"Produced by `{prov['command']}`", ""]
    facts = [
        ("test set", prov.get("test_dir")),
        ("seeds", ", ".join(str(s) for s in seeds)),
        ("commit", prov.get("commit")),
        (
            "machine",
            prov.get("machine", {}).get("summary") if isinstance(prov.get("machine"), dict) else None,
        ),
        (
            "wall time of this invocation",
            f"{prov['wall_s']:.0f} s" if _is_number(prov.get("wall_s")) else None,
        ),
    ]
    out += [f"- {name}: {value}" for name, value in facts if value]
    out += ["", "## Word error rate on the test set", "", format_table(results), ""]
    out += [
        f"WER and CER in percent, mean ± sample std over seeds. Relative WER change = (WER_method − "
        f"WER_{baseline}) / WER_{baseline}; negative is better.",
        "",
        f"Significance against `{baseline}`: {sig.get('bootstrap', 'paired bootstrap')}. "
        f"{_sentence(sig.get('sign_test', ''))}. A small p-value (say < 0.05) means the method's "
        "lower WER is unlikely to be resampling noise; a large one means the difference is not established.",
        "",
    ]
    if "wer" in plots:
        out += [f"![WER per method]({plots['wer']})", ""]
    for key, title, heading in (
        ("by_snr", "SNR (dB)", "WER by SNR"),
        ("by_condition", "condition", "WER by noise condition"),
    ):
        table = _breakdown_table(results, key, title)
        if table:
            out += [
                f"## {heading}",
                "",
                *table,
                "",
                f"In brackets: relative WER change against `{baseline}`.",
                "",
            ]
            plot_key = "wer_by_snr" if key == "by_snr" else "wer_by_condition"
            if plot_key in plots:
                out += [f"![{heading}]({plots[plot_key]})", ""]
    se_methods = [m for m, e in results["methods"].items() if e.get("se")]
    if se_methods:
        out += [
            "## Speech enhancement (test set)",
            "",
            "| method | PESQ | STOI | SI-SNR dB | SI-SNR improvement dB |",
        ]
        out += ["|---|---|---|---|---|"]
        noisy = results.get("noisy_input") or {}
        if noisy:
            out.append("| (noisy input) | " + " | ".join(_fmt_stats(noisy.get(m)) for m in SE_METRICS) + " |")
        for method in se_methods:
            se = results["methods"][method]["se"]
            out.append(f"| {method} | " + " | ".join(_fmt_stats(se.get(m)) for m in SE_METRICS) + " |")
        out += [
            "",
            "On the test utterances with a clean reference; SI-SNR improvement is over the noisy input.",
            "",
        ]
    out += ["## Training", ""]
    if "training_curves" in plots:
        out += [f"![Training curves]({plots['training_curves']})", ""]
    else:
        out += ["No training logs found.", ""]
    out += ["## Gradient diagnostics", ""]
    diag_methods = [m for m, e in results["methods"].items() if e.get("diagnostics")]
    if diag_methods:
        out += [
            "How often the SE gradient s conflicts with the ASR gradient a on the shared SE parameters "
            "(<s, a> < 0), their cosine, the norm ratio |s|/|a|, how often GR's rescale branch fires and "
            "how often the global gradient clip binds (means over logged steps and seeds; norm ratio: "
            "median).",
            "",
            "| method | conflict rate | mean cos(s,a) | median abs(s)/abs(a) | rescale rate | clip rate |",
            "|---|---|---|---|---|---|",
        ]
        for method in diag_methods:
            d = results["methods"][method]["diagnostics"]
            keys = ("conflict_rate", "cos_mean", "norm_ratio_median", "rescale_rate", "clip_rate")
            cells = [_fmt(d.get(k), 3) for k in keys]
            out.append(f"| {method} | " + " | ".join(cells) + " |")
        out.append("")
    if "gradient_diagnostics" in plots:
        out += [f"![Gradient diagnostics]({plots['gradient_diagnostics']})", ""]
    if not diag_methods and "gradient_diagnostics" not in plots:
        out += ["No gradient diagnostics were logged.", ""]
    out += [
        "## Provenance",
        "",
        "| method | seed | experiment | command | commit | train wall s | eval wall s |",
    ]
    out += ["|---|---|---|---|---|---|---|"]
    for method, entry in results["methods"].items():
        for seed, run in entry.get("runs", {}).items():
            info = run.get("run_json") or {}
            command = run.get("train_command") or info.get("command")
            if isinstance(command, list):
                command = shlex.join(str(c) for c in command)
            commit = info.get("git_commit")
            wall = info.get("wall_seconds")
            cells = [
                method,
                seed,
                f"`{run.get('exp_dir')}`",
                f"`{command}`" if command else "–",
                str(commit)[:12] if commit else "–",
                _fmt(wall, 0),
                _fmt(run.get("eval_wall_s"), 0),
            ]
            out.append("| " + " | ".join(cells) + " |")
    out.append("")
    return "\n".join(out)


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
