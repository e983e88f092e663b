"""`CheckConfig`: every setting of the simulation check, in one frozen place.

`simcheck.check`, the ``simcheck check`` command line (its defaults are read from these
fields) and the ``[check]`` table of a sweep all go through it, so their defaults cannot
drift apart. Settings that need the task or the training length to judge (eps against the
metric's range, T against N) are checked by `CheckConfig.validate_for`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from simcheck.checking.witnesses import witness_method, witness_methods
from simcheck.errors import SimcheckError
from simcheck.settings.attention import parse_attention
from simcheck.settings.fields import check_field_types, check_field_values, setting

ClassMetric = Literal["decision", "tv"]
CLASS_METRICS: tuple[str, ...] = ("decision", "tv")
DEFAULT_LENGTH_FACTOR = 8
"""Without test lengths the check runs at T = 8 N."""


def _as_sequence(value: Any, what: str) -> list[Any]:
    """A list or tuple setting as a list; anything else (a bare string, a number) refused."""
    if not isinstance(value, list | tuple):
        raise SimcheckError(f"{what} must be a list, got {value!r}")
    return list(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


def _check_witnesses(witnesses: tuple[Any, ...]) -> None:
    """Names of the witness registry (`simcheck.checking.witnesses.registry`) or functions; a
    refinement (``search``) needs a construction other than the task's own instances, which
    most tasks do not have."""
    if not witnesses:
        raise SimcheckError(f"give at least one witness method: {', '.join(witness_methods())}")
    for method in witnesses:
        if isinstance(method, str):
            witness_method(method)  # a one-line error naming the registered methods
        elif not callable(method):
            raise SimcheckError(f"witness method {method!r} is neither a name nor a function")
    named = [witness_method(m) for m in witnesses if isinstance(m, str)]
    builds = any(callable(m) for m in witnesses) or any(
        not m.refines and m.name != "task" for m in named
    )
    refinement = next((m.name for m in named if m.refines), None)
    if refinement and not builds:
        raise SimcheckError(f"'{refinement}' starts from a construction: add 'types' or 'blocks'")


LENGTHS_HELP = "a list 8,16,32, a doubling 8..1024*2 or a step 10..100+10"
"""How a help text describes a list of lengths (see `simcheck.settings.lengths`)."""


@dataclass(frozen=True)
class CheckConfig:
    """How to check a model. Every field is declared once, with what it sets, its range and
    its command-line flag (`simcheck.settings.fields.setting`); `simcheck.check`, the
    ``simcheck check`` command and a sweep's ``[check]`` table all read them.

    Notes on the fields (their ``help`` says the rest):

    - ``witnesses``: names of the witness registry (`simcheck.checking.witnesses.registry`:
      ``types``, ``blocks``, ``task``, ``search`` and any registered) and/or functions
      ``fn(x, N, structure, rng) -> list of token arrays``; ``search`` refines the others.
    - ``worst_case``: with R > 0 rounds the confidence speaks of the climbed inputs.
    - ``class_metric``: ``"decision"`` compares decisions (task gap [f(z) != f(x)], model
      gap [argmax g(z) != argmax g(x)], short error [argmax g(z) != f(z)]); ``"tv"`` the
      class probabilities in total variation.
    - ``up_to``: the range 2N, 4N, 8N, ... up to it, with the error level split over the
      lengths so that the confidence holds for the whole range, stopping at the first length
      where the model fails; `simcheck.checking.forecast.LengthRange` reads it. Not together
      with ``test_lengths``.
    - ``interventions``: at a length whose outcome is not-simulatable or undecided, the
      interventions of `simcheck.checking.interventions` confirm or reject each cause.
    """

    test_lengths: tuple[int, ...] = setting(
        (), help=f"test lengths T: {LENGTHS_HELP}", flag="--test-len", shown="8 x N",
        parse="lengths",
    )  # fmt: skip
    eps: float = setting(0.1, help="error to certify", above=0, below=math.inf)
    delta: float = setting(0.05, help="fraction of long inputs allowed above eps", above=0, below=1)
    confidence: float = setting(0.95, help="confidence level of each verdict", above=0, below=1)
    samples: int = setting(100, help="long inputs per length at the first look", at_least=1)
    max_samples: int = setting(
        800, help="most long inputs per length while undecided (doubling per look)", at_least=1
    )
    witnesses: tuple[Any, ...] = setting(
        ("types", "blocks", "task", "search"),
        help="witness methods, comma-separated (the witness registry's names)",
        parse="names",
    )
    seed: int = setting(0, help="seed of inputs and witnesses", at_least=0)
    worst_case: int = setting(
        0, help="rounds of hill climbing towards inputs with large errors", at_least=0
    )
    attention: str = setting("softmax", help="softmax, or hardmax[:bits] for finite precision")
    reference_samples: int = setting(
        512, help="inputs of lengths <= N (short error, spreads, coverage)", at_least=2
    )
    blocks_candidates: int = setting(16, help="block-subsampling witnesses per input", at_least=1)
    search_rounds: int = setting(10, help="rounds of the witness search", at_least=0)
    search_proposals: int = setting(16, help="edits the witness search tries per round", at_least=1)
    diverge_at: float = setting(
        0.5, help="median discrepancy (x spread) at which a state diverges", above=0
    )
    class_metric: ClassMetric = setting(
        "decision",
        help="class tasks: compare decisions or total variation",
        choices=CLASS_METRICS,
    )
    up_to: int | None = setting(
        None,
        help="check the range 2N, 4N, ... up to this length (one confidence for all), stop at "
        "the first failure, and forecast where the certificate ends",
        at_least=2,
    )
    interventions: bool = setting(
        True,
        help="skip the interventions (patching from the witness, a repair per cause) that "
        "confirm the causes of a failing length",
        flag="--no-interventions",
    )
    intervention_samples: int = setting(
        64, help="uncovered long inputs the interventions run on, at most", at_least=1
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "witnesses", tuple(_as_sequence(self.witnesses, "witnesses")))
        lengths = tuple(_as_sequence(self.test_lengths, "test lengths"))
        if not all(_is_int(t) for t in lengths):
            raise SimcheckError(f"test lengths must be integers, got {list(lengths)}")
        object.__setattr__(self, "test_lengths", tuple(int(t) for t in lengths))
        check_field_types(self)
        check_field_values(self)
        if any(t < 1 for t in self.test_lengths):
            raise SimcheckError(f"test lengths must be positive, got {list(self.test_lengths)}")
        if self.max_samples < self.samples:
            raise SimcheckError(
                f"need samples <= max_samples, got samples={self.samples}, "
                f"max_samples={self.max_samples}"
            )
        if self.up_to is not None and self.test_lengths:
            raise SimcheckError(
                "give either test_lengths or up_to (a range 2N, 4N, ... up to it), not both"
            )
        parse_attention(self.attention)
        _check_witnesses(self.witnesses)

    def lengths_for(self, train_len: int) -> list[int]:
        """The test lengths: those given, the range 2N, 4N, ... up to ``up_to``, or 8 N."""
        if self.up_to is not None:
            lengths, length = [], 2 * train_len
            while length <= self.up_to:
                lengths.append(length)
                length *= 2
            return lengths
        return list(self.test_lengths) or [DEFAULT_LENGTH_FACTOR * train_len]

    def validate_for(self, metric_max: float, metric_name: str, train_len: int) -> None:
        """Refuse settings that would make the check test nothing: eps at or beyond the
        metric's largest value, a training length below 1, a test length at or below N."""
        if train_len < 1:
            raise SimcheckError(
                f"train_len must be >= 1 (the longest training length N), got {train_len}"
            )
        if self.up_to is not None and self.up_to < 2 * train_len:
            raise SimcheckError(
                f"up_to={self.up_to} is below 2N = {2 * train_len}: the range 2N, 4N, ... up to "
                f"it is empty; use up_to >= {2 * train_len}"
            )
        if self.eps >= metric_max:
            raise SimcheckError(
                f"eps={self.eps} is not below {metric_max:g}, the largest value the task's "
                f"{metric_name} can take: every model would pass; pick eps in (0, {metric_max:g})"
            )
        short = [t for t in self.lengths_for(train_len) if t <= train_len]
        if short:
            raise SimcheckError(
                f"test length(s) {short} are not beyond the training length N={train_len}: the "
                f"input is its own witness and the check tests nothing; use T > {train_len}"
            )

    def replace(self, **changes: Any) -> CheckConfig:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings (witness functions by name)."""
        data = {name: getattr(self, name) for name in self.field_names()}
        data["test_lengths"] = list(self.test_lengths)
        data["witnesses"] = [
            w if isinstance(w, str) else getattr(w, "__name__", "user") for w in self.witnesses
        ]
        return data

    @classmethod
    def field_names(cls) -> list[str]:
        """The settings' names."""
        return [f.name for f in dataclasses.fields(cls)]
