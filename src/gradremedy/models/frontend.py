"""ASR front end on the enhanced waveform: log-mel filterbank, utterance mean normalisation,
optional SpecAugment.

    P = |STFT(x̂)|²                       power spectrum (B, F, N), Hann window, centred, zero-padded
    X = log(max(P · Wᵀ, 1e-10))           W: (n_mels, F) triangular filters on the HTK mel scale
    X ← X - mean_{valid t} X              per utterance and mel bin, padding frames excluded
    X ← X / std_{valid t} X               optional (``normalize_variance``), the same way
    SpecAugment (training only): zero random frequency bands and time spans

The mel matrix is our own (torchaudio is not a dependency): mel(f) = 2595 · log10(1 + f / 700);
``n_mels + 2`` points equally spaced on that scale between f_min and f_max give each filter its
lower edge, centre and upper edge, and the filter is the triangle through them evaluated at the
FFT bin frequencies (no area normalisation, like HTK/Kaldi ``htk`` filters).

Framing: frame t covers samples [t·hop - n_fft/2, t·hop + n_fft/2) with zeros outside the signal,
so an utterance of L samples has L // hop + 1 frames whose values do not depend on batch padding.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from gradremedy.config import FrontendConfig
from gradremedy.models.masking import lengths_to_mask, masked_mean, stft_frames


def hz_to_mel(hz: Tensor | float) -> Tensor:
    """HTK mel scale: 2595 · log10(1 + f / 700)."""
    return 2595.0 * torch.log10(1.0 + torch.as_tensor(hz, dtype=torch.float64) / 700.0)


def mel_to_hz(mel: Tensor | float) -> Tensor:
    """Inverse of :func:`hz_to_mel`."""
    return 700.0 * (10.0 ** (torch.as_tensor(mel, dtype=torch.float64) / 2595.0) - 1.0)


def mel_filterbank(
    n_mels: int, n_fft: int, sample_rate: int, f_min: float = 0.0, f_max: float | None = None
) -> Tensor:
    """Triangular HTK-mel filters as a (n_mels, n_fft // 2 + 1) float32 matrix."""
    f_max = sample_rate / 2 if f_max is None else f_max
    if not 0.0 <= f_min < f_max <= sample_rate / 2:
        raise ValueError(
            f"model.frontend: need 0 <= f_min < f_max <= sample_rate/2 (got {f_min}, {f_max}, {sample_rate})"
        )
    edges = mel_to_hz(
        torch.linspace(float(hz_to_mel(f_min)), float(hz_to_mel(f_max)), n_mels + 2, dtype=torch.float64)
    )  # (n_mels + 2,)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]  # (n_mels, 1) each
    bin_hz = torch.linspace(0.0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)[None, :]  # (1, F)
    rising = (bin_hz - lower) / (centre - lower)
    falling = (upper - bin_hz) / (upper - centre)
    return torch.minimum(rising, falling).clamp(min=0.0).float()  # (n_mels, F)


class LogMelFrontend(nn.Module):
    """Waveform (B, T) -> normalised log-mel features (B, N, n_mels) and frame counts (B,)."""

    def __init__(self, cfg: FrontendConfig, sample_rate: int) -> None:
        super().__init__()
        if not 0 < cfg.hop_length <= cfg.n_fft:
            raise ValueError(
                f"model.frontend: need 0 < hop_length <= n_fft (got {cfg.hop_length}, {cfg.n_fft})"
            )
        self.n_fft = cfg.n_fft
        self.hop_length = cfg.hop_length
        self.n_mels = cfg.n_mels
        self.normalize_variance = cfg.normalize_variance
        self.register_buffer("window", torch.hann_window(cfg.n_fft), persistent=False)
        self.register_buffer(
            "mel_matrix",
            mel_filterbank(cfg.n_mels, cfg.n_fft, sample_rate, cfg.f_min, cfg.f_max),
            persistent=False,
        )
        self.specaugment = (
            SpecAugment(cfg.freq_masks, cfg.freq_mask_width, cfg.time_masks, cfg.time_mask_width)
            if cfg.specaugment
            else None
        )

    def forward(self, waveform: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        # Always float32: a power spectrum overflows float16 (|X|² reaches n_fft² for a full-scale tone).
        with torch.autocast(device_type=waveform.device.type, enabled=False):
            return self._features(waveform.float(), lengths)

    def _features(self, waveform: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        waveform = waveform * lengths_to_mask(lengths, waveform.shape[1])  # (B, T), zero padding
        spectrum = torch.stft(
            waveform,
            self.n_fft,
            self.hop_length,
            window=self.window,
            center=True,
            pad_mode="constant",
            return_complex=True,
        )  # (B, F, N')
        frame_lens = stft_frames(lengths, self.hop_length)  # (B,)
        num_frames = int(waveform.shape[1]) // self.hop_length + 1
        power = spectrum[..., :num_frames].abs().pow(2).transpose(1, 2)  # (B, N, F)
        features = torch.log(torch.clamp(power @ self.mel_matrix.T, min=1e-10))  # (B, N, n_mels)
        frame_mask = lengths_to_mask(frame_lens, num_frames).unsqueeze(-1)  # (B, N, 1)
        features = (features - masked_mean(features, frame_mask, dim=1)) * frame_mask  # utterance mean norm
        if self.normalize_variance:
            variance = masked_mean(features.pow(2), frame_mask, dim=1)  # (B, 1, n_mels)
            features = features * torch.rsqrt(variance.clamp(min=1e-6))
        if self.specaugment is not None and self.training:
            features = self.specaugment(features, frame_lens)
        return features, frame_lens


class SpecAugment(nn.Module):
    """Frequency and time masking (Park et al., 2019) without time warping; training mode only.

    Each utterance gets ``freq_masks`` bands of width U[0, F_w] and ``time_masks`` spans of width
    U[0, min(T_w, 0.2 · its valid frames)] placed inside its valid frames, all set to zero (the
    utterance mean after normalisation).
    """

    def __init__(self, freq_masks: int, freq_width: int, time_masks: int, time_width: int) -> None:
        super().__init__()
        self.freq_masks, self.freq_width = freq_masks, freq_width
        self.time_masks, self.time_width = time_masks, time_width

    @staticmethod
    def _spans(count: int, max_width: Tensor, extent: Tensor, size: int) -> Tensor:
        """Boolean (B, size): union of ``count`` random spans a row, widths U[0, max_width], inside extent."""
        batch = extent.shape[0]
        device = extent.device
        width = (torch.rand(batch, count, device=device) * (max_width[:, None] + 1)).floor()  # (B, count)
        start = (torch.rand(batch, count, device=device) * (extent[:, None] - width + 1).clamp(min=1)).floor()
        positions = torch.arange(size, device=device)[None, None, :]  # (1, 1, size)
        inside = (positions >= start[..., None]) & (
            positions < (start + width)[..., None]
        )  # (B, count, size)
        return inside.any(dim=1)

    def forward(self, features: Tensor, frame_lens: Tensor) -> Tensor:
        batch, frames, bins = features.shape
        if self.freq_masks > 0 and self.freq_width > 0:
            full = torch.full((batch,), float(bins), device=features.device)
            band = self._spans(
                self.freq_masks, torch.full_like(full, float(min(self.freq_width, bins))), full, bins
            )
            features = features.masked_fill(band[:, None, :], 0.0)  # band: (B, F)
        if self.time_masks > 0 and self.time_width > 0:
            extent = frame_lens.to(torch.float32)
            max_width = torch.clamp(torch.floor(0.2 * extent), max=float(self.time_width))
            span = self._spans(self.time_masks, max_width, extent, frames)
            features = features.masked_fill(span[:, :, None], 0.0)  # span: (B, N)
        return features
