"""The command line: every subcommand reaches its function, and user errors are one line, not a traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from gradremedy.cli import build_parser, main

# Each subcommand run on inputs that do not exist: the error it must give, as the one line it prints.
# (``demo`` takes no input that can be missing; tests/experiments/test_demo.py runs it.)
SUBCOMMAND_ERRORS = [
    (["data", "synth", "--out", "o", "--num-utts", "1"], "--num-utts 1: need at least 3 (one per split)"),
    (["data", "check", "d"], "d: data directory not found"),
    (["data", "prepare", "chime4", "--root", "r", "--out", "o"], "r: not a CHiME-4 distribution"),
    (["train", "--config", "c", "--data", "d", "--out", "e", "--method", "gr"], "c: config file not found"),
    (["train-lm", "--config", "c", "--text", "t", "--out", "o"], "c: config file not found"),
    (["eval", "--exp", "e", "--data", "d"], "e: experiment directory not found"),
    (["transcribe", "--exp", "e", "a.wav", "b.flac"], "e: experiment directory not found"),
    (["compare", "--config", "c", "--data", "d", "--out", "o"], "c: config file not found"),
]


@pytest.mark.parametrize(("argv", "message"), SUBCOMMAND_ERRORS, ids=lambda a: "-".join(a[:2]))
def test_each_subcommand_reaches_its_function_and_names_what_is_missing(
    argv: list[str], message: str, tmp_path, monkeypatch, capsys
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and captured.err.startswith("gradremedy: error: ")
    assert message in captured.err
    assert list(tmp_path.iterdir()) == []  # refused before writing anything


def test_bad_config_is_one_line_error(tmp_path, capsys) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("model:\n  nonsense: 1\n")
    status = main(["train", "--config", str(config), "--data", str(tmp_path), "--out", str(tmp_path / "e")])
    err = capsys.readouterr().err
    assert status == 2
    assert err.count("\n") == 1 and "model.nonsense" in err


def test_python_dash_m_works() -> None:
    result = subprocess.run([sys.executable, "-m", "gradremedy", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    assert "gradremedy" in result.stdout


def test_method_choices_are_the_registry(tmp_path) -> None:
    from gradremedy.surgery import method_names

    args = build_parser().parse_args(
        ["train", "--config", "c", "--data", "d", "--out", "e", "--method", "imtl"]
    )
    assert args.method == "imtl"
    for name in method_names():
        build_parser().parse_args(["train", "--config", "c", "--data", "d", "--out", "e", "--method", name])


def test_a_missing_speech_dependency_names_the_extra(monkeypatch, capsys) -> None:
    import gradremedy.cli as cli

    def without_sentencepiece(args) -> int:
        raise ModuleNotFoundError("No module named 'sentencepiece'", name="sentencepiece")

    monkeypatch.setattr(cli, "_run_train", without_sentencepiece)
    status = main(["train", "--config", "c", "--data", "d", "--out", "e"])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1
    assert "pip install 'gradremedy[asr]'" in err and "sentencepiece" in err

    def without_something_else(args) -> int:
        raise ModuleNotFoundError("No module named 'other'", name="other")

    monkeypatch.setattr(cli, "_run_train", without_something_else)
    with pytest.raises(ModuleNotFoundError):  # not a speech package: a real bug, not hidden
        main(["train", "--config", "c", "--data", "d", "--out", "e"])


@pytest.mark.parametrize("preset, expected", [(None, "1"), ("3", "3")])
def test_the_command_line_sets_one_openblas_thread_unless_the_user_chose(preset, expected) -> None:
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    if preset is not None:
        env["OPENBLAS_NUM_THREADS"] = preset
    code = "import gradremedy.cli, os, sys; sys.stdout.write(os.environ['OPENBLAS_NUM_THREADS'])"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert result.stdout == expected
