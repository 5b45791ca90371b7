"""CTC prefix scores for beam search (Watanabe et al., "Hybrid CTC/Attention Architecture for End-to-End
Speech Recognition", IEEE JSTSP 2017, Algorithm 2), vectorised over hypotheses, candidates and frames.

For a prefix g (without <sos>) and a candidate token c, the prefix score is

    psi(g + c) = log P(the CTC output starts with g + c | x)

the total probability of every frame alignment whose collapsed label sequence has g + c as a prefix; for
c = <eos> it is log P(the CTC output is exactly g | x). With the forward variables of a prefix h,

    r_t^n(h): log P(x_1..t aligned to h, the last frame emitting h's last label)
    r_t^b(h): log P(x_1..t aligned to h, the last frame emitting blank)

Algorithm 2 reads (log space, h = g + c):

    phi_t     = logaddexp(r_t^b(g), r_t^n(g) if c != last(g) else -inf)
    r_t^n(h)  = logaddexp(r_{t-1}^n(h), phi_{t-1}) + x_t(c)
    r_t^b(h)  = logaddexp(r_{t-1}^b(h), r_{t-1}^n(h)) + x_t(blank)
    psi(h)    = logsumexp_t(phi_{t-1} + x_t(c))           (plus r_0^n(h) = x_0(c) when g is empty)

Two things make it cheap. First, psi needs only phi, i.e. the parent's variables: every candidate of
every hypothesis is scored with one log-sum-exp over frames, and the forward variables are computed only
for the few extensions the beam keeps (:meth:`CTCPrefixScorer.extend`). Second, both recursions are
linear in probability space, a_t = (a_{t-1} + b_t) * e^{x_t}, so they unroll into cumulative sums:

    r_t^n(h) = X_t + logcumsumexp_{s <= t}(phi_{s-1} - X_{s-1}),   X_t = sum_{k <= t} x_k(c)

(and likewise r^b with the blank's cumulative log-probability), computed in float64 with no loop over
frames. A log-probability of -inf would make X - X undefined, so inside the cumulative sums the
log-probabilities are floored at -1e4 (a probability of e^-10000: zero for every practical purpose).

Utterances of different lengths share one padded tensor: padded frames get log P(blank) = 0 and
log P(other) = -inf, so every variable carries through them unchanged and the variables at the last
padded frame equal those at the utterance's last real frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

NEG_INF = float("-inf")
LOG_FLOOR = -1.0e4  # log-probabilities are floored here inside the cumulative sums (see above)


@dataclass
class CTCPrefixState:
    """Forward variables of N prefixes g: ``r`` (T, 2, N) = (r^n, r^b) per frame, ``last`` (N,) the last
    label of each prefix (-1 for the empty prefix), ``length`` the number of labels in every prefix."""

    r: torch.Tensor
    last: torch.Tensor
    length: int

    def take(self, rows: torch.Tensor) -> CTCPrefixState:
        """The states of hypotheses ``rows`` (K,)."""
        return CTCPrefixState(self.r[:, :, rows], self.last[rows], self.length)


def _linear_recursion(init: torch.Tensor, inputs: torch.Tensor, gains: torch.Tensor) -> torch.Tensor:
    """Solve a_t = logaddexp(a_{t-1}, inputs_{t-1}) + gains_t for t >= 1, with a_0 = init, in log space.

    ``init``: (K,); ``inputs``, ``gains``: (S, K) -> a: (S, K). Unrolled as
    a_t = G_t + logcumsumexp([a_0 - G_0, inputs_0 - G_0, ..., inputs_{t-1} - G_{t-1}]), G = cumsum(gains).
    """
    cumulative = torch.cumsum(gains.clamp(min=LOG_FLOOR), dim=0)  # (S, K)
    terms = torch.cat([(init - cumulative[0])[None], inputs[:-1] - cumulative[:-1]], dim=0)  # (S, K)
    return cumulative + torch.logcumsumexp(terms, dim=0)


class CTCPrefixScorer:
    """Prefix scores of N hypotheses against their utterances' CTC posteriors.

    ``log_probs``: (B, T, V) CTC log-posteriors of B utterances; ``lengths``: (B,) valid frames;
    ``blank``/``eos``: token ids; ``hyp_utterance``: (N,) the utterance of each hypothesis row (default:
    one row per utterance). The posteriors are kept once per utterance, not once per hypothesis, and a
    row keeps its utterance through :meth:`extend` (a beam search picks each row's parent among the rows
    of the same utterance).
    """

    def __init__(
        self,
        log_probs: torch.Tensor,
        lengths: torch.Tensor,
        blank: int,
        eos: int,
        hyp_utterance: torch.Tensor | None = None,
    ):
        batch, num_frames, vocab = log_probs.shape
        frame = torch.arange(num_frames, device=log_probs.device)
        padded = frame[None, :] >= lengths.to(log_probs.device)[:, None]  # (B, T)
        x = log_probs.to(torch.float64).masked_fill(padded[:, :, None], NEG_INF)
        x[:, :, blank] = x[:, :, blank].masked_fill(padded, 0.0)
        self.x = x.transpose(0, 1).contiguous()  # (T, B, V)
        if hyp_utterance is None:
            hyp_utterance = torch.arange(batch, device=log_probs.device)
        self.utt = hyp_utterance.to(log_probs.device)  # (N,)
        self.blank = blank
        self.eos = eos
        self.vocab_size = vocab
        self.num_frames = num_frames

    def take(self, rows: torch.Tensor) -> CTCPrefixScorer:
        """A scorer for a subset of the hypotheses (``rows``: (K,) indices), e.g. when utterances finish."""
        subset = object.__new__(CTCPrefixScorer)
        subset.__dict__.update(self.__dict__)
        subset.utt = self.utt[rows]
        return subset

    def initial_state(self) -> CTCPrefixState:
        """The empty prefix: no label emitted, r^b = cumulative blank log-probability."""
        num_hyps = len(self.utt)
        r = torch.full((self.num_frames, 2, num_hyps), NEG_INF, dtype=self.x.dtype, device=self.x.device)
        r[:, 1] = torch.cumsum(self.x[:, self.utt, self.blank], dim=0)
        last = torch.full((num_hyps,), -1, dtype=torch.long, device=self.x.device)
        return CTCPrefixState(r=r, last=last, length=0)

    def _phi(self, state: CTCPrefixState, labels: torch.Tensor, rows: torch.Tensor | None) -> torch.Tensor:
        """phi_t of parents ``rows`` (all when None) for ``labels`` (N, C) or (K,): same shape, time first."""
        r = state.r if rows is None else state.r[:, :, rows]
        last = state.last if rows is None else state.last[rows]
        if labels.dim() == 2:  # (N, C): broadcast the parents' variables over candidates
            r = r[..., None]
            last = last[:, None]
        repeat = (labels == last)[None]  # a repeated label needs a blank in between
        return torch.logaddexp(r[:, 1], r[:, 0].masked_fill(repeat, NEG_INF))

    def score(self, state: CTCPrefixState, candidates: torch.Tensor) -> torch.Tensor:
        """Prefix scores psi (N, C) of g + c for every hypothesis g and candidate c (``candidates``: (N, C)
        token ids; ``eos`` gets the full-sequence score, ``blank`` -inf)."""
        num_frames, length = self.num_frames, state.length
        x_c = self.x[:, self.utt[:, None], candidates]  # (T, N, C)
        phi = self._phi(state, candidates, None)  # (T, N, C)
        # h has length + 1 labels: its last label cannot be emitted before frame index `length`
        start = max(length, 1)
        first = x_c[0] if length == 0 else torch.full_like(x_c[0], NEG_INF)  # r_0^n(h)
        terms = torch.cat([first[None], phi[start - 1 : num_frames - 1] + x_c[start:]], dim=0)
        psi = torch.logsumexp(terms, dim=0)  # (N, C)
        final = torch.logaddexp(state.r[-1, 0], state.r[-1, 1])[:, None].expand_as(psi)  # g is the output
        psi = torch.where(candidates == self.eos, final, psi)
        return psi.masked_fill(candidates == self.blank, NEG_INF)

    def extend(self, state: CTCPrefixState, parent: torch.Tensor, labels: torch.Tensor) -> CTCPrefixState:
        """Forward variables of the prefixes ``g[parent[k]] + labels[k]`` (``parent``, ``labels``: (K,))."""
        num_frames, length = self.num_frames, state.length
        utt = self.utt[parent]
        x_h = self.x[:, utt, labels]  # (T, K)
        x_blank = self.x[:, utt, self.blank]  # (T, K)
        phi = self._phi(state, labels, parent)  # (T, K)
        r = torch.full((num_frames, 2, len(parent)), NEG_INF, dtype=self.x.dtype, device=self.x.device)
        start = max(length, 1)
        if start - 1 < num_frames:  # else h is longer than the utterance allows: impossible
            init = x_h[0].clamp(min=LOG_FLOOR) if length == 0 else torch.full_like(x_h[0], NEG_INF)
            r_n = _linear_recursion(init, phi[start - 1 :], x_h[start - 1 :])  # frames start-1 .. T-1
            r_b = _linear_recursion(torch.full_like(init, NEG_INF), r_n, x_blank[start - 1 :])
            r[start - 1 :, 0], r[start - 1 :, 1] = r_n, r_b
        return CTCPrefixState(r=r, last=labels.clone(), length=length + 1)
