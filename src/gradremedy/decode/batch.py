"""Decoding a batch of waveforms in one go: encode them together, then one joint CTC/attention beam
search over every hypothesis of every utterance (what ``gradremedy eval`` and ``transcribe`` run)."""

from __future__ import annotations

from typing import Any

import torch

from gradremedy.decode.beam_search import Hypothesis, beam_search


@torch.no_grad()
def decode_batch(
    model: torch.nn.Module,
    waveforms: torch.Tensor,
    lengths: torch.Tensor,
    *,
    beam_size: int,
    ctc_weight: float,
    length_penalty: float = 0.0,
    max_length_ratio: float = 1.0,
    lm: torch.nn.Module | None = None,
    lm_weight: float = 0.0,
    nbest: int = 1,
    cache: bool = True,
) -> list[list[Hypothesis]]:
    """The ``nbest`` best hypotheses of each of B padded waveforms (``waveforms``: (B, T) at the model's
    rate, ``lengths``: (B,) samples).

    ``model`` is a :class:`gradremedy.models.JointModel` (``encode`` then what
    :func:`gradremedy.decode.beam_search.beam_search` needs). The utterances share one encoder pass and
    one search, ``beam_size`` rows each, with the decoder's incremental cache unless ``cache`` is False.
    Sorting utterances by length before batching keeps the padding small; the result does not depend on
    the batch: each utterance gets the hypotheses it gets alone.
    """
    hyps, _ = decode_and_enhance(
        model,
        waveforms,
        lengths,
        beam_size=beam_size,
        ctc_weight=ctc_weight,
        length_penalty=length_penalty,
        max_length_ratio=max_length_ratio,
        lm=lm,
        lm_weight=lm_weight,
        nbest=nbest,
        cache=cache,
    )
    return hyps


@torch.no_grad()
def decode_and_enhance(
    model: torch.nn.Module, waveforms: torch.Tensor, lengths: torch.Tensor, **search: Any
) -> tuple[list[list[Hypothesis]], torch.Tensor]:
    """:func:`decode_batch` (``search``: its keyword arguments) that also returns the enhanced waveforms
    (B, T) the encoder read, the same as ``model.enhance`` gives: evaluation scores the enhancement with
    them instead of running the enhancer a second time."""
    enhanced, enc, enc_lens = model.enhance_and_encode(waveforms, lengths)  # (B, T), (B, T', D), (B,)
    return beam_search(model, enc, enc_lens, **search), enhanced
