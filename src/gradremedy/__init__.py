"""gradremedy: noise-robust end-to-end ASR with a jointly trained speech-enhancement front end,
and Gradient Remedy (Hu et al., ICASSP 2023) to resolve the conflict between their gradients."""

__version__ = "0.1.0"
