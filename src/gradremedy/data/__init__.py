"""Data: Kaldi/ESPnet directories, audio loading, tokenizer, batching, checks, corpus preparation.

The light pieces are re-exported here; ``gradremedy.data.batching`` (torch) and
``gradremedy.data.check`` are imported from their modules.
"""

from gradremedy.data.audio import AudioInfo, audio_info, load_audio, resample
from gradremedy.data.kaldi_dir import (
    DataDir,
    Problem,
    Utterance,
    parse_data_dir,
    read_data_dir,
    write_data_dir,
)
from gradremedy.data.tokenizer import Tokenizer, normalize_text

__all__ = [
    "AudioInfo",
    "DataDir",
    "Problem",
    "Tokenizer",
    "Utterance",
    "audio_info",
    "load_audio",
    "normalize_text",
    "parse_data_dir",
    "read_data_dir",
    "resample",
    "write_data_dir",
]
