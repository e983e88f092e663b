"""Shared fixtures: tiny model sizes, a quick `train` wrapper and one trained run per session."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import simcheck

# Small enough that 50 optimizer steps take about a second on one CPU core.
TINY_MODEL = {"d_model": 16, "d_mlp": 32}
QUICK_TRAINING = {"batch_size": 8, "progress": False}


@pytest.fixture(scope="session")
def tiny() -> dict:
    """Options of `simcheck.train` for a tiny model, batch 8 and no progress bar."""
    return {**TINY_MODEL, **QUICK_TRAINING}


@pytest.fixture
def quick_train(tiny):
    """`simcheck.train` with the `tiny` options (each overridable by keyword)."""

    def run(task, out, **options):
        return simcheck.train(task, out, **{**tiny, **options})

    return run


@pytest.fixture(scope="session")
def modp_run_dir(tmp_path_factory, tiny) -> Path:
    """A ModPTask(p=3) run with periodic positions trained for 50 steps at N=8.

    Session-scoped: treat it as read-only (evaluate into it only with ``save=False``, or copy
    it first)."""
    out = tmp_path_factory.mktemp("runs") / "modp-periodic"
    simcheck.train(
        "modp:p=3",
        out,
        pos="periodic",
        train_len=8,
        steps=50,
        log_every=10,
        checkpoint_every=25,
        **tiny,
    )
    return out


def state_dicts_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    """Bit-identical parameters, by name."""
    pa, pb = dict(a.named_parameters()), dict(b.named_parameters())
    return pa.keys() == pb.keys() and all(torch.equal(pa[k], pb[k]) for k in pa)


@pytest.fixture(scope="session")
def weights_equal():
    """``weights_equal(a, b)``: the two models' parameters are bit-identical."""
    return state_dicts_equal


def available_devices() -> list[str]:
    """The torch devices of this machine: ``"cpu"`` always, then ``"cuda"`` and ``"mps"``
    where present (CI has only the CPU)."""
    devices = ["cpu"]
    if torch.cuda.is_available():
        devices.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append("mps")
    return devices


DEVICES = available_devices()
"""`available_devices`, once per session: a test module can parametrise over it directly."""


@pytest.fixture(params=DEVICES)
def device(request) -> str:
    """Each available torch device in turn (see `available_devices`)."""
    return request.param
