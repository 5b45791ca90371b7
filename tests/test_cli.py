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
