"""Conformer encoder (Gulati et al., 2020) as used by ESPnet and the authors' recipe.

    x = Conv2dSubsampling(features)                   4x fewer frames, (B, T', D)
    for each block:
        x = x + ½ · FFN(x)                            macaron half-step feed-forward
        x = x + RelPosMHSA(x)                         relative positional self-attention
        x = x + ConvModule(x)                         pointwise, GLU, depthwise k, LayerNorm, swish, pointwise
        x = x + ½ · FFN(x)
        x = LayerNorm(x)
    enc = LayerNorm(x)

Self-attention is the Transformer-XL relative-position form (Dai et al., 2019) in ESPnet's
``rel_pos`` variant: with sinusoidal embeddings p_{i-j} of every offset i - j in [-(T'-1), T'-1],

    score(i, j) = [(q_i + u) · k_j + (q_i + v) · W_pos p_{i-j}] / sqrt(d_k)

with learned per-head biases u (``pos_bias_u``) and v (``pos_bias_v``). Scores depend on i - j
only, never on the padded length.

Departure from the paper: the convolution module normalises with LayerNorm instead of BatchNorm,
because BatchNorm's batch statistics would mix padding frames (and other utterances) into every
result; with LayerNorm an utterance's encoding is the same alone or in any batch. Padding frames are
set to zero before the depthwise convolution for the same reason.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from gradremedy.config import EncoderConfig
from gradremedy.models.masking import lengths_to_mask


def subsampled_lengths(lengths: Tensor) -> Tensor:
    """Frames left after two 3x3 convolutions of stride 2 without padding: ((L - 1)//2 - 1)//2."""
    return torch.div(torch.div(lengths - 1, 2, rounding_mode="floor") - 1, 2, rounding_mode="floor")


class Conv2dSubsampling(nn.Module):
    """Two Conv2d(3x3, stride 2) + ReLU layers over (time, frequency), then Linear to d_model."""

    def __init__(self, in_features: int, d_model: int, channels: int) -> None:
        super().__init__()
        self.convs = nn.Sequential(
            nn.Conv2d(1, channels, 3, 2), nn.ReLU(), nn.Conv2d(channels, channels, 3, 2), nn.ReLU()
        )
        reduced = ((in_features - 1) // 2 - 1) // 2
        if reduced < 1:
            raise ValueError(
                f"model.frontend.n_mels: {in_features} mel bins are too few for conv2d subsampling (>= 7)"
            )
        self.out = nn.Linear(channels * reduced, d_model)

    def forward(self, features: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        x = self.convs(features.unsqueeze(1))  # (B, 1, N, F) -> (B, C, T', F')
        batch, channels, frames, bins = x.shape
        x = self.out(x.transpose(1, 2).reshape(batch, frames, channels * bins))  # (B, T', C*F') -> (B, T', D)
        return x, subsampled_lengths(lengths)


def sinusoid(positions: Tensor, d_model: int) -> Tensor:
    """Sinusoidal embeddings (len(positions), d_model): sin on even, cos on odd dimensions."""
    inverse_freq = torch.exp(
        torch.arange(0, d_model, 2, device=positions.device, dtype=torch.float32)
        * (-math.log(10000.0) / d_model)
    )  # (D/2,)
    angles = positions.to(torch.float32)[:, None] * inverse_freq[None, :]  # (P, D/2)
    return torch.stack([angles.sin(), angles.cos()], dim=-1).reshape(len(positions), d_model)  # (P, D)


class RelPositionMultiHeadAttention(nn.Module):
    """Multi-head self-attention with Transformer-XL relative positions (ESPnet ``rel_pos``)."""

    def __init__(self, d_model: int, heads: int, dropout: float) -> None:
        super().__init__()
        if d_model % heads:
            raise ValueError(f"model.encoder: d_model {d_model} is not divisible by heads {heads}")
        self.heads, self.d_k = heads, d_model // heads
        self.query, self.key, self.value = (nn.Linear(d_model, d_model) for _ in range(3))
        self.linear_pos = nn.Linear(d_model, d_model, bias=False)
        self.out = nn.Linear(d_model, d_model)
        self.pos_bias_u = nn.Parameter(torch.empty(heads, self.d_k))
        self.pos_bias_v = nn.Parameter(torch.empty(heads, self.d_k))
        nn.init.xavier_uniform_(self.pos_bias_u)
        nn.init.xavier_uniform_(self.pos_bias_v)
        self.dropout = dropout

    def _split(self, x: Tensor) -> Tensor:
        return x.view(x.shape[0], x.shape[1], self.heads, self.d_k).transpose(
            1, 2
        )  # (B, T, D) -> (B, H, T, d_k)

    def forward(self, x: Tensor, key_mask: Tensor) -> Tensor:
        """x (B, T, D), key_mask (B, T) True at valid frames -> (B, T, D)."""
        batch, frames, _ = x.shape
        q = self._split(self.query(x))  # (B, H, T, d_k)
        k, v = self._split(self.key(x)), self._split(self.value(x))
        offsets = torch.arange(frames - 1, -frames, -1, device=x.device)  # (2T-1,): T-1 ... -(T-1)
        pos = self.linear_pos(sinusoid(offsets, x.shape[-1]).to(x.dtype))  # (2T-1, D)
        pos = pos.view(2 * frames - 1, self.heads, self.d_k).transpose(0, 1)  # (H, 2T-1, d_k)
        u, v_bias = self.pos_bias_u.to(q.dtype), self.pos_bias_v.to(q.dtype)  # (H, d_k), autocast-safe
        position_scores = (q + v_bias[:, None, :]) @ pos.to(q.dtype).transpose(-1, -2)  # (B, H, T, 2T-1)
        # Column (T-1) - (i - j) holds offset i - j: pick it for every (i, j).
        index = (
            (frames - 1)
            - torch.arange(frames, device=x.device)[:, None]
            + torch.arange(frames, device=x.device)
        )
        position_scores = position_scores.gather(
            -1, index.expand(batch, self.heads, frames, frames)
        )  # (B,H,T,T)
        bias = position_scores / math.sqrt(self.d_k)
        bias = bias.masked_fill(~key_mask[:, None, None, :], torch.finfo(bias.dtype).min)
        context = nn.functional.scaled_dot_product_attention(
            q + u[:, None, :],
            k,
            v,
            attn_mask=bias,
            dropout_p=self.dropout if self.training else 0.0,
        )  # softmax(((q+u)·k + (q+v)·p) / sqrt(d_k)) v: (B, H, T, d_k)
        return self.out(context.transpose(1, 2).reshape(batch, frames, -1))  # (B, T, D)


class FeedForward(nn.Module):
    """LayerNorm -> Linear -> swish -> dropout -> Linear -> dropout."""

    def __init__(self, d_model: int, ffn_dim: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(d_model),
            nn.Linear(d_model, ffn_dim),
            nn.SiLU(),
            nn.Dropout(dropout),
            nn.Linear(ffn_dim, d_model),
            nn.Dropout(dropout),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class ConvModule(nn.Module):
    """LayerNorm -> pointwise conv (2D) -> GLU -> depthwise conv k -> LayerNorm -> swish -> pointwise conv."""

    def __init__(self, d_model: int, kernel_size: int, dropout: float) -> None:
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"model.encoder.conv_kernel must be odd, got {kernel_size}")
        self.norm_in = nn.LayerNorm(d_model)
        # Pointwise convolutions are Linear layers on (B, T, D): the same maths, faster on a CPU.
        self.pointwise_in = nn.Linear(d_model, 2 * d_model)
        self.depthwise = nn.Conv1d(d_model, d_model, kernel_size, padding=kernel_size // 2, groups=d_model)
        self.norm_mid = nn.LayerNorm(d_model)
        self.pointwise_out = nn.Linear(d_model, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, frame_mask: Tensor) -> Tensor:
        """x (B, T, D), frame_mask (B, T) -> (B, T, D)."""
        y = nn.functional.glu(self.pointwise_in(self.norm_in(x)), dim=-1)  # (B, T, 2D) -> (B, T, D)
        y = (y * frame_mask[..., None]).transpose(1, 2)  # (B, D, T), padding zeroed
        y = self.depthwise(y).transpose(1, 2)  # (B, T, D)
        y = nn.functional.silu(self.norm_mid(y))
        return self.dropout(self.pointwise_out(y))  # (B, T, D)


class ConformerBlock(nn.Module):
    """Macaron FFN, relative-position MHSA, convolution, macaron FFN, LayerNorm."""

    def __init__(self, d_model: int, heads: int, ffn_dim: int, kernel_size: int, dropout: float) -> None:
        super().__init__()
        self.ffn_first = FeedForward(d_model, ffn_dim, dropout)
        self.norm_attention = nn.LayerNorm(d_model)
        self.attention = RelPositionMultiHeadAttention(d_model, heads, dropout)
        self.attention_dropout = nn.Dropout(dropout)
        self.conv = ConvModule(d_model, kernel_size, dropout)
        self.ffn_second = FeedForward(d_model, ffn_dim, dropout)
        self.norm_out = nn.LayerNorm(d_model)

    def forward(self, x: Tensor, frame_mask: Tensor) -> Tensor:
        x = x + 0.5 * self.ffn_first(x)
        x = x + self.attention_dropout(self.attention(self.norm_attention(x), frame_mask))
        x = x + self.conv(x, frame_mask)
        x = x + 0.5 * self.ffn_second(x)
        return self.norm_out(x)


class ConformerEncoder(nn.Module):
    """Features (B, N, n_mels) with frame counts -> encodings (B, T', D) with counts (B,)."""

    def __init__(self, cfg: EncoderConfig, in_features: int) -> None:
        super().__init__()
        channels = cfg.subsampling_channels or cfg.d_model
        self.subsampling = Conv2dSubsampling(in_features, cfg.d_model, channels)
        self.input_scale = math.sqrt(cfg.d_model)  # ESPnet scales the input before adding positions
        self.input_dropout = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(
            ConformerBlock(cfg.d_model, cfg.heads, cfg.ffn_dim, cfg.conv_kernel, cfg.dropout)
            for _ in range(cfg.blocks)
        )
        self.norm = nn.LayerNorm(cfg.d_model)

    def forward(self, features: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        x, enc_lens = self.subsampling(features, lengths)  # (B, T', D)
        frame_mask = lengths_to_mask(enc_lens, x.shape[1])  # (B, T')
        x = self.input_dropout(x * self.input_scale)
        for block in self.blocks:
            x = block(x, frame_mask)
        return self.norm(x) * frame_mask[..., None], enc_lens
