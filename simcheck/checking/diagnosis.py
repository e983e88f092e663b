"""Why a length is not certified: the dominant term of the chain, the first state that
diverges, and the recognisable causes.

`diagnose` reads an `Evidence`: statistics of the check at one length and probe objects,
nothing of the report, so the report can import this module and not the other way round.
Causes named when their evidence is present, most basic first:

- **fails at training length**: the error exceeds eps on more than delta of the inputs of
  lengths <= N (confidently, by the short interval).
- **output does not depend on the input**: over inputs of lengths <= N the model's
  prediction varies by less than `CONSTANT_SPREAD` of the task's own variation (an
  untrained or collapsed model), or a class model gives one decision to nearly every input.
- **witness resolution**: the long inputs that are not covered are finer than strings of
  length <= N can be: either no witness matches the task within eps / 2 there (the task
  floor: proportions resolved to 1/m at length m; a model that follows the task repeats the
  task gap as its model gap, so the chain is about twice the task gap), or they lie nearer
  the decision boundary, in the task's own statistic (`Task.margin`), than any input of
  length <= N can.
- **positions beyond the trained range**: learned absolute positions, T > N, and the
  embedding-level state (``resid_pre.L0``) diverges from its witness's or lies outside the
  states of training lengths. Rows N..T-1 of the position table never received a gradient.
- **attention dilution**: a head whose states diverge, focused at length N (top weight
  >= 0.3), spreads its attention as T grows: its entropy at T exceeds that at N by more than
  half of log(T/N) and its top weight halves. (Heads that average over a class of keys
  have entropy ~ log T by design and are not flagged.)
- **logit margin too small for hard attention** (finite-precision mode): a head's margin
  gamma between the largest and second-largest distinct logits needs n >= 2^(bits/gamma)
  for exact hard attention, beyond the training length (Thm 4.1 needs N past it): at N the
  head is not yet in its hard regime, so what it does at N does not bind what it does at T
  (keys within gamma of the top that count at N are rounded away at T once T is past the
  threshold; below it their weights still shift as n^-gamma).

When none applies, the diagnosis points at the largest discrepancy. The thresholds are
heuristics, stated here and in the report so a reader can weigh them.

**Confirmation by intervention** (`Diagnosis.with_repairs`): where the check ran the repairs
of `simcheck.checking.interventions`, each cause is matched with its repair (positions with the
position table, dilution in a head with that head's length-scaled logits, the logit margin
with more bits). A cause whose repair removes at least half of the long error on the
uncovered inputs (`simcheck.checking.effects.CONFIRM_SHARE`) is *confirmed*; one whose repair
removes less is *also observed, not confirmed*; a confirmed repair whose cause the
thresholds did not name adds that cause, found by intervention. Causes are then ordered by
the share their repair removed. Witness resolution has no repair and is said so.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from simcheck.checking.confidence import Interval
from simcheck.checking.effects import Repair
from simcheck.checking.outcomes import CERTIFIED, UNDECIDED, UNEXPLAINED_PASS
from simcheck.checking.statistics import Coverage
from simcheck.model.chunked import AttentionMode, FinitePrecision
from simcheck.probes import AttentionEntropy, LogitMargin, Probe, Residual, TopWeight

TERMS = ("task_gap", "short_error", "model_gap")
COVERAGE_OUTSIDE = 0.5
"""A state is 'outside the training states' when more than this fraction of long inputs
lie beyond the 99th percentile of short nearest-neighbour distances."""
FOCUSED_TOP_WEIGHT = 0.3
"""A head counts as focused at length N when its top weight is at least this; only a focused
head can dilute (a head that averages over a class of keys has entropy ~ log T by design)."""
CONSTANT_SPREAD = 0.1
"""The output 'does not depend on the input' when its spread over inputs of lengths <= N is
below this fraction of the task's spread."""
CONSTANT_DECISION = 0.99
"""... or, for classes, when one decision covers at least this share of those inputs while
the task's most common class covers less."""
RESOLUTION_SHARE = 0.5
"""Witness resolution is named when at least this share of the uncovered inputs is finer
than length <= N allows."""
EMBEDDING_STATE = Residual(0, "pre")
BASIC_CAUSES = ("fails_at_training_length", "constant_output")
"""Causes that say the model never learned the task: listed first."""


@dataclass(frozen=True)
class ProbeStat:
    """Normalised discrepancy of one probe (one head, or the whole state) between long
    inputs and their chosen witnesses: median, mean and max over inputs."""

    probe: Probe
    head: int | None
    median: float
    mean: float
    max: float

    @property
    def name(self) -> str:
        return self.probe.name

    @property
    def depth(self) -> float:
        return self.probe.depth

    @property
    def layer(self) -> int | None:
        return getattr(self.probe, "layer", None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "probe": self.name,
            "head": self.head,
            "depth": self.depth,
            "median": self.median,
            "mean": self.mean,
            "max": self.max,
        }


@dataclass(frozen=True)
class ShortBehaviour:
    """The model on inputs of lengths <= N (the reference sample).

    Attributes:
        interval: the fraction of them whose error exceeds eps.
        mean_error: their mean error.
        output_spread: how much the model's prediction varies over them (standard
            deviation for scalars; mean total variation from the mean prediction otherwise).
        task_spread: the same for the task's targets.
        decision_share: for classes, the share of the most common decision (else None).
        class_share: for classes, the share of the most common target class (else None).
    """

    interval: Interval
    mean_error: float
    output_spread: float
    task_spread: float
    decision_share: float | None = None
    class_share: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "error_above_eps": self.interval.to_dict(),
            "mean_error": self.mean_error,
            "output_spread": self.output_spread,
            "task_spread": self.task_spread,
            "decision_share": self.decision_share,
            "class_share": self.class_share,
        }


@dataclass(frozen=True)
class MarginEvidence:
    """The task's own statistic (`Task.margin`: distance to the nearest change of the
    answer) on the uncovered long inputs and on the short inputs."""

    name: str
    uncovered: np.ndarray
    short_smallest: float


@dataclass(frozen=True)
class Evidence:
    """What the diagnosis reads about one test length.

    Attributes:
        uncovered: per long input, whether no witness covers it (chain above eps).
        matched: the chain's terms per long input at the witness that best matches the
            task (least task gap, then least chain): how the model treats a short input the
            task considers equivalent.
        floor_gap: per long input, the least task gap over its witnesses.
        learned_positions: whether the model reads learned absolute positions.
        trained_positions: how many leading positions training showed the model.
        prefix: tokens in front of every input (so the last position is prefix + length - 1).
        attention, attention_at_n: per layer, per-head median entropy, top weight and
            logit margin at T and at N.
    """

    length: int
    train_len: int
    eps: float
    delta: float
    outcome: str
    chain: Interval
    long: Interval
    uncovered: np.ndarray
    matched: dict[str, np.ndarray]
    floor_gap: np.ndarray
    probes: tuple[ProbeStat, ...]
    coverage: dict[str, Coverage]
    attention: dict[int, dict[str, list[float]]]
    attention_at_n: dict[int, dict[str, list[float]]]
    short: ShortBehaviour
    margin: MarginEvidence | None
    learned_positions: bool
    trained_positions: int
    prefix: int
    mode: AttentionMode
    diverge_at: float


@dataclass(frozen=True)
class Cause:
    """A recognised reason for failure: a short ``kind``, a sentence with the evidence, the
    head it names (dilution, logit margin) and, once interventions ran, its ``repair``."""

    kind: str
    message: str
    layer: int | None = None
    head: int | None = None
    repair: Repair | None = None

    @property
    def confirmed(self) -> bool:
        """Whether its repair confirmed it (`simcheck.checking.effects.Effect.confirms`)."""
        return self.repair is not None and self.repair.confirmed

    def line(self) -> str:
        """The cause as the diagnosis prints it, with what its repair showed."""
        repair = self.repair
        if repair is None:
            return f"cause: {self.message}"
        if repair.error is None:
            return f"cause (no repair exists, so no intervention can confirm it): {self.message}"
        effect = f"{repair.action}: {repair.error.describe('the long error')}"
        if self.confirmed:
            return f"cause, confirmed by intervention ({effect}): {self.message}"
        return f"also observed, not confirmed ({effect}): {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "message": self.message,
            "layer": self.layer,
            "head": self.head,
            "confirmed": self.confirmed if self.repair is not None else None,
            "repair": None if self.repair is None else self.repair.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Cause:
        repair = data.get("repair")
        return cls(
            data["kind"],
            data["message"],
            data.get("layer"),
            data.get("head"),
            None if repair is None else Repair.from_dict(repair),
        )


CAUSE_LABELS = {
    "positions_beyond_training": "position embeddings beyond the trained range",
    "attention_dilution": "attention dilution",
    "small_logit_margin": "logit margin too small for hard attention",
    "witness_resolution": "witness resolution",
}
"""How a cause found only by its repair is named."""


@dataclass
class Diagnosis:
    """What breaks at one test length.

    Attributes:
        outcome: the length's outcome.
        dominant_term: the term of the chain with the largest mean over the uncovered
            inputs, at the witnesses that best match the task.
        term_means: mean task gap, short error and model gap there.
        first_divergence: the earliest state (in forward order) whose median normalised
            discrepancy exceeds ``diverge_at``: probe name, head (or None) and median.
        largest_divergence: the state with the largest median discrepancy.
        causes: the recognised causes, most basic first.
        note: a sentence that comes before everything else (for fails-short and
            undecided, what the outcome rests on).
    """

    outcome: str
    dominant_term: str
    term_means: dict[str, float]
    first_divergence: dict[str, Any] | None
    largest_divergence: dict[str, Any] | None
    causes: list[Cause] = field(default_factory=list)
    note: str | None = None

    def lines(self) -> list[str]:
        """The diagnosis as readable sentences: the note, the causes that say the model
        never learned the task, then the chain's terms, the divergence and other causes."""
        basic = [c for c in self.causes if c.kind in BASIC_CAUSES]
        others = [c for c in self.causes if c.kind not in BASIC_CAUSES]
        out = [self.note] if self.note else []
        out += [f"cause: {c.message}" for c in basic]
        terms = ", ".join(f"{k} {v:.3g}" for k, v in self.term_means.items())
        out.append(
            f"dominant term: {self.dominant_term} (means over uncovered inputs, at the "
            f"task-matched witnesses: {terms})"
        )
        if self.first_divergence:
            out.append(f"first diverging state: {_describe(self.first_divergence)}")
        else:
            out.append("no probed state diverges beyond the threshold")
        out += [c.line() for c in others]
        if not self.causes:
            where = (
                f"; the largest discrepancy is in {_describe(self.largest_divergence)}"
                if self.largest_divergence
                else ""
            )
            out.append(f"no recognised cause{where}")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "note": self.note,
            "dominant_term": self.dominant_term,
            "term_means": self.term_means,
            "first_divergence": self.first_divergence,
            "largest_divergence": self.largest_divergence,
            "causes": [c.to_dict() for c in self.causes],
        }

    def with_repairs(self, repairs: list[Repair]) -> Diagnosis:
        """This diagnosis with each cause matched to its repair, confirmed causes found only
        by a repair added, and the causes after the basic ones ordered: confirmed first, then
        tested, then untestable, each by the share of the long error the repair removed (see
        the module docstring)."""
        best: dict[tuple[str, int | None, int | None], Repair] = {}
        for repair in repairs:  # of several repairs of one cause, the one that removed most
            key = (repair.cause, repair.layer, repair.head)
            if key not in best or repair.strength > best[key].strength:
                best[key] = repair
        used: set[tuple[str, int | None, int | None]] = set()
        causes = []
        for cause in self.causes:
            key = _repair_key(cause, best)
            if key is not None and key not in used:
                used.add(key)
                cause = dataclasses.replace(cause, repair=best[key])
            causes.append(cause)
        for key, repair in best.items():
            if key in used or not repair.confirmed or repair.cause not in CAUSE_LABELS:
                continue
            causes.append(
                Cause(
                    repair.cause,
                    f"{CAUSE_LABELS[repair.cause]} in {repair.target}, found by intervention "
                    "(the thresholds above did not name it)",
                    repair.layer,
                    repair.head,
                    repair,
                )
            )
        basic = [c for c in causes if c.kind in BASIC_CAUSES]
        others = sorted((c for c in causes if c.kind not in BASIC_CAUSES), key=_cause_order)
        return dataclasses.replace(self, causes=basic + others)


def _repair_key(
    cause: Cause, best: dict[tuple[str, int | None, int | None], Repair]
) -> tuple[str, int | None, int | None] | None:
    """The key of the repair that tests ``cause``: the same kind, and the same head where the
    repair names one (a dilution repair); a repair of the whole model (positions, precision)
    tests the cause whatever head it names."""
    for key in ((cause.kind, cause.layer, cause.head), (cause.kind, None, None)):
        if key in best:
            return key
    return None


def _cause_order(cause: Cause) -> tuple[int, float]:
    """Confirmed causes first, then tested ones, then those no repair tests; within each,
    the larger removed share first."""
    repair = cause.repair
    if repair is None or repair.error is None:
        return (2, 0.0)
    return (0 if cause.confirmed else 1, -repair.strength)


def _describe(divergence: dict[str, Any] | None) -> str:
    if not divergence:
        return "-"
    head = f" head {divergence['head']}" if divergence["head"] is not None else ""
    return (
        f"{divergence['probe']}{head} (median discrepancy {divergence['median']:.3g} x its "
        "spread over lengths <= N)"
    )


def attention_summary(
    probes: list[Probe], states: dict[str, torch.Tensor]
) -> dict[int, dict[str, list[float]]]:
    """Per layer, the per-head median entropy, top weight and logit margin of the recorded
    inputs (from the attention summary probes present)."""
    kinds = ((AttentionEntropy, "entropy"), (TopWeight, "top"), (LogitMargin, "margin"))
    summary: dict[int, dict[str, list[float]]] = {}
    for probe in probes:
        label = next((name for cls, name in kinds if type(probe) is cls), None)
        if label is None or probe.name not in states:
            continue
        values = states[probe.name].float().reshape(states[probe.name].shape[0], -1)
        medians = np.median(values.numpy(), axis=0)  # keeps +inf margins (all-equal rows)
        summary.setdefault(probe.layer, {})[label] = medians.tolist()
    return summary


def diagnose(evidence: Evidence) -> Diagnosis | None:
    """The diagnosis of a length that is not certified (None where it is)."""
    if evidence.outcome == CERTIFIED:
        return None
    failing = evidence.uncovered if evidence.uncovered.any() else np.ones_like(evidence.uncovered)
    means = {term: float(evidence.matched[term][failing].mean()) for term in TERMS}
    dominant = max(means, key=means.get)
    compared = [s for s in evidence.probes if s.name != "output" and math.isfinite(s.median)]
    diverging = sorted(
        (s for s in compared if s.median > evidence.diverge_at),
        key=lambda s: (s.depth, s.head if s.head is not None else -1),
    )
    largest = max(compared, key=lambda s: s.median, default=None)
    diagnosis = Diagnosis(
        outcome=evidence.outcome,
        dominant_term=dominant,
        term_means=means,
        first_divergence=_divergence(diverging[0]) if diverging else None,
        largest_divergence=_divergence(largest) if largest else None,
        note=_note(evidence),
    )
    diagnosis.causes += _fails_short(evidence)
    diagnosis.causes += _constant_output(evidence)
    diagnosis.causes += _resolution(evidence)
    if evidence.uncovered.any():  # mechanisms explain failures; with none, they explain nothing
        diagnosis.causes += _positions(evidence, diverging)
        diagnosis.causes += _dilution(evidence, diverging)
        diagnosis.causes += _margin(evidence, diverging)
    return diagnosis


def _divergence(stat: ProbeStat) -> dict[str, Any]:
    return {"probe": stat.name, "head": stat.head, "median": stat.median}


def _note(evidence: Evidence) -> str | None:
    if evidence.outcome == UNDECIDED:
        chain, long = evidence.chain, evidence.long
        return (
            f"undecided after {chain.samples} long inputs: uncovered fraction {chain.fraction:.3f} "
            f"in [{chain.low:.3f}, {chain.high:.3f}], long-error fraction {long.fraction:.3f} in "
            f"[{long.low:.3f}, {long.high:.3f}], against delta={evidence.delta:g}"
        )
    if evidence.outcome == UNEXPLAINED_PASS:
        return (
            f"the measured long error is within eps on all but {evidence.long.fraction:.1%} of "
            f"the inputs, but {evidence.chain.fraction:.1%} have no witness of length <= "
            f"{evidence.train_len} that bounds it"
        )
    return None


def _fails_short(evidence: Evidence) -> list[Cause]:
    interval = evidence.short.interval
    if not interval.above(evidence.delta):
        return []
    return [
        Cause(
            "fails_at_training_length",
            f"fails at training length: the error exceeds eps={evidence.eps:g} on "
            f"{interval.fraction:.1%} of inputs of length <= {evidence.train_len} (interval "
            f"{interval.low:.3f}-{interval.high:.3f}, above delta={evidence.delta:g}; mean "
            f"short error {evidence.short.mean_error:.3g}): the model has not learned the task, "
            "so its long errors say nothing about length generalization",
        )
    ]


def _constant_output(evidence: Evidence) -> list[Cause]:
    short = evidence.short
    if short.decision_share is not None and short.class_share is not None:
        if short.decision_share >= CONSTANT_DECISION and short.class_share < CONSTANT_DECISION:
            return [
                Cause(
                    "constant_output",
                    f"output does not depend on the input: one decision on "
                    f"{short.decision_share:.1%} of inputs of length <= {evidence.train_len}, "
                    f"where the task's most common class is {short.class_share:.1%} (an "
                    "untrained or collapsed model)",
                )
            ]
        return []
    if short.task_spread > 0 and short.output_spread < CONSTANT_SPREAD * short.task_spread:
        return [
            Cause(
                "constant_output",
                f"output does not depend on the input: over inputs of length <= "
                f"{evidence.train_len} the prediction varies by {short.output_spread:.3g}, the "
                f"task by {short.task_spread:.3g} (an untrained or collapsed model)",
            )
        ]
    return []


def _resolution(evidence: Evidence) -> list[Cause]:
    failing = evidence.uncovered
    if not failing.any():
        return []
    causes = []
    beyond_floor = evidence.floor_gap[failing] > evidence.eps / 2
    if beyond_floor.mean() >= RESOLUTION_SHARE:
        causes.append(
            Cause(
                "witness_resolution",
                f"witness resolution (task floor): for {beyond_floor.mean():.0%} of the "
                f"uncovered inputs no witness of length <= {evidence.train_len} matches the "
                f"task within eps/2 = {evidence.eps / 2:g} (median least task gap "
                f"{np.median(evidence.floor_gap[failing]):.3g}); a model that follows the "
                "task repeats that gap as its model gap, so the chain exceeds eps: the "
                "inputs' proportions of (token, position mod Delta) are finer than strings "
                "of length <= N resolve",
            )
        )
    margin = evidence.margin
    if margin is not None and margin.uncovered.size and math.isfinite(margin.short_smallest):
        finer = margin.uncovered < margin.short_smallest
        if finer.mean() >= RESOLUTION_SHARE:
            causes.append(
                Cause(
                    "witness_resolution",
                    f"witness resolution ({margin.name}): {finer.mean():.0%} of the uncovered "
                    f"inputs lie nearer the decision boundary (median {margin.name} "
                    f"{np.median(margin.uncovered):.3g}) than any input of length <= "
                    f"{evidence.train_len} can (smallest {margin.short_smallest:.3g})",
                )
            )
    return causes


def _positions(evidence: Evidence, diverging: list[ProbeStat]) -> list[Cause]:
    last_position = evidence.prefix + evidence.length - 1
    if not evidence.learned_positions or last_position < evidence.trained_positions:
        return []
    covered = evidence.coverage.get(EMBEDDING_STATE.name)
    outside = covered.outside if covered is not None else 0.0
    diverges = any(s.probe == EMBEDDING_STATE for s in diverging)
    if not diverges and outside <= COVERAGE_OUTSIDE:
        return []
    median = next((s.median for s in evidence.probes if s.probe == EMBEDDING_STATE), math.nan)
    where = f" and {outside:.0%} of long inputs lie outside the training states" if outside else ""
    return [
        Cause(
            "positions_beyond_training",
            f"position embeddings beyond the trained range: learned absolute positions "
            f"{evidence.trained_positions}..{last_position} were never seen in training "
            f"(N={evidence.train_len}); the embedding-level state {EMBEDDING_STATE.name} "
            f"differs from its witness's by {median:.3g} x its spread{where}",
        )
    ]


def _head_diverges(layer: int, head: int, diverging: list[ProbeStat]) -> bool:
    return any(s.layer == layer and (s.head == head or s.head is None) for s in diverging)


def _dilution(evidence: Evidence, diverging: list[ProbeStat]) -> list[Cause]:
    causes = []
    length, train_len = evidence.length, evidence.train_len
    growth = 0.5 * math.log(length / train_len) if length > train_len else math.inf
    for layer, summary in evidence.attention.items():
        base = evidence.attention_at_n.get(layer, {})
        if "entropy" not in summary or "entropy" not in base:
            continue
        pairs = zip(summary["entropy"], base["entropy"], strict=True)
        for head, (ent_t, ent_n) in enumerate(pairs):
            top_t = summary.get("top", [math.nan] * (head + 1))[head]
            top_n = base.get("top", [math.nan] * (head + 1))[head]
            focused = top_n >= FOCUSED_TOP_WEIGHT and top_t < 0.5 * top_n
            if focused and ent_t - ent_n > growth and _head_diverges(layer, head, diverging):
                causes.append(
                    Cause(
                        "attention_dilution",
                        f"attention dilution in L{layer} head {head}: entropy {ent_n:.2f} -> "
                        f"{ent_t:.2f} nats and top weight {top_n:.3f} -> {top_t:.3f} from "
                        f"length {train_len} to {length}",
                        layer,
                        head,
                    )
                )
    return causes


def _margin(evidence: Evidence, diverging: list[ProbeStat]) -> list[Cause]:
    mode = evidence.mode
    if not isinstance(mode, FinitePrecision):
        return []
    causes = []
    for layer, summary in evidence.attention.items():
        for head, gamma in enumerate(summary.get("margin", [])):
            if not math.isfinite(gamma) or gamma <= 0:
                continue
            needed = mode.bits / gamma
            trained = evidence.train_len + evidence.prefix
            if math.log2(trained) >= needed or not _head_diverges(layer, head, diverging):
                continue
            last = evidence.length + evidence.prefix
            at_t = (
                f"T = {evidence.length} is past it, so keys within gamma of the top that "
                "count at N are rounded away at T"
                if math.log2(last) >= needed
                else f"T = {evidence.length} is below it too, and from N to T the weights of "
                "keys within gamma of the top shift by a factor (T/N)^-gamma"
            )
            causes.append(
                Cause(
                    "small_logit_margin",
                    f"logit margin too small for hard attention in L{layer} head {head}: "
                    f"gamma = {gamma:.3g} needs n >= 2^({mode.bits}/gamma) = 2^{needed:.1f}, "
                    f"beyond the training length N = {evidence.train_len}; {at_t}",
                    layer,
                    head,
                )
            )
    return causes
