"""The OpenTTD sound archive reader, on a tiny archive built here and on the installed one."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
import soundfile as sf

from gradremedy.data.synth.opensfx import find_opensfx_archive, read_cat_archive
from gradremedy.errors import DataError


def _wav_bytes(samples: np.ndarray, rate: int) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, subtype="PCM_16", format="WAV")
    return buffer.getvalue()


def make_archive(entries: list[tuple[str, bytes]]) -> bytes:
    """The .cat layout: (offset | 0x80000000, size) table, then name-length byte, name, RIFF file."""
    table_len = 8 * len(entries)
    table, body = b"", b""
    for name, wav in entries:
        name_bytes = name.encode("latin-1") + b"\0"
        offset = table_len + len(body)
        table += struct.pack("<II", offset | 0x80000000, len(wav))
        body += bytes([len(name_bytes)]) + name_bytes + wav
    return table + body


def test_reads_every_sound_and_skips_empty_ones(tmp_path):
    rng = np.random.default_rng(0)
    first = (rng.uniform(-0.5, 0.5, 441) * 32767).round() / 32767
    second = (rng.uniform(-0.5, 0.5, 800) * 32767).round() / 32767
    archive = make_archive(
        [
            ('"Horn". By someone. License: CC BY-SA 3.0.', _wav_bytes(first, 44100)),
            ("Unused/Nothing", _wav_bytes(np.zeros(0), 44100)),
            ('"Wind"', _wav_bytes(second, 22050)),
        ]
    )
    path = tmp_path / "fake.cat"
    path.write_bytes(archive)
    clips = read_cat_archive(path)
    assert [c.name for c in clips] == ['"Horn". By someone. License: CC BY-SA 3.0.', '"Wind"']
    assert [c.sample_rate for c in clips] == [44100, 22050]
    np.testing.assert_allclose(clips[0].samples, first, atol=1e-4)
    np.testing.assert_allclose(clips[1].samples, second, atol=1e-4)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda data: data[:5],  # shorter than one table entry
        lambda data: struct.pack("<I", 0x80000007) + data[4:],  # table length not a multiple of 8
        lambda data: data[:-10],  # last RIFF file truncated
        lambda data: data[:8] + data[8:].replace(b"RIFF", b"JUNK"),  # not a RIFF payload
    ],
)
def test_corrupt_archive_is_a_data_error_naming_the_file(tmp_path, mutate):
    archive = make_archive(
        [("a", _wav_bytes(np.zeros(100), 8000)), ("b", _wav_bytes(np.ones(50) * 0.1, 8000))]
    )
    path = tmp_path / "bad.cat"
    path.write_bytes(mutate(archive))
    with pytest.raises(DataError, match="bad.cat"):
        read_cat_archive(path)


def test_installed_opensfx_archive_holds_real_recordings():
    path = find_opensfx_archive()
    if path is None:
        pytest.skip("openttd-opensfx is not installed")
    clips = read_cat_archive(path)
    assert len(clips) >= 50
    assert all(np.isfinite(c.samples).all() and np.abs(c.samples).max() <= 1.0 for c in clips)
    seconds = sum(len(c.samples) / c.sample_rate for c in clips)
    assert seconds > 60  # about 150 s in OpenSFX 1.0.3
    assert any("License" in c.name for c in clips)
