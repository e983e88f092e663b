"""simcheck.probes: read internal states of a model at chosen query positions.

`read_probes(model, tokens, [Residual(0), AttentionRow(0), Output()])` runs one forward pass
and keeps, inside each hook, only the rows of the query positions.
"""

from .base import (
    AttentionLogits,
    AttentionRow,
    HeadOutput,
    Output,
    Probe,
    Residual,
    read_probes,
)

__all__ = [
    "AttentionLogits",
    "AttentionRow",
    "HeadOutput",
    "Output",
    "Probe",
    "Residual",
    "read_probes",
]
