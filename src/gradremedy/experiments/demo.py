"""``gradremedy demo``: the main job. Build the tiny corpus, train ``asr_only``, ``sum`` and ``gr`` with
``configs/tiny.yaml``, evaluate them on the tiny test set and write the report.

It is a comparison with one seed and a fixed layout, run by the same code as ``gradremedy compare``::

    DIR/data/{train,valid,test}   the corpus (built once)
    DIR/<method>/                 one experiment directory per method (usable with ``gradremedy eval``)
    DIR/real_voice/{clean,noisy}  the real-voice test set every model is also scored on (testing only;
                                  built when Debian's asterisk-core-sounds-en-wav is installed)
    DIR/results.json, DIR/report.md, DIR/plots/

Interrupted, it resumes: the corpus is not rebuilt, finished runs are skipped and an unfinished one
continues from its last checkpoint.
"""

from __future__ import annotations

import importlib.resources
import json
import shlex
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gradremedy.config import load_config
from gradremedy.errors import UserError
from gradremedy.experiments.compare import RunSpec, run_comparison
from gradremedy.experiments.report import format_table

DEMO_METHODS = ("asr_only", "sum", "gr")
DEMO_SEED = 1
DEMO_CONFIG = "tiny"
CORPUS_PRESET = "tiny"
SPLITS = ("train", "valid", "test")
CORPUS_FILES = ("wav.scp", "text", "utt2spk")
CORPUS_MANIFEST = "synth.json"  # written by the corpus builder after everything else


def find_config(name: str) -> Path:
    """A shipped config by name: the package's copy (``gradremedy/experiments/configs``, which links to
    the repository's ``configs/`` in a checkout and is copied into wheels), else the ``configs/`` folder
    of the source tree this package was loaded from."""
    file_name = f"{name}.yaml"
    packaged = importlib.resources.files("gradremedy.experiments").joinpath("configs", file_name)
    if packaged.is_file():
        return Path(str(packaged))
    for parent in Path(__file__).resolve().parents:
        candidate = parent / "configs" / file_name
        if candidate.is_file() and (parent / "pyproject.toml").is_file():
            return candidate
    raise UserError(f"config '{file_name}' not found in the installed package or a source checkout")


def corpus_ready(data_dir: Path, sample_rate: int | None = None) -> bool:
    """True when the corpus builder finished: its manifest (written last) and every split's wav.scp,
    text and utt2spk (non-empty) exist, and the manifest's rate (if it records one) is ``sample_rate``
    (if given). Otherwise the builder is run again: it resumes, or rewrites the audio at the new rate."""
    lists = all(
        (data_dir / split / name).is_file() and (data_dir / split / name).stat().st_size > 0
        for split in SPLITS
        for name in CORPUS_FILES
    )
    manifest = data_dir / CORPUS_MANIFEST
    if not (lists and manifest.is_file()):
        return False
    if sample_rate is None:
        return True
    try:
        written = json.loads(manifest.read_text(encoding="utf-8")).get("settings", {}).get("sample_rate")
    except (json.JSONDecodeError, AttributeError, OSError):
        return False
    return written is None or written == sample_rate


def demo_specs(out_dir: Path) -> list[RunSpec]:
    """One run per demo method, in ``DIR/<method>``."""
    return [RunSpec(method, DEMO_SEED, out_dir / method) for method in DEMO_METHODS]


def demo_jobs() -> int:
    """All demo trainings run side by side, each with ``cores // 3`` torch threads (at least one).

    The tiny models use intra-op threads poorly: on the 2-core machine 20 steps took 155 s with one
    2-thread process but 42 s in each of two 1-thread processes running together. Three 1-thread
    processes on two cores finish in about 1.5 single-run times, where two jobs would take two (the
    third run starting alone, on one thread).
    """
    return len(DEMO_METHODS)


def demo_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def run_demo(
    out_dir: Path | str = "demo", *, build_corpus: Callable[..., Any] | None = None
) -> dict[str, Any]:
    """Run (or resume) the demo in ``out_dir``; prints the result table and the report's path.

    ``build_corpus(out, preset=, seed=, sample_rate=)`` builds the corpus when it is missing (default:
    :func:`gradremedy.data.synth.synthesize_corpus`). The report's wall time counts from the call, the
    corpus included."""
    started = time.time()
    out_dir = Path(out_dir)
    data_dir = out_dir / "data"
    config_path = find_config(DEMO_CONFIG)
    # At the model's rate: a corpus left by an earlier demo at another rate is rewritten.
    sample_rate = load_config(config_path).model.sample_rate
    if not corpus_ready(data_dir, sample_rate):
        if build_corpus is None:
            from gradremedy.data.synth import synthesize_corpus as build_corpus

        print(f"[gradremedy] building the {CORPUS_PRESET} corpus in {data_dir}", flush=True)
        build_corpus(data_dir, preset=CORPUS_PRESET, seed=1, sample_rate=sample_rate)
        if not corpus_ready(data_dir, sample_rate):
            raise UserError(f"{data_dir}: corpus synthesis finished but the data folders are incomplete")
    results = run_comparison(
        demo_specs(out_dir),
        config_path=config_path,
        data_dir=data_dir,
        out_dir=out_dir,
        jobs=demo_jobs(),
        device=demo_device(),
        command=shlex.join(["gradremedy", "demo", "--out", str(out_dir)]),
        started=started,
    )
    print(format_table(results))
    print(f"wall time: {time.time() - started:.0f} s (corpus, trainings, evaluation and report)")
    print(f"report: {out_dir / 'report.md'}")
    return results
