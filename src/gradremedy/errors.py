"""Errors caused by the user's input: the CLI prints them as one line, never a traceback."""

from __future__ import annotations


class UserError(Exception):
    """Bad input (a file, an utterance, a config, an experiment directory); ``status`` is the exit code."""

    def __init__(self, message: str, status: int = 2):
        super().__init__(message)
        self.status = status


class DataError(UserError):
    """A data directory, audio file or utterance that cannot be used; the message names it."""
