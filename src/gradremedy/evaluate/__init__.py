"""Evaluation: decode a data directory and score it (``evaluate``), transcribe files (``transcribe``)."""

from gradremedy.evaluate.run import Recognizer, evaluate, format_report, transcribe

__all__ = ["Recognizer", "evaluate", "format_report", "transcribe"]
