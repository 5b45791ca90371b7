"""Shared test set-up: every test is seeded, slow tests need --runslow, the device comes from
GRADREMEDY_TEST_DEVICE (default cpu)."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runslow", action="store_true", default=False, help="run tests marked slow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_slow = pytest.mark.skip(reason="slow: run with --runslow")
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "slow" in item.keywords and not config.getoption("--runslow"):
            item.add_marker(skip_slow)
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_gpu)


@pytest.fixture(autouse=True)
def _seed_everything() -> None:
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture
def device() -> torch.device:
    return torch.device(os.environ.get("GRADREMEDY_TEST_DEVICE", "cpu"))


@pytest.fixture
def asterisk_sounds(tmp_path):
    """A fake folder of Allison Smith's recordings laid out like Debian's asterisk-core-sounds-en-wav: every
    word file as a 0.4 s tone between silences, two other prompts, a silence file and a beep (8 kHz)."""
    import soundfile

    from gradremedy.data.real_voice import WORD_FILES

    root, rate = tmp_path / "en_US_f_Allison", 8000
    for k, name in enumerate(
        [*WORD_FILES.values(), "goodbye.wav", "vm-intro.wav", "silence/1.wav", "beep.wav"]
    ):
        t = np.arange(int(0.4 * rate)) / rate
        samples = np.concatenate(
            [np.zeros(rate // 5), 0.3 * np.sin(2 * np.pi * (200 + 37 * k) * t), np.zeros(rate // 4)]
        )
        if name.startswith("silence"):
            samples = np.zeros(rate)
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        soundfile.write(root / name, samples.astype(np.float32), rate, subtype="PCM_16")
    return root
