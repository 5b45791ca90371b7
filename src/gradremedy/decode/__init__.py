"""Decoding: greedy CTC/attention, joint CTC/attention beam search (incremental decoder cache, batched over
hypotheses and utterances), CTC prefix scores, LSTM LM fusion."""

from gradremedy.decode.batch import decode_and_enhance, decode_batch
from gradremedy.decode.beam_search import Hypothesis, beam_search
from gradremedy.decode.ctc_prefix_score import CTCPrefixScorer, CTCPrefixState
from gradremedy.decode.greedy import greedy_attention, greedy_ctc
from gradremedy.decode.lm import LSTMLM, check_same_tokens, load_lm, train_lm

__all__ = [
    "CTCPrefixScorer",
    "CTCPrefixState",
    "Hypothesis",
    "LSTMLM",
    "beam_search",
    "check_same_tokens",
    "decode_and_enhance",
    "decode_batch",
    "greedy_attention",
    "greedy_ctc",
    "load_lm",
    "train_lm",
]
