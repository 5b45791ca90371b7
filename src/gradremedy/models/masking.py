"""Length and padding helpers shared by the model blocks.

Every block receives padded batches plus per-utterance lengths; these helpers turn lengths into
boolean masks and give the frame counts of the STFT and subsampling layers, so that each block can
prove that its valid outputs never depend on the padding.
"""

from __future__ import annotations

import torch
from torch import Tensor


def lengths_to_mask(lengths: Tensor, max_length: int | None = None) -> Tensor:
    """Boolean mask (B, T) that is True at valid positions ``t < lengths[b]``."""
    if max_length is None:
        max_length = int(lengths.max()) if lengths.numel() else 0
    positions = torch.arange(max_length, device=lengths.device)  # (T,)
    return positions.unsqueeze(0) < lengths.unsqueeze(1)  # (B, T)


def stft_frames(num_samples: Tensor, hop_length: int) -> Tensor:
    """Frames of a centred, zero-padded STFT (``center=True, pad_mode="constant"``) whose centre lies
    inside the signal: frame t covers samples [t*hop - n_fft/2, t*hop + n_fft/2)."""
    return torch.div(num_samples, hop_length, rounding_mode="floor") + 1


def masked_mean(values: Tensor, mask: Tensor, dim: int) -> Tensor:
    """Mean of ``values`` over ``dim`` counting only positions where ``mask`` (broadcastable) is True."""
    mask = mask.to(values.dtype)
    total = (values * mask).sum(dim=dim, keepdim=True)
    count = mask.sum(dim=dim, keepdim=True).clamp(min=1.0)
    return total / count
