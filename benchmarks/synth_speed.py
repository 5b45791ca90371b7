"""The engines' programs against their in-process paths, side by side, on the tiny corpus's own requests.

    python benchmarks/synth_speed.py --utts 200

For flite (library in this process) and espeak-ng (fork-per-utterance server), takes ``--utts``
utterances of that engine spread over the ``tiny`` corpus plan (seed 1), synthesises each with both
paths in alternating order (program, fast path, fast path, program, ...), checks that the samples are
equal and prints the seconds of each. The last lines are ``flite_program_over_library: X.XX`` and
``espeak_program_over_server: X.XX``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from gradremedy.data.synth import augment, engines, noise
from gradremedy.data.synth.corpus import PRESETS, _request, plan_corpus

PATHS = {"flite": (engines.synth_flite, "library"), "espeak": (engines.synth_espeak, "server")}


def compare(engine: str, requests: list[engines.SynthRequest]) -> float:
    """Seconds of the program over seconds of the fast path, after checking every pair of outputs."""
    synth, fast = PATHS[engine]
    synth(requests[0])  # load the library or start the server before timing
    seconds = {"program": 0.0, fast: 0.0}
    for i, request in enumerate(requests):
        order = ("program", fast) if i % 2 == 0 else (fast, "program")
        waves = {}
        for path in order:
            start = time.perf_counter()
            waves[path], _ = synth(request, in_process=path == fast)
            seconds[path] += time.perf_counter() - start
        if not np.array_equal(waves["program"], waves[fast]):
            raise SystemExit(f"{request.speaker.describe()} {request.text!r}: the samples differ")
    n = len(requests)
    for path, total in seconds.items():
        print(f"{engine} {path:>7}: {total:.2f} s for {n} utterances ({total / n * 1000:.1f} ms each)")
    return seconds["program"] / seconds[fast]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--utts", type=int, default=200)
    args = parser.parse_args()
    inventory = engines.discover_engines()
    plan = plan_corpus(
        PRESETS["tiny"], 10800, 1, inventory, augment.resolve_disabled(()), noise.NOISE_TYPES, None
    )
    ratios = {}
    for engine in PATHS:
        specs = [s for s in plan.utterances if s.speaker.engine == engine]
        step = max(1, len(specs) // args.utts)
        ratios[engine] = compare(engine, [_request(s) for s in specs[::step][: args.utts]])
    print(f"flite_program_over_library: {ratios['flite']:.2f}")
    print(f"espeak_program_over_server: {ratios['espeak']:.2f}")


if __name__ == "__main__":
    main()
