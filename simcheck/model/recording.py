"""`record`: run a model on inputs and keep what the probes ask for, at the query positions.

Two engines, the same results:

- **chunked** (any simcheck model and plain causal TransformerLens models): every attention
  layer runs block by block of query rows against only the keys they can see, so memory is
  linear in the input length T; the deepest layer a probe needs computes only the query
  rows, and layers past it are not run at all. Finite-precision attention is available here.
  In softmax mode a layer whose attention scores and weights (``ATTENTION_HOOKS``) no probe
  reads runs through ``scaled_dot_product_attention`` instead of explicit rows: faster, and
  (without ALiBi or a local bias) with no T x T block at all.
- **hooks** (other models, e.g. a TransformerLens 4.x ``TransformerBridge``): one
  ``run_with_hooks`` pass per batch; each hook slices its value to the query positions at
  once, but the model itself still builds full T x T attention.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from simcheck._util.progress import progress_bar
from simcheck.errors import SimcheckError
from simcheck.model.chunked import (
    AttentionMode,
    attention_name,
    chunked_attention,
    parse_attention,
    supports_chunked_attention,
)
from simcheck.model.inputs import check_input_length, check_token_ids
from simcheck.probes import Probe, ProbeContext
from simcheck.probes.base import ATTENTION_HOOKS, KEY_INDEXED_HOOKS

TOKEN_BUDGET = 1 << 17
"""Tokens per forward pass (batch x length) when no batch size is given."""

_LAYER = re.compile(r"^blocks\.(\d+)\.")


@dataclass
class Recording:
    """Probed states of a batch of inputs of one length.

    ``states[probe.name]`` is a tensor [batch, query, ...]; ``recording["output"]`` works too.
    """

    states: dict[str, torch.Tensor]
    probes: tuple[Probe, ...]
    positions: tuple[int, ...]
    length: int
    attention: str = "softmax"
    meta: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, name: str) -> torch.Tensor:
        try:
            return self.states[name]
        except KeyError:
            raise KeyError(f"no probe named '{name}'; recorded: {sorted(self.states)}") from None

    def keys(self) -> list[str]:
        return list(self.states)

    def __repr__(self) -> str:
        shapes = ", ".join(f"{k}: {tuple(v.shape)}" for k, v in self.states.items())
        return f"Recording(length={self.length}, positions={self.positions}, {shapes})"


def as_tokens(tokens: Any) -> torch.Tensor:
    """Token ids as a LongTensor [batch, length] from a tensor, array or nested list."""
    tensor = torch.as_tensor(np.asarray(tokens) if isinstance(tokens, list) else tokens)
    if tensor.dim() == 1:
        tensor = tensor.unsqueeze(0)
    # shape first: an empty list arrives as float64, and its problem is emptiness, not dtype
    if tensor.dim() != 2 or tensor.numel() == 0:
        raise SimcheckError(
            "tokens must have shape [batch, length] with batch >= 1 and length >= 1, got "
            f"{tuple(tensor.shape)}"
        )
    if tensor.dtype.is_floating_point or tensor.dtype == torch.bool:
        raise SimcheckError(f"tokens must be integer ids, got dtype {tensor.dtype}")
    return tensor.long()


def query_positions(length: int, positions: Sequence[int]) -> torch.Tensor:
    """Resolve (possibly negative) query positions in an input of ``length`` tokens."""
    resolved = [p + length if p < 0 else p for p in positions]
    bad = [p for p, r in zip(positions, resolved, strict=True) if not 0 <= r < length]
    if bad or not resolved or len(set(resolved)) != len(resolved):
        raise SimcheckError(
            f"query positions {list(positions)} are not distinct positions of an input of "
            f"length {length}; use 0..{length - 1} or negative indices such as -1 for the last"
        )
    return torch.tensor(resolved)


def _hook_layer(name: str, n_layers: int) -> int:
    """The block a hook lives in: -1 for embeddings, n_layers for the final norm/unembed."""
    match = _LAYER.match(name)
    if match:
        return int(match.group(1))
    return (
        -1 if name.startswith(("hook_embed", "hook_pos_embed", "embed", "pos_embed")) else n_layers
    )


def _attention_key(hook_name: str, n_layers: int) -> tuple[int, str]:
    """(layer, kind) of an attention hook, kind ``attn.hook_pattern`` or
    ``attn.hook_attn_scores``: where the chunked engine collects its query rows."""
    kind = "attn.hook_pattern" if hook_name.endswith("hook_pattern") else "attn.hook_attn_scores"
    return _hook_layer(hook_name, n_layers), kind


def _runs(positions: list[int]) -> list[tuple[int, int]]:
    """Sorted positions as [first, stop) runs of consecutive integers."""
    runs: list[tuple[int, int]] = []
    for p in sorted(positions):
        if runs and runs[-1][1] == p:
            runs[-1] = (runs[-1][0], p + 1)
        else:
            runs.append((p, p + 1))
    return runs


class _Batch:
    """One forward pass: routes every hooked value, cut to the query rows, to its probes."""

    def __init__(self, probes: Sequence[Probe], context: ProbeContext) -> None:
        self.probes, self.context = probes, context
        self.captured: dict[str, dict[str, torch.Tensor]] = {p.name: {} for p in probes}
        self.query = context.query
        self.positions = [int(q) for q in context.query]  # ints: no device sync per block
        self.rows: dict[tuple[int, str], torch.Tensor] = {}  # attention rows being filled

    def keep(self, probe: Probe, hook_name: str, value: torch.Tensor) -> None:
        self.captured[probe.name][hook_name] = probe.capture(hook_name, value, self.context).clone()

    def sliced(self, hook_name: str, value: torch.Tensor) -> torch.Tensor:
        if hook_name.endswith(KEY_INDEXED_HOOKS):
            return value
        if hook_name.endswith(ATTENTION_HOOKS):
            return value[:, :, self.query].transpose(1, 2)
        return value[:, self.query]

    def on_rows(
        self, layer: int, first: int, stop: int, scores: torch.Tensor, weights: torch.Tensor
    ) -> None:
        """Chunked engine callback: copy the query rows of one block of attention."""
        inside = [(i, p) for i, p in enumerate(self.positions) if first <= p < stop]
        if not inside:
            return
        for kind, block in (("attn.hook_attn_scores", scores), ("attn.hook_pattern", weights)):
            key = (layer, kind)
            if key not in self.rows:
                continue
            for index, position in inside:
                self.rows[key][:, index, :, :stop] = block[:, :, position - first]

    def values(self) -> dict[str, torch.Tensor]:
        return {p.name: p.finalize(self.captured[p.name], self.context) for p in self.probes}


@torch.no_grad()
def record(
    model: Any,
    tokens: Any,
    probes: Sequence[Probe],
    positions: Sequence[int] = (-1,),
    attention: AttentionMode = "softmax",
    batch_size: int | None = None,
    progress: bool = False,
) -> Recording:
    """Run ``model`` on ``tokens`` [batch, length] and
    return each probe's value at the query ``positions`` (default: the last), batched so
    memory stays bounded. The tokens go to the model as given (a `Subject`'s
    ``model_input`` puts an adapter's prefix in front).

    ``attention`` is ``"softmax"`` (the model as trained) or ``"hardmax[:bits]"`` /
    `FinitePrecision` (the paper's finite-precision attention). Inputs longer than the model
    can take raise `LengthError`; token ids outside its vocabulary raise `TokenError`.
    """
    if not isinstance(model, torch.nn.Module):
        raise SimcheckError(
            f"record needs a model, got {type(model).__name__}; simcheck.record also takes a "
            "run or a run directory"
        )
    tokens = as_tokens(tokens)
    length = tokens.shape[1]
    probes = list(probes)
    names = [p.name for p in probes]
    if not probes or len(set(names)) != len(names):
        raise SimcheckError(f"record needs at least one probe and distinct probes, got {names}")
    check_input_length(model, length)
    check_token_ids(model, tokens)
    mode = parse_attention(attention)
    query = query_positions(length, positions)
    chunked = supports_chunked_attention(model)
    if not chunked and mode != "softmax":
        raise SimcheckError(
            "finite-precision attention needs a model whose attention simcheck can compute "
            "(a plain causal HookedTransformer); record this model with attention='softmax'"
        )
    wanted = [(p, h) for p in probes for h in p.hook_names(model)]
    n_layers = model.cfg.n_layers
    deepest = max(_hook_layer(h, n_layers) for _, h in wanted)
    size = batch_size or max(1, TOKEN_BUDGET // length)
    outputs: dict[str, list[torch.Tensor]] = {name: [] for name in names}
    batches = tokens.split(size)
    device = _device(model)
    for chunk in progress_bar(
        batches, desc=f"record T={length}", disable=not progress or len(batches) < 2
    ):
        chunk = chunk.to(device)
        context = ProbeContext(model, chunk, query.to(device), mode)
        batch = _Batch(probes, context)
        if chunked:
            _run_chunked(model, chunk, batch, wanted, deepest, mode)
        else:
            hooks = [(h, _hook_fn(batch, p, h)) for p, h in wanted]
            model.run_with_hooks(chunk, fwd_hooks=hooks)
        for name, value in batch.values().items():
            outputs[name].append(value)
    states = {name: torch.cat(values) for name, values in outputs.items()}
    return Recording(
        states, tuple(probes), tuple(int(q) for q in query), length, attention_name(mode)
    )


def _device(model: Any) -> torch.device:
    """Where the model's (first) weights live: inputs, query positions and the probe values
    go there too, so probes never mix devices."""
    weight = next(model.parameters(), None)
    return weight.device if weight is not None else torch.device("cpu")


def _hook_fn(batch: _Batch, probe: Probe, name: str):
    """A hook that keeps the query slice of its value for ``probe`` under ``name``, the name
    the probe asked for (a 4.x bridge reports internal names such as
    ``blocks.0.attn.k.hook_out`` for ``blocks.0.attn.hook_k``)."""

    def hook(value: torch.Tensor, hook: Any) -> None:
        batch.keep(probe, name, batch.sliced(name, value))

    return hook


def _run_chunked(
    model: Any,
    tokens: torch.Tensor,
    batch: _Batch,
    wanted: list[tuple[Probe, str]],
    deepest: int,
    mode: AttentionMode,
) -> None:
    n_layers = model.cfg.n_layers
    last = min(deepest, n_layers - 1)
    query_runs = _runs(batch.positions)
    heads, length = model.cfg.n_heads, tokens.shape[1]
    hooks = []
    for probe, hook_name in wanted:
        if hook_name.endswith(ATTENTION_HOOKS):
            key = _attention_key(hook_name, n_layers)
            if key not in batch.rows:
                fill = 0.0 if key[1] == "attn.hook_pattern" else float("-inf")
                shape = (tokens.shape[0], len(batch.query), heads, length)
                batch.rows[key] = torch.full(shape, fill, device=tokens.device)
        else:
            hooks.append((hook_name, _hook_fn(batch, probe, hook_name)))

    def rows_for(layer: int, n: int) -> list[tuple[int, int]]:
        return query_runs if layer == last else [(0, n)]

    stop = None if deepest >= n_layers else max(deepest, 0) + 1
    # layers whose attention rows no probe reads run fused (softmax mode only)
    fused = set(range(n_layers)) - {layer for layer, _ in batch.rows}
    with chunked_attention(
        model, rows_for, mode, batch.on_rows, fused_layers=fused, read_rows=query_runs
    ):
        model.run_with_hooks(tokens, fwd_hooks=hooks, stop_at_layer=stop)
    for probe, hook_name in wanted:
        if hook_name.endswith(ATTENTION_HOOKS):
            batch.keep(probe, hook_name, batch.rows[_attention_key(hook_name, n_layers)])
