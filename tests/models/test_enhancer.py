"""The STFT-mask SE front ends (mask_blstm, mask_tcn): perfect reconstruction, padding, the SE loss and its
masking, the interface JointModel uses, and the choice by name."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn

from gradremedy.config import EnhancerConfig, load_config
from gradremedy.models import ENHANCERS, build_enhancer
from gradremedy.models.enhancer import BLSTM, Enhancer, StftMaskEnhancer, reverse_within_lengths

KINDS = sorted(ENHANCERS)
SMALL = {
    "mask_blstm": {"lstm_layers": 2, "lstm_units": 16},
    "mask_tcn": {"tcn_channels": 16, "tcn_blocks": 3, "tcn_kernel": 3},
}


def make_enhancer(loss_reduction: str = "sum", kind: str = "mask_blstm", **changes: int) -> StftMaskEnhancer:
    settings = {"n_fft": 256, "hop_length": 128, "dropout": 0.0, **SMALL[kind], **changes}
    enhancer = build_enhancer(EnhancerConfig(kind=kind, loss_reduction=loss_reduction, **settings))
    assert isinstance(enhancer, StftMaskEnhancer)
    return enhancer


def force_mask(enhancer: StftMaskEnhancer, value: float) -> None:
    """Make the mask estimator output ``value`` everywhere (ReLU of a constant bias)."""
    with torch.no_grad():
        enhancer.to_mask.weight.zero_()
        enhancer.to_mask.bias.fill_(value)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("n_fft", "hop_length"), [(256, 128), (512, 256), (512, 128), (400, 160)])
def test_all_ones_mask_reconstructs_the_input(n_fft: int, hop_length: int, kind: str) -> None:
    enhancer = make_enhancer(n_fft=n_fft, hop_length=hop_length, kind=kind).eval()
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
    output = enhancer.analyse(noisy, lengths)
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


@pytest.mark.parametrize("kind", KINDS)
def test_enhancement_and_se_loss_do_not_depend_on_padding(kind: str) -> None:
    enhancer = make_enhancer(kind=kind)
    enhancer.train()
    enhancer(torch.randn(4, 6000), torch.tensor([6000, 5000, 4000, 3000]))  # fill the global statistics
    enhancer.eval()
    lengths = torch.tensor([6000, 2345])
    noisy, clean = torch.randn(2, 6000), torch.randn(2, 6000)
    noisy[1, 2345:] = 0.0
    clean[1, 2345:] = 0.0
    batched = enhancer(noisy, lengths, clean)
    alone = enhancer(noisy[1:, :2345], lengths[1:], clean[1:, :2345])
    assert torch.allclose(batched.enhanced[1, :2345], alone.enhanced[0], atol=1e-5)
    assert (batched.enhanced[1, 2345:] == 0).all()
    assert list(batched.losses) == ["magnitude"] and batched.losses["magnitude"].shape == (2,)
    assert torch.allclose(batched.losses["magnitude"][1], alone.losses["magnitude"][0], rtol=1e-5)


def test_se_loss_ignores_padding_frames_and_garbage_beyond_the_length() -> None:
    enhancer = make_enhancer().eval()
    lengths = torch.tensor([4000, 1500])
    noisy = torch.randn(2, 4000)
    clean = torch.randn(2, 4000)
    output = enhancer.analyse(noisy, lengths)
    loss = enhancer.loss(output, clean, lengths)
    clean_garbage = clean.clone()
    clean_garbage[1, 1500:] = 50.0  # a reference that was not zero-padded
    assert torch.allclose(enhancer.loss(output, clean_garbage, lengths), loss)
    assert (output.mask[1, :, int(output.frame_lens[1]) :] == 0).all()


def test_mean_reduction_divides_by_the_number_of_bins() -> None:
    summed, averaged = make_enhancer("sum").eval(), make_enhancer("mean").eval()
    averaged.load_state_dict(summed.state_dict())
    noisy, clean, lengths = torch.randn(2, 3000), torch.randn(2, 3000), torch.tensor([3000, 2000])
    loss_sum = summed(noisy, lengths, clean).losses["magnitude"]
    loss_mean = averaged(noisy, lengths, clean).losses["magnitude"]
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


@pytest.mark.parametrize("kind", KINDS)
def test_initial_mask_is_close_to_identity(kind: str) -> None:
    enhancer = make_enhancer(kind=kind).eval()
    output = enhancer.analyse(torch.randn(2, 4000), torch.tensor([4000, 4000]))
    assert 0.8 < float(output.mask.detach().mean()) < 1.2


@pytest.mark.parametrize(
    "changes", [{"hop_length": 200}, {"n_fft": 0}, {"hop_length": 0}], ids=["hop>n_fft/2", "n_fft=0", "hop=0"]
)
def test_bad_stft_settings_are_refused(changes: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="model.enhancer"):
        make_enhancer(**changes)


def test_bad_loss_reduction_is_refused() -> None:
    with pytest.raises(ValueError, match="loss_reduction"):
        make_enhancer("median")


@pytest.mark.parametrize("kind", KINDS)
def test_every_front_end_keeps_the_interface(kind: str) -> None:
    enhancer = make_enhancer(kind=kind)
    assert isinstance(enhancer, Enhancer) and isinstance(enhancer, ENHANCERS[kind])
    noisy, lengths = torch.randn(2, 3000), torch.tensor([3000, 2000])
    plain = enhancer(noisy, lengths)
    assert plain.enhanced.shape == noisy.shape and plain.losses == {}  # no reference, no loss terms
    losses = enhancer(noisy, lengths, torch.randn(2, 3000)).losses
    total = sum(losses.values()).sum()
    total.backward()
    shared = enhancer.shared_parameters()
    assert shared and all(p.grad is not None for p in shared)  # the SE loss reaches every shared parameter


def test_the_tcn_mask_is_causal_a_later_frame_never_changes_an_earlier_one() -> None:
    enhancer = make_enhancer(kind="mask_tcn").eval()
    features = torch.randn(1, 40, enhancer.num_bins)  # (B, N, F)
    changed = features.clone()
    changed[:, 25:] = torch.randn(1, 15, enhancer.num_bins)
    lengths = torch.tensor([40])
    before, after = enhancer.mask_logits(features, lengths), enhancer.mask_logits(changed, lengths)
    assert torch.equal(before[:, :25], after[:, :25]) and not torch.allclose(before[:, 25:], after[:, 25:])


def test_the_tiny_configs_tcn_front_end_is_lighter_than_a_blstm_mask() -> None:
    tiny = load_config(Path(__file__).parents[2] / "configs" / "tiny.yaml").model.enhancer
    assert tiny.kind == "mask_tcn"
    blstm = replace(tiny, kind="mask_blstm", lstm_layers=1, lstm_units=64)  # tiny's front end before
    count = lambda kind_cfg: sum(p.numel() for p in build_enhancer(kind_cfg).parameters())  # noqa: E731
    assert count(tiny) < count(blstm) / 3  # 0.05 M against 0.20 M


def test_front_ends_are_chosen_by_name_and_foreign_settings_are_refused() -> None:
    assert type(build_enhancer(EnhancerConfig())).__name__ == "BLSTMMaskEnhancer"  # the default kind
    with pytest.raises(ValueError, match=r"model.enhancer.kind: unknown front end 'conv' \(known: mask_"):
        build_enhancer(EnhancerConfig(kind="conv"))
    with pytest.raises(ValueError, match="model.enhancer.lstm_units is a setting of kind 'mask_blstm'"):
        build_enhancer(EnhancerConfig(kind="mask_tcn", lstm_units=32))
    with pytest.raises(ValueError, match="model.enhancer.tcn_blocks must be at least 1"):
        make_enhancer(kind="mask_tcn", tcn_blocks=0)


@pytest.mark.parametrize(
    "path", sorted((Path(__file__).parents[2] / "configs").glob("*.yaml")), ids=lambda p: p.name
)
def test_every_shipped_config_but_tiny_keeps_the_blstm_mask(path: Path) -> None:
    """A config that names no front end gets the default, the BLSTM mask: every shipped config does but
    tiny.yaml, whose demo budget takes the light TCN mask."""
    expected = "TCNMaskEnhancer" if path.name == "tiny.yaml" else "BLSTMMaskEnhancer"
    assert ENHANCERS[load_config(path).model.enhancer.kind].__name__ == expected


@pytest.mark.parametrize("dilation,kernel,bias", [(2, 3, True), (4, 3, False), (3, 5, True)])
def test_the_shifted_sum_dilated_depthwise_conv_equals_conv1d(dilation: int, kernel: int, bias: bool) -> None:
    from gradremedy.models.mask_tcn import dilated_depthwise_conv

    torch.manual_seed(0)
    conv = nn.Conv1d(6, 6, kernel, dilation=dilation, groups=6, bias=bias).double()
    x = torch.randn(3, 6, 40, dtype=torch.float64, requires_grad=True)
    ours = dilated_depthwise_conv(x, conv.weight, conv.bias, dilation)
    reference = conv(x)
    torch.testing.assert_close(ours, reference)
    grad_out = torch.randn_like(reference)
    ours_grads = torch.autograd.grad(ours, [x, *conv.parameters()], grad_out)
    reference_grads = torch.autograd.grad(reference, [x, *conv.parameters()], grad_out)
    for got, expected in zip(ours_grads, reference_grads):
        torch.testing.assert_close(got, expected)
