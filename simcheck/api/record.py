"""`record` on what a user holds: a model, a `Run` or a run directory."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from simcheck.model.recording import Recording
from simcheck.model.recording import record as record_model
from simcheck.probes import Probe
from simcheck.settings.attention import AttentionMode


def record(
    model: Any,
    tokens: Any,
    probes: Sequence[Probe],
    positions: Sequence[int] = (-1,),
    attention: AttentionMode = "softmax",
    batch_size: int | None = None,
    progress: bool = False,
) -> Recording:
    """`simcheck.model.recording.record` of ``model``: a model (a TransformerLens 4.x
    ``TransformerBridge`` included), a `Run` or a run directory."""
    if not isinstance(model, torch.nn.Module):
        # imported here: loading runs needs TransformerLens 3.x, recording itself does not
        from simcheck.storage.subjects import model_of

        model = model_of(model)
    return record_model(model, tokens, probes, positions, attention, batch_size, progress)
