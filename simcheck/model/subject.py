"""What simcheck needs of a model: the model with its task, N and a resolved `ModelAdapter`.

simcheck's own models carry a `ModelSpec` (``model.simcheck_spec``) that says everything: which
outputs answer the task, the positional encoding, its period Delta and local window tau. A
`HookedTransformer` a user built and trained elsewhere says less, so a `ModelAdapter` fills in:

- ``outputs``: which output logits answer the task, in the task's order: one id for a scalar
  task (the logit at that id is the value), one id per class or outcome for class and
  distribution tasks. Default: the whole output, which must then have the task's width
  (simcheck's own heads do; TransformerLens's default unembedding over the vocabulary does not).
- ``prefix``: tokens the model always sees first (a BOS token, a task marker). They are put in
  front of every input the model is run on (task inputs, witnesses, evaluation inputs), so
  they stay at position 0.. in every witness; lengths (N, T) count the task's tokens only.
- ``period`` (Delta) and ``window`` (tau): the model's own positional structure, which witnesses
  keep (positions mod Delta, the last tau + 1 tokens).
- ``positions``: the kind of position encoding (``learned`` absolute, ``shortformer``,
  ``rotary``, ``alibi``, ``periodic``, ``none``); the diagnosis blames unseen learned absolute
  positions only on ``learned`` and ``shortformer``.
- ``trained_positions``: how many leading absolute positions training showed the model
  (default N + len(prefix); the whole table for simcheck runs trained with random offsets).

`ModelAdapter` is defined in `simcheck.settings.adapter`, which imports no torch, so that the
command line can read its fields. `ModelAdapter.resolved` fills every field: from
``simcheck_spec`` for simcheck's models, from ``model.cfg`` where TransformerLens says it
(``positional_embedding_type``, ``n_ctx``), and from what the user gave otherwise (a user's
value always wins). `subject_of` turns a model into a `Subject`: the model (moved to
``device`` when one is given), its task, N and its adapter; a run directory or a `Run` goes
through `simcheck.storage.subjects.resolve` first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from transformer_lens import HookedTransformer

from simcheck.errors import LengthError, SimcheckError
from simcheck.model.build import last_outputs, position_outputs
from simcheck.settings.adapter import ModelAdapter
from simcheck.tasks import Task, get_task


@dataclass(frozen=True)
class Subject:
    """A model with what simcheck needs to read it: task, N, adapter (resolved) and source.

    Attributes:
        model: the `HookedTransformer` (on its device).
        task: the task it answers (None where the caller needs none, e.g. `record`).
        train_len: N, the longest training length in task tokens (None where not needed).
        adapter: the resolved `ModelAdapter`.
        source: where the model came from (a run directory, or "model").
        run: the `Run`, when the subject was one.
    """

    model: Any
    task: Task | None
    train_len: int | None
    adapter: ModelAdapter
    source: str
    run: Any = None

    @property
    def device(self) -> torch.device:
        weight = next(self.model.parameters(), None)
        return weight.device if weight is not None else torch.device("cpu")

    @property
    def max_length(self) -> int:
        """The longest task input the model takes: its context less the prefix."""
        return int(self.model.cfg.n_ctx) - len(self.adapter.prefix)

    def check_length(self, length: int) -> None:
        """Refuse a task length the model cannot take, with advice that fits the model."""
        if length <= self.max_length:
            return
        prefix = len(self.adapter.prefix)
        with_prefix = f" with its {prefix}-token prefix" if prefix else ""
        if hasattr(self.model, "simcheck_spec"):
            advice = (
                "train with --n-ctx larger, or a positional encoding without a table "
                "(periodic, none, rotary, alibi)"
            )
        else:
            advice = "this model was built with that context; test only lengths it can take"
        raise LengthError(
            f"input length {length} exceeds the {self.max_length} positions this model can "
            f"take{with_prefix} (model.cfg.n_ctx={self.model.cfg.n_ctx}); use lengths <= "
            f"{self.max_length}; {advice}"
        )

    def model_input(self, tokens: Any) -> torch.Tensor:
        """Task tokens [batch, length] as the model sees them: the prefix in front."""
        tokens = torch.as_tensor(tokens, dtype=torch.long)
        if not self.adapter.prefix:
            return tokens
        prefix = torch.tensor(self.adapter.prefix, dtype=torch.long, device=tokens.device)
        return torch.cat([prefix.expand(tokens.shape[0], -1), tokens], dim=1)

    def task_output(self, raw: torch.Tensor) -> torch.Tensor:
        """The task's output from the model's raw output [..., d_vocab_out]: the adapter's
        output ids, in the task's order (all of them by default)."""
        if self.adapter.outputs is None:
            return raw
        index = torch.as_tensor(self.adapter.outputs, device=raw.device)
        return raw.index_select(-1, index)

    @torch.no_grad()
    def last_outputs(self, tokens: Any, batch_size: int | None = None) -> torch.Tensor:
        """The task's output at the last position of each input, [batch, output_size], on the
        CPU, computed in chunks small enough for long inputs."""
        raw = last_outputs(self.model, self.model_input(tokens).to(self.device), batch_size)
        return self.task_output(raw).cpu()

    @torch.no_grad()
    def position_outputs(self, tokens: Any, batch_size: int | None = None) -> torch.Tensor:
        """The task's output at every task position (the prefix's positions dropped),
        [batch, length, output_size], on the CPU."""
        raw = position_outputs(self.model, self.model_input(tokens).to(self.device), batch_size)
        return self.task_output(raw[:, len(self.adapter.prefix) :]).cpu()

    def describe(self) -> dict[str, Any]:
        """For reports: the source and the resolved adapter."""
        return {"source": self.source, "adapter": self.adapter.to_dict()}


def as_task(task: Task | str | None) -> Task | None:
    """A task from a spec string (a `Task` or None as it is)."""
    return get_task(task) if isinstance(task, str) else task


def subject_of(
    model: Any,
    task: Task | str | None = None,
    train_len: int | None = None,
    adapter: ModelAdapter | None = None,
    device: str | torch.device | None = None,
    *,
    needs: tuple[str, ...] = ("task", "train_len"),
    source: str = "model",
    run: Any = None,
) -> Subject:
    """The `Subject` of a model (a run's, when ``run`` and ``source`` say so): ``task`` and
    ``train_len`` as given (a bare model needs those named in ``needs``), moved to
    ``device`` (in place, as ``model.to`` does), its adapter resolved and checked against
    the model and the task: output ids and prefix tokens inside the model's vocabularies,
    and an output as wide as the task's. Paths and runs are resolved by
    `simcheck.storage.subjects.resolve`, which ends here."""
    task = as_task(task)
    if not hasattr(model, "cfg") or not isinstance(model, torch.nn.Module):
        raise SimcheckError(
            f"expected a run directory, a Run or a HookedTransformer, got {type(model).__name__}"
        )
    missing = [
        name for name, value in (("task", task), ("train_len", train_len))
        if name in needs and value is None
    ]  # fmt: skip
    if missing:
        raise SimcheckError(
            "a bare model needs task= and train_len= (the task it was trained on and its "
            f"training length N; missing: {', '.join(missing)}); or pass a run directory"
        )
    if train_len is not None and (not isinstance(train_len, int | np.integer) or train_len < 1):
        raise SimcheckError(f"train_len must be >= 1 (an integer), got {train_len!r}")
    if device is not None:
        model = _moved(model, device)
    resolved = (adapter or ModelAdapter()).resolved(model, train_len)
    found = Subject(model, task, train_len, resolved, source, run)
    _check_fit(found)
    return found


def devices_present() -> list[str]:
    """Every device torch can use here: cpu, then each cuda device, then mps."""
    present = ["cpu"]
    if torch.cuda.is_available():
        present += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if torch.backends.mps.is_available():
        present.append("mps")
    return present


def parse_device(name: str | torch.device) -> torch.device:
    """``name`` as a ``torch.device`` present here (``cuda`` means the current cuda device);
    a one-line `SimcheckError` for an unknown or absent device."""
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise SimcheckError(f"unknown device {name!r}; use cpu, cuda, cuda:1 or mps") from None
    present = devices_present()
    if device.type == "cuda" and torch.cuda.is_available():
        index = torch.cuda.current_device() if device.index is None else device.index
        if index < torch.cuda.device_count():
            return torch.device("cuda", index)
    elif device.type in present:  # cpu, or an available mps
        return device
    raise SimcheckError(
        f"device '{name}' is not available here; devices present: {', '.join(present)}"
    )


def _moved(model: Any, device: str | torch.device) -> Any:
    where = parse_device(device)
    if isinstance(model, HookedTransformer):  # its ``to`` prints unless told not to
        return model.to(where, print_details=False)
    return model.to(where)


def _check_fit(subject: Subject) -> None:
    """One-line errors for an adapter or task that does not fit the model."""
    cfg, adapter, task = subject.model.cfg, subject.adapter, subject.task
    vocab, out = int(cfg.d_vocab), int(cfg.d_vocab_out)
    bad_prefix = [t for t in adapter.prefix if t >= vocab]
    if bad_prefix:
        raise SimcheckError(
            f"prefix tokens {bad_prefix} are outside the model's vocabulary 0..{vocab - 1}"
        )
    if adapter.outputs is not None and max(adapter.outputs) >= out:
        raise SimcheckError(
            f"output ids {[o for o in adapter.outputs if o >= out]} are outside the model's "
            f"output 0..{out - 1} (d_vocab_out)"
        )
    if task is None:
        return
    if task.vocab_size > vocab:
        raise SimcheckError(
            f"task '{task.spec()}' does not fit the model: it uses tokens "
            f"0..{task.vocab_size - 1} but the model's vocabulary is 0..{vocab - 1}; pass the "
            "task the model was trained on"
        )
    width = out if adapter.outputs is None else len(adapter.outputs)
    if width != task.output_size:
        answer = {
            "scalar": "the output id whose logit is the value (outputs=ID)",
            "classes": f"the {task.output_size} output ids of the classes, in class order",
            "distribution": f"the {task.output_size} output ids of the outcomes, in order",
        }[task.output]
        raise SimcheckError(
            f"task '{task.spec()}' does not fit the model: it reads {task.output_size} "
            f"output(s) but the model gives {width}; say which logits answer the task: "
            f"ModelAdapter(outputs=...) or --outputs, with {answer}"
        )
    if subject.train_len is not None and subject.train_len > subject.max_length:
        raise SimcheckError(
            f"train_len={subject.train_len} exceeds what the model takes ({subject.max_length} "
            f"task tokens with n_ctx={cfg.n_ctx}); pass the model's real training length"
        )
