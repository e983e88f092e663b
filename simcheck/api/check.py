"""`check`: the simulation check of what a user holds, a run, a run directory or a model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from simcheck.checking.checker import run_check
from simcheck.checking.config import CheckConfig
from simcheck.errors import SimcheckError
from simcheck.probes import Probe
from simcheck.report.check_report import CheckReport
from simcheck.settings.adapter import ModelAdapter
from simcheck.storage.subjects import resolve
from simcheck.tasks import Task


def check(
    subject: Any,
    task: Task | str | None = None,
    train_len: int | None = None,
    config: CheckConfig | None = None,
    *,
    adapter: ModelAdapter | None = None,
    device: str | torch.device | None = None,
    probes: Sequence[Probe] | None = None,
    progress: bool = False,
    **settings: Any,
) -> CheckReport:
    """Check ``subject`` (a `Run`, a run directory, or any `HookedTransformer` with ``task``
    and ``train_len``) at each test length: certify it, or say why not (see
    `simcheck.checking.checker` and `simcheck.checking.outcomes`).

    Settings come from ``config`` (a `CheckConfig`), and any of its fields can be given by
    keyword instead or on top: ``check(run, test_lengths=[256], eps=0.05)``.

    Args:
        adapter: how to read a model simcheck did not build (`ModelAdapter`: which logits
            answer the task, a BOS prefix, its period and window).
        device: run the model there (``"cuda"``, ``"mps"``, ``"cpu"``); the model moves.
        probes: states to compare (default `simcheck.probes.default_probes`).
        progress: show a progress bar over the test lengths.
    """
    unknown = set(settings) - set(CheckConfig.field_names())
    if unknown:
        raise SimcheckError(
            f"check() got unknown settings {sorted(unknown)}; the settings are the fields of "
            f"CheckConfig: {', '.join(CheckConfig.field_names())}"
        )
    config = (config or CheckConfig()).replace(**settings) if settings else config or CheckConfig()
    resolved = resolve(subject, task, train_len, adapter, device)
    found = run_check(resolved, config, probes, progress)
    return CheckReport(found.config, found.results, found.forecast)
