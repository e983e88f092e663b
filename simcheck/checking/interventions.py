"""Interventions that test a diagnosis: interchange with the witness, and a repair per cause.

The check finds, for a long input x it cannot cover, a short witness z that the task treats
like x (the witness that best matches the task: least task gap, then least chain). That z is
the counterfactual activation patching needs, handed over by the simulation criterion
itself. Everything here runs the model on the uncovered long inputs with one change, in the
check's attention mode, and measures per input the long error |f(x) - g(x)| and the model
gap |g(z) - g(x)| before and after (`simcheck.checking.effects`):

- **Interchange interventions** (`interchange`): x is run with one state at its query
  position (the last) replaced by z's at z's query position: the residual stream before each
  layer, each head's output (its ``hook_z`` row), each MLP's output, and each head's
  attention redistributed over x's keys so that every key *type* gets the mass it gets in z
  (x's weights rescaled within the type; a type is (token, position mod Delta) outside the
  local window and the offset inside it, as in the limit transformer). A state whose patch
  removes most of the error carries what breaks; the table over sites localises it.
- **Repairs** (`repairs`): one intervention on the *model* per suspected cause:

  - positions beyond the trained range: each untrained absolute position t is read through
    the largest trained row congruent to t mod Delta (Delta = the check's period, the lcm
    of the model's and the task's; with Delta = 1 that is the nearest trained row, the last
    one);
  - attention dilution in a head: its logits at query i are multiplied by
    max(1, log(i + 1) / log(N')), N' the longest trained position count (N plus any prefix):
    length-scaled attention, which keeps a focused head as sharp at T as at N;
  - finite precision: the check's p-bit attention is rerun with more bits, the fewest at
    which no key within any head's logit margin gamma rounds to 0 at T (2^(bits/gamma) > T),
    and at least twice p;
  - witness resolution: no repair exists (the witnesses, not the model, fall short).

  A cause is confirmed when its repair removes at least half of the long error on the
  uncovered inputs (`simcheck.checking.effects.CONFIRM_SHARE`, with the interval above 0).

Every forward pass here goes through the chunked engine of `simcheck.model.chunked` where the
model allows it (memory linear in T, finite precision available), else through the model's
own ``run_with_hooks``; the "before" numbers come from the same engine as the "after" ones.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from simcheck.checking.chain import ChainTerms
from simcheck.checking.effects import PatchRow, Repair, measure_effect
from simcheck.model.build import auto_batch_size
from simcheck.model.chunked import (
    AttentionMode,
    FinitePrecision,
    ScoreEdit,
    chunked_attention,
    supports_chunked_attention,
)
from simcheck.model.recording import TOKEN_BUDGET, record
from simcheck.model.subject import Subject
from simcheck.probes import AttentionRow, Probe, Residual
from simcheck.settings.attention import MAX_BITS

Hook = tuple[str, Callable[[torch.Tensor, Any], torch.Tensor]]
MAX_DILUTION_HEADS = 16
"""Heads the dilution repair is tried on at most: every head of a small model; in a larger
one, those whose top attention weight falls most from length N to T."""
POSITIONS = "positions_beyond_training"
DILUTION = "attention_dilution"
PRECISION = "small_logit_margin"
RESOLUTION = "witness_resolution"
REPAIRABLE = (POSITIONS, DILUTION, PRECISION)
"""The cause kinds with a repair (`simcheck.checking.diagnosis` names them)."""


Edits = Mapping[int, ScoreEdit]


@dataclass(frozen=True)
class Change:
    """One intervention on a forward pass. Both parts are made per batch of inputs (a slice
    of the rows), so that per-input values line up with the batch.

    Attributes:
        hooks: the TransformerLens hooks for one batch.
        score_edits: per layer, an edit of the attention logits
            (`simcheck.model.chunked.ScoreEdit`) for one batch.
        mode: an attention mode that replaces the check's (None keeps it).
    """

    hooks: Callable[[slice], list[Hook]] | None = None
    score_edits: Callable[[slice], Edits] | None = None
    mode: AttentionMode | None = None

    def for_rows(self, rows: slice) -> tuple[list[Hook], Edits]:
        """The hooks and the score edits for the inputs ``rows``."""
        hooks = self.hooks(rows) if self.hooks is not None else []
        edits = self.score_edits(rows) if self.score_edits is not None else {}
        return hooks, edits

    @staticmethod
    def together(changes: Sequence[Change]) -> Change:
        """All ``changes`` at once (a layer's score edits apply in order; the last mode given
        wins)."""

        def hooks(rows: slice) -> list[Hook]:
            return [hook for change in changes for hook in change.for_rows(rows)[0]]

        def score_edits(rows: slice) -> Edits:
            chains: dict[int, list[ScoreEdit]] = defaultdict(list)
            for change in changes:
                for layer, edit in change.for_rows(rows)[1].items():
                    chains[layer].append(edit)
            return {layer: _chained(chain) for layer, chain in chains.items()}

        modes = [c.mode for c in changes if c.mode is not None]
        return Change(hooks, score_edits, modes[-1] if modes else None)


def _chained(edits: list[ScoreEdit]) -> ScoreEdit:
    def edit(scores: torch.Tensor, first: int) -> torch.Tensor:
        for one in edits:
            scores = one(scores, first)
        return scores

    return edit


@dataclass(frozen=True)
class _HookValue(Probe):
    """The raw value of one hook point at the query positions (or whole, for keys and
    values): what a patch needs of the witness."""

    hook: str
    comparable: ClassVar[bool] = False

    @property
    def name(self) -> str:
        return self.hook

    def hook_names(self, model: Any) -> list[str]:
        return [self.hook]


class Runner:
    """Runs a subject's model on task inputs with a `Change`, in the check's attention mode,
    and returns the task's predictions at the last position (oracle space, on the CPU)."""

    def __init__(self, subject: Subject, mode: AttentionMode) -> None:
        assert subject.task is not None
        self.subject, self.mode = subject, mode
        self.model, self.task = subject.model, subject.task
        self.chunked = supports_chunked_attention(self.model)

    @torch.no_grad()
    def raw(self, tokens: np.ndarray, change: Change | None = None) -> torch.Tensor:
        """The task's raw outputs (logits, or the value) at the last position [M, ...]."""
        change = change or Change()
        model_input = self.subject.model_input(torch.as_tensor(tokens, dtype=torch.long))
        length = model_input.shape[1]
        size = (
            max(1, TOKEN_BUDGET // length) if self.chunked else auto_batch_size(self.model, length)
        )
        raw = []
        for start in range(0, model_input.shape[0], size):
            rows = slice(start, min(model_input.shape[0], start + size))
            hooks, edits = change.for_rows(rows)
            chunk = model_input[rows].to(self.subject.device)
            raw.append(self._last(chunk, hooks, edits, change.mode).float().cpu())
        return self.subject.task_output(torch.cat(raw))

    def predictions(self, tokens: np.ndarray, change: Change | None = None) -> torch.Tensor:
        """The task's predictions (oracle space) at the last position."""
        return self.task.prediction(self.raw(tokens, change)).float()

    def predictions_of(self, sequences: Sequence[np.ndarray]) -> torch.Tensor:
        """`predictions` for sequences of any lengths, in their order."""
        groups: dict[int, list[int]] = defaultdict(list)
        for index, sequence in enumerate(sequences):
            groups[len(sequence)].append(index)
        parts, order = [], []
        for length in sorted(groups):
            rows = groups[length]
            parts.append(self.predictions(np.stack([sequences[i] for i in rows])))
            order += rows
        inverse = torch.empty(len(order), dtype=torch.long)
        inverse[torch.as_tensor(order)] = torch.arange(len(order))
        return torch.cat(parts)[inverse]

    def _last(
        self,
        tokens: torch.Tensor,
        hooks: list[Hook],
        edits: Edits,
        mode: AttentionMode | None,
    ) -> torch.Tensor:
        """The raw output at the last position of one batch."""
        n_layers = self.model.cfg.n_layers
        if self.chunked:

            def rows_for(layer: int, length: int) -> list[tuple[int, int]]:
                return [(length - 1, length)] if layer == n_layers - 1 else [(0, length)]

            with chunked_attention(
                self.model,
                rows_for,
                mode or self.mode,
                _ignore_rows,
                fused_layers=range(n_layers),
                score_edits=edits,
            ):
                return self.model.run_with_hooks(tokens, fwd_hooks=hooks)[:, -1]
        edit_hooks = [
            (f"blocks.{layer}.attn.hook_attn_scores", _score_hook(edit))
            for layer, edit in edits.items()
        ]
        return self.model.run_with_hooks(tokens, fwd_hooks=hooks + edit_hooks)[:, -1]


def _ignore_rows(*_: Any) -> None:
    """The chunked engine's row callback: nothing here reads attention rows during a run."""


def _score_hook(edit: ScoreEdit) -> Callable[[torch.Tensor, Any], torch.Tensor]:
    """A ``hook_attn_scores`` hook that applies a score edit to the whole [batch, head,
    query, key] logits (masked keys already -inf), for models the chunked engine does not
    run."""

    def hook(scores: torch.Tensor, hook: Any) -> torch.Tensor:
        return edit(scores.clone(), 0)

    return hook


# ---------------------------------------------------------------------- witnesses' states


def _record_last(
    subject: Subject, sequences: Sequence[np.ndarray], probes: list[Probe], mode: AttentionMode
) -> dict[str, torch.Tensor]:
    """Each probe's value at the last position of each sequence (any lengths), in order,
    with the query axis removed; key-indexed values are not supported here."""
    groups: dict[int, list[int]] = defaultdict(list)
    for index, sequence in enumerate(sequences):
        groups[len(sequence)].append(index)
    parts: dict[str, list[torch.Tensor]] = defaultdict(list)
    order: list[int] = []
    for length in sorted(groups):
        rows = groups[length]
        tokens = torch.as_tensor(np.stack([sequences[i] for i in rows]), dtype=torch.long)
        recording = record(subject.model, subject.model_input(tokens), probes, attention=mode)
        for probe in probes:
            parts[probe.name].append(recording[probe.name][:, 0].cpu())
        order += rows
    inverse = torch.empty(len(order), dtype=torch.long)
    inverse[torch.as_tensor(order)] = torch.arange(len(order))
    out = {}
    for name, values in parts.items():
        if len({v.shape[1:] for v in values}) == 1:
            out[name] = torch.cat(values)[inverse]
        else:  # attention rows of different lengths: kept per input
            flat = [row for value in values for row in value]
            out[name] = [flat[i] for i in inverse.tolist()]  # type: ignore[assignment]
    return out


def key_classes(tokens: torch.Tensor, period: int, window: int, vocab: int) -> torch.Tensor:
    """The class of every key of ``tokens`` [batch, n] as the limit transformer reads it
    from the last query: (token, position mod Delta) outside the local window, the offset
    from the query inside it ([batch, n] ids in 0..`class_count` - 1)."""
    length = tokens.shape[1]
    positions = torch.arange(length, device=tokens.device)
    offset = length - 1 - positions
    by_type = tokens * period + positions % period
    return torch.where(offset <= window, vocab * period + offset, by_type)


def class_count(period: int, window: int, vocab: int) -> int:
    """How many key classes `key_classes` distinguishes."""
    return vocab * period + window + 1


def class_mass(weights: torch.Tensor, classes: torch.Tensor, count: int) -> torch.Tensor:
    """Attention mass per key class: weights [heads, n] and classes [n] -> [heads, count]."""
    mass = torch.zeros(weights.shape[0], count, dtype=weights.dtype)
    return mass.scatter_add_(1, classes[None].expand_as(weights), weights)


def redistributed(
    weights_x: torch.Tensor,
    classes_x: torch.Tensor,
    mass_z: torch.Tensor,
    count: int,
) -> torch.Tensor:
    """x's attention weights [heads, n] rescaled so that each key class holds z's mass
    ``mass_z`` [heads, count]: within a class x's own weights keep their proportions (a
    class x attends to not at all gets z's mass spread evenly over its keys); mass z puts on
    classes x lacks is lost, and the row is renormalised."""
    mass_x = class_mass(weights_x, classes_x, count)
    keys = torch.bincount(classes_x, minlength=count).to(weights_x.dtype)
    target = mass_z[:, classes_x]  # [heads, n]
    own = mass_x[:, classes_x]
    share = torch.where(own > 1e-12, weights_x / own.clamp_min(1e-30), 1.0 / keys[classes_x])
    new = target * share
    total = new.sum(-1, keepdim=True)
    return torch.where(total > 0, new / total.clamp_min(1e-30), weights_x)


# ---------------------------------------------------------------------- interchange


@dataclass
class Interchange:
    """The uncovered long inputs, their witnesses and what the interventions compare with.

    Attributes:
        tokens: the long inputs x [M, T] (task tokens).
        witnesses: each x's task-matched witness z (task tokens).
        f_x: the task's answers on x.
        g_x: the model's predictions on x through the intervention engine.
        g_z: the model's predictions on z.
    """

    runner: Runner
    gaps: ChainTerms
    tokens: np.ndarray
    witnesses: list[np.ndarray]
    f_x: torch.Tensor
    g_x: torch.Tensor
    g_z: torch.Tensor
    rng: np.random.Generator
    level: float
    period: int
    window: int

    @classmethod
    def build(
        cls,
        runner: Runner,
        gaps: ChainTerms,
        tokens: np.ndarray,
        witnesses: list[np.ndarray],
        rng: np.random.Generator,
        level: float,
        period: int,
        window: int,
    ) -> Interchange:
        task = runner.task
        f_x = task.oracle(torch.as_tensor(tokens, dtype=torch.long))
        f_x = f_x.long() if task.output == "classes" else f_x.float()
        g_x = runner.predictions(tokens)
        g_z = runner.predictions_of(witnesses)
        return cls(runner, gaps, tokens, witnesses, f_x, g_x, g_z, rng, level, period, window)

    def effects(self, g_after: torch.Tensor) -> tuple[Any, Any]:
        """The `Effect` on the long error and on the model gap of predictions ``g_after``."""
        error = measure_effect(
            self.gaps.error(self.f_x, self.g_x),
            self.gaps.error(self.f_x, g_after),
            self.rng,
            self.level,
        )
        gap = measure_effect(
            self.gaps.model_gap(self.g_x, self.g_z),
            self.gaps.model_gap(g_after, self.g_z),
            self.rng,
            self.level,
        )
        return error, gap

    def run(self, change: Change) -> tuple[Any, Any]:
        return self.effects(self.runner.predictions(self.tokens, change))

    def sites(self) -> list[PatchRow]:
        """The interchange intervention at every site (see the module docstring)."""
        rows = []
        for kind, layer, head, change in self._changes():
            error, gap = self.run(change)
            rows.append(PatchRow(kind, layer, head, error, gap))
        return rows

    def _changes(self) -> Iterator[tuple[str, int, int | None, Change]]:
        model = self.runner.model
        cfg, mode = model.cfg, self.runner.mode
        layers, heads = range(cfg.n_layers), range(cfg.n_heads)
        has_mlp = not cfg.attn_only
        probes: list[Probe] = []
        for layer in layers:
            probes += [
                Residual(layer, "pre"),
                _HookValue(f"blocks.{layer}.attn.hook_z"),
                AttentionRow(layer),
            ]
            if has_mlp:
                probes.append(_HookValue(f"blocks.{layer}.hook_mlp_out"))
        z_states = _record_last(self.runner.subject, self.witnesses, probes, mode)
        x_states = self._x_attention()
        for layer in layers:
            yield (
                "resid_pre",
                layer,
                None,
                _replace_last(f"blocks.{layer}.hook_resid_pre", z_states[f"resid_pre.L{layer}"]),
            )
            for head in heads:
                yield (
                    "head_out",
                    layer,
                    head,
                    _replace_last(
                        f"blocks.{layer}.attn.hook_z",
                        z_states[f"blocks.{layer}.attn.hook_z"][:, head],
                        head,
                    ),
                )
            z_rows = z_states[f"attn_row.L{layer}"]
            new_z = self._types_z(layer, x_states[layer], z_rows)
            for head in heads:
                yield (
                    "attn_types",
                    layer,
                    head,
                    _replace_last(f"blocks.{layer}.attn.hook_z", new_z[:, head], head),
                )
            if has_mlp:
                yield (
                    "mlp_out",
                    layer,
                    None,
                    _replace_last(
                        f"blocks.{layer}.hook_mlp_out", z_states[f"blocks.{layer}.hook_mlp_out"]
                    ),
                )

    def _x_attention(self) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
        """Per layer, x's attention row at the last position [M, heads, T'] and its values
        [M, T', heads, d_head] (T' counts the prefix), in the check's mode."""
        subject, model = self.runner.subject, self.runner.model
        probes: list[Probe] = []
        for layer in range(model.cfg.n_layers):
            probes += [AttentionRow(layer), _HookValue(f"blocks.{layer}.attn.hook_v")]
        tokens = subject.model_input(torch.as_tensor(self.tokens, dtype=torch.long))
        recording = record(model, tokens, probes, attention=self.runner.mode)
        out = {}
        for layer in range(model.cfg.n_layers):
            values = recording[f"blocks.{layer}.attn.hook_v"].cpu()
            heads = model.cfg.n_heads
            if values.shape[2] != heads:  # grouped-query attention: one value head per group
                values = values.repeat_interleave(heads // values.shape[2], dim=2)
            out[layer] = (recording[f"attn_row.L{layer}"][:, 0].cpu(), values)
        return out

    def _types_z(
        self,
        layer: int,
        x_attention: tuple[torch.Tensor, torch.Tensor],
        z_rows: Any,
    ) -> torch.Tensor:
        """Per input and head, the head's output row at x's query when its attention over
        x's keys carries z's mass per key class: [M, heads, d_head]."""
        subject = self.runner.subject
        vocab = int(subject.model.cfg.d_vocab)
        count = class_count(self.period, self.window, vocab)
        weights_x, values = x_attention
        x_model = subject.model_input(torch.as_tensor(self.tokens, dtype=torch.long))
        classes_x = key_classes(x_model, self.period, self.window, vocab)
        out = []
        for i, z in enumerate(self.witnesses):
            z_model = subject.model_input(torch.as_tensor(np.array(z)[None], dtype=torch.long))
            classes_z = key_classes(z_model, self.period, self.window, vocab)[0]
            mass_z = class_mass(z_rows[i].float(), classes_z, count)
            new = redistributed(weights_x[i].float(), classes_x[i], mass_z, count)
            out.append(torch.einsum("hk,khd->hd", new, values[i].float()))
        return torch.stack(out)


def _replace_last(hook: str, values: torch.Tensor, head: int | None = None) -> Change:
    """A change that writes ``values`` [M, ...] (per input) into ``hook`` at the last
    position (one head's slice when ``head`` is given)."""

    def hooks(rows: slice) -> list[Hook]:
        patch = values[rows]

        def fn(value: torch.Tensor, hook: Any) -> torch.Tensor:
            new = patch.to(value.device, value.dtype)
            if head is None:
                value[:, -1] = new
            else:
                value[:, -1, head] = new
            return value

        return [(hook, fn)]

    return Change(hooks=hooks)


# ---------------------------------------------------------------------- repairs


@dataclass(frozen=True)
class PlannedRepair:
    """A repair to run: its cause kind, where, what it does, and the change."""

    cause: str
    target: str
    action: str
    change: Change | None
    layer: int | None = None
    head: int | None = None


def residue_rows(positions: torch.Tensor, trained: int, period: int) -> torch.Tensor:
    """Each position's row when untrained positions (>= ``trained``) are read through the
    largest trained row congruent to them mod ``period`` (the last trained row when the
    period is 1); trained positions keep their own row."""
    beyond = (positions - (trained - 1)).clamp_min(0)
    return positions - period * torch.div(beyond + period - 1, period, rounding_mode="floor")


def shifted_rows(positions: torch.Tensor, trained: int, period: int, prefix: int) -> torch.Tensor:
    """Each position's row when the input is shifted back by the least multiple s of
    ``period`` that brings its last position into the trained range: the last positions keep
    their offsets from the query and their residues; positions before the shift (but a
    prefix, which keeps its rows) take the first rows after the prefix with their residue:
    far from the query, as they are."""
    length = int(positions.shape[0])
    shift = period * math.ceil(max(0, length - trained) / period)
    early = prefix + (positions - prefix) % period
    mapped = torch.where(positions >= shift, positions - shift, early)
    return torch.where(positions < prefix, positions, mapped)


def position_repairs(subject: Subject, period: int, length: int) -> list[PlannedRepair]:
    """Untrained learned absolute positions read through trained rows, two ways (the module
    docstring): each untrained position through the trained row of its residue mod Delta
    (what a model that reads positions mod Delta sees), and the whole input shifted back into
    the trained range (what a model that reads offsets from the query sees). None when the
    model has no learned table or the input stays in the trained range."""
    adapter, model = subject.adapter, subject.model
    trained = adapter.trained_positions or 0
    prefix = len(adapter.prefix)
    last = prefix + length - 1
    table = getattr(getattr(model, "pos_embed", None), "W_pos", None)
    if not adapter.learned_absolute or last < trained or table is None or trained <= prefix:
        return []
    step = period if trained >= period else 1
    residue = (
        f"the largest trained row with the same residue mod Delta={step}"
        if step > 1
        else f"the last trained row ({trained - 1})"
    )
    rules = {
        "residue rows": (
            lambda n: residue_rows(torch.arange(n), trained, step),
            f"positions {trained}..{last} read through {residue}",
        ),
        "shifted rows": (
            lambda n: shifted_rows(torch.arange(n), trained, step, prefix),
            f"the input shifted back by a multiple of Delta={step} so that its last position "
            f"reads a trained row, earlier positions reading the first rows of their residue",
        ),
    }
    planned = []
    for name, (rows_of, action) in rules.items():
        planned.append(
            PlannedRepair(
                POSITIONS, f"position table ({name})", action, _table_rows(table, rows_of)
            )
        )
    return planned


def _table_rows(table: torch.Tensor, rows_of: Callable[[int], torch.Tensor]) -> Change:
    """A change that makes every position read the position-table row ``rows_of(n)`` gives
    it (for inputs of n positions, prefix included)."""

    def hooks(rows: slice) -> list[Hook]:
        def fn(value: torch.Tensor, hook: Any) -> torch.Tensor:
            mapped = rows_of(value.shape[1]).to(table.device)
            return table[mapped].to(value.dtype)[None].expand_as(value).clone()

        return [("hook_pos_embed", fn)]

    return Change(hooks=hooks)


def dilution_repair(layer: int, head: int, trained: int) -> PlannedRepair:
    """Head ``head`` of ``layer`` with its logits at query i multiplied by
    max(1, log(i + 1) / log(trained)), ``trained`` the longest trained position count."""
    base = math.log(max(trained, 2))

    def edit(scores: torch.Tensor, first: int) -> torch.Tensor:
        rows = torch.arange(first, first + scores.shape[2], device=scores.device)
        factor = (torch.log1p(rows.to(scores.dtype)) / base).clamp_min(1.0)
        scores = scores.clone()
        scores[:, head] = scores[:, head] * factor[:, None]
        return scores

    return PlannedRepair(
        DILUTION,
        f"L{layer} head {head}",
        f"logits at query i scaled by max(1, log(i+1)/log({trained}))",
        Change(score_edits=lambda rows: {layer: edit}),
        layer=layer,
        head=head,
    )


def precision_repair(mode: FinitePrecision, margins: Sequence[float], length: int) -> PlannedRepair:
    """The check's p-bit attention with the fewest bits at which no key within any head's
    logit margin rounds to 0 at ``length`` (2^(bits/gamma) > length), and at least 2 p
    (at most `simcheck.settings.attention.MAX_BITS`)."""
    finite = [g for g in margins if math.isfinite(g) and g > 0]
    needed = math.ceil(max(finite) * math.log2(max(length, 2))) + 1 if finite else 0
    bits = min(MAX_BITS, max(2 * mode.bits, needed))
    return PlannedRepair(
        PRECISION,
        "attention precision",
        f"p-bit attention rerun with {bits} bits instead of {mode.bits}",
        Change(mode=FinitePrecision(bits)),
    )


def dilution_heads(
    attention: Mapping[int, Mapping[str, list[float]]],
    attention_at_n: Mapping[int, Mapping[str, list[float]]],
    n_layers: int,
    n_heads: int,
) -> list[tuple[int, int]]:
    """The heads to try the dilution repair on: all of them in a model with at most
    `MAX_DILUTION_HEADS`; otherwise those whose median top weight falls most from N to T."""
    heads = [(layer, head) for layer in range(n_layers) for head in range(n_heads)]
    if len(heads) <= MAX_DILUTION_HEADS:
        return heads

    def drop(pair: tuple[int, int]) -> float:
        layer, head = pair
        at_t = attention.get(layer, {}).get("top")
        at_n = attention_at_n.get(layer, {}).get("top")
        return at_n[head] - at_t[head] if at_t and at_n else -math.inf

    return sorted(heads, key=drop, reverse=True)[:MAX_DILUTION_HEADS]


def run_repairs(planned: Sequence[PlannedRepair], interchange: Interchange) -> list[Repair]:
    """Each planned repair's effect; then, where two or more helped, all of those together."""
    done = []
    helped: list[PlannedRepair] = []
    for plan in planned:
        if plan.change is None:
            done.append(Repair(plan.cause, plan.target, plan.action, None, None))
            continue
        error, gap = interchange.run(plan.change)
        repair = Repair(plan.cause, plan.target, plan.action, error, gap, plan.layer, plan.head)
        done.append(repair)
        if repair.strength > 0:
            helped.append(plan)
    if len(helped) >= 2:
        error, gap = interchange.run(Change.together([p.change for p in helped if p.change]))
        targets = ", ".join(p.target for p in helped)
        done.append(Repair("together", "all repairs that helped", targets, error, gap))
    return done


def plan_repairs(
    subject: Subject,
    mode: AttentionMode,
    period: int,
    length: int,
    attention: Mapping[int, Mapping[str, list[float]]],
    attention_at_n: Mapping[int, Mapping[str, list[float]]],
    named: Sequence[str],
) -> list[PlannedRepair]:
    """The repairs to try at test length ``length``: the position table where the input
    runs past the trained positions, length-scaled logits in each head (`dilution_heads`),
    more bits in finite-precision mode, and the note that witness resolution (when among the
    ``named`` cause kinds) has no repair."""
    assert subject.train_len is not None
    cfg, prefix = subject.model.cfg, len(subject.adapter.prefix)
    planned = []
    planned += position_repairs(subject, period, length)
    trained = subject.train_len + prefix
    for layer, head in dilution_heads(attention, attention_at_n, cfg.n_layers, cfg.n_heads):
        planned.append(dilution_repair(layer, head, trained))
    if isinstance(mode, FinitePrecision):
        margins = [m for summary in attention.values() for m in summary.get("margin", [])]
        planned.append(precision_repair(mode, margins, length + prefix))
    if RESOLUTION in named:
        planned.append(
            PlannedRepair(
                RESOLUTION,
                "witnesses",
                "no repair exists: the witnesses, not the model, fall short (raise N, raise "
                "eps, or add a construction that resolves the statistic)",
                None,
            )
        )
    return planned


# ---------------------------------------------------------------------- forecast


def longer_inputs(
    subject: Subject, tokens: np.ndarray, factor: float, period: int, window: int
) -> Change:
    """The inputs run as if ``factor`` times longer with the same type proportions: in every
    head, log(factor) is added to the logits of the keys whose type (token, position mod
    Delta) occurs more than once outside the local window (`simcheck.checking.forecast` says why
    that
    is exact for softmax attention at the last query); keys of a type met once, the window's
    keys (there are tau + 1 of them at any length), prefix tokens and the query's own key stay
    as they are."""
    model_input = subject.model_input(torch.as_tensor(tokens, dtype=torch.long))
    vocab = int(subject.model.cfg.d_vocab)
    classes = key_classes(model_input, period, window, vocab)
    count = class_count(period, window, vocab)
    counts = torch.zeros(classes.shape[0], count).scatter_add_(
        1, classes, torch.ones_like(classes, dtype=torch.float)
    )
    repeated = counts.gather(1, classes) > 1
    repeated[:, -1] = False  # the query's own key
    shift = math.log(factor) * repeated.float()
    layers = range(subject.model.cfg.n_layers)

    def score_edits(rows: slice) -> Edits:
        added = shift[rows]

        def edit(scores: torch.Tensor, first: int) -> torch.Tensor:
            keys = added[:, None, None, : scores.shape[-1]]
            return scores + keys.to(scores.device, scores.dtype)

        return dict.fromkeys(layers, edit)

    return Change(score_edits=score_edits)


def emulated_quantiles(
    runner: Runner,
    tokens: np.ndarray,
    slack: Callable[[torch.Tensor], np.ndarray],
    delta: float,
    period: int,
    window: int,
    max_factor: int,
) -> tuple[list[float], list[float]]:
    """The slack's delta-quantile on ``tokens`` emulated k times longer (`longer_inputs`),
    for k = 2, 4, ... up to ``max_factor``, stopping at the first k where it reaches 0; then
    the crossing is narrowed by bisection in log2 k (three steps). Returns the factors and
    quantiles, sorted by factor."""
    points: dict[float, float] = {}

    def quantile(factor: float) -> float:
        if factor not in points:
            change = longer_inputs(runner.subject, tokens, factor, period, window)
            raw = runner.raw(tokens, change)
            points[factor] = float(np.quantile(slack(raw), delta))
        return points[factor]

    factor, low = 2.0, 1.0
    while factor <= max_factor and quantile(factor) > 0:
        low, factor = factor, factor * 2
    if factor <= max_factor:
        high = factor
        for _ in range(3):
            middle = 2 ** ((math.log2(low) + math.log2(high)) / 2)
            if quantile(middle) > 0:
                low = middle
            else:
                high = middle
    ordered = sorted(points)
    return ordered, [points[k] for k in ordered]
