"""Audio a training run pushes through the model, padding included: corpus against corpus, side by side.

    python benchmarks/batch_audio.py --config configs/tiny.yaml \
        --data OLD/data/train --buckets 10 --data NEW/data/train --buckets 40

Every tensor of a training step (STFTs, mask network, encoder, CTC) has the batch's longest utterance
times the batch size as its length, so the padded audio per step is the measure of a step's work that
does not move with the machine's speed. For each ``--data`` folder (with the ``--buckets`` given at the
same position, default: the config's ``data.num_buckets``) this builds the training sampler of
``gradremedy train`` from the header lengths (batch size, bucketing and seed from the config) and walks
the epochs of a ``train.max_steps`` run. It prints the utterances' mean length, the padding fraction and
the padded audio per step; the last line is ``first_over_last_padded_audio: X.XX``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from gradremedy.config import load_config
from gradremedy.data.audio import resampled_length
from gradremedy.data.batching import BucketBatchSampler, padding_fraction
from gradremedy.data.kaldi_dir import read_data_dir


def header_lengths(data_dir: Path, sample_rate: int) -> list[int]:
    """Each utterance's length in samples at ``sample_rate`` from the headers, in the loader's order and as
    the loader computes it (segments included)."""
    directory = read_data_dir(data_dir)
    info = directory.audio_info()
    return [
        resampled_length(info[u.utt_id].frames, info[u.utt_id].sample_rate, sample_rate) for u in directory
    ]


def run_batches(sampler: BucketBatchSampler, steps: int) -> list[list[int]]:
    """The lengths of the first ``steps`` global batches, epoch after epoch."""
    batches: list[list[int]] = []
    epoch = 0
    while len(batches) < steps:
        for batch in sampler.global_batches(epoch):
            batches.append([int(sampler.lengths[i]) for i in batch])
            if len(batches) == steps:
                break
        epoch += 1
    return batches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--data", action="append", required=True, help="a training folder (repeatable)")
    parser.add_argument("--buckets", action="append", type=int, default=[], help="per --data, in order")
    args = parser.parse_args()
    cfg = load_config(args.config, args.overrides)
    rate = cfg.model.sample_rate
    padded_per_step = []
    for position, folder in enumerate(args.data):
        buckets = args.buckets[position] if position < len(args.buckets) else cfg.data.num_buckets
        lengths = header_lengths(Path(folder), rate)
        sampler = BucketBatchSampler(
            lengths,
            batch_size=cfg.data.batch_size,
            max_frames_per_batch=cfg.data.max_frames_per_batch,
            num_buckets=buckets,
            seed=cfg.train.seed,
        )
        batches = run_batches(sampler, cfg.train.max_steps)
        padded = sum(max(b) * len(b) for b in batches) / rate / len(batches)
        padded_per_step.append(padded)
        print(
            f"{folder}: {len(lengths)} utterances, mean {sum(lengths) / len(lengths) / rate:.3f} s; "
            f"{buckets} buckets, {len(batches)} steps: padding {padding_fraction(batches) * 100:.1f} %, "
            f"{padded:.2f} s of padded audio per step"
        )
    print(f"first_over_last_padded_audio: {padded_per_step[0] / padded_per_step[-1]:.2f}")


if __name__ == "__main__":
    main()
