"""Reader for OpenTTD's sound archive (``opensfx.cat`` from Debian's ``openttd-opensfx``).

The archive holds real recorded sound effects (engines, horns, wind, machinery, animals, crowds),
licensed CC BY-SA 3.0. Layout, as read from the file itself:

- a table of ``count`` entries of two little-endian uint32: ``offset`` and ``size``. The first offset
  is also the table's length in bytes, so ``count = first_offset / 8``. In the current format the top
  bit of every offset is set (a format flag); it is masked off.
- at each offset: one byte ``n``, then ``n`` bytes of name (NUL-terminated, it credits the author and
  licence), then ``size`` bytes of a complete RIFF/WAVE file (44.1 kHz 16-bit mono in the Debian file).

Entries whose WAVE holds no samples ("Unused/Nothing") are skipped.
"""

from __future__ import annotations

import io
import shutil
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from gradremedy.errors import DataError

OPENSFX_PATHS = (
    Path("/usr/share/games/openttd/baseset/opensfx/opensfx.cat"),
    Path("/usr/share/openttd/baseset/opensfx/opensfx.cat"),
)
_FORMAT_FLAG = 0x80000000


@dataclass(frozen=True)
class SoundClip:
    """One sound effect: its credit line, sample rate and mono float32 samples in [-1, 1]."""

    name: str
    sample_rate: int
    samples: np.ndarray


def find_opensfx_archive() -> Path | None:
    """The installed ``opensfx.cat``, or None when ``openttd-opensfx`` is not installed."""
    for path in OPENSFX_PATHS:
        if path.is_file():
            return path
    if shutil.which("dpkg-query"):  # an unusual prefix: ask dpkg where the package put it
        cmd = ["dpkg-query", "-L", "openttd-opensfx"]
        out = subprocess.run(cmd, capture_output=True, text=True, check=False)
        for line in out.stdout.splitlines():
            if line.endswith("opensfx.cat") and Path(line).is_file():
                return Path(line)
    return None


def read_cat_archive(path: str | Path) -> list[SoundClip]:
    """Every non-empty sound of a ``.cat`` archive, in archive order."""
    path = Path(path)
    data = path.read_bytes()
    if len(data) < 8:
        raise DataError(f"{path}: too short to be a sound archive")
    table_bytes = struct.unpack_from("<I", data, 0)[0] & ~_FORMAT_FLAG
    if table_bytes == 0 or table_bytes % 8 or table_bytes > len(data):
        raise DataError(f"{path}: bad sound table length {table_bytes}")
    clips = []
    for index in range(table_bytes // 8):
        offset, size = struct.unpack_from("<II", data, 8 * index)
        offset &= ~_FORMAT_FLAG
        if offset >= len(data):
            raise DataError(f"{path}: entry {index} points past the end of the file")
        name_len = data[offset]
        name = data[offset + 1 : offset + 1 + name_len].split(b"\0", 1)[0].decode("latin-1")
        start = offset + 1 + name_len
        riff = data[start : start + size]
        if len(riff) != size or riff[:4] != b"RIFF":
            raise DataError(f"{path}: entry {index} ({name[:40]!r}) is not a complete RIFF/WAVE file")
        try:
            samples, rate = sf.read(io.BytesIO(riff), dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError) as err:
            raise DataError(f"{path}: entry {index} ({name[:40]!r}) is unreadable: {err}") from None
        if samples.shape[0] == 0:
            continue
        clips.append(SoundClip(name=name, sample_rate=int(rate), samples=samples.mean(axis=1)))
    return clips
