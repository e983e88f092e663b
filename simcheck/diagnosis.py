"""Why a model is not simulatable: the dominant error term, the first state that diverges,
and the recognisable causes.

Causes named when their evidence is present:

- **positions beyond the trained range**: learned absolute positions, T > N, and the
  embedding-level state (``resid_pre.L0``) diverges from its witness's or lies outside the
  states of training lengths. Rows N..T-1 of the position table never received a gradient.
- **attention dilution**: a head whose states diverge, focused at length N (top weight
  >= 0.3), spreads its attention as T grows: its entropy at T exceeds that at N by more than
  half of log(T/N) and its top weight halves. (Heads that average over a class of keys
  have entropy ~ log T by design and are not flagged.)
- **logit margin too small for hard attention** (finite-precision mode): a head's margin
  gamma between the largest and second-largest distinct logits needs n >= 2^(bits/gamma)
  for exact hard attention, beyond the test length.
The thresholds are heuristics, stated here and in the report so a reader can weigh them.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from simcheck.attention import AttentionMode, FinitePrecision
from simcheck.probes import Probe

if TYPE_CHECKING:
    from simcheck.report import LengthResult

TERMS = ("task_gap", "short_error", "model_gap")
COVERAGE_OUTSIDE = 0.5
"""A state is 'outside the training states' when more than this fraction of long inputs
lie beyond the 99th percentile of short nearest-neighbour distances."""
FOCUSED_TOP_WEIGHT = 0.3
"""A head counts as focused at length N when its top weight is at least this; only a focused
head can dilute (a head that averages over a class of keys has entropy ~ log T by design)."""
_SUMMARIES = {"attn_entropy": "entropy", "attn_top": "top", "logit_margin": "margin"}
_LAYER = re.compile(r"\.L(\d+)$")


@dataclass(frozen=True)
class Cause:
    """A recognised reason for failure: a short ``kind`` and a sentence with the evidence."""

    kind: str
    message: str


@dataclass
class Diagnosis:
    """What breaks at one test length.

    Attributes:
        dominant_term: the term of the bound with the largest mean over failing inputs, at
            the witnesses that best match the task (the short inputs the task considers
            equivalent to x).
        term_means: mean task gap, short error and model gap there.
        first_divergence: the earliest state (in forward order) whose median normalised
            discrepancy exceeds ``diverge_at``: probe name, head (or None) and median.
        causes: the recognised causes, most specific first.
    """

    dominant_term: str
    term_means: dict[str, float]
    first_divergence: dict[str, Any] | None
    causes: list[Cause] = field(default_factory=list)

    def lines(self) -> list[str]:
        """The diagnosis as readable sentences."""
        terms = ", ".join(f"{k} {v:.3g}" for k, v in self.term_means.items())
        out = [
            f"dominant term: {self.dominant_term} (means over failing inputs, at the "
            f"task-matched witnesses: {terms})"
        ]
        if self.first_divergence:
            d = self.first_divergence
            head = f" head {d['head']}" if d["head"] is not None else ""
            out.append(
                f"first diverging state: {d['probe']}{head} "
                f"(median discrepancy {d['median']:.3g} x its spread over lengths <= N)"
            )
        else:
            out.append("no probed state diverges beyond the threshold")
        out += [f"cause: {c.message}" for c in self.causes] or ["no recognised cause"]
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "dominant_term": self.dominant_term,
            "term_means": self.term_means,
            "first_divergence": self.first_divergence,
            "causes": [{"kind": c.kind, "message": c.message} for c in self.causes],
        }


def attention_summary(
    probes: list[Probe], states: dict[str, torch.Tensor]
) -> dict[str, dict[str, list[float]]]:
    """Per layer ("L0", ...) the per-head median entropy, top weight and logit margin of the
    recorded inputs (from the attention summary probes present)."""
    summary: dict[str, dict[str, list[float]]] = {}
    for probe in probes:
        label = probe.name.split(".")[0]
        match = _LAYER.search(probe.name)
        if label not in _SUMMARIES or not match:
            continue
        values = states[probe.name].float().reshape(states[probe.name].shape[0], -1)
        medians = np.median(values.numpy(), axis=0)  # keeps +inf margins (all-equal rows)
        summary.setdefault(f"L{match.group(1)}", {})[_SUMMARIES[label]] = medians.tolist()
    return summary


def diagnose(
    result: LengthResult,
    model: Any,
    train_len: int,
    eps: float,
    diverge_at: float,
    attention_at_n: dict[str, dict[str, list[float]]],
    mode: AttentionMode,
) -> Diagnosis | None:
    """The diagnosis of a length where eps* > eps (None where the model is simulatable)."""
    if result.simulatable:
        return None
    failing = result.joint > eps
    means = {term: float(result.matched_terms[term][failing].mean()) for term in TERMS}
    dominant = max(means, key=means.get)
    diverging = sorted(
        (s for s in result.probes if s.probe != "output" and s.median > diverge_at),
        key=lambda s: (s.depth, s.head if s.head is not None else -1),
    )
    first = None
    if diverging:
        s = diverging[0]
        first = {"probe": s.probe, "head": s.head, "median": s.median}
    diagnosis = Diagnosis(dominant, means, first)
    diverging_names = {(s.probe, s.head) for s in diverging}
    diagnosis.causes += _positions(result, model, train_len, diverging_names)
    diagnosis.causes += _dilution(result, train_len, attention_at_n, diverging_names)
    diagnosis.causes += _margin(result, mode, diverging_names)
    return diagnosis


def _positions(
    result: LengthResult, model: Any, train_len: int, diverging: set[tuple[str, Any]]
) -> list[Cause]:
    spec = getattr(model, "simcheck_spec", None)
    if spec is None or spec.pos != "learned" or result.length <= train_len:
        return []
    state = "resid_pre.L0"
    covered = result.coverage.get(state)
    outside = covered.outside if covered is not None else 0.0
    if (state, None) not in diverging and outside <= COVERAGE_OUTSIDE:
        return []
    median = next((s.median for s in result.probes if s.probe == state), math.nan)
    where = f" and {outside:.0%} of long inputs lie outside the training states" if outside else ""
    return [
        Cause(
            "positions_beyond_training",
            f"position embeddings beyond the trained range: learned absolute positions "
            f"{train_len}..{result.length - 1} were never seen in training (N={train_len}); "
            f"the embedding-level state {state} differs from its witness's by {median:.3g} x "
            f"its spread{where}",
        )
    ]


def _head_diverges(layer: str, head: int, diverging: set[tuple[str, Any]]) -> bool:
    return any(name.endswith(f".{layer}") and (h == head or h is None) for name, h in diverging)


def _dilution(
    result: LengthResult,
    train_len: int,
    at_n: dict[str, dict[str, list[float]]],
    diverging: set[tuple[str, Any]],
) -> list[Cause]:
    causes = []
    growth = 0.5 * math.log(result.length / train_len) if result.length > train_len else math.inf
    for layer, summary in result.attention.items():
        base = at_n.get(layer, {})
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
                        f"attention dilution in {layer} head {head}: entropy {ent_n:.2f} -> "
                        f"{ent_t:.2f} nats and top weight {top_n:.3f} -> {top_t:.3f} from "
                        f"length {train_len} to {result.length}",
                    )
                )
    return causes


def _margin(
    result: LengthResult, mode: AttentionMode, diverging: set[tuple[str, Any]]
) -> list[Cause]:
    if not isinstance(mode, FinitePrecision):
        return []
    causes = []
    for layer, summary in result.attention.items():
        for head, gamma in enumerate(summary.get("margin", [])):
            if not math.isfinite(gamma) or gamma <= 0:
                continue
            needed = mode.bits / gamma
            if math.log2(result.length) < needed and _head_diverges(layer, head, diverging):
                causes.append(
                    Cause(
                        "small_logit_margin",
                        f"logit margin too small for hard attention in {layer} head {head}: "
                        f"gamma = {gamma:.3g} needs n >= 2^({mode.bits}/gamma) = "
                        f"2^{needed:.1f}, beyond T = {result.length}",
                    )
                )
    return causes
