"""simcheck.probes: read internal states of a model at chosen query positions.

``simcheck.record(model, tokens, [Residual(0), AttentionEntropy(0), Output()])`` runs the
model and keeps, inside each hook, only the rows of the query positions.
"""

from .attention import (
    AttentionEntropy,
    AttentionLogits,
    AttentionMass,
    AttentionRow,
    LogitMargin,
    TopWeight,
)
from .base import HeadOutput, Output, Probe, ProbeContext, Residual
from .defaults import default_probes

__all__ = [
    "AttentionEntropy",
    "AttentionLogits",
    "AttentionMass",
    "AttentionRow",
    "HeadOutput",
    "LogitMargin",
    "Output",
    "Probe",
    "ProbeContext",
    "Residual",
    "TopWeight",
    "default_probes",
]
