"""What the check measured at one test length (`LengthResult`) and the worst inputs it saw
(`WorstCase`), with their saved forms: the certificate's entries and the per-input arrays
that `simcheck.report.check_report.CheckReport.save` writes and `load` reads back."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from simcheck.checking.confidence import Interval
from simcheck.checking.diagnosis import TERMS, Cause, Diagnosis, ProbeStat
from simcheck.checking.effects import PatchRow, Repair
from simcheck.checking.forecast import slack_quantile
from simcheck.checking.outcomes import CERTIFIED, Outcome
from simcheck.checking.statistics import Coverage, needed_count
from simcheck.checking.witnesses import Witness


@dataclass(frozen=True)
class WorstCase:
    """A long input with one of the largest chains, and its chain witness.

    Attributes:
        attention_x, attention_z: the last query's attention mass per key type on x and on
            z, [layers, heads, types], type = token * Delta + position mod Delta (positions
            as the model counts them, prefix included): whether the witness draws the
            model's attention as x does. None when not recorded.
    """

    index: int
    x: np.ndarray
    z: Witness
    chain: float
    task_gap: float
    short_error: float
    model_gap: float
    long_error: float
    attention_x: np.ndarray | None = None
    attention_z: np.ndarray | None = None

    def to_dict(self) -> dict[str, Any]:
        attention = None
        if self.attention_x is not None and self.attention_z is not None:
            attention = {"x": self.attention_x.tolist(), "z": self.attention_z.tolist()}
        return {
            "index": self.index,
            "x": " ".join(str(int(t)) for t in self.x),
            "witness": self.z.to_dict(),
            "chain": self.chain,
            "task_gap": self.task_gap,
            "short_error": self.short_error,
            "model_gap": self.model_gap,
            "long_error": self.long_error,
            "attention": attention,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WorstCase:
        """The worst case a certificate recorded (its numbers as rounded there)."""
        witness = data["witness"]
        attention = data.get("attention") or {}
        return cls(
            index=data["index"],
            x=np.array(data["x"].split(), dtype=np.int64),
            z=Witness(
                np.array(witness["tokens"], dtype=np.int64), witness["method"], witness["info"]
            ),
            chain=_number(data["chain"]),
            task_gap=_number(data["task_gap"]),
            short_error=_number(data["short_error"]),
            model_gap=_number(data["model_gap"]),
            long_error=_number(data["long_error"]),
            attention_x=np.array(attention["x"], dtype=float) if attention else None,
            attention_z=np.array(attention["z"], dtype=float) if attention else None,
        )


@dataclass
class LengthResult:
    """Everything measured at one test length T; per-input arrays have one entry per input.

    Attributes:
        outcome: a `simcheck.checking.outcomes.Outcome`.
        chain_interval: the fraction of inputs not covered (chain > eps), with its exact
            binomial interval.
        long_interval: the fraction of inputs whose measured long error exceeds eps.
        looks: how many looks the sequential sampling took.
        chain_bound: the 1 - delta quantile of the chain: the long-error bound the
            witnesses give.
        eps_star: the 1 - delta quantile of the simulation error min max(task gap,
            model gap): how closely short inputs reproduce task and model at once.
        task_floor: the same quantile of the least task gap: the task's own floor.
        chain, joint, floor_gap, long_error: per input.
        task_gap, short_error, model_gap: the terms at each input's chain witness (least
            sum); ``matched_terms`` holds them at the witness that best matches the *task*
            (least task gap): how the model treats a short input the task considers
            equivalent; the diagnosis reads those.
        slack: per input, how far it is from breaking the certificate
            (`simcheck.checking.forecast`).
        patching: the interchange interventions at each site (`simcheck.checking.interventions`),
            empty where none ran.
        repairs: the repair of each suspected cause and its effect.
    """

    length: int
    outcome: str
    chain_interval: Interval
    long_interval: Interval
    looks: int
    chain_bound: float
    eps_star: float
    task_floor: float
    eps: float
    chain: np.ndarray
    joint: np.ndarray
    long_error: np.ndarray
    task_gap: np.ndarray
    short_error: np.ndarray
    model_gap: np.ndarray
    floor_gap: np.ndarray
    signed_terms: np.ndarray | None
    by_method: dict[str, float]
    witness_lengths: np.ndarray
    witness_methods: list[str]
    probes: list[ProbeStat]
    matched_terms: dict[str, np.ndarray]
    coverage: dict[str, Coverage]
    attention: dict[int, dict[str, list[float]]]
    worst: list[WorstCase]
    worst_case_trace: list[float] = field(default_factory=list)
    diagnosis: Diagnosis | None = None
    slack: np.ndarray | None = None
    patching: list[PatchRow] = field(default_factory=list)
    repairs: list[Repair] = field(default_factory=list)

    @property
    def samples(self) -> int:
        """Long inputs drawn (over all looks)."""
        return self.chain_interval.samples

    @property
    def certified(self) -> bool:
        return self.outcome == CERTIFIED

    @property
    def simulatable(self) -> bool:
        """eps* <= eps: short inputs reproduce task and model within eps on all but a delta
        fraction of inputs (the simulation criterion alone, without the short error)."""
        return self.eps_star <= self.eps

    @property
    def ratio(self) -> float:
        """eps* over the task's floor: 1 means as simulatable as the task itself (below 1
        when the model-guided search beat the constructions); NaN when the floor is 0."""
        return self.eps_star / self.task_floor if self.task_floor > 0 else math.nan

    def to_dict(self, delta: float) -> dict[str, Any]:
        methods: dict[str, int] = {}
        for method in self.witness_methods:
            methods[method] = methods.get(method, 0) + 1
        return {
            "T": self.length,
            "outcome": self.outcome,
            "certified": self.certified,
            "uncovered": self.chain_interval.to_dict(),
            "long_error_above_eps": self.long_interval.to_dict(),
            "looks": self.looks,
            "chain_bound": self.chain_bound,
            "eps_star": self.eps_star,
            "task_floor": self.task_floor,
            "ratio_to_floor": None if math.isnan(self.ratio) else self.ratio,
            "simulatable": self.simulatable,
            "counts": {
                "inputs": self.samples,
                "needed_within_eps": needed_count(self.samples, delta),
                "best_witness_methods": methods,
            },
            "eps_star_by_method": self.by_method,
            "errors": {
                name: _moments(getattr(self, name))
                for name in ("long_error", "chain", "task_gap", "short_error", "model_gap", "joint")
            },
            "witness_length": _moments(self.witness_lengths.astype(float)),
            "probes": [s.to_dict() for s in self.probes],
            "coverage": {
                name: {"outside": c.outside, "nn_ratio": c.ratio, "threshold": c.threshold}
                for name, c in self.coverage.items()
            },
            "attention": {f"L{layer}": value for layer, value in self.attention.items()},
            "worst": [w.to_dict() for w in self.worst],
            "worst_case_trace": self.worst_case_trace,
            "diagnosis": self.diagnosis.to_dict() if self.diagnosis else None,
            "slack_quantile": None if self.slack is None else slack_quantile(self.slack, delta),
            "interventions": self.interventions(),
        }

    def interventions(self) -> dict[str, Any] | None:
        """The patching table and the repairs, JSON-ready (None where none ran)."""
        if not (self.patching or self.repairs):
            return None
        return {
            "patching": [row.to_dict() for row in self.patching],
            "repairs": [repair.to_dict() for repair in self.repairs],
        }

    def per_input(self) -> dict[str, np.ndarray]:
        """What the certificate summarises, unrounded: the per-input arrays, the intervals
        and the quantiles (``CheckReport.save`` writes them to ``per_input.npz``)."""
        arrays = {
            name: getattr(self, name)
            for name in (*_PER_INPUT, "witness_lengths")
            if getattr(self, name) is not None
        }
        arrays["witness_methods"] = np.array(self.witness_methods, dtype=str)
        arrays["quantiles"] = np.array([self.chain_bound, self.eps_star, self.task_floor, self.eps])
        for name in ("chain_interval", "long_interval"):
            interval = getattr(self, name)
            arrays[name] = np.array(
                [interval.failures, interval.samples, interval.low, interval.high, interval.level]
            )
        for term, values in self.matched_terms.items():
            arrays[f"matched|{term}"] = values
        for state, cover in self.coverage.items():
            arrays[f"coverage|{state}|long_nn"] = cover.long_nn
            arrays[f"coverage|{state}|short_nn"] = cover.short_nn
            arrays[f"coverage|{state}|threshold"] = np.array(cover.threshold)
        return arrays

    @classmethod
    def from_saved(cls, data: dict[str, Any], arrays: dict[str, np.ndarray]) -> LengthResult:
        """The result a certificate entry (``data``) and its `per_input` arrays describe."""
        intervals = {}
        for name in ("chain_interval", "long_interval"):
            failures, samples, low, high, level = arrays[name].tolist()
            intervals[name] = Interval(int(failures), int(samples), low, high, level)
        chain_bound, eps_star, task_floor, eps = arrays["quantiles"].tolist()
        interventions = data.get("interventions") or {}
        coverage = {
            state: Coverage(
                arrays[f"coverage|{state}|long_nn"],
                arrays[f"coverage|{state}|short_nn"],
                float(arrays[f"coverage|{state}|threshold"]),
            )
            for state in dict.fromkeys(  # in the order the check recorded them
                key.split("|")[1] for key in arrays if key.startswith("coverage|")
            )
        }
        return cls(
            length=data["T"],
            outcome=Outcome(data["outcome"]),
            looks=data["looks"],
            chain_bound=chain_bound,
            eps_star=eps_star,
            task_floor=task_floor,
            eps=eps,
            **intervals,
            **{name: arrays.get(name) for name in _PER_INPUT},
            by_method={k: _number(v) for k, v in data["eps_star_by_method"].items()},
            witness_lengths=arrays["witness_lengths"],
            witness_methods=arrays["witness_methods"].tolist(),
            probes=[
                ProbeStat(
                    _SavedProbe(p["probe"], _number(p["depth"])),
                    p["head"],
                    _number(p["median"]),
                    _number(p["mean"]),
                    _number(p["max"]),
                )
                for p in data["probes"]
            ],
            matched_terms={term: arrays[f"matched|{term}"] for term in TERMS},
            coverage=coverage,
            attention={
                int(layer[1:]): {k: [_number(v) for v in vs] for k, vs in summary.items()}
                for layer, summary in sorted(
                    data["attention"].items(), key=lambda item: int(item[0][1:])
                )
            },
            worst=[WorstCase.from_dict(w) for w in data["worst"]],
            worst_case_trace=[_number(v) for v in data["worst_case_trace"]],
            diagnosis=_diagnosis(data["diagnosis"]),
            patching=[PatchRow.from_dict(row) for row in interventions.get("patching", [])],
            repairs=[Repair.from_dict(repair) for repair in interventions.get("repairs", [])],
        )


_PER_INPUT = (
    "chain",
    "joint",
    "long_error",
    "task_gap",
    "short_error",
    "model_gap",
    "floor_gap",
    "signed_terms",
    "slack",
)
"""The per-input arrays of a `LengthResult` (``signed_terms`` only for scalar tasks)."""


@dataclass(frozen=True)
class _SavedProbe:
    """A probe of a loaded check, known by the name and depth its certificate recorded:
    enough for the tables and figures, which read nothing else of a probe."""

    name: str
    depth: float


def _number(value: Any) -> float:
    """A certificate's number as a float: non-finite values are stored as strings."""
    return float(value)


def _diagnosis(data: dict[str, Any] | None) -> Diagnosis | None:
    """The diagnosis a certificate recorded."""
    if data is None:
        return None
    return Diagnosis(
        outcome=Outcome(data["outcome"]),
        dominant_term=data["dominant_term"],
        term_means={term: _number(data["term_means"][term]) for term in TERMS},
        first_divergence=data["first_divergence"],
        largest_divergence=data["largest_divergence"],
        causes=[Cause.from_dict(c) for c in data["causes"]],
        note=data["note"],
    )


def _moments(values: np.ndarray) -> dict[str, float]:
    return {
        "mean": float(values.mean()),
        "median": float(np.median(values)),
        "q95": float(np.quantile(values, 0.95)),
        "max": float(values.max()),
    }
