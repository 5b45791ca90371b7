"""Training-step time of ``sum`` and ``gr`` side by side: forward + both backward passes + combination +
clip + optimizer step, exactly the code ``gradremedy train`` runs per step.

    python benchmarks/step_speed.py --config configs/tiny.yaml
    python benchmarks/step_speed.py --config configs/paper_rats.yaml --device cuda --batch 16

Both methods start from the same initial weights and see the same batches (random waveforms and
tokens of the configured batch size); steps alternate between the methods (the order flips every step,
so a machine shared with other work slows both alike); warm-up steps are excluded; the figures are
medians. On CUDA each step is synchronised and the peak memory of each method's steps is reported.
The last line is ``gr_over_sum: X.XX`` (median gr step / median sum step).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from types import SimpleNamespace

import torch

from gradremedy.config import load_config
from gradremedy.data.batching import Batch
from gradremedy.train import loop


def random_batches(cfg, vocab_size: int, count: int, batch: int, seconds: float, tokens_per_second: float):
    """``count`` batches of noisy/clean waveforms (50-100 % of ``seconds`` long) and random tokens."""
    generator = torch.Generator().manual_seed(0)
    longest = int(seconds * cfg.model.sample_rate)
    batches = []
    for _ in range(count):
        noisy_lens = torch.randint(longest // 2, longest + 1, (batch,), generator=generator)
        noisy_lens[0] = longest
        clean = 0.1 * torch.randn(batch, longest, generator=generator)
        noisy = clean + 0.05 * torch.randn(batch, longest, generator=generator)
        for row, length in enumerate(noisy_lens.tolist()):
            noisy[row, length:] = 0
            clean[row, length:] = 0
        token_lens = (noisy_lens.float() / cfg.model.sample_rate * tokens_per_second).long().clamp(min=1)
        tokens = torch.randint(1, vocab_size - 1, (batch, int(token_lens.max())), generator=generator)
        for row, length in enumerate(token_lens.tolist()):
            tokens[row, length:] = -1
        ids = [f"utt{i}" for i in range(batch)]
        all_true = torch.ones(batch, dtype=torch.bool)  # every utterance has a reference and a text
        batches.append(Batch(ids, noisy, noisy_lens, clean, all_true, tokens, token_lens, all_true))
    return batches


def timed_step(run: loop.TrainingRun, micro_batches: list[Batch]) -> tuple[float, int]:
    """Seconds of one optimizer step (``accum_grad`` micro-batches) and its peak CUDA memory (bytes)."""
    cuda = run.device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for batch in micro_batches:
        loop.forward_backward(run, batch, len(micro_batches))
    loop.optimizer_step(run)
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return seconds, torch.cuda.max_memory_allocated() if cuda else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--batch", type=int, default=None, help="utterances per micro-batch (default: config)"
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="longest utterance of a batch")
    parser.add_argument("--tokens-per-second", type=float, default=3.0)
    parser.add_argument("--steps", type=int, default=10, help="measured steps per method")
    parser.add_argument("--warmup", type=int, default=3, help="unmeasured steps per method")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    cfg = load_config(args.config, args.overrides)
    device = loop.resolve_device(args.device)
    vocab_size = cfg.tokenizer.vocab_size + 2  # blank and sos/eos around the pieces
    tokenizer = SimpleNamespace(vocab_size=vocab_size)  # the step needs only the output size
    runs = {}
    for method in ("sum", "gr"):
        method_cfg = copy.deepcopy(cfg)
        method_cfg.surgery.method = method
        torch.manual_seed(cfg.train.seed)  # same initial weights for both
        runs[method] = loop.build_run(method_cfg, tokenizer, device, rank=0, world_size=1)
    runs["gr"].model.load_state_dict(runs["sum"].model.state_dict())

    batch = args.batch or cfg.data.batch_size
    accum = cfg.train.accum_grad
    total = args.warmup + args.steps
    batches = random_batches(cfg, vocab_size, accum, batch, args.seconds, args.tokens_per_second)
    batches = [b.to(device) for b in batches]
    times: dict[str, list[float]] = {"sum": [], "gr": []}
    peaks: dict[str, int] = {"sum": 0, "gr": 0}
    for step in range(total):
        order = ("sum", "gr") if step % 2 == 0 else ("gr", "sum")
        for method in order:
            seconds, peak = timed_step(runs[method], batches)
            if step >= args.warmup:
                times[method].append(seconds)
                peaks[method] = max(peaks[method], peak)

    params = sum(p.numel() for p in runs["sum"].model.parameters())
    shared = sum(p.numel() for p in runs["sum"].model.shared_parameters())
    print(
        f"config {args.config}, device {device}, {torch.get_num_threads()} threads, "
        f"{params / 1e6:.2f}M parameters ({shared / 1e6:.2f}M shared), "
        f"batch {batch} x {accum} micro-batch(es) of <= {args.seconds:g} s, "
        f"{runs['sum'].precision} (train.amp)"
    )
    for method in ("sum", "gr"):
        line = (
            f"{method:>4}: median {statistics.median(times[method]) * 1000:.1f} ms/step, "
            f"min {min(times[method]) * 1000:.1f} ms over {len(times[method])} steps"
        )
        if device.type == "cuda":
            line += f", peak memory {peaks[method] / 2**20:.0f} MiB"
        print(line)
    ratio = statistics.median(times["gr"]) / statistics.median(times["sum"])
    print(f"gr_over_sum: {ratio:.2f}")


if __name__ == "__main__":
    main()
