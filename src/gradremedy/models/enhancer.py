"""The SE front end: the :class:`Enhancer` interface, the STFT-mask base, and the BLSTM mask (``mask_blstm``).

An enhancer takes a padded batch of noisy waveforms (B, T), their lengths (B,) and optionally the clean
references (B, T); it returns the enhanced waveforms (B, T) and, given references, its SE loss terms per
utterance (B,). :meth:`Enhancer.shared_parameters` names what gradient surgery treats as shared between
the SE and the ASR loss. Front ends are chosen by ``model.enhancer.kind`` (:mod:`gradremedy.models.registry`).

The default, ``mask_blstm``: STFT -> BLSTM mask -> iSTFT (Hu et al., ICASSP 2023).

    Y = STFT(y)                                   noisy complex spectrum (B, F, N), Hann window
    M = ReLU(W · BLSTM(MVN(log |Y|)) + b)         one real mask value per time-frequency bin
    x̂ = iSTFT(M ⊙ Y)                              enhanced waveform, noisy phase, input length
    L_se(b) = Σ_{t,f} (M|Y| - |S|)² / N_b         per utterance (N_b valid frames; "mean": also / F)

Framing. The STFT is centred with *zero* padding (``pad_mode="constant"``) and the waveform gets
``n_fft`` extra zeros on the right, so that every frame touching a valid sample exists whatever the
batch padding is. Utterance b has ``N_b = ceil((L_b + n_fft/2) / hop)`` valid frames: exactly the
frames that overlap its samples [0, L_b). Their content is the same alone or padded in a batch, the
BLSTM's backward direction reads each utterance reversed *within its own length* (so it starts at
frame N_b - 1, never on padding), and the mask is zero beyond N_b: padding never changes the
enhanced samples or the loss. (Packed sequences would do the same, but on a CPU they lose the fused
LSTM kernel: the BLSTM's forward + backward ran 3-5x slower with them in our measurements.)

Feature normalisation: log-magnitude followed by *global* mean/variance normalisation per frequency
bin, as in the authors' recipe. The statistics are cumulative sums over every valid training frame
seen so far, kept as buffers (float64) and frozen in eval mode: this converges to the corpus-level
statistics the authors precompute, needs no separate statistics pass, and unlike a per-frame
LayerNorm it keeps the frame energy, which is what tells speech from noise. Framing, normalisation and
the loss belong to :class:`StftMaskEnhancer`, shared by every mask front end; a subclass supplies only
the network from normalised log-magnitudes to the mask.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import Tensor, nn

from gradremedy.config import EnhancerConfig
from gradremedy.models.masking import lengths_to_mask

_LOG_FLOOR = 1e-6  # keeps log|Y| finite on digital silence


def reverse_within_lengths(x: Tensor, lengths: Tensor) -> Tensor:
    """Reverse each sequence of (B, N, C) over its first lengths[b] steps; padding steps stay in place."""
    steps = torch.arange(x.shape[1], device=x.device)[None, :]  # (1, N)
    source = torch.where(steps < lengths[:, None], lengths[:, None] - 1 - steps, steps)  # (B, N)
    return x.gather(1, source[..., None].expand_as(x))


class BLSTM(nn.Module):
    """Stacked bidirectional LSTM whose backward direction never sees padding.

    Layer l: h_fwd = LSTM_fwd(x);  h_bwd = rev(LSTM_bwd(rev(x)));  x = dropout([h_fwd; h_bwd])
    where rev reverses each utterance within its own length. The forward direction is causal, so
    trailing padding cannot reach its valid outputs either.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int, dropout: float) -> None:
        super().__init__()
        sizes = [input_size] + [2 * hidden_size] * (num_layers - 1)
        self.forward_layers = nn.ModuleList(nn.LSTM(size, hidden_size, batch_first=True) for size in sizes)
        self.backward_layers = nn.ModuleList(nn.LSTM(size, hidden_size, batch_first=True) for size in sizes)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        """(B, N, C) with lengths (B,) -> (B, N, 2H); the last layer's output is not dropped out here."""
        if x.device.type == "cuda":
            return self._layers(x, lengths)
        with torch.autocast(device_type=x.device.type, enabled=False):  # oneDNN has no bf16/fp16 LSTM
            return self._layers(x.float(), lengths)

    def _layers(self, x: Tensor, lengths: Tensor) -> Tensor:
        for index, (forward_lstm, backward_lstm) in enumerate(zip(self.forward_layers, self.backward_layers)):
            if index > 0:
                x = self.dropout(x)
            ahead = forward_lstm(x)[0]  # (B, N, H)
            behind = reverse_within_lengths(backward_lstm(reverse_within_lengths(x, lengths))[0], lengths)
            x = torch.cat([ahead, behind], dim=-1)  # (B, N, 2H)
        return x


@dataclass
class Enhanced:
    """What every enhancer returns for a batch."""

    enhanced: Tensor  # (B, T) waveform, zero beyond each length
    losses: dict[str, Tensor] = field(default_factory=dict)  # SE loss terms (B,); empty without references


class Enhancer(nn.Module):
    """The interface of an SE front end (see the module docstring)."""

    def forward(self, noisy: Tensor, noisy_lens: Tensor, clean: Tensor | None = None) -> Enhanced:
        """Enhance (B, T) waveforms with lengths (B,); with ``clean`` (B, T), also the SE loss terms."""
        raise NotImplementedError

    def shared_parameters(self) -> list[nn.Parameter]:
        """The parameters both the SE and the ASR loss reach: by default every parameter of the front end."""
        return list(self.parameters())


@dataclass
class MaskOutput:
    """The intermediate values of an STFT-mask front end for one batch."""

    enhanced: Tensor  # (B, T) waveform, zero beyond each length
    mask: Tensor  # (B, F, N) real mask, zero beyond each utterance's valid frames
    noisy_magnitude: Tensor  # (B, F, N) |Y|
    frame_lens: Tensor  # (B,) valid STFT frames per utterance


class StftMaskEnhancer(Enhancer):
    """STFT -> normalised log-magnitude -> mask network -> iSTFT, with the magnitude SE loss.

    A subclass implements :meth:`mask_logits` (``num_bins`` features in, ``num_bins`` values out per
    frame); the mask is their ReLU, zeroed beyond each utterance's valid frames.
    """

    def __init__(self, cfg: EnhancerConfig) -> None:
        super().__init__()
        if cfg.hop_length <= 0 or cfg.n_fft <= 0 or cfg.hop_length > cfg.n_fft // 2:
            raise ValueError(
                f"model.enhancer: need 0 < hop_length <= n_fft/2 for a Hann-window iSTFT "
                f"(got n_fft {cfg.n_fft}, hop_length {cfg.hop_length})"
            )
        if cfg.loss_reduction not in ("sum", "mean"):
            raise ValueError(
                f"model.enhancer.loss_reduction must be 'sum' or 'mean', got {cfg.loss_reduction!r}"
            )
        self.n_fft = cfg.n_fft
        self.hop_length = cfg.hop_length
        self.loss_reduction = cfg.loss_reduction
        self.num_bins = cfg.n_fft // 2 + 1
        self.register_buffer("window", torch.hann_window(cfg.n_fft), persistent=False)
        # Cumulative global statistics of log|Y| per frequency bin (see module docstring).
        self.register_buffer("stat_count", torch.zeros((), dtype=torch.float64))
        self.register_buffer("stat_sum", torch.zeros(self.num_bins, dtype=torch.float64))
        self.register_buffer("stat_sq_sum", torch.zeros(self.num_bins, dtype=torch.float64))

    def mask_logits(self, features: Tensor, frame_lens: Tensor) -> Tensor:
        """(B, N, F) normalised log-magnitudes with valid frames (B,) -> (B, N, F) mask before the ReLU."""
        raise NotImplementedError

    # -- framing ---------------------------------------------------------------------------------
    def valid_frames(self, num_samples: Tensor) -> Tensor:
        """Frames overlapping samples [0, L): ceil((L + n_fft/2) / hop)."""
        return torch.div(
            num_samples + self.n_fft // 2 + self.hop_length - 1, self.hop_length, rounding_mode="floor"
        )

    def stft(self, waveform: Tensor) -> Tensor:
        """(B, T) -> complex (B, F, N) with n_fft zeros appended so every valid frame exists."""
        padded = nn.functional.pad(waveform, (0, self.n_fft))  # (B, T + n_fft)
        return torch.stft(
            padded,
            self.n_fft,
            self.hop_length,
            window=self.window,
            center=True,
            pad_mode="constant",
            return_complex=True,
        )

    def istft(self, spectrum: Tensor, num_samples: int) -> Tensor:
        """complex (B, F, N) -> (B, num_samples), the inverse of :meth:`stft`."""
        waveform = torch.istft(
            spectrum,
            self.n_fft,
            self.hop_length,
            window=self.window,
            center=True,
            length=num_samples + self.n_fft,
        )  # (B, T + n_fft)
        return waveform[:, :num_samples]

    # -- normalisation ---------------------------------------------------------------------------
    def _normalise(self, log_magnitude: Tensor, frame_mask: Tensor) -> Tensor:
        """Global MVN of (B, N, F) log-magnitudes; training mode first adds the valid frames to the stats."""
        if self.training:
            with torch.no_grad():
                valid = log_magnitude[frame_mask].double()  # (frames, F)
                count = torch.full((1,), float(valid.shape[0]), dtype=torch.float64, device=valid.device)
                batch_stats = torch.cat([count, valid.sum(dim=0), (valid * valid).sum(dim=0)])  # (1 + 2F,)
                if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
                    # Distributed training (torchrun): every rank adds the whole global batch, so the
                    # statistics (and the normalisation) are those of a single process.
                    dist.all_reduce(batch_stats)
                self.stat_count += batch_stats[0]
                self.stat_sum += batch_stats[1 : 1 + self.num_bins]
                self.stat_sq_sum += batch_stats[1 + self.num_bins :]
        count = self.stat_count.clamp(min=1.0)
        mean = self.stat_sum / count
        variance = (self.stat_sq_sum / count - mean * mean).clamp(min=1e-8)
        std = torch.where(self.stat_count > 0, variance.sqrt(), torch.ones_like(variance))
        return (log_magnitude - mean.to(log_magnitude.dtype)) / std.to(log_magnitude.dtype)

    # -- forward ---------------------------------------------------------------------------------
    def analyse(self, noisy: Tensor, noisy_lens: Tensor) -> MaskOutput:
        """Enhance a padded batch (B, T) of waveforms with lengths (B,) in samples; keep the mask."""
        num_samples = noisy.shape[1]
        sample_mask = lengths_to_mask(noisy_lens, num_samples)  # (B, T)
        noisy = noisy * sample_mask
        spectrum = self.stft(noisy)  # (B, F, N) complex
        magnitude = spectrum.abs()  # (B, F, N)
        frame_lens = self.valid_frames(noisy_lens)  # (B,)
        frame_mask = lengths_to_mask(frame_lens, spectrum.shape[-1])  # (B, N)

        features = self._normalise(torch.log(magnitude + _LOG_FLOOR).transpose(1, 2), frame_mask)  # (B, N, F)
        mask = torch.relu(self.mask_logits(features, frame_lens))  # (B, N, F)
        mask = (mask * frame_mask.unsqueeze(-1)).transpose(1, 2)  # (B, F, N), zero on padding frames

        enhanced = self.istft(mask * spectrum, num_samples) * sample_mask  # (B, T)
        return MaskOutput(enhanced=enhanced, mask=mask, noisy_magnitude=magnitude, frame_lens=frame_lens)

    def forward(self, noisy: Tensor, noisy_lens: Tensor, clean: Tensor | None = None) -> Enhanced:
        output = self.analyse(noisy, noisy_lens)
        losses = {} if clean is None else {"magnitude": self.loss(output, clean, noisy_lens)}
        return Enhanced(output.enhanced, losses)

    def loss(self, output: MaskOutput, clean: Tensor, clean_lens: Tensor) -> Tensor:
        """Per-utterance SE loss (B,): Σ_{t,f} (M|Y| - |S|)² over valid frames / N_b (/ F for "mean")."""
        clean = clean * lengths_to_mask(clean_lens, clean.shape[1])
        clean_magnitude = self.stft(clean).abs()  # (B, F, N)
        frame_mask = lengths_to_mask(output.frame_lens, clean_magnitude.shape[-1]).unsqueeze(1)  # (B, 1, N)
        error = (output.mask * output.noisy_magnitude - clean_magnitude).pow(2) * frame_mask  # (B, F, N)
        per_utterance = error.sum(dim=(1, 2)) / output.frame_lens.to(error.dtype)  # (B,)
        if self.loss_reduction == "mean":
            per_utterance = per_utterance / self.num_bins
        return per_utterance


class BLSTMMaskEnhancer(StftMaskEnhancer):
    """``mask_blstm``: the mask from a stacked BLSTM and a linear layer (the authors' front end)."""

    SETTINGS = ("lstm_layers", "lstm_units")

    def __init__(self, cfg: EnhancerConfig) -> None:
        super().__init__(cfg)
        self.blstm = BLSTM(self.num_bins, cfg.lstm_units, cfg.lstm_layers, cfg.dropout)
        self.dropout = nn.Dropout(cfg.dropout)
        self.to_mask = nn.Linear(2 * cfg.lstm_units, self.num_bins)
        # Start as (almost) the identity: mask ≈ 1, so the ASR back end first sees the noisy speech
        # instead of a random filtering of it, and ReLU units start in their active range.
        nn.init.normal_(self.to_mask.weight, std=0.01)
        nn.init.ones_(self.to_mask.bias)

    def mask_logits(self, features: Tensor, frame_lens: Tensor) -> Tensor:
        hidden = self.blstm(features, frame_lens)  # (B, N, 2H)
        return self.to_mask(self.dropout(hidden))  # (B, N, F)
