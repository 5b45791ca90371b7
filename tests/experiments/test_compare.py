"""``gradremedy compare`` with training and evaluation replaced by fakes: layout, resume, failures."""

from __future__ import annotations

import json
import sys
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool

import pytest

from gradremedy.cli import main
from gradremedy.errors import UserError
from gradremedy.experiments import compare as compare_module
from gradremedy.experiments.compare import compare

from .conftest import make_data_dir, make_references, write_text


@pytest.fixture
def setup(tmp_path):
    data = make_data_dir(tmp_path / "data", make_references(60))
    config = tmp_path / "tiny.yaml"
    config.write_text("train:\n  max_steps: 3\n")
    return config, data, tmp_path / "out"


def _compare(config, data, out, methods=("sum", "gr"), seeds=(1, 2), **kwargs):
    return compare(
        config_path=config, data_dir=data, methods=list(methods), seeds=list(seeds), out_dir=out, **kwargs
    )


def test_compare_runs_every_method_and_seed_and_writes_the_report(setup, fake_pipeline, capsys):
    config, data, out = setup
    fake = fake_pipeline()
    _compare(config, data, out, methods=("asr_only", "sum", "gr"), seeds=(1, 2, 3))
    expected = [(m, s) for m in ("asr_only", "sum", "gr") for s in (1, 2, 3)]
    assert fake.train_calls == expected and fake.eval_calls == expected
    assert fake.check_calls == [("asr_only", 1)]  # the data is checked once, for every run
    assert len(fake.data_checks) == 9 and all(c is not None and c.left_out == () for c in fake.data_checks)
    for method, seed in expected:
        assert (out / "runs" / method / f"seed{seed}" / "eval" / "test.json").is_file()
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["baseline"] == "sum" and on_disk["seeds"] == [1, 2, 3]
    gr = on_disk["methods"]["gr"]
    assert set(gr["wer"]["per_seed"]) == {"1", "2", "3"}
    assert gr["relative_wer_vs_sum"] < 0 and gr["p_value_vs_sum"] < 0.05
    assert gr["significance_vs_sum"]["sign_test"]["wins"] == 3
    prov = on_disk["provenance"]
    assert prov["command"].startswith("gradremedy compare --config ")
    assert "--methods asr_only,sum,gr --seeds 1,2,3" in prov["command"]
    assert prov["machine"]["cores"] >= 1 and "wall_s" in prov and "commit" in prov
    assert gr["runs"]["1"]["eval_wall_s"] is not None
    assert gr["runs"]["1"]["train_command"].startswith("gradremedy train --config ")
    assert f"--out {out / 'runs' / 'gr' / 'seed1'} --method gr --seed 1" in gr["runs"]["1"]["train_command"]
    assert (out / "report.md").is_file()
    printed = capsys.readouterr().out
    assert "| gr |" in printed and f"report: {out / 'report.md'}" in printed


def test_finished_runs_are_not_redone(setup, fake_pipeline):
    config, data, out = setup
    first = fake_pipeline()
    _compare(config, data, out)
    assert len(first.train_calls) == 4
    again = fake_pipeline()
    _compare(config, data, out)
    assert again.train_calls == [] and again.eval_calls == [] and again.check_calls == []
    # A run whose evaluation is lost is evaluated again (train is called and resumes/no-ops by itself).
    (out / "runs" / "gr" / "seed2" / "eval" / "test.hyp.txt").unlink()
    third = fake_pipeline()
    results = _compare(config, data, out, methods=("sum", "gr", "pcgrad"))
    assert third.eval_calls == [("gr", 2), ("pcgrad", 1), ("pcgrad", 2)]
    assert third.check_calls == [("gr", 2)]
    assert third.train_calls == third.eval_calls
    assert set(results["methods"]) == {"sum", "gr", "pcgrad"}


def test_a_finished_run_trained_with_another_config_is_refused(setup, fake_pipeline):
    from gradremedy.config import save_config
    from gradremedy.train.loop import resolve_config

    config, data, out = setup
    fake_pipeline()
    _compare(config, data, out)
    run = out / "runs" / "gr" / "seed1"
    same = resolve_config(config, [], method="gr", seed=1, max_steps=None, skip_bad=False)
    save_config(same, run / "config.yaml")
    again = fake_pipeline()
    _compare(config, data, out)  # the same config: reused
    assert again.train_calls == []
    other = resolve_config(
        config, ["model.ctc_weight=0.7"], method="gr", seed=1, max_steps=None, skip_bad=False
    )
    save_config(other, run / "config.yaml")
    with pytest.raises(
        UserError, match=r"seed1: finished run was trained with another config \(model.ctc_weight"
    ):
        _compare(config, data, out)


def test_a_failed_run_does_not_stop_the_others(setup, fake_pipeline):
    config, data, out = setup
    fake = fake_pipeline(fail={"gr"})
    with pytest.raises(UserError, match=r"2 run\(s\) failed \(gr seed 1, gr seed 2\).*training diverged"):
        _compare(config, data, out, methods=("sum", "gr", "pcgrad"))
    assert ("pcgrad", 2) in fake.eval_calls
    results = json.loads((out / "results.json").read_text())
    assert set(results["methods"]) == {"sum", "pcgrad"}
    assert "gr/seed1" in results["provenance"]["failed_runs"]
    assert "training diverged" in (out / "failures" / "gr-seed1.txt").read_text()


def test_each_job_gets_its_share_of_the_cores(setup, fake_pipeline, monkeypatch):
    config, data, out = setup
    monkeypatch.setattr(compare_module, "available_cores", lambda: 6)
    fake = fake_pipeline()
    _compare(config, data, out, methods=("sum",), seeds=(1,), jobs=3)  # one run left: runs in-process
    assert fake.threads == [2]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"methods": ("sum", "bogus")}, "unknown method"),
        ({"methods": ()}, "no method"),
        ({"seeds": ()}, "no seed"),
        ({"jobs": 0}, "--jobs"),
    ],
)
def test_bad_arguments_are_one_line_errors(setup, fake_pipeline, kwargs, message):
    config, data, out = setup
    fake = fake_pipeline()
    with pytest.raises(UserError, match=message):
        _compare(config, data, out, **kwargs)
    assert fake.train_calls == []


def test_missing_inputs_are_named(setup, fake_pipeline, tmp_path):
    config, data, out = setup
    fake_pipeline()
    with pytest.raises(UserError, match="nope.yaml: config file not found"):
        _compare(tmp_path / "nope.yaml", data, out)
    (data / "test" / "text").unlink()
    with pytest.raises(UserError, match="test/text: reference text"):
        _compare(config, data, out)
    with pytest.raises(UserError, match="no 'train' folder"):
        _compare(config, tmp_path / "empty", out)


def test_the_cli_reaches_compare(setup, fake_pipeline, capsys):
    config, data, out = setup
    fake = fake_pipeline()
    argv = ["compare", "--config", str(config), "--data", str(data), "--methods", "sum,gr", "--seeds", "3"]
    assert main([*argv, "--out", str(out), "--set", "train.max_steps=2"]) == 0
    assert fake.train_calls == [("sum", 3), ("gr", 3)]
    assert json.loads((out / "results.json").read_text())["provenance"]["overrides"] == ["train.max_steps=2"]
    assert main([*argv, "--out", str(out), "--methods", "sum,nope"]) == 2
    assert "unknown method(s) nope" in capsys.readouterr().err


class InlinePool:
    """Stands in for ProcessPoolExecutor: runs each submitted call at once, in this process."""

    def __init__(self, max_workers, mp_context, initializer, initargs):
        self.workers, self.initargs = max_workers, initargs

    def submit(self, fn, *args):
        future = Future()
        future.set_result(fn(*args))
        return future

    def shutdown(self, wait=True, cancel_futures=False):
        pass


class DyingPool(InlinePool):
    def submit(self, fn, *args):
        future = Future()
        future.set_exception(BrokenProcessPool("a worker was killed"))
        return future


def test_parallel_runs_report_failures_per_run(setup, fake_pipeline, monkeypatch):
    config, data, out = setup
    monkeypatch.setattr(compare_module, "ProcessPoolExecutor", InlinePool)
    fake = fake_pipeline(fail={"gr"})
    with pytest.raises(UserError, match=r"2 run\(s\) failed"):
        _compare(config, data, out, methods=("sum", "gr"), jobs=2)
    assert fake.train_calls == [("sum", 1), ("sum", 2), ("gr", 1), ("gr", 2)]
    assert set(json.loads((out / "results.json").read_text())["methods"]) == {"sum"}


def test_a_dead_worker_is_a_one_line_error(setup, fake_pipeline, monkeypatch):
    config, data, out = setup
    monkeypatch.setattr(compare_module, "ProcessPoolExecutor", DyingPool)
    fake_pipeline()
    with pytest.raises(UserError, match="worker process died"):
        _compare(config, data, out, jobs=2)


_ORPHAN_SCRIPT = """
import multiprocessing, pathlib, sys, time
from gradremedy.experiments.compare import _worker_init

def task(path):
    pathlib.Path(path).write_text(str(__import__("os").getpid()))
    time.sleep(60)

if __name__ == "__main__":
    pool = multiprocessing.get_context("spawn").Pool(1, initializer=_worker_init, initargs=(1,))
    pool.apply_async(task, (sys.argv[1],))
    time.sleep(60)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux only")
def test_a_killed_comparison_leaves_no_worker_running(tmp_path):
    import os
    import signal
    import subprocess
    import time

    script, pid_file = tmp_path / "parent.py", tmp_path / "worker.pid"
    script.write_text(_ORPHAN_SCRIPT)
    parent = subprocess.Popen([sys.executable, str(script), str(pid_file)])
    deadline = time.monotonic() + 60
    while not (pid_file.is_file() and pid_file.read_text()) and time.monotonic() < deadline:
        time.sleep(0.1)
    worker = int(pid_file.read_text())
    parent.send_signal(signal.SIGKILL)
    parent.wait()

    def running(pid: int) -> bool:  # a zombie (dead, not yet reaped by its new parent) is not running
        try:
            return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"
        except FileNotFoundError:
            return False

    deadline = time.monotonic() + 20
    while running(worker) and time.monotonic() < deadline:
        time.sleep(0.1)
    alive = running(worker)
    if alive:
        os.kill(worker, signal.SIGKILL)
    assert not alive, "the pool worker outlived the killed parent"


def test_threads_per_job_honours_omp_num_threads(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert compare_module.threads_per_job(8, 2) == 4 and compare_module.threads_per_job(2, 3) == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert compare_module.threads_per_job(8, 1) == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "not a number")
    assert compare_module.threads_per_job(8, 2) == 4


def _audio_data_dir(root, num_utts: int = 3):
    """train/valid/test of short 16-bit tones that pass the data check."""
    import numpy as np
    import soundfile

    for split in ("train", "valid", "test"):
        folder = root / split
        (folder / "wav").mkdir(parents=True)
        ids = [f"{split}{i}" for i in range(num_utts)]
        for i, utt in enumerate(ids):
            tone = 0.3 * np.sin(2 * np.pi * (300 + 20 * i) * np.arange(4000) / 16000)
            soundfile.write(folder / "wav" / f"{utt}.wav", tone, 16000, subtype="PCM_16")
        write_text(folder / "wav.scp", {u: str(folder / "wav" / f"{u}.wav") for u in ids})
        write_text(folder / "text", {u: "alpha bravo" for u in ids})
        write_text(folder / "utt2spk", {u: "spk1" for u in ids})
    return root


def _real_data_check(fake_pipeline, monkeypatch):
    """The fake pipeline with the comparison's real data check, counting the directories it checks."""
    from gradremedy.data import check as check_module

    real = compare_module.check_data_once
    fake = fake_pipeline()
    monkeypatch.setattr(compare_module, "check_data_once", real)
    checked = []
    check_and_parse = check_module.check_and_parse

    def counting(path, *args, **kwargs):
        checked.append(path)
        return check_and_parse(path, *args, **kwargs)

    monkeypatch.setattr(check_module, "check_and_parse", counting)
    return fake, checked


def test_the_comparison_checks_the_data_once_and_the_runs_do_not(tmp_path, setup, fake_pipeline, monkeypatch):
    config, _, out = setup
    data = _audio_data_dir(tmp_path / "audio")
    fake, checked = _real_data_check(fake_pipeline, monkeypatch)
    _compare(config, data, out)
    assert checked == [data / "train", data / "valid"]  # once for the four runs
    assert len(fake.train_calls) == 4
    data_check = fake.data_checks[0]
    assert all(c is data_check for c in fake.data_checks)
    assert data_check.left_out == (
        (str(data / "train"), "error", frozenset()),
        (str(data / "valid"), "error", frozenset()),
    )
    # What a run does with it: read the directories without checking them again.
    from gradremedy.train.loop import resolve_config
    from gradremedy.train.setup import load_data

    cfg = resolve_config(config, [], method="gr", seed=1, max_steps=None, skip_bad=False)
    assert len(load_data(data, cfg, data_check).train_dir) == 3 and len(checked) == 2


def test_bad_data_fails_the_comparison_once_before_any_run(
    tmp_path, setup, fake_pipeline, monkeypatch, capsys
):
    config, _, out = setup
    data = _audio_data_dir(tmp_path / "audio")
    (data / "train" / "wav" / "train1.wav").unlink()
    fake, checked = _real_data_check(fake_pipeline, monkeypatch)
    with pytest.raises(
        UserError, match=r"train: 1 problem\(s\) in the data check; fix them or use --skip-bad"
    ):
        _compare(config, data, out)
    assert fake.train_calls == [] and checked == [data / "train"]
    err = capsys.readouterr().err
    assert err.count("train1: ") == 1 and "train1.wav: audio file not found" in err
