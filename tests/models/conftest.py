"""The model tests run tiny tensors: one intra-op thread is faster than two, and on a shared machine two
threads spinning against other jobs' threads make each step 10-100x slower."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
