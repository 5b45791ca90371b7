"""Like for like: ``sum`` and ``gr`` run through the same training step; when no group conflicts and
none dominates, GR is the plain sum and the two updates are identical, bit for bit."""

from __future__ import annotations

import copy

import pytest
import torch

from gradremedy.config import load_config
from gradremedy.data.batching import make_loader
from gradremedy.data.tokenizer import Tokenizer
from gradremedy.train import loop

from .helpers import make_tone_corpus, write_config


@pytest.fixture(scope="module")
def setting(tmp_path_factory):
    root = tmp_path_factory.mktemp("sumgr")
    corpus = make_tone_corpus(root / "data", num_train=4, num_valid=2)
    config = write_config(root / "c.yaml", surgery={"granularity": "global"})
    cfg = load_config(config)
    data = loop.load_data(corpus, cfg)
    tokenizer = Tokenizer.train(data.train_texts, "bpe", 30, root / "tokenizer")
    loader, _ = make_loader(data.train_dir, tokenizer, cfg.data, cfg.model.sample_rate, seed=1, shuffle=False)
    return cfg, tokenizer, next(iter(loader))


def _one_step(cfg, tokenizer, batch, method: str, K: float, initial=None):
    cfg = copy.deepcopy(cfg)
    cfg.surgery.method = method
    cfg.surgery.settings["gr"] = {"K": K}
    torch.manual_seed(0)
    run = loop.build_run(cfg, tokenizer, torch.device("cpu"), rank=0, world_size=1)
    if initial is not None:
        run.model.load_state_dict(initial)
    initial = copy.deepcopy(run.model.state_dict())
    run.model.train()
    torch.manual_seed(1)  # same dropout masks for both methods
    loop.forward_backward(run, batch, 1)
    diagnostics = loop.optimizer_step(run)
    return run.model.state_dict(), diagnostics, initial


def test_gr_equals_sum_without_conflict_or_dominance(setting) -> None:
    cfg, tokenizer, batch = setting
    summed, diagnostics, initial = _one_step(cfg, tokenizer, batch, "sum", K=5.0)
    # The precondition, checked rather than assumed: one global group, no conflict.
    assert float(diagnostics["conflict_rate"]) == 0.0 and float(diagnostics["cos_mean"]) > 0
    remedied, gr_diagnostics, _ = _one_step(cfg, tokenizer, batch, "gr", K=1e9, initial=initial)
    assert float(gr_diagnostics["rescale_rate"]) == 0.0
    for name in summed:
        assert torch.equal(summed[name], remedied[name]), name


def test_gr_differs_from_sum_when_it_rescales(setting) -> None:
    cfg, tokenizer, batch = setting
    summed, _, initial = _one_step(cfg, tokenizer, batch, "sum", K=5.0)
    remedied, diagnostics, _ = _one_step(cfg, tokenizer, batch, "gr", K=1e-6, initial=initial)
    assert float(diagnostics["rescale_rate"]) == 1.0
    shared = [n for n in summed if n.startswith("enhancer.") and summed[n].is_floating_point()]
    assert any(not torch.equal(summed[n], remedied[n]) for n in shared)
