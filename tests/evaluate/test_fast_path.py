"""Evaluation's fast path gives the plain path's results: the enhanced waveforms of the decoding pass equal
a separate enhancer pass, and scoring in worker processes gives the scores (and failures) of scoring in
this process, in the same order."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from gradremedy.errors import UserError
from gradremedy.evaluate import Recognizer, evaluate
from gradremedy.evaluate import run as eval_run
from gradremedy.evaluate.enhancement import EnhancementScores, ScoringPool

from .helpers import SENTENCES, make_experiment, tone, write_table, write_wav

RATE = 16000


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Six utterances of different lengths, five with a clean reference (one of them silent)."""
    root = tmp_path_factory.mktemp("fast")
    exp = make_experiment(root)
    data = root / "data" / "test"
    wav, spk1, text = {}, {}, {}
    for i in range(6):
        clean = tone(0.6 + 0.15 * i, RATE, 140 + 30 * i, seed=i)
        noisy = clean + 0.05 * np.random.default_rng(10 + i).standard_normal(len(clean)).astype(np.float32)
        wav[f"u{i}"] = write_wav(data / f"u{i}.wav", noisy, RATE)
        if i != 4:
            reference = clean if i != 2 else np.zeros_like(clean)  # u2: silent, its scores fail
            spk1[f"u{i}"] = write_wav(data / f"u{i}_clean.wav", reference, RATE)
        text[f"u{i}"] = SENTENCES[i % len(SENTENCES)]
    write_table(data / "wav.scp", wav)
    write_table(data / "spk1.scp", spk1)
    write_table(data / "text", text)
    return {"exp": exp, "data": data}


def _comparable(report: dict[str, Any], out: Path) -> tuple[dict[str, Any], str]:
    """The report without its timings and paths, and the hypotheses it wrote."""
    kept = {k: v for k, v in report.items() if k not in ("seconds", "rtf", "hyp_file")}
    return kept, out.with_name(out.stem + ".hyp.txt").read_text()


def _values(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, float]]]:
    """Records every utterance's full-precision scores, as the main process receives them."""
    seen: list[tuple[str, dict[str, float]]] = []
    collect = EnhancementScores._collect

    def spy(self: EnhancementScores) -> None:
        before = {name: list(values) for name, values in self.values.items()}
        collect(self)
        seen.extend((name, values[len(before.get(name, [])) :]) for name, values in self.values.items())

    monkeypatch.setattr(EnhancementScores, "_collect", spy)
    return seen  # type: ignore[return-value]


def test_scoring_here_and_in_two_workers_give_the_same_report(
    setup: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(eval_run, "DECODE_BATCH", 2)  # three batches, scored while the next decodes
    seen = _values(monkeypatch)
    runs = []
    for workers in (0, 2):
        out = tmp_path / f"w{workers}.json"
        runs.append(_comparable(evaluate(setup["exp"], setup["data"], out, beam=2, workers=workers), out))
    assert runs[0] == runs[1]
    assert seen and all(len(values) >= 4 for _, values in seen)
    assert seen[: len(seen) // 2] == seen[len(seen) // 2 :]  # every score, unrounded, in the same order
    se = runs[0][0]["se"]
    assert se["num_utts"] == 4 and {f.split(":")[0] for f in se["failures"]} == {"u2"}


def test_enhanced_once_equals_a_separate_enhancer_pass(
    setup: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(eval_run, "DECODE_BATCH", 2)
    seen = _values(monkeypatch)
    once = tmp_path / "once.json"
    fast = _comparable(evaluate(setup["exp"], setup["data"], once, beam=2, workers=0), once)
    decode_each = eval_run._decode_each

    def without_enhanced(*args: Any) -> tuple[list[str | None], None]:
        return decode_each(*args)[0], None  # scoring then enhances each batch again

    monkeypatch.setattr(eval_run, "_decode_each", without_enhanced)
    twice = tmp_path / "twice.json"
    plain = _comparable(evaluate(setup["exp"], setup["data"], twice, beam=2, workers=0), twice)
    assert fast == plain
    assert seen and seen[: len(seen) // 2] == seen[len(seen) // 2 :]


def test_recognize_and_enhance_equals_recognize_then_enhance(setup: dict) -> None:
    recognizer = Recognizer(setup["exp"], beam=2)
    waveforms = [tone(0.5 + 0.2 * i, RATE, 150 + 20 * i, seed=i) for i in range(3)]
    texts, enhanced = recognizer.recognize_and_enhance(waveforms)
    assert texts == recognizer.recognize(waveforms)
    separate = recognizer.enhance(waveforms)
    assert [len(e) for e in enhanced] == [len(w) for w in waveforms]
    for a, b in zip(enhanced, separate):
        np.testing.assert_array_equal(a, b)


def _slow_square(x: int) -> tuple[int, int]:
    time.sleep(0.05 * (3 - x))  # later jobs finish first
    return x * x, os.getpid()


def test_scoring_pool_keeps_submission_order_and_uses_workers() -> None:
    with ScoringPool(2) as pool:
        for x in range(4):
            pool.submit(_slow_square, x)
        results = list(pool.results())
    assert [r for r, _ in results] == [0, 1, 4, 9]
    assert os.getpid() not in {pid for _, pid in results}
    with ScoringPool(0) as pool:
        pool.submit(_slow_square, 3)
        assert list(pool.results()) == [(9, os.getpid())]  # run here
        assert not pool.parallel


def test_decoding_leaves_the_scoring_workers_their_cores(
    setup: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With one worker on two cores, decoding runs one torch thread; the caller's count comes back after."""
    monkeypatch.setattr(eval_run, "available_cores", lambda: 2)
    seen: list[int] = []
    recognize = Recognizer.recognize_and_enhance

    def spy(self: Recognizer, waveforms: list[np.ndarray]) -> Any:
        seen.append(torch.get_num_threads())
        return recognize(self, waveforms)

    monkeypatch.setattr(Recognizer, "recognize_and_enhance", spy)
    torch.set_num_threads(2)
    evaluate(setup["exp"], setup["data"], tmp_path / "r.json", beam=1, workers=1)
    assert seen and set(seen) == {1}
    assert torch.get_num_threads() == 2
    seen.clear()
    evaluate(setup["exp"], setup["data"], tmp_path / "r.json", beam=1, workers=0)
    assert set(seen) == {2}  # no workers: torch's threads as the caller set them
    with pytest.raises(UserError, match="--workers"):
        evaluate(setup["exp"], setup["data"], tmp_path / "r.json", workers=-1)
