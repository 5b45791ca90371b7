"""Conformer encoder: subsampling lengths, relative-position attention against a literal version,
padding invariance."""

from __future__ import annotations

import math

import pytest
import torch

from gradremedy.config import EncoderConfig
from gradremedy.models.conformer import (
    ConformerEncoder,
    Conv2dSubsampling,
    RelPositionMultiHeadAttention,
    sinusoid,
    subsampled_lengths,
)


def small_encoder(**changes: int) -> ConformerEncoder:
    settings = {"d_model": 32, "heads": 4, "ffn_dim": 48, "blocks": 2, "conv_kernel": 5, "dropout": 0.0,
                "subsampling_channels": 8}  # fmt: skip
    settings.update(changes)
    return ConformerEncoder(EncoderConfig(**settings), in_features=20)


def test_subsampled_lengths_match_the_convolutions() -> None:
    subsampling = Conv2dSubsampling(20, 16, 4)
    for frames in range(7, 40):
        output, lengths = subsampling(torch.randn(1, frames, 20), torch.tensor([frames]))
        assert output.shape[1] == int(lengths[0]) == int(subsampled_lengths(torch.tensor(frames)))


def literal_rel_pos_attention(module: RelPositionMultiHeadAttention, x: torch.Tensor) -> torch.Tensor:
    """score(i, j) = [(q_i + u)·k_j + (q_i + v)·W_pos p_{i-j}] / sqrt(d_k), one (i, j) at a time."""
    batch, frames, d_model = x.shape
    heads, d_k = module.heads, module.d_k
    q = module.query(x).view(batch, frames, heads, d_k)
    k = module.key(x).view(batch, frames, heads, d_k)
    v = module.value(x).view(batch, frames, heads, d_k)
    context = torch.zeros(batch, frames, heads, d_k)
    for b in range(batch):
        for h in range(heads):
            scores = torch.zeros(frames, frames)
            for i in range(frames):
                for j in range(frames):
                    p = module.linear_pos(sinusoid(torch.tensor([i - j]), d_model))[0].view(heads, d_k)[h]
                    content = (q[b, i, h] + module.pos_bias_u[h]) @ k[b, j, h]
                    position = (q[b, i, h] + module.pos_bias_v[h]) @ p
                    scores[i, j] = (content + position) / math.sqrt(d_k)
            context[b, :, h] = torch.softmax(scores, dim=-1) @ v[b, :, h]
    return module.out(context.reshape(batch, frames, d_model))


def test_relative_position_attention_matches_the_literal_formula() -> None:
    module = RelPositionMultiHeadAttention(16, 2, dropout=0.0).eval()
    x = torch.randn(2, 5, 16)
    fast = module(x, torch.ones(2, 5, dtype=torch.bool))
    assert torch.allclose(fast, literal_rel_pos_attention(module, x), atol=1e-5)


def test_sinusoid_has_sin_on_even_and_cos_on_odd_dimensions() -> None:
    table = sinusoid(torch.tensor([0, 3, -2]), 8)
    assert torch.allclose(table[0], torch.tensor([0.0, 1.0] * 4))
    assert torch.allclose(table[1, 0], torch.tensor(math.sin(3.0)))
    assert torch.allclose(table[2, 1], torch.tensor(math.cos(-2.0)))
    assert torch.allclose(table[1, 2], torch.tensor(math.sin(3.0 * 10000 ** (-2 / 8))))


def test_encoder_output_does_not_depend_on_padding() -> None:
    encoder = small_encoder().eval()
    features = torch.randn(2, 60, 20)
    lengths = torch.tensor([60, 33])
    features[1, 33:] = 1000.0  # garbage in the padding must not leak
    batched, batched_lens = encoder(features, lengths)
    alone, alone_lens = encoder(features[1:, :33], lengths[1:])
    assert int(batched_lens[1]) == int(alone_lens[0]) == alone.shape[1]
    assert torch.allclose(batched[1, : alone.shape[1]], alone[0], atol=1e-5)
    assert (batched[1, alone.shape[1] :] == 0).all()


def test_encoder_shapes_and_gradients() -> None:
    encoder = small_encoder().train()
    features = torch.randn(3, 50, 20, requires_grad=True)
    enc, lengths = encoder(features, torch.tensor([50, 40, 30]))
    assert enc.shape == (3, int(subsampled_lengths(torch.tensor(50))), 32)
    enc.sum().backward()
    assert all(p.grad is not None for p in encoder.parameters())


def test_conv_module_uses_layernorm_not_batchnorm() -> None:
    encoder = small_encoder()
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in encoder.modules())


@pytest.mark.parametrize(
    ("changes", "message"),
    [({"heads": 5}, "divisible"), ({"conv_kernel": 4}, "odd")],
    ids=["heads", "kernel"],
)
def test_bad_encoder_settings_are_refused(changes: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        small_encoder(**changes)
