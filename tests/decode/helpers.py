"""Small models and exact reference computations shared by the decoding tests."""

from __future__ import annotations

import itertools
import math

import torch
from torch import nn


class TinyDecoderModel(nn.Module):
    """A stand-in with the inference helpers of JointModel: a CTC head and a small recurrent decoder
    attending to the mean of the encoder output (deterministic, cheap, prefix-dependent)."""

    def __init__(self, vocab_size: int = 7, d_model: int = 16, eos_bias: float = 0.0):
        super().__init__()
        self.vocab_size = vocab_size
        self.embed = nn.Embedding(vocab_size, d_model)
        self.rnn = nn.GRU(d_model, d_model, batch_first=True)
        self.ctc_out = nn.Linear(d_model, vocab_size)
        self.att_out = nn.Linear(d_model, vocab_size)
        with torch.no_grad():
            self.att_out.bias[vocab_size - 1] += eos_bias
        self.eval()

    def ctc_log_probs(self, enc: torch.Tensor) -> torch.Tensor:
        return self.ctc_out(enc).log_softmax(-1)

    def decoder_log_probs(
        self, prefix: torch.Tensor, enc: torch.Tensor, enc_lens: torch.Tensor
    ) -> torch.Tensor:
        mask = (torch.arange(enc.shape[1])[None] < enc_lens[:, None]).float()[:, :, None]  # (N, T', 1)
        context = (enc * mask).sum(1) / enc_lens[:, None].float()  # (N, D)
        states, _ = self.rnn(self.embed(prefix), context[None].contiguous())
        return self.att_out(states[:, -1]).log_softmax(-1)


def tiny_model(eos_bias: float = -1.0) -> TinyDecoderModel:
    torch.manual_seed(3)
    model = TinyDecoderModel(eos_bias=eos_bias)
    return model


def make_batch(model: nn.Module, lengths: list[int], dim: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """Random encoder outputs (B, T', D), zero beyond each length."""
    enc = torch.randn(len(lengths), max(lengths), dim)
    for i, n in enumerate(lengths):
        enc[i, n:] = 0.0
    return enc, torch.tensor(lengths)


class FixedCTCModel(nn.Module):
    """A model whose CTC posteriors are given; it has no decoder (use with CTC weight 1)."""

    def __init__(self, log_probs: torch.Tensor):
        super().__init__()
        self.log_probs = log_probs
        self.vocab_size = log_probs.shape[-1]
        self.enc = torch.zeros(log_probs.shape[0], log_probs.shape[1], 1)

    def ctc_log_probs(self, enc: torch.Tensor) -> torch.Tensor:
        return self.log_probs

    def decoder_log_probs(self, prefix, enc, enc_lens):  # pragma: no cover - must not be called
        raise AssertionError("CTC weight 1 must not call the decoder")


def ctc_log_likelihood(log_probs: torch.Tensor, labels: list[int], blank: int = 0) -> float:
    """log P(labels | x) by enumerating every alignment path (tiny T only) or the CTC loss otherwise."""
    num_frames, vocab = log_probs.shape
    if vocab**num_frames <= 5000:
        total = 0.0
        for path in itertools.product(range(vocab), repeat=num_frames):
            out, prev = [], None
            for label in path:
                if label != prev and label != blank:
                    out.append(label)
                prev = label
            if out == labels:
                total += math.exp(sum(log_probs[t, k].item() for t, k in enumerate(path)))
        return math.log(total) if total > 0 else float("-inf")
    loss = torch.nn.functional.ctc_loss(
        log_probs.double()[:, None],
        torch.tensor([labels], dtype=torch.long),
        torch.tensor([num_frames]),
        torch.tensor([len(labels)]),
        blank=blank,
        reduction="sum",
        zero_infinity=False,
    )
    return -loss.item()
