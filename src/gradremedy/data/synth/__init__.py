"""The embedded default corpus: TTS speech from Debian packages, mixed with noise, as Kaldi directories.

``synthesize_corpus(out, preset="tiny")`` is what ``gradremedy data synth`` runs.
"""

from gradremedy.data.synth.augment import AUGMENTATIONS
from gradremedy.data.synth.corpus import PRESETS, SynthSummary, synthesize_corpus
from gradremedy.data.synth.noise import NOISE_TYPES

__all__ = ["AUGMENTATIONS", "NOISE_TYPES", "PRESETS", "SynthSummary", "synthesize_corpus"]
