"""Input guards shared by every forward pass: the tokens' type and shape, length and ids.

Free of TransformerLens imports, so recording works on any model with a ``cfg`` (a
TransformerLens 3.x ``HookedTransformer`` or a 4.x ``TransformerBridge``).
"""

from __future__ import annotations

from typing import Any

import torch

from simcheck.errors import LengthError, TokenError


def check_input_length(model: Any, length: int) -> None:
    """Raise `LengthError` if ``model`` cannot take inputs of ``length`` tokens."""
    limit = model.cfg.n_ctx
    if length <= limit:
        return
    spec = getattr(model, "simcheck_spec", None)
    if spec is None:  # a model built elsewhere: its context is what it is
        raise LengthError(
            f"input length {length} exceeds the {limit} positions this model can take "
            f"(model.cfg.n_ctx={limit}); use lengths <= {limit}"
        )
    raise LengthError(
        f"input length {length} exceeds the {limit} positions this model can take "
        f"(pos='{spec.pos}', n_ctx={limit}); use lengths <= {limit}, or train with --n-ctx "
        f"{length} or a positional encoding without a table (periodic, none, rotary, alibi)"
    )


def check_token_ids(model: Any, tokens: torch.Tensor) -> None:
    """Raise `TokenError` if any id in ``tokens`` is outside the model's vocabulary."""
    if not tokens.numel():
        return
    low, high = int(tokens.min()), int(tokens.max())
    if low < 0 or high >= model.cfg.d_vocab:
        raise TokenError(
            f"token id {low if low < 0 else high} is outside the model's vocabulary "
            f"0..{model.cfg.d_vocab - 1}; check that the task's vocab_size matches the model's"
        )


def check_token_input(model: Any, tokens: Any) -> None:
    """Raise `TokenError` unless ``tokens`` is token input ``model`` can take: an integer
    tensor [batch, length] (or [length]) of ids in its vocabulary, no longer than its context.

    A float tensor is refused with a pointer to ``start_at_layer``, the way TransformerLens
    takes a residual stream, which is what a float input usually is."""
    if not isinstance(tokens, torch.Tensor):
        raise TokenError(
            f"a simcheck model takes token ids as an integer tensor [batch, length], got "
            f"{type(tokens).__name__}; convert with torch.tensor(ids)"
        )
    if tokens.dtype.is_floating_point:
        raise TokenError(
            f"token ids must be an integer tensor, got dtype {tokens.dtype}; cast with .long(), "
            "or pass start_at_layer=L to feed the residual stream [batch, length, d_model] "
            "before layer L"
        )
    if tokens.dtype.is_complex or tokens.dtype == torch.bool:
        raise TokenError(
            f"token ids must be an integer tensor, got dtype {tokens.dtype}; cast with .long()"
        )
    if tokens.dim() not in (1, 2):
        raise TokenError(
            f"token ids must have shape [batch, length] or [length], got "
            f"{tuple(tokens.shape)}; pass one sequence per row"
        )
    check_input_length(model, tokens.shape[-1])
    check_token_ids(model, tokens)
