"""The check of a task with targets at many positions: one last-position problem per role.

A `simcheck.tasks.SequenceTask` has a target at many positions of a sequence, and the
target of position i depends on tokens 0..i only. So position i of a long input is the
last-position problem of its prefix, and `check` applies to it as to any task. This module
checks the positions a sequence's answer is made of, by role in the target span (the first,
middle and last target: for copy, the first output token, the middle one and the last;
`simcheck.tasks.TargetRole`), and reports the outcome per role and over all of them.

Lengths are those of the whole sequence. At test length T, the role's problem has the
prefix length P = (role position at T) + 1; its training length is the prefix length of
the same role at N, N_r = (role position at N) + 1, since those are the prefixes of that
role the model was trained on (a copy's first output at N = 50 sits at position 25: the
model never saw a separator after more than 25 input tokens). Witnesses are prefixes of
that role of length <= N_r.

Over positions: the outcome is ``certified`` when every role is, and otherwise the outcome
of the worst role (`simcheck.checking.outcomes.Outcome.rank`: fails-short, not-simulatable,
undecided, unexplained-pass, certified).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from simcheck.api.check import check
from simcheck.checking.config import CheckConfig
from simcheck.checking.outcomes import CERTIFIED, Outcome
from simcheck.errors import SimcheckError
from simcheck.report.check_report import CheckReport
from simcheck.settings.adapter import ModelAdapter
from simcheck.storage.subjects import resolve
from simcheck.tasks import ROLES, SequenceTask, TargetRole

"""Outcomes from worst to best, for the outcome over positions."""


@dataclass(frozen=True)
class RoleCheck:
    """One role's check: its prefix lengths and the `CheckReport` of its problem."""

    role: str
    train_len: int
    prefix_lengths: dict[int, int]
    """Test length T of the whole sequence -> the prefix length P the role is checked at."""
    report: CheckReport

    def outcome(self, length: int) -> str:
        return self.report.outcome[self.prefix_lengths[length]]


@dataclass(frozen=True)
class PositionCheck:
    """The check over the target positions of a task (see the module docstring)."""

    task: str
    train_len: int
    test_lengths: list[int]
    roles: list[RoleCheck]

    def outcomes(self, length: int) -> dict[str, str]:
        """Role -> outcome at test length ``length``."""
        return {r.role: r.outcome(length) for r in self.roles}

    def worst(self, length: int) -> tuple[str, str]:
        """The worst role at ``length`` and its outcome."""
        outcomes = self.outcomes(length)
        role = min(outcomes, key=lambda name: Outcome(outcomes[name]).rank)
        return role, outcomes[role]

    def outcome(self, length: int) -> str:
        """The outcome over all positions: certified when every role is, else the worst."""
        return self.worst(length)[1]

    @property
    def certified(self) -> bool:
        return all(self.outcome(t) == CERTIFIED for t in self.test_lengths)

    def summary(self) -> str:
        lines = [f"{self.task}, N={self.train_len}: the check per target position"]
        for t in self.test_lengths:
            role, _ = self.worst(t)
            per_role = ", ".join(
                f"{r.role} (P={r.prefix_lengths[t]}, N_r={r.train_len}) {r.outcome(t)}"
                for r in self.roles
            )
            lines.append(f"  T={t}: all positions {self.outcome(t)} (worst: {role}); {per_role}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "train_len": self.train_len,
            "test_lengths": self.test_lengths,
            "outcome": {t: self.outcome(t) for t in self.test_lengths},
            "worst_role": {t: self.worst(t)[0] for t in self.test_lengths},
            "roles": [
                {
                    "role": r.role,
                    "train_len": r.train_len,
                    "prefix_lengths": r.prefix_lengths,
                    "outcome": {t: r.outcome(t) for t in self.test_lengths},
                }
                for r in self.roles
            ],
        }


def default_roles(task: SequenceTask, train_len: int) -> tuple[str, ...]:
    """Every role for an output segment; middle and last where every position has a target
    (the first position's prefix is one token at every length: nothing to extrapolate)."""
    first, _ = task.target_span(train_len)
    return ROLES if first > 0 else ROLES[1:]


def check_positions(
    subject: Any,
    task: Any = None,
    train_len: int | None = None,
    config: CheckConfig | None = None,
    *,
    roles: Sequence[str] | None = None,
    adapter: ModelAdapter | None = None,
    **settings: Any,
) -> PositionCheck:
    """Check each target role of a task with targets at many positions (module docstring).

    ``subject``, ``task``, ``train_len`` and ``adapter`` are as for `check`; ``config`` and keyword
    settings (``test_lengths``, ``eps``, ...) too, with test lengths those of the whole
    sequence. A last-position task is checked as it is, under the role ``"last"``.
    """
    found = resolve(subject, task, train_len, adapter)
    task, n = found.task, found.train_len
    assert task is not None and n is not None
    config = (config or CheckConfig()).replace(**settings)
    lengths = config.lengths_for(n)
    if not isinstance(task, SequenceTask):
        report = check(subject, task, n, config.replace(test_lengths=lengths), adapter=adapter)
        role = RoleCheck("last", n, {t: t for t in lengths}, report)
        return PositionCheck(task.spec(), n, lengths, [role])
    chosen = tuple(roles) if roles is not None else default_roles(task, n)
    unknown = [r for r in chosen if r not in ROLES]
    if unknown or not chosen:
        raise SimcheckError(f"unknown target roles {unknown}; choose among {', '.join(ROLES)}")
    checks = []
    for role in chosen:
        problem = TargetRole(task, role)
        role_n = problem.role_position(n) + 1
        prefixes = {t: problem.role_position(t) + 1 for t in lengths}
        short = [t for t, p in prefixes.items() if p <= role_n]
        if short:
            raise SimcheckError(
                f"at test length(s) {short} the {role} target of '{task.spec()}' is no further "
                f"than at N={n}: nothing to extrapolate; use longer test lengths"
            )
        report = check(
            found.run if found.run is not None else found.model,
            problem,
            role_n,
            config.replace(test_lengths=sorted(set(prefixes.values()))),
            adapter=found.adapter,
        )
        checks.append(RoleCheck(role, role_n, prefixes, report))
    return PositionCheck(task.spec(), n, lengths, checks)
