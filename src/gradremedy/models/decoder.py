"""Transformer attention decoder and its label-smoothed loss (ESPnet style).

    h = Embed(y_<i) · sqrt(D) + PE(i)
    for each block:  h = h + SelfAttn_causal(LN(h));  h = h + CrossAttn(LN(h), enc);  h = h + FFN(LN(h))
    P(y_i | y_<i, enc) = softmax(W · LN(h))

Token convention (shared with the tokenizer): blank = 0 (CTC only), sos = eos = vocab_size - 1.
The decoder input is [sos] + y, the target y + [eos]. Causal masking means an output position sees
only its own prefix, and padded encoder frames are masked out of cross-attention, so a hypothesis
gets the same log-probabilities alone or padded in a batch.

Label smoothing as in ESPnet: the target distribution puts 1 - ε on the reference token and
ε / (V - 1) on every other token; the loss is KL(target || model) summed over the tokens of an
utterance (padding excluded).

Incremental decoding (beam search): :meth:`TransformerDecoder.start` and :meth:`TransformerDecoder.step`
feed one token per hypothesis at a time. A :class:`DecoderState` keeps, per block, the self-attention keys
and values of every prefix position seen so far (N, H, L, d_k), and the cross-attention keys and values
once per utterance (A, H, T', d_k). A step computes the new position only: with causal masking, earlier
positions never see later ones, so their keys and values do not change. The hypotheses of one utterance
share its encoder output: their queries go through cross-attention together, as the W query positions of
one (H, W, T') product, instead of W copies of the encoder output.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from gradremedy.config import DecoderConfig
from gradremedy.models.conformer import sinusoid
from gradremedy.models.masking import lengths_to_mask


class MultiHeadAttention(nn.Module):
    """Scaled dot-product attention over ``heads`` heads; ``mask`` (broadcast to (B, H, Lq, Lk)) is True where
    a query may attend."""

    def __init__(self, d_model: int, heads: int, dropout: float) -> None:
        super().__init__()
        if d_model % heads:
            raise ValueError(f"model.decoder: d_model {d_model} is not divisible by heads {heads}")
        self.heads, self.d_k = heads, d_model // heads
        self.query, self.key, self.value = (nn.Linear(d_model, d_model) for _ in range(3))
        self.out = nn.Linear(d_model, d_model)
        self.dropout = dropout

    def split_heads(self, x: Tensor) -> Tensor:
        batch, length, _ = x.shape
        return x.view(batch, length, self.heads, self.d_k).transpose(1, 2)  # (B, L, D) -> (B, H, L, d_k)

    def project_memory(self, memory: Tensor) -> tuple[Tensor, Tensor]:
        """Keys and values (B, H, Lk, d_k) of ``memory``: reusable while the memory stays the same."""
        return self.split_heads(self.key(memory)), self.split_heads(self.value(memory))

    def forward(
        self, query: Tensor, memory: Tensor, mask: Tensor, memory_kv: tuple[Tensor, Tensor] | None = None
    ) -> Tensor:
        keys, values = memory_kv if memory_kv is not None else self.project_memory(memory)
        context = nn.functional.scaled_dot_product_attention(
            self.split_heads(self.query(query)),
            keys,
            values,
            attn_mask=mask,
            dropout_p=self.dropout if self.training else 0.0,
        )  # softmax(q·k / sqrt(d_k)) v: (B, H, Lq, d_k)
        return self.out(context.transpose(1, 2).reshape(query.shape[0], query.shape[1], -1))  # (B, Lq, D)


class DecoderBlock(nn.Module):
    """Pre-LayerNorm causal self-attention, cross-attention and ReLU feed-forward."""

    def __init__(self, d_model: int, heads: int, ffn_dim: int, dropout: float) -> None:
        super().__init__()
        self.norm_self, self.norm_cross, self.norm_ffn = (nn.LayerNorm(d_model) for _ in range(3))
        self.self_attention = MultiHeadAttention(d_model, heads, dropout)
        self.cross_attention = MultiHeadAttention(d_model, heads, dropout)
        self.ffn = nn.Sequential(
            nn.Linear(d_model, ffn_dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ffn_dim, d_model)
        )
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        h: Tensor,
        self_mask: Tensor,
        enc: Tensor,
        cross_mask: Tensor,
        enc_kv: tuple[Tensor, Tensor] | None = None,
    ) -> Tensor:
        normed = self.norm_self(h)
        h = h + self.dropout(self.self_attention(normed, normed, self_mask))
        h = h + self.dropout(self.cross_attention(self.norm_cross(h), enc, cross_mask, enc_kv))
        return h + self.dropout(self.ffn(self.norm_ffn(h)))

    def step(
        self,
        h: Tensor,
        self_kv: tuple[Tensor, Tensor],
        memory_kv: tuple[Tensor, Tensor],
        cross_mask: Tensor,
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """One new position per hypothesis (eval mode): ``h`` (N, D), the cached self-attention keys and
        values (N, H, L, d_k) of the earlier positions, the utterances' memory keys and values (A, H, T',
        d_k) and ``cross_mask`` (A, 1, 1, T'), with the N = A x W rows grouped by utterance.
        Returns the block's output (N, D) and the keys and values extended by this position."""
        attention = self.self_attention
        normed = self.norm_self(h)[:, None]  # (N, 1, D)
        # (N, H, L + 1, d_k) each
        keys = torch.cat([self_kv[0], attention.split_heads(attention.key(normed))], dim=2)
        values = torch.cat([self_kv[1], attention.split_heads(attention.value(normed))], dim=2)
        context = nn.functional.scaled_dot_product_attention(
            attention.split_heads(attention.query(normed)), keys, values
        )  # every earlier position is visible: (N, H, 1, d_k)
        h = h + attention.out(context.reshape(h.shape))  # (N, D)

        cross = self.cross_attention
        groups = memory_kv[0].shape[0]
        queries = cross.query(self.norm_cross(h)).view(groups, -1, h.shape[1])  # (A, W, D)
        context = nn.functional.scaled_dot_product_attention(
            cross.split_heads(queries), *memory_kv, attn_mask=cross_mask
        )  # the W hypotheses of an utterance as W query positions: (A, H, W, d_k)
        h = h + cross.out(context.transpose(1, 2).reshape(h.shape))  # (N, D)
        return h + self.ffn(self.norm_ffn(h)), (keys, values)


@dataclass
class DecoderState:
    """What :meth:`TransformerDecoder.step` needs from the earlier steps of N = A x W hypotheses, the W of
    each of A utterances in consecutive rows.

    ``self_kv``: per block, the self-attention keys and values of the ``length`` positions fed so far,
    (N, H, length, d_k) each; ``memory_kv``: per block, the cross-attention keys and values of the
    utterances, (A, H, T', d_k) each; ``cross_mask``: (A, 1, 1, T'), True at valid encoder frames.
    """

    self_kv: list[tuple[Tensor, Tensor]]
    memory_kv: list[tuple[Tensor, Tensor]]
    cross_mask: Tensor
    length: int

    def take(self, rows: Tensor) -> DecoderState:
        """The states of hypotheses ``rows`` (N,), each chosen among its own utterance's rows (a beam's
        parents): the utterances stay as they are."""
        return DecoderState(_take_rows(self.self_kv, rows), self.memory_kv, self.cross_mask, self.length)

    def take_utterances(self, utterances: Tensor, width: int) -> DecoderState:
        """Only the utterances ``utterances`` (A',) (kept in that order), ``width`` rows each."""
        rows = (utterances[:, None] * width + torch.arange(width, device=utterances.device)).view(-1)
        return DecoderState(
            _take_rows(self.self_kv, rows),
            _take_rows(self.memory_kv, utterances),
            self.cross_mask[utterances],
            self.length,
        )


def _take_rows(pairs: list[tuple[Tensor, Tensor]], rows: Tensor) -> list[tuple[Tensor, Tensor]]:
    """Rows ``rows`` of every (keys, values) pair."""
    return [(keys.index_select(0, rows), values.index_select(0, rows)) for keys, values in pairs]


class TransformerDecoder(nn.Module):
    """Token prefixes (B, L) + encodings (B, T', D) -> next-token logits (B, L, V)."""

    def __init__(self, cfg: DecoderConfig, vocab_size: int, d_model: int) -> None:
        super().__init__()
        self.d_model = d_model
        self.embed = nn.Embedding(vocab_size, d_model)
        nn.init.normal_(self.embed.weight, std=d_model**-0.5)  # unit scale after the sqrt(D) factor
        self.dropout = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(
            DecoderBlock(d_model, cfg.heads, cfg.ffn_dim, cfg.dropout) for _ in range(cfg.blocks)
        )
        self.norm = nn.LayerNorm(d_model)
        self.output = nn.Linear(d_model, vocab_size)
        # Inference only: the cross-attention keys/values of the last encoder output seen (see _memory).
        self._memory_cache: tuple[Tensor, tuple[int, ...], list[tuple[Tensor, Tensor]]] | None = None

    def train(self, mode: bool = True) -> TransformerDecoder:
        self._memory_cache = None
        return super().train(mode)

    def _memory(self, enc: Tensor) -> list[tuple[Tensor, Tensor]] | None:
        """Cross-attention keys/values per block, reused across calls with the very same ``enc`` tensor.

        Beam search calls the decoder once per output step with one unchanged encoder output; its
        projection is then done once instead of at every step. Only in eval mode without autograd;
        the cache key is the tensor's identity plus the in-place version counters of ``enc`` and of
        the projection weights, so new encodings or changed weights are never served stale values.
        """
        if self.training or torch.is_grad_enabled():
            return None
        projections = [t for block in self.blocks for t in block.cross_attention.parameters()]
        versions = (enc._version, *(t._version for t in projections))
        cache = self._memory_cache
        if cache is not None and cache[0] is enc and cache[1] == versions:
            return cache[2]
        memory = [block.cross_attention.project_memory(enc) for block in self.blocks]
        self._memory_cache = (enc, versions, memory)
        return memory

    def forward(
        self, prefix: Tensor, prefix_lens: Tensor, enc: Tensor, enc_lens: Tensor, last_only: bool = False
    ) -> Tensor:
        """Logits (B, L, V) for every prefix position, or (B, 1, V) for the last one with ``last_only``."""
        length = prefix.shape[1]
        positions = sinusoid(torch.arange(length, device=prefix.device), self.d_model).to(enc.dtype)  # (L, D)
        h = self.dropout(self.embed(prefix) * math.sqrt(self.d_model) + positions)  # (B, L, D)
        causal = torch.ones(length, length, dtype=torch.bool, device=prefix.device).tril()  # (L, L)
        prefix_mask = lengths_to_mask(prefix_lens, length)  # (B, L)
        self_mask = causal[None, None] & prefix_mask[:, None, None, :]  # (B, 1, L, L)
        cross_mask = lengths_to_mask(enc_lens, enc.shape[1])[:, None, None, :]  # (B, 1, 1, T')
        memory = self._memory(enc)
        for index, block in enumerate(self.blocks):
            h = block(h, self_mask, enc, cross_mask, memory[index] if memory is not None else None)
        if last_only:  # beam search needs the next-token distribution only
            h = h[:, -1:]  # (B, 1, D)
        return self.output(self.norm(h))  # (B, L, V)

    def start(self, enc: Tensor, enc_lens: Tensor, width: int) -> DecoderState:
        """The state before any token, for ``width`` hypotheses of each utterance of ``enc`` (A, T', D)."""
        rows = enc.shape[0] * width
        empty = enc.new_zeros(rows, self.blocks[0].self_attention.heads, 0, self.blocks[0].self_attention.d_k)
        return DecoderState(
            self_kv=[(empty, empty) for _ in self.blocks],
            memory_kv=[block.cross_attention.project_memory(enc) for block in self.blocks],
            cross_mask=lengths_to_mask(enc_lens, enc.shape[1])[:, None, None, :],  # (A, 1, 1, T')
            length=0,
        )

    def step(self, tokens: Tensor, state: DecoderState) -> tuple[Tensor, DecoderState]:
        """Feed one token per hypothesis (``tokens``: (N,), at position ``state.length``): next-token logits
        (N, V) and the state that includes this position. Equals the last position of :meth:`forward` on
        the whole prefix, for inference (no dropout)."""
        if self.training:
            raise RuntimeError("TransformerDecoder.step is for inference: call .eval() first")
        position = sinusoid(torch.tensor([state.length], device=tokens.device), self.d_model)  # (1, D)
        h = self.embed(tokens) * math.sqrt(self.d_model) + position.to(state.memory_kv[0][0].dtype)  # (N, D)
        self_kv = []
        for block, kv, memory_kv in zip(self.blocks, state.self_kv, state.memory_kv):
            h, kv = block.step(h, kv, memory_kv, state.cross_mask)
            self_kv.append(kv)
        logits = self.output(self.norm(h))  # (N, V)
        return logits, DecoderState(self_kv, state.memory_kv, state.cross_mask, state.length + 1)


def label_smoothing_loss(logits: Tensor, targets: Tensor, smoothing: float) -> Tensor:
    """Per-utterance KL(smoothed target || softmax(logits)) summed over tokens: (B, L, V), (B, L) -> (B,).

    ``targets`` is padded with -1; padding positions contribute nothing.
    """
    vocab = logits.shape[-1]
    log_probs = torch.log_softmax(logits.float(), dim=-1)  # (B, L, V)
    valid = targets >= 0  # (B, L)
    safe_targets = targets.clamp(min=0)
    off_target = smoothing / (vocab - 1)
    target_dist = torch.full_like(log_probs, off_target).scatter_(
        -1, safe_targets[..., None], 1.0 - smoothing
    )
    # KL = Σ_v q_v (log q_v - log p_v); q log q is 0 where q is 0 (smoothing == 0).
    entropy_term = torch.where(target_dist > 0, target_dist * target_dist.clamp(min=1e-30).log(), 0.0)
    kl = (entropy_term - target_dist * log_probs).sum(dim=-1)  # (B, L)
    return (kl * valid).sum(dim=1)


def token_accuracy(logits: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    """Per-utterance (correct, counted) token counts of the argmax prediction, padding (-1) excluded."""
    valid = targets >= 0
    correct = (logits.argmax(dim=-1) == targets) & valid  # (B, L)
    return correct.sum(dim=1), valid.sum(dim=1)
