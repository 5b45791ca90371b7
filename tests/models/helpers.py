"""Small model configurations and batches shared by the model tests."""

from __future__ import annotations

import torch

from gradremedy.config import DecoderConfig, EncoderConfig, EnhancerConfig, FrontendConfig, ModelConfig

VOCAB = 20


def small_model_config(dropout: float = 0.0, **overrides: object) -> ModelConfig:
    """A model small enough to run forward and backward in milliseconds (16 kHz)."""
    cfg = ModelConfig(
        sample_rate=16000,
        enhancer=EnhancerConfig(n_fft=256, hop_length=128, lstm_layers=2, lstm_units=24, dropout=dropout),
        frontend=FrontendConfig(n_mels=24, n_fft=400, hop_length=160),
        encoder=EncoderConfig(
            d_model=32, heads=4, ffn_dim=64, blocks=2, conv_kernel=5, dropout=dropout, subsampling_channels=8
        ),
        decoder=DecoderConfig(blocks=2, heads=4, ffn_dim=64, dropout=dropout),
    )
    for key, value in overrides.items():
        setattr(cfg, key, value)
    return cfg


def random_batch(lengths: list[int], token_counts: list[int], vocab: int = VOCAB) -> dict[str, torch.Tensor]:
    """Zero-padded noisy/clean waveforms and -1-padded tokens with the given lengths."""
    batch, longest, most_tokens = len(lengths), max(lengths), max(token_counts)
    noisy = torch.zeros(batch, longest)
    clean = torch.zeros(batch, longest)
    tokens = torch.full((batch, most_tokens), -1, dtype=torch.long)
    for b, (length, count) in enumerate(zip(lengths, token_counts)):
        clean[b, :length] = 0.3 * torch.sin(torch.arange(length) * (0.05 + 0.01 * b))
        noisy[b, :length] = clean[b, :length] + 0.1 * torch.randn(length)
        tokens[b, :count] = torch.randint(1, vocab - 1, (count,))
    return {
        "noisy": noisy,
        "noisy_lens": torch.tensor(lengths),
        "tokens": tokens,
        "token_lens": torch.tensor(token_counts),
        "clean": clean,
        "has_clean": torch.ones(batch, dtype=torch.bool),
    }


def select(batch: dict[str, torch.Tensor], index: int) -> dict[str, torch.Tensor]:
    """Utterance ``index`` alone, trimmed to its own length (no padding at all)."""
    length, count = int(batch["noisy_lens"][index]), int(batch["token_lens"][index])
    return {
        "noisy": batch["noisy"][index : index + 1, :length],
        "noisy_lens": batch["noisy_lens"][index : index + 1],
        "tokens": batch["tokens"][index : index + 1, :count],
        "token_lens": batch["token_lens"][index : index + 1],
        "clean": batch["clean"][index : index + 1, :length],
        "has_clean": batch["has_clean"][index : index + 1],
    }
