"""``gradremedy compare``: train and evaluate every method x seed, resume what is done, then report.

A run is one (method, seed) with its own experiment directory. Its evaluation JSON (``EXP/eval/test.json``
with ``test.hyp.txt`` beside it) marks it finished: a finished run is neither retrained nor re-evaluated.
An unfinished one is handed to ``gradremedy.train.train`` (which resumes from its last checkpoint or does
nothing when training is complete) and then evaluated on ``DATA/test`` with the config's decode settings.
With ``jobs > 1`` the runs go to that many worker processes, each with ``cores // jobs`` torch threads.
The demo uses the same machinery with its own layout (:func:`run_comparison`).
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import platform
import shlex
import sys
import time
import traceback
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gradremedy.atomic import atomic_write_text
from gradremedy.errors import UserError
from gradremedy.experiments import realvoice
from gradremedy.experiments.report import (
    BASELINE,
    RunRecord,
    format_table,
    load_run,
    read_kaldi_text,
    write_report,
)
from gradremedy.provenance import available_cores, git_commit, machine_info
from gradremedy.surgery.registry import method_names

if TYPE_CHECKING:
    from gradremedy.config import Config
    from gradremedy.train.setup import DataCheck

METHODS = ("asr_only", *method_names())  # a training mode, then every registered gradient method
EVAL_NAME = "test"


@dataclass(frozen=True)
class RunSpec:
    """One (method, seed) run and where it lives."""

    method: str
    seed: int
    exp_dir: Path

    @property
    def eval_path(self) -> Path:
        return self.exp_dir / "eval" / f"{EVAL_NAME}.json"

    @property
    def hyp_path(self) -> Path:
        return self.exp_dir / "eval" / f"{EVAL_NAME}.hyp.txt"

    @property
    def provenance_path(self) -> Path:  # commands and wall times of this runner's train/eval calls
        return self.exp_dir / "eval" / f"{EVAL_NAME}.provenance.json"

    @property
    def name(self) -> str:
        return f"{self.method} seed {self.seed}"


@dataclass(frozen=True)
class RunSettings:
    """What every run of one comparison shares."""

    config_path: Path
    data_dir: Path
    device: str
    overrides: tuple[str, ...]
    torch_threads: int
    real_voice_dir: Path | None = None  # the real-voice test set (OUT/real_voice), None: not scored
    data_check: DataCheck | None = None  # the data check made once for every run (None: each run checks)


# ------------------------------------------------------------------------------------- one run (resumable)


def train_run(spec: RunSpec, settings: RunSettings) -> None:
    """Train (or resume, or no-op on a finished experiment directory) one run."""
    from gradremedy.train import train

    train(
        config_path=settings.config_path,
        data_dir=settings.data_dir,
        exp_dir=spec.exp_dir,
        method=spec.method,
        seed=spec.seed,
        max_steps=None,
        device=settings.device,
        overrides=list(settings.overrides),
        overwrite=False,
        skip_bad=False,
        data_check=settings.data_check,
    )


def run_config(spec: RunSpec, settings: RunSettings) -> Config:
    """The resolved config that ``gradremedy train`` gives ``spec``'s run in this comparison."""
    from gradremedy.train.loop import resolve_config

    return resolve_config(
        settings.config_path,
        list(settings.overrides),
        method=spec.method,
        seed=spec.seed,
        max_steps=None,
        skip_bad=False,
    )


def check_data_once(spec: RunSpec, settings: RunSettings) -> DataCheck:
    """The data check of ``train/``, every ``data.extra_train`` directory and ``valid/`` with the data
    settings of the comparison's config (those of ``spec``'s run; every run shares them), made as
    ``gradremedy train`` makes it: its problems are printed once and a bad directory stops the
    comparison before any run starts."""
    from gradremedy.train.setup import check_training_data

    cfg = run_config(spec, settings)
    _log(f"checking the data in {settings.data_dir}")
    return check_training_data(settings.data_dir, cfg)


def evaluate_run(spec: RunSpec, settings: RunSettings) -> None:
    """Evaluate one trained run on ``DATA/test`` with the config's decode settings."""
    from gradremedy.evaluate import evaluate

    evaluate(
        exp_dir=spec.exp_dir,
        data_dir=settings.data_dir / "test",
        out_path=spec.eval_path,
        beam=None,
        lm_dir=None,
        lm_weight=None,
        checkpoint="average",
        device=settings.device,
    )


def is_evaluated(spec: RunSpec) -> bool:
    """True when the run's evaluation JSON (with a numeric WER) and hypothesis file both exist."""
    if not (spec.eval_path.is_file() and spec.hyp_path.is_file()):
        return False
    try:
        wer = json.loads(spec.eval_path.read_text(encoding="utf-8")).get("wer")
    except (json.JSONDecodeError, AttributeError, OSError):
        return False
    return isinstance(wer, (int, float)) and not isinstance(wer, bool)


def execute_run(spec: RunSpec, settings: RunSettings) -> dict[str, Any]:
    """Train then evaluate one run, skipping whatever is already done; returns timings."""
    if is_evaluated(spec):
        return {"skipped": True}
    _log(f"{spec.name}: training in {spec.exp_dir}")
    start = time.monotonic()
    train_run(spec, settings)
    train_s = time.monotonic() - start
    _log(f"{spec.name}: evaluating on {settings.data_dir / 'test'}")
    start = time.monotonic()
    evaluate_run(spec, settings)
    eval_s = time.monotonic() - start
    if not is_evaluated(spec):
        raise UserError(f"{spec.eval_path}: evaluation finished without writing its results and hypotheses")
    realvoice.score_real_voice(spec, settings)
    provenance = {
        "train_command": run_commands(spec, settings)[0],
        "eval_command": run_commands(spec, settings)[1],
        "train_call_s": train_s,
        "eval_s": eval_s,
        "device": settings.device,
        "torch_threads": settings.torch_threads,
        "host": platform.node(),
        "finished_unix": time.time(),
    }
    atomic_write_text(spec.provenance_path, json.dumps(provenance, indent=2) + "\n")
    _log(f"{spec.name}: done (train {train_s:.0f} s, eval {eval_s:.0f} s)")
    return provenance


def run_commands(spec: RunSpec, settings: RunSettings) -> tuple[str, str]:
    """The ``gradremedy train`` and ``gradremedy eval`` command lines equivalent to one run."""
    train = [
        "gradremedy", "train", "--config", str(settings.config_path), "--data", str(settings.data_dir),
        "--out", str(spec.exp_dir), "--method", spec.method, "--seed", str(spec.seed),
        "--device", settings.device,
    ]  # fmt: skip
    for item in settings.overrides:
        train += ["--set", item]
    evaluate = [
        "gradremedy", "eval", "--exp", str(spec.exp_dir), "--data", str(settings.data_dir / "test"),
        "--out", str(spec.eval_path), "--device", settings.device,
    ]  # fmt: skip
    return shlex.join(train), shlex.join(evaluate)


def _die_with_parent() -> None:
    """On Linux, have the kernel send this worker SIGTERM when the process that started it dies, so that
    a killed ``compare`` leaves no training running that nobody will collect (Ctrl-C reaches the whole
    process group anyway; ``kill PID`` reaches only the parent)."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGTERM))


def _worker_init(threads: int) -> None:
    _die_with_parent()
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import torch

    torch.set_num_threads(threads)


def _worker_run(spec: RunSpec, settings: RunSettings) -> tuple[dict[str, Any] | None, str | None]:
    """Process-pool entry: failures come back as text so that one bad run does not stop the others."""
    try:
        return execute_run(spec, settings), None
    except UserError as err:
        return None, str(err)
    except Exception:  # noqa: BLE001 - a crashed run is reported with its traceback, the others go on
        return None, traceback.format_exc()


def _log(message: str) -> None:
    print(f"[gradremedy] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------- all runs


def check_finished_runs(finished: Sequence[RunSpec], settings: RunSettings) -> None:
    """Refuse to reuse an evaluated run that was trained with another config than this comparison's (an
    earlier comparison in the same folder, say): it would be reported as this one. Unfinished runs need
    no check here: `gradremedy train` checks the config of a run it resumes."""
    from gradremedy.train.loop import config_mismatch

    for spec in finished:
        shown = config_mismatch(spec.exp_dir, run_config(spec, settings))
        if shown:
            raise UserError(
                f"{spec.exp_dir}: finished run was trained with another config ({shown}); "
                "delete it or choose another --out"
            )


def execute_runs(specs: Sequence[RunSpec], settings: RunSettings, jobs: int) -> dict[RunSpec, str]:
    """Run every spec (``jobs`` at a time); returns {spec: error text} for the runs that failed."""
    failures: dict[RunSpec, str] = {}
    finished = [s for s in specs if is_evaluated(s)]
    check_finished_runs(finished, settings)
    todo = [s for s in specs if s not in finished]
    for spec in finished:
        _log(f"{spec.name}: already evaluated, skipped")
    if jobs <= 1 or len(todo) <= 1:
        import torch

        previous = torch.get_num_threads()
        torch.set_num_threads(settings.torch_threads)
        try:
            for spec in todo:
                try:
                    execute_run(spec, settings)
                except UserError as err:
                    failures[spec] = str(err)
                    _log(f"{spec.name}: failed: {err}")
        finally:
            torch.set_num_threads(previous)
        return failures
    context = multiprocessing.get_context("spawn")  # torch and fork do not mix
    pool = ProcessPoolExecutor(
        max_workers=min(jobs, len(todo)),
        mp_context=context,
        initializer=_worker_init,
        initargs=(settings.torch_threads,),
    )
    try:
        pending = {pool.submit(_worker_run, spec, settings): spec for spec in todo}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                spec = pending.pop(future)
                _, error = future.result()
                if error is not None:
                    failures[spec] = error
                    _log(f"{spec.name}: failed: {error.strip().splitlines()[-1]}")
    except BrokenProcessPool:
        pool.shutdown(wait=True, cancel_futures=True)
        raise UserError(
            "a run's worker process died (killed, or out of memory); finished runs are kept and the "
            "others resume when the same command is run again",
            status=1,
        ) from None
    except BaseException:  # Ctrl-C: start nothing new; the runs resume next time
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return failures


def threads_per_job(cores: int, jobs: int) -> int:
    """Torch threads of each run: ``OMP_NUM_THREADS`` when set (several comparisons sharing a machine),
    else the cores divided among the jobs running side by side."""
    try:
        requested = int(os.environ.get("OMP_NUM_THREADS", ""))
    except ValueError:
        requested = 0
    return requested if requested > 0 else max(1, cores // jobs)


def run_comparison(
    specs: Sequence[RunSpec],
    *,
    config_path: Path,
    data_dir: Path,
    out_dir: Path,
    jobs: int = 1,
    device: str = "cpu",
    overrides: Sequence[str] = (),
    command: str,
    baseline: str = BASELINE,
    real_voice: bool = True,
    started: float | None = None,
) -> dict[str, Any]:
    """Train/evaluate ``specs`` (resuming), then write ``results.json``, plots and ``report.md`` in
    ``out_dir``. Shared by ``compare`` and ``demo``; raises UserError naming any failed run after the
    report of the finished ones is written. With ``real_voice`` (and her recordings installed) every
    run is also scored on the real-voice test set ``out_dir/real_voice`` (testing only). ``started``
    (``time.time()``; default: now) is when the invocation began, for the wall time the report prints:
    the demo passes its own start, so that its wall time includes building the corpus."""
    config_path, data_dir, out_dir = Path(config_path), Path(data_dir), Path(out_dir)
    if jobs < 1:
        raise UserError(f"--jobs must be >= 1, got {jobs}")
    if not config_path.is_file():
        raise UserError(f"{config_path}: config file not found")
    for split in ("train", "valid", "test"):
        if not (data_dir / split).is_dir():
            raise UserError(f"{data_dir}: no '{split}' folder (expected {data_dir}/{{train,valid,test}})")
    test_text = data_dir / "test" / "text"
    if not test_text.is_file():
        raise UserError(f"{test_text}: reference text of the test set not found")
    cores = available_cores()
    settings = RunSettings(
        config_path=config_path,
        data_dir=data_dir,
        device=device,
        overrides=tuple(overrides),
        torch_threads=threads_per_job(cores, jobs),
        real_voice_dir=realvoice.prepare_real_voice(out_dir, config_path, overrides) if real_voice else None,
    )
    started = time.time() if started is None else started
    out_dir.mkdir(parents=True, exist_ok=True)
    todo = [spec for spec in specs if not is_evaluated(spec)]
    if todo:  # checked here once; the runs then skip their own check
        settings = replace(settings, data_check=check_data_once(todo[0], settings))
    failures = execute_runs(specs, settings, jobs)
    for spec in specs:  # runs finished before (or by an earlier comparison) that lack the real-voice scores
        if spec not in failures:
            realvoice.score_real_voice(spec, settings)
    runs = [_load_finished(spec) for spec in specs if spec not in failures]
    provenance = {
        "command": command,
        **_comparison_provenance(specs, settings, jobs, started),
        "training_precision": _training_precisions(runs),
        "failed_runs": {
            f"{s.method}/seed{s.seed}": text.strip().splitlines()[-1] for s, text in failures.items()
        },
    }
    results: dict[str, Any] = {}
    if runs:
        references = read_kaldi_text(test_text)
        results = write_report(runs, references, out_dir, baseline=baseline, provenance=provenance)
    if failures:
        _raise_failures(failures, out_dir)
    return results


def _comparison_provenance(
    specs: Sequence[RunSpec], settings: RunSettings, jobs: int, started: float
) -> dict[str, Any]:
    """How a comparison ran: config, data, methods, parallelism, commit, machine and wall time so far."""
    return {
        "config": str(settings.config_path),
        "config_sha256": hashlib.sha256(settings.config_path.read_bytes()).hexdigest(),
        "overrides": list(settings.overrides),
        "data_dir": str(settings.data_dir),
        "test_dir": str(settings.data_dir / "test"),
        "methods": list(dict.fromkeys(s.method for s in specs)),
        "jobs": jobs,
        "torch_threads_per_job": settings.torch_threads,
        "device": settings.device,
        "commit": git_commit(),
        "machine": machine_info(),
        "started_unix": started,
        "wall_s": time.time() - started,
        "real_voice": realvoice.provenance(settings.real_voice_dir),
    }


def _training_precisions(runs: Sequence[RunRecord]) -> list[str]:
    """The precisions the runs trained in, as their run.json says (``train.amp`` takes effect only where
    the device can run it; runs of earlier versions do not say)."""
    infos = [run.run_info for run in runs if isinstance(run.run_info, dict)]
    return sorted({str(info["precision"]) for info in infos if "precision" in info})


def _raise_failures(failures: dict[RunSpec, str], out_dir: Path) -> None:
    """Write each failed run's error text to ``out_dir/failures/`` and raise one UserError naming them."""
    for spec, text in failures.items():
        atomic_write_text(out_dir / "failures" / f"{spec.method}-seed{spec.seed}.txt", text)
    names = ", ".join(spec.name for spec in failures)
    first = next(iter(failures.values())).strip().splitlines()[-1]
    raise UserError(
        f"{len(failures)} run(s) failed ({names}); first: {first}; details in {out_dir / 'failures'}",
        status=1,
    )


def _load_finished(spec: RunSpec) -> RunRecord:
    runner: dict[str, Any] = {}
    if spec.provenance_path.is_file():
        try:
            runner = json.loads(spec.provenance_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            runner = {}
    record = load_run(spec.method, spec.seed, spec.exp_dir, spec.eval_path, runner=runner)
    record.real_voice = realvoice.load_real_voice(spec)
    return record


# ---------------------------------------------------------------------------------------------- compare


def compare(
    *,
    config_path: Path,
    data_dir: Path,
    methods: Sequence[str],
    seeds: Sequence[int],
    out_dir: Path,
    jobs: int = 1,
    overrides: Sequence[str] | None = None,
    device: str = "cpu",
) -> dict[str, Any]:
    """Train and evaluate every method x seed in ``OUT/runs/<method>/seed<S>/`` and write the report."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise UserError(f"--methods: unknown method(s) {', '.join(unknown)} (known: {', '.join(METHODS)})")
    if not methods:
        raise UserError("--methods: no method given")
    if not seeds:
        raise UserError("--seeds: no seed given")
    methods = list(dict.fromkeys(methods))
    seeds = list(dict.fromkeys(seeds))
    out_dir = Path(out_dir)
    specs = [RunSpec(m, s, out_dir / "runs" / m / f"seed{s}") for m in methods for s in seeds]
    command = compare_command(config_path, data_dir, methods, seeds, out_dir, jobs, overrides or [], device)
    results = run_comparison(
        specs,
        config_path=Path(config_path),
        data_dir=Path(data_dir),
        out_dir=out_dir,
        jobs=jobs,
        device=device,
        overrides=overrides or [],
        command=command,
    )
    print(format_table(results))
    print(f"report: {out_dir / 'report.md'}")
    return results


def compare_command(
    config_path: Path,
    data_dir: Path,
    methods: Sequence[str],
    seeds: Sequence[int],
    out_dir: Path,
    jobs: int,
    overrides: Sequence[str],
    device: str,
) -> str:
    """The ``gradremedy compare`` command line that reproduces this comparison."""
    parts = [
        "gradremedy", "compare", "--config", str(config_path), "--data", str(data_dir),
        "--methods", ",".join(methods), "--seeds", ",".join(str(s) for s in seeds), "--out", str(out_dir),
        "--jobs", str(jobs), "--device", device,
    ]  # fmt: skip
    for item in overrides:
        parts += ["--set", item]
    return shlex.join(parts)
