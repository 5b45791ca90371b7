"""``gradremedy demo`` with corpus synthesis (a stand-in builder), training and evaluation replaced by
fakes: layout, resume, config lookup."""

from __future__ import annotations

import json
import time

import pytest

from gradremedy.errors import UserError
from gradremedy.experiments import demo as demo_module
from gradremedy.experiments.demo import DEMO_METHODS, corpus_ready, find_config, run_demo

from .conftest import make_data_dir, make_references


class FakeCorpusBuilder:
    """Stands in for ``synthesize_corpus`` (given to ``run_demo``): writes a small data folder."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def __call__(self, out, preset="tiny", num_utts=None, seed=1, jobs=None, sample_rate=None) -> None:
        self.calls.append((out, preset, seed))
        make_data_dir(out, make_references(40))
        (out / "synth.json").write_text(json.dumps({"settings": {"sample_rate": sample_rate}}))


@pytest.fixture
def fake_synth() -> FakeCorpusBuilder:
    return FakeCorpusBuilder()


@pytest.fixture
def config_file(tmp_path, monkeypatch):
    config = tmp_path / "tiny.yaml"
    config.write_text("train:\n  max_steps: 3\n")
    monkeypatch.setattr(demo_module, "find_config", lambda name: config)
    monkeypatch.setattr(demo_module, "demo_device", lambda: "cpu")
    monkeypatch.setattr(demo_module, "demo_jobs", lambda: 1)  # the fakes only patch this process
    return config


def test_demo_builds_the_corpus_trains_three_methods_and_reports(
    tmp_path, fake_synth, fake_pipeline, config_file, capsys
):
    fake = fake_pipeline()
    out = tmp_path / "demo"
    results = run_demo(out, build_corpus=fake_synth)
    assert fake_synth.calls == [(out / "data", "tiny", 1)]
    assert fake.train_calls == [(m, 1) for m in DEMO_METHODS]
    assert fake.check_calls == [(DEMO_METHODS[0], 1)]  # one data check for the three runs
    assert all(c is not None for c in fake.data_checks)
    for method in DEMO_METHODS:
        assert (out / method / "eval" / "test.json").is_file()  # DIR/<method> is the experiment directory
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["seeds"] == [1] and set(on_disk["methods"]) == set(DEMO_METHODS)
    assert on_disk["methods"]["gr"]["wer"]["per_seed"].keys() == {"1"}
    assert on_disk["methods"]["gr"]["wer"]["mean"] == pytest.approx(results["methods"]["gr"]["wer"]["mean"])
    assert on_disk["provenance"]["command"] == f"gradremedy demo --out {out}"
    assert (out / "report.md").is_file()
    printed = capsys.readouterr().out
    assert "| sum |" in printed and "| gr |" in printed and f"report: {out / 'report.md'}" in printed


def test_the_demo_wall_time_includes_building_the_corpus(
    tmp_path, fake_synth, fake_pipeline, config_file, capsys
):
    def slow_synth(out, **kwargs):
        time.sleep(0.5)
        fake_synth(out, **kwargs)

    fake_pipeline()
    out = tmp_path / "demo"
    run_demo(out, build_corpus=slow_synth)
    wall = json.loads((out / "results.json").read_text())["provenance"]["wall_s"]
    assert wall >= 0.5
    assert f"wall time of this invocation: {wall:.0f} s" in (out / "report.md").read_text()
    assert "- training precision: bfloat16\n" in (out / "report.md").read_text()  # from the runs' run.json
    assert "wall time: " in capsys.readouterr().out


def test_demo_resumes_without_rebuilding_or_retraining(tmp_path, fake_synth, fake_pipeline, config_file):
    out = tmp_path / "demo"
    fake_pipeline()
    run_demo(out, build_corpus=fake_synth)
    (out / "gr" / "eval" / "test.json").unlink()  # as if interrupted while evaluating gr
    again = fake_pipeline()
    run_demo(out, build_corpus=fake_synth)
    assert len(fake_synth.calls) == 1
    assert again.train_calls == [("gr", 1)] and again.eval_calls == [("gr", 1)]
    assert again.check_calls == [("gr", 1)]
    third = fake_pipeline()
    run_demo(out, build_corpus=fake_synth)
    assert third.train_calls == [] and third.check_calls == []  # nothing to train: no data check


def test_an_incomplete_corpus_is_rebuilt(tmp_path, fake_synth, fake_pipeline, config_file):
    out = tmp_path / "demo"
    make_data_dir(out / "data", make_references(10))
    assert not corpus_ready(out / "data")  # lists but no manifest: the builder was interrupted
    (out / "data" / "synth.json").write_text("{}")
    assert corpus_ready(out / "data")
    (out / "data" / "valid" / "wav.scp").write_text("")
    assert not corpus_ready(out / "data")
    fake_pipeline()
    run_demo(out, build_corpus=fake_synth)
    assert len(fake_synth.calls) == 1


def test_a_corpus_at_another_rate_than_the_model_is_rebuilt(tmp_path, fake_synth, fake_pipeline, config_file):
    out = tmp_path / "demo"
    config_file.write_text("model:\n  sample_rate: 8000\ntrain:\n  max_steps: 3\n")
    make_data_dir(out / "data", make_references(10))
    (out / "data" / "synth.json").write_text(json.dumps({"settings": {"sample_rate": 16000}}))
    assert corpus_ready(out / "data") and not corpus_ready(out / "data", 8000)
    fake_pipeline()
    run_demo(out, build_corpus=fake_synth)
    assert len(fake_synth.calls) == 1 and corpus_ready(out / "data", 8000)


def test_the_tiny_config_is_found_and_loads():
    from gradremedy.config import load_config

    path = find_config("tiny")
    assert path.name == "tiny.yaml"
    load_config(path)


def test_an_unknown_config_is_a_user_error():
    with pytest.raises(UserError, match="no-such-config.yaml"):
        find_config("no-such-config")
