"""Where a result came from: the commit of the running code and the machine it ran on.

Every results file (``run.json``, compare's reports, the benchmarks' figures) records both through these
two functions, so that they agree on what a commit is (``+dirty`` when tracked files have local changes).
"""

from __future__ import annotations

import functools
import os
import platform
import subprocess
from pathlib import Path
from typing import Any


@functools.cache  # the loaded code does not change while the process runs
def git_commit() -> str | None:
    """The commit of the source tree this package runs from (``+dirty`` with local changes), if any."""
    source = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(source), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(source), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    if not commit:
        return None
    return f"{commit}+dirty" if dirty else commit


def available_cores() -> int:
    """The cores this process may run on (its affinity mask on Linux)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux), for the benchmarks' machine lines."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    """Host, OS, CPU, core count, Python/torch versions and the GPU, if any."""
    import torch

    info: dict[str, Any] = {
        "host": platform.node(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cores": available_cores(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    info["summary"] = f"{info['host']}, {info['cores']} cores, {info['platform']}, torch {info['torch']}" + (
        f", {info['cuda']}" if info["cuda"] else ""
    )
    return info
