"""Every shipped config loads and builds into a model (one test case per file); the paper configs
carry the authors' recipe, and the tiny one runs a training step."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from gradremedy.config import load_config
from gradremedy.models import JointModel

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
SHIPPED = sorted(CONFIG_DIR.glob("*.yaml"))


def test_the_expected_configs_are_shipped() -> None:
    assert {"paper_rats.yaml", "paper_chime4.yaml", "tiny.yaml"} <= {path.name for path in SHIPPED}


@pytest.mark.parametrize("path", SHIPPED, ids=[path.name for path in SHIPPED])
def test_config_builds_a_model(path: Path) -> None:
    config = load_config(path)
    model = JointModel(config.model, config.tokenizer.vocab_size)
    counts = model.parameter_counts()
    assert counts["enhancer"] > 0 and counts["encoder"] > 0 and counts["decoder"] > 0
    assert counts["total"] == sum(
        counts[part] for part in ("enhancer", "frontend", "encoder", "decoder", "ctc")
    )
    assert model.sample_rate == config.model.sample_rate
    asr_only = JointModel(config.model, config.tokenizer.vocab_size, use_enhancer=False)
    assert asr_only.parameter_counts()["total"] == counts["total"] - counts["enhancer"]


def test_the_tiny_corpus_is_written_at_the_tiny_models_rate() -> None:
    """The demo builds the `tiny` preset and trains configs/tiny.yaml on it: no resampling on loading."""
    from gradremedy.data.synth.corpus import PRESETS

    assert load_config(CONFIG_DIR / "tiny.yaml").model.sample_rate == PRESETS["tiny"].sample_rate


def test_paper_rats_is_the_authors_recipe() -> None:
    config = load_config(CONFIG_DIR / "paper_rats.yaml")
    model, enhancer, frontend = config.model, config.model.enhancer, config.model.frontend
    assert model.sample_rate == 8000
    assert (enhancer.n_fft, enhancer.hop_length, enhancer.lstm_layers, enhancer.lstm_units) == (
        512,
        256,
        3,
        896,
    )
    assert enhancer.dropout == 0.5
    assert (frontend.n_mels, frontend.n_fft, frontend.hop_length, frontend.f_max) == (80, 512, 128, 4000.0)
    assert not frontend.specaugment
    encoder, decoder = model.encoder, model.decoder
    assert (encoder.blocks, encoder.d_model, encoder.heads, encoder.ffn_dim, encoder.conv_kernel) == (
        12,
        256,
        4,
        2048,
        15,
    )
    assert (decoder.blocks, decoder.heads, decoder.ffn_dim) == (6, 4, 2048)
    assert (model.ctc_weight, model.se_weight, model.label_smoothing) == (0.3, 0.3, 0.1)
    assert (config.tokenizer.kind, config.tokenizer.vocab_size) == ("bpe", 1000)
    train = config.train
    assert (train.lr, train.warmup_steps, train.accum_grad, train.grad_clip) == (0.002, 25000, 4, 5.0)
    assert (train.epochs, train.keep_best, config.data.batch_size) == (50, 10, 16)
    decode = config.decode
    assert (decode.beam_size, decode.ctc_weight, decode.length_penalty, decode.lm_weight) == (
        60,
        0.3,
        0.3,
        0.3,
    )


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Small tensors: a second intra-op thread only adds contention on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.usefixtures("one_thread")
def test_tiny_config_runs_a_training_step() -> None:
    config = load_config(CONFIG_DIR / "tiny.yaml")
    model = JointModel(config.model, config.tokenizer.vocab_size).train()
    rate = config.model.sample_rate
    noisy = torch.randn(2, rate) * 0.1
    tokens = torch.tensor([[5, 6, 7], [8, 9, -1]])
    losses = model(noisy, torch.tensor([rate, rate // 2]), tokens, torch.tensor([3, 2]), noisy * 0.5)
    losses["loss"].backward()
    assert torch.isfinite(losses["loss"])
