"""Joint CTC/attention beam search with optional LSTM LM shallow fusion, batched over utterances.

Every hypothesis h (a token sequence after <sos>) is scored as in ESPnet (Watanabe et al. 2017):

    score(h) = (1 - lambda) * log P_att(h) + lambda * psi_ctc(h) + beta * log P_lm(h) + length_penalty * |h|

where psi_ctc is the CTC prefix score (:mod:`gradremedy.decode.ctc_prefix_score`), lambda the CTC weight,
beta the LM weight, and |h| counts every emitted token (<eos> included, the same for every finished
hypothesis). Each step extends every running hypothesis: the attention decoder (and LM) score the whole
vocabulary, the best ``1.5 x beam`` tokens of that partial score ("pre-beam"), and <eos>, get CTC prefix
scores, and the best candidates of each utterance are kept. With CTC weight 1 there is no decoder call
and every token is CTC-scored; with CTC weight 0 there is no CTC scoring and no pre-beam.

Batching: all utterances of a batch decode together, ``beam`` rows each, in one tensor of B x beam
hypotheses (one decoder call per step for the whole batch); an utterance leaves the batch once it is done.

Selection per utterance follows fairseq: of the best 2 x beam candidates, those ending in <eos> that rank
within the first ``beam`` are finished; the best ``beam`` others keep running, so the beam stays full. An
utterance is done when it has ``beam`` finished hypotheses, when it reaches its length limit
(``max_length_ratio`` x encoder frames; <eos> is forced there), or when no running hypothesis can still beat
the best finished one (exact when the length penalty is <= 0, since every other term only falls).

Incremental cache (``cache=True``, the default): the attention decoder is fed one token per hypothesis
per step and keeps the self-attention keys and values of the prefix per block
(:class:`gradremedy.models.decoder.DecoderState`), reordered with the surviving hypotheses like the CTC
and LM states; the encoder output's keys and values are projected once per utterance. ``cache=False``
re-runs the decoder on every whole prefix (the reference the tests compare against): both give the same
hypotheses, and the same scores up to float rounding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from gradremedy.decode.ctc_prefix_score import CTCPrefixScorer
from gradremedy.decode.greedy import max_output_lengths

NEG_INF = float("-inf")


@dataclass
class Hypothesis:
    """One finished hypothesis: output tokens (no <sos>/<eos>) and its total score."""

    tokens: list[int]
    score: float


class _CachedAttention:
    """The attention decoder fed one token per hypothesis per step; its keys and values are kept per block."""

    def __init__(self, model: torch.nn.Module, enc: torch.Tensor, enc_lens: torch.Tensor, width: int):
        self.decoder = model.decoder
        self.state = model.decoder.start(enc, enc_lens, width)
        self._next = self.state

    def log_probs(self, prefix: torch.Tensor) -> torch.Tensor:
        """(N, V) log-probabilities of the next token; the state after it waits for :meth:`reorder`."""
        logits, self._next = self.decoder.step(prefix[:, -1], self.state)
        return torch.log_softmax(logits.float(), dim=-1)

    def reorder(self, parent: torch.Tensor) -> None:
        self.state = self._next.take(parent)

    def keep(self, keep: torch.Tensor, keep_rows: torch.Tensor, width: int) -> None:
        self.state = self.state.take_utterances(keep, width)


class _WholePrefixAttention:
    """The attention decoder re-run on every whole prefix, each hypothesis with its own copy of the
    encoder output: the uncached reference."""

    def __init__(self, model: torch.nn.Module, enc: torch.Tensor, enc_lens: torch.Tensor, rows: torch.Tensor):
        self.model = model
        self.enc, self.enc_lens = enc[rows], enc_lens[rows]  # (B * W, T', D), (B * W,)

    def log_probs(self, prefix: torch.Tensor) -> torch.Tensor:
        return self.model.decoder_log_probs(prefix, self.enc, self.enc_lens).float()

    def reorder(self, parent: torch.Tensor) -> None:
        """Nothing to reorder: the next step re-runs the reordered prefixes."""

    def keep(self, keep: torch.Tensor, keep_rows: torch.Tensor, width: int) -> None:
        self.enc, self.enc_lens = self.enc[keep_rows], self.enc_lens[keep_rows]


@torch.no_grad()
def beam_search(
    model: torch.nn.Module,
    enc: torch.Tensor,
    enc_lens: torch.Tensor,
    *,
    beam_size: int = 10,
    ctc_weight: float = 0.3,
    length_penalty: float = 0.0,
    max_length_ratio: float = 1.0,
    lm: torch.nn.Module | None = None,
    lm_weight: float = 0.0,
    nbest: int = 1,
    pre_beam_ratio: float = 1.5,
    blank: int = 0,
    cache: bool = True,
) -> list[list[Hypothesis]]:
    """Decode a batch of encoder outputs; returns the ``nbest`` best hypotheses of every utterance.

    ``model`` provides ``vocab_size``, ``ctc_log_probs(enc)`` and, with ``cache``, ``decoder`` (a
    :class:`gradremedy.models.decoder.TransformerDecoder`: ``start`` and ``step``), without it
    ``decoder_log_probs(prefix, enc, enc_lens)``; ``enc``: (B, T', D); ``enc_lens``: (B,). ``lm``, if
    given, is a :class:`gradremedy.decode.lm.LSTMLM` over the same tokens.

    Kept as one function: its four numbered steps (scores, candidates, selection, which utterances are done)
    share the running state of every hypothesis, and split apart they would pass it all back and forth.
    """
    if beam_size < 1:
        raise ValueError(f"beam size must be >= 1, got {beam_size}")
    if not 0.0 <= ctc_weight <= 1.0:
        raise ValueError(f"CTC weight must be in [0, 1], got {ctc_weight}")
    device = enc.device
    vocab = model.vocab_size
    eos = vocab - 1  # also <sos>
    batch, width = enc.shape[0], beam_size
    use_att, use_ctc = ctc_weight < 1.0, ctc_weight > 0.0
    use_lm = lm is not None and lm_weight != 0.0
    max_lens = max_output_lengths(enc_lens, max_length_ratio)
    num_cand = vocab - 1  # every token but blank
    if use_att and use_ctc:
        num_cand = min(num_cand, max(width, int(pre_beam_ratio * width)))

    # Running hypotheses: rows utt * width + k for the utterances in `active`.
    active = list(range(batch))
    rows = torch.arange(batch, device=device).repeat_interleave(width)
    attention: _CachedAttention | _WholePrefixAttention | None = None
    if use_att:
        attention = _CachedAttention(model, enc, enc_lens, width) if cache else _WholePrefixAttention(
            model, enc, enc_lens, rows
        )
    prefix = torch.full((batch * width, 1), eos, dtype=torch.long, device=device)  # <sos>
    # Every score term but CTC, accumulated; only beam 0 starts alive.
    base = torch.full((batch, width), NEG_INF, device=device)
    base[:, 0] = 0.0
    base = base.view(-1)  # (B * W,)
    ctc_scorer = ctc_state = ctc_psi = None
    if use_ctc:
        ctc_scorer = CTCPrefixScorer(
            model.ctc_log_probs(enc), enc_lens, blank=blank, eos=eos, hyp_utterance=rows
        )
        ctc_state = ctc_scorer.initial_state()
        ctc_psi = torch.zeros(batch * width, device=device)
    lm_state = lm.init_state(batch * width, device) if use_lm else None
    finished: list[list[Hypothesis]] = [[] for _ in range(batch)]
    all_tokens = torch.arange(1, vocab, device=device)  # candidates when nothing pre-selects them
    eos_index = torch.tensor([eos], device=device)

    for step in range(max(max_lens) + 1):
        num_active = len(active)
        num_rows = num_active * width
        # 1. Scores of every next token without CTC: (N, V)
        partial = torch.zeros(num_rows, vocab, device=device)
        if attention is not None:
            partial += (1.0 - ctc_weight) * attention.log_probs(prefix)
        if use_lm:
            lm_log_probs, lm_next = lm.step(prefix[:, -1], lm_state)
            partial += lm_weight * lm_log_probs.float()
        partial[:, blank] = NEG_INF
        # 2. Candidates (pre-beam) and their total scores: (N, C)
        if num_cand < vocab - 1:
            # the pre-beam, plus <eos> always: a hypothesis may end even when the decoder ranks <eos> low
            pre_beam = partial.index_fill(1, eos_index, NEG_INF).topk(num_cand, dim=1).indices
            candidates = torch.cat([pre_beam, eos_index.expand(num_rows, 1)], dim=1)  # (N, C + 1)
        else:
            candidates = all_tokens[None].expand(num_rows, -1)
        cand_base = base[:, None] + partial.gather(1, candidates) + length_penalty
        total = cand_base
        if use_ctc:
            psi = ctc_scorer.score(ctc_state, candidates)
            total = cand_base + ctc_weight * psi.float()
        # Length limit reached: only <eos> may follow
        at_limit = torch.tensor([step >= max_lens[u] for u in active], device=device)
        forced = at_limit.repeat_interleave(width)[:, None] & (candidates != eos)
        total = total.masked_fill(forced, NEG_INF)

        # 3. Selection per utterance (fairseq style): (A, W * C) -> best 2W
        flat = total.view(num_active, width * candidates.shape[1])
        top_k = min(2 * width, flat.shape[1])
        top_scores, top_index = flat.topk(top_k, dim=1)  # (A, K), sorted
        parent_local = top_index // candidates.shape[1]
        column = top_index % candidates.shape[1]
        parent = parent_local + (torch.arange(num_active, device=device) * width)[:, None]  # (A, K)
        token = candidates[parent, column]
        is_eos = token == eos
        rank = torch.arange(top_k, device=device)[None].expand(num_active, -1)

        # finished: <eos> within the first W ranks
        finish = is_eos & (rank < width) & torch.isfinite(top_scores)
        if finish.any():
            for a, k in finish.nonzero().tolist():
                tokens = prefix[parent[a, k], 1:].tolist()
                finished[active[a]].append(Hypothesis(tokens=tokens, score=float(top_scores[a, k])))

        # running: the best W non-<eos> candidates (dead ones get -inf)
        order = (is_eos.long() * top_k + rank).argsort(dim=1)[:, :width]  # (A, W)
        keep_parent = parent.gather(1, order).view(-1)
        keep_column = column.gather(1, order).view(-1)
        keep_token = token.gather(1, order).view(-1)
        keep_dead = (is_eos.gather(1, order) | ~torch.isfinite(top_scores.gather(1, order))).view(-1)
        prefix = torch.cat([prefix[keep_parent], keep_token[:, None]], dim=1)  # (N, step + 2)
        base = cand_base[keep_parent, keep_column].masked_fill(keep_dead, NEG_INF)
        if use_ctc:
            ctc_psi = psi[keep_parent, keep_column]
            ctc_state = ctc_scorer.extend(ctc_state, keep_parent, keep_token)
        if use_lm:
            lm_state = lm.reorder_state(lm_next, keep_parent)
        if attention is not None:
            attention.reorder(keep_parent)
        running_best = (base + (ctc_weight * ctc_psi if use_ctc else 0.0)).view(num_active, width).amax(1)

        # 4. Which utterances are done
        still: list[int] = []
        for a, (utt, best) in enumerate(zip(active, running_best.tolist())):  # one device sync per step
            done = (
                len(finished[utt]) >= width
                or step >= max_lens[utt]
                or not math.isfinite(best)
                or (length_penalty <= 0 and finished[utt] and max(h.score for h in finished[utt]) >= best)
            )
            if not done:
                still.append(a)
        if not still:
            break
        if len(still) < num_active:
            keep = torch.tensor(still, device=device)
            keep_rows = (keep[:, None] * width + torch.arange(width, device=device)).view(-1)
            active = [active[a] for a in still]
            prefix, base = prefix[keep_rows], base[keep_rows]
            if attention is not None:
                attention.keep(keep, keep_rows, width)
            if use_ctc:
                ctc_scorer = ctc_scorer.take(keep_rows)
                ctc_psi = ctc_psi[keep_rows]
                ctc_state = ctc_state.take(keep_rows)
            if use_lm:
                lm_state = lm.reorder_state(lm_state, keep_rows)

    results = []
    for hyps in finished:
        hyps = sorted(hyps, key=lambda h: h.score, reverse=True)[:nbest]
        results.append(hyps or [Hypothesis(tokens=[], score=NEG_INF)])
    return results
