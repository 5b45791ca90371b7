"""Log-mel front end: the mel matrix against the HTK formula, framing, normalisation, SpecAugment."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gradremedy.config import FrontendConfig
from gradremedy.models.frontend import LogMelFrontend, SpecAugment, hz_to_mel, mel_filterbank, mel_to_hz


def slow_mel_filterbank(
    n_mels: int, n_fft: int, sample_rate: int, f_min: float, f_max: float
) -> list[list[float]]:
    """The filters written out literally from the HTK formula, one weight at a time."""

    def mel(f: float) -> float:
        return 2595.0 * math.log10(1.0 + f / 700.0)

    def hz(m: float) -> float:
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)

    step = (mel(f_max) - mel(f_min)) / (n_mels + 1)
    points = [hz(mel(f_min) + i * step) for i in range(n_mels + 2)]
    filters = []
    for m in range(n_mels):
        low, centre, high = points[m], points[m + 1], points[m + 2]
        row = []
        for k in range(n_fft // 2 + 1):
            f = k * sample_rate / n_fft
            if low < f <= centre:
                row.append((f - low) / (centre - low))
            elif centre < f < high:
                row.append((high - f) / (high - centre))
            else:
                row.append(0.0)
        filters.append(row)
    return filters


def test_hz_to_mel_follows_the_htk_formula() -> None:
    assert float(hz_to_mel(0.0)) == 0.0
    assert float(hz_to_mel(700.0)) == pytest.approx(2595.0 * math.log10(2.0))
    assert float(hz_to_mel(1000.0)) == pytest.approx(
        999.985, abs=1e-2
    )  # the scale's anchor: ~1000 mel at 1 kHz
    frequencies = torch.tensor([0.0, 50.0, 440.0, 3999.0, 8000.0], dtype=torch.float64)
    assert torch.allclose(mel_to_hz(hz_to_mel(frequencies)), frequencies)


@settings(max_examples=25, deadline=None)
@given(
    n_mels=st.integers(min_value=4, max_value=80),
    n_fft=st.sampled_from([256, 400, 512]),
    sample_rate=st.sampled_from([8000, 16000]),
    f_min=st.floats(min_value=0.0, max_value=300.0),
)
def test_mel_matrix_matches_the_formula(n_mels: int, n_fft: int, sample_rate: int, f_min: float) -> None:
    f_max = sample_rate / 2
    matrix = mel_filterbank(n_mels, n_fft, sample_rate, f_min, f_max)
    expected = torch.tensor(
        slow_mel_filterbank(n_mels, n_fft, sample_rate, f_min, f_max), dtype=torch.float32
    )
    assert matrix.shape == (n_mels, n_fft // 2 + 1)
    assert torch.allclose(matrix, expected, atol=1e-5)
    assert (matrix >= 0).all() and (matrix <= 1 + 1e-6).all()


def test_mel_filters_peak_at_their_centre_frequency() -> None:
    n_fft, sample_rate = 4096, 16000  # fine bins so that each peak is sharp
    matrix = mel_filterbank(20, n_fft, sample_rate, 0.0, 8000.0)
    centres = mel_to_hz(torch.linspace(0.0, float(hz_to_mel(8000.0)), 22, dtype=torch.float64))[1:-1]
    peak_hz = matrix.argmax(dim=1).double() * sample_rate / n_fft
    assert torch.allclose(peak_hz, centres, atol=sample_rate / n_fft)


def test_mel_range_is_checked() -> None:
    with pytest.raises(ValueError, match="f_max"):
        mel_filterbank(40, 512, 8000, 0.0, 6000.0)


def test_frames_do_not_depend_on_padding() -> None:
    frontend = LogMelFrontend(FrontendConfig(n_mels=24, n_fft=400, hop_length=160), 16000).eval()
    short = torch.randn(1, 3210)
    padded = torch.cat([short, torch.randn(1, 1000)], dim=1)  # garbage beyond the length must not count
    alone, alone_lens = frontend(short, torch.tensor([3210]))
    batched, batched_lens = frontend(torch.cat([padded, torch.randn(1, 4210)]), torch.tensor([3210, 4210]))
    assert int(alone_lens[0]) == 3210 // 160 + 1 == int(batched_lens[0]) == alone.shape[1]
    assert torch.allclose(batched[0, : alone.shape[1]], alone[0], atol=1e-5)
    assert (batched[0, alone.shape[1] :] == 0).all()


def test_utterance_mean_is_zero_over_valid_frames() -> None:
    frontend = LogMelFrontend(FrontendConfig(n_mels=16, n_fft=256, hop_length=128), 8000).eval()
    features, lens = frontend(torch.randn(2, 4000) + 0.5, torch.tensor([4000, 2500]))
    for b in range(2):
        valid = features[b, : int(lens[b])]
        assert torch.allclose(valid.mean(dim=0), torch.zeros(16), atol=1e-4)


def test_specaugment_masks_in_training_only_and_inside_the_valid_frames() -> None:
    cfg = FrontendConfig(
        n_mels=20,
        n_fft=256,
        hop_length=128,
        specaugment=True,
        freq_masks=2,
        freq_mask_width=5,
        time_masks=2,
        time_mask_width=10,
    )
    frontend = LogMelFrontend(cfg, 8000)
    waveform, lens = torch.randn(4, 8000), torch.tensor([8000, 6000, 3000, 1500])
    frontend.eval()
    clean_features, frame_lens = frontend(waveform, lens)
    for b in range(4):  # no masking at evaluation: no whole band or frame is zero
        valid = clean_features[b, : int(frame_lens[b])]
        assert not (valid == 0).all(dim=0).any() and not (valid == 0).all(dim=1).any()
    frontend.train()
    masked, _ = frontend(waveform, lens)
    zeroed = (masked == 0) & (clean_features != 0)
    assert zeroed.any()
    for b in range(4):
        assert not zeroed[b, int(frame_lens[b]) :].any()
        whole_bands = zeroed[b, : int(frame_lens[b])].all(dim=0).sum()
        assert whole_bands <= 2 * 5
        whole_frames = zeroed[b, : int(frame_lens[b])].all(dim=1).sum()
        assert whole_frames <= 2 * min(10, int(0.2 * frame_lens[b])) + 1


def test_specaugment_span_widths_respect_their_limits() -> None:
    spans = SpecAugment._spans(3, torch.tensor([4.0, 0.0]), torch.tensor([50.0, 50.0]), 60)
    assert spans[0].sum() <= 12 and not spans[1].any()
    assert not spans[:, 50:].any()


def test_variance_normalisation_gives_unit_spread_over_valid_frames_whatever_the_padding() -> None:
    cfg = FrontendConfig(n_mels=16, n_fft=256, hop_length=128, normalize_variance=True)
    frontend = LogMelFrontend(cfg, 8000).eval()
    short = torch.randn(1, 2500) * 0.1
    alone, _ = frontend(short, torch.tensor([2500]))
    batched, lens = frontend(
        torch.cat([torch.cat([short, torch.randn(1, 1500)], 1), torch.randn(1, 4000)]),
        torch.tensor([2500, 4000]),
    )
    assert torch.allclose(batched[0, : alone.shape[1]], alone[0], atol=1e-4)
    for b in range(2):
        valid = batched[b, : int(lens[b])]
        assert torch.allclose(valid.mean(dim=0), torch.zeros(16), atol=1e-4)
        assert torch.allclose(valid.pow(2).mean(dim=0), torch.ones(16), atol=1e-3)
