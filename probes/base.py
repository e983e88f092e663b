"""Probes: read one internal quantity of a model at chosen query positions.

A probe names the hook points it needs (`hook_names`) and, inside each hook, keeps only the
slice it needs (`capture`): the rows of the query positions, never the full T x T attention
pattern. `read_probes` runs one forward pass with exactly those hooks and returns, per
probe, a tensor whose second axis runs over the query positions.

Write your own probe by subclassing `Probe`::

    @dataclass(frozen=True)
    class MlpOut(Probe):
        layer: int
        def hook_names(self, model):
            return [f"blocks.{self.layer}.hook_mlp_out"]
        def capture(self, hook_name, value, positions):
            return value[:, positions]            # [batch, query, d_model]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from transformer_lens import HookedTransformer

from simcheck.errors import SimcheckError


@dataclass(frozen=True)
class Probe:
    """Base class: one internal quantity at the query positions."""

    @property
    def name(self) -> str:
        """A readable key, unique per probe: the class name and its field values."""
        fields = "".join(f".{key}={value}" for key, value in vars(self).items())
        return type(self).__name__.lower() + fields

    def hook_names(self, model: HookedTransformer) -> list[str]:
        """The hook points this probe reads."""
        raise NotImplementedError

    def capture(self, hook_name: str, value: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Called inside the hook: return the (small) part of ``value`` to keep."""
        raise NotImplementedError

    def finalize(self, captured: dict[str, torch.Tensor], model: HookedTransformer) -> torch.Tensor:
        """Turn what `capture` kept into the probe's value; by default the single capture."""
        (value,) = captured.values()
        return value

    def _check_layer(self, model: HookedTransformer, layer: int) -> None:
        if not 0 <= layer < model.cfg.n_layers:
            raise SimcheckError(
                f"{self.name}: layer {layer} does not exist; the model has layers "
                f"0..{model.cfg.n_layers - 1}"
            )


@dataclass(frozen=True)
class Residual(Probe):
    """The residual stream at a layer: ``pre`` (its input), ``mid`` (after attention) or
    ``post`` (its output). Shape [batch, query, d_model]."""

    layer: int
    point: Literal["pre", "mid", "post"] = "post"

    @property
    def name(self) -> str:
        return f"resid_{self.point}.L{self.layer}"

    def hook_names(self, model: HookedTransformer) -> list[str]:
        self._check_layer(model, self.layer)
        return [f"blocks.{self.layer}.hook_resid_{self.point}"]

    def capture(self, hook_name: str, value: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        return value[:, positions]


@dataclass(frozen=True)
class AttentionRow(Probe):
    """The attention weights of the query positions over all keys, every head:
    [batch, query, head, key]."""

    layer: int

    @property
    def name(self) -> str:
        return f"attn_row.L{self.layer}"

    def hook_names(self, model: HookedTransformer) -> list[str]:
        self._check_layer(model, self.layer)
        return [f"blocks.{self.layer}.attn.hook_pattern"]

    def capture(self, hook_name: str, value: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        return value[:, :, positions].transpose(1, 2)


@dataclass(frozen=True)
class AttentionLogits(AttentionRow):
    """The pre-softmax attention logits of the query positions (masked keys are -inf):
    [batch, query, head, key]."""

    @property
    def name(self) -> str:
        return f"attn_logits.L{self.layer}"

    def hook_names(self, model: HookedTransformer) -> list[str]:
        self._check_layer(model, self.layer)
        return [f"blocks.{self.layer}.attn.hook_attn_scores"]


@dataclass(frozen=True)
class HeadOutput(Probe):
    """Each head's contribution to the residual stream, z_h W_O[h]:
    [batch, query, head, d_model] (the attention bias b_O is not included)."""

    layer: int

    @property
    def name(self) -> str:
        return f"head_out.L{self.layer}"

    def hook_names(self, model: HookedTransformer) -> list[str]:
        self._check_layer(model, self.layer)
        return [f"blocks.{self.layer}.attn.hook_z"]

    def capture(self, hook_name: str, value: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        return value[:, positions]

    def finalize(self, captured: dict[str, torch.Tensor], model: HookedTransformer) -> torch.Tensor:
        (z,) = captured.values()  # [batch, query, head, d_head]
        w_o = model.blocks[self.layer].attn.W_O  # [head, d_head, d_model]
        return torch.einsum("bqhd,hdm->bqhm", z, w_o)


@dataclass(frozen=True)
class Output(Probe):
    """The model's raw output (logits, or the regression value) at the query positions:
    [batch, query, d_vocab_out]."""

    @property
    def name(self) -> str:
        return "output"

    def hook_names(self, model: HookedTransformer) -> list[str]:
        return ["unembed.hook_out"]

    def capture(self, hook_name: str, value: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        return value[:, positions]


def _positions(length: int, positions: Sequence[int]) -> torch.Tensor:
    resolved = [p + length if p < 0 else p for p in positions]
    bad = [p for p, r in zip(positions, resolved, strict=True) if not 0 <= r < length]
    if bad or not resolved:
        raise SimcheckError(
            f"query positions {bad or list(positions)} are not in an input of length {length}; "
            "use 0..length-1 or negative indices such as -1 for the last position"
        )
    return torch.tensor(resolved)


@torch.no_grad()
def read_probes(
    model: HookedTransformer,
    tokens: torch.Tensor,
    probes: Sequence[Probe],
    positions: Sequence[int] = (-1,),
) -> dict[str, torch.Tensor]:
    """Run ``model`` once on ``tokens`` [batch, length] and return each probe's value at the
    query ``positions`` (default: the last), keyed by ``probe.name``: ``resid_post.L0``,
    ``attn_row.L1``, ``output``, ..."""
    names = [probe.name for probe in probes]
    if len(set(names)) != len(names):
        raise SimcheckError(f"probes must be distinct, got {names}")
    query = _positions(tokens.shape[-1], positions)
    captured: dict[str, dict[str, torch.Tensor]] = {name: {} for name in names}
    hooks = []
    for probe in probes:
        for hook_name in probe.hook_names(model):

            def hook(value: torch.Tensor, hook, probe: Probe = probe) -> None:
                captured[probe.name][hook.name] = probe.capture(hook.name, value, query).clone()

            hooks.append((hook_name, hook))
    model.run_with_hooks(tokens, fwd_hooks=hooks)
    return {probe.name: probe.finalize(captured[probe.name], model) for probe in probes}
