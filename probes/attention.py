"""Attention probes: rows, logits, mass per key type, entropy, top weight and logit margin.

All read the attention of the query positions only, [batch, query, head, key] rows handed
over by `simcheck.record`; the summaries (mass, entropy, top weight, margin) have a shape
that does not depend on the input length, so a long input's value can be compared with a
short witness's.

On a ``TransformerBridge`` (TransformerLens 4.x, also shipped by 3.9) ``hook_attn_scores``
carries a copy of the pattern for architectures wrapped by the generic attention bridge
(OPT, GPT-Neo, ...), so `AttentionLogits` (and `LogitMargin`) rebuild the logits from
``hook_q`` and ``hook_k`` (q k^T / sqrt(d_head), causally masked) on every model that is not
a ``HookedTransformer``. Pass ``rebuild=True`` to use that path on any model without ALiBi or
a local bias (see docs/transformer_lens_4.md for measured differences).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F

from simcheck.errors import SimcheckError
from simcheck.probes.logit_gaps import TIE_TOL, top_gap
from simcheck.settings.model import model_period, model_window

from .base import Probe, ProbeContext, is_hooked_transformer

MassKind = Literal["token", "residue", "type", "window"]


@dataclass(frozen=True)
class _AttentionProbe(Probe):
    layer: int
    per_head: ClassVar[bool] = True
    label: ClassVar[str] = "attn"

    @property
    def name(self) -> str:
        return f"{self.label}.L{self.layer}"

    @property
    def depth(self) -> float:
        return self.layer + 0.2

    def hook_names(self, model: Any) -> list[str]:
        self._check_layer(model, self.layer)
        return [f"blocks.{self.layer}.attn.hook_pattern"]


@dataclass(frozen=True)
class AttentionRow(_AttentionProbe):
    """The attention weights of the query positions over all keys, every head:
    [batch, query, head, key]."""

    comparable: ClassVar[bool] = False
    label: ClassVar[str] = "attn_row"


def _rebuilt_logits(q: torch.Tensor, k: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
    """q k^T / sqrt(d_head) for q [batch, query, head, d] and k [batch, key, kv_head, d], with
    keys after each query masked to -inf: [batch, query, head, key]. With grouped-query
    attention (fewer key heads than query heads) each key head serves its group of query
    heads, as TransformerLens repeats it."""
    if k.shape[2] != q.shape[2]:
        k = k.repeat_interleave(q.shape[2] // k.shape[2], dim=2)
    scores = torch.einsum("bqhd,bkhd->bqhk", q, k) / math.sqrt(q.shape[-1])
    keys = torch.arange(k.shape[1], device=k.device)
    future = keys[None, :] > query.to(k.device)[:, None]  # [query, key]
    return scores.masked_fill(future[None, :, None, :], -math.inf)


@dataclass(frozen=True)
class AttentionLogits(_AttentionProbe):
    """The pre-softmax attention logits of the query positions, masked keys -inf:
    [batch, query, head, key]. In finite-precision mode these are the logits before the
    log n scaling."""

    rebuild: bool = False
    comparable: ClassVar[bool] = False
    label: ClassVar[str] = "attn_logits"

    @property
    def name(self) -> str:
        return f"{self.label}{'_qk' if self.rebuild else ''}.L{self.layer}"

    def _rebuilds(self, model: Any) -> bool:
        return self.rebuild or not is_hooked_transformer(model)

    def hook_names(self, model: Any) -> list[str]:
        self._check_layer(model, self.layer)
        if self._rebuilds(model):
            spec = getattr(model, "simcheck_spec", None)
            if model.cfg.positional_embedding_type == "alibi" or (
                spec is not None and spec.locality is not None
            ):
                raise SimcheckError(
                    f"{self.name}: rebuilding logits from hook_q and hook_k would miss this "
                    "model's ALiBi or local attention bias; use rebuild=False"
                )
            rot = "rot_" if model.cfg.positional_embedding_type == "rotary" else ""
            return [f"blocks.{self.layer}.attn.hook_{rot}{x}" for x in ("q", "k")]
        return [f"blocks.{self.layer}.attn.hook_attn_scores"]

    def finalize(self, captured: dict[str, torch.Tensor], context: ProbeContext) -> torch.Tensor:
        if len(captured) == 1:
            (scores,) = captured.values()
            return scores
        q, k = captured.values()  # in the order of hook_names
        return _rebuilt_logits(q, k, context.query)


@dataclass(frozen=True)
class LogitMargin(AttentionLogits):
    """The gap below the top logit of each query row, [batch, query, head]:
    `simcheck.probes.logit_gaps.top_gap` with its default ``tie_tol`` = 1e-6 (sorted logits whose
    steps are at most 1e-6 form one cluster, single linkage; the margin is the step from the
    top cluster down to the next logit); +inf when every visible key is in the top cluster.
    Attention is hard once log(n) * margin > bits * log 2."""

    comparable: ClassVar[bool] = True
    diagnostic: ClassVar[bool] = True
    label: ClassVar[str] = "logit_margin"

    def finalize(self, captured: dict[str, torch.Tensor], context: ProbeContext) -> torch.Tensor:
        return top_gap(super().finalize(captured, context), TIE_TOL)


@dataclass(frozen=True)
class AttentionEntropy(_AttentionProbe):
    """Entropy (nats) of each query row's attention weights: [batch, query, head]. Grows
    like log T when a head spreads over a growing set of keys (dilution)."""

    diagnostic: ClassVar[bool] = True
    label: ClassVar[str] = "attn_entropy"

    def capture(self, hook_name: str, value: torch.Tensor, context: ProbeContext) -> torch.Tensor:
        logs = torch.where(value > 0, value.clamp_min(1e-30).log(), torch.zeros_like(value))
        return -(value * logs).sum(-1)


@dataclass(frozen=True)
class TopWeight(_AttentionProbe):
    """The largest attention weight of each query row: [batch, query, head]."""

    diagnostic: ClassVar[bool] = True
    label: ClassVar[str] = "attn_top"

    def capture(self, hook_name: str, value: torch.Tensor, context: ProbeContext) -> torch.Tensor:
        return value.amax(dim=-1)


@dataclass(frozen=True)
class AttentionMass(_AttentionProbe):
    """Attention mass of each query row per key type: [batch, query, head, types].

    ``by``:
        ``token``: per key token id (types = vocabulary size);
        ``residue``: per key position mod ``period`` (types = period);
        ``type``: per (token, position mod period), index token * period + residue;
        ``window``: inside the local window (query - key <= ``window``) and outside (2 types).
    ``period`` and ``window`` default to the model's (its `ModelSpec`), else 1 and 0.
    """

    by: MassKind = "type"
    period: int | None = None
    window: int | None = None

    @property
    def name(self) -> str:
        suffix = ""
        if self.period is not None and self.by in ("residue", "type"):
            suffix = f".period={self.period}"
        if self.window is not None and self.by == "window":
            suffix = f".window={self.window}"
        return f"attn_mass_{self.by}.L{self.layer}{suffix}"

    def hook_names(self, model: Any) -> list[str]:
        if self.by not in ("token", "residue", "type", "window"):
            raise SimcheckError(
                f"AttentionMass by='{self.by}' is unknown; use token, residue, type or window"
            )
        return super().hook_names(model)

    def _period(self, model: Any) -> int:
        if self.period is not None:
            return self.period
        return model_period(model)

    def _window(self, model: Any) -> int:
        if self.window is not None:
            return self.window
        return model_window(model)

    def capture(self, hook_name: str, value: torch.Tensor, context: ProbeContext) -> torch.Tensor:
        tokens, length = context.tokens.to(value.device), value.shape[-1]
        keys = torch.arange(length, device=value.device)
        if self.by == "window":
            offset = context.query.to(value.device)[:, None] - keys[None, :]  # [query, key]
            inside = (offset <= self._window(context.model)).to(value.dtype)
            mass_in = torch.einsum("bqhk,qk->bqh", value, inside)
            return torch.stack([mass_in, value.sum(-1) - mass_in], dim=-1)
        period, vocab = self._period(context.model), context.model.cfg.d_vocab
        residue = keys % period
        if self.by == "residue":
            index, types = residue.expand_as(tokens), period
        elif self.by == "token":
            index, types = tokens, vocab
        else:
            index, types = tokens * period + residue, vocab * period
        one_hot = F.one_hot(index, types).to(value.dtype)  # [batch, key, types]
        return torch.einsum("bqhk,bkt->bqht", value, one_hot)
