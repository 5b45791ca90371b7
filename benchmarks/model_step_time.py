"""Time one training step (forward + backward) of the joint model on random audio and print the
parameter count of each part.

    python benchmarks/model_step_time.py configs/tiny.yaml --batch 16 --seconds 3 --steps 10
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from gradremedy.config import load_config
from gradremedy.models import JointModel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="section.key=value")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=3.0, help="longest utterance; others 50-100%% of it")
    parser.add_argument("--tokens", type=int, default=12, help="tokens per utterance")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    config = load_config(args.config, args.overrides)
    device = torch.device(args.device)
    model = JointModel(config.model, config.tokenizer.vocab_size).to(device).train()
    counts = model.parameter_counts()
    print("parameters: " + ", ".join(f"{name} {count / 1e6:.3f}M" for name, count in counts.items()))

    longest = int(args.seconds * config.model.sample_rate)
    lens = torch.linspace(longest // 2, longest, args.batch).long().to(device)
    noisy = torch.randn(args.batch, longest, device=device) * 0.1
    clean = noisy * 0.5
    tokens = torch.randint(1, config.tokenizer.vocab_size - 1, (args.batch, args.tokens), device=device)
    token_lens = torch.full((args.batch,), args.tokens, device=device)
    has_clean = torch.ones(args.batch, dtype=torch.bool, device=device)

    times, cpu_times = [], []
    for step in range(args.steps + 2):  # two warm-up steps
        start, cpu_start = time.perf_counter(), time.process_time()
        model.zero_grad(set_to_none=True)
        losses = model(noisy, lens, tokens, token_lens, clean, has_clean)
        losses["loss"].backward()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if step >= 2:
            times.append(time.perf_counter() - start)
            cpu_times.append(time.process_time() - cpu_start)
    print(
        f"step (forward+backward), batch {args.batch} x <= {args.seconds:.1f} s, "
        f"{torch.get_num_threads()} threads: "
        f"wall median {statistics.median(times):.3f} s (min {min(times):.3f} s), "
        f"CPU time median {statistics.median(cpu_times):.3f} s over {len(times)} steps"
    )
    # On a shared machine wall time mostly measures the other jobs; CPU time (all threads of this process)
    # divided by the thread count bounds the wall time of an idle machine from below.


if __name__ == "__main__":
    main()
