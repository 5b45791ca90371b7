"""The command line: every subcommand parses, and user errors are one line, not a traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

from gradremedy.cli import build_parser, main

SUBCOMMANDS = [
    ["data", "synth", "--out", "x"],
    ["data", "check", "x"],
    ["data", "prepare", "chime4", "--root", "r", "--out", "o"],
    ["train", "--config", "c", "--data", "d", "--out", "e", "--method", "gr"],
    ["train-lm", "--config", "c", "--text", "t", "--out", "o"],
    ["eval", "--exp", "e", "--data", "d"],
    ["transcribe", "--exp", "e", "a.wav", "b.flac"],
    ["compare", "--config", "c", "--data", "d", "--out", "o"],
    ["demo"],
]


@pytest.mark.parametrize("argv", SUBCOMMANDS, ids=lambda a: "-".join(a[:2]))
def test_subcommands_parse(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    assert callable(args.func)


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
