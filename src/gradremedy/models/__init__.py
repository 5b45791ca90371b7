"""The joint speech-enhancement + ASR model and its building blocks."""

from gradremedy.models.conformer import ConformerEncoder
from gradremedy.models.ctc import CTCHead
from gradremedy.models.decoder import TransformerDecoder
from gradremedy.models.enhancer import BLSTMMaskEnhancer, Enhanced, Enhancer, StftMaskEnhancer
from gradremedy.models.frontend import LogMelFrontend, mel_filterbank
from gradremedy.models.joint import JointModel
from gradremedy.models.mask_tcn import TCNMaskEnhancer
from gradremedy.models.registry import ENHANCERS, build_enhancer

__all__ = [
    "ENHANCERS",
    "BLSTMMaskEnhancer",
    "CTCHead",
    "ConformerEncoder",
    "Enhanced",
    "Enhancer",
    "JointModel",
    "LogMelFrontend",
    "StftMaskEnhancer",
    "TCNMaskEnhancer",
    "build_enhancer",
    "TransformerDecoder",
    "mel_filterbank",
]
