"""CTC head and loss: Linear from the encoder to the vocabulary, blank = 0.

    log P_ctc(· | enc_t) = log_softmax(W · dropout(enc_t))
    L_ctc(b) = -log Σ_{alignments of y_b} Π_t P_ctc(a_t | enc_t)     per utterance

``torch.nn.functional.ctc_loss`` with ``zero_infinity=True``: an utterance whose target cannot be
aligned (more tokens than frames) contributes zero loss and zero gradient instead of infinity.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class CTCHead(nn.Module):
    """Encoder frames (B, T', D) -> per-frame log-probabilities (B, T', V)."""

    def __init__(self, d_model: int, vocab_size: int, dropout: float, blank_id: int = 0) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Linear(d_model, vocab_size)
        self.blank_id = blank_id

    def forward(self, enc: Tensor) -> Tensor:
        return torch.log_softmax(self.output(self.dropout(enc)).float(), dim=-1)  # (B, T', V)

    def loss(self, log_probs: Tensor, enc_lens: Tensor, tokens: Tensor, token_lens: Tensor) -> Tensor:
        """Per-utterance CTC loss (B,); ``tokens`` (B, U) padded with -1."""
        return nn.functional.ctc_loss(
            log_probs.transpose(0, 1),  # (T', B, V) as ctc_loss wants
            tokens.clamp(min=0),  # padding is never read past token_lens, but must be a valid index
            enc_lens,
            token_lens,
            blank=self.blank_id,
            reduction="none",
            zero_infinity=True,
        )
