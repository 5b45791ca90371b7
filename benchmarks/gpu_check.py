"""GPU check of the training step: step time of each method, peak memory, utterances per second, and
no host synchronisation inside the gradient surgery.

    python benchmarks/gpu_check.py --config configs/paper_chime4.yaml --data DATA --steps 200 --amp bf16
    python benchmarks/gpu_check.py --config configs/paper_chime4.yaml --steps 50     # random batches

Runs exactly the training loop's step (``loop.forward_backward`` per micro-batch, ``loop.optimizer_step``)
on batches of ``DATA/train`` (the ``read`` preset, say) or, without ``--data``, on random batches of
``--batch`` utterances of 3-6 s. Each method starts from the same weights and sees the same batches;
warm-up steps are not measured; every measured step is synchronised. The methods run twice, in the
order A B B A (``--steps`` / 2 measured steps each time), so that a drift in the card's speed over the
run (clocks, the allocator, cuDNN's choices) falls on every method alike; ``--rounds 1`` runs A B once
(for ``--compile``, where every run compiles its model again: ``warmup_seconds`` says for how long).
Around one measured step's ``engine.combine()`` (reduction, surgery, combination),
``torch.cuda.set_sync_debug_mode("error")`` turns any host synchronisation into an error, which is
reported (and makes the exit status 1).
Prints one line per method and, with ``--json``, writes the figures there.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import torch

from gradremedy.config import load_config
from gradremedy.data.batching import Batch
from gradremedy.provenance import git_commit, machine_info
from gradremedy.train import loop


def random_batches(sample_rate: int, vocab_size: int, count: int, batch: int) -> list[Batch]:
    """``count`` batches of ``batch`` random utterances of 3-6 s with ~3 tokens per second."""
    generator = torch.Generator().manual_seed(0)
    batches = []
    for index in range(count):
        lens = torch.randint(3 * sample_rate, 6 * sample_rate + 1, (batch,), generator=generator)
        longest = int(lens.max())
        clean = 0.1 * torch.randn(batch, longest, generator=generator)
        noisy = clean + 0.05 * torch.randn(batch, longest, generator=generator)
        mask = torch.arange(longest)[None, :] < lens[:, None]  # (B, T)
        clean, noisy = clean * mask, noisy * mask
        token_lens = (lens // sample_rate * 3).clamp(min=1)
        tokens = torch.randint(1, vocab_size - 1, (batch, int(token_lens.max())), generator=generator)
        tokens = torch.where(torch.arange(tokens.shape[1])[None, :] < token_lens[:, None], tokens, -1)
        ids = [f"utt{index}_{i}" for i in range(batch)]
        all_true = torch.ones(batch, dtype=torch.bool)  # every utterance has a reference and a text
        batches.append(Batch(ids, noisy, lens, clean, all_true, tokens, token_lens, all_true))
    return batches


def corpus_batches(cfg, data_dir: Path, count: int) -> tuple[list[Batch], int]:
    """The first ``count`` training batches of ``data_dir`` (loaded once) and the tokenizer's size."""
    from gradremedy.data.tokenizer import Tokenizer

    data = loop.load_data(data_dir, cfg)
    tokenizer_dir = Path(tempfile.mkdtemp()) / "tokenizer"
    tokenizer = Tokenizer.train(
        data.train_texts, kind=cfg.tokenizer.kind, vocab_size=cfg.tokenizer.vocab_size, out_dir=tokenizer_dir
    )
    run = SimpleNamespace(cfg=cfg, tokenizer=tokenizer, rank=0, world_size=1)
    loader, _ = loop.make_loader_for(data.train_dir, run, train=True)
    batches = []
    while len(batches) < count:
        for batch in loader:
            batches.append(batch)
            if len(batches) == count:
                break
    return batches, tokenizer.vocab_size


def check_no_host_sync(run: loop.TrainingRun) -> str:
    """Run the next ``engine.combine()`` with host syncs turned into errors; '' if none happened."""
    original = run.engine.combine
    outcome = {"error": "combine was not called"}

    def guarded():
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            result = original()
            outcome["error"] = ""
            return result
        except RuntimeError as err:
            outcome["error"] = str(err).splitlines()[0]
            raise
        finally:
            torch.cuda.set_sync_debug_mode(0)
            run.engine.combine = original

    run.engine.combine = guarded
    return outcome


def measure(cfg, method: str, vocab_size: int, batches: list[Batch], warmup: int, device) -> dict:
    method_cfg = replace(cfg, surgery=replace(cfg.surgery, method=method))
    # A finished run's model, optimizer and gradient buffers sit in reference cycles: collect them, or
    # the next run's peak includes them (seen on an H100: +1.55 GiB per earlier run, whatever the method).
    gc.collect()
    torch.cuda.empty_cache()
    already_allocated = torch.cuda.memory_allocated(device)  # the pinned batches are on the host
    torch.manual_seed(cfg.train.seed)
    run = loop.build_run(method_cfg, SimpleNamespace(vocab_size=vocab_size), device, rank=0, world_size=1)
    run.model.train()
    accum = cfg.train.accum_grad
    steps = len(batches) // accum
    times, utterances, sync, warmup_seconds = [], 0, {"error": "not checked"}, 0.0
    for step in range(steps):
        micro = [b.to(device, non_blocking=True) for b in batches[step * accum : (step + 1) * accum]]
        if step == warmup:
            torch.cuda.reset_peak_memory_stats(device)
            sync = check_no_host_sync(run)
        torch.cuda.synchronize(device)
        start = time.perf_counter()
        for batch in micro:
            loop.forward_backward(run, batch, accum)
        try:
            loop.optimizer_step(run)
        except RuntimeError:
            if sync.get("error"):
                return {"method": method, "error": f"host sync in the surgery: {sync['error']}"}
            raise
        torch.cuda.synchronize(device)
        if step >= warmup:
            times.append(time.perf_counter() - start)
            utterances += sum(len(b) for b in micro)
        else:
            warmup_seconds += time.perf_counter() - start  # with train.compile: mostly compiling
    return {
        "method": method,
        "times": times,
        "utterances": utterances,
        "steps": len(times),
        "warmup_seconds": warmup_seconds,
        "step_seconds_median": statistics.median(times),
        "step_seconds_mean": statistics.fmean(times),
        "utterances_per_second": utterances / sum(times),
        "peak_memory_gib": (torch.cuda.max_memory_allocated(device) - already_allocated) / 2**30,
        "host_sync_in_surgery": sync["error"] or "none",
        "skipped_steps": run.progress.skipped_steps,
        "parameters": sum(p.numel() for p in run.model.parameters()),
        "shared_parameters": sum(p.numel() for p in run.model.shared_parameters()),
    }


def pooled(measured: list[dict]) -> dict:
    """One method's runs as one result: step times pooled, the worst memory and sync outcome."""
    errors = [r["error"] for r in measured if "error" in r]
    if errors:
        return {"method": measured[0]["method"], "error": errors[0]}
    times = [t for r in measured for t in r["times"]]
    syncs = sorted({r["host_sync_in_surgery"] for r in measured} - {"none"})
    return {
        "method": measured[0]["method"],
        "runs": len(measured),
        "steps": len(times),
        "step_seconds_median": statistics.median(times),
        "step_seconds_mean": statistics.fmean(times),
        "step_seconds_median_per_run": [statistics.median(r["times"]) for r in measured],
        "warmup_seconds_per_run": [r["warmup_seconds"] for r in measured],
        "utterances_per_second": sum(r["utterances"] for r in measured) / sum(times),
        "peak_memory_gib": max(r["peak_memory_gib"] for r in measured),
        "host_sync_in_surgery": syncs[0] if syncs else "none",
        "skipped_steps": sum(r["skipped_steps"] for r in measured),
        "parameters": measured[0]["parameters"],
        "shared_parameters": measured[0]["shared_parameters"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--data", type=Path, default=None, help="folder with train/ and valid/")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--methods", nargs="+", default=["sum", "gr"])
    parser.add_argument("--steps", type=int, default=200, help="measured steps per method, over its runs")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument(
        "--rounds", type=int, choices=(1, 2), default=2, help="2: methods in the order A B B A; 1: A B"
    )
    parser.add_argument("--batch", type=int, default=16, help="utterances per random batch (no --data)")
    parser.add_argument("--amp", default=None, help="none | bf16 | fp16 (default: the config's)")
    parser.add_argument("--compile", action="store_true", help="train.compile=true")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--device", default="cuda", help="cuda or cuda:N")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to check", file=sys.stderr)
        return 2
    overrides = list(args.overrides)
    if args.amp is not None:
        overrides.append(f"train.amp={args.amp}")
    if args.compile:
        overrides.append("train.compile=true")
    cfg = load_config(args.config, overrides)
    device = torch.device(args.device)
    count = (args.steps + args.warmup) * cfg.train.accum_grad
    if args.data is not None:
        batches, vocab_size = corpus_batches(cfg, args.data, count)
    else:
        vocab_size = cfg.tokenizer.vocab_size
        batches = random_batches(cfg.model.sample_rate, vocab_size, count, args.batch)
    batches = [b.pin_memory() for b in batches]
    print(
        f"{torch.cuda.get_device_name(device)}; {args.config}; amp {cfg.train.amp}; compile {args.compile}; "
        f"accum {cfg.train.accum_grad}; {count} micro-batches of {'corpus' if args.data else 'random'} audio"
    )
    per_run = (args.warmup + args.steps // args.rounds) * cfg.train.accum_grad
    order = [*args.methods, *reversed(args.methods)][: len(args.methods) * args.rounds]  # A B (B A)
    runs: dict[str, list[dict]] = {method: [] for method in args.methods}
    for method in order:
        result = measure(cfg, method, vocab_size, batches[:per_run], args.warmup, device)
        runs[method].append(result)
        print(json.dumps({k: v for k, v in result.items() if k != "times"}))
    results, failed = [], False
    for measured in runs.values():
        result = pooled(measured)
        results.append(result)
        failed |= "error" in result or result["host_sync_in_surgery"] != "none"
        print(json.dumps(result))
    by_method = {r["method"]: r for r in results if "error" not in r}
    if "sum" in by_method and "gr" in by_method:
        ratio = by_method["gr"]["step_seconds_median"] / by_method["sum"]["step_seconds_median"]
        print(f"gr_over_sum: {ratio:.3f}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        produced_by = {
            "command": " ".join(["python", *sys.argv]),
            "commit": git_commit(),
            "seed": cfg.train.seed,
            "machine": machine_info()["summary"],
        }
        figures = {"config": args.config, "amp": cfg.train.amp, "results": results}
        args.json.write_text(json.dumps({"produced_by": produced_by, **figures}, indent=1))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
