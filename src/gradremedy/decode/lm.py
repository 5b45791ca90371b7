"""LSTM language model over the ASR tokens, for shallow fusion in the beam search.

``gradremedy train-lm --config C --text FILE --out LMDIR [--tokenizer EXP/tokenizer]`` trains it on a text
file (one sentence per line, normalised with :func:`normalize_text`); the authors used 2 x 650 units and
weight 0.3. The token ids must be the ASR model's, so the experiment's tokenizer is reused (and copied into
``LMDIR/tokenizer``); without one, a tokenizer is trained on the text from the config's ``tokenizer``
section. ``LMDIR`` holds ``lm.pt`` (weights of the epoch with the best held-out perplexity, the LM
config, the vocabulary size), ``config.yaml``, ``tokenizer/`` and ``log.json``, all written atomically.

The LM reads ``<sos> y_1 .. y_n`` and predicts ``y_1 .. y_n <eos>`` (<sos> = <eos> = ``vocab_size - 1``,
as in the tokenizer); blank (0) is never a target.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from pathlib import Path

import torch
from torch import nn

from gradremedy.atomic import atomic_path, atomic_write_text
from gradremedy.config import LMConfig, load_config, save_config
from gradremedy.data.tokenizer import Tokenizer
from gradremedy.errors import UserError

LMState = tuple[torch.Tensor, torch.Tensor]  # (h, c), each (layers, N, units)


class LSTMLM(nn.Module):
    """Embedding -> stacked LSTM -> linear over the vocabulary."""

    def __init__(self, vocab_size: int, layers: int = 2, units: int = 650, dropout: float = 0.0):
        super().__init__()
        self.vocab_size = vocab_size
        self.layers, self.units = layers, units
        self.embed = nn.Embedding(vocab_size, units)
        self.dropout = nn.Dropout(dropout)
        self.lstm = nn.LSTM(
            units, units, num_layers=layers, batch_first=True, dropout=dropout if layers > 1 else 0
        )
        self.out = nn.Linear(units, vocab_size)

    @classmethod
    def from_config(cls, cfg: LMConfig, vocab_size: int) -> LSTMLM:
        return cls(vocab_size, layers=cfg.layers, units=cfg.units, dropout=cfg.dropout)

    def forward(self, tokens: torch.Tensor, state: LMState | None = None) -> tuple[torch.Tensor, LMState]:
        """``tokens``: (N, L) ids -> logits (N, L, V) and the state after the last position."""
        hidden, state = self.lstm(self.dropout(self.embed(tokens)), state)  # (N, L, units)
        return self.out(self.dropout(hidden)), state

    def init_state(self, num_hyps: int, device: torch.device | str) -> LMState:
        zeros = torch.zeros(self.layers, num_hyps, self.units, device=device)
        return zeros, zeros.clone()

    def step(self, last_tokens: torch.Tensor, state: LMState) -> tuple[torch.Tensor, LMState]:
        """One step for N hypotheses: ``last_tokens`` (N,) -> next-token log-probabilities (N, V), state."""
        logits, state = self.forward(last_tokens[:, None], state)  # (N, 1, V)
        return logits[:, 0].log_softmax(-1), state

    @staticmethod
    def reorder_state(state: LMState, index: torch.Tensor) -> LMState:
        """The states of hypotheses ``index`` (K,) in that order."""
        return state[0][:, index], state[1][:, index]

    def sentence_log_prob(self, ids: list[int]) -> float:
        """log P(ids <eos>) (for tests and inspection)."""
        eos = self.vocab_size - 1
        inputs = torch.tensor([[eos, *ids]], device=self.out.weight.device)
        targets = torch.tensor([*ids, eos], device=inputs.device)
        logits, _ = self.forward(inputs)
        return logits[0].log_softmax(-1).gather(1, targets[:, None]).sum().item()


# ---- training ---------------------------------------------------------------------------------------


def _read_sentences(text_path: Path, tokenizer: Tokenizer) -> list[list[int]]:
    try:
        lines = text_path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise UserError(f"{text_path}: text file not found") from None
    except UnicodeDecodeError as err:
        raise UserError(f"{text_path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    sentences = [ids for ids in (tokenizer.encode(line) for line in lines) if ids]
    if not sentences:
        raise UserError(f"{text_path}: no sentences to train a language model on")
    return sentences


def _batches(sentences: list[list[int]], batch_size: int, eos: int, shuffle: random.Random | None):
    """(inputs (N, L), targets (N, L) padded with -1) batches of sentences of similar length."""
    order = sorted(range(len(sentences)), key=lambda i: len(sentences[i]))
    chunks = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if shuffle is not None:
        shuffle.shuffle(chunks)
    for chunk in chunks:
        longest = max(len(sentences[i]) for i in chunk) + 1
        inputs = torch.full((len(chunk), longest), eos, dtype=torch.long)
        targets = torch.full((len(chunk), longest), -1, dtype=torch.long)
        for row, i in enumerate(chunk):
            ids = sentences[i]
            inputs[row, 1 : len(ids) + 1] = torch.tensor(ids)
            targets[row, : len(ids) + 1] = torch.tensor([*ids, eos])
        yield inputs, targets


def _loss(model: LSTMLM, inputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Summed token cross-entropy and the number of target tokens."""
    logits, _ = model(inputs)
    loss = nn.functional.cross_entropy(
        logits.flatten(0, 1), targets.flatten(), ignore_index=-1, reduction="sum"
    )
    return loss, int((targets >= 0).sum())


def perplexity(model: LSTMLM, sentences: list[list[int]], batch_size: int, device: torch.device) -> float:
    """Token perplexity (<eos> counted) of ``sentences``."""
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for inputs, targets in _batches(sentences, batch_size, model.vocab_size - 1, None):
            loss, n = _loss(model, inputs.to(device), targets.to(device))
            total, count = total + loss.item(), count + n
    return math.exp(total / max(count, 1))


def train_lm(
    config_path: str | os.PathLike,
    text_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    tokenizer_path: str | os.PathLike | None = None,
    overrides: list[str] | None = None,
    device: str = "cpu",
) -> dict[str, float]:
    """Train an LSTM LM on a text file and save it to ``out_dir``; returns the final perplexities."""
    config = load_config(config_path, overrides)
    cfg = config.lm
    out, text_path = Path(out_dir), Path(text_path)
    torch_device = torch.device(device)
    if tokenizer_path is not None:
        tokenizer = Tokenizer.load(tokenizer_path)
    else:
        lines = text_path.read_text(encoding="utf-8").splitlines() if text_path.is_file() else []
        if not lines:
            raise UserError(f"{text_path}: text file not found or empty")
        tokenizer = Tokenizer.train(
            lines, config.tokenizer.kind, config.tokenizer.vocab_size, out / "tokenizer"
        )
    sentences = _read_sentences(text_path, tokenizer)

    rng = random.Random(cfg.seed)
    torch.manual_seed(cfg.seed)
    rng.shuffle(sentences)
    num_valid = int(len(sentences) * cfg.valid_fraction) if len(sentences) >= 20 else 0
    valid, train = sentences[:num_valid], sentences[num_valid:]
    model = LSTMLM.from_config(cfg, tokenizer.vocab_size).to(torch_device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    eos = tokenizer.eos_id

    history: list[dict[str, float]] = []
    best_state, best_ppl, step = None, float("inf"), 0
    started = time.time()
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        total, count = 0.0, 0
        for inputs, targets in _batches(train, cfg.batch_size, eos, rng):
            loss, n = _loss(model, inputs.to(torch_device), targets.to(torch_device))
            optimizer.zero_grad(set_to_none=True)
            (loss / n).backward()
            if cfg.grad_clip > 0:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            total, count, step = total + loss.item(), count + n, step + 1
            if cfg.max_steps and step >= cfg.max_steps:
                break
        train_ppl = math.exp(total / max(count, 1))
        valid_ppl = perplexity(model, valid, cfg.batch_size, torch_device) if valid else train_ppl
        history.append({"epoch": epoch, "step": step, "train_ppl": train_ppl, "valid_ppl": valid_ppl})
        print(f"lm epoch {epoch}: train ppl {train_ppl:.2f}, valid ppl {valid_ppl:.2f}", flush=True)
        if valid_ppl < best_ppl:
            best_ppl = valid_ppl
            best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        if cfg.max_steps and step >= cfg.max_steps:
            break

    out.mkdir(parents=True, exist_ok=True)
    if tokenizer_path is not None:
        tokenizer.save(out / "tokenizer")
    save_config(config, out / "config.yaml")
    checkpoint = {
        "model": best_state,
        "lm_config": {f: getattr(cfg, f) for f in cfg.__dataclass_fields__},
        "vocab_size": tokenizer.vocab_size,
    }
    with atomic_path(out / "lm.pt") as tmp:
        torch.save(checkpoint, tmp)
    summary = {"best_valid_ppl": best_ppl, "steps": step, "seconds": time.time() - started}
    atomic_write_text(out / "log.json", json.dumps({"summary": summary, "epochs": history}, indent=1) + "\n")
    return summary


def load_lm(lm_dir: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[LSTMLM, Tokenizer]:
    """The LM saved by :func:`train_lm` (in eval mode) and its tokenizer."""
    folder = Path(lm_dir)
    path = folder / "lm.pt"
    if not path.is_file():
        raise UserError(f"{folder}: no language model here (lm.pt missing)")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        cfg = LMConfig(**checkpoint["lm_config"])
        model = LSTMLM.from_config(cfg, checkpoint["vocab_size"])
        model.load_state_dict(checkpoint["model"])
    except (RuntimeError, KeyError, TypeError, EOFError) as err:
        raise UserError(f"{path}: not a valid language model ({str(err).splitlines()[0]})") from None
    return model.to(device).eval(), Tokenizer.load(folder / "tokenizer")


def check_same_tokens(lm_tokenizer: Tokenizer, asr_tokenizer: Tokenizer, lm_dir: str | os.PathLike) -> None:
    """Refuse an LM whose token ids mean something else than the ASR model's."""
    if lm_tokenizer.kind != asr_tokenizer.kind or lm_tokenizer.units != asr_tokenizer.units:
        raise UserError(
            f"{lm_dir}: the language model's tokenizer differs from the ASR experiment's "
            f"({lm_tokenizer.kind}, {lm_tokenizer.vocab_size} ids vs {asr_tokenizer.kind}, "
            f"{asr_tokenizer.vocab_size}); train it with --tokenizer EXP/tokenizer"
        )
