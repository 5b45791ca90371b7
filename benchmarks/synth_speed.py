"""flite through its library against the ``flite`` program, side by side, on the tiny corpus's own requests.

    python benchmarks/synth_speed.py --utts 200

Takes the first ``--utts`` flite utterances of the ``tiny`` corpus plan (seed 1), synthesises each with
both paths in alternating order (program, library, library, program, ...), checks that the samples are
equal and prints the seconds of each and, last, ``program_over_library: X.XX``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from gradremedy.data.synth import augment, engines, noise
from gradremedy.data.synth.corpus import PRESETS, _request, plan_corpus


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--utts", type=int, default=200)
    args = parser.parse_args()
    inventory = engines.discover_engines()
    plan = plan_corpus(
        PRESETS["tiny"], 10800, 1, inventory, augment.resolve_disabled(()), noise.NOISE_TYPES, None
    )
    requests = [_request(s) for s in plan.utterances if s.speaker.engine == "flite"][: args.utts]
    engines.synth_flite(requests[0])  # load the library before timing
    seconds = {"program": 0.0, "library": 0.0}
    for i, request in enumerate(requests):
        order = ("program", "library") if i % 2 == 0 else ("library", "program")
        waves = {}
        for path in order:
            start = time.perf_counter()
            waves[path], _ = engines.synth_flite(request, in_process=path == "library")
            seconds[path] += time.perf_counter() - start
        if not np.array_equal(waves["program"], waves["library"]):
            raise SystemExit(f"{request.speaker.describe()} {request.text!r}: the samples differ")
    n = len(requests)
    for path, total in seconds.items():
        print(f"{path:>7}: {total:.2f} s for {n} utterances ({total / n * 1000:.1f} ms each)")
    print(f"program_over_library: {seconds['program'] / seconds['library']:.2f}")


if __name__ == "__main__":
    main()
