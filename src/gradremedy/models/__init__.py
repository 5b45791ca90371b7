"""The joint speech-enhancement + ASR model and its building blocks."""

from gradremedy.models.conformer import ConformerEncoder
from gradremedy.models.ctc import CTCHead
from gradremedy.models.decoder import TransformerDecoder
from gradremedy.models.enhancer import MaskEnhancer
from gradremedy.models.frontend import LogMelFrontend, mel_filterbank
from gradremedy.models.joint import JointModel

__all__ = [
    "CTCHead",
    "ConformerEncoder",
    "JointModel",
    "LogMelFrontend",
    "MaskEnhancer",
    "TransformerDecoder",
    "mel_filterbank",
]
