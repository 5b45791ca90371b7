"""The commit and machine every results file records."""

from __future__ import annotations

import re
import subprocess

import pytest

from gradremedy import provenance


@pytest.fixture(autouse=True)
def _fresh_cache():
    provenance.git_commit.cache_clear()
    yield
    provenance.git_commit.cache_clear()


def test_commit_is_this_checkouts_head_marked_dirty_with_local_changes() -> None:
    commit = provenance.git_commit()
    if commit is None:
        pytest.skip("not running from a git checkout")
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True
    ).stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{40}(\+dirty)?", commit)
    assert commit == (f"{head}+dirty" if dirty else head)


def test_no_git_gives_none(monkeypatch) -> None:
    def missing(*args, **kwargs):
        raise FileNotFoundError("git")

    monkeypatch.setattr(provenance.subprocess, "run", missing)
    assert provenance.git_commit() is None


def test_machine_info_names_cores_and_versions() -> None:
    info = provenance.machine_info()
    assert info["cores"] >= 1 and info["python"] and info["torch"]
    assert info["torch"] in info["summary"]
