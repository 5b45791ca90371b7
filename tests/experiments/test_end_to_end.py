"""``gradremedy compare`` for real: a very small synthetic corpus, two methods, one seed, a few steps,
two trainings in parallel processes; then the same command again, which must redo nothing."""

from __future__ import annotations

import json

import pytest

from gradremedy.cli import main
from gradremedy.data.real_voice import SOUND_DIRS
from gradremedy.experiments.demo import find_config


@pytest.mark.slow
def test_compare_trains_evaluates_reports_and_resumes(tmp_path, capsys):
    from gradremedy.data.synth import synthesize_corpus

    data, out = tmp_path / "data", tmp_path / "out"
    synthesize_corpus(data, preset="tiny", num_utts=30, seed=1, jobs=2)
    argv = [
        "compare", "--config", str(find_config("tiny")), "--data", str(data), "--methods", "sum,gr",
        "--seeds", "1", "--out", str(out), "--jobs", "2",
        "--set", "train.max_steps=4", "--set", "data.batch_size=4", "--set", "decode.beam_size=2",
    ]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "| gr |" in printed and "report:" in printed
    results = json.loads((out / "results.json").read_text())
    assert set(results["methods"]) == {"sum", "gr"} and results["seeds"] == [1]
    for method in ("sum", "gr"):
        entry = results["methods"][method]
        assert 0.0 <= entry["wer"]["mean"] and entry["wer"]["per_seed"].keys() == {"1"}
        run = out / "runs" / method / "seed1"
        assert (run / "checkpoints" / "average.pt").is_file() and (run / "eval" / "test.hyp.txt").is_file()
        assert entry["runs"]["1"]["run_json"]["steps"] == 4
    assert results["methods"]["gr"]["p_value_vs_sum"] is not None
    assert (out / "report.md").is_file() and (out / "plots" / "wer.png").is_file()
    if any(folder.is_dir() for folder in SOUND_DIRS):  # the real-voice test set, scored for real
        for method in ("sum", "gr"):
            for name in ("clean", "noisy"):
                assert results["methods"][method]["real_voice"][name]["wer"] >= 0.0

    stamps = {p: p.stat().st_mtime_ns for p in out.glob("runs/*/seed1/**/*") if p.is_file()}
    assert main(argv) == 0
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # nothing trained or evaluated again
