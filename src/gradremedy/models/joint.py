"""The joint SE + ASR model: enhancer -> log-mel -> Conformer -> (CTC, attention decoder).

    x̂ = SE(y)                                       front end of model.enhancer.kind (none: asr_only)
    enc = Conformer(LogMel(x̂))
    L_asr = c · L_ctc + (1 - c) · L_att              c = ctc_weight
    L = (1 - w) · L_asr + w · L_se                  w = se_weight
        main = (1 - w) · L_asr,  aux = w · L_se

``forward`` returns every term separately (``se``, ``ctc``, ``att``, ``asr``, ``main``, ``aux``,
``loss``, ``acc``) so that a gradient method can treat ``main`` and ``aux`` apart. The ASR losses are
per-utterance sums divided by the number of utterances with a transcript (the batch size when every
utterance has one, ESPnet style): an SE-only utterance (``has_text`` False) adds nothing to them nor to
``acc``, and a batch without any transcript has ASR losses of 0 with a zero gradient. The SE loss (the
sum of the enhancer's loss terms) is averaged over the utterances that have a clean reference only.
``shared_parameters()`` names the parameters both losses reach: those the enhancer declares shared.
``reduction="none"`` gives per-utterance values instead.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from gradremedy.config import ModelConfig
from gradremedy.models.conformer import ConformerEncoder, subsampled_lengths
from gradremedy.models.ctc import CTCHead
from gradremedy.models.decoder import TransformerDecoder, label_smoothing_loss, token_accuracy
from gradremedy.models.frontend import LogMelFrontend
from gradremedy.models.masking import lengths_to_mask, stft_frames
from gradremedy.models.registry import build_enhancer


class JointModel(nn.Module):
    """SE front end and hybrid CTC/attention ASR back end, trained together."""

    def __init__(self, cfg: ModelConfig, vocab_size: int, use_enhancer: bool = True) -> None:
        super().__init__()
        if vocab_size < 3:
            raise ValueError(f"vocab_size must be at least 3 (blank, one token, sos/eos), got {vocab_size}")
        for name in ("ctc_weight", "se_weight", "label_smoothing"):
            if not 0.0 <= getattr(cfg, name) <= 1.0:
                raise ValueError(f"model.{name} must lie in [0, 1], got {getattr(cfg, name)}")
        self.vocab_size = vocab_size
        self.sample_rate = cfg.sample_rate
        self.blank_id = 0
        self.sos_id = self.eos_id = vocab_size - 1
        self.ctc_weight = cfg.ctc_weight
        self.se_weight = cfg.se_weight
        self.label_smoothing = cfg.label_smoothing
        self.use_enhancer = use_enhancer
        self.enhancer = build_enhancer(cfg.enhancer) if use_enhancer else None
        self.frontend = LogMelFrontend(cfg.frontend, cfg.sample_rate)
        self.encoder = ConformerEncoder(cfg.encoder, cfg.frontend.n_mels)
        self.decoder = TransformerDecoder(cfg.decoder, vocab_size, cfg.encoder.d_model)
        self.ctc = CTCHead(cfg.encoder.d_model, vocab_size, cfg.encoder.dropout, self.blank_id)
        self._min_samples = self._shortest_encodable(cfg.frontend.hop_length)

    @staticmethod
    def _shortest_encodable(hop_length: int) -> int:
        """Fewest samples that still give one encoder frame (7 feature frames)."""
        samples = 0
        while int(subsampled_lengths(stft_frames(torch.tensor(samples), hop_length))) < 1:
            samples += hop_length
        return samples

    # -- parts -----------------------------------------------------------------------------------
    def shared_parameters(self) -> list[nn.Parameter]:
        """The SE front end's shared parameters: the only ones both the SE and the ASR loss reach."""
        return self.enhancer.shared_parameters() if self.enhancer is not None else []

    def parameter_counts(self) -> dict[str, int]:
        """Number of parameters per part (enhancer, frontend, encoder, decoder, ctc) and in total."""
        parts = {
            "enhancer": self.enhancer,
            "frontend": self.frontend,
            "encoder": self.encoder,
            "decoder": self.decoder,
            "ctc": self.ctc,
        }
        counts = {
            name: sum(p.numel() for p in part.parameters()) if part is not None else 0
            for name, part in parts.items()
        }
        counts["total"] = sum(p.numel() for p in self.parameters())
        return counts

    # -- inference helpers -----------------------------------------------------------------------
    def enhance(self, noisy: Tensor, noisy_lens: Tensor) -> tuple[Tensor, Tensor]:
        """Enhanced waveforms (B, T) and their lengths (the noisy input itself without an enhancer)."""
        if self.enhancer is None:
            return noisy * lengths_to_mask(noisy_lens, noisy.shape[1]), noisy_lens
        return self.enhancer(noisy, noisy_lens).enhanced, noisy_lens

    def _encode_waveform(self, waveform: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        if bool((lengths < self._min_samples).any()):
            raise ValueError(
                f"an utterance has {int(lengths.min())} samples; the encoder needs at least "
                f"{self._min_samples} ({self._min_samples / self.sample_rate:.3f} s)"
            )
        features, feature_lens = self.frontend(waveform, lengths)  # (B, N, n_mels)
        return self.encoder(features, feature_lens)  # (B, T', D), (B,)

    def encode(self, noisy: Tensor, noisy_lens: Tensor) -> tuple[Tensor, Tensor]:
        """Enhance, log-mel, Conformer: (B, T) waveforms -> (B, T', D) encodings and lengths (B,)."""
        _, enc, enc_lens = self.enhance_and_encode(noisy, noisy_lens)
        return enc, enc_lens

    def enhance_and_encode(self, noisy: Tensor, noisy_lens: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """:meth:`encode` that also returns the enhanced waveforms (B, T) the encoder read (what
        :meth:`enhance` gives), so that evaluation scores the enhancement without a second enhancer pass."""
        enhanced = self.enhance(noisy, noisy_lens)[0]
        return (enhanced, *self._encode_waveform(enhanced, noisy_lens))

    def ctc_log_probs(self, enc: Tensor) -> Tensor:
        """(B, T', D) -> CTC log-probabilities (B, T', V)."""
        return self.ctc(enc)

    def decoder_log_probs(self, prefix: Tensor, enc: Tensor, enc_lens: Tensor) -> Tensor:
        """Next-token log-probabilities (N, V) after each prefix (N, L) that starts with sos.

        Re-runs the decoder on the whole prefix (no incremental cache): simple and exact.
        """
        prefix_lens = torch.full((prefix.shape[0],), prefix.shape[1], dtype=torch.long, device=prefix.device)
        logits = self.decoder(prefix, prefix_lens, enc, enc_lens, last_only=True)  # (N, 1, V)
        return torch.log_softmax(logits[:, 0].float(), dim=-1)

    # -- training --------------------------------------------------------------------------------
    def _decoder_io(self, tokens: Tensor, token_lens: Tensor) -> tuple[Tensor, Tensor]:
        """[sos] + y as input (padded with eos) and y + [eos] as target (padded with -1): both (B, U + 1)."""
        batch = tokens.shape[0]
        valid = lengths_to_mask(token_lens, tokens.shape[1])  # (B, U)
        body = torch.where(valid, tokens, torch.full_like(tokens, self.eos_id))
        sos = torch.full((batch, 1), self.sos_id, dtype=tokens.dtype, device=tokens.device)
        decoder_in = torch.cat([sos, body], dim=1)  # (B, U + 1)
        target = torch.cat(
            [torch.where(valid, tokens, torch.full_like(tokens, -1)), torch.full_like(sos, -1)], dim=1
        )  # (B, U + 1)
        target.scatter_(1, token_lens[:, None], self.eos_id)  # eos right after the last token
        return decoder_in, target

    def forward(
        self,
        noisy: Tensor,
        noisy_lens: Tensor,
        tokens: Tensor,
        token_lens: Tensor,
        clean: Tensor | None = None,
        has_clean: Tensor | None = None,
        reduction: str = "mean",
        has_text: Tensor | None = None,
        return_ctc_log_probs: bool = False,
    ) -> dict[str, Tensor]:
        """Named losses of a batch; ``reduction="none"`` returns per-utterance values (B,) instead.

        ``has_text`` (B,) bool marks the utterances with a transcript (default: all); the others (SE-only)
        have empty ``tokens`` and count for the SE loss only (per utterance: ASR losses and ``acc`` 0).

        ``return_ctc_log_probs`` adds the CTC log-probabilities (B, T', V) and encoder lengths (B,) the losses
        were computed from, under ``ctc_log_probs`` and ``enc_lens`` (validation decodes them greedily
        instead of running the encoder a second time)."""
        if reduction not in ("mean", "none"):
            raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
        batch = noisy.shape[0]
        if self.enhancer is not None:
            if clean is None:  # no reference at all: a zero that stays connected to the SE parameters
                waveform = self.enhancer(noisy, noisy_lens).enhanced
                se = waveform.sum(dim=1) * 0.0
                has_clean = torch.zeros(batch, dtype=torch.bool, device=noisy.device)
            else:
                if has_clean is None:
                    has_clean = torch.ones(batch, dtype=torch.bool, device=noisy.device)
                clean = torch.where(has_clean[:, None], clean, 0.0)  # no NaN from absent references
                enhanced = self.enhancer(noisy, noisy_lens, clean)
                waveform = enhanced.enhanced
                se = torch.where(has_clean, sum(enhanced.losses.values()), 0.0)  # (B,)
        else:
            waveform = noisy
            se = torch.zeros(batch, device=noisy.device)
            has_clean = torch.zeros(batch, dtype=torch.bool, device=noisy.device)

        enc, enc_lens = self._encode_waveform(waveform, noisy_lens)  # (B, T', D)
        ctc_log_probs = self.ctc(enc)
        ctc = self.ctc.loss(ctc_log_probs, enc_lens, tokens, token_lens)  # (B,)
        decoder_in, target = self._decoder_io(tokens, token_lens)
        logits = self.decoder(decoder_in, token_lens + 1, enc, enc_lens)  # (B, U + 1, V)
        att = label_smoothing_loss(logits, target, self.label_smoothing)  # (B,)
        correct, counted = token_accuracy(logits.detach(), target)
        if has_text is not None:  # where, not a product: nothing of an SE-only utterance gets through
            ctc = torch.where(has_text, ctc, 0.0)
            att = torch.where(has_text, att, 0.0)
            correct, counted = correct * has_text, counted * has_text

        if reduction == "mean":
            transcribed = batch if has_text is None else has_text.sum().clamp(min=1)
            ctc, att = ctc.sum() / transcribed, att.sum() / transcribed
            se = se.sum() / has_clean.sum().clamp(min=1)
            acc = correct.sum() / counted.sum().clamp(min=1)
        else:
            acc = correct / counted.clamp(min=1)
        asr = self.ctc_weight * ctc + (1.0 - self.ctc_weight) * att
        main = (1.0 - self.se_weight) * asr
        aux = self.se_weight * se
        outputs = {
            "se": se,
            "ctc": ctc,
            "att": att,
            "asr": asr,
            "main": main,
            "aux": aux,
            "loss": main + aux,
            "acc": acc.float().detach(),
        }
        if return_ctc_log_probs:
            outputs.update(ctc_log_probs=ctc_log_probs, enc_lens=enc_lens)
        return outputs
