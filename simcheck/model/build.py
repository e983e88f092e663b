"""Small `HookedTransformer` models sized for a task, with the positional encodings that matter
for length generalization.

`build_model(task, pos="periodic")` returns a `SimcheckTransformer`, a TransformerLens
`HookedTransformer` subclass: every hook point, `run_with_cache` and `run_with_hooks` work as
usual. What simcheck adds:

- positional encodings by name (`POSITIONAL_ENCODINGS`): ``none`` (NoPE), ``learned``,
  ``rotary``, ``alibi`` and ``periodic`` (the limit transformer's positions mod Delta plus an
  optional local attention bias; see `simcheck.model.positions`);
- ``model.simcheck_spec``, the `ModelSpec` that rebuilds the model exactly (defined with its
  choices in `simcheck.settings.model`, which imports no torch, and offered here too);
- an input guard in every forward pass: a token outside the vocabulary, or an input longer
  than the model can take (``model.cfg.n_ctx``), raises a one-line `SimcheckError` instead
  of an index error deep in torch. Encodings without a position table take
  `POSITION_FREE_CTX` tokens, which in practice means memory is the only limit.
"""

from __future__ import annotations

import inspect
import warnings
from typing import Any

import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

from simcheck.model.fused import fast_path_problem, member_views, stacked_logits
from simcheck.model.inputs import check_input_length, check_token_input
from simcheck.model.positions import LocallyBiasedAttention, PeriodicPosEmbed
from simcheck.settings.model import INIT_MODES as INIT_MODES
from simcheck.settings.model import POSITION_FREE_CTX as POSITION_FREE_CTX
from simcheck.settings.model import POSITIONAL_ENCODINGS as POSITIONAL_ENCODINGS
from simcheck.settings.model import ModelSpec as ModelSpec
from simcheck.tasks import Task

_TL_TYPE = {"learned": "standard", "rotary": "rotary", "alibi": "alibi"}


def _tl_config(spec: ModelSpec) -> HookedTransformerConfig:
    table_free = spec.pos in ("none", "periodic", "alibi")
    return HookedTransformerConfig(
        n_layers=spec.n_layers,
        d_model=spec.d_model,
        n_ctx=1 if table_free else spec.max_length,
        d_head=spec.head_dim,
        n_heads=spec.n_heads,
        d_mlp=spec.d_mlp if spec.d_mlp > 0 else None,
        attn_only=spec.d_mlp == 0,
        d_vocab=spec.d_vocab,
        d_vocab_out=spec.d_vocab_out,
        act_fn=spec.act_fn,
        normalization_type=None if spec.normalization == "none" else spec.normalization,
        positional_embedding_type=_TL_TYPE.get(spec.pos, "standard"),
        rotary_dim=spec.head_dim if spec.pos == "rotary" else None,
        default_prepend_bos=False,
        init_mode=spec.init,
        seed=None,
        device="cpu",
    )


_FORWARD = inspect.signature(HookedTransformer.forward)


class SimcheckTransformer(HookedTransformer):
    """A `HookedTransformer` that knows its `ModelSpec` and checks its input.

    Every forward pass (``model(tokens)``, ``run_with_cache``, ``run_with_hooks``) from tokens
    first checks that they are an integer tensor [batch, length] of ids in the vocabulary, no
    longer than the model can take, and raises a one-line `SimcheckError` otherwise. A pass
    with ``start_at_layer`` takes a residual stream instead, as in TransformerLens, unchecked.
    """

    def __init__(self, cfg: HookedTransformerConfig, spec: ModelSpec) -> None:
        # TransformerLens 3.x announces that HookedTransformer is deprecated in favour of 4.x's
        # TransformerBridge; simcheck pins 3.x, so the notice is silenced here and only here.
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", message=".*HookedTransformer is deprecated.*", category=DeprecationWarning
            )
            super().__init__(cfg)
        self.simcheck_spec = spec

    def forward(self, input: Any, *args: Any, **kwargs: Any) -> Any:
        # with start_at_layer the input is a residual stream [batch, length, d_model], not tokens
        bound = _FORWARD.bind(self, input, *args, **kwargs)
        if bound.arguments.get("start_at_layer") is None:
            check_token_input(self, input)
        return super().forward(input, *args, **kwargs)


def model_from_spec(spec: ModelSpec) -> SimcheckTransformer:
    """Build the model ``spec`` describes, initialised from ``spec.seed`` without touching the
    global torch RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        model = SimcheckTransformer(_tl_config(spec), spec)
        if spec.pos in ("none", "periodic"):
            _install_periodic_positions(model, spec)
        if spec.pos == "alibi":  # TransformerLens builds a position table that ALiBi never reads
            model.pos_embed.W_pos.data.zero_()
            model.pos_embed.W_pos.requires_grad_(False)
        if spec.pos == "periodic" and spec.locality is not None:
            _install_local_bias(model, spec)
    model.cfg.n_ctx = spec.max_length
    model.eval()
    return model


def build_model(task: Task, seed: int = 0, **overrides: Any) -> SimcheckTransformer:
    """A `HookedTransformer` sized for ``task``; keyword arguments override `ModelSpec` fields.

    Example: ``build_model(get_task("modp:p=3"), pos="periodic", d_model=32)``.
    """
    return model_from_spec(ModelSpec.for_task(task, seed=seed, **overrides))


def _install_periodic_positions(model: HookedTransformer, spec: ModelSpec) -> None:
    table = PeriodicPosEmbed(spec.delta, spec.d_model, dtype=model.cfg.dtype)
    if spec.pos == "periodic":
        torch.nn.init.normal_(table.W_pos, std=model.cfg.initializer_range)
    else:
        table.W_pos.requires_grad_(False)
    model.pos_embed = table


def _install_local_bias(model: HookedTransformer, spec: ModelSpec) -> None:
    assert spec.locality is not None
    for layer, block in enumerate(model.blocks):
        biased = LocallyBiasedAttention(model.cfg, layer, spec.locality, spec.local_scale)
        biased.load_state_dict(block.attn.state_dict(), strict=False)
        block.attn = biased
    model.setup()  # re-index hook points: the attention modules are new objects


def auto_batch_size(model: HookedTransformer, length: int, budget: int = 1 << 25) -> int:
    """Rows per forward pass that keep the attention score tensors (batch x heads x T x T)
    near ``budget`` elements (128 MiB of float32 per tensor by default)."""
    per_row = model.cfg.n_heads * length * length
    return max(1, budget // per_row)


@torch.no_grad()
def last_outputs(
    model: HookedTransformer, tokens: torch.Tensor, batch_size: int | None = None
) -> torch.Tensor:
    """The model's raw output at the last position, [batch, d_vocab_out], computed in chunks
    small enough for long inputs. simcheck's own models go through the fused forward
    (`simcheck.model.fused`: the same function, with the last layer at the last
    position only); any other `HookedTransformer` through its own forward."""
    check_input_length(model, tokens.shape[1])
    size = batch_size or auto_batch_size(model, tokens.shape[1])
    if fast_path_problem(model) is None:
        check_token_input(model, tokens)
        params = member_views(model)
        last = torch.tensor([tokens.shape[1] - 1], device=tokens.device)
        chunks = [
            stacked_logits(model, params, chunk[None], last)[0] for chunk in tokens.split(size)
        ]
    else:
        chunks = [model(chunk)[:, -1, :] for chunk in tokens.split(size)]
    return torch.cat(chunks).float()


@torch.no_grad()
def position_outputs(
    model: HookedTransformer, tokens: torch.Tensor, batch_size: int | None = None
) -> torch.Tensor:
    """The model's raw output at every position, [batch, length, d_vocab_out], in chunks
    (through the fused forward for simcheck's own models, as `last_outputs`)."""
    check_input_length(model, tokens.shape[1])
    size = batch_size or auto_batch_size(model, tokens.shape[1])
    if fast_path_problem(model) is None:
        check_token_input(model, tokens)
        params = member_views(model)
        chunks = [stacked_logits(model, params, chunk[None])[0] for chunk in tokens.split(size)]
    else:
        chunks = [model(chunk) for chunk in tokens.split(size)]
    return torch.cat(chunks).float()
