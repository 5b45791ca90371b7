"""The SE front ends by name: ``model.enhancer.kind`` picks one, as ESPnet's ``separator_choices`` do.

Adding a front end: write it in one file as an :class:`~gradremedy.models.enhancer.Enhancer` built from
an ``EnhancerConfig``, list the config fields only it reads in its ``SETTINGS``, and add it to
:data:`ENHANCERS`. The settings every STFT-mask front end reads (``n_fft``, ``hop_length``, ``dropout``,
``loss_reduction``) are shared; a setting of another kind must stay at its default, so that a config
never carries a value nothing reads.
"""

from __future__ import annotations

from gradremedy.config import EnhancerConfig
from gradremedy.models.enhancer import BLSTMMaskEnhancer, Enhancer
from gradremedy.models.mask_tcn import TCNMaskEnhancer

ENHANCERS: dict[str, type[Enhancer]] = {
    "mask_blstm": BLSTMMaskEnhancer,
    "mask_tcn": TCNMaskEnhancer,
}


def build_enhancer(cfg: EnhancerConfig) -> Enhancer:
    """The front end ``cfg.kind`` names, built from ``cfg``; ValueError naming the key for a bad choice."""
    if cfg.kind not in ENHANCERS:
        raise ValueError(
            f"model.enhancer.kind: unknown front end '{cfg.kind}' (known: {', '.join(ENHANCERS)})"
        )
    chosen = ENHANCERS[cfg.kind]
    defaults = EnhancerConfig()
    for kind, cls in ENHANCERS.items():
        for name in getattr(cls, "SETTINGS", ()):
            if cls is not chosen and name not in getattr(chosen, "SETTINGS", ()):
                if getattr(cfg, name) != getattr(defaults, name):
                    raise ValueError(
                        f"model.enhancer.{name} is a setting of kind '{kind}', not of '{cfg.kind}' "
                        f"(remove it, or set model.enhancer.kind: {kind})"
                    )
    return chosen(cfg)


__all__ = ["ENHANCERS", "build_enhancer"]
