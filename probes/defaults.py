"""The probe set the simulation check records by default."""

from __future__ import annotations

from typing import Any

from .attention import AttentionEntropy, AttentionMass, LogitMargin, TopWeight
from .base import HeadOutput, Output, Probe, Residual


def default_probes(model: Any, period: int = 1, window: int = 0) -> list[Probe]:
    """Per layer: the residual stream before and after it, each head's output, its attention
    mass per (token, residue mod ``period``) type and inside/outside the ``window``, its
    entropy, top weight and logit margin; then the model output. Every value has a shape
    independent of the input length, so long inputs and witnesses compare directly."""
    probes: list[Probe] = []
    for layer in range(model.cfg.n_layers):
        probes += [
            Residual(layer, "pre"),
            AttentionMass(layer, "type", period=period),
            AttentionEntropy(layer),
            TopWeight(layer),
            LogitMargin(layer),
            HeadOutput(layer),
            Residual(layer, "post"),
        ]
        if window > 0:
            probes.append(AttentionMass(layer, "window", window=window))
    probes.append(Output())
    return probes
