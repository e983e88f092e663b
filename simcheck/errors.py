"""Errors that simcheck raises for bad input: each message names the problem and the fix.

They all derive from `SimcheckError`, so the CLI can print them as one line instead of a
traceback, and a notebook user can catch them together.
"""

from __future__ import annotations


def one_line(message: str) -> str:
    """``message`` on one line: line breaks and other control characters (which a user's
    text can bring into a message, a task name typed with a newline say) written as escapes,
    ``\\n``, ``\\x00``."""
    return "".join(
        char if char.isprintable() or char == " " else char.encode("unicode_escape").decode()
        for char in message
    )


def error_gist(err: BaseException, limit: int = 200) -> str:
    """Another library's error for a one-line message: its type and the first sentence of its
    first non-empty line, cut to ``limit`` characters (many messages go on with advice and
    internals over several lines); the type alone when the message is empty."""
    line = next((text.strip() for text in str(err).splitlines() if text.strip()), "")
    gist = line.split(". ")[0][:limit]
    return f"{type(err).__name__}: {gist}" if gist else type(err).__name__


class SimcheckError(ValueError):
    """Bad input to simcheck. The message says what is wrong and how to fix it, on one line
    (`one_line`), so the command line prints it as one line and never as a traceback."""

    def __init__(self, message: object = "", *args: object) -> None:
        super().__init__(one_line(str(message)), *args)


class TaskSpecError(SimcheckError):
    """An unknown task name, an unknown parameter or a parameter value of the wrong type."""


class LengthError(SimcheckError):
    """An input longer than the model can take (its positional encoding has no row for it)."""


class RunDirError(SimcheckError):
    """A run directory that is missing, incomplete or corrupt."""


class TrainingDiverged(SimcheckError):
    """Training produced a non-finite loss; the last good checkpoint was kept."""


class TrainingInterrupted(SimcheckError):
    """Training stopped on Ctrl-C after writing a checkpoint; resume continues it."""


class SweepSpecError(SimcheckError):
    """A sweep specification that cannot be run as written."""


class SweepInterrupted(SimcheckError):
    """The sweep stopped on Ctrl-C; running it again finishes the missing points."""


class TokenError(SimcheckError):
    """Token ids that the task's vocabulary does not contain, or a malformed token array."""
