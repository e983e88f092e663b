"""The limit transformer's positional machinery as TransformerLens components.

Izzo, Nichani & Lee (following Huang et al.) study transformers whose positions are
*periodic* (p_i = p_{i+Delta}) and whose attention logits carry a *local*, translation
invariant bias phi(i - j) that vanishes beyond an offset tau. These two modules add both to
a `HookedTransformer` while keeping every TransformerLens hook where it was:

- `PeriodicPosEmbed` replaces ``model.pos_embed``: row ``t mod Delta`` of a learned table
  is added at position t (0-based). With Delta = 1 and the table zeroed and frozen it is
  NoPE, with no length limit.
- `LocallyBiasedAttention` replaces ``blocks[l].attn``: it adds ``scale(i) * phi[h, i-j]``
  to the logit of query i and key j when 0 <= i - j <= tau. ``scale(i)`` is ``log(i + 1)``
  (the paper's infinite-precision form, so the local term keeps its weight as the context
  grows) or 1. The bias is added before the causal mask and before ``hook_attn_scores``,
  so that hook sees the real pre-softmax logits.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from transformer_lens.components import Attention
from transformer_lens.config.hooked_transformer_config import HookedTransformerConfig

from simcheck.settings.model import LocalScale


class PeriodicPosEmbed(nn.Module):
    """Learned positional table indexed by position mod ``period``: W_pos [period, d_model]."""

    def __init__(self, period: int, d_model: int, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.period = period
        self.W_pos = nn.Parameter(torch.zeros(period, d_model, dtype=dtype))

    def forward(
        self,
        tokens: torch.Tensor,
        past_kv_pos_offset: int = 0,
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Position embeddings [batch, pos, d_model] (same signature as TransformerLens's
        PosEmbed; padding masks are not supported, every position is real)."""
        length = tokens.shape[-1]
        positions = torch.arange(
            past_kv_pos_offset, past_kv_pos_offset + length, device=self.W_pos.device
        )
        rows = self.W_pos[positions % self.period]
        return rows.unsqueeze(0).expand(tokens.shape[0], -1, -1).clone()


class LocallyBiasedAttention(Attention):
    """TransformerLens attention plus a learned per-head bias on offsets 0..tau."""

    def __init__(
        self,
        cfg: HookedTransformerConfig,
        layer_id: int,
        locality: int,
        local_scale: LocalScale = "log",
    ) -> None:
        super().__init__(cfg, "global", layer_id)
        self.locality = locality
        self.local_scale = local_scale
        self.local_bias = nn.Parameter(torch.zeros(cfg.n_heads, locality + 1, dtype=cfg.dtype))

    def calculate_attention_scores(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """TransformerLens's scores plus the local bias. Queries are the last ``query_len`` of
        ``key_len`` positions (as with a KV cache)."""
        scores = super().calculate_attention_scores(q, k)
        query_len, key_len = scores.shape[-2:]
        return self.add_local_bias(scores, first_query=key_len - query_len)

    def add_local_bias(
        self, scores: torch.Tensor, first_query: int, unit_scale: bool = False
    ) -> torch.Tensor:
        """Add ``scale(i) * phi[h, i - j]`` in place to ``scores`` [batch, head, query, key],
        whose rows are the queries ``first_query, first_query + 1, ...`` and whose columns are
        the keys ``0, 1, ...``; ``unit_scale`` adds phi itself whatever ``local_scale`` says
        (finite precision scales the whole logit by log n instead). Written band by band, so
        the cost is O(tau * rows), not O(rows * keys)."""
        for offset in range(self.locality + 1):
            diagonal = first_query - offset  # key column minus query row
            band = scores.diagonal(offset=diagonal, dim1=-2, dim2=-1)  # [batch, head, m]
            if band.shape[-1] == 0:
                continue
            first_row = max(0, -diagonal)
            query_pos = torch.arange(
                first_query + first_row,
                first_query + first_row + band.shape[-1],
                device=scores.device,
                dtype=scores.dtype,
            )
            weight = self.local_bias[:, offset, None]  # [head, 1]
            if self.local_scale == "log" and not unit_scale:
                weight = weight * torch.log1p(query_pos)[None, :]
            band.add_(weight.expand(-1, band.shape[-1]))
        return scores
