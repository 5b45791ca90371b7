"""Training: ``train`` runs (or resumes) one experiment; ``load_model`` loads a trained one for eval."""

from gradremedy.train.checkpoint import load_model
from gradremedy.train.loop import train

__all__ = ["load_model", "train"]
