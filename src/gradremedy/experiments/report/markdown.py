"""``report.md``: the headline table, the breakdowns, SE scores, training and diagnostics, provenance.

Everything is rendered from the ``results.json`` mapping (and the plot file names in it) alone, so a
stored report can be rebuilt from its results file.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from typing import Any

from gradremedy.experiments.report.runs import is_number
from gradremedy.experiments.report.schema import (
    DIAGNOSTICS,
    REAL_VOICE_CONDITIONS,
    SE_METRICS,
    baseline_of,
    sorted_buckets,
    vs,
)


def _fmt(value: Any, digits: int = 2, sign: bool = False) -> str:
    if not is_number(value):
        return "–"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def _fmt_stats(stats: Mapping[str, Any] | None, digits: int = 2) -> str:
    if not stats or stats.get("mean") is None:
        return "–"
    if (stats.get("n") or 0) < 2:
        return _fmt(stats["mean"], digits)
    return f"{_fmt(stats['mean'], digits)} ± {_fmt(stats['std'], digits)}"


def _fmt_value_or_stats(value: Any) -> str:
    """A number, or mean ± std of a statistics mapping."""
    return _fmt_stats(value) if isinstance(value, Mapping) else _fmt(value)


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def _fmt_p(value: Any) -> str:
    if not is_number(value):
        return "–"
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def _real_voice_cell(entry: Mapping[str, Any]) -> str:
    """``clean / noisy`` WER of the recorded voices, ``–`` for what was not measured."""
    voices = entry.get("real_voice") or {}
    return " / ".join(_fmt_value_or_stats((voices.get(c) or {}).get("wer")) for c in REAL_VOICE_CONDITIONS)


def format_table(results: Mapping[str, Any]) -> str:
    """The headline table as markdown: WER/CER per method, change against the baseline, p-values, and the
    WER on recorded voices when some method has it."""
    baseline = baseline_of(results)
    real_voice = any(entry.get("real_voice") for entry in results["methods"].values())
    columns = ["method", "WER %", "CER %", "seeds", f"rel. WER vs {baseline} %", "p bootstrap", "p sign test"]
    if real_voice:
        columns.append("real voice WER % (clean / noisy)")
    lines = ["| " + " | ".join(columns) + " |", "|---" * len(columns) + "|"]
    for method, entry in results["methods"].items():
        sig = entry.get(vs("significance", baseline)) or {}
        sign = sig.get("sign_test") or {}
        cells = [
            method,
            _fmt_stats(entry["wer"]),
            _fmt_stats(entry["cer"]),
            str(entry["wer"].get("n", 0)),
            _fmt(entry.get(vs("relative_wer", baseline)), 1, sign=True),
            _fmt_p(entry.get(vs("p_value", baseline))),
            _fmt_p(sign.get("p_value")),
        ]
        if real_voice:
            cells.append(_real_voice_cell(entry))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _breakdown_table(results: Mapping[str, Any], key: str, title: str) -> list[str]:
    baseline = baseline_of(results)
    methods = [m for m in results["methods"] if results["methods"][m].get(key)]
    if not methods:
        return []
    names = sorted_buckets({n for m in methods for n in results["methods"][m][key]})
    lines = [f"| {title} | " + " | ".join(methods) + " |", "|---" * (len(methods) + 1) + "|"]
    for name in names:
        cells = []
        for method in methods:
            stats = results["methods"][method][key].get(name)
            cell = _fmt_stats(stats)
            relative = stats.get(vs("relative", baseline)) if stats else None
            if is_number(relative) and method != baseline:
                cell += f" ({relative:+.1f} %)"
            cells.append(cell)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


# ---- sections of the report ---------------------------------------------------------------------------


def _header(results: Mapping[str, Any]) -> list[str]:
    prov = results.get("provenance", {})
    out = ["# Method comparison", ""]
    if prov.get("command"):
        out += [f"Produced by `{prov['command']}`", ""]
    machine = prov.get("machine")
    facts = [
        ("test set", prov.get("test_dir")),
        ("seeds", ", ".join(str(s) for s in results.get("seeds", []))),
        ("commit", prov.get("commit")),
        ("machine", machine.get("summary") if isinstance(machine, dict) else None),
        ("training precision", ", ".join(str(p) for p in prov.get("training_precision") or [])),
        (
            "wall time of this invocation",
            f"{prov['wall_s']:.0f} s" if is_number(prov.get("wall_s")) else None,
        ),
    ]
    return out + [f"- {name}: {value}" for name, value in facts if value]


def _wer_section(results: Mapping[str, Any], plots: Mapping[str, str]) -> list[str]:
    baseline = baseline_of(results)
    sig = results.get("significance", {})
    out = ["", "## Word error rate on the test set", "", format_table(results), ""]
    out += [
        f"WER and CER in percent, mean ± sample std over seeds. Relative WER change = (WER_method − "
        f"WER_{baseline}) / WER_{baseline}; negative is better.",
        "",
        f"Significance against `{baseline}`: {sig.get('bootstrap', 'paired bootstrap')}. "
        f"{_sentence(sig.get('sign_test', ''))}. A small p-value (say < 0.05) means the method's "
        "lower WER is unlikely to be resampling noise; a large one means the difference is not established.",
        "",
    ]
    if any(entry.get("real_voice") for entry in results["methods"].values()):
        out += ["Real voice: WER on recorded (not synthesised) speech, clean and with added noise.", ""]
    if "wer" in plots:
        out += [f"![WER per method]({plots['wer']})", ""]
    return out


def _breakdown_sections(results: Mapping[str, Any], plots: Mapping[str, str]) -> list[str]:
    out: list[str] = []
    for key, title, heading, plot_key in (
        ("by_snr", "SNR (dB)", "WER by SNR", "wer_by_snr"),
        ("by_condition", "condition", "WER by noise condition", "wer_by_condition"),
    ):
        table = _breakdown_table(results, key, title)
        if not table:
            continue
        out += [
            f"## {heading}",
            "",
            *table,
            "",
            f"In brackets: relative WER change against `{baseline_of(results)}`.",
            "",
        ]
        if plot_key in plots:
            out += [f"![{heading}]({plots[plot_key]})", ""]
    return out


def _enhancement_section(results: Mapping[str, Any]) -> list[str]:
    se_methods = [m for m, e in results["methods"].items() if e.get("se")]
    if not se_methods:
        return []
    out = [
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
    return out + [
        "",
        "On the test utterances with a clean reference; SI-SNR improvement is over the noisy input.",
        "",
    ]


def _training_section(plots: Mapping[str, str]) -> list[str]:
    if "training_curves" in plots:
        return ["## Training", "", f"![Training curves]({plots['training_curves']})", ""]
    return ["## Training", "", "No training logs found.", ""]


def _diagnostics_section(results: Mapping[str, Any], plots: Mapping[str, str]) -> list[str]:
    out = ["## Gradient diagnostics", ""]
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
            out.append(f"| {method} | " + " | ".join(_fmt(d.get(k), 3) for k in DIAGNOSTICS) + " |")
        out.append("")
    if "gradient_diagnostics" in plots:
        out += [f"![Gradient diagnostics]({plots['gradient_diagnostics']})", ""]
    if not diag_methods and "gradient_diagnostics" not in plots:
        out += ["No gradient diagnostics were logged.", ""]
    return out


def _provenance_section(results: Mapping[str, Any]) -> list[str]:
    out = [
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
            cells = [
                method,
                seed,
                f"`{run.get('exp_dir')}`",
                f"`{command}`" if command else "–",
                str(commit)[:12] if commit else "–",
                _fmt(info.get("wall_seconds"), 0),
                _fmt(run.get("eval_wall_s"), 0),
            ]
            out.append("| " + " | ".join(cells) + " |")
    return out + [""]


def render_report(results: Mapping[str, Any], plots: Mapping[str, str]) -> str:
    """The markdown report: tables, the tests used, plots and provenance."""
    sections = [
        _header(results),
        _wer_section(results, plots),
        _breakdown_sections(results, plots),
        _enhancement_section(results),
        _training_section(plots),
        _diagnostics_section(results, plots),
        _provenance_section(results),
    ]
    return "\n".join(line for section in sections for line in section)
