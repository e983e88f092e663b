"""The one resolver of what a user holds, a run directory, a `Run` or a model, into the
`simcheck.model.subject.Subject` the rest of simcheck works on."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import torch

from simcheck.model.huggingface import is_hf_folder, is_hf_model, load_hf_model
from simcheck.model.subject import Subject, as_task, subject_of
from simcheck.settings.adapter import ModelAdapter
from simcheck.storage.runs import Run, load_run
from simcheck.tasks import Task


def _is_path(subject: Any) -> bool:
    return isinstance(subject, str | bytes) or hasattr(subject, "__fspath__")


def resolve(
    subject: Any,
    task: Task | str | None = None,
    train_len: int | None = None,
    adapter: ModelAdapter | None = None,
    device: str | torch.device | None = None,
    *,
    needs: tuple[str, ...] = ("task", "train_len"),
) -> Subject:
    """The `Subject` of a run directory, a `Run`, a model, or a Hugging Face GPT-2 (a model or
    the folder ``save_pretrained`` wrote; `simcheck.model.huggingface`).

    ``task`` and ``train_len`` override a run's; a bare model needs those named in ``needs``
    (`simcheck.model.subject.subject_of` does the rest). A Hugging Face model's adapter comes
    from its config, with the fields ``adapter`` sets on top.
    """
    task = as_task(task)
    hf_folder = _is_path(subject) and is_hf_folder(Path(os.fsdecode(subject)))
    if hf_folder or is_hf_model(subject):
        model, declared = load_hf_model(os.fsdecode(subject) if hf_folder else subject)
        source = os.fsdecode(subject) if hf_folder else _hf_source(subject)
        return subject_of(
            model, task, train_len, _merged(declared, adapter), device, needs=needs, source=source
        )
    if _is_path(subject):
        subject = load_run(os.fsdecode(subject), task=task)
    if isinstance(subject, Run):
        run = subject
        if adapter is None or adapter.trained_positions is None:
            adapter = dataclasses.replace(
                adapter or ModelAdapter(), trained_positions=_run_trained_positions(run, adapter)
            )
        return subject_of(
            run.model,
            run.task if task is None else task,
            run.train_len if train_len is None else train_len,
            adapter,
            device,
            needs=needs,
            source=str(run.path),
            run=run,
        )
    return subject_of(subject, task, train_len, adapter, device, needs=needs)


def _hf_source(model: Any) -> str:
    """Where a Hugging Face model came from: the folder ``from_pretrained`` read, as
    ``transformers`` records it, else a generic name."""
    return str(getattr(model, "name_or_path", "") or "huggingface model")


def _merged(declared: ModelAdapter, given: ModelAdapter | None) -> ModelAdapter:
    """``declared`` (a model's own adapter) with every field ``given`` sets (not at its
    default) on top: what the user says wins."""
    if given is None:
        return declared
    defaults = ModelAdapter()
    changes = {
        f.name: getattr(given, f.name)
        for f in dataclasses.fields(given)
        if getattr(given, f.name) != getattr(defaults, f.name)
    }
    return dataclasses.replace(declared, **changes)


def model_of(subject: Any) -> Any:
    """The model of a run directory or a `Run`; any other subject is returned as it is (a
    model, including one simcheck cannot resolve fully, such as a 4.x ``TransformerBridge``)."""
    if _is_path(subject):
        subject = load_run(os.fsdecode(subject))
    return subject.model if isinstance(subject, Run) else subject


def _run_trained_positions(run: Run, adapter: ModelAdapter | None) -> int:
    """Leading positions a simcheck run's training showed its model: the whole table when it
    trained with random position offsets, else N plus any prefix."""
    training = run.spec.get("training", {})
    if training.get("pos_offsets"):
        return int(run.model.cfg.n_ctx)
    return run.train_len + len(adapter.prefix if adapter else ())
