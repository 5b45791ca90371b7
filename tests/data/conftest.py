"""Fixtures shared by the data tests."""

from __future__ import annotations

import pytest

from gradremedy.data.tokenizer import Tokenizer


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    """A character tokenizer of the words the small test directories use."""
    return Tokenizer.train(
        ["alpha bravo charlie delta echo foxtrot"], "char", 0, tmp_path_factory.mktemp("t")
    )
