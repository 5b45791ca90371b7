"""CPU cost of a training step in float32 against bf16 autocast (``train.amp``), side by side.

    python benchmarks/amp_speed.py --config configs/tiny.yaml
    python benchmarks/amp_speed.py --config configs/tiny.yaml --methods gr --lengths 20

For each method, two runs start from the same initial weights, one with ``train.amp=none`` and one with
``train.amp=bf16``, and take the same batches: random waveforms and tokens as in ``step_speed.py``, each
batch with its own longest utterance, ``--lengths`` lengths evenly spaced from ``--shortest`` to
``--longest`` seconds. Their steps alternate (the order flips every step); a step's figure is its CPU time
(``time.process_time``, one torch thread by default, as the demo's runs use).

The batches are taken twice, in two orders:
- **cold**: each length for the first time. bf16 runs through oneDNN, which compiles a kernel for every
  new operation and shape; float32's matrix products do not need that.
- **warm**: the same lengths again, their kernels compiled. A training run sees its few hundred lengths
  again and again, so its steps are mostly warm ones, as long as oneDNN's kernel cache holds them all
  (``gradremedy/onednn_cache.py``).

The first step's losses of the two runs are printed too, as a check that bf16 computes the same thing.
bf16 autocast needs a CPU with bf16 instructions (AVX512-BF16 or AMX); without them the script says so
and stops. Last line: ``float32_over_bf16_warm_<last method>: X.XX``.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from types import SimpleNamespace

import torch

from gradremedy.config import load_config
from gradremedy.onednn_cache import enlarge_onednn_cache
from gradremedy.train import loop
from gradremedy.train.setup import cpu_has_native_bf16
from gradremedy.train.step import autocast_context, model_losses
from step_speed import random_batches, timed_step

PRECISIONS = ("none", "bf16")


def build_runs(config: str, overrides: list[str], method: str) -> dict[str, loop.TrainingRun]:
    """One training run per precision, all with the same initial weights."""
    runs = {}
    for amp in PRECISIONS:
        cfg = load_config(config, [*overrides, f"train.amp={amp}", f"surgery.method={method}"])
        torch.manual_seed(cfg.train.seed)
        vocab = SimpleNamespace(vocab_size=cfg.tokenizer.vocab_size + 2)  # the step needs only the size
        runs[amp] = loop.build_run(cfg, vocab, torch.device("cpu"), rank=0, world_size=1)
    runs["bf16"].model.load_state_dict(runs["none"].model.state_dict())
    return runs


def first_losses(runs: dict[str, loop.TrainingRun], batch) -> dict[str, float]:
    """The total loss of each run on ``batch`` before any step (the same weights)."""
    losses = {}
    for amp, run in runs.items():
        with torch.no_grad(), autocast_context(run):
            losses[amp] = float(model_losses(run.model, batch)["loss"])
    return losses


def timed_pass(runs: dict[str, loop.TrainingRun], batches: list) -> dict[str, list[float]]:
    """CPU seconds of one step per batch and precision, the precisions alternating step by step."""
    times: dict[str, list[float]] = {amp: [] for amp in PRECISIONS}
    for index, batch in enumerate(batches):
        for amp in PRECISIONS if index % 2 == 0 else PRECISIONS[::-1]:
            start = time.process_time()
            timed_step(runs[amp], [batch])
            times[amp].append(time.process_time() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--methods", nargs="+", default=["asr_only", "sum", "gr"])
    parser.add_argument("--batch", type=int, default=None, help="utterances per batch (default: config)")
    parser.add_argument("--lengths", type=int, default=30, help="distinct batch lengths (steps per pass)")
    parser.add_argument("--shortest", type=float, default=1.5, help="seconds, longest utterance of a batch")
    parser.add_argument("--longest", type=float, default=4.0, help="seconds, longest utterance of a batch")
    parser.add_argument("--tokens-per-second", type=float, default=3.0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    if not cpu_has_native_bf16():
        sys.exit("this CPU has no bf16 instructions (AVX512-BF16, AMX): train.amp=bf16 runs in float32 here")
    enlarge_onednn_cache()  # before the first oneDNN operation of this process, as training does
    torch.set_num_threads(args.threads)
    step = (args.longest - args.shortest) / max(1, args.lengths - 1)
    seconds = [args.shortest + k * step for k in range(args.lengths)]
    print(
        f"{torch.get_num_threads()} torch thread(s), torch {torch.__version__}; CPU time per step, "
        f"batches of {args.lengths} lengths from {args.shortest:g} to {args.longest:g} s"
    )
    for method in args.methods:
        runs = build_runs(args.config, args.overrides, method)
        cfg = runs["none"].cfg
        size = args.batch or cfg.data.batch_size
        vocab = cfg.tokenizer.vocab_size + 2
        batches = [random_batches(cfg, vocab, 1, size, s, args.tokens_per_second)[0] for s in seconds]
        losses = first_losses(runs, batches[-1])
        cold = timed_pass(runs, batches)
        warm = timed_pass(runs, random.Random(0).sample(batches, len(batches)))
        print(f"{method}: first loss {losses['none']:.4f} (float32) against {losses['bf16']:.4f} (bf16)")
        for name, times in (("cold", cold), ("warm", warm)):
            medians = {amp: statistics.median(values) * 1000 for amp, values in times.items()}
            print(
                f"  {name}: float32 {medians['none']:.1f} ms, bf16 {medians['bf16']:.1f} ms "
                f"(medians of {args.lengths} steps)"
            )
            print(f"float32_over_bf16_{name}_{method}: {medians['none'] / medians['bf16']:.2f}")


if __name__ == "__main__":
    main()
