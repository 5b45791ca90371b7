"""Training-loader time per batch with the audio cache off and on, side by side, epoch by epoch.

    python benchmarks/loader_speed.py --data /work/demo-v9/data/train --tokenizer /work/demo-v9/gr/tokenizer \
        --config configs/tiny.yaml

Two training loaders over the same directory, with the config's data section (dynamic mixing included)
and the same seed, one with ``data.audio_cache_mb: 0`` and one with ``--cache-mb`` (default: the config's
value): they yield the same batches, which is checked for every batch. Batches alternate between the two
(the order flips every batch, so a machine shared with other work slows both alike); the figures are
medians of the CPU time (``time.process_time``) and of the wall time per batch, for each epoch
separately. The cache's size and the process's resident memory (VmRSS) are printed after each epoch.
The last line is ``uncached_over_cached: X.XX`` (median CPU ms per batch of the last epoch).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import torch

from gradremedy.config import load_config
from gradremedy.data.batching import make_loader
from gradremedy.data.tokenizer import Tokenizer


def rss_mib() -> float:
    """Resident memory of this process (VmRSS), MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def same(a, b) -> bool:
    return a.ids == b.ids and all(
        torch.equal(getattr(a, name), getattr(b, name))
        for name in ("noisy", "noisy_lens", "clean", "has_clean", "tokens", "token_lens", "has_text")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="training data directory")
    parser.add_argument("--tokenizer", required=True, help="a saved tokenizer directory")
    parser.add_argument("--config", default="configs/tiny.yaml")
    parser.add_argument("--cache-mb", type=int, default=None, help="cap of the cached loader (MiB)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batches", type=int, default=0, help="batches per epoch (0: all)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cfg = load_config(args.config)
    cap = cfg.data.audio_cache_mb if args.cache_mb is None else args.cache_mb
    tokenizer = Tokenizer.load(args.tokenizer)
    rate = cfg.model.sample_rate
    loaders = {}
    for name, mb in (("uncached", 0), ("cached", cap)):
        data = dataclasses.replace(cfg.data, audio_cache_mb=mb)
        loaders[name] = make_loader(
            args.data, tokenizer, data, rate, seed=args.seed, shuffle=True, train=True
        )
    cache = loaders["cached"][0].dataset.audio_cache
    print(
        f"data {args.data}, config {args.config} (dynamic_mixing {cfg.data.dynamic_mixing}, batch_size "
        f"{cfg.data.batch_size}), cache cap {cap} MiB, seed {args.seed}, {len(loaders['cached'][1])} "
        f"batches per epoch; RSS at start {rss_mib():.0f} MiB"
    )
    ratio = float("nan")
    for epoch in range(args.epochs):
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in loaders}
        iterators = {}
        for name, (loader, sampler) in loaders.items():
            sampler.set_epoch(epoch)
            iterators[name] = iter(loader)
        count = len(loaders["cached"][1]) if args.batches <= 0 else args.batches
        for step in range(count):
            order = list(loaders) if step % 2 == 0 else list(reversed(loaders))
            got = {}
            for name in order:
                cpu, wall = time.process_time(), time.perf_counter()
                got[name] = next(iterators[name])
                times[name].append((time.process_time() - cpu, time.perf_counter() - wall))
            if not same(got["uncached"], got["cached"]):
                raise SystemExit(f"epoch {epoch + 1}, batch {step}: the cached loader's batch differs")
        medians = {}
        for name in loaders:
            cpu = statistics.median(t[0] for t in times[name]) * 1e3
            wall = statistics.median(t[1] for t in times[name]) * 1e3
            medians[name] = cpu
            print(f"epoch {epoch + 1} {name:9s}: {cpu:6.2f} ms CPU, {wall:6.2f} ms wall per batch (median)")
        print(
            f"epoch {epoch + 1}: {count} batch(es) identical; cache holds {len(cache)} file(s), "
            f"{cache.used_bytes / 2**20:.0f} MiB ({cache.declined} load(s) past the cap); "
            f"RSS {rss_mib():.0f} MiB"
        )
        ratio = medians["uncached"] / medians["cached"]
    print(f"uncached_over_cached: {ratio:.2f}")


if __name__ == "__main__":
    main()
