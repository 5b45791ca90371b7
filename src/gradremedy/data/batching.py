"""From a data directory to padded batches: dataset, length-bucketing sampler, collate, loader.

The sampler sorts utterances by duration (from headers, never from samples), cuts the order into
``num_buckets`` buckets of similar length, and forms batches inside each bucket, so that a batch
wastes little on padding. Batches are either ``batch_size`` utterances or as many as fit in
``max_frames_per_batch`` padded samples. The batch order depends only on (seed, epoch); an epoch can
start at any batch (exact resume), and each global batch is split across ``world_size`` ranks in
contiguous, as-equal-as-possible shares, so every rank sees the same number of batches.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, fields

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from gradremedy.config import DataConfig
from gradremedy.data.audio import (
    AudioInfo,
    AudioSpec,
    describe,
    load_audio,
    load_audio_with_info,
    resampled_length,
)
from gradremedy.data.kaldi_dir import DataDir, read_data_dir
from gradremedy.data.mixing import donor_indices, donor_levels, draw_donor, mix_rng, remix, rms
from gradremedy.data.tokenizer import Tokenizer
from gradremedy.errors import DataError, UserError

log = logging.getLogger(__name__)

# A clean reference may differ from its noisy input by this many samples after resampling (rounding).
LENGTH_TOLERANCE = 2
# 16-bit PCM decodes to int16 / 32768 (libsndfile's float read): a power of two, so int16 <-> float32 by
# this scale is exact both ways.
PCM16_SCALE = np.float32(1 / 32768)


class AudioCache:
    """Decoded audio of a dataset's files, kept in memory up to ``cap_bytes``; later files are read as usual.

    :meth:`load` returns what :func:`load_audio` returns (float32 mono at the rate asked for), a new array
    each time. A file read at the rate asked for, mono and stored as 16-bit PCM is kept as int16 (2 bytes
    a sample: its float32 samples are int16 / 32768 exactly); any other file as the float32 samples. A file
    that does not fit any more is read from disk on every load. Each process (loader worker) has its own.
    """

    def __init__(self, cap_bytes: int):
        self.cap_bytes = max(int(cap_bytes), 0)
        self.used_bytes = 0
        self.declined = 0  # loads that did not fit under the cap
        self._store: dict[AudioSpec, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self._store)

    def load(self, spec: AudioSpec, sample_rate: int) -> np.ndarray:
        """Float32 mono samples of ``spec`` at ``sample_rate``, from memory once read."""
        stored = self._store.get(spec)
        if stored is not None:
            return _expand(stored)
        if self.used_bytes >= self.cap_bytes:
            return load_audio(spec, sample_rate)
        audio, info = load_audio_with_info(spec, sample_rate)  # the header chooses how to store it
        stored = audio.copy()
        if info.subtype == "PCM_16" and info.channels == 1 and info.sample_rate == sample_rate:
            compact = (audio * np.float32(32768)).astype(np.int16)
            if np.array_equal(_expand(compact), audio):  # always so for 16-bit PCM; checked, cheaply
                stored = compact
        if self.used_bytes + stored.nbytes > self.cap_bytes:
            if not self.declined:
                log.info(
                    "audio cache full: %d file(s) in %.1f of %.0f MiB; %s and later files are read from disk",
                    len(self._store),
                    self.used_bytes / 2**20,
                    self.cap_bytes / 2**20,
                    describe(spec),
                )
            self.declined += 1
            return audio
        stored.setflags(write=False)
        self._store[spec] = stored
        self.used_bytes += stored.nbytes
        return audio


def _expand(stored: np.ndarray) -> np.ndarray:
    """A new float32 array of stored samples (int16 scaled by 1/32768, or float32 copied)."""
    if stored.dtype == np.int16:
        return np.multiply(stored, PCM16_SCALE, dtype=np.float32)
    return stored.copy()


@dataclass
class Batch:
    """A padded batch; ``tokens`` are padded with -1, ``clean`` is zeros where ``has_clean`` is False;
    an utterance without a transcript (SE-only) has no tokens and ``has_text`` False."""

    ids: list[str]
    noisy: torch.Tensor  # (B, T) float32
    noisy_lens: torch.Tensor  # (B,) int64, samples
    clean: torch.Tensor  # (B, T) float32
    has_clean: torch.Tensor  # (B,) bool
    tokens: torch.Tensor  # (B, U) int64
    token_lens: torch.Tensor  # (B,) int64
    has_text: torch.Tensor  # (B,) bool

    def _map(self, fn) -> Batch:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return Batch(**{k: fn(v) if isinstance(v, torch.Tensor) else v for k, v in values.items()})

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        return self._map(lambda t: t.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> Batch:
        return self._map(lambda t: t.pin_memory())

    def __len__(self) -> int:
        return len(self.ids)


class SpeechDataset(Dataset):
    """Utterances of a :class:`DataDir`, loaded on the fly at ``sample_rate``, mono, with token ids.

    With ``dynamic_mixing`` p > 0 each utterance with a clean reference gets, with probability p, the
    noise of another of ``utt_ids`` (:mod:`gradremedy.data.mixing`), drawn from (``seed``, epoch, index).
    The epoch is set by :meth:`set_epoch` (which :func:`make_loader` wires to the sampler's) before an
    epoch's iterator copies the dataset into the loader's workers.

    ``untranscribed="se_only"`` loads an utterance without a transcript that has a clean reference as
    an SE-only example (no tokens, ``has_text`` False); with ``"error"`` (the default) a missing
    transcript is a :class:`DataError`, as is, in either case, an utterance with neither.

    ``audio_cache_mb`` > 0 keeps decoded audio in memory (:class:`AudioCache`) up to that many MiB; each
    utterance's token ids, its clean reference's rms and, for a noise donor, the levels of its speech and
    noise are always kept (computed once): the examples are the same, bit for bit, in every case.
    """

    def __init__(
        self,
        data_dir: DataDir,
        tokenizer: Tokenizer,
        sample_rate: int,
        utt_ids: Sequence[str],
        *,
        dynamic_mixing: float = 0.0,
        seed: int = 0,
        untranscribed: str = "error",
        audio_cache_mb: int = 0,
    ):
        self.data_dir = data_dir
        self.untranscribed = untranscribed
        self.tokenizer = tokenizer
        self.sample_rate = sample_rate
        self.utt_ids = list(utt_ids)
        self.dynamic_mixing = dynamic_mixing
        self.seed = seed
        self.epoch = 0
        self.audio_cache = AudioCache(audio_cache_mb * 2**20)
        self._tokens: dict[str, list[int]] = {}
        self._clean_rms: dict[int, float] = {}
        self._donor_levels: dict[int, tuple[float, float]] = {}
        self.donors: list[int] = []
        if dynamic_mixing > 0:
            self.donors = donor_indices([data_dir[u] for u in self.utt_ids])
            if not self.donors:
                log.warning(
                    "%s: dynamic mixing is off: no utterance has an additive mixture to lend its noise "
                    "(a clean reference, no channel condition such as radio, no bandlimit/codec)",
                    data_dir.path,
                )
            else:
                log.info(
                    "%s: dynamic mixing p=%g, %d noise donor(s) of %d utterance(s)",
                    data_dir.path,
                    dynamic_mixing,
                    len(self.donors),
                    len(self.utt_ids),
                )

    def set_epoch(self, epoch: int) -> None:
        """The epoch whose mixing draws :meth:`__getitem__` uses."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.utt_ids)

    def __getitem__(self, index: int) -> dict:
        try:
            example = self._load(self.data_dir[self.utt_ids[index]])
            if self.donors and example["clean"] is not None:
                self._mix(index, example)
            return example
        except DataError as err:
            # Returned, not raised: an exception raised in a loader worker reaches the main process
            # wrapped in a multi-line traceback; SpeechLoader raises it there as one line.
            return {"error": str(err)}

    def _pair(self, utt) -> tuple[np.ndarray, np.ndarray | None]:
        """(noisy, clean cut or zero-padded to the noisy length, or None)."""
        noisy = self.audio_cache.load(utt.noisy_spec, self.sample_rate)
        clean = None
        if utt.clean_spec is not None:
            clean = self.audio_cache.load(utt.clean_spec, self.sample_rate)
            if abs(len(clean) - len(noisy)) > LENGTH_TOLERANCE:
                raise DataError(
                    f"{utt.utt_id}: clean reference has {len(clean)} samples, noisy {len(noisy)} "
                    f"(at {self.sample_rate} Hz)"
                )
            if len(clean) != len(noisy):
                clean = np.pad(clean[: len(noisy)], (0, max(len(noisy) - len(clean), 0)))
        return noisy, clean

    def _load(self, utt) -> dict:
        if utt.text is None and (self.untranscribed != "se_only" or utt.clean is None):
            need = "nor clean reference" if self.untranscribed == "se_only" else "(data.untranscribed: error)"
            raise DataError(f"{utt.utt_id}: {self.data_dir.path / 'text'}: no transcript {need}")
        noisy, clean = self._pair(utt)
        has_text = utt.text is not None
        tokens = self._tokens.get(utt.utt_id)
        if tokens is None:
            tokens = self._tokens[utt.utt_id] = self.tokenizer.encode(utt.text) if has_text else []
        return {
            "id": utt.utt_id,
            "noisy": noisy,
            "clean": clean,
            "tokens": list(tokens),
            "has_text": has_text,
        }

    def _mix(self, index: int, example: dict) -> None:
        """Replace ``example['noisy']`` by its clean speech plus a donor's noise, when drawn."""
        rng = mix_rng(self.seed, self.epoch, index)
        donor = draw_donor(rng, self.dynamic_mixing, index, self.donors)
        if donor is None:
            return
        donor_noisy, donor_clean = self._pair(self.data_dir[self.utt_ids[donor]])
        # The whole signals' levels are the same every epoch: computed once per utterance.
        if index not in self._clean_rms:
            self._clean_rms[index] = rms(example["clean"])
        if donor not in self._donor_levels:
            self._donor_levels[donor] = donor_levels(donor_noisy, donor_clean)
        mixed = remix(
            example["clean"],
            donor_noisy,
            donor_clean,
            rng,
            clean_rms=self._clean_rms[index],
            levels=self._donor_levels[donor],
        )
        if mixed is not None:
            example["noisy"] = mixed


@dataclass
class LoadFailure:
    """What :func:`collate` returns when an utterance of the batch could not be loaded."""

    message: str


class SpeechLoader(DataLoader):
    """A DataLoader that raises a one-line :class:`DataError` for an utterance it could not load."""

    def __iter__(self) -> Iterator[Batch]:
        for batch in super().__iter__():
            if isinstance(batch, LoadFailure):
                raise DataError(batch.message)
            yield batch


def collate(examples: list[dict]) -> Batch | LoadFailure:
    """Zero-pad waveforms to the longest, pad tokens with -1; an example's ``has_text`` defaults to True."""
    failed = [e["error"] for e in examples if "error" in e]
    if failed:
        return LoadFailure(failed[0])
    count = len(examples)
    lengths = [len(e["noisy"]) for e in examples]
    token_counts = [len(e["tokens"]) for e in examples]
    # Filled as numpy arrays and handed to torch without a copy: a row copy costs less in numpy than as
    # a torch indexing op (about a fifth less time per batch of 16 utterances of 1.5-4 s at 8 kHz).
    noisy = np.zeros((count, max(lengths, default=0)), dtype=np.float32)
    clean = np.zeros_like(noisy)
    has_clean = np.zeros(count, dtype=bool)
    tokens = np.full((count, max(token_counts, default=0)), -1, dtype=np.int64)
    for row, example in enumerate(examples):
        length = lengths[row]
        noisy[row, :length] = example["noisy"]
        if example["clean"] is not None:
            clean[row, :length] = example["clean"]
            has_clean[row] = True
        tokens[row, : token_counts[row]] = example["tokens"]
    noisy_lens = torch.tensor(lengths, dtype=torch.long)
    token_lens = torch.tensor(token_counts, dtype=torch.long)
    has_text = torch.tensor([e.get("has_text", True) for e in examples], dtype=torch.bool)
    return Batch(
        [e["id"] for e in examples],
        torch.from_numpy(noisy),
        noisy_lens,
        torch.from_numpy(clean),
        torch.from_numpy(has_clean),
        torch.from_numpy(tokens),
        token_lens,
        has_text,
    )


def padding_fraction(batches: Iterable[Batch | Sequence[int]]) -> float:
    """Padded samples / all samples of padded batches (a batch or a list of its lengths)."""
    padded = total = 0
    for batch in batches:
        lengths = batch.noisy_lens.tolist() if isinstance(batch, Batch) else list(batch)
        if not lengths:
            continue
        size = max(lengths) * len(lengths)
        total += size
        padded += size - sum(lengths)
    return padded / total if total else 0.0


class BucketBatchSampler(Sampler[list[int]]):
    """Length-bucketed batches of dataset indices; deterministic in (seed, epoch); resumable; sharded.

    ``lengths`` are in samples at the model rate. ``max_frames_per_batch > 0`` caps the padded size of a
    global batch (``len(batch) * longest``) instead of using ``batch_size`` utterances; a batch always
    has at least ``world_size`` utterances. Set the epoch with :meth:`set_epoch`; ``start_batch`` (also
    settable directly) skips that many batches of the epoch. Iterating yields this rank's share.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        *,
        batch_size: int = 16,
        max_frames_per_batch: int = 0,
        num_buckets: int = 10,
        seed: int = 0,
        shuffle: bool = True,
        rank: int = 0,
        world_size: int = 1,
    ):
        if world_size < 1 or not 0 <= rank < world_size:
            raise UserError(f"rank {rank} is not in a world of size {world_size}")
        if max_frames_per_batch <= 0 and batch_size < world_size:
            raise UserError(f"batch_size {batch_size} cannot be split over {world_size} ranks")
        if len(lengths) < world_size:
            raise DataError(f"{len(lengths)} utterance(s) cannot be split over {world_size} ranks")
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.batch_size = batch_size
        self.max_frames_per_batch = max_frames_per_batch
        self.num_buckets = max(1, num_buckets)
        self.seed = seed
        self.shuffle = shuffle
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.start_batch = 0
        self.dropped_long = 0  # counts filled in by make_loader
        self.skipped_bad = 0
        self._cache: tuple[int, list[list[int]]] | None = None
        self.epoch_listeners: list[Callable[[int], None]] = []  # told every set_epoch (the dataset's)

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Select the epoch's order and the batch to start from (0 at the start of an epoch)."""
        self.epoch = epoch
        self.start_batch = start_batch
        for listener in self.epoch_listeners:
            listener(epoch)

    def global_batches(self, epoch: int | None = None) -> list[list[int]]:
        """Every global batch of an epoch, in order (all ranks together)."""
        epoch = self.epoch if epoch is None else epoch
        if self._cache is not None and self._cache[0] == epoch:
            return [list(b) for b in self._cache[1]]
        rng = np.random.default_rng([self.seed, epoch])
        # Sort by length; ties broken by index (stable), or at random when shuffling.
        order = np.lexsort(
            (
                rng.permutation(len(self.lengths)) if self.shuffle else np.arange(len(self.lengths)),
                self.lengths,
            )
        )
        batches: list[list[int]] = []
        for bucket in np.array_split(order, min(self.num_buckets, len(order))):
            if self.shuffle:
                bucket = rng.permutation(bucket)
            batches.extend(self._fill(bucket.tolist()))
        batches = self._merge_small(batches)
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        self._cache = (epoch, batches)
        return [list(b) for b in batches]

    def _fill(self, indices: list[int]) -> list[list[int]]:
        if self.max_frames_per_batch <= 0:
            return [indices[i : i + self.batch_size] for i in range(0, len(indices), self.batch_size)]
        batches, current, longest = [], [], 0
        for index in indices:
            candidate = max(longest, int(self.lengths[index]))
            fits = (len(current) + 1) * candidate <= self.max_frames_per_batch
            if current and not fits and len(current) >= self.world_size:
                batches.append(current)
                current, candidate = [], int(self.lengths[index])
            current.append(index)
            longest = candidate
        if current:
            batches.append(current)
        return batches

    def _merge_small(self, batches: list[list[int]]) -> list[list[int]]:
        """Fold batches smaller than ``world_size`` into a neighbour, so no rank gets an empty share."""
        merged: list[list[int]] = []
        for batch in batches:
            if merged and len(batch) < self.world_size:
                merged[-1] = merged[-1] + batch
            else:
                merged.append(batch)
        if len(merged) > 1 and len(merged[0]) < self.world_size:
            merged[1] = merged[0] + merged[1]
            merged.pop(0)
        return merged

    def shard(self, batch: list[int]) -> list[int]:
        """This rank's contiguous share of a global batch (sizes differ by at most one)."""
        base, extra = divmod(len(batch), self.world_size)
        start = self.rank * base + min(self.rank, extra)
        return batch[start : start + base + (1 if self.rank < extra else 0)]

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.global_batches()[self.start_batch :]:
            yield self.shard(batch)

    def __len__(self) -> int:
        return max(len(self.global_batches()) - self.start_batch, 0)


def make_loader(
    data_dir: str | os.PathLike | DataDir,
    tokenizer: Tokenizer,
    data_config: DataConfig,
    sample_rate: int,
    *,
    seed: int,
    shuffle: bool,
    rank: int = 0,
    world_size: int = 1,
    skip_utts: Iterable[str] = (),
    epoch: int = 0,
    start_batch: int = 0,
    train: bool = False,
) -> tuple[DataLoader, BucketBatchSampler]:
    """A DataLoader of :class:`Batch` es over a data directory, and its sampler (for ``set_epoch``).

    The sampler starts at (``epoch``, ``start_batch``); call ``sampler.set_epoch`` (before iterating the
    loader) to move on: it also sets the dataset's epoch. Only a ``train`` loader applies
    ``data_config.dynamic_mixing``, with draws keyed by ``seed``, and ``data_config.untranscribed``
    (any other loader needs a transcript for every utterance).

    Utterances in ``skip_utts`` and those longer than ``data_config.max_seconds`` are left out; both
    counts are logged, as is any resampling or downmixing the directory needs.
    """
    directory = data_dir if isinstance(data_dir, DataDir) else read_data_dir(data_dir)
    info = directory.audio_info()
    kept, too_long, skipped = _loadable(directory, info, set(skip_utts), data_config.max_seconds)
    _log_conversion(directory, kept, sample_rate)
    lengths = [resampled_length(info[u].frames, info[u].sample_rate, sample_rate) for u in kept]
    sampler = BucketBatchSampler(
        lengths,
        batch_size=data_config.batch_size,
        max_frames_per_batch=data_config.max_frames_per_batch,
        num_buckets=data_config.num_buckets,
        seed=seed,
        shuffle=shuffle,
        rank=rank,
        world_size=world_size,
    )
    sampler.dropped_long, sampler.skipped_bad = too_long, skipped
    dataset = SpeechDataset(
        directory,
        tokenizer,
        sample_rate,
        kept,
        dynamic_mixing=data_config.dynamic_mixing if train else 0.0,
        seed=seed,
        untranscribed=data_config.untranscribed if train else "error",
        audio_cache_mb=data_config.audio_cache_mb,
    )
    if data_config.audio_cache_mb > 0 and data_config.num_workers > 0:
        log.info(
            "%s: each of the %d loader worker(s) keeps its own audio cache of up to %d MiB, and loses it "
            "when the workers restart (every epoch)",
            directory.path,
            data_config.num_workers,
            data_config.audio_cache_mb,
        )
    sampler.epoch_listeners.append(dataset.set_epoch)
    sampler.set_epoch(epoch, start_batch)
    loader = SpeechLoader(
        dataset,
        batch_sampler=sampler,
        collate_fn=collate,
        num_workers=data_config.num_workers,
        pin_memory=False,
    )
    return loader, sampler


def _loadable(
    directory: DataDir, info: dict[str, AudioInfo], skip: set[str], max_seconds: float
) -> tuple[list[str], int, int]:
    """The ids to load (in the directory's order), and how many were too long and how many were skipped
    (both logged); raises DataError when none is left. ``info``: the directory's
    :meth:`DataDir.audio_info`."""
    kept, too_long, skipped = [], 0, 0
    for utt in directory:
        if utt.utt_id in skip:
            skipped += 1
        elif info[utt.utt_id].duration > max_seconds:
            too_long += 1
        else:
            kept.append(utt.utt_id)
    if skipped:
        log.warning("%s: skipping %d bad utterance(s)", directory.path, skipped)
    if too_long:
        log.warning("%s: dropped %d utterance(s) longer than %g s", directory.path, too_long, max_seconds)
    if not kept:
        raise DataError(f"{directory.path}: no utterances left to load")
    return kept, too_long, skipped


_LOGGED_CONVERSIONS: set[tuple[str, int]] = set()


def _log_conversion(directory: DataDir, utt_ids: list[str], sample_rate: int) -> None:
    """Say once per directory (and process) which rates and channel counts get resampled or downmixed."""
    key = (str(directory.path.resolve()), sample_rate)
    if key in _LOGGED_CONVERSIONS:
        return
    _LOGGED_CONVERSIONS.add(key)
    info = directory.audio_info()
    rates = Counter(info[u].sample_rate for u in utt_ids if info[u].sample_rate != sample_rate)
    channels = Counter(info[u].channels for u in utt_ids if info[u].channels != 1)
    if rates:
        listed = ", ".join(f"{n} at {rate} Hz" for rate, n in sorted(rates.items()))
        log.info("%s: resampling to %d Hz (%s)", directory.path, sample_rate, listed)
    if channels:
        listed = ", ".join(f"{n} with {c} channels" for c, n in sorted(channels.items()))
        log.info("%s: downmixing to mono (%s)", directory.path, listed)


def estimated_padding_fraction(sampler: BucketBatchSampler, epoch: int = 0) -> float:
    """Padding fraction of an epoch's global batches, from the header lengths alone."""
    return padding_fraction(
        [[int(sampler.lengths[i]) for i in batch] for batch in sampler.global_batches(epoch)]
    )


__all__ = [
    "Batch",
    "BucketBatchSampler",
    "LoadFailure",
    "SpeechLoader",
    "SpeechDataset",
    "collate",
    "estimated_padding_fraction",
    "make_loader",
    "padding_fraction",
]
