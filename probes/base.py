"""Probes: read one internal quantity of a model at chosen query positions.

A probe names the hook points it needs (`Probe.hook_names`); `simcheck.record` runs the
model with exactly those hooks and hands each probe the values already cut down to the query
positions, so a probe never holds the full T x T attention pattern:

- query-indexed values (residual stream, ``hook_q``, ``hook_z``, outputs) arrive as
  [batch, query, ...];
- attention scores and weights (``hook_attn_scores``, ``hook_pattern``) arrive as
  [batch, query, head, key], the rows of the query positions;
- key-indexed values (``hook_k``, ``hook_v``) arrive whole, [batch, key, ...].

Write your own probe in a few lines::

    @dataclass(frozen=True)
    class MlpOut(Probe):
        layer: int
        def hook_names(self, model):
            return [f"blocks.{self.layer}.hook_mlp_out"]

`capture` (called inside the hook, default: keep the value) and `finalize` (called once per
batch with everything captured, default: the single captured value) can be overridden; both
see a `ProbeContext` with the model, the batch's tokens and the query positions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch

from simcheck.errors import SimcheckError

KEY_INDEXED_HOOKS = ("attn.hook_k", "attn.hook_v", "attn.hook_rot_k")
"""Hook names (suffixes) whose values are kept whole: they are indexed by key position."""
ATTENTION_HOOKS = ("attn.hook_attn_scores", "attn.hook_pattern")
"""Hook names (suffixes) whose values are [batch, head, query, key] attention tensors."""


def is_hooked_transformer(model: Any) -> bool:
    """Whether ``model`` is a TransformerLens 3.x ``HookedTransformer`` (checked by class name,
    so this module imports under TransformerLens 4.x too)."""
    return any(cls.__name__ == "HookedTransformer" for cls in type(model).__mro__)


@dataclass(frozen=True)
class ProbeContext:
    """What a probe may need beside the hooked value: the model, the batch's tokens
    [batch, length], the query positions [query] (non-negative) and the attention mode."""

    model: Any
    tokens: torch.Tensor
    query: torch.Tensor
    attention: Any = "softmax"


@dataclass(frozen=True)
class Probe:
    """Base class: one internal quantity at the query positions.

    Class attributes:
        comparable: the value's shape does not depend on the input length, so states of a
            long input and of a short witness can be compared (attention rows cannot).
        per_head: axis 2 of the value runs over attention heads.
        diagnostic: the value summarises how attention behaves (entropy, top weight,
            margin) and changes with length by design (a uniform average over n keys has
            entropy log n); the check records it for the diagnosis but does not compare it
            with witnesses.
    """

    comparable: ClassVar[bool] = True
    per_head: ClassVar[bool] = False
    diagnostic: ClassVar[bool] = False

    @property
    def name(self) -> str:
        """A readable key, unique per probe: the class name and its field values."""
        fields = "".join(f".{key}={value}" for key, value in vars(self).items())
        return type(self).__name__.lower() + fields

    @property
    def depth(self) -> float:
        """Where in the forward pass the quantity lives (for ordering a diagnosis): the layer,
        plus a fraction for the point within it; -1 before the first layer."""
        return float(getattr(self, "layer", -1))

    def hook_names(self, model: Any) -> list[str]:
        """The hook points this probe reads."""
        raise NotImplementedError(f"{type(self).__name__} must implement hook_names()")

    def capture(self, hook_name: str, value: torch.Tensor, context: ProbeContext) -> torch.Tensor:
        """Called inside the hook with the query-sliced value; return the part to keep."""
        return value

    def finalize(self, captured: dict[str, torch.Tensor], context: ProbeContext) -> torch.Tensor:
        """Turn what `capture` kept (by hook name) into the probe's value
        [batch, query, ...]; by default the single capture."""
        (value,) = captured.values()
        return value

    def _check_layer(self, model: Any, layer: int) -> None:
        if not 0 <= layer < model.cfg.n_layers:
            raise SimcheckError(
                f"{self.name}: layer {layer} does not exist; the model has layers "
                f"0..{model.cfg.n_layers - 1}"
            )


_POINT_DEPTH = {"pre": 0.0, "mid": 0.5, "post": 0.9}


@dataclass(frozen=True)
class Residual(Probe):
    """The residual stream at a layer: ``pre`` (its input), ``mid`` (after attention) or
    ``post`` (its output). Shape [batch, query, d_model]."""

    layer: int
    point: Literal["pre", "mid", "post"] = "post"

    @property
    def name(self) -> str:
        return f"resid_{self.point}.L{self.layer}"

    @property
    def depth(self) -> float:
        return self.layer + _POINT_DEPTH[self.point]

    def hook_names(self, model: Any) -> list[str]:
        self._check_layer(model, self.layer)
        if self.point not in _POINT_DEPTH:
            raise SimcheckError(f"residual point must be pre, mid or post, got '{self.point}'")
        return [f"blocks.{self.layer}.hook_resid_{self.point}"]


@dataclass(frozen=True)
class HeadOutput(Probe):
    """Each head's contribution to the residual stream, z_h W_O[h]:
    [batch, query, head, d_model] (the attention bias b_O is not included)."""

    layer: int
    per_head: ClassVar[bool] = True

    @property
    def name(self) -> str:
        return f"head_out.L{self.layer}"

    @property
    def depth(self) -> float:
        return self.layer + 0.4

    def hook_names(self, model: Any) -> list[str]:
        self._check_layer(model, self.layer)
        return [f"blocks.{self.layer}.attn.hook_z"]

    def finalize(self, captured: dict[str, torch.Tensor], context: ProbeContext) -> torch.Tensor:
        (z,) = captured.values()  # [batch, query, head, d_head]
        w_o = context.model.blocks[self.layer].attn.W_O  # [head, d_head, d_model]
        return torch.einsum("bqhd,hdm->bqhm", z, w_o)


@dataclass(frozen=True)
class Output(Probe):
    """The model's raw output (logits, or the regression value) at the query positions:
    [batch, query, d_vocab_out], or only the output ids in ``select``, in that order
    ([batch, query, len(select)]): the logits that answer a task (see
    `simcheck.model.subject.ModelAdapter.outputs`)."""

    select: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.select is not None:
            object.__setattr__(self, "select", tuple(int(i) for i in self.select))

    @property
    def name(self) -> str:
        return "output"

    @property
    def depth(self) -> float:
        return 1e9

    def hook_names(self, model: Any) -> list[str]:
        return ["unembed.hook_out"]

    def capture(self, hook_name: str, value: torch.Tensor, context: ProbeContext) -> torch.Tensor:
        if self.select is None:
            return value
        return value[..., list(self.select)]
