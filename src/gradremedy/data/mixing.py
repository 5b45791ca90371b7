"""Dynamic mixing: new speech x noise pairs every epoch from the training set's own mixtures.

A training utterance with a clean reference may get, with probability ``data.dynamic_mixing`` per
epoch, the noise of another utterance (a *donor*) in place of its own: ``noisy' = clean_i + g * noise_j``
with ``noise_j = noisy_j - clean_j``. The gain keeps the donor's SNR, so the corpus's SNR
distribution is kept. Clean reference and transcript stay those of utterance ``i``.

``noisy - clean`` is the noise only for an additive mixture: a donor must have a clean reference, no
channel condition (``utt2cond`` condition ``radio``, or a RATS channel ``A``-``H``: the channel acts on
the speech) and no augmentation that acts on the mixture (``utt2aug`` ``bandlimit`` or ``codec``). Other
conditions, and directories without ``utt2cond``/``utt2aug`` (CHiME-4's simulated data, a LibriSpeech
mix), lend the noise of every utterance with a clean reference.

Every draw (mix or not, donor, noise offset) comes from a generator keyed by (seed, epoch, utterance
index): an epoch, and any part of it, loads the same way in any process, in any order.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

import numpy as np

from gradremedy.data.kaldi_dir import Utterance

# utt2cond conditions whose noisy input is not clean speech plus a noise: the synthetic radio link, and
# the RATS transceiver channels A-H (``data prepare rats`` writes the channel letter; its reference is the
# retransmitted source, passed through the channel, not a noise added to it).
CHANNEL_CONDITIONS = frozenset({"radio", *"ABCDEFGH"})
# utt2aug augmentations that act on the mixture, with the values that mean "not applied".
MIXTURE_AUGMENTATIONS: dict[str, frozenset[str]] = {
    "bandlimit": frozenset({"0", "false", "none", "off"}),
    "codec": frozenset({"0", "false", "none", "off"}),
}


def is_additive(utt: Utterance) -> bool:
    """Whether ``noisy - clean`` of ``utt`` is its noise: a clean reference, no channel, no codec/band."""
    if utt.clean is None or utt.condition in CHANNEL_CONDITIONS:
        return False
    for item in (utt.augmentations or "").split():
        name, _, value = item.partition("=")
        if name in MIXTURE_AUGMENTATIONS and value.lower() not in MIXTURE_AUGMENTATIONS[name]:
            return False
    return True


def donor_indices(utterances: Sequence[Utterance]) -> list[int]:
    """Positions in ``utterances`` of those whose noise can be lent (:func:`is_additive`)."""
    return [index for index, utt in enumerate(utterances) if is_additive(utt)]


def mix_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator of utterance ``index``'s draws in ``epoch`` (independent of any global state)."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(epoch, index)))


def draw_donor(rng: np.random.Generator, probability: float, index: int, donors: Sequence[int]) -> int | None:
    """With ``probability``, a donor other than ``index`` drawn uniformly from the sorted ``donors``;
    else (or when there is none) None."""
    if probability <= 0 or rng.random() >= probability:
        return None
    position = bisect.bisect_left(donors, index)
    own = position < len(donors) and donors[position] == index
    others = len(donors) - int(own)
    if others <= 0:
        return None
    pick = int(rng.integers(others))
    return int(donors[pick + 1 if own and pick >= position else pick])


def rms(x: np.ndarray) -> float:
    """Root mean square of a signal, in float64 (0 for an empty one)."""
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if len(x) else 0.0


def donor_levels(donor_noisy: np.ndarray, donor_clean: np.ndarray) -> tuple[float, float]:
    """(rms of the donor's speech, rms of its whole noise ``noisy - clean``): what :func:`remix` needs
    of the whole donor, the same in every epoch, so a loader can compute it once per donor."""
    if len(donor_noisy) != len(donor_clean):
        raise ValueError(f"donor noisy has {len(donor_noisy)} samples, its clean {len(donor_clean)}")
    noise = np.asarray(donor_noisy, dtype=np.float64) - np.asarray(donor_clean, dtype=np.float64)
    return rms(donor_clean), rms(noise)


def remix(
    clean: np.ndarray,
    donor_noisy: np.ndarray,
    donor_clean: np.ndarray,
    rng: np.random.Generator,
    *,
    clean_rms: float | None = None,
    levels: tuple[float, float] | None = None,
) -> np.ndarray | None:
    """``clean`` plus the donor's noise at the donor's SNR, as long as ``clean``; None if not possible.

    The noise ``donor_noisy - donor_clean`` is cut at a random offset when it is at least as long as
    ``clean``, else looped from a random offset. The gain is
    ``rms(clean) / rms(donor_clean) * rms(noise) / rms(cut)``: ``rms(clean) / rms(donor_clean)`` keeps
    the SNR of the whole donor, and ``rms(noise) / rms(cut)`` corrects for a cut of a non-stationary
    noise (a sound effect, say) that holds more or less energy than the whole. None (no mixing) when
    ``clean`` or ``donor_clean`` is silent, or the donor is empty: there is no SNR to keep.

    ``clean_rms`` (:func:`rms` of ``clean``) and ``levels`` (:func:`donor_levels` of the donor) may be
    passed when known: the result is the same, bit for bit; only the cut of the noise is computed.
    """
    if len(donor_noisy) != len(donor_clean):
        raise ValueError(f"donor noisy has {len(donor_noisy)} samples, its clean {len(donor_clean)}")
    clean_rms = rms(clean) if clean_rms is None else clean_rms
    donor_rms, noise_rms = donor_levels(donor_noisy, donor_clean) if levels is None else levels
    donor_len = len(donor_noisy)
    if clean_rms == 0 or donor_rms == 0 or donor_len == 0:
        return None
    length = len(clean)
    if donor_len >= length:
        offset = int(rng.integers(donor_len - length + 1))
        part: slice | np.ndarray = slice(offset, offset + length)
    else:
        offset = int(rng.integers(donor_len))
        part = (offset + np.arange(length)) % donor_len
    # The noise is computed on the cut only: noisy - clean is elementwise, so this is the cut of the noise.
    cut = np.asarray(donor_noisy[part], dtype=np.float64) - np.asarray(donor_clean[part], dtype=np.float64)
    cut_rms = rms(cut)
    gain = clean_rms / donor_rms * (noise_rms / cut_rms if cut_rms > 0 else 1.0)
    return (np.asarray(clean, dtype=np.float64) + gain * cut).astype(np.asarray(clean).dtype, copy=False)


__all__ = [
    "CHANNEL_CONDITIONS",
    "donor_indices",
    "donor_levels",
    "draw_donor",
    "is_additive",
    "mix_rng",
    "remix",
    "rms",
]
