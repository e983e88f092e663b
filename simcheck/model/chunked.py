"""Attention computed query block by query block, in softmax or finite-precision mode.

TransformerLens materialises every layer's T x T score and pattern tensors, so a forward pass
at T = 16384 needs gigabytes per head. `chunked_attention` replaces an attention module's
``forward`` with one that computes the same thing a block of query rows at a time, against
only the keys those rows can see (keys <= query), so memory grows linearly in T. It hands
the score and weight rows of the positions a probe asks for to a callback, and skips rows
nobody needs (the last layer computed only needs the query positions). Grouped-query
attention is computed as TransformerLens computes it: each of the n_key_value_heads key and
value heads serves its group of consecutive query heads (`_shared_heads`); shortformer
positions arrive already added to the query and key inputs.

In softmax mode a layer whose score and weight rows nobody reads (``fused_layers``) skips the
explicit rows: `_fused_rows` hands them to ``torch.nn.functional.scaled_dot_product_attention``
with the same q, k, v (rotated, keys and values shared per group), scale 1 / ``attn_scale``
and causal mask, and ``hook_z`` sees the same z. Rows 0..n-1 of a layer without a score bias
go in one causal call, with no T x T tensor at all; ALiBi and the local bias become an
additive mask built per block of query rows (the explicit path's memory, one fused kernel).

Attention modes:

- ``"softmax"``: the model's own attention.
- `FinitePrecision(bits)` (``"hardmax"``): the paper's p-bit model (Section 4). The logits
  of query i are multiplied by log(n) with n = i + 1, the length of the prefix the query
  sees (at the last position n is the input length); each key's unnormalised weight
  exp(scaled logit - max) is rounded to 0 when it is below 2^-bits; the rest are
  normalised. A local attention bias enters that logit at unit scale (the log(i + 1) scale
  of a ``local_scale="log"`` model belongs to the infinite-precision model of Section 5, and
  log n already scales the whole logit here). A key whose logit is gamma below the maximum
  gets weight n^-gamma, so once
  n > 2^(bits/gamma) the attention is exactly a uniform average over the keys attaining
  the maximum logit: hard attention.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import einops
import torch
import torch.nn.functional as F

from simcheck.errors import SimcheckError
from simcheck.settings.attention import AttentionMode, FinitePrecision
from simcheck.settings.attention import attention_name as attention_name
from simcheck.settings.attention import parse_attention as parse_attention

try:
    from transformer_lens import HookedTransformer
    from transformer_lens.components.abstract_attention import AbstractAttention
except ImportError:  # TransformerLens 4.x: no HookedTransformer, only the hooks engine runs
    HookedTransformer = AbstractAttention = None

SCORE_BUDGET = 1 << 24
"""Elements of one block of attention scores (batch x heads x rows x keys): 64 MiB."""


def attention_weights(
    scores: torch.Tensor, query_pos: torch.Tensor, mode: AttentionMode
) -> torch.Tensor:
    """Weights from logits [batch, head, rows, keys] (masked keys -inf) of the queries at
    ``query_pos`` [rows]."""
    if mode == "softmax":
        weights = F.softmax(scores, dim=-1)
        return torch.nan_to_num(weights, nan=0.0)
    assert isinstance(mode, FinitePrecision)
    scale = torch.log1p(query_pos.to(scores.dtype))[:, None]  # log n, n = i + 1
    finite = torch.isfinite(scores)
    scaled = torch.where(finite, scores * scale, torch.full_like(scores, -math.inf))
    top = scaled.amax(dim=-1, keepdim=True)
    relative = torch.exp(scaled - top)
    relative = torch.where(relative < 2.0**-mode.bits, torch.zeros_like(relative), relative)
    return relative / relative.sum(dim=-1, keepdim=True)


RowsCallback = Callable[[int, int, int, torch.Tensor, torch.Tensor], None]
"""Called as ``(layer, first_row, stop_row, scores, weights)`` with the [batch, head, rows,
keys <= stop_row] blocks of one attention computation."""
ScoreEdit = Callable[[torch.Tensor, int], torch.Tensor]
"""Called as ``edit(scores, first_row)`` with a [batch, head, rows, keys <= stop_row] block of
logits (biases added, future keys not yet masked) whose rows are the queries ``first_row,
first_row + 1, ...``; returns the logits to use instead: an intervention on the model's
attention (`simcheck.checking.interventions`)."""


def _alibi_bias(attn: Any, first: int, stop: int) -> torch.Tensor:
    """ALiBi's bias -m_h (i - j) for query rows first..stop-1 and keys 0..stop-1."""
    slopes = AbstractAttention.create_alibi_multipliers(attn.cfg.n_heads, attn.W_Q.device)
    rows = torch.arange(first, stop, device=slopes.device)[:, None]
    keys = torch.arange(stop, device=slopes.device)[None, :]
    return -(rows - keys).clamp_min(0).to(slopes.dtype) * slopes[:, None, None]


def _shared_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """Keys or values [batch, pos, kv_heads, d_head] expanded to the ``heads`` query heads.

    TransformerLens's `GroupedQueryAttention` keeps n_key_value_heads key and value heads
    (``hook_k``, ``hook_v`` and ``hook_rot_k`` see that many) and repeats each for
    n_heads / n_key_value_heads consecutive query heads (``torch.repeat_interleave`` on the
    head axis) in ``calculate_attention_scores`` and ``calculate_z_scores``; this is that
    repetition. Plain attention, and GQA with ``ungroup_grouped_query_attention``, already
    have one key head per query head and pass through unchanged."""
    kv_heads = x.shape[2]
    if kv_heads == heads:
        return x
    if heads % kv_heads:
        raise SimcheckError(f"{heads} query heads cannot share {kv_heads} key/value heads")
    return torch.repeat_interleave(x, heads // kv_heads, dim=2)


def _row_blocks(rows: list[tuple[int, int]], block: int) -> Iterator[tuple[int, int]]:
    for first, stop in rows:
        for start in range(first, stop, block):
            yield start, min(stop, start + block)


def _explicit_rows(
    attn: Any,
    layer: int,
    rows: list[tuple[int, int]],
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    z: torch.Tensor,
    mode: AttentionMode,
    on_rows: RowsCallback,
    edit: ScoreEdit | None = None,
) -> None:
    """Fill ``z``'s ``rows`` with scores, weights (``mode``) and weights @ v, block by block
    of query rows, reporting each block's scores and weights to ``on_rows``; ``edit``
    replaces each block's logits before the causal mask."""
    batch, length, heads, _ = q.shape
    block = max(1, SCORE_BUDGET // (batch * heads * length))
    for first, stop in _row_blocks(rows, block):
        scores = AbstractAttention.calculate_attention_scores(attn, q[:, first:stop], k[:, :stop])
        if hasattr(attn, "add_local_bias"):  # simcheck.model.positions.LocallyBiasedAttention
            # Section 4's p-bit logit is content + phi, all of it scaled by log n below
            unit = isinstance(mode, FinitePrecision)
            attn.add_local_bias(scores, first_query=first, unit_scale=unit)
        if attn.cfg.positional_embedding_type == "alibi":
            scores = scores + _alibi_bias(attn, first, stop)
        if edit is not None:
            scores = edit(scores, first)
        query_pos = torch.arange(first, stop, device=scores.device)
        future = torch.arange(stop, device=scores.device)[None, :] > query_pos[:, None]
        scores = scores.masked_fill(future, -math.inf)
        weights = attention_weights(scores, query_pos, mode)
        on_rows(layer, first, stop, scores, weights)
        z[:, first:stop] = (weights @ v[:, :stop].transpose(1, 2)).transpose(1, 2)


def _has_score_bias(attn: Any) -> bool:
    """Whether the layer adds a bias to its scores: simcheck's local bias or ALiBi."""
    return hasattr(attn, "add_local_bias") or attn.cfg.positional_embedding_type == "alibi"


def _fused_rows(
    attn: Any,
    layer: int,
    rows: list[tuple[int, int]],
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    z: torch.Tensor,
) -> None:
    """Fill ``z``'s ``rows`` with softmax attention through
    ``torch.nn.functional.scaled_dot_product_attention``: the same values as
    `_explicit_rows` in softmax mode, without scores or weights in Python.

    Without a score bias, rows 0..n-1 go in one causal call (no T x T tensor; SDPA's
    ``is_causal`` aligns its mask top-left, right for a square block only) and any other run
    of rows in blocks with an explicit boolean mask (key <= query). With simcheck's local
    bias or ALiBi, every block gets an additive float mask [head, rows, keys] holding the bias
    and -inf on future keys: as much memory per block as the explicit scores, but one fused
    kernel instead of scores, softmax and weights @ v. ``scale`` is 1 / ``attn.attn_scale``,
    so ``use_attn_scale``, ``attn_scale`` and ``scale_attn_by_inverse_layer_idx`` carry over.
    """
    batch, length, heads, _ = q.shape
    scale = 1.0 / float(attn.attn_scale)
    bias = _has_score_bias(attn)
    q_, k_, v_ = (x.transpose(1, 2) for x in (q, k, v))  # [batch, head, pos, d_head]
    block = max(1, SCORE_BUDGET // (batch * heads * length))
    for run_first, run_stop in rows:
        if run_first == 0 and not bias:
            out = F.scaled_dot_product_attention(
                q_[:, :, :run_stop],
                k_[:, :, :run_stop],
                v_[:, :, :run_stop],
                is_causal=True,
                scale=scale,
            )
            z[:, :run_stop] = out.transpose(1, 2)
            continue
        for first, stop in _row_blocks([(run_first, run_stop)], block):
            query_pos = torch.arange(first, stop, device=q.device)
            future = torch.arange(stop, device=q.device)[None, :] > query_pos[:, None]
            if bias:
                mask = q.new_zeros(1, heads, stop - first, stop)
                if hasattr(attn, "add_local_bias"):
                    attn.add_local_bias(mask, first_query=first)
                if attn.cfg.positional_embedding_type == "alibi":
                    mask.add_(_alibi_bias(attn, first, stop).to(mask.dtype))
                mask.masked_fill_(future, -math.inf)
            else:
                mask = ~future
            out = F.scaled_dot_product_attention(
                q_[:, :, first:stop],
                k_[:, :, :stop],
                v_[:, :, :stop],
                attn_mask=mask,
                scale=scale,
            )
            z[:, first:stop] = out.transpose(1, 2)


def _chunked_forward(
    attn: Any,
    layer: int,
    rows_for: Callable[[int, int], list[tuple[int, int]]],
    mode: AttentionMode,
    on_rows: RowsCallback,
    fused: bool = False,
    read_rows: list[tuple[int, int]] | None = None,
    edit: ScoreEdit | None = None,
) -> Callable[..., torch.Tensor]:
    pos_type = attn.cfg.positional_embedding_type

    def forward(
        query_input: torch.Tensor,
        key_input: torch.Tensor,
        value_input: torch.Tensor,
        past_kv_cache_entry: object = None,
        additive_attention_mask: object = None,
        attention_mask: object = None,
        position_bias: object = None,
    ) -> torch.Tensor:
        if past_kv_cache_entry is not None or additive_attention_mask is not None:
            raise SimcheckError("recording does not support KV caches or attention masks")
        q, k, v = attn.calculate_qkv_matrices(query_input, key_input, value_input)
        if pos_type == "rotary":
            q = attn.hook_rot_q(attn.apply_rotary(q, 0, None))
            k = attn.hook_rot_k(attn.apply_rotary(k, 0, None))
        batch, length, heads, _ = q.shape
        k, v = _shared_heads(k, heads), _shared_heads(v, heads)
        z = v.new_zeros(batch, length, heads, v.shape[-1])
        rows = rows_for(layer, length)
        if fused:
            _fused_rows(attn, layer, rows, q, k, v, z)
        elif edit is not None:
            _explicit_rows(attn, layer, rows, q, k, v, z, mode, on_rows, edit)
        elif read_rows is not None and mode == "softmax":
            # every row fused, then the rows that are read again explicitly (same z)
            _fused_rows(attn, layer, rows, q, k, v, z)
            _explicit_rows(attn, layer, _clipped(read_rows, length), q, k, v, z, mode, on_rows)
        else:
            _explicit_rows(attn, layer, rows, q, k, v, z, mode, on_rows)
        z = attn.hook_z(z)
        w_out = einops.rearrange(attn.W_O, "head d_head d_model -> d_model (head d_head)")
        return F.linear(z.reshape(batch, length, -1), w_out, attn.b_O)

    return forward


def _clipped(rows: list[tuple[int, int]], length: int) -> list[tuple[int, int]]:
    """``rows`` ([first, stop) ranges) cut to positions below ``length``."""
    return [(first, min(stop, length)) for first, stop in rows if first < length]


CHUNKED_POSITIONS = ("standard", "shortformer", "rotary", "alibi")
"""Positional embeddings the chunked forward reproduces. Shortformer needs nothing of its own:
its transformer block adds the positions to the query and key inputs (not the values)
before calling the attention module, whose forward this module replaces."""


def supports_chunked_attention(model: torch.nn.Module) -> bool:
    """Whether `chunked_attention` reproduces this model's attention exactly: a
    `HookedTransformer` with causal attention, standard, shortformer, rotary or ALiBi
    positions, and grouped-query attention or not (no attention result hook, split QKV
    inputs, sinks, log-n scaling, soft caps, Q/K/V clipping or relative position bias;
    QK norms of the non-OLMo kind are applied by ``calculate_qkv_matrices`` and reproduced)."""
    if HookedTransformer is None or not isinstance(model, HookedTransformer):
        return False
    cfg = model.cfg
    return (
        cfg.attention_dir == "causal"
        and not cfg.use_attn_result
        and not cfg.use_split_qkv_input
        and not getattr(cfg, "use_attention_sinks", False)
        and not getattr(cfg, "use_logn_attn", False)
        and getattr(cfg, "attn_scores_soft_cap", -1.0) <= 0
        and getattr(cfg, "clip_qkv", None) is None
        and cfg.original_architecture in (None, "GPT2LMHeadModel")
        and cfg.positional_embedding_type in CHUNKED_POSITIONS
        and all(isinstance(block.attn, AbstractAttention) for block in model.blocks)
    )


@contextmanager
def chunked_attention(
    model: Any,
    rows_for: Callable[[int, int], list[tuple[int, int]]],
    mode: AttentionMode,
    on_rows: RowsCallback,
    fused_layers: Collection[int] = (),
    read_rows: list[tuple[int, int]] | None = None,
    score_edits: Mapping[int, ScoreEdit] | None = None,
) -> Iterator[None]:
    """Within the block, every attention layer of ``model`` computes only the query rows
    ``rows_for(layer, length)`` (a list of [first, stop) ranges; other rows output zero),
    in blocks of rows, with ``mode``'s weights, and reports each block to ``on_rows``.

    In softmax mode the layers in ``fused_layers`` (those whose scores and weights nobody
    reads) instead compute their rows with ``scaled_dot_product_attention`` (`_fused_rows`)
    and report nothing to ``on_rows``; ``hook_z`` and the output are the same. With
    ``read_rows`` (the query rows whose scores and weights are read), the other layers also
    compute every row fused and then only ``read_rows`` explicitly, reporting those. Finite
    precision computes every layer explicitly. A layer in ``score_edits`` computes its rows
    explicitly with its logits replaced by the edit (`ScoreEdit`)."""
    edits = dict(score_edits or {})
    fused = set(fused_layers) - set(edits) if mode == "softmax" else set()
    patched = []
    try:
        for layer, block in enumerate(model.blocks):
            # an instance attribute shadows the class's forward; deleting it restores it
            block.attn.forward = _chunked_forward(
                block.attn, layer, rows_for, mode, on_rows, fused=layer in fused,
                read_rows=read_rows, edit=edits.get(layer),
            )  # fmt: skip
            patched.append(block.attn)
        yield
    finally:
        for attn in patched:
            del attn.forward
