"""Checkpoints: atomic saves, exact resume, N-best averaging, and loading a trained model for eval.

Layout inside an experiment directory::

    checkpoints/last.pt           everything needed to resume (written every train.checkpoint_every
                                  steps, at every epoch end and at the end of training)
    checkpoints/step0000123.pt    the model after a validation, kept while among the train.keep_best best
    checkpoints/best.pt           the single best of those (by validation token accuracy)
    checkpoints/average.pt        the parameter average of the kept ones (the authors' recipe)

Every file is a ``torch.save``d dict holding at least ``model`` (a state_dict), ``config`` (the resolved
config as a nested dict), ``vocab_size`` and ``use_enhancer``. Everything in them is loadable with
``torch.load(..., weights_only=True)`` (RNG states are stored as tensors, not numpy objects), so outside
tools can read them safely.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gradremedy.atomic import atomic_path
from gradremedy.config import Config, ConfigError, config_from_dict
from gradremedy.errors import UserError

CHECKPOINT_DIR = "checkpoints"
LAST = "last.pt"
BEST = "best.pt"
AVERAGE = "average.pt"
WHICH = {"last": LAST, "best": BEST, "average": AVERAGE}


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> None:
    """``torch.save`` through a temporary file and a rename: a crash leaves the previous file intact."""
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`; a missing or unreadable file is a UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: checkpoint not found")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises many kinds for a truncated or foreign file
        raise UserError(f"{path}: not a readable checkpoint ({type(err).__name__}: {err})") from None
    if not isinstance(payload, dict) or "model" not in payload:
        raise UserError(f"{path}: not a gradremedy checkpoint (no 'model' entry)")
    return payload


# ----------------------------------------------------------------------------------------------------
# Random number generators


def capture_rng_state() -> dict[str, Any]:
    """The state of every generator training draws from (python, numpy, torch CPU and CUDA)."""
    version, mt_state, gauss_next = random.getstate()
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": {
            "version": version,
            "state": torch.tensor(mt_state, dtype=torch.int64),
            "gauss": gauss_next,
        },
        "numpy": {
            "kind": np_kind,
            "keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "gauss": float(np_gauss),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Put every generator back to a state returned by :func:`capture_rng_state`."""
    py = state["python"]
    random.setstate((py["version"], tuple(int(x) for x in py["state"].tolist()), py["gauss"]))
    npy = state["numpy"]
    keys = npy["keys"].numpy().astype(np.uint32)
    np.random.set_state((npy["kind"], keys, npy["pos"], npy["has_gauss"], npy["gauss"]))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)


# ----------------------------------------------------------------------------------------------------
# N-best snapshots and their average


@dataclass
class BestCheckpoints:
    """The ``keep`` best validated snapshots, ranked by validation accuracy (ties: the later one)."""

    keep: int
    entries: list[dict[str, Any]] = field(default_factory=list)  # {"file", "step", "epoch", "acc"}

    def add(self, file: str, step: int, epoch: int, acc: float) -> list[str]:
        """Rank a new snapshot; returns the files that dropped out of the kept set."""
        self.entries = [e for e in self.entries if e["file"] != file]
        self.entries.append({"file": file, "step": step, "epoch": epoch, "acc": float(acc)})
        self.entries.sort(key=lambda e: (-_finite_or_low(e["acc"]), -e["step"]))
        keep = max(self.keep, 1)
        dropped = [e["file"] for e in self.entries[keep:]]
        self.entries = self.entries[:keep]
        return dropped

    @property
    def best(self) -> dict[str, Any] | None:
        return self.entries[0] if self.entries else None

    def files(self) -> list[str]:
        return [e["file"] for e in self.entries]

    def state_dict(self) -> dict[str, Any]:
        return {"keep": self.keep, "entries": [dict(e) for e in self.entries]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.entries = [dict(e) for e in state["entries"]]


def _finite_or_low(value: float) -> float:
    return value if np.isfinite(value) else -np.inf


def average_state_dicts(state_dicts: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Element-wise mean of floating-point entries (in float64, cast back); other entries (integer
    buffers such as step counters) are taken from the first state_dict, the best one."""
    if not state_dicts:
        raise ValueError("nothing to average")
    first = state_dicts[0]
    averaged: dict[str, torch.Tensor] = {}
    for name, value in first.items():
        if value.is_floating_point():
            total = torch.zeros_like(value, dtype=torch.float64)
            for state in state_dicts:
                total += state[name].to(torch.float64)
            averaged[name] = (total / len(state_dicts)).to(value.dtype)
        else:
            averaged[name] = value.clone()
    return averaged


def write_best_and_average(checkpoint_dir: Path, best: BestCheckpoints) -> None:
    """Write ``best.pt`` (a copy of the best snapshot) and ``average.pt`` (mean of the kept ones)."""
    if best.best is None:
        return
    payloads = [load_checkpoint(checkpoint_dir / file) for file in best.files()]
    save_checkpoint(checkpoint_dir / BEST, payloads[0])
    average = dict(payloads[0])
    average["model"] = average_state_dicts([p["model"] for p in payloads])
    average["averaged"] = [{"file": e["file"], "step": e["step"], "acc": e["acc"]} for e in best.entries]
    save_checkpoint(checkpoint_dir / AVERAGE, average)


# ----------------------------------------------------------------------------------------------------
# Loading a trained model


def load_model(
    exp_dir: str | os.PathLike, which: str = "average", device: str | torch.device = "cpu"
) -> tuple[torch.nn.Module, Any, Config]:
    """The trained model (in eval mode, on ``device``), its tokenizer and its config.

    ``which`` is ``average`` (the N-best parameter average), ``best`` or ``last``.
    """
    from gradremedy.data.tokenizer import Tokenizer
    from gradremedy.models import JointModel

    exp_dir = Path(exp_dir)
    if which not in WHICH:
        raise UserError(f"unknown checkpoint '{which}' (choose from {', '.join(WHICH)})")
    if not exp_dir.is_dir():
        raise UserError(f"{exp_dir}: experiment directory not found")
    path = exp_dir / CHECKPOINT_DIR / WHICH[which]
    payload = load_checkpoint(path)
    try:
        config = config_from_dict(payload["config"], source=str(path))
    except ConfigError as err:
        raise UserError(f"{path}: its config no longer loads ({err})") from None
    tokenizer = Tokenizer.load(exp_dir / "tokenizer")
    model = JointModel(config.model, int(payload["vocab_size"]), use_enhancer=bool(payload["use_enhancer"]))
    model.load_state_dict(payload["model"])
    model.to(device)
    model.eval()
    return model, tokenizer, config
