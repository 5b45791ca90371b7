"""Greedy decoding: best CTC label per frame (collapsed), and step-by-step argmax of the attention decoder.

Both work on a batch of encoder outputs. They are quick checks (validation, debugging, the beam search's
reference in tests); evaluation uses :func:`gradremedy.decode.beam_search.beam_search`.
"""

from __future__ import annotations

import math

import torch


def max_output_lengths(enc_lens: torch.Tensor, max_length_ratio: float) -> list[int]:
    """Most output tokens per utterance: ``max_length_ratio`` x encoder frames, at least 1."""
    return [max(1, math.floor(max_length_ratio * n)) for n in enc_lens.tolist()]


def greedy_ctc(log_probs: torch.Tensor, lengths: torch.Tensor, blank: int = 0) -> list[list[int]]:
    """Best path CTC decoding: argmax per frame, merge repeats, drop blanks.

    ``log_probs``: (B, T, V) CTC (log-)posteriors; ``lengths``: (B,) valid frames.
    """
    best = log_probs.argmax(dim=-1).cpu()  # (B, T)
    outputs = []
    for row, length in zip(best, lengths.tolist()):
        path = row[:length]
        keep = torch.ones_like(path, dtype=torch.bool)
        keep[1:] = path[1:] != path[:-1]
        outputs.append([int(t) for t in path[keep & (path != blank)]])
    return outputs


@torch.no_grad()
def greedy_attention(
    model: torch.nn.Module,
    enc: torch.Tensor,
    enc_lens: torch.Tensor,
    max_length_ratio: float = 1.0,
    blank: int = 0,
) -> list[list[int]]:
    """Feed the decoder its own argmax until it emits <eos> or reaches the length limit.

    ``enc``: (B, T', D) encoder output; ``enc_lens``: (B,). The blank id is never emitted (it is CTC's,
    not an output token). <sos> = <eos> = ``model.vocab_size - 1``.
    """
    eos = model.vocab_size - 1
    batch = enc.shape[0]
    max_lens = max_output_lengths(enc_lens, max_length_ratio)
    prefix = torch.full((batch, 1), eos, dtype=torch.long, device=enc.device)  # (B, 1): <sos>
    outputs: list[list[int]] = [[] for _ in range(batch)]
    running = list(range(batch))
    for step in range(max(max_lens) + 1):
        rows = torch.tensor(running, device=enc.device)
        log_probs = model.decoder_log_probs(prefix[rows], enc[rows], enc_lens[rows])  # (N, V)
        log_probs[:, blank] = float("-inf")
        best = log_probs.argmax(dim=-1)
        new_prefix = torch.full((batch, 1), eos, dtype=torch.long, device=enc.device)
        new_prefix[rows] = best[:, None]
        prefix = torch.cat([prefix, new_prefix], dim=1)  # (B, step + 2)
        still = []
        for utt, token in zip(running, best.tolist()):
            if token == eos:
                continue
            outputs[utt].append(token)
            if step + 1 < max_lens[utt]:
                still.append(utt)
        running = still
        if not running:
            break
    return outputs
