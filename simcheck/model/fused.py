"""The forward pass that training runs: one or many models of one architecture, fused.

`stacked_logits(template, params, tokens, read_at)` computes exactly what
``template(tokens)`` computes (a simcheck `HookedTransformer` built from a `ModelSpec`) for
K models at once: ``params`` maps every parameter name of the template to a tensor with a
leading member axis [K, *shape], and ``tokens`` is [K, batch, length]. It is written with
batched matrix products, `F.layer_norm` and `scaled_dot_product_attention` instead of
TransformerLens's hook points and einsums, which makes a training step of the small models
simcheck trains about twice as fast; analysis (hooks, `run_with_cache`, recording) stays on
the `HookedTransformer`, which holds the same parameters.

- Training one model passes its own parameters with a member axis of one
  (`member_views`): gradients land in the model's ``.grad`` as with ``model(tokens)``.
- Training an ensemble (`simcheck.training.ensemble`) passes stacked leaf tensors.

Members may train on inputs of different lengths in one call: each member's batch is
padded on the right to the longest, and ``read_at[k]`` picks the position whose output
is read. With causal attention the padding never reaches an earlier position, so the
output at ``read_at[k]`` is that of the unpadded input (up to float rounding).

`fast_path_problem(model)` says why a model cannot take this path (None when it can):
TransformerLens options outside `ModelSpec` (a hand-built model) or the ``solu`` MLP.
`tests/test_stacked_forward.py` checks outputs to 1e-5 and gradients against
``template(tokens)`` for every encoding, normalisation, activation and layout simcheck builds.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformer_lens import HookedTransformer
from transformer_lens.components.abstract_attention import AbstractAttention

FUSED_ACTIVATIONS = ("relu", "gelu", "gelu_new", "gelu_fast", "silu")


def fast_path_problem(model: HookedTransformer) -> str | None:
    """Why ``model`` cannot train through `stacked_logits`, or None when it can."""
    spec = getattr(model, "simcheck_spec", None)
    if spec is None:
        return "the model was not built from a simcheck ModelSpec"
    if spec.act_fn not in FUSED_ACTIVATIONS:
        return f"the {spec.act_fn} MLP has an inner LayerNorm the fused path does not compute"
    return None


def member_views(model: HookedTransformer) -> dict[str, torch.Tensor]:
    """``model``'s parameters as a one-member stack (views: gradients reach the model)."""
    return {name: param.unsqueeze(0) for name, param in model.named_parameters()}


def stacked_logits(
    template: HookedTransformer,
    params: dict[str, torch.Tensor],
    tokens: torch.Tensor,
    read_at: torch.Tensor | None = None,
    pos_offsets: torch.Tensor | None = None,
) -> torch.Tensor:
    """Outputs of K models of ``template``'s architecture on their own inputs.

    Args:
        template: a simcheck model; it supplies the configuration and fixed buffers (rotary
            tables, ALiBi slopes, attention scale), never its parameters.
        params: parameter name -> [K, *shape], for every parameter of ``template``.
        tokens: [K, batch, length] token ids.
        read_at: [K] position whose output each member reads; None reads every position.
        pos_offsets: [K] first row of a learned position table each member reads (the
            ``pos_offsets`` training option); None for row 0.

    Returns:
        [K, batch, d_vocab_out] at ``read_at``, or [K, batch, length, d_vocab_out].
    """
    spec = template.simcheck_spec
    members, _, length = tokens.shape
    x = _gather_rows(params["embed.W_E"], tokens)
    if spec.pos in ("learned", "periodic"):
        positions = torch.arange(length, device=tokens.device).expand(members, length)
        if spec.pos == "periodic":
            positions = positions % spec.period
        elif pos_offsets is not None:
            positions = positions + pos_offsets[:, None]
        x = x + _gather_rows(params["pos_embed.W_pos"], positions)[:, None]
    for layer in range(spec.n_layers):
        prefix = f"blocks.{layer}."
        # the last layer only needs the positions that are read: its other rows reach no output
        query_at = read_at if layer == spec.n_layers - 1 else None
        normed = _normalize(x, params, prefix + "ln1", spec.normalization, template.cfg.eps)
        attended = _attention(template, params, layer, normed, query_at)
        x = (x if query_at is None else _rows_at(x, query_at)) + attended
        if spec.d_mlp > 0:
            normed = _normalize(x, params, prefix + "ln2", spec.normalization, template.cfg.eps)
            x = x + _mlp(template, params, prefix + "mlp.", normed)
    x = _normalize(x, params, "ln_final", spec.normalization, template.cfg.eps)
    out = _project(x, params["unembed.W_U"], params["unembed.b_U"])
    return out if read_at is None else out.squeeze(2)


def _rows_at(x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """``x[k, :, positions[k]]`` for each member k, keeping the position axis:
    x [K, batch, length, ...] -> [K, batch, 1, ...]."""
    index = positions.view(-1, *[1] * (x.dim() - 1)).expand(-1, x.shape[1], 1, *x.shape[3:])
    return x.gather(2, index)


def _gather_rows(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``table[k][index[k]]`` for each member k: table [K, rows, d], index [K, ...]."""
    members, rows = table.shape[:2]
    shift = (torch.arange(members, device=index.device) * rows).view(-1, *[1] * (index.dim() - 1))
    return F.embedding(index + shift, table.reshape(members * rows, -1))


def _normalize(
    x: torch.Tensor, params: dict[str, torch.Tensor], name: str, kind: str, eps: float
) -> torch.Tensor:
    """TransformerLens's LN (centred, biased variance, gain and bias) or RMS (gain only)."""
    if kind == "none":
        return x
    gain = params[f"{name}.w"]
    if kind == "RMS":
        gain = gain.view(x.shape[0], *[1] * (x.dim() - 2), -1)
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * gain
    bias = params[f"{name}.b"]
    if x.shape[0] == 1:  # one member: the affine LayerNorm kernel
        return F.layer_norm(x, x.shape[-1:], gain[0], bias[0], eps=eps)
    shape = (x.shape[0], *[1] * (x.dim() - 2), -1)
    return F.layer_norm(x, x.shape[-1:], eps=eps) * gain.view(shape) + bias.view(shape)


def _project(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Per-member affine map: x [K, ..., d_in] @ weight [K, d_in, d_out] + bias [K, d_out]."""
    members, d_in = x.shape[0], x.shape[-1]
    if members == 1:  # one member: a plain matrix product, faster than a batch of one
        out = torch.addmm(bias[0], x.reshape(-1, d_in), weight[0])
    else:
        out = torch.baddbmm(bias[:, None, :], x.reshape(members, -1, d_in), weight)
    return out.reshape(*x.shape[:-1], weight.shape[-1])


def _projections(
    x: torch.Tensor, params: dict[str, torch.Tensor], prefix: str, which: str
) -> tuple[torch.Tensor, ...]:
    """The queries, keys and/or values that ``which`` names ("QKV", "KV", "Q"), each
    [K, batch, length, heads, d_head], of ``x`` [K, batch, length, d_model], in one batched
    product."""
    weights = [params[f"{prefix}W_{name}"] for name in which]  # [K, heads, d_model, d_head]
    members, heads, d_model, d_head = weights[0].shape
    weight = torch.cat(weights, dim=1).permute(0, 2, 1, 3).reshape(members, d_model, -1)
    bias = torch.cat([params[f"{prefix}b_{name}"] for name in which], dim=1)
    out = _project(x, weight, bias.reshape(members, -1))
    return out.unflatten(-1, (len(which), heads, d_head)).unbind(-3)


def _attention(
    template: HookedTransformer,
    params: dict[str, torch.Tensor],
    layer: int,
    x: torch.Tensor,
    query_at: torch.Tensor | None = None,
) -> torch.Tensor:
    """One attention layer's output [K, batch, length, d_model] (causal, plus the model's
    ALiBi or local bias, rotary applied to queries and keys); with ``query_at`` [K], only
    that query position of each member, [K, batch, 1, d_model]."""
    attn = template.blocks[layer].attn
    prefix = f"blocks.{layer}.attn."
    members, batch, length, _ = x.shape
    rotary = template.simcheck_spec.pos == "rotary"
    if query_at is None or rotary:
        q, k, v = _projections(x, params, prefix, "QKV")
    else:  # queries of the rows that are read only
        (q,) = _projections(_rows_at(x, query_at), params, prefix, "Q")
        k, v = _projections(x, params, prefix, "KV")
    if rotary:  # TransformerLens's own rotation and tables, at every position
        q, k = (
            attn.apply_rotary(t.reshape(members * batch, length, *t.shape[-2:])).view_as(t)
            for t in (q, k)
        )
    bias = _score_bias(template, params, layer, length, x.device, x.dtype)
    if query_at is not None:
        q = _rows_at(q, query_at) if rotary else q
        bias = _query_rows(bias, query_at, length)
    scale = 1.0 / attn.attn_scale
    if bias is None:  # [K * batch, heads, positions, d_head]: the fused CPU kernel's layout
        q, k, v = (t.flatten(0, 1).transpose(1, 2) for t in (q, k, v))
        causal = query_at is None
        z = F.scaled_dot_product_attention(q, k, v, is_causal=causal, scale=scale)
        z = z.unflatten(0, (members, batch))
    else:  # a bias per member: scores in [K, batch, heads, query, key], the bias broadcast
        q, k, v = (t.transpose(2, 3) for t in (q, k, v))
        scores = torch.matmul(q, k.transpose(-1, -2)) * scale + bias
        z = torch.matmul(torch.softmax(scores, dim=-1), v)
    z = z.transpose(2, 3).flatten(-2)  # [K, batch, positions, heads * d_head]
    w_o = params[prefix + "W_O"]  # [K, heads, d_head, d_model]
    return _project(z, w_o.flatten(1, 2), params[prefix + "b_O"])


def _query_rows(
    bias: torch.Tensor | None, query_at: torch.Tensor, length: int
) -> torch.Tensor | None:
    """The rows of the attention bias at each member's query position, [K, 1, heads or 1,
    1, length]; keys after the query are masked. None when every query is the last
    position and there is no bias (every key is then visible)."""
    if bias is None:
        if bool((query_at == length - 1).all()):
            return None
        keys = torch.arange(length, device=query_at.device)
        later = keys[None, :] > query_at[:, None]  # [K, length]
        blocked = torch.zeros(later.shape, device=later.device).masked_fill(later, float("-inf"))
        return blocked[:, None, None, None]
    members = max(bias.shape[0], query_at.shape[0])
    bias = bias.expand(members, *bias.shape[1:])
    index = query_at.view(-1, 1, 1, 1, 1).expand(members, 1, bias.shape[2], 1, length)
    return bias.gather(3, index)


def _score_bias(
    template: HookedTransformer,
    params: dict[str, torch.Tensor],
    layer: int,
    length: int,
    device: torch.device,
    dtype: torch.dtype,
) -> torch.Tensor | None:
    """The additive attention bias with the causal mask folded in, [K or 1, 1, heads,
    length, length]; None when plain causal attention is all there is."""
    spec = template.simcheck_spec
    if spec.pos != "alibi" and spec.locality is None:
        return None
    query = torch.arange(length, device=device)[:, None]
    key = torch.arange(length, device=device)[None, :]
    future = key > query
    if spec.pos == "alibi":
        bias = AbstractAttention.create_alibi_bias(spec.n_heads, length, device).to(dtype)
        bias = bias[None, None]  # [1, 1, heads, length, length]
    else:
        phi = params[f"blocks.{layer}.attn.local_bias"]  # [K, heads, tau + 1]
        offset = query - key
        near = (offset >= 0) & (offset <= spec.locality)
        index = offset.clamp(0, spec.locality).flatten()
        bias = phi[:, :, index].unflatten(-1, (length, length)) * near.to(dtype)
        if spec.local_scale == "log":
            bias = bias * torch.log1p(query.to(dtype))
        bias = bias[:, None]  # [K, 1, heads, length, length]
    return bias.masked_fill(future, float("-inf"))


def _mlp(
    template: HookedTransformer, params: dict[str, torch.Tensor], prefix: str, x: torch.Tensor
) -> torch.Tensor:
    hidden = _project(x, params[prefix + "W_in"], params[prefix + "b_in"])
    act_fn = template.simcheck_spec.act_fn
    if act_fn == "relu":
        hidden = F.relu(hidden)
    elif act_fn == "gelu":
        hidden = F.gelu(hidden)
    elif act_fn == "silu":
        hidden = F.silu(hidden)
    else:  # gelu_new, gelu_fast: TransformerLens's own formulas
        hidden = template.blocks[0].mlp.act_fn(hidden)
    return _project(hidden, params[prefix + "W_out"], params[prefix + "b_out"])
