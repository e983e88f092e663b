"""Models whose weights the tests set by hand."""

from __future__ import annotations

import torch

import simcheck
from simcheck.models import SimcheckTransformer


def blank_modp_head(pos: str = "periodic", **overrides) -> SimcheckTransformer:
    """A ModPTask(p=3) model of one attention head and nothing else (d_model 4, no MLP, no
    normalisation) with every parameter zero, ready for weights set by hand."""
    model = simcheck.build_model(
        simcheck.get_task("modp:p=3"),
        pos=pos,
        n_layers=1,
        n_heads=1,
        d_model=4,
        d_mlp=0,
        normalization="none",
        **overrides,
    )
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
    return model
