"""Checkpoint helpers: atomic saves, RNG capture/restore, N-best ranking and parameter averaging."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from gradremedy.errors import UserError
from gradremedy.train import checkpoint as ckpt
from gradremedy.train.checkpoint import (
    BestCheckpoints,
    average_state_dicts,
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
    write_best_and_average,
)


def _draws() -> tuple:
    return (random.random(), random.gauss(0, 1), np.random.rand(3).tolist(), torch.rand(3).tolist())


def test_rng_state_round_trips_through_a_weights_only_file(tmp_path) -> None:
    random.gauss(0, 1)  # leave a cached gaussian in python's generator
    np.random.standard_normal()
    state = capture_rng_state()
    expected = _draws()
    save_checkpoint(tmp_path / "rng.pt", {"model": {}, "rng": state})
    _draws()
    restore_rng_state(load_checkpoint(tmp_path / "rng.pt")["rng"])  # weights_only=True load
    assert _draws() == expected


def test_a_crash_while_saving_leaves_the_previous_checkpoint(tmp_path, monkeypatch) -> None:
    path = tmp_path / "checkpoints" / "last.pt"
    save_checkpoint(path, {"model": {"w": torch.ones(2)}, "step": 1})

    def crash(obj, f, *args, **kwargs):
        with open(f, "wb") as handle:
            handle.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(ckpt.torch, "save", crash)
    with pytest.raises(OSError):
        save_checkpoint(path, {"model": {"w": torch.zeros(2)}, "step": 2})
    monkeypatch.undo()
    payload = load_checkpoint(path)
    assert payload["step"] == 1
    assert torch.equal(payload["model"]["w"], torch.ones(2))
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]  # no temporary file left behind


def test_unreadable_checkpoint_is_a_one_line_user_error(tmp_path) -> None:
    bad = tmp_path / "last.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="last.pt: not a readable checkpoint"):
        load_checkpoint(bad)
    with pytest.raises(UserError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "missing.pt")


def test_best_checkpoints_keeps_the_n_most_accurate() -> None:
    best = BestCheckpoints(keep=2)
    assert best.add("a", step=1, epoch=1, acc=0.5) == []
    assert best.add("b", step=2, epoch=2, acc=0.7) == []
    assert best.add("c", step=3, epoch=3, acc=0.6) == ["a"]
    assert best.add("d", step=4, epoch=4, acc=0.1) == ["d"]
    assert best.files() == ["b", "c"]
    assert best.add("e", step=5, epoch=5, acc=0.7) == ["c"]  # a tie goes to the later snapshot
    assert best.files() == ["e", "b"]
    assert best.add("f", step=6, epoch=6, acc=float("nan")) == ["f"]
    restored = BestCheckpoints(keep=2)
    restored.load_state_dict(best.state_dict())
    assert restored.entries == best.entries


def test_average_is_the_mean_of_floats_and_keeps_the_first_integers() -> None:
    states = [
        {"w": torch.tensor([1.0, 2.0]), "n": torch.tensor(3)},
        {"w": torch.tensor([3.0, 6.0]), "n": torch.tensor(5)},
    ]
    averaged = average_state_dicts(states)
    assert torch.equal(averaged["w"], torch.tensor([2.0, 4.0]))
    assert averaged["n"].item() == 3
    assert averaged["w"].dtype == torch.float32


def test_best_and_average_files(tmp_path) -> None:
    best = BestCheckpoints(keep=2)
    for step, (acc, value) in enumerate([(0.2, 1.0), (0.9, 3.0), (0.5, 5.0)], start=1):
        file = f"step{step:07d}.pt"
        save_checkpoint(tmp_path / file, {"model": {"w": torch.full((2,), value)}, "step": step})
        best.add(file, step, step, acc)
    write_best_and_average(tmp_path, best)
    assert load_checkpoint(tmp_path / "best.pt")["step"] == 2
    average = load_checkpoint(tmp_path / "average.pt")
    assert torch.equal(average["model"]["w"], torch.full((2,), 4.0))  # mean of steps 2 and 3
    assert [e["step"] for e in average["averaged"]] == [2, 3]
