"""Mask-based SE front end: perfect reconstruction, padding, the SE loss and its masking."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gradremedy.config import EnhancerConfig
from gradremedy.errors import UserError
from gradremedy.models.enhancer import BLSTM, MaskEnhancer, reverse_within_lengths


def make_enhancer(loss_reduction: str = "sum", **changes: int) -> MaskEnhancer:
    settings = {"n_fft": 256, "hop_length": 128, "lstm_layers": 2, "lstm_units": 16, "dropout": 0.0}
    settings.update(changes)
    return MaskEnhancer(EnhancerConfig(loss_reduction=loss_reduction, **settings))


def force_mask(enhancer: MaskEnhancer, value: float) -> None:
    """Make the mask estimator output ``value`` everywhere (ReLU of a constant bias)."""
    with torch.no_grad():
        enhancer.to_mask.weight.zero_()
        enhancer.to_mask.bias.fill_(value)


@pytest.mark.parametrize(("n_fft", "hop_length"), [(256, 128), (512, 256), (512, 128), (400, 160)])
def test_all_ones_mask_reconstructs_the_input(n_fft: int, hop_length: int) -> None:
    enhancer = make_enhancer(n_fft=n_fft, hop_length=hop_length).eval()
    force_mask(enhancer, 1.0)
    lengths = torch.tensor([8000, 5123, 777])
    noisy = torch.randn(3, 8000) * (torch.arange(8000) < lengths[:, None])
    enhanced = enhancer(noisy, lengths).enhanced
    assert enhanced.shape == noisy.shape
    assert torch.allclose(enhanced, noisy, atol=1e-5)
    assert torch.allclose(enhancer.istft(enhancer.stft(noisy), 8000), noisy, atol=1e-5)


def test_zero_mask_gives_silence_and_the_clean_energy_as_loss() -> None:
    enhancer = make_enhancer().eval()
    force_mask(enhancer, -1.0)  # ReLU(-1) = 0
    noisy, clean, lengths = torch.randn(1, 3000), torch.randn(1, 3000), torch.tensor([3000])
    output = enhancer(noisy, lengths)
    assert (output.enhanced == 0).all()
    clean_energy = enhancer.stft(clean).abs().pow(2).sum()
    expected = clean_energy / output.frame_lens[0]
    assert torch.allclose(enhancer.loss(output, clean, lengths), expected.reshape(1), rtol=1e-5)


def test_valid_frames_are_exactly_those_overlapping_the_signal() -> None:
    enhancer = make_enhancer(n_fft=512, hop_length=256)
    for length in [1, 255, 256, 257, 500, 512, 4000]:
        frames = int(enhancer.valid_frames(torch.tensor(length)))
        # frame t covers [t*hop - n_fft/2, t*hop + n_fft/2): it overlaps [0, L) iff t*hop - 256 < L
        assert frames == sum(1 for t in range(100) if t * 256 - 256 < length)


def test_reverse_within_lengths_keeps_padding_in_place() -> None:
    x = torch.arange(10.0).reshape(2, 5, 1)  # (B, N, 1)
    reversed_x = reverse_within_lengths(x, torch.tensor([5, 3]))
    assert reversed_x[0, :, 0].tolist() == [4, 3, 2, 1, 0]
    assert reversed_x[1, :, 0].tolist() == [7, 6, 5, 8, 9]
    assert torch.equal(reverse_within_lengths(reversed_x, torch.tensor([5, 3])), x)


def test_blstm_matches_torch_bidirectional_lstm_on_unpadded_input() -> None:
    ours = BLSTM(6, 5, num_layers=2, dropout=0.0)
    reference = nn.LSTM(6, 5, num_layers=2, bidirectional=True, batch_first=True)
    with torch.no_grad():
        for layer in range(2):
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(reference, f"{name}_l{layer}").copy_(
                    getattr(ours.forward_layers[layer], f"{name}_l0")
                )
                getattr(reference, f"{name}_l{layer}_reverse").copy_(
                    getattr(ours.backward_layers[layer], f"{name}_l0")
                )
    x = torch.randn(3, 7, 6)
    assert torch.allclose(ours(x, torch.tensor([7, 7, 7])), reference(x)[0], atol=1e-6)


def test_blstm_backward_direction_never_sees_padding() -> None:
    blstm = BLSTM(4, 3, num_layers=2, dropout=0.0)
    x = torch.randn(1, 6, 4)
    alone = blstm(x, torch.tensor([6]))
    padded = torch.cat([x, 100 * torch.randn(1, 5, 4)], dim=1)  # loud garbage after the end
    batched = blstm(padded, torch.tensor([6]))
    assert torch.allclose(batched[:, :6], alone, atol=1e-6)


def test_enhancement_and_se_loss_do_not_depend_on_padding() -> None:
    enhancer = make_enhancer()
    enhancer.train()
    enhancer(torch.randn(4, 6000), torch.tensor([6000, 5000, 4000, 3000]))  # fill the global statistics
    enhancer.eval()
    lengths = torch.tensor([6000, 2345])
    noisy, clean = torch.randn(2, 6000), torch.randn(2, 6000)
    noisy[1, 2345:] = 0.0
    clean[1, 2345:] = 0.0
    batched = enhancer(noisy, lengths)
    alone = enhancer(noisy[1:, :2345], lengths[1:])
    assert torch.allclose(batched.enhanced[1, :2345], alone.enhanced[0], atol=1e-5)
    assert (batched.enhanced[1, 2345:] == 0).all()
    batched_loss = enhancer.loss(batched, clean, lengths)
    alone_loss = enhancer.loss(alone, clean[1:, :2345], lengths[1:])
    assert torch.allclose(batched_loss[1], alone_loss[0], rtol=1e-5)


def test_se_loss_ignores_padding_frames_and_garbage_beyond_the_length() -> None:
    enhancer = make_enhancer().eval()
    lengths = torch.tensor([4000, 1500])
    noisy = torch.randn(2, 4000)
    clean = torch.randn(2, 4000)
    output = enhancer(noisy, lengths)
    loss = enhancer.loss(output, clean, lengths)
    clean_garbage = clean.clone()
    clean_garbage[1, 1500:] = 50.0  # a reference that was not zero-padded
    assert torch.allclose(enhancer.loss(output, clean_garbage, lengths), loss)
    assert (output.mask[1, :, int(output.frame_lens[1]) :] == 0).all()


def test_mean_reduction_divides_by_the_number_of_bins() -> None:
    summed, averaged = make_enhancer("sum").eval(), make_enhancer("mean").eval()
    averaged.load_state_dict(summed.state_dict())
    noisy, clean, lengths = torch.randn(2, 3000), torch.randn(2, 3000), torch.tensor([3000, 2000])
    loss_sum = summed.loss(summed(noisy, lengths), clean, lengths)
    loss_mean = averaged.loss(averaged(noisy, lengths), clean, lengths)
    assert torch.allclose(loss_mean * (256 // 2 + 1), loss_sum, rtol=1e-5)


def test_global_statistics_update_in_training_only_and_skip_padding() -> None:
    enhancer = make_enhancer()
    noisy, lengths = torch.randn(2, 4000), torch.tensor([4000, 1000])
    enhancer.eval()
    enhancer(noisy, lengths)
    assert float(enhancer.stat_count) == 0.0
    enhancer.train()
    enhancer(noisy, lengths)
    assert float(enhancer.stat_count) == float(enhancer.valid_frames(lengths).sum())
    expected_mean = torch.cat([
        torch.log(enhancer.stft(noisy[b : b + 1, : int(lengths[b])]).abs() + 1e-6)[0, :, : int(n)]
        for b, n in enumerate(enhancer.valid_frames(lengths))
    ], dim=1).double().mean(dim=1)  # fmt: skip
    assert torch.allclose(enhancer.stat_sum / enhancer.stat_count, expected_mean, atol=1e-4)


def test_initial_mask_is_close_to_identity() -> None:
    enhancer = make_enhancer().eval()
    output = enhancer(torch.randn(2, 4000), torch.tensor([4000, 4000]))
    assert 0.8 < float(output.mask.detach().mean()) < 1.2


@pytest.mark.parametrize(
    "changes", [{"hop_length": 200}, {"n_fft": 0}, {"hop_length": 0}], ids=["hop>n_fft/2", "n_fft=0", "hop=0"]
)
def test_bad_stft_settings_are_refused(changes: dict[str, int]) -> None:
    with pytest.raises(UserError, match="model.enhancer"):
        make_enhancer(**changes)


def test_bad_loss_reduction_is_refused() -> None:
    with pytest.raises(UserError, match="loss_reduction"):
        make_enhancer("median")
