"""gradremedy side by side with ESPnet on the same model sizes: one CPU thread, alternating runs, one process.

    bash scripts/setup-integrations.sh          # builds .venv-integrations (ESPnet 202511, torch 2.11.0)
    PYTHONPATH=src .venv-integrations/bin/python benchmarks/vs_espnet.py
    PYTHONPATH=src .venv-integrations/bin/python benchmarks/vs_espnet.py --sizes tiny --skip-train

Both sides run in the same interpreter with the same torch (ESPnet's venv; gradremedy from ``src``), so the
figures compare the code, not two builds of torch. Sizes: ``tiny`` (configs/tiny.yaml) and ``paper``
(configs/paper_rats.yaml): ESPnet's own classes are built with the same dimensions (see
:func:`build_espnet`), randomly initialised.

Training step (``--skip-train`` leaves it out): ESPnet's ``ESPnetEnhS2TModel`` (STFT + BLSTM mask
separator + iSTFT, log-mel front end with utterance MVN, Conformer, Transformer decoder, CTC) with its summed
loss ``loss_enh + loss_asr``: forward, one backward, clip at 5, Adam; against ``gradremedy train``'s own step
(``forward_backward`` + ``optimizer_step``) for ``sum`` and ``gr``. Random batches as in
benchmarks/step_speed.py: tiny 16 utterances, paper 4, of 1.5-3 s, 3 tokens per second. The three run in
rotating order after one warm-up step each; medians.

Beam search: one utterance of ``--seconds`` (4 s), the encoder output (gradremedy's frame count for that
length) the same random tensor on both sides, CTC weight 0.3, no LM, no length bonus, beam 10 and 60.
ESPnet: ``BatchBeamSearch`` with its ``TransformerDecoder`` and ``CTCPrefixScorer`` (pre-beam 1.5 x beam
on the decoder score), as ``espnet2.bin.asr_inference`` builds it; gradremedy:
:func:`gradremedy.decode.beam_search.beam_search` (cached decoder; ``--with-uncached`` also times it with
``cache=False``, the decoder re-run on every whole prefix). Both decoders get -30 on their <eos>
logit so that random weights never end a hypothesis early: both run 17 scoring steps (ESPnet: maxlen 17;
gradremedy: 16 tokens, then <eos>). Alternating order, one warm-up each, medians of ``--repeats``.

Every figure is printed as ``espnet_over_gradremedy_<what>: X`` (ESPnet's median time / ours); the last line
is ``espnet_over_gradremedy_decode_paper_beam60: X``. Both the process's CPU time and the elapsed (wall) time
of every run are recorded and printed; the ratios use CPU time unless ``--clock wall``: on a machine shared
with other jobs, elapsed time mostly measures how long a run waited for a core (both sides use one thread).
"""

from __future__ import annotations

import argparse
import copy
import logging
import statistics
import sys
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import torch

from gradremedy.config import Config, load_config
from gradremedy.data.batching import Batch
from gradremedy.decode.beam_search import beam_search
from gradremedy.models import JointModel
from gradremedy.provenance import cpu_name
from gradremedy.train import loop

sys.path.insert(0, str(Path(__file__).resolve().parent))
from step_speed import random_batches  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {"tiny": ROOT / "configs" / "tiny.yaml", "paper": ROOT / "configs" / "paper_rats.yaml"}
TRAIN_BATCH = {"tiny": 16, "paper": 4}
EOS_BIAS = -30.0  # added to both decoders' <eos> logit: random weights never end a hypothesis early
TOKENS = 16  # output tokens per hypothesis, then <eos>


# ---- ESPnet's side -----------------------------------------------------------------------------------


def build_espnet(cfg: Config, vocab_size: int) -> torch.nn.Module:
    """ESPnet's joint enhancement + ASR model with ``cfg``'s sizes (ESPnet's classes, random weights)."""
    from espnet2.asr.ctc import CTC
    from espnet2.asr.decoder.transformer_decoder import TransformerDecoder
    from espnet2.asr.encoder.conformer_encoder import ConformerEncoder
    from espnet2.asr.espnet_model import ESPnetASRModel
    from espnet2.asr.frontend.default import DefaultFrontend
    from espnet2.enh.decoder.stft_decoder import STFTDecoder
    from espnet2.enh.encoder.stft_encoder import STFTEncoder
    from espnet2.enh.espnet_enh_s2t_model import ESPnetEnhS2TModel
    from espnet2.enh.espnet_model import ESPnetEnhancementModel
    from espnet2.enh.loss.criterions.tf_domain import FrequencyDomainMSE
    from espnet2.enh.loss.wrappers.fixed_order import FixedOrderSolver
    from espnet2.enh.separator.rnn_separator import RNNSeparator
    from espnet2.layers.utterance_mvn import UtteranceMVN

    m = cfg.model
    enh = ESPnetEnhancementModel(
        encoder=STFTEncoder(
            n_fft=m.enhancer.n_fft, hop_length=m.enhancer.hop_length, default_fs=m.sample_rate
        ),
        separator=RNNSeparator(
            input_dim=m.enhancer.n_fft // 2 + 1,
            rnn_type="blstm",
            num_spk=1,
            nonlinear="relu",
            layer=m.enhancer.lstm_layers,
            unit=m.enhancer.lstm_units,
            dropout=m.enhancer.dropout,
        ),
        decoder=STFTDecoder(
            n_fft=m.enhancer.n_fft, hop_length=m.enhancer.hop_length, default_fs=m.sample_rate
        ),
        mask_module=None,
        loss_wrappers=[FixedOrderSolver(criterion=FrequencyDomainMSE())],
    )
    d = m.encoder.d_model
    asr = ESPnetASRModel(
        vocab_size=vocab_size,
        token_list=[str(i) for i in range(vocab_size)],
        frontend=DefaultFrontend(
            fs=m.sample_rate,
            n_fft=m.frontend.n_fft,
            hop_length=m.frontend.hop_length,
            n_mels=m.frontend.n_mels,
            fmin=int(m.frontend.f_min),
            fmax=int(m.frontend.f_max),
        ),
        specaug=None,
        normalize=UtteranceMVN(),
        preencoder=None,
        encoder=ConformerEncoder(
            input_size=m.frontend.n_mels,
            output_size=d,
            attention_heads=m.encoder.heads,
            linear_units=m.encoder.ffn_dim,
            num_blocks=m.encoder.blocks,
            dropout_rate=m.encoder.dropout,
            positional_dropout_rate=m.encoder.dropout,
            attention_dropout_rate=m.encoder.dropout,
            input_layer="conv2d",
            macaron_style=True,
            rel_pos_type="latest",
            pos_enc_layer_type="rel_pos",
            selfattention_layer_type="rel_selfattn",
            activation_type="swish",
            use_cnn_module=True,
            cnn_module_kernel=m.encoder.conv_kernel,
        ),
        postencoder=None,
        decoder=TransformerDecoder(
            vocab_size=vocab_size,
            encoder_output_size=d,
            attention_heads=m.decoder.heads,
            linear_units=m.decoder.ffn_dim,
            num_blocks=m.decoder.blocks,
            dropout_rate=m.decoder.dropout,
            positional_dropout_rate=m.decoder.dropout,
            self_attention_dropout_rate=m.decoder.dropout,
            src_attention_dropout_rate=m.decoder.dropout,
        ),
        ctc=CTC(odim=vocab_size, encoder_output_size=d),
        joint_network=None,
        ctc_weight=m.ctc_weight,
        lsm_weight=m.label_smoothing,
        report_cer=False,
        report_wer=False,
    )
    return ESPnetEnhS2TModel(enh_model=enh, s2t_model=asr, calc_enh_loss=True)


class EspnetStep:
    """ESPnet's training step on the summed loss: forward, backward, clip, Adam."""

    def __init__(self, cfg: Config, vocab_size: int):
        torch.manual_seed(cfg.train.seed)
        self.model = build_espnet(cfg, vocab_size).train()
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.train.lr)
        self.grad_clip = cfg.train.grad_clip

    def __call__(self, batch) -> None:
        loss, _, _ = self.model(
            speech=batch.noisy,
            speech_lengths=batch.noisy_lens,
            text_spk1=batch.tokens,
            text_spk1_lengths=batch.token_lens,
            speech_ref1=batch.clean,
        )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.optimizer.step()


def espnet_search(cfg: Config, vocab_size: int, beam: int):
    """ESPnet's ``BatchBeamSearch`` over the decoder and CTC of an ESPnet model of ``cfg``'s sizes."""
    from espnet.nets.batch_beam_search import BatchBeamSearch
    from espnet.nets.scorers.ctc import CTCPrefixScorer

    torch.manual_seed(cfg.train.seed)
    asr = build_espnet(cfg, vocab_size).s2t_model.eval()
    with torch.no_grad():
        asr.decoder.output_layer.bias[vocab_size - 1] += EOS_BIAS
    ctc_weight = 0.3
    search = BatchBeamSearch(
        scorers={"decoder": asr.decoder, "ctc": CTCPrefixScorer(ctc=asr.ctc, eos=vocab_size - 1)},
        weights={"decoder": 1.0 - ctc_weight, "ctc": ctc_weight},
        beam_size=beam,
        vocab_size=vocab_size,
        sos=vocab_size - 1,
        eos=vocab_size - 1,
        token_list=None,
        pre_beam_score_key="full",
    ).eval()

    def run(enc: torch.Tensor) -> int:
        with torch.no_grad():
            hyps = search(x=enc[0], maxlenratio=-(TOKENS + 1), minlenratio=0.0)
        return len(hyps[0].yseq) - 2  # without <sos> and <eos>

    return run


# ---- gradremedy's side -------------------------------------------------------------------------------


def ours_search(cfg: Config, vocab_size: int, beam: int, cache: bool = True):
    torch.manual_seed(cfg.train.seed)
    model = JointModel(cfg.model, vocab_size, use_enhancer=False).eval()
    with torch.no_grad():
        model.decoder.output.bias[vocab_size - 1] += EOS_BIAS

    def run(enc: torch.Tensor) -> int:
        lengths = torch.tensor([enc.shape[1]])
        hyps = beam_search(
            model,
            enc,
            lengths,
            beam_size=beam,
            ctc_weight=0.3,
            max_length_ratio=(TOKENS + 0.5) / enc.shape[1],
            cache=cache,
        )
        return len(hyps[0][0].tokens)

    return run


def ours_step(cfg: Config, vocab_size: int, method: str):
    method_cfg = copy.deepcopy(cfg)
    method_cfg.surgery.method = method
    torch.manual_seed(cfg.train.seed)
    run = loop.build_run(
        method_cfg, SimpleNamespace(vocab_size=vocab_size), torch.device("cpu"), rank=0, world_size=1
    )

    def step(batch) -> None:
        loop.forward_backward(run, batch, 1)
        loop.optimizer_step(run)

    return step


# ---- timing ------------------------------------------------------------------------------------------


def alternate(runs: dict, argument, repeats: int) -> tuple[dict[str, dict[str, float]], dict]:
    """Each of ``runs`` once to warm up, then ``repeats`` rounds in rotating order. Returns the median
    seconds of each run by clock (``wall``: elapsed; ``cpu``: this process's CPU time) and its result."""
    results = {name: run(argument) for name, run in runs.items()}
    times: dict[str, dict[str, list[float]]] = {name: {"wall": [], "cpu": []} for name in runs}
    names = list(runs)
    for i in range(repeats):
        for name in names[i % len(names) :] + names[: i % len(names)]:
            wall, cpu = time.perf_counter(), time.process_time()
            results[name] = runs[name](argument)
            times[name]["cpu"].append(time.process_time() - cpu)
            times[name]["wall"].append(time.perf_counter() - wall)
    medians = {name: {clock: statistics.median(t) for clock, t in by.items()} for name, by in times.items()}
    return medians, results


def describe(medians: dict[str, dict[str, float]], unit: str) -> str:
    """``name cpu X (wall Y)`` for every run, in ``unit`` (``s`` or ``ms``)."""
    scale = 1000.0 if unit == "ms" else 1.0
    digits = 0 if unit == "ms" else 3
    return ", ".join(
        f"{name} {by['cpu'] * scale:.{digits}f} {unit} (wall {by['wall'] * scale:.{digits}f})"
        for name, by in medians.items()
    )


def longest_first(batch: Batch) -> Batch:
    """The batch sorted by decreasing length, as ESPnet's BLSTM (packed sequences) requires."""
    order = batch.noisy_lens.argsort(descending=True, stable=True)
    return Batch(
        [batch.ids[i] for i in order.tolist()],
        batch.noisy[order],
        batch.noisy_lens[order],
        batch.clean[order],
        batch.has_clean[order],
        batch.tokens[order],
        batch.token_lens[order],
        batch.has_text[order],
    )


def encoder_frames(cfg: Config, vocab_size: int, seconds: float) -> int:
    model = JointModel(cfg.model, vocab_size, use_enhancer=False).eval()
    samples = int(seconds * cfg.model.sample_rate)
    with torch.no_grad():
        _, lengths = model.encode(torch.zeros(1, samples), torch.tensor([samples]))
    return int(lengths[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["tiny", "paper"], choices=list(CONFIGS))
    parser.add_argument("--beams", nargs="+", type=int, default=[10, 60])
    parser.add_argument("--seconds", type=float, default=4.0, help="length of the decoded utterance")
    parser.add_argument("--repeats", type=int, default=5, help="timed decodes per side and case")
    parser.add_argument("--train-steps", type=int, default=5, help="timed training steps per side")
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument(
        "--clock", choices=["cpu", "wall"], default="cpu", help="the time the ratios compare (default: cpu)"
    )
    parser.add_argument(
        "--with-uncached", action="store_true", help="also time our search without the decoder cache"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)
    import espnet

    print(f"machine: {cpu_name()}; torch {torch.__version__}, 1 thread; espnet {espnet.__version__}")
    print(f"ratios: ESPnet's median {args.clock} time / ours")
    ratios: list[tuple[str, float]] = []
    for size in args.sizes:
        cfg = load_config(CONFIGS[size], ["train.amp=none"])  # float32 on both sides, as ESPnet's step runs
        vocab_size = cfg.tokenizer.vocab_size + 2
        if not args.skip_train:
            batch_size = TRAIN_BATCH[size]
            batch = longest_first(random_batches(cfg, vocab_size, 1, batch_size, 3.0, 3.0)[0])
            steps = {
                "espnet": EspnetStep(cfg, vocab_size),
                "sum": ours_step(cfg, vocab_size, "sum"),
                "gr": ours_step(cfg, vocab_size, "gr"),
            }
            params = sum(p.numel() for p in steps["espnet"].model.parameters()) / 1e6
            ours_params = sum(p.numel() for p in JointModel(cfg.model, vocab_size).parameters()) / 1e6
            medians, _ = alternate(steps, batch, args.train_steps)
            median = {name: by[args.clock] for name, by in medians.items()}
            print(
                f"train {size} (batch {batch_size} x <= 3 s; {params:.2f} M parameters in ESPnet's model, "
                f"{ours_params:.2f} M in ours), CPU time per step: {describe(medians, 'ms')} "
                f"(medians of {args.train_steps})"
            )
            for method in ("sum", "gr"):
                ratios.append((f"train_{size}_{method}", median["espnet"] / median[method]))
                print(f"espnet_over_gradremedy_train_{size}_{method}: {ratios[-1][1]:.2f}", flush=True)
        frames = encoder_frames(cfg, vocab_size, args.seconds)
        enc = torch.randn(1, frames, cfg.model.encoder.d_model, generator=torch.Generator().manual_seed(0))
        for beam in args.beams:
            runs = {
                "espnet": espnet_search(cfg, vocab_size, beam),
                "ours": ours_search(cfg, vocab_size, beam),
            }
            if args.with_uncached:
                runs["ours_uncached"] = ours_search(cfg, vocab_size, beam, cache=False)
            medians, tokens = alternate(runs, enc, args.repeats)
            median = {name: by[args.clock] for name, by in medians.items()}
            print(
                f"decode {size} beam {beam} ({args.seconds:g} s, {frames} encoder frames, tokens out: espnet "
                f"{tokens['espnet']}, ours {tokens['ours']}), CPU time: {describe(medians, 's')} "
                f"(medians of {args.repeats})"
            )
            if args.with_uncached:
                ratio = median["espnet"] / median["ours_uncached"]
                print(f"espnet_over_gradremedy_uncached_decode_{size}_beam{beam}: {ratio:.2f}")
            ratios.append((f"decode_{size}_beam{beam}", median["espnet"] / median["ours"]))
            print(f"espnet_over_gradremedy_decode_{size}_beam{beam}: {ratios[-1][1]:.2f}", flush=True)
    headline = [value for name, value in ratios if name == "decode_paper_beam60"]
    if headline and ratios[-1][0] != "decode_paper_beam60":  # the headline figure comes last
        print(f"espnet_over_gradremedy_decode_paper_beam60: {headline[0]:.2f}")


if __name__ == "__main__":
    main()
