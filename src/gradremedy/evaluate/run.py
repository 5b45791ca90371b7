"""``gradremedy eval`` and ``gradremedy transcribe``: decode audio with a trained experiment and score it.

``evaluate`` decodes a Kaldi/ESPnet data directory (any sample rate: audio is resampled to the model's
rate and downmixed), scores WER/CER overall, per condition (``utt2cond``) and per SNR bucket, scores the
enhancement (PESQ, STOI, SI-SNR and its improvement over the noisy input) on utterances with a clean
reference when the model has an enhancer (PESQ is reported unavailable, with the reason, when the ``pesq``
package cannot be imported), prints a table and writes ``<out>.json`` and ``<out>.hyp.txt``
(``<utt> <hypothesis>``, Kaldi text format) atomically. An utterance that cannot be used (unreadable,
empty, non-finite samples, no transcript, too short for the encoder) is reported on one line and
skipped; the JSON counts it.

``transcribe`` prints ``<file>\\t<transcript>`` per audio file and optionally writes the enhanced audio.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile
import torch
from tqdm import tqdm

from gradremedy.atomic import atomic_path, atomic_write_text
from gradremedy.config import Config
from gradremedy.data import load_audio, read_data_dir
from gradremedy.data.kaldi_dir import DataDir, Utterance
from gradremedy.data.tokenizer import Tokenizer
from gradremedy.data.wer import ErrorCounts, error_counts
from gradremedy.decode.batch import decode_and_enhance
from gradremedy.decode.lm import LSTMLM, check_same_tokens, load_lm
from gradremedy.errors import DataError, UserError
from gradremedy.evaluate.enhancement import EnhancementScores, ScoringPool, enhancement_subset, say
from gradremedy.evaluate.metrics import check_samples, rounded, snr_bucket, snr_bucket_order
from gradremedy.onednn_cache import enlarge_onednn_cache
from gradremedy.provenance import available_cores
from gradremedy.train.checkpoint import load_model

DECODE_BATCH = 8  # utterances decoded together (sorted by length, so padding stays small)


# ---- the recogniser shared by eval and transcribe ---------------------------------------------------


class Recognizer:
    """A trained model with its tokenizer, decoding settings and optional LM."""

    def __init__(
        self,
        exp_dir: str | os.PathLike,
        checkpoint: str = "average",
        device: str = "cpu",
        beam: int | None = None,
        lm_dir: str | os.PathLike | None = None,
        lm_weight: float | None = None,
    ):
        self.device = torch.device(device)
        model, tokenizer, config = load_model(exp_dir, which=checkpoint, device=self.device)
        self.model: torch.nn.Module = model
        self.tokenizer: Tokenizer = tokenizer
        self.config: Config = config
        self.decode_cfg = config.decode
        self.beam = beam if beam is not None else self.decode_cfg.beam_size
        if self.beam < 1:
            raise UserError(f"--beam must be at least 1, got {self.beam}")
        self.lm: LSTMLM | None = None
        self.lm_weight = lm_weight if lm_weight is not None else self.decode_cfg.lm_weight
        if lm_dir is not None:
            self.lm, lm_tokenizer = load_lm(lm_dir, self.device)
            check_same_tokens(lm_tokenizer, tokenizer, lm_dir)
            if self.lm.vocab_size != model.vocab_size:
                raise UserError(
                    f"{lm_dir}: LM has {self.lm.vocab_size} outputs, the model {model.vocab_size}"
                )
        self.sample_rate: int = model.sample_rate
        self.has_enhancer = len(model.shared_parameters()) > 0

    def settings(self) -> dict[str, Any]:
        return {
            "beam": self.beam,
            "ctc_weight": self.decode_cfg.ctc_weight,
            "length_penalty": self.decode_cfg.length_penalty,
            "max_length_ratio": self.decode_cfg.max_length_ratio,
            "lm_weight": self.lm_weight if self.lm is not None else 0.0,
        }

    def _pad(self, waveforms: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        lengths = torch.tensor([len(w) for w in waveforms])
        batch = torch.zeros(len(waveforms), int(lengths.max()))  # (B, T)
        for i, w in enumerate(waveforms):
            batch[i, : len(w)] = torch.from_numpy(w)
        return batch.to(self.device), lengths.to(self.device)

    @staticmethod
    def _unpad(batch: torch.Tensor, lengths: torch.Tensor) -> list[np.ndarray]:
        return [e[:n].float().cpu().numpy() for e, n in zip(batch, lengths.tolist())]

    def recognize(self, waveforms: list[np.ndarray]) -> list[str]:
        """Transcripts of mono waveforms at the model's rate, decoded as one batch."""
        return self.recognize_and_enhance(waveforms)[0]

    @torch.no_grad()
    def recognize_and_enhance(self, waveforms: list[np.ndarray]) -> tuple[list[str], list[np.ndarray]]:
        """Transcripts and enhanced waveforms (those :meth:`enhance` gives) of one batch, with one enhancer
        pass for both."""
        noisy, lengths = self._pad(waveforms)
        hyps, enhanced = decode_and_enhance(
            self.model,
            noisy,
            lengths,
            beam_size=self.beam,
            ctc_weight=self.decode_cfg.ctc_weight,
            length_penalty=self.decode_cfg.length_penalty,
            max_length_ratio=self.decode_cfg.max_length_ratio,
            lm=self.lm,
            lm_weight=self.lm_weight,
        )
        return [self.tokenizer.decode(h[0].tokens) for h in hyps], self._unpad(enhanced, lengths)

    @torch.no_grad()
    def enhance(self, waveforms: list[np.ndarray]) -> list[np.ndarray]:
        """Enhanced waveforms (the input itself for a model without an enhancer)."""
        noisy, lengths = self._pad(waveforms)
        enhanced, enhanced_lens = self.model.enhance(noisy, lengths)
        return self._unpad(enhanced, enhanced_lens)


# ---- evaluation --------------------------------------------------------------------------------------


@dataclass
class _Group:
    """Error counts of a group of utterances."""

    words: ErrorCounts = field(default_factory=ErrorCounts)
    chars: ErrorCounts = field(default_factory=ErrorCounts)
    num_utts: int = 0

    def add(self, words: ErrorCounts, chars: ErrorCounts) -> None:
        self.words, self.chars, self.num_utts = self.words + words, self.chars + chars, self.num_utts + 1

    def summary(self) -> dict[str, Any]:
        return {"wer": rounded(self.words.rate), "cer": rounded(self.chars.rate), "num_utts": self.num_utts}


# ---- decoding: audio in, transcripts out -------------------------------------------------------------


@dataclass
class DecodedBatch:
    """A batch of decoded utterances: the items, their samples at the model's rate, their transcripts and
    the enhanced samples the encoder read (None when the batch was decoded one utterance at a time, so
    that the enhancement of the batch as a whole was not computed)."""

    utts: list[Utterance]
    waveforms: list[np.ndarray]
    texts: list[str]
    enhanced: list[np.ndarray] | None = None


def _load_for_decoding(utt: Utterance, rate: int) -> tuple[np.ndarray | None, str | None]:
    """(samples, None), or (None, why the utterance cannot be decoded)."""
    if utt.text is None:
        return None, "no transcript in text"
    try:
        samples = load_audio(utt.noisy_spec, rate)
    except DataError as err:  # names the file and the reason
        return None, str(err)
    except (OSError, RuntimeError, ValueError) as err:
        return None, f"{utt.wav}: unreadable audio ({err})"
    return samples, check_samples(samples)


def decode_batches(
    recognizer: Recognizer, utts: list[Utterance], skip: Callable[[str, str], None]
) -> Iterator[DecodedBatch]:
    """Decode ``utts`` in batches of :data:`DECODE_BATCH`, in the given order; an utterance that cannot
    be loaded or decoded is passed to ``skip(utt_id, reason)`` and left out."""
    rate = recognizer.sample_rate
    for first in range(0, len(utts), DECODE_BATCH):
        batch, waveforms = [], []
        for utt in utts[first : first + DECODE_BATCH]:
            samples, problem = _load_for_decoding(utt, rate)
            if problem:
                skip(utt.utt_id, problem)
                continue
            batch.append(utt)
            waveforms.append(samples)
        if not batch:
            continue
        texts, enhanced = _decode_each(recognizer, batch, waveforms, skip)
        decoded = DecodedBatch([], [], [], enhanced)
        for utt, samples, text in zip(batch, waveforms, texts):
            if text is not None:
                decoded.utts.append(utt)
                decoded.waveforms.append(samples)
                decoded.texts.append(text)
        yield decoded


def _decode_each(
    recognizer: Recognizer,
    batch: list[Utterance],
    waveforms: list[np.ndarray],
    skip: Callable[[str, str], None],
) -> tuple[list[str | None], list[np.ndarray] | None]:
    """The batch's transcripts (the one place evaluation decodes) and enhanced samples; failures are
    skipped with the reason (the enhanced samples are then None: the batch was not enhanced as one)."""
    try:
        texts, enhanced = recognizer.recognize_and_enhance(waveforms)
        return list(texts), enhanced
    except (UserError, ValueError, RuntimeError):  # decode one by one to find the utterance at fault
        pass
    texts: list[str | None] = []
    for utt, samples in zip(batch, waveforms):
        try:
            texts.extend(recognizer.recognize([samples]))
        except (UserError, ValueError, RuntimeError) as err:
            texts.append(None)
            skip(utt.utt_id, f"cannot be decoded ({str(err).splitlines()[0]})")
    return texts, None


# ---- scoring: transcripts against references ---------------------------------------------------------


@dataclass
class _TextScores:
    """WER/CER overall, per condition (``utt2cond``) and per SNR bucket."""

    overall: _Group = field(default_factory=_Group)
    by_condition: dict[str, _Group] = field(default_factory=lambda: defaultdict(_Group))
    by_snr: dict[str, _Group] = field(default_factory=lambda: defaultdict(_Group))

    def add(self, utt: Utterance, hypothesis: str) -> None:
        assert utt.text is not None  # utterances without a transcript are never decoded
        words, chars = error_counts(utt.text, hypothesis, "word"), error_counts(utt.text, hypothesis, "char")
        self.overall.add(words, chars)
        if utt.condition is not None:
            self.by_condition[utt.condition].add(words, chars)
        bucket = snr_bucket(utt.snr)
        if bucket is not None:
            self.by_snr[bucket].add(words, chars)

    def summary(self) -> dict[str, Any]:
        words, chars = self.overall.words, self.overall.chars
        return {
            "wer": rounded(words.rate),
            "cer": rounded(chars.rate),
            "num_utts": self.overall.num_utts,
            "num_words": words.reference_length,
            "errors": _operations(words),
            "char_errors": _operations(chars),
            "by_condition": {c: g.summary() for c, g in sorted(self.by_condition.items())},
            "by_snr": {b: self.by_snr[b].summary() for b in sorted(self.by_snr, key=snr_bucket_order)},
        }


def _operations(counts: ErrorCounts) -> dict[str, int]:
    return {
        "substitutions": counts.substitutions,
        "deletions": counts.deletions,
        "insertions": counts.insertions,
    }


# ---- evaluation: decode, score, write ----------------------------------------------------------------


def _by_duration(data: DataDir) -> list[Utterance]:
    """Utterances shortest first, so that a batch needs little padding."""
    try:
        durations = data.durations()
    except DataError:  # an unreadable header: order as listed, the file is reported when loaded
        durations = {}
    return sorted(data.utterances, key=lambda u: durations.get(u.utt_id, 0.0))


def evaluate(
    exp_dir: str | os.PathLike,
    data_dir: str | os.PathLike,
    out_path: str | os.PathLike | None = None,
    beam: int | None = None,
    lm_dir: str | os.PathLike | None = None,
    lm_weight: float | None = None,
    checkpoint: str = "average",
    device: str = "cpu",
    se_max_utts: int | None = None,
    workers: int | None = None,
) -> dict[str, Any]:
    """Decode and score a data directory; writes the JSON report and the hypotheses, returns the report.

    ``beam``, ``lm_weight`` and ``se_max_utts`` default to the experiment's ``decode`` settings. The
    enhancement is scored in ``workers`` processes beside the decoding one (default: half the available
    cores, rounded down; 0: in this process, as is everything on one core); decoding then uses at most the
    remaining cores for torch's threads. The hypotheses and scores do not depend on ``workers``."""
    started = time.time()
    enlarge_onednn_cache()  # before the first convolution (gradremedy/onednn_cache.py)
    exp_dir, data_dir = Path(exp_dir), Path(data_dir)
    recognizer = Recognizer(exp_dir, checkpoint, device, beam, lm_dir, lm_weight)
    data = read_data_dir(data_dir)
    if len(data) == 0:
        raise DataError(f"{data_dir}: no utterances")
    out = Path(out_path) if out_path is not None else exp_dir / "eval" / f"{data_dir.resolve().name}.json"
    hyp_path = out.with_name(out.stem + ".hyp.txt")
    se_utts = enhancement_subset(
        [u.utt_id for u in data.utterances if u.clean_spec is not None],
        recognizer.decode_cfg.se_max_utts if se_max_utts is None else se_max_utts,
    )
    workers = available_cores() // 2 if workers is None else workers
    if workers < 0:
        raise UserError(f"--workers must be 0 or more, got {workers}")
    threads = torch.get_num_threads()
    with ScoringPool(workers if recognizer.has_enhancer and se_utts else 0) as pool:
        if pool.parallel:  # leave the workers their cores: torch's idle threads would spin on them
            torch.set_num_threads(max(1, min(threads, available_cores() - workers)))
        try:
            text_scores, se_scores = _TextScores(), EnhancementScores(recognizer, se_utts, pool)
            hypotheses, skipped, audio_seconds = _decode_and_score(recognizer, data, text_scores, se_scores)
            se_summary = se_scores.summary()  # waits for the scoring jobs
        finally:
            torch.set_num_threads(threads)
    seconds = time.time() - started
    report: dict[str, Any] = {
        "exp": str(exp_dir),
        "data": str(data_dir),
        "checkpoint": checkpoint,
        "decode": recognizer.settings(),
        "lm": str(lm_dir) if lm_dir is not None else None,
        **text_scores.summary(),
        "se": se_summary,
        "skipped": len(skipped),
        "skipped_utts": skipped,
        "hyp_file": str(hyp_path),
        "seconds": round(seconds, 2),
        "rtf": rounded(seconds / audio_seconds, 4) if audio_seconds else None,
    }
    _write_outputs(report, hypotheses, out, hyp_path)
    print(format_report(report))
    return report


def _decode_and_score(
    recognizer: Recognizer, data: DataDir, text_scores: _TextScores, se_scores: EnhancementScores
) -> tuple[dict[str, str], dict[str, str], float]:
    """Decode every utterance of ``data`` (shortest first) into the scores: (hypotheses, skipped
    utterances with the reason, seconds of audio decoded)."""
    skipped: dict[str, str] = {}
    hypotheses: dict[str, str] = {}
    audio_seconds = 0.0
    ordered = _by_duration(data)
    with tqdm(total=len(ordered), unit="utt", desc=f"eval {data.path.name}", disable=None) as progress:

        def skip(utt_id: str, reason: str) -> None:
            skipped[utt_id] = reason
            say(f"{utt_id}: skipped: {reason}")
            progress.update(1)

        for decoded in decode_batches(recognizer, ordered, skip):
            for utt, samples, text in zip(decoded.utts, decoded.waveforms, decoded.texts):
                hypotheses[utt.utt_id] = text
                audio_seconds += len(samples) / recognizer.sample_rate
                text_scores.add(utt, text)
            se_scores.add(decoded)
            progress.update(len(decoded.utts))
    return hypotheses, skipped, audio_seconds


def _write_outputs(report: dict[str, Any], hypotheses: dict[str, str], out: Path, hyp_path: Path) -> None:
    """The hypotheses (``<utt> <text>``, Kaldi text format) and the JSON report, each written atomically."""
    lines = [f"{utt_id} {hypotheses[utt_id]}".rstrip() for utt_id in sorted(hypotheses)]
    atomic_write_text(hyp_path, "".join(line + "\n" for line in lines))
    atomic_write_text(out, json.dumps(report, indent=1, ensure_ascii=False) + "\n")


def _fmt(value: float | None, unit: str = "") -> str:
    return "-" if value is None else f"{value:.2f}{unit}"


def format_report(report: dict[str, Any]) -> str:
    """The report as a plain-text table."""
    rows = [("overall", report["wer"], report["cer"], report["num_utts"])]
    rows += [(f"cond {c}", g["wer"], g["cer"], g["num_utts"]) for c, g in report["by_condition"].items()]
    rows += [(f"snr {b}", g["wer"], g["cer"], g["num_utts"]) for b, g in report["by_snr"].items()]
    width = max(len(r[0]) for r in rows)
    lines = [f"{'':{width}}  {'WER %':>7}  {'CER %':>7}  {'utts':>5}"]
    lines += [f"{name:{width}}  {_fmt(wer):>7}  {_fmt(cer):>7}  {n:>5}" for name, wer, cer, n in rows]
    errors = report["errors"]
    lines.append(
        f"words {report['num_words']}: {errors['substitutions']} sub, {errors['deletions']} del, "
        f"{errors['insertions']} ins; skipped {report['skipped']} utterance(s)"
    )
    se = report["se"]
    if se["num_utts"]:
        pesq = (
            f"PESQ unavailable ({se['pesq_unavailable']})"
            if se.get("pesq_unavailable")
            else f"PESQ {_fmt(se['pesq'])} (noisy {_fmt(se['pesq_noisy'])})"
        )
        lines.append(
            f"enhancement ({se['num_utts']} utts with a reference): {pesq}, "
            f"STOI {_fmt(se['stoi'])} (noisy {_fmt(se['stoi_noisy'])}), "
            f"SI-SNR {_fmt(se['si_snr'], ' dB')} (improvement {_fmt(se['si_snr_improvement'], ' dB')})"
        )
    else:
        lines.append("enhancement: not scored (" + se.get("note", "no clean references") + ")")
    lines.append(f"hypotheses: {report['hyp_file']}")
    return "\n".join(lines)


# ---- transcription -----------------------------------------------------------------------------------


def transcribe(
    exp_dir: str | os.PathLike,
    files: list[str | os.PathLike],
    enhanced_dir: str | os.PathLike | None = None,
    beam: int | None = None,
    lm_dir: str | os.PathLike | None = None,
    lm_weight: float | None = None,
    checkpoint: str = "average",
    device: str = "cpu",
) -> int:
    """Print ``<file>\\t<transcript>`` for each file; 1 if any file failed (reported on stderr), else 0."""
    recognizer = Recognizer(exp_dir, checkpoint, device, beam, lm_dir, lm_weight)
    if enhanced_dir is not None and not recognizer.has_enhancer:
        raise UserError(f"{exp_dir}: the model has no enhancer, so --enhanced-dir has nothing to write")
    failed = False
    for path in files:
        try:
            samples = load_audio(str(path), recognizer.sample_rate)
            problem = check_samples(samples)
            if problem:
                raise DataError(f"{path}: {problem}")
            texts, enhanced = recognizer.recognize_and_enhance([samples])
            text = texts[0]
            if enhanced_dir is not None:
                target = Path(enhanced_dir) / (Path(path).stem + ".wav")
                with atomic_path(target) as tmp:
                    soundfile.write(tmp, enhanced[0], recognizer.sample_rate, format="WAV", subtype="FLOAT")
        except (UserError, OSError, RuntimeError, ValueError) as err:
            message = str(err).splitlines()[0] if str(err) else type(err).__name__
            if str(path) not in message:
                message = f"{path}: {message}"
            print(f"gradremedy: error: {message}", file=sys.stderr)
            failed = True
            continue
        print(f"{path}\t{text}", flush=True)
    return 1 if failed else 0
