"""Small real models and exact reference computations shared by the decoding tests."""

from __future__ import annotations

import itertools
import math

import torch

from gradremedy.config import config_from_dict
from gradremedy.models import JointModel

D_MODEL = 16


def tiny_model(vocab_size: int = 7, eos_bias: float = -1.0, seed: int = 3) -> JointModel:
    """A randomly initialised JointModel (no enhancer) small enough to decode in milliseconds.

    ``eos_bias`` is added to the decoder's <eos> logit (negative: it rarely wants to stop).
    """
    torch.manual_seed(seed)
    config = config_from_dict(
        {
            "model": {
                "encoder": {"d_model": D_MODEL, "heads": 2, "ffn_dim": 32, "blocks": 1, "conv_kernel": 3},
                "decoder": {"blocks": 1, "heads": 2, "ffn_dim": 32},
                "frontend": {"n_mels": 8},
            }
        }
    )
    model = JointModel(config.model, vocab_size, use_enhancer=False).eval()
    with torch.no_grad():
        model.decoder.output.bias[vocab_size - 1] += eos_bias
    return model


def make_batch(lengths: list[int], dim: int = D_MODEL) -> tuple[torch.Tensor, torch.Tensor]:
    """Random encoder outputs (B, T', D), zero beyond each length."""
    enc = torch.randn(len(lengths), max(lengths), dim)
    for i, n in enumerate(lengths):
        enc[i, n:] = 0.0
    return enc, torch.tensor(lengths)


def peaky_ctc_model(path: list[int], vocab_size: int = 4, sharpness: float = 12.0):
    """A model whose CTC head puts nearly all mass on ``path[t]`` at frame t, and the encoder output
    that produces it: (model, enc (1, T, D))."""
    model = tiny_model(vocab_size)
    with torch.no_grad():
        model.ctc.output.weight.zero_()
        model.ctc.output.bias.zero_()
        model.ctc.output.weight[:, :vocab_size] = sharpness * torch.eye(vocab_size)
    enc = torch.zeros(1, len(path), D_MODEL)
    enc[0, torch.arange(len(path)), torch.tensor(path)] = 1.0
    return model, enc


def ctc_log_likelihood(log_probs: torch.Tensor, labels: list[int], blank: int = 0) -> float:
    """log P(labels | x): every alignment path enumerated (tiny T x V), else torch's CTC loss."""
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
