"""The augmentation ablation: its variants, how it reads finished runs and what its report says."""

from __future__ import annotations

import json

from gradremedy.data.synth.augment import AUGMENTATIONS
from gradremedy.experiments import augmentation_ablation as ablation


def test_one_variant_per_augmentation_plus_all_on_and_all_off():
    table = ablation.variants()
    assert table["full"] == [] and table["none"] == ["all"]
    assert {name for name in table if name.startswith("no_")} == {f"no_{a}" for a in AUGMENTATIONS}
    assert all(table[f"no_{a}"] == [a] for a in AUGMENTATIONS)


def _fake_run(out, name, wers):
    exp = out / "runs" / name
    (exp / "eval").mkdir(parents=True)
    (exp / "run.json").write_text(json.dumps({"final_valid": {"wer": 0.5}}))
    for test_name, wer in wers.items():
        (exp / "eval" / f"{test_name}.json").write_text(
            json.dumps({"wer": wer, "cer": wer / 2, "num_utts": 10})
        )


def test_report_gives_each_effect_against_the_full_corpus(tmp_path):
    for k, name in enumerate(ablation.variants()):
        _fake_run(tmp_path, name, {"augmented": 40.0 + k, "unaugmented": 30.0 - k})
    rows = ablation.collect(tmp_path)
    assert rows["full"]["augmented"]["wer"] == 40.0 and rows["no_speed"]["unaugmented"]["wer"] == 29.0
    results = {
        "command": "python -m gradremedy.experiments.augmentation_ablation --out X",
        "commit": "abc",
        "machine": "m",
        "seed": 1,
        "num_utts": 100,
        "config": "tiny",
        "max_steps": 10,
        "overrides": [],
        "wall_seconds": 1.0,
        "variants": rows,
    }
    report = ablation.format_report(results)
    assert "| full | 40.0 | – | 30.0 | – |" in report
    assert "| no_speed | 41.0 | +1.0 | 29.0 | -1.0 |" in report  # speed is the first augmentation
    assert "commit: abc" in report and "seed: 1" in report


def test_each_variant_is_trained_once_and_scored_on_both_test_sets(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(ablation, "_run", lambda command, log: calls.append((command, log.name)))
    ablation.train_and_score(tmp_path, "no_speed", tmp_path / "tiny.yaml", 50, 3, ["train.lr=0.01"])
    (train, train_log), *scores = calls
    assert train[1:4] == ["-m", "gradremedy", "train"] and train_log == "no_speed.train.log"
    for flag, value in [("--data", str(tmp_path / "data" / "no_speed")), ("--method", "asr_only"),
                        ("--seed", "3"), ("--max-steps", "50")]:  # fmt: skip
        assert train[train.index(flag) + 1] == value
    assert train[-2:] == ["--set", "train.lr=0.01"]
    tests = {command[command.index("--data") + 1] for command, _ in scores}
    assert tests == {str(tmp_path / "data" / c / "test") for c in ("full", "none")}
    assert all(command[3] == "eval" for command, _ in scores)


def test_corpora_are_written_at_the_configs_rate(tmp_path, monkeypatch):
    rates = []
    monkeypatch.setattr(ablation, "build_corpora", lambda out, n, seed, jobs, rate: rates.append(rate))
    monkeypatch.setattr(ablation, "train_and_score", lambda *args: None)
    monkeypatch.setattr(ablation, "collect", lambda out: {})
    monkeypatch.setattr(ablation, "format_report", lambda results: "")
    for config, overrides in (("tiny", []), ("tiny_16k", []), ("tiny", ["--set", "model.sample_rate=11025"])):
        ablation.main(["--out", str(tmp_path / config), "--config", config, *overrides])
    assert rates == [8000, 16000, 11025]
