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

ClassMetric = Literal["decision", "tv"]
CLASS_METRICS: tuple[str, ...] = ("decision", "tv")
DEFAULT_LENGTH_FACTOR = 8
"""Without test lengths the check runs at T = 8 N."""
_INTEGERS = (
    "samples",
    "max_samples",
    "seed",
    "worst_case",
    "reference_samples",
    "blocks_candidates",
    "search_rounds",
    "search_proposals",
    "intervention_samples",
)


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


@dataclass(frozen=True)
class CheckConfig:
    """How to check a model.

    Attributes:
        test_lengths: the lengths T to check (empty: 8 x N).
        eps: the error to certify; in (0, the metric's largest value).
        delta: the fraction of long inputs allowed to exceed eps.
        confidence: the level at which each verdict's interval holds.
        samples: long inputs drawn at the first look.
        max_samples: the most long inputs drawn per length while the verdict is undecided
            (the sample doubles at each look).
        witnesses: construction names (``"types"``, ``"blocks"``), ``"task"`` (the short
            instances the task builds from x, `simcheck.tasks.Task.short_instances`: for
            copy, sort and reverse a sub-instance on a subset of the input, for formal
            languages x pumped down; none for tasks without them), ``"search"`` and/or
            functions ``fn(x, N, structure, rng) -> list of token arrays``.
        seed: seed of the long inputs, reference inputs and randomised witnesses.
        worst_case: rounds of hill climbing towards inputs with large errors (0: sampled
            inputs only; the confidence then speaks of the climbed inputs).
        attention: ``"softmax"`` or ``"hardmax[:bits]"`` (finite precision).
        reference_samples: inputs of lengths <= N: the short error, probe spreads and
            coverage.
        blocks_candidates: block-subsampling witnesses per input.
        search_rounds, search_proposals: the model-guided local search's budget.
        diverge_at: a probe diverges when its median normalised discrepancy exceeds this.
        class_metric: for class tasks, ``"decision"`` (the gaps compare decisions: task
            gap [f(z) != f(x)], model gap [argmax g(z) != argmax g(x)], short error
            [argmax g(z) != f(z)]) or ``"tv"`` (total variation of class probabilities).
        up_to: check a range of lengths instead: T = 2N, 4N, 8N, ... up to this, with the
            error level split over them so that the confidence holds for the whole range,
            stopping at the first length where the model fails (not-simulatable or
            fails-short); `simcheck.checking.forecast.LengthRange` says the longest certified
            length,
            the first that is not, the first failure, and forecasts where the certificate
            ends. Not together with ``test_lengths``.
        interventions: at a length whose outcome is not-simulatable or undecided, run the
            interchange interventions and the repairs of `simcheck.checking.interventions` on the
            uncovered inputs, and confirm or reject each cause by them.
        intervention_samples: uncovered long inputs the interventions run on, at most.
    """

    test_lengths: tuple[int, ...] = ()
    eps: float = 0.1
    delta: float = 0.05
    confidence: float = 0.95
    samples: int = 100
    max_samples: int = 800
    witnesses: tuple[Any, ...] = ("types", "blocks", "task", "search")
    seed: int = 0
    worst_case: int = 0
    attention: str = "softmax"
    reference_samples: int = 512
    blocks_candidates: int = 16
    search_rounds: int = 10
    search_proposals: int = 16
    diverge_at: float = 0.5
    class_metric: ClassMetric = "decision"
    up_to: int | None = None
    interventions: bool = True
    intervention_samples: int = 64

    def __post_init__(self) -> None:
        for name in _INTEGERS:
            value = getattr(self, name)
            if not _is_int(value):
                raise SimcheckError(f"{name} must be an integer, got {value!r}")
        if not all(_is_int(t) for t in self.test_lengths):
            raise SimcheckError(f"test lengths must be integers, got {list(self.test_lengths)}")
        object.__setattr__(self, "test_lengths", tuple(int(t) for t in self.test_lengths))
        object.__setattr__(self, "witnesses", tuple(self.witnesses))
        if not 0 < self.eps < math.inf:
            raise SimcheckError(f"eps must be positive and finite, got {self.eps}")
        if not 0 < self.delta < 1:
            raise SimcheckError(f"delta must be in (0, 1), got {self.delta}")
        if not 0 < self.confidence < 1:
            raise SimcheckError(f"confidence must be in (0, 1), got {self.confidence}")
        if self.samples < 1 or self.max_samples < self.samples:
            raise SimcheckError(
                f"need 1 <= samples <= max_samples, got samples={self.samples}, "
                f"max_samples={self.max_samples}"
            )
        if self.reference_samples < 2:
            raise SimcheckError(f"reference_samples must be >= 2, got {self.reference_samples}")
        if any(t < 1 for t in self.test_lengths):
            raise SimcheckError(f"test lengths must be positive, got {list(self.test_lengths)}")
        if self.worst_case < 0:
            raise SimcheckError(f"worst_case is a number of rounds >= 0, got {self.worst_case}")
        if self.seed < 0:
            raise SimcheckError(f"seed must be >= 0, got {self.seed}")
        for name in ("blocks_candidates", "search_proposals"):
            if getattr(self, name) < 1:
                raise SimcheckError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.search_rounds < 0:
            raise SimcheckError(f"search_rounds must be >= 0, got {self.search_rounds}")
        if not self.diverge_at > 0:
            raise SimcheckError(f"diverge_at must be positive, got {self.diverge_at}")
        if self.class_metric not in CLASS_METRICS:
            raise SimcheckError(
                f"class_metric must be one of {', '.join(CLASS_METRICS)}, got '{self.class_metric}'"
            )
        if self.intervention_samples < 1:
            raise SimcheckError(
                f"intervention_samples must be >= 1, got {self.intervention_samples}"
            )
        if not isinstance(self.interventions, bool | np.bool_):
            raise SimcheckError(f"interventions must be true or false, got {self.interventions!r}")
        if self.up_to is not None:
            if not _is_int(self.up_to) or self.up_to < 2:
                raise SimcheckError(f"up_to must be an integer length >= 2, got {self.up_to!r}")
            if self.test_lengths:
                raise SimcheckError(
                    "give either test_lengths or up_to (a range 2N, 4N, ... up to it), not both"
                )
            object.__setattr__(self, "up_to", int(self.up_to))
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
