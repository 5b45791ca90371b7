"""Dynamic mixing in ``gradremedy train``: only the training loader mixes, runs are reproducible, and a
run stopped mid-epoch and resumed ends with the uninterrupted run's weights."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from gradremedy.config import load_config
from gradremedy.data.tokenizer import Tokenizer
from gradremedy.train import loop, train
from gradremedy.train.checkpoint import load_checkpoint

from .helpers import make_tone_corpus, write_config


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return make_tone_corpus(tmp_path_factory.mktemp("tones"))


def _weights(exp: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(exp / "checkpoints" / "last.pt")["model"]


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[name], b[name]) for name in a)


def test_only_the_training_loader_mixes(tmp_path, corpus) -> None:
    cfg = load_config(write_config(tmp_path / "c.yaml", data={"dynamic_mixing": 0.5}))
    tokenizer = Tokenizer.train(["alpha bravo"], "char", 0, tmp_path / "t")
    run = SimpleNamespace(cfg=cfg, tokenizer=tokenizer, rank=0, world_size=1)
    train_loader, _ = loop.make_loader_for(corpus / "train", run, train=True)
    valid_loader, _ = loop.make_loader_for(corpus / "valid", run, train=False)
    assert train_loader.dataset.dynamic_mixing == 0.5 and len(train_loader.dataset.donors) == 8
    assert valid_loader.dataset.dynamic_mixing == 0.0 and not valid_loader.dataset.donors


def test_mixing_runs_repeat_and_resume_mid_epoch_exactly(tmp_path, corpus) -> None:
    # Three epochs of two batches; the interrupted run stops at step 3, in the middle of the second epoch.
    config = write_config(
        tmp_path / "c.yaml",
        data={"batch_size": 4, "dynamic_mixing": 1.0},
        train={"max_steps": 0, "epochs": 3, "log_every": 1},
    )
    train(config_path=config, data_dir=corpus, exp_dir=tmp_path / "reference")
    train(config_path=config, data_dir=corpus, exp_dir=tmp_path / "resumed", max_steps=3)
    assert (
        load_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.pt")["progress"]["batch_in_epoch"] == 1
    )
    train(config_path=config, data_dir=corpus, exp_dir=tmp_path / "resumed", max_steps=6)
    assert _same(_weights(tmp_path / "reference"), _weights(tmp_path / "resumed"))
    plain = write_config(tmp_path / "p.yaml", data={"batch_size": 4}, train={"max_steps": 0, "epochs": 3})
    train(config_path=plain, data_dir=corpus, exp_dir=tmp_path / "plain")
    assert not _same(_weights(tmp_path / "reference"), _weights(tmp_path / "plain"))
