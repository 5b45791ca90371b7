"""What each augmentation of the embedded corpus does to WER on held-out voices.

One corpus per variant, all from the same seed, so that every variant has the same speakers, sentences,
noise types and SNRs and differs only in the augmentations it applies:

    full          every augmentation on (the default corpus)
    no_<name>     one augmentation off (``--no-augment <name>``)
    none          every augmentation off

An ``asr_only`` model (the recogniser alone, so that the answer does not depend on the gradient
method) is trained on each variant's training split with the same config and step budget, then
scored on two test sets of held-out speakers (test speakers are never training speakers):

    augmented test     the ``full`` corpus's test split (every augmentation, as in the demo)
    unaugmented test   the ``none`` corpus's test split (same utterances without augmentation)

A positive "effect" of an augmentation is the WER increase when it is switched off. Run::

    python -m gradremedy.experiments.augmentation_ablation --out ablation --num-utts 3000 --max-steps 1200

(the run recorded in ``results/augmentation_ablation/``).

It resumes: finished corpora, trainings and evaluations are kept.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from gradremedy.atomic import atomic_write_text
from gradremedy.config import load_config
from gradremedy.data.synth.augment import AUGMENTATIONS
from gradremedy.experiments.demo import corpus_ready, find_config
from gradremedy.provenance import git_commit, machine_info

TEST_SETS = {"augmented": "full", "unaugmented": "none"}


def variants() -> dict[str, list[str]]:
    """Variant name -> the ``--no-augment`` names it passes to the corpus builder."""
    table: dict[str, list[str]] = {"full": []}
    table.update({f"no_{name}": [name] for name in AUGMENTATIONS})
    table["none"] = ["all"]
    return table


def _gradremedy(*args: str) -> list[str]:
    """The command line of a ``gradremedy`` subcommand run by this interpreter."""
    return [sys.executable, "-m", "gradremedy", *args]


def _run(command: list[str], log: Path) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    with open(log, "w", encoding="utf-8") as handle:
        result = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, env=env, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{shlex.join(command)} failed (exit {result.returncode}); see {log}")


def build_corpora(out: Path, num_utts: int, seed: int, jobs: int, sample_rate: int | None = None) -> None:
    """One tiny corpus per variant, written at ``sample_rate`` (default: the preset's)."""
    from gradremedy.data.synth import synthesize_corpus

    for name, disabled in variants().items():
        data = out / "data" / name
        if not corpus_ready(data, sample_rate):
            print(f"[ablation] corpus {name}", flush=True)
            synthesize_corpus(
                data,
                preset="tiny",
                num_utts=num_utts,
                seed=seed,
                jobs=jobs,
                disabled_augmentations=disabled,
                sample_rate=sample_rate,
            )


def train_and_score(
    out: Path, name: str, config: Path, max_steps: int, seed: int, overrides: list[str]
) -> None:
    """Train ``asr_only`` on one variant and score it on both test sets (each step skipped if done)."""
    exp = out / "runs" / name
    exp.parent.mkdir(parents=True, exist_ok=True)
    command = _gradremedy(
        "train", "--config", str(config), "--data", str(out / "data" / name), "--out", str(exp),
        "--method", "asr_only", "--seed", str(seed), "--max-steps", str(max_steps),
        "--set", "train.num_threads=1",
    )  # fmt: skip
    for override in overrides:
        command += ["--set", override]
    if not (exp / "run.json").is_file():
        _run(command, out / "runs" / f"{name}.train.log")
    for test_name, corpus in TEST_SETS.items():
        report = exp / "eval" / f"{test_name}.json"
        if not report.is_file():
            test_dir = out / "data" / corpus / "test"
            score = _gradremedy("eval", "--exp", str(exp), "--data", str(test_dir), "--out", str(report))
            _run(score, out / "runs" / f"{name}.eval-{test_name}.log")


def collect(out: Path) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    for name in variants():
        exp = out / "runs" / name
        row = {}
        for test_name in TEST_SETS:
            report = json.loads((exp / "eval" / f"{test_name}.json").read_text(encoding="utf-8"))
            row[test_name] = {"wer": report["wer"], "cer": report["cer"], "num_utts": report["num_utts"]}
        run = json.loads((exp / "run.json").read_text(encoding="utf-8"))
        row["valid_wer"] = run.get("final_valid", {}).get("wer")
        rows[name] = row
    return rows


def format_report(results: dict[str, Any]) -> str:
    rows = results["variants"]
    full = rows["full"]
    lines = [
        "# What each augmentation does to WER on held-out voices",
        "",
        f"Produced by `{results['command']}`",
        "",
        f"- commit: {results['commit']}",
        f"- seed: {results['seed']} (corpora and trainings)",
        f"- machine: {results['machine']}",
        f"- wall time: {results['wall_seconds']:.0f} s",
        f"- each corpus: {results['num_utts']} utterances (train/valid/test 80/10/10 %, speaker-disjoint); "
        f"`asr_only` with `{results['config']}`, {results['max_steps']} steps, overrides: "
        f"{', '.join(results['overrides']) or 'none'}",
        "",
        "Test speakers are never training speakers. Augmented test: the default corpus's test split. "
        "Unaugmented test: the same utterances (speakers, sentences, noise, SNR) with every augmentation "
        "off. Effect of an augmentation = WER without it minus WER with all of them (positive: the "
        "augmentation helps).",
        "",
        "| trained on | augmented test WER % | effect | unaugmented test WER % | effect |",
        "|---|---|---|---|---|",
    ]
    for name, row in rows.items():
        cells = [name]
        for test_name in TEST_SETS:
            wer = row[test_name]["wer"]
            delta = wer - full[test_name]["wer"]
            cells += [f"{wer:.1f}", "–" if name == "full" else f"{delta:+.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Augmentations:", ""]
    lines += [f"- `{name}`: {text}" for name, text in AUGMENTATIONS.items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--config", default="tiny", help="a shipped config name or a YAML path")
    parser.add_argument("--num-utts", type=int, default=2400)
    parser.add_argument("--max-steps", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=2, help="trainings side by side (one thread each)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    started = time.monotonic()
    out = Path(args.out)
    config = Path(args.config) if args.config.endswith((".yaml", ".yml")) else find_config(args.config)
    # The corpora at the model's rate, so that loading does not resample (tiny: 8 kHz, tiny_16k: 16 kHz).
    sample_rate = load_config(config, args.overrides).model.sample_rate
    build_corpora(out, args.num_utts, args.seed, args.jobs, sample_rate)
    names = list(variants())
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = [
            pool.submit(train_and_score, out, name, config, args.max_steps, args.seed, args.overrides)
            for name in names
        ]
        for future in futures:
            future.result()
    results = {
        "command": shlex.join(
            ["python", "-m", "gradremedy.experiments.augmentation_ablation", *(argv or sys.argv[1:])]
        ),
        "commit": git_commit(),
        "machine": machine_info()["summary"],
        "seed": args.seed,
        "num_utts": args.num_utts,
        "config": str(args.config),
        "max_steps": args.max_steps,
        "overrides": args.overrides,
        "wall_seconds": time.monotonic() - started,
        "variants": collect(out),
    }
    report = format_report(results)
    atomic_write_text(out / "results.json", json.dumps(results, indent=2) + "\n")
    atomic_write_text(out / "report.md", report)
    print(report)
    print(f"report: {out / 'report.md'}")


if __name__ == "__main__":
    main()
