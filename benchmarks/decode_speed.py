"""Decoding speed on one CPU thread, the cached beam search against the uncached one: waveform -> enhancer ->
encoder -> joint CTC/attention beam search -> tokens, exactly what ``gradremedy eval`` and ``transcribe`` run.

    python benchmarks/decode_speed.py                          # one utterance, tiny config, random weights
    python benchmarks/decode_speed.py --config configs/paper_rats.yaml --beam 60
    python benchmarks/decode_speed.py --exp EXP                # a trained experiment (its config)
    python benchmarks/decode_speed.py --eval-set 600           # eval's decoding of a 600-utterance test set

Both searches (``cache=False``: the decoder re-runs every whole prefix; ``cache=True``: one token per step,
keys and values cached) run in alternating order, ``--repeats`` times each after a warm-up, on the same
input; the script checks that they return the same hypotheses and prints both times and their ratio.

One utterance (the default): RTF = decode time / audio duration, the median over the repeats. A model with
random weights seldom ends a hypothesis, so its hypotheses are forced to end after ``--tokens-per-second``
tokens per second of audio (the token rate of a trained model: the tiny corpus has about 2.5 words per
second, one BPE piece each). A trained experiment (``--exp``) is decoded with its own settings. The last line
is ``rtf: X.XXX`` (cached search).

``--eval-set N``: what ``gradremedy eval`` does to decode a test set of N utterances of 1.5-4 s (the tiny
corpus's lengths, drawn uniformly with ``--seed``), noise-like audio: utterances sorted by length, padded
batches of ``--batch`` (eval's 8), encode + search; the time to decode all of them with each search, and
the encoder's own share. The last line is ``eval_decode_speedup: X.XX`` (uncached / cached, fastest runs, CPU
time). Elapsed and CPU time are both printed: on a shared machine elapsed time includes waiting for a core.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from gradremedy.config import load_config
from gradremedy.decode.batch import decode_batch
from gradremedy.models import JointModel
from gradremedy.provenance import cpu_name
from gradremedy.train.checkpoint import load_model

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "tiny.yaml"
PATHS = {"uncached": False, "cached": True}


def speech_like(seconds: float, rate: int, seed: int) -> torch.Tensor:
    """A modulated harmonic complex plus noise: a stand-in for speech (the cost does not depend on it)."""
    generator = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * rate)) / rate
    voiced = sum(torch.sin(2 * torch.pi * 140 * k * t) / k for k in range(1, 10))
    envelope = 0.5 * (1 + torch.sin(2 * torch.pi * 3.0 * t))
    return 0.2 * envelope * voiced + 0.02 * torch.randn(len(t), generator=generator)


def encoder_frame_seconds(model: JointModel) -> float:
    """Seconds of audio per encoder frame (the frontend hop times the subsampling)."""
    rate = model.sample_rate
    with torch.no_grad():
        _, lengths = model.encode(torch.zeros(1, 10 * rate), torch.tensor([10 * rate]))
    return 10.0 / int(lengths[0])


def pad(waveforms: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([len(w) for w in waveforms])
    batch = torch.zeros(len(waveforms), int(lengths.max()))  # (B, T)
    for i, w in enumerate(waveforms):
        batch[i, : len(w)] = w
    return batch, lengths


def timed(fn):
    """``fn()``'s result, elapsed seconds and this process's CPU seconds."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def alternate(run, repeats: int) -> tuple[dict[str, dict[str, list[float]]], dict[str, object]]:
    """Time ``run(cache)`` for both searches in alternating order (ABBA...), after one warm-up each:
    ``times[name]["wall"]`` and ``times[name]["cpu"]``, seconds per run."""
    times = {name: {"wall": [], "cpu": []} for name in PATHS}
    outputs: dict[str, object] = {}
    for name, cache in PATHS.items():
        outputs[name] = run(cache)
    for i in range(repeats):
        order = list(PATHS.items()) if i % 2 == 0 else list(reversed(PATHS.items()))
        for name, cache in order:
            outputs[name], wall, cpu = timed(lambda cache=cache: run(cache))
            times[name]["wall"].append(wall)
            times[name]["cpu"].append(cpu)
    return times, outputs


def same_hypotheses(a: list[list], b: list[list]) -> bool:
    return [[h.tokens for h in hyps] for hyps in a] == [[h.tokens for h in hyps] for hyps in b]


def one_utterance(model, decode, args) -> None:
    waveform = speech_like(args.seconds, model.sample_rate, seed=args.seed)
    if args.exp is not None:
        ratio = decode.max_length_ratio
    else:  # forced to end at the token rate of a trained model
        ratio = args.tokens_per_second * encoder_frame_seconds(model)
    print(
        f"audio: {args.seconds:g} s at {model.sample_rate} Hz; beam {args.beam}, "
        f"CTC weight {args.ctc_weight}, length penalty {decode.length_penalty}, max length ratio {ratio:.3f}"
    )
    x, lengths = pad([waveform])

    settings = search_settings(args, decode, ratio)

    def run(cache: bool):
        return decode_batch(model, x, lengths, cache=cache, **settings)

    times, outputs = alternate(run, args.repeats)
    same = same_hypotheses(outputs["uncached"], outputs["cached"])
    tokens = len(outputs["cached"][0][0].tokens)
    median = {name: {clock: statistics.median(t) for clock, t in by.items()} for name, by in times.items()}
    for name in PATHS:
        wall, cpu = median[name]["wall"], median[name]["cpu"]
        rtf = wall / args.seconds
        print(f"{name}: {wall:.3f} s, CPU {cpu:.3f} s (medians of {args.repeats}), RTF {rtf:.3f}")
    ratios = {clock: median["uncached"][clock] / median["cached"][clock] for clock in ("wall", "cpu")}
    print(
        f"{tokens} tokens out; same hypotheses: {same}; uncached / cached: {ratios['wall']:.2f} "
        f"(CPU time: {ratios['cpu']:.2f})"
    )
    print(f"rtf: {median['cached']['wall'] / args.seconds:.3f}")


def search_settings(args, decode, max_length_ratio: float) -> dict:
    """The beam search's settings, the same for the cached and the uncached path."""
    return {
        "beam_size": args.beam,
        "ctc_weight": args.ctc_weight,
        "length_penalty": decode.length_penalty,
        "max_length_ratio": max_length_ratio,
    }


def eval_set(model, decode, args) -> None:
    generator = torch.Generator().manual_seed(args.seed)
    durations = sorted((1.5 + 2.5 * torch.rand(args.eval_set, generator=generator)).tolist())
    rate = model.sample_rate
    waveforms = [0.1 * torch.randn(int(d * rate), generator=generator) for d in durations]
    batches = [pad(waveforms[i : i + args.batch]) for i in range(0, len(waveforms), args.batch)]
    ratio = args.tokens_per_second * encoder_frame_seconds(model)
    print(
        f"test set: {args.eval_set} utterances of 1.5-4 s ({sum(durations):.0f} s of audio) at {rate} Hz, "
        f"batches of {args.batch}; beam {args.beam}, CTC weight {args.ctc_weight}, length penalty "
        f"{decode.length_penalty}, max length ratio {ratio:.3f} ({args.tokens_per_second:g} tokens/s)"
    )

    settings = search_settings(args, decode, ratio)

    def run(cache: bool):
        hyps = []
        for x, lengths in batches:
            hyps += decode_batch(model, x, lengths, cache=cache, **settings)
        return hyps

    def encode_only() -> None:
        with torch.no_grad():
            for x, lengths in batches:
                model.encode(x, lengths)

    times, outputs = alternate(run, args.repeats)
    encoder_runs = [timed(encode_only)[1:] for _ in range(2)]
    encoder = {"wall": min(r[0] for r in encoder_runs), "cpu": min(r[1] for r in encoder_runs)}
    same = same_hypotheses(outputs["uncached"], outputs["cached"])
    tokens = sum(len(hyps[0].tokens) for hyps in outputs["cached"])
    for name in PATHS:
        runs = zip(times[name]["wall"], times[name]["cpu"])
        print(f"{name}: " + ", ".join(f"{wall:.2f} s (CPU {cpu:.2f})" for wall, cpu in runs))
    for clock in ("wall", "cpu"):
        old, new = (min(times[name][clock]) for name in PATHS)
        print(
            f"fastest, {clock} time: uncached {old:.2f} s, cached {new:.2f} s; encoder alone (enhancer + "
            f"log-mel + Conformer) {encoder[clock]:.2f} s, so the search takes {old - encoder[clock]:.2f} s "
            f"uncached, {new - encoder[clock]:.2f} s cached"
        )
    print(f"{tokens} tokens out in all; same hypotheses for every utterance: {same}")
    best = {name: min(by["cpu"]) for name, by in times.items()}
    print(f"eval_decode_speedup: {best['uncached'] / best['cached']:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    parser.add_argument("--exp", type=Path, default=None, help="a trained experiment directory")
    parser.add_argument("--beam", type=int, default=None, help="default: the config's decode.beam_size")
    parser.add_argument("--ctc-weight", type=float, default=None, help="default: the config's")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tokens-per-second", type=float, default=4.0)
    parser.add_argument("--eval-set", type=int, default=0, help="decode a test set of this many utterances")
    parser.add_argument("--batch", type=int, default=8, help="utterances per batch with --eval-set")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)

    if args.exp is not None:
        model, _, config = load_model(args.exp, "average", "cpu")
        source = f"trained experiment {args.exp}"
    else:
        config = load_config(args.config)
        vocab_size = config.tokenizer.vocab_size + 2
        model = JointModel(config.model, vocab_size, use_enhancer=True).eval()
        source = f"{args.config.name}, random weights, vocab {vocab_size}"
    decode = config.decode
    args.beam = args.beam if args.beam is not None else decode.beam_size
    args.ctc_weight = args.ctc_weight if args.ctc_weight is not None else decode.ctc_weight
    print(f"model: {source}; {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters")
    print(f"machine: {cpu_name()}, torch {torch.__version__}, 1 thread; seed {args.seed}")
    if args.eval_set:
        eval_set(model, decode, args)
    else:
        one_utterance(model, decode, args)


if __name__ == "__main__":
    main()
