"""The numbers of ``results.json``: statistics over seeds, changes and significance against the baseline,
per-condition breakdowns, SE scores, gradient diagnostics and the provenance of every run."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from gradremedy.experiments.realvoice import real_voice_summary
from gradremedy.experiments.report.runs import RunRecord, is_number, log_column, ordered_methods
from gradremedy.experiments.report.schema import BASELINE, BREAKDOWNS, SE_METRICS, sorted_buckets, vs
from gradremedy.experiments.significance import (
    DEFAULT_BOOTSTRAP_SEED,
    DEFAULT_RESAMPLES,
    mean_std,
    paired_bootstrap,
    relative_change,
    sign_test,
    utterance_errors,
)

MIN_SEEDS_FOR_SIGN_TEST = 3


def _wer_of(entry: Any) -> float | None:
    """A per-condition entry is either a WER number or a dict with a ``wer`` key."""
    if is_number(entry):
        return float(entry)
    if isinstance(entry, Mapping) and is_number(entry.get("wer")):
        return float(entry["wer"])
    return None


def breakdown(
    runs: Sequence[RunRecord], key: str, baseline_means: Mapping[str, float] | None, baseline: str
) -> dict[str, Any]:
    """Mean/std over seeds of the WER per condition (``key`` = by_condition or by_snr), with the relative
    change against the baseline's mean when ``baseline_means`` is given."""
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
    for name in sorted_buckets(per_name):
        stats = mean_std(per_name[name])
        if baseline_means is not None:
            stats[vs("relative", baseline)] = relative_change(stats["mean"], baseline_means.get(name))
        out[name] = stats
    return out


def _pooled_errors(runs: Sequence[RunRecord], references: Mapping[str, str]) -> dict[str, list[int]]:
    """Per-utterance [errors, reference words], summed over ``runs`` (one per seed)."""
    pooled: dict[str, list[int]] = {utt: [0, 0] for utt in references}
    for run in runs:
        for utt, count in utterance_errors(references, run.hypotheses or {}).items():
            pooled[utt][0] += count.errors
            pooled[utt][1] += count.words
    return pooled


def _bootstrap(
    candidate: Sequence[RunRecord],
    baseline: Sequence[RunRecord],
    references: Mapping[str, str] | None,
    resamples: int,
    bootstrap_seed: int,
) -> dict[str, Any] | None:
    """Paired bootstrap over the test utterances, pooled over the seeds both have hypotheses for.

    It scores the test utterances that every pooled run decoded: the evaluator skips unusable
    utterances (unreadable audio, no transcript) and leaves them out of its WER, so they are left out
    here too rather than counted as errors.
    """
    cand_seeds = {r.seed for r in candidate if r.hypotheses is not None}
    base_seeds = {r.seed for r in baseline if r.hypotheses is not None}
    shared = sorted(cand_seeds & base_seeds)
    if not references or not shared:
        return None
    decoded = set(references)
    for run in [*candidate, *baseline]:
        if run.seed in shared:
            decoded &= set(run.hypotheses or {})
    scored = {utt: references[utt] for utt in sorted(decoded)}
    cand = _pooled_errors([r for r in candidate if r.seed in shared], scored)
    base = _pooled_errors([r for r in baseline if r.seed in shared], scored)
    utts = sorted(scored)
    words = [cand[u][1] for u in utts]
    if sum(words) == 0:
        return None
    boot = paired_bootstrap(
        [cand[u][0] for u in utts],
        [base[u][0] for u in utts],
        words,
        resamples=resamples,
        seed=bootstrap_seed,
    )
    return {
        "p_value": boot.p_value,
        "resamples": boot.resamples,
        "seed": boot.seed,
        "num_utts": boot.num_units,
        "seeds_pooled": shared,
        "delta_wer": boot.delta_wer,
        "delta_wer_ci95": list(boot.ci95),
    }


def _sign_test(candidate: Sequence[RunRecord], baseline: Sequence[RunRecord]) -> dict[str, Any] | None:
    """Exact sign test over the per-seed WERs of the seeds both have (at least 3)."""
    cand_wer = {r.seed: float(r.evaluation["wer"]) for r in candidate}
    base_wer = {r.seed: float(r.evaluation["wer"]) for r in baseline}
    paired_seeds = sorted(set(cand_wer) & set(base_wer))
    if len(paired_seeds) < MIN_SEEDS_FOR_SIGN_TEST:
        return None
    sign = sign_test([cand_wer[s] for s in paired_seeds], [base_wer[s] for s in paired_seeds])
    return {
        "p_value": sign.p_value,
        "wins": sign.wins,
        "losses": sign.losses,
        "ties": sign.ties,
        "seeds": paired_seeds,
    }


def run_provenance(run: RunRecord) -> dict[str, Any]:
    """What ran and where: the run's ``run.json`` fields, its directories, commands and wall times."""
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


def diagnostics_summary(runs: Sequence[RunRecord]) -> dict[str, float] | None:
    """Means over steps (and seeds) of the gradient diagnostics, the median for the norm ratio; None when
    the runs logged none."""
    sources = {
        "conflict_rate": "conflict_rate",
        "cos_mean": "cos",
        "norm_ratio_median": "norm_ratio_median",
        "rescale_rate": "rescale_rate",
        "clip_rate": "clip_rate",
    }
    pooled: dict[str, list[np.ndarray]] = {}
    for run in runs:
        for name, what in sources.items():
            column = log_column(run.train_log, what)
            if column is not None:
                pooled.setdefault(name, []).append(column[np.isfinite(column)])
    if not pooled:
        return None
    summary: dict[str, float] = {}
    for name, arrays in pooled.items():
        values = np.concatenate(arrays)
        if values.size:
            summary[name] = float(np.median(values) if name == "norm_ratio_median" else np.mean(values))
    return summary


def _se_summary(runs: Sequence[RunRecord], suffix: str = "", metrics: Sequence[str] = SE_METRICS) -> dict:
    """Mean/std over ``runs`` of each SE metric (``suffix`` "_noisy": of the unprocessed input)."""
    se: dict[str, Any] = {}
    for metric in metrics:
        values = [
            float(r.evaluation["se"][metric + suffix])
            for r in runs
            if isinstance(r.evaluation.get("se"), Mapping)
            and is_number(r.evaluation["se"].get(metric + suffix))
        ]
        if values:
            se[metric] = mean_std(values)
    return se


def _method_entry(
    method_runs: Sequence[RunRecord],
    base_runs: Sequence[RunRecord],
    base_breakdowns: Mapping[str, Mapping[str, float]] | None,
    base_wer: float | None,
    is_baseline: bool,
    baseline: str,
    significance: dict[str, Any],
) -> dict[str, Any]:
    """One method's ``results["methods"][m]``; ``significance``: the bootstrap's references and settings."""
    entry: dict[str, Any] = {}
    for metric in ("wer", "cer"):
        values = {
            str(r.seed): float(r.evaluation[metric])
            for r in method_runs
            if is_number(r.evaluation.get(metric))
        }
        entry[metric] = {**mean_std(values.values()), "per_seed": values}
    for key in BREAKDOWNS:
        entry[key] = breakdown(method_runs, key, base_breakdowns[key] if base_breakdowns else None, baseline)
    entry["se"] = _se_summary(method_runs)
    entry["num_utts"] = max((int(r.evaluation.get("num_utts") or 0) for r in method_runs), default=0)
    entry[vs("relative_wer", baseline)] = (
        relative_change(entry["wer"]["mean"], base_wer) if base_runs else None
    )
    tests = None
    if not is_baseline and base_runs:
        tests = {
            "bootstrap": _bootstrap(method_runs, base_runs, **significance),
            "sign_test": _sign_test(method_runs, base_runs),
        }
    entry[vs("significance", baseline)] = tests
    entry[vs("p_value", baseline)] = tests["bootstrap"]["p_value"] if tests and tests["bootstrap"] else None
    entry["diagnostics"] = diagnostics_summary(method_runs)
    entry["real_voice"] = real_voice_summary({str(r.seed): r.real_voice for r in method_runs})
    entry["runs"] = {str(r.seed): run_provenance(r) for r in method_runs}
    return entry


def describe_tests(baseline: str, resamples: int, bootstrap_seed: int) -> dict[str, Any]:
    """``results["significance"]``: the tests in words, with their settings."""
    return {
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
    }


def build_results(
    runs: Sequence[RunRecord],
    references: Mapping[str, str] | None,
    *,
    baseline: str = BASELINE,
    provenance: Mapping[str, Any] | None = None,
    resamples: int = DEFAULT_RESAMPLES,
    bootstrap_seed: int = DEFAULT_BOOTSTRAP_SEED,
) -> dict[str, Any]:
    """The ``results.json`` mapping (see :mod:`gradremedy.experiments.report.schema`): per method WER/CER,
    breakdowns and SE statistics over seeds, relative WER change and significance against ``baseline``,
    and provenance."""
    by_method: dict[str, list[RunRecord]] = {}
    for run in runs:
        by_method.setdefault(run.method, []).append(run)
    for method_runs in by_method.values():
        method_runs.sort(key=lambda r: r.seed)
    base_runs = by_method.get(baseline, [])
    base_wer = mean_std(r.evaluation["wer"] for r in base_runs)["mean"] if base_runs else None
    base_breakdowns = {
        key: {name: s["mean"] for name, s in breakdown(base_runs, key, None, baseline).items()}
        for key in BREAKDOWNS
    }
    significance = {"references": references, "resamples": resamples, "bootstrap_seed": bootstrap_seed}
    methods = {
        method: _method_entry(
            by_method[method],
            base_runs,
            base_breakdowns if base_runs else None,
            base_wer,
            method == baseline,
            baseline,
            significance,
        )
        for method in ordered_methods(runs)
    }
    return {
        "methods": methods,
        "noisy_input": _se_summary(runs, "_noisy", SE_METRICS[:3]),  # the same for every run that scored SE
        "baseline": baseline,
        "seeds": sorted({r.seed for r in runs}),
        "significance": describe_tests(baseline, resamples, bootstrap_seed),
        "provenance": dict(provenance or {}),
    }
