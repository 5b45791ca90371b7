"""Speed of Gradient Remedy: the literal per-tensor loop against the vectorised closed form.

Two sets of shared-parameter shapes, random gradients:

* ``paper``: the paper-size SE front end, nn.LSTM(257, 896, 3, bidirectional=True) + Linear(1792, 257)
  (about 47M parameters in 26 tensors);
* ``many``: a 42-layer Transformer encoder, d 144 (504 tensors, about 10M parameters).

For each it times (median of ``--repeats`` after a warm-up):

* ``loop``: ``reference.gradient_remedy_loop`` on the per-tensor gradients (the authors' structure);
* ``engine``: what GradientEngine does per step on its flat buffers: reduce + coefficients + combine;
* ``functional``: ``gradient_remedy(main, aux)`` on lists: per-tensor reductions (no packing), one combine
  per tensor into newly allocated results (what a caller of the functional form gets);
* ``copy``: a plain copy of both gradients into a preallocated buffer, and ``clone`` (which allocates):
  the memory-bound limit. The engine step reads both gradients twice and writes once (5 x 4 bytes per
  parameter); its achieved GB/s is compared with the copy's.

The last two lines are ``speedup_vs_loop: X.XX`` (loop time / engine time, the smaller of the two cases)
and ``functional_speedup_vs_loop: X.XX``: loop time / functional time at paper size, the two timed side by
side (alternating calls, medians), so that a machine shared with other work slows both alike.

    .venv/bin/python benchmarks/surgery_speed.py [--device cuda] [--repeats 7] [--threads 2]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from gradremedy.surgery import FlatLayout, GradientRemedy, gradient_remedy
from gradremedy.surgery.grouping import group_ids_for
from gradremedy.surgery.reference import gradient_remedy_loop


def paper_shapes() -> list[torch.Size]:
    with torch.device("meta"):
        modules = [nn.LSTM(257, 896, 3, bidirectional=True), nn.Linear(1792, 257)]
    return [p.shape for m in modules for p in m.parameters()]


def many_shapes() -> list[torch.Size]:
    with torch.device("meta"):
        layer = nn.TransformerEncoderLayer(144, 4, 576)
        encoder = nn.TransformerEncoder(layer, num_layers=42, enable_nested_tensor=False)
    return [p.shape for p in encoder.parameters()]


def timed(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    """Median wall time in seconds (after one warm-up call)."""

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def side_by_side(
    first: Callable[[], object], second: Callable[[], object], repeats: int, device: torch.device
) -> tuple[float, float]:
    """Median wall times in seconds of two functions called alternately (after one warm-up call each)."""
    times: tuple[list[float], list[float]] = ([], [])
    for index in range(-1, repeats):
        for fn, bucket in ((first, times[0]), (second, times[1])):
            start = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if index >= 0:
                bucket.append(time.perf_counter() - start)
    return statistics.median(times[0]), statistics.median(times[1])


def run_case(name: str, shapes: list[torch.Size], device: torch.device, repeats: int) -> tuple[float, float]:
    numel = sum(math.prod(s) for s in shapes)
    generator = torch.Generator(device=device).manual_seed(0)
    main = [torch.randn(s, generator=generator, device=device) for s in shapes]
    # Mix conflicting and dominant aux gradients so that every branch of the rule runs.
    aux = [
        (3.0 * (i % 4) - 4.0) * a + torch.randn(s, generator=generator, device=device)
        for i, (a, s) in enumerate(zip(main, shapes))
    ]
    method = GradientRemedy(K=5.0)
    layout = FlatLayout(shapes, group_ids_for(shapes, "tensor", None), device)
    buffer = layout.new_buffer(2)
    for row, grads in ((0, aux), (1, main)):
        for view, grad in zip(layout.views(buffer[row]), grads):
            view.copy_(grad)
    out = torch.empty(layout.padded, device=device)
    copy_target = torch.empty_like(buffer)

    def engine_step() -> None:
        A, B, _ = method.coefficients(layout.reduce(buffer))
        layout.combine(buffer, A, B, out)

    def reduce_only() -> None:
        method.coefficients(layout.reduce(buffer))

    loop_time, functional_time = side_by_side(
        lambda: gradient_remedy_loop(main, aux), lambda: gradient_remedy(main, aux), repeats, device
    )
    results = {
        "loop": loop_time,
        "engine": timed(engine_step, repeats, device),
        "engine_reduce": timed(reduce_only, repeats, device),
        "functional": functional_time,
        "copy": timed(lambda: copy_target.copy_(buffer), repeats, device),
        "clone": timed(lambda: buffer.clone(), repeats, device),
    }
    # Check the fast path against the loop before reporting its speed. The loop runs in float64 here:
    # in float32 its own error (~1e-4 relative on 6M-element tensors) exceeds the fast path's (~1e-7).
    exact = gradient_remedy_loop([t.double() for t in main], [t.double() for t in aux])
    for fast, slow in zip(layout.views(out), exact):
        torch.testing.assert_close(fast.double(), slow, rtol=1e-5, atol=1e-6 * float(slow.abs().max()))
    for fast, slow in zip(gradient_remedy(main, aux), exact):
        torch.testing.assert_close(fast.double(), slow, rtol=1e-5, atol=1e-6 * float(slow.abs().max()))
    del exact

    engine_bytes = 5 * numel * 4  # read s and a twice, write the result once
    copy_bytes = 4 * numel * 4  # read s and a, write both
    engine_gbs = engine_bytes / results["engine"] / 1e9
    copy_gbs = copy_bytes / results["copy"] / 1e9
    speedup = results["loop"] / results["engine"]
    print(
        f"[{name}] {len(shapes)} tensors, {numel / 1e6:.1f}M parameters, padded to {layout.padded / 1e6:.1f}M"
    )
    for key, seconds in results.items():
        print(f"  {key:14s} {seconds * 1e3:9.1f} ms")
    print(f"  engine throughput {engine_gbs:6.1f} GB/s (5 x 4 B per parameter)")
    print(f"  copy throughput   {copy_gbs:6.1f} GB/s (4 x 4 B per parameter)")
    print(f"  engine / copy throughput {engine_gbs / copy_gbs:.2f}")
    print(f"  limit (engine bytes at copy speed) {engine_bytes / copy_gbs / 1e9 * 1e3:.1f} ms")
    functional_speedup = results["loop"] / results["functional"]
    print(f"  speedup vs loop: engine {speedup:.2f}x, functional {functional_speedup:.2f}x")
    return speedup, functional_speedup


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}")
    paper = run_case("paper", paper_shapes(), device, args.repeats)
    many = run_case("many", many_shapes(), device, args.repeats)
    print(f"speedup_vs_loop: {min(paper[0], many[0]):.2f}")
    print(f"functional_speedup_vs_loop: {paper[1]:.2f}")


if __name__ == "__main__":
    main()
