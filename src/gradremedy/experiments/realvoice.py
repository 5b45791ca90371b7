"""The real-voice test set in ``compare`` and the demo: build it once per comparison, score every run on it.

A human voice (Allison Smith's recordings, :mod:`gradremedy.data.real_voice`) is scored as a second
test set, clean and noisy, beside the synthetic one. It is for testing only: it is never trained on and
never used to choose a checkpoint or a setting. Each run is scored with the same checkpoint
(``average``) and decode settings as on the synthetic test set, and nothing reads these scores back
into training or selection. Its results (``EXP/eval/real_voice_{clean,noisy}.json``) reach
``results.json`` as ``methods[m]["real_voice"]``.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gradremedy.errors import UserError

if TYPE_CHECKING:
    from gradremedy.experiments.compare import RunSettings, RunSpec

REAL_VOICE_SEED = 1
REAL_VOICE_UTTS = 100
# The report shows the real voice's WER only: its enhancement is scored on 20 evenly spaced utterances
# (all 100 took 18-21 s per set and model on the 2-core machine, 3 s without them).
REAL_VOICE_SE_UTTS = 20
SETS = ("clean", "noisy")
USE = "testing only: never trained on, never used to choose a checkpoint or a setting"


def _log(message: str) -> None:
    print(f"[gradremedy] {message}", file=sys.stderr, flush=True)


def prepare_real_voice(out_dir: Path, config_path: Path, overrides: Sequence[str]) -> Path | None:
    """Build (or reuse) ``OUT/real_voice`` at the model's rate; None, with a note, when her recordings
    are not installed: the comparison then goes on without the second test set."""
    from gradremedy.config import load_config
    from gradremedy.data.real_voice import build_real_voice, real_voice_ready

    folder = Path(out_dir) / "real_voice"
    rate = load_config(config_path, list(overrides)).model.sample_rate
    if real_voice_ready(folder, rate, REAL_VOICE_SEED, REAL_VOICE_UTTS):
        return folder
    try:
        build_real_voice(folder, sample_rate=rate, seed=REAL_VOICE_SEED, num_utts=REAL_VOICE_UTTS)
    except UserError as err:
        _log(f"no real-voice test: {err}")
        return None
    return folder


def eval_path(spec: RunSpec, name: str) -> Path:
    """Where a run's score on the real-voice set ``name`` lives (``.hyp.txt`` beside it)."""
    return spec.exp_dir / "eval" / f"real_voice_{name}.json"


def evaluate_set(spec: RunSpec, settings: RunSettings, name: str) -> None:
    """Score one run on ``real_voice/<name>`` with the checkpoint and decode settings of the test set."""
    from gradremedy.evaluate import evaluate

    assert settings.real_voice_dir is not None
    evaluate(
        exp_dir=spec.exp_dir,
        data_dir=settings.real_voice_dir / name,
        out_path=eval_path(spec, name),
        beam=None,
        lm_dir=None,
        lm_weight=None,
        checkpoint="average",
        device=settings.device,
        se_max_utts=REAL_VOICE_SE_UTTS,
    )


def _read_scores(path: Path) -> dict[str, Any] | None:
    """The evaluation JSON at ``path`` when it holds a numeric WER, else None."""
    try:
        scores = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, OSError):
        return None
    wer = scores.get("wer") if isinstance(scores, dict) else None
    return scores if isinstance(wer, (int, float)) and not isinstance(wer, bool) else None


def score_real_voice(spec: RunSpec, settings: RunSettings) -> None:
    """Score a finished run on each real-voice set it has no score for yet; a failure is logged, never
    fatal (the synthetic test set is the comparison's)."""
    if settings.real_voice_dir is None:
        return
    for name in SETS:
        if _read_scores(eval_path(spec, name)) is not None:
            continue
        _log(f"{spec.name}: evaluating on the real-voice {name} set")
        try:
            evaluate_set(spec, settings, name)
        except Exception as err:  # noqa: BLE001 - the run and its synthetic test result stand regardless
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            _log(f"{spec.name}: real-voice {name} set not scored: {first}")


def load_real_voice(spec: RunSpec) -> dict[str, dict[str, Any]]:
    """{set name: evaluation JSON} of the real-voice sets the run was scored on."""
    found = {name: _read_scores(eval_path(spec, name)) for name in SETS}
    return {name: scores for name, scores in found.items() if scores is not None}


def provenance(folder: Path | None) -> dict[str, Any] | None:
    """What ``results.json`` records about the real-voice set of a comparison (None: not scored)."""
    if folder is None:
        return None
    return {"dir": str(folder), "seed": REAL_VOICE_SEED, "num_utts": REAL_VOICE_UTTS, "use": USE}


def real_voice_summary(per_seed: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> dict[str, Any] | None:
    """``results.json``'s ``methods[m]["real_voice"]`` from {seed: {set name: evaluation JSON}} of one
    method's runs: per set (clean, noisy), WER and CER in percent (means over the seeds scored on it),
    the WER's standard deviation, per-seed values and the utterance count. None when no run was scored
    on the real-voice test set."""
    from gradremedy.experiments.significance import mean_std

    summary: dict[str, dict[str, Any]] = {}
    for name in SETS:
        scored = {
            seed: sets[name]
            for seed, sets in per_seed.items()
            if name in sets and _number(sets[name].get("wer"))
        }
        if not scored:
            continue
        stats = {
            m: mean_std(float(s[m]) for s in scored.values() if _number(s.get(m))) for m in ("wer", "cer")
        }
        summary[name] = {
            "wer": stats["wer"]["mean"],
            "cer": stats["cer"]["mean"],
            "wer_std": stats["wer"]["std"],
            "per_seed": {seed: {m: s.get(m) for m in ("wer", "cer")} for seed, s in scored.items()},
            "num_utts": max(int(s.get("num_utts") or 0) for s in scored.values()),
        }
    return summary or None


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
