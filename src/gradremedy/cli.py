"""The ``gradremedy`` command line: argument parsing and dispatch only.

Each subcommand maps its flags onto one function of the package and prints nothing of its own beyond
errors. Expected failures (bad config, bad data, a refused experiment directory) surface as one line on
stderr and exit status 1 or 2, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import gradremedy.blas_threads  # noqa: F401 - first, before numpy loads (see the module)
from gradremedy.config import UNTRANSCRIBED_POLICIES
from gradremedy.errors import UserError
from gradremedy.surgery.registry import method_names

METHODS = ("asr_only", *method_names())  # a training mode, then every registered gradient method
# Modules of the speech system, installed by the 'asr' extra (the gradremedy.surgery library needs none).
SPEECH_MODULES = (
    "yaml",
    "scipy",
    "soundfile",
    "sentencepiece",
    "jiwer",
    "pesq",
    "pystoi",
    "matplotlib",
    "tensorboard",
    "tqdm",
)


def _add_data(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="build, prepare and check data directories")
    dsub = data.add_subparsers(dest="data_command", required=True)

    synth = dsub.add_parser("synth", help="build the embedded noisy-speech corpus offline")
    synth.add_argument("--preset", choices=("tiny", "read"), default="tiny")
    synth.add_argument("--out", type=Path, required=True)
    synth.add_argument("--num-utts", type=int, default=None, help="total over train/valid/test")
    synth.add_argument("--seed", type=int, default=1)
    synth.add_argument("--jobs", type=int, default=None, help="worker processes (default: all cores)")
    synth.add_argument(
        "--sample-rate", type=int, default=None, help="of the written audio in Hz (default: the preset's)"
    )
    synth.add_argument(
        "--no-augment",
        action="append",
        default=[],
        metavar="NAME",
        help="switch off one augmentation (repeatable; 'all' for every one)",
    )
    synth.set_defaults(func=_run_synth)

    check = dsub.add_parser("check", help="validate a Kaldi/ESPnet data directory")
    check.add_argument("dir", type=Path)
    check.add_argument("--tokenizer", type=Path, default=None, help="tokenizer model to check characters")
    check.add_argument(
        "--untranscribed",
        choices=UNTRANSCRIBED_POLICIES,
        default="error",
        help="se_only: accept utterances without a transcript that have a clean reference (SE-only training)",
    )
    check.set_defaults(func=_run_check)

    prep = dsub.add_parser("prepare", help="turn a corpus distribution into data directories")
    prep.add_argument("corpus", choices=("chime4", "rats", "librispeech", "commonvoice"))
    prep.add_argument("path", type=Path, nargs="?", default=None, help="root of the corpus distribution")
    prep.add_argument("--root", type=Path, default=None, help="the same as PATH")
    prep.add_argument("--out", type=Path, required=True)
    prep.add_argument(
        "--noise",
        choices=("mix", "none"),
        default="mix",
        help="librispeech/commonvoice: mix the clean speech with the corpus's noises (default) or not",
    )
    prep.add_argument("--seed", type=int, default=1, help="librispeech/commonvoice: of the noise mix")
    prep.set_defaults(func=_run_prepare)

    real = dsub.add_parser("real-voice", help="build the real-voice test set (a human voice; testing only)")
    real.add_argument("--out", type=Path, required=True)
    real.add_argument("--sample-rate", type=int, default=8000, help="of the written audio in Hz")
    real.add_argument("--seed", type=int, default=1)
    real.add_argument("--num-utts", type=int, default=100)
    real.add_argument(
        "--sounds", type=Path, default=None, help="folder of her recordings (default: the Debian package's)"
    )
    real.set_defaults(func=_run_real_voice)

    speech = dsub.add_parser(
        "real-speech", help="build an SE training set of real voices without transcripts (other languages)"
    )
    speech.add_argument("--out", type=Path, required=True, help="the Kaldi directory to write")
    speech.add_argument(
        "--languages", default="fr,it,ru", help="comma-separated, of es, fr, it, ru (es is the test voice's)"
    )
    speech.add_argument("--num-utts", type=int, default=2400)
    speech.add_argument("--seed", type=int, default=1)
    speech.add_argument("--sample-rate", type=int, default=8000, help="of the written audio in Hz")
    speech.add_argument(
        "--sounds", type=Path, default=None, help="the Asterisk sounds folder (default: the Debian packages')"
    )
    speech.set_defaults(func=_run_real_speech)


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train the joint SE + ASR model")
    p.add_argument("--config", type=Path, required=True)
    p.add_argument("--data", type=Path, required=True, help="folder with train/ and valid/ subfolders")
    p.add_argument("--out", type=Path, required=True, help="experiment directory")
    p.add_argument("--method", choices=METHODS, default=None, help="overrides surgery.method")
    p.add_argument("--seed", type=int, default=None, help="overrides train.seed")
    p.add_argument("--max-steps", type=int, default=None, help="overrides train.max_steps")
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--overwrite", action="store_true", help="start over in an existing EXP")
    p.add_argument("--skip-bad", action="store_true", help="skip utterances that fail the data check")
    p.set_defaults(func=_run_train)

    lm = sub.add_parser("train-lm", help="train an LSTM language model on tokens")
    lm.add_argument("--config", type=Path, required=True)
    lm.add_argument("--text", type=Path, required=True, help="text file, one sentence per line")
    lm.add_argument("--out", type=Path, required=True)
    lm.add_argument("--tokenizer", type=Path, default=None, help="tokenizer of the ASR experiment")
    lm.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    lm.add_argument("--device", default="cpu")
    lm.set_defaults(func=_run_train_lm)


def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="decode a data directory and score it")
    p.add_argument("--exp", type=Path, required=True)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--out", type=Path, default=None, help="JSON results file")
    p.add_argument("--beam", type=int, default=None)
    p.add_argument("--lm", type=Path, default=None)
    p.add_argument("--lm-weight", type=float, default=None)
    p.add_argument("--checkpoint", choices=("average", "best", "last"), default="average")
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--se-max-utts",
        type=int,
        default=None,
        help="PESQ/STOI/SI-SNR on at most N utterances (0: all)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="processes scoring PESQ/STOI/SI-SNR beside decoding (default: half the cores; 0: none)",
    )
    p.set_defaults(func=_run_eval)

    t = sub.add_parser("transcribe", help="transcribe audio files")
    t.add_argument("--exp", type=Path, required=True)
    t.add_argument("files", nargs="+", type=Path)
    t.add_argument("--enhanced-dir", type=Path, default=None)
    t.add_argument("--beam", type=int, default=None)
    t.add_argument("--lm", type=Path, default=None)
    t.add_argument("--lm-weight", type=float, default=None)
    t.add_argument("--checkpoint", choices=("average", "best", "last"), default="average")
    t.add_argument("--device", default="cpu")
    t.set_defaults(func=_run_transcribe)


def _add_experiments(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="train and evaluate every method x seed, then report")
    p.add_argument("--config", type=Path, required=True)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--methods", default="asr_only,sum,pcgrad,gradvac,cagrad,mgda,gr")
    p.add_argument("--seeds", default="1,2,3")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=_run_compare)

    d = sub.add_parser("demo", help="the main job: build the tiny corpus, train sum/gr/asr_only, report")
    d.add_argument("--out", type=Path, default=Path("demo"))
    d.set_defaults(func=_run_demo)


def _run_synth(args: argparse.Namespace) -> int:
    from gradremedy.data.synth import synthesize_corpus

    synthesize_corpus(
        args.out,
        preset=args.preset,
        num_utts=args.num_utts,
        seed=args.seed,
        jobs=args.jobs,
        disabled_augmentations=args.no_augment,
        sample_rate=args.sample_rate,
    )
    return 0


def _run_check(args: argparse.Namespace) -> int:
    from gradremedy.data.check import check_directory

    problems = check_directory(args.dir, tokenizer_path=args.tokenizer, untranscribed=args.untranscribed)
    for problem in problems:
        print(problem)
    if problems:
        print(f"{args.dir}: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print(f"{args.dir}: OK")
    return 0


def _run_prepare(args: argparse.Namespace) -> int:
    root = args.path or args.root
    if root is None:
        raise UserError(f"data prepare {args.corpus}: give the corpus folder (PATH)")
    if args.corpus in ("librispeech", "commonvoice"):
        from gradremedy.data.prepare import commonvoice, librispeech

        module = librispeech if args.corpus == "librispeech" else commonvoice
        module.prepare(root, args.out, noise=args.noise, seed=args.seed)
        return 0
    if args.corpus == "chime4":
        from gradremedy.data.prepare.chime4 import prepare_chime4 as prepare
    else:
        from gradremedy.data.prepare.rats import prepare_rats as prepare
    prepare(root, args.out)
    return 0


def _run_real_voice(args: argparse.Namespace) -> int:
    from gradremedy.data.real_voice import build_real_voice

    build_real_voice(
        args.out, sample_rate=args.sample_rate, seed=args.seed, num_utts=args.num_utts, sounds_dir=args.sounds
    )
    return 0


def _run_real_speech(args: argparse.Namespace) -> int:
    from gradremedy.data.real_speech import build_real_speech

    build_real_speech(
        args.out,
        languages=[lang.strip() for lang in args.languages.split(",") if lang.strip()],
        sample_rate=args.sample_rate,
        seed=args.seed,
        num_utts=args.num_utts,
        sounds_root=args.sounds,
    )
    return 0


def _run_train(args: argparse.Namespace) -> int:
    from gradremedy.train import train

    train(
        config_path=args.config,
        data_dir=args.data,
        exp_dir=args.out,
        method=args.method,
        seed=args.seed,
        max_steps=args.max_steps,
        device=args.device,
        overrides=args.overrides,
        overwrite=args.overwrite,
        skip_bad=args.skip_bad,
    )
    return 0


def _run_train_lm(args: argparse.Namespace) -> int:
    from gradremedy.decode.lm import train_lm

    train_lm(
        config_path=args.config,
        text_path=args.text,
        out_dir=args.out,
        tokenizer_path=args.tokenizer,
        overrides=args.overrides,
        device=args.device,
    )
    return 0


def _run_eval(args: argparse.Namespace) -> int:
    from gradremedy.evaluate import evaluate

    evaluate(
        exp_dir=args.exp,
        data_dir=args.data,
        out_path=args.out,
        beam=args.beam,
        lm_dir=args.lm,
        lm_weight=args.lm_weight,
        checkpoint=args.checkpoint,
        device=args.device,
        se_max_utts=args.se_max_utts,
        workers=args.workers,
    )
    return 0


def _run_transcribe(args: argparse.Namespace) -> int:
    from gradremedy.evaluate import transcribe

    return transcribe(
        exp_dir=args.exp,
        files=args.files,
        enhanced_dir=args.enhanced_dir,
        beam=args.beam,
        lm_dir=args.lm,
        lm_weight=args.lm_weight,
        checkpoint=args.checkpoint,
        device=args.device,
    )


def _run_compare(args: argparse.Namespace) -> int:
    from gradremedy.experiments.compare import compare

    compare(
        config_path=args.config,
        data_dir=args.data,
        methods=[m.strip() for m in args.methods.split(",") if m.strip()],
        seeds=[int(s) for s in args.seeds.split(",") if s.strip()],
        out_dir=args.out,
        jobs=args.jobs,
        overrides=args.overrides,
        device=args.device,
    )
    return 0


def _run_demo(args: argparse.Namespace) -> int:
    from gradremedy.experiments.demo import run_demo

    run_demo(args.out)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gradremedy",
        description="Noise-robust ASR with a jointly trained SE front end and Gradient Remedy.",
    )
    parser.add_argument(
        "--no-pipes",
        action="store_true",
        help="refuse Kaldi 'cmd |' audio entries instead of running them through the shell "
        "(for data from untrusted sources; sets GRADREMEDY_NO_PIPES=1 for every process started)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _add_data(sub)
    _add_train(sub)
    _add_eval(sub)
    _add_experiments(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from gradremedy.data.audio import NO_PIPES_ENV

    previous = os.environ.get(NO_PIPES_ENV)
    if args.no_pipes:
        os.environ[NO_PIPES_ENV] = "1"  # in the environment, so that worker processes refuse pipes too
    try:
        return int(args.func(args) or 0)
    except ModuleNotFoundError as err:
        if (err.name or "").split(".")[0] not in SPEECH_MODULES:
            raise
        print(
            f"gradremedy: error: '{args.command}' needs the speech dependencies (no module '{err.name}'): "
            "pip install 'gradremedy[asr]'",
            file=sys.stderr,
        )
        return 2
    except UserError as err:
        print(f"gradremedy: error: {err}", file=sys.stderr)
        return getattr(err, "status", 2)
    except ValueError as err:  # a model or library refusing a setting; the message names it
        print(
            f"gradremedy: error: {str(err).splitlines()[0] if str(err) else type(err).__name__}",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print("gradremedy: interrupted", file=sys.stderr)
        return 130
    finally:
        if previous is None:
            os.environ.pop(NO_PIPES_ENV, None)
        else:
            os.environ[NO_PIPES_ENV] = previous


if __name__ == "__main__":
    sys.exit(main())
