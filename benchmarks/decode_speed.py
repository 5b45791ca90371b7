"""Real-time factor of decoding on one CPU thread: waveform -> enhancer -> encoder -> joint CTC/attention
beam search -> text, exactly what ``gradremedy eval`` and ``transcribe`` run per utterance.

    python benchmarks/decode_speed.py                          # the tiny config, random weights
    python benchmarks/decode_speed.py --exp EXP                # a trained experiment (its config)
    python benchmarks/decode_speed.py --beam 10 --seconds 4 --repeats 5

RTF = decode time / audio duration (one utterance at a time, after one warm-up decode; the median over
``--repeats``). The number of decoding steps, not the weights, sets the cost of the search: a model with
random weights seldom ends a hypothesis, so it is decoded twice: with hypotheses forced to end after
``--tokens-per-second`` tokens per second of audio (the token rate of a trained model: the tiny corpus has
about 2.5 words per second, one BPE piece each), and, for the worst case, up to one token per encoder
frame. A trained experiment (``--exp``) is decoded with its own settings. The last line is ``rtf: X.XXX``
(the token-rate figure for random weights, the trained model's figure with ``--exp``).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import torch

from gradremedy.config import load_config
from gradremedy.decode.beam_search import beam_search
from gradremedy.models import JointModel
from gradremedy.train.checkpoint import load_model

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "tiny.yaml"


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def speech_like(seconds: float, rate: int, seed: int) -> torch.Tensor:
    """A modulated harmonic complex plus noise: a stand-in for speech (the cost does not depend on it)."""
    generator = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * rate)) / rate
    voiced = sum(torch.sin(2 * torch.pi * 140 * k * t) / k for k in range(1, 10))
    envelope = 0.5 * (1 + torch.sin(2 * torch.pi * 3.0 * t))
    return 0.2 * envelope * voiced + 0.02 * torch.randn(len(t), generator=generator)


@torch.no_grad()
def time_decode(
    model,
    waveform: torch.Tensor,
    beam: int,
    ctc_weight: float,
    length_penalty: float,
    max_length_ratio: float | None,
    max_tokens: int | None,
    repeats: int,
) -> tuple[float, int]:
    """Median seconds to decode ``waveform`` (encoding included) and the length of the best output."""
    lengths = torch.tensor([waveform.shape[0]])
    times, tokens = [], 0
    for i in range(repeats + 1):  # the first run warms up
        start = time.perf_counter()
        enc, enc_lens = model.encode(waveform[None], lengths)
        ratio = max_length_ratio if max_length_ratio is not None else max_tokens / int(enc_lens[0])
        hyps = beam_search(
            model,
            enc,
            enc_lens,
            beam_size=beam,
            ctc_weight=ctc_weight,
            length_penalty=length_penalty,
            max_length_ratio=ratio,
        )
        if i:
            times.append(time.perf_counter() - start)
        tokens = len(hyps[0][0].tokens)
    return statistics.median(times), tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    parser.add_argument("--exp", type=Path, default=None, help="a trained experiment directory")
    parser.add_argument("--beam", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tokens-per-second", type=float, default=4.0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)

    if args.exp is not None:
        model, _, config = load_model(args.exp, "average", "cpu")
        source = f"trained experiment {args.exp}"
    else:
        config = load_config(args.config)
        vocab_size = min(config.tokenizer.vocab_size, 128) + 2
        model = JointModel(config.model, vocab_size, use_enhancer=True).eval()
        source = f"{args.config.name}, random weights, vocab {vocab_size}"
    decode = config.decode
    waveform = speech_like(args.seconds, model.sample_rate, seed=0)
    print(f"model: {source}; {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters")
    print(f"machine: {cpu_name()}, torch {torch.__version__}, 1 thread")
    print(
        f"audio: {args.seconds:g} s at {model.sample_rate} Hz; beam {args.beam}, CTC weight "
        f"{decode.ctc_weight}, length penalty {decode.length_penalty}"
    )

    if args.exp is not None:
        seconds, tokens = time_decode(
            model,
            waveform,
            args.beam,
            decode.ctc_weight,
            decode.length_penalty,
            decode.max_length_ratio,
            None,
            args.repeats,
        )
        rtf = seconds / args.seconds
        print(f"trained model: {seconds:.3f} s, {tokens} tokens out, RTF {rtf:.3f}")
    else:
        max_tokens = max(1, round(args.tokens_per_second * args.seconds))
        worst, worst_tokens = time_decode(
            model, waveform, args.beam, decode.ctc_weight, decode.length_penalty, 1.0, None, args.repeats
        )
        seconds, tokens = time_decode(
            model,
            waveform,
            args.beam,
            decode.ctc_weight,
            decode.length_penalty,
            None,
            max_tokens,
            args.repeats,
        )
        print(
            f"worst case (up to one token per encoder frame): {worst:.3f} s, {worst_tokens} tokens, "
            f"RTF {worst / args.seconds:.3f}"
        )
        print(
            f"{args.tokens_per_second:g} tokens per second: {seconds:.3f} s, {tokens} tokens, "
            f"RTF {seconds / args.seconds:.3f}"
        )
        rtf = seconds / args.seconds
    print(f"rtf: {rtf:.3f}")


if __name__ == "__main__":
    main()
