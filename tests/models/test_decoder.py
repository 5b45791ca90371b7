"""Transformer decoder and its losses: causality, padding, label smoothing, accuracy, CTC."""

from __future__ import annotations

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gradremedy.config import DecoderConfig
from gradremedy.models.ctc import CTCHead
from gradremedy.models.decoder import TransformerDecoder, label_smoothing_loss, token_accuracy


def small_decoder(vocab: int = 12) -> TransformerDecoder:
    return TransformerDecoder(
        DecoderConfig(blocks=2, heads=2, ffn_dim=32, dropout=0.0), vocab, d_model=16
    ).eval()


def test_decoder_is_causal() -> None:
    decoder = small_decoder()
    enc, enc_lens = torch.randn(1, 9, 16), torch.tensor([9])
    prefix = torch.tensor([[11, 3, 4, 5, 6]])
    changed = prefix.clone()
    changed[0, 3:] = torch.tensor([1, 2])
    logits, changed_logits = (decoder(p, torch.tensor([5]), enc, enc_lens) for p in (prefix, changed))
    assert torch.allclose(logits[0, :3], changed_logits[0, :3], atol=1e-6)
    assert not torch.allclose(logits[0, 3:], changed_logits[0, 3:], atol=1e-3)


def test_decoder_ignores_padded_frames_and_tokens() -> None:
    decoder = small_decoder()
    enc = torch.randn(2, 9, 16)
    enc[1, 6:] = 100.0
    prefix = torch.tensor([[11, 3, 4, 5], [11, 7, 11, 11]])
    batched = decoder(prefix, torch.tensor([4, 2]), enc, torch.tensor([9, 6]))
    alone = decoder(prefix[1:, :2], torch.tensor([2]), enc[1:, :6], torch.tensor([6]))
    assert torch.allclose(batched[1, :2], alone[0], atol=1e-5)


def slow_label_smoothing(logits: torch.Tensor, targets: torch.Tensor, smoothing: float) -> torch.Tensor:
    """KL(q || p) written out per token."""
    vocab = logits.shape[-1]
    losses = []
    for b in range(logits.shape[0]):
        total = torch.tensor(0.0)
        for i in range(logits.shape[1]):
            if targets[b, i] < 0:
                continue
            log_p = torch.log_softmax(logits[b, i], dim=-1)
            for v in range(vocab):
                q = 1.0 - smoothing if v == targets[b, i] else smoothing / (vocab - 1)
                if q > 0:
                    total = total + q * (math.log(q) - log_p[v])
        losses.append(total)
    return torch.stack(losses)


@settings(max_examples=20, deadline=None)
@given(
    smoothing=st.one_of(st.just(0.0), st.floats(min_value=1e-6, max_value=0.5)),
    seed=st.integers(min_value=0, max_value=10_000),
)
def test_label_smoothing_loss_is_the_kl_divergence(smoothing: float, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, 4, 6, generator=generator) * 3
    targets = torch.randint(0, 6, (2, 4), generator=generator)
    targets[1, 2:] = -1
    expected = slow_label_smoothing(logits, targets, smoothing)
    assert torch.allclose(label_smoothing_loss(logits, targets, smoothing), expected, atol=1e-4)


def test_label_smoothing_zero_is_cross_entropy() -> None:
    logits, targets = torch.randn(3, 5, 7), torch.randint(0, 7, (3, 5))
    cross_entropy = torch.nn.functional.cross_entropy(
        logits.reshape(-1, 7), targets.reshape(-1), reduction="sum"
    )
    assert torch.allclose(label_smoothing_loss(logits, targets, 0.0).sum(), cross_entropy, atol=1e-4)


def test_token_accuracy_counts_only_valid_tokens() -> None:
    logits = torch.zeros(1, 4, 5)
    logits[0, torch.arange(4), torch.tensor([1, 2, 3, 4])] = 1.0
    correct, counted = token_accuracy(logits, torch.tensor([[1, 0, 3, -1]]))
    assert int(correct) == 2 and int(counted) == 3


def test_ctc_loss_matches_torch_sum_and_zero_infinity() -> None:
    head = CTCHead(8, 6, dropout=0.0)
    enc = torch.randn(2, 10, 8)
    log_probs = head(enc)
    tokens = torch.tensor([[1, 2, 3], [4, -1, -1]])
    losses = head.loss(log_probs, torch.tensor([10, 7]), tokens, torch.tensor([3, 1]))
    expected = torch.nn.functional.ctc_loss(
        log_probs.transpose(0, 1), torch.tensor([1, 2, 3, 4]), torch.tensor([10, 7]), torch.tensor([3, 1]),
        reduction="sum",
    )  # fmt: skip
    assert torch.allclose(losses.sum(), expected, atol=1e-4)
    impossible = head.loss(log_probs[:1, :2], torch.tensor([2]), torch.tensor([[1, 1, 1]]), torch.tensor([3]))
    assert float(impossible.detach()) == 0.0


def test_cross_attention_memory_is_reused_only_while_valid() -> None:
    decoder = small_decoder()
    enc, enc_lens = torch.randn(3, 9, 16), torch.tensor([9, 7, 5])
    prefix, prefix_lens = torch.tensor([[11, 3], [11, 4], [11, 5]]), torch.tensor([2, 2, 2])

    def uncached() -> torch.Tensor:
        with torch.enable_grad():  # autograd on: the cache is bypassed
            return decoder(prefix, prefix_lens, enc, enc_lens).detach()

    with torch.no_grad():
        first = decoder(prefix, prefix_lens, enc, enc_lens)
        cached_memory = decoder._memory_cache[2]
        assert torch.allclose(decoder(prefix, prefix_lens, enc, enc_lens), first)
        assert decoder._memory_cache[2] is cached_memory  # served from the cache
        assert torch.allclose(first, uncached(), atol=1e-6)

        enc.mul_(2.0)  # in place: same object, new version
        assert torch.allclose(decoder(prefix, prefix_lens, enc, enc_lens), uncached(), atol=1e-6)
        decoder.blocks[0].cross_attention.value.weight.mul_(0.5)  # weights changed in place
        assert torch.allclose(decoder(prefix, prefix_lens, enc, enc_lens), uncached(), atol=1e-6)
        other = torch.randn(3, 9, 16)
        fresh = decoder(prefix, prefix_lens, other, enc_lens)
        with torch.enable_grad():
            assert torch.allclose(fresh, decoder(prefix, prefix_lens, other, enc_lens).detach(), atol=1e-6)
    decoder.train()
    assert decoder._memory_cache is None
