"""Fabricated experiment directories and data folders for the report, compare and demo tests.

A fabricated run looks like what ``gradremedy train`` + ``gradremedy eval`` leave behind: ``run.json``,
``logs/metrics.csv``, ``logs/valid.csv``, ``eval/test.json`` and ``eval/test.hyp.txt``. The WER in the
JSON is computed from the hypotheses with jiwer, so statistics and significance agree with each other.
"""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Callable
from pathlib import Path

import jiwer
import pytest

WORDS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliett")
CONDITIONS = ("white", "babble")
SNRS = ("-5..0", "0..5", "5..10")


def make_references(num_utts: int, seed: int = 0) -> dict[str, str]:
    rng = random.Random(seed)
    return {
        f"utt{i:04d}": " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 6))) for i in range(num_utts)
    }


def corrupt(references: dict[str, str], error_rate: float, seed: int) -> dict[str, str]:
    """Hypotheses with each word substituted with probability ``error_rate``."""
    rng = random.Random(seed)
    hyps = {}
    for utt, text in references.items():
        words = [w if rng.random() >= error_rate else "zulu" for w in text.split()]
        hyps[utt] = " ".join(words)
    return hyps


def write_text(path: Path, entries: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{utt} {text}\n" for utt, text in sorted(entries.items())), encoding="utf-8")


def write_csv(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def write_run(
    exp_dir: Path,
    references: dict[str, str],
    hypotheses: dict[str, str],
    *,
    method: str,
    seed: int,
    diagnostics: bool = True,
    se: bool = True,
    steps: int = 40,
) -> dict:
    """A finished run in ``exp_dir``; returns its evaluation JSON."""
    utts = sorted(references)
    refs = [references[u] for u in utts]
    hyps = [hypotheses.get(u, "") for u in utts]
    wer = 100.0 * jiwer.wer(refs, hyps)
    cer = 100.0 * jiwer.cer(refs, hyps)
    by_condition, by_snr = {}, {}
    for i, cond in enumerate(CONDITIONS):
        part = utts[i :: len(CONDITIONS)]
        by_condition[cond] = {
            "wer": 100.0 * jiwer.wer([references[u] for u in part], [hypotheses[u] for u in part])
        }
    for i, snr in enumerate(SNRS):
        part = utts[i :: len(SNRS)]
        by_snr[snr] = {"wer": 100.0 * jiwer.wer([references[u] for u in part], [hypotheses[u] for u in part])}
    evaluation = {
        "wer": wer,
        "cer": cer,
        "num_utts": len(utts),
        "by_condition": by_condition,
        "by_snr": by_snr,
        "se": {
            "pesq": 2.0 + seed / 10 if se else None,
            "stoi": 0.8 if se else None,
            "si_snr": 5.0 + seed if se else None,
            "si_snr_improvement": 3.0 if se else None,
            "pesq_noisy": 1.5 if se else None,
            "stoi_noisy": 0.7 if se else None,
            "si_snr_noisy": 2.0 + seed if se else None,
        },
        "errors": [],
    }
    (exp_dir / "eval").mkdir(parents=True, exist_ok=True)
    (exp_dir / "eval" / "test.json").write_text(json.dumps(evaluation), encoding="utf-8")
    write_text(exp_dir / "eval" / "test.hyp.txt", hypotheses)
    rng = random.Random(seed)
    rows = []
    for step in range(1, steps + 1):
        row = {"step": step, "epoch": 1 + step // 20, "loss": 10.0 / step + rng.random(), "acc": step / steps}
        if diagnostics:
            row.update(
                conflict_rate=rng.random(),
                cos_mean=rng.uniform(-0.5, 0.5),
                norm_ratio_median=rng.uniform(1, 20),
                rescale_rate=rng.random() if method == "gr" else "",
                clip_frac=rng.random(),
            )
        rows.append(row)
    write_csv(exp_dir / "logs" / "metrics.csv", rows)
    write_csv(
        exp_dir / "logs" / "valid.csv",
        [{"step": s, "epoch": s // 20, "loss": 5.0 / s, "acc": min(1.0, s / 30)} for s in (10, 20, 30, 40)],
    )
    run_json = {
        "command": ["gradremedy", "train", "--method", method, "--seed", str(seed)],
        "git_commit": "0123456789abcdef",
        "seed": seed,
        "method": method,
        "device": "cpu",
        "precision": "bfloat16",
        "wall_seconds": 12.5,
        "train_seconds": 11.0,
        "steps": steps,
        "finished": True,
    }
    (exp_dir / "run.json").write_text(json.dumps(run_json), encoding="utf-8")
    return evaluation


def make_data_dir(root: Path, references: dict[str, str]) -> Path:
    """A data folder with train/valid/test; only the test text matters to the report."""
    for split in ("train", "valid", "test"):
        split_dir = root / split
        split_dir.mkdir(parents=True, exist_ok=True)
        write_text(split_dir / "text", references)
        write_text(split_dir / "wav.scp", {u: f"/nonexistent/{u}.wav" for u in references})
        write_text(split_dir / "utt2spk", {u: "spk1" for u in references})
    return root


ERROR_RATES = {"asr_only": 0.45, "sum": 0.30, "gr": 0.10, "pcgrad": 0.30}


class FakePipeline:
    """Stands in for ``train`` and ``evaluate``: counts calls and writes what they would write."""

    def __init__(self, fail: set[str] | None = None):
        self.train_calls: list[tuple[str, int]] = []
        self.eval_calls: list[tuple[str, int]] = []
        self.threads: list[int] = []
        self.real_voice_calls: list[tuple[str, int, str]] = []
        self.check_calls: list[tuple[str, int]] = []  # the comparison's one data check (by run)
        self.data_checks: list[object] = []  # the data check each training was given
        self.fail = fail or set()

    def check_data(self, spec, settings):
        """Stands in for the comparison's data check (the fabricated data folders have no audio)."""
        from gradremedy.train.setup import DataCheck

        self.check_calls.append((spec.method, spec.seed))
        return DataCheck(skip_bad=False, left_out=())

    def train(self, spec, settings) -> None:
        import torch

        from gradremedy.errors import UserError

        self.train_calls.append((spec.method, spec.seed))
        self.data_checks.append(settings.data_check)
        self.threads.append(torch.get_num_threads())
        if spec.method in self.fail:
            raise UserError(f"{spec.exp_dir}: training diverged")
        (spec.exp_dir / "checkpoints").mkdir(parents=True, exist_ok=True)

    def evaluate(self, spec, settings) -> None:
        self.eval_calls.append((spec.method, spec.seed))
        from gradremedy.experiments.report import read_kaldi_text

        references = read_kaldi_text(settings.data_dir / "test" / "text")
        hyps = corrupt(references, ERROR_RATES.get(spec.method, 0.3), seed=spec.seed)
        write_run(
            spec.exp_dir, references, hyps, method=spec.method, seed=spec.seed, se=spec.method != "asr_only"
        )

    def evaluate_real_voice(self, spec, settings, name) -> None:
        """What ``gradremedy eval`` writes for a real-voice set: WER/CER against its text."""
        from gradremedy.experiments import realvoice
        from gradremedy.experiments.report import read_kaldi_text

        self.real_voice_calls.append((spec.method, spec.seed, name))
        references = read_kaldi_text(settings.real_voice_dir / name / "text")
        hyps = corrupt(references, 0.5 if name == "noisy" else 0.3, seed=spec.seed)
        utts = sorted(references)
        refs, hyp_list = [references[u] for u in utts], [hyps[u] for u in utts]
        scores = {"wer": 100.0 * jiwer.wer(refs, hyp_list), "cer": 100.0 * jiwer.cer(refs, hyp_list)}
        path = realvoice.eval_path(spec, name)
        path.write_text(json.dumps({**scores, "num_utts": len(utts)}), encoding="utf-8")


@pytest.fixture
def fake_pipeline(monkeypatch) -> Callable[..., FakePipeline]:
    """Patch compare's train/evaluate calls with a :class:`FakePipeline` (in-process runs only)."""

    def install(fail: set[str] | None = None, sounds: Path | None = None) -> FakePipeline:
        """``sounds``: a fake folder of Allison Smith's recordings (the real-voice test set is then built
        from it and scored by the fake); without it the real-voice test is skipped, as on a machine
        without the Debian package."""
        from gradremedy.data import real_voice
        from gradremedy.experiments import compare as compare_module
        from gradremedy.experiments import realvoice

        fake = FakePipeline(fail)
        monkeypatch.setattr(compare_module, "train_run", fake.train)
        monkeypatch.setattr(compare_module, "check_data_once", fake.check_data)
        monkeypatch.setattr(compare_module, "evaluate_run", fake.evaluate)
        monkeypatch.setattr(realvoice, "evaluate_set", fake.evaluate_real_voice)
        monkeypatch.setattr(realvoice, "REAL_VOICE_UTTS", 8)
        monkeypatch.setattr(real_voice, "SOUND_DIRS", (sounds or Path("/nonexistent/asterisk-sounds"),))
        return fake

    return install
