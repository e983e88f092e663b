"""Errors that simcheck raises for bad input: each message names the problem and the fix.

They all derive from `SimcheckError`, so the CLI can print them as one line instead of a
traceback, and a notebook user can catch them together.
"""

from __future__ import annotations


class SimcheckError(ValueError):
    """Bad input to simcheck. The message says what is wrong and how to fix it."""


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
