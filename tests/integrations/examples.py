"""Runs one of the adapters' examples (examples/integrations/) as a user would, and checks what it prints."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "integrations"


def assert_example_trains_sum_then_gr(script: str, *args: str) -> None:
    """``python examples/integrations/<script> <args>`` exits 0 and its last lines are ``sum:``, ``gr:``."""
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args], capture_output=True, text=True, timeout=600,
        env=dict(os.environ, PYTHONWARNINGS="ignore"),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert [line.split(":")[0] for line in lines[-2:]] == ["sum", "gr"], done.stdout[-2000:]
