"""``compare`` and the demo score every model on the real-voice test set (fake recordings, fake training)."""

from __future__ import annotations

import json

import pytest

from gradremedy.experiments.compare import compare
from gradremedy.experiments.realvoice import real_voice_summary

from .conftest import make_data_dir, make_references
from .test_demo import config_file, fake_synth  # noqa: F401 - fixtures


@pytest.fixture
def sounds(asterisk_sounds):
    return asterisk_sounds


def test_compare_scores_every_run_on_the_real_voice_sets(tmp_path, fake_pipeline, sounds):
    fake = fake_pipeline(sounds=sounds)
    data = make_data_dir(tmp_path / "data", make_references(20))
    config = tmp_path / "c.yaml"
    config.write_text("model:\n  sample_rate: 8000\n")
    out = tmp_path / "out"
    results = compare(
        config_path=config, data_dir=data, methods=["sum", "gr"], seeds=[1, 2], out_dir=out, jobs=1
    )
    assert sorted(fake.real_voice_calls) == sorted(
        (m, s, n) for m in ("sum", "gr") for s in (1, 2) for n in ("clean", "noisy")
    )
    on_disk = json.loads((out / "results.json").read_text())
    for method in ("sum", "gr"):
        entry = on_disk["methods"][method]["real_voice"]
        assert set(entry) == {"clean", "noisy"}
        for name in ("clean", "noisy"):
            assert 0 < entry[name]["wer"] <= 100 and entry[name]["per_seed"].keys() == {"1", "2"}
            assert entry[name]["num_utts"] == 8 and entry[name]["cer"] is not None
        assert entry == results["methods"][method]["real_voice"]
    assert on_disk["provenance"]["real_voice"]["use"].startswith("testing only")
    assert (out / "real_voice" / "noisy" / "spk1.scp").is_file()

    again = fake_pipeline(sounds=sounds)  # finished runs: nothing is scored twice
    compare(config_path=config, data_dir=data, methods=["sum", "gr"], seeds=[1, 2], out_dir=out, jobs=1)
    assert again.real_voice_calls == [] and again.train_calls == []


def test_runs_finished_before_the_real_voice_test_are_scored_on_it(tmp_path, fake_pipeline, sounds):
    data = make_data_dir(tmp_path / "data", make_references(10))
    config = tmp_path / "c.yaml"
    config.write_text("train:\n  max_steps: 3\n")
    out = tmp_path / "out"
    fake_pipeline()  # no recordings: no real-voice test
    results = compare(config_path=config, data_dir=data, methods=["sum"], seeds=[1], out_dir=out, jobs=1)
    assert results["methods"]["sum"]["real_voice"] is None and results["provenance"]["real_voice"] is None
    later = fake_pipeline(sounds=sounds)
    results = compare(config_path=config, data_dir=data, methods=["sum"], seeds=[1], out_dir=out, jobs=1)
    assert later.train_calls == [] and later.real_voice_calls == [("sum", 1, "clean"), ("sum", 1, "noisy")]
    assert results["methods"]["sum"]["real_voice"]["noisy"]["wer"] > 0


def test_the_demo_scores_its_three_models_on_it(tmp_path, fake_synth, fake_pipeline, config_file, sounds):  # noqa: F811
    from gradremedy.experiments.demo import DEMO_METHODS, run_demo

    fake = fake_pipeline(sounds=sounds)
    results = run_demo(tmp_path / "demo")
    assert len(fake.real_voice_calls) == 2 * len(DEMO_METHODS)
    for method in DEMO_METHODS:
        assert set(results["methods"][method]["real_voice"]) == {"clean", "noisy"}


def test_summary_of_seeds():
    per_seed = {
        "1": {"clean": {"wer": 10.0, "cer": 5.0, "num_utts": 4}, "noisy": {"wer": 30.0, "cer": 20.0}},
        "2": {"clean": {"wer": 20.0, "cer": 7.0, "num_utts": 4}},
        "3": {},
    }
    summary = real_voice_summary(per_seed)
    assert summary["clean"]["wer"] == pytest.approx(15.0) and summary["clean"]["cer"] == pytest.approx(6.0)
    assert summary["clean"]["wer_std"] == pytest.approx(7.0710678) and summary["clean"]["num_utts"] == 4
    assert summary["noisy"]["per_seed"] == {"1": {"wer": 30.0, "cer": 20.0}}
    assert real_voice_summary({"1": {}}) is None


def test_a_failed_real_voice_score_leaves_the_run_and_its_report(
    tmp_path, fake_pipeline, sounds, monkeypatch, capsys
):
    from gradremedy.experiments import realvoice

    fake_pipeline(sounds=sounds)

    def crash(spec, settings, name):
        raise RuntimeError("decoder exploded\nsecond line")

    monkeypatch.setattr(realvoice, "evaluate_set", crash)
    data = make_data_dir(tmp_path / "data", make_references(10))
    config = tmp_path / "c.yaml"
    config.write_text("train:\n  max_steps: 3\n")
    results = compare(
        config_path=config, data_dir=data, methods=["sum"], seeds=[1], out_dir=tmp_path / "o", jobs=1
    )
    assert results["methods"]["sum"]["wer"]["mean"] > 0 and results["methods"]["sum"]["real_voice"] is None
    assert "real-voice noisy set not scored: decoder exploded" in capsys.readouterr().err


def test_the_real_voice_sets_score_enhancement_on_a_few_utterances_only(tmp_path, monkeypatch):
    from gradremedy import evaluate as evaluate_package
    from gradremedy.experiments import realvoice
    from gradremedy.experiments.compare import RunSpec

    calls = []
    monkeypatch.setattr(evaluate_package, "evaluate", lambda **kwargs: calls.append(kwargs))
    settings = type("Settings", (), {"real_voice_dir": tmp_path / "real_voice", "device": "cpu"})()
    realvoice.evaluate_set(RunSpec("sum", 1, tmp_path / "sum"), settings, "noisy")
    assert calls[0]["se_max_utts"] == realvoice.REAL_VOICE_SE_UTTS == 20  # the report shows WER only
    assert calls[0]["data_dir"] == tmp_path / "real_voice" / "noisy"
