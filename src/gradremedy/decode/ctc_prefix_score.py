"""CTC prefix scores for beam search (Watanabe et al., "Hybrid CTC/Attention Architecture for End-to-End
Speech Recognition", IEEE JSTSP 2017, Algorithm 2), vectorised over hypotheses and candidate tokens.

For a prefix g (without <sos>) and a candidate token c, the prefix score is

    psi(g + c) = log P(the CTC output starts with g + c | x)

i.e. the total probability of every frame alignment whose collapsed label sequence has g + c as a prefix.
For c = <eos> it is log P(the CTC output is exactly g | x). The forward variables, per frame t,

    r_t^n(h): log P(x_1..t aligned to h, the last frame emitting h's last label)
    r_t^b(h): log P(x_1..t aligned to h, the last frame emitting blank)

follow the recursion of Algorithm 2 (all in log space):

    phi_t      = r_t^b(g) + (r_t^n(g) if c != last(g) else -inf)
    r_t^n(h)   = logaddexp(r_{t-1}^n(h), phi_{t-1}) + x_t(c)
    r_t^b(h)   = logaddexp(r_{t-1}^b(h), r_{t-1}^n(h)) + x_t(blank)
    psi(h)     = logsumexp_t(phi_{t-1} + x_t(c))           (plus r_0^n(h) when g is empty)

Utterances of different lengths share one padded tensor: padded frames get log P(blank) = 0 and
log P(other) = -inf, so every variable carries through them unchanged and r at the last padded frame equals
r at the utterance's last real frame.

The loop over frames stays in Python (the recursion is sequential in t); every step works on all
hypotheses x candidates at once, so the cost per decoding step is T small tensor operations.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

NEG_INF = float("-inf")


@dataclass
class CTCPrefixState:
    """Forward variables of N prefixes g: ``r`` (T, 2, N) = (r^n, r^b) per frame, ``last`` (N,) the last
    label of each prefix (-1 for the empty prefix), ``length`` the number of labels in every prefix."""

    r: torch.Tensor
    last: torch.Tensor
    length: int


class CTCPrefixScorer:
    """Prefix scores of N hypotheses against their utterances' CTC posteriors.

    ``log_probs``: (N, T, V) CTC log-posteriors (one row per hypothesis; repeat an utterance's row for each
    of its beams); ``lengths``: (N,) valid frames per row; ``blank``/``eos``: token ids.
    """

    def __init__(self, log_probs: torch.Tensor, lengths: torch.Tensor, blank: int, eos: int):
        num_hyps, num_frames, vocab = log_probs.shape
        frame = torch.arange(num_frames, device=log_probs.device)
        padded = frame[None, :] >= lengths.to(log_probs.device)[:, None]  # (N, T)
        dtype = torch.float64 if log_probs.dtype == torch.float64 else torch.float32
        x = log_probs.to(dtype).masked_fill(padded[:, :, None], NEG_INF)
        x[:, :, blank] = x[:, :, blank].masked_fill(padded, 0.0)
        self.x = x.transpose(0, 1).contiguous()  # (T, N, V), time-major for the frame loop
        self.blank = blank
        self.eos = eos
        self.vocab_size = vocab
        self.num_frames = num_frames

    def take(self, rows: torch.Tensor) -> CTCPrefixScorer:
        """A scorer for a subset of the hypotheses (``rows``: (K,) indices), e.g. when utterances finish."""
        subset = object.__new__(CTCPrefixScorer)
        subset.__dict__.update(self.__dict__)
        subset.x = self.x[:, rows]
        return subset

    def initial_state(self) -> CTCPrefixState:
        """The empty prefix: no label emitted, r^b = cumulative blank log-probability."""
        num_hyps = self.x.shape[1]
        r = torch.full((self.num_frames, 2, num_hyps), NEG_INF, dtype=self.x.dtype, device=self.x.device)
        r[:, 1] = torch.cumsum(self.x[:, :, self.blank], dim=0)
        last = torch.full((num_hyps,), -1, dtype=torch.long, device=self.x.device)
        return CTCPrefixState(r=r, last=last, length=0)

    def score(self, state: CTCPrefixState, candidates: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Prefix scores of g + c for every hypothesis g and candidate c.

        ``candidates``: (N, C) token ids (may include ``eos``; ``blank`` gets -inf).
        Returns ``psi`` (N, C) and the new forward variables ``r`` (T, 2, N, C) for :meth:`select`.
        """
        x, r_prev = self.x, state.r
        num_frames = self.num_frames
        num_hyps, num_cand = candidates.shape
        x_c = torch.gather(x, 2, candidates[None].expand(num_frames, -1, -1))  # (T, N, C)
        x_blank = x[:, :, self.blank][:, :, None]  # (T, N, 1)

        # phi_t: probability of g ending by frame t, ready to emit c at t+1 (repeat needs a blank between)
        same = (candidates == state.last[:, None])[None]  # (1, N, C)
        r_n_prev = r_prev[:, 0, :, None].expand(-1, -1, num_cand)  # (T, N, C)
        r_b_prev = r_prev[:, 1, :, None]
        phi = torch.logaddexp(r_b_prev, r_n_prev.masked_fill(same, NEG_INF))  # (T, N, C)

        r = torch.full((num_frames, 2, num_hyps, num_cand), NEG_INF, dtype=x.dtype, device=x.device)
        if state.length == 0:
            r[0, 0] = x_c[0]
        # h has length+1 labels: its last label cannot be emitted before frame index `length`
        start = max(state.length, 1)
        for t in range(start, num_frames):
            r[t, 0] = torch.logaddexp(r[t - 1, 0], phi[t - 1]) + x_c[t]
            r[t, 1] = torch.logaddexp(r[t - 1, 0], r[t - 1, 1]) + x_blank[t]

        terms = torch.cat([r[start - 1, 0][None], phi[start - 1 : num_frames - 1] + x_c[start:]], dim=0)
        psi = torch.logsumexp(terms, dim=0)  # (N, C)
        # <eos>: the whole output is exactly g, i.e. g ended by the last frame
        final = torch.logaddexp(r_prev[-1, 0], r_prev[-1, 1])[:, None].expand(-1, num_cand)
        psi = torch.where(candidates == self.eos, final, psi)
        psi = psi.masked_fill(candidates == self.blank, NEG_INF)
        return psi, r

    @staticmethod
    def select(
        r: torch.Tensor, candidates: torch.Tensor, parent: torch.Tensor, column: torch.Tensor, length: int
    ) -> CTCPrefixState:
        """State of the chosen extensions: hypothesis ``parent[k]`` extended by its candidate ``column[k]``.

        ``r``: (T, 2, N, C) from :meth:`score`; ``parent``, ``column``: (K,). ``length`` is the new prefix
        length (the parents' length + 1).
        """
        return CTCPrefixState(
            r=r[:, :, parent, column],  # (T, 2, K)
            last=candidates[parent, column],
            length=length,
        )
