"""Gradient Remedy in ESPnet: train a tiny joint enhancement + ASR model (ESPnetEnhS2TModel) with ESPnet's
own command line, data loading and trainer loop, once per gradient method, and print the losses.

    .venv-integrations/bin/python examples/integrations/espnet_gradient_remedy.py --methods sum gr

It writes a tiny synthetic corpus in ESPnet's Kaldi-style layout (short tone sequences, one tone per
character of the transcript, in white noise, at 8 kHz; made in a second with numpy and soundfile) and
a tiny model config, then runs ``GradientMethodEnhS2TTask.main`` -- the same as
``python -m gradremedy.integrations.espnet --config <config> --output_dir <dir>`` -- with
``--gradient_method <method>``. The tests of the adapter use the same corpus and config.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import yaml

RATE = 8000
VOCAB = "abcde"
TRANSCRIPTS = {"utt1": "abc", "utt2": "bad", "utt3": "cab", "utt4": "dea"}


def _utterance(text: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(noisy, clean) float32 waveforms: 0.1 s per character, a tone whose pitch names the character."""
    t = np.arange(int(0.1 * RATE)) / RATE
    clean = np.concatenate([0.3 * np.sin(2 * np.pi * (300 + 150 * VOCAB.index(c)) * t) for c in text])
    noisy = clean + 0.1 * rng.standard_normal(clean.shape)
    return noisy.astype(np.float32), clean.astype(np.float32)


def write_corpus(root: Path) -> Path:
    """Kaldi-style data dir (wav.scp, spk1.scp, text, utt2spk, speech_shape) and the token list."""
    data = root / "data"
    wavs = root / "wav"
    data.mkdir(parents=True)
    wavs.mkdir()
    rng = np.random.default_rng(0)
    wav_scp, spk1_scp, text, shape = [], [], [], []
    for utt, words in TRANSCRIPTS.items():
        noisy, clean = _utterance(words, rng)
        sf.write(wavs / f"{utt}.wav", noisy, RATE, subtype="FLOAT")
        sf.write(wavs / f"{utt}_clean.wav", clean, RATE, subtype="FLOAT")
        wav_scp.append(f"{utt} {wavs / f'{utt}.wav'}")
        spk1_scp.append(f"{utt} {wavs / f'{utt}_clean.wav'}")
        text.append(f"{utt} {words}")
        shape.append(f"{utt} {len(noisy)}")
    files = {"wav.scp": wav_scp, "spk1.scp": spk1_scp, "text": text, "speech_shape": shape}
    for name, lines in files.items():
        (data / name).write_text("\n".join(lines) + "\n")
    (data / "utt2spk").write_text("".join(f"{u} {u}\n" for u in TRANSCRIPTS))
    tokens = ["<blank>", "<unk>", *VOCAB, "<sos/eos>"]
    (root / "tokens.txt").write_text("\n".join(tokens) + "\n")
    return data


def tiny_config(root: Path, enh_weight: float = 0.3, **overrides: object) -> Path:
    """A tiny ESPnetEnhS2TModel (BLSTM mask front end, Transformer encoder/decoder) and its training setup.

    ``enh_weight`` weights the enhancement loss (ESPnet's loss wrapper weight); ``overrides`` replace or
    add top-level keys of the config (anything ESPnet's enh_s2t command line takes).
    """
    data = root / "data"
    config = {
        "subtask_series": ["enh", "asr"],
        "model_conf": {"calc_enh_loss": True, "bypass_enh_prob": 0.0},
        "enh_encoder": "stft",
        "enh_encoder_conf": {"n_fft": 64, "hop_length": 16},
        "enh_decoder": "stft",
        "enh_decoder_conf": {"n_fft": 64, "hop_length": 16},
        "enh_separator": "rnn",
        "enh_separator_conf": {"rnn_type": "blstm", "num_spk": 1, "nonlinear": "relu", "layer": 1,
                               "unit": 16, "dropout": 0.0},
        "enh_criterions": [{"name": "mse_fd", "conf": {}, "wrapper": "fixed_order",
                            "wrapper_conf": {"weight": enh_weight}}],
        "frontend": "default",
        "frontend_conf": {"fs": RATE, "n_fft": 128, "hop_length": 32, "n_mels": 20},
        "normalize": "utterance_mvn",
        "asr_encoder": "transformer",
        "asr_encoder_conf": {"output_size": 16, "attention_heads": 2, "linear_units": 32, "num_blocks": 1,
                             "dropout_rate": 0.0, "positional_dropout_rate": 0.0,
                             "attention_dropout_rate": 0.0, "input_layer": "linear"},
        "asr_decoder": "transformer",
        "asr_decoder_conf": {"attention_heads": 2, "linear_units": 32, "num_blocks": 1, "dropout_rate": 0.0,
                             "positional_dropout_rate": 0.0, "self_attention_dropout_rate": 0.0,
                             "src_attention_dropout_rate": 0.0},
        "asr_model_conf": {"ctc_weight": 0.3, "lsm_weight": 0.0, "length_normalized_loss": False},
        "token_type": "char",
        "token_list": str(root / "tokens.txt"),
        "optim": "sgd",
        "optim_conf": {"lr": 0.05},
        "batch_type": "unsorted",
        "batch_size": 2,
        "accum_grad": 2,
        "grad_clip": 1.0,
        "max_epoch": 1,
        "num_iters_per_epoch": None,
        "seed": 0,
        "num_workers": 0,
        "ngpu": 0,
        "use_amp": False,
        "log_interval": 1,
        "use_preprocessor": True,
        "text_name": ["text_spk1"],
        "use_tensorboard": False,
        "use_matplotlib": False,
        "num_att_plot": 0,
        "keep_nbest_models": 1,
        "best_model_criterion": [["valid", "loss", "min"]],
        "train_data_path_and_name_and_type": [[str(data / "wav.scp"), "speech", "sound"],
                                              [str(data / "spk1.scp"), "speech_ref1", "sound"],
                                              [str(data / "text"), "text_spk1", "text"]],
        "valid_data_path_and_name_and_type": [[str(data / "wav.scp"), "speech", "sound"],
                                              [str(data / "spk1.scp"), "speech_ref1", "sound"],
                                              [str(data / "text"), "text_spk1", "text"]],
        "train_shape_file": [str(data / "speech_shape")],
        "valid_shape_file": [str(data / "speech_shape")],
    }
    config.update(overrides)
    path = root / f"config-{len(list(root.glob('config-*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def final_losses(out: Path) -> str:
    """The last epoch's mean training and validation losses, from the reporter in ESPnet's checkpoint."""
    import torch

    reporter = torch.load(out / "checkpoint.pth", weights_only=False)["reporter"]
    last = reporter["stats"][reporter["epoch"]]
    return "  ".join(
        f"{stage}: loss_asr={last[stage]['loss_asr']:.3f} loss_enh={last[stage]['loss_enh']:.4f}"
        for stage in ("train", "valid")
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--methods", nargs="+", default=["sum", "gr"], help="gradremedy registry names")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temporary directory")
    args = parser.parse_args()

    from gradremedy.integrations.espnet import GradientMethodEnhS2TTask

    with tempfile.TemporaryDirectory(prefix="gradremedy-espnet-") as scratch:
        root = args.workdir or Path(scratch)
        if not (root / "data").exists():
            write_corpus(root)
        # The enhancement loss weighted up so that, at this tiny scale, the two tasks' gradients on the
        # front end are of similar size and the methods differ.
        adam = {"optim": "adam", "optim_conf": {"lr": 0.002}}
        config = tiny_config(root, enh_weight=100.0, max_epoch=args.epochs, **adam)
        results = []
        for method in args.methods:
            out = root / f"exp-{method}"
            GradientMethodEnhS2TTask.main(
                cmd=["--config", str(config), "--output_dir", str(out), "--gradient_method", method]
            )
            results.append(f"{method}: after {args.epochs} epochs  {final_losses(out)}")
        print("\n".join(results))


if __name__ == "__main__":
    main()
