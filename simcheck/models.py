"""Small `HookedTransformer` models sized for a task, with the positional encodings that matter
for length generalization.

`build_model(task, pos="periodic")` returns a `SimcheckTransformer`, a TransformerLens
`HookedTransformer` subclass: every hook point, `run_with_cache` and `run_with_hooks` work as
usual. What simcheck adds:

- positional encodings by name (`POSITIONAL_ENCODINGS`): ``none`` (NoPE), ``learned``,
  ``rotary``, ``alibi`` and ``periodic`` (the limit transformer's positions mod Delta plus an
  optional local attention bias; see `simcheck.positions`);
- ``model.simcheck_spec``, the `ModelSpec` that rebuilds the model exactly;
- an input guard in every forward pass: a token outside the vocabulary, or an input longer
  than the model can take (``model.cfg.n_ctx``), raises a one-line `SimcheckError` instead
  of an index error deep in torch. Encodings without a position table take
  `POSITION_FREE_CTX` tokens, which in practice means memory is the only limit.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from typing import Any, Literal

import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

from simcheck.errors import SimcheckError
from simcheck.inputs import check_input_length, check_token_ids
from simcheck.positions import LocallyBiasedAttention, LocalScale, PeriodicPosEmbed
from simcheck.tasks import Task

PositionalEncoding = Literal["none", "learned", "rotary", "alibi", "periodic"]
POSITIONAL_ENCODINGS: tuple[str, ...] = ("none", "learned", "rotary", "alibi", "periodic")
INIT_MODES: tuple[str, ...] = (
    "gpt2",
    "muP",
    "xavier_uniform",
    "xavier_normal",
    "kaiming_uniform",
    "kaiming_normal",
)
"""TransformerLens's weight initialisations (``muP`` covers the initialisation only)."""
POSITION_FREE_CTX = 1 << 20
"""Context given to models whose positional encoding has no table of positions."""

_TL_TYPE = {"learned": "standard", "rotary": "rotary", "alibi": "alibi"}


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild a model: architecture, positional encoding and init seed.

    Attributes:
        d_vocab: input vocabulary size (the task's).
        d_vocab_out: output width: 1 for scalar regression, the vocabulary for distributions.
        pos: positional encoding, one of `POSITIONAL_ENCODINGS`.
        n_layers, n_heads, d_model, d_head, d_mlp: sizes; ``d_mlp = 0`` is attention-only.
        n_ctx: positions of the ``learned`` table (the longest input such a model takes).
        period: Delta for ``periodic`` positions.
        locality: tau for the ``periodic`` local attention bias; None for no local bias.
        local_scale: ``"log"`` scales the local bias by log(i + 1) at query i, ``"constant"``
            leaves it alone.
        normalization: ``"LN"`` (pre-LayerNorm) or ``"none"``.
        act_fn: the MLP activation.
        init: TransformerLens's initialisation scheme, one of `INIT_MODES`.
        seed: the initialisation seed.
    """

    d_vocab: int
    d_vocab_out: int
    pos: str = "learned"
    n_layers: int = 1
    n_heads: int = 1
    d_model: int = 32
    d_head: int | None = None
    d_mlp: int = 128
    n_ctx: int = 1024
    period: int = 1
    locality: int | None = None
    local_scale: LocalScale = "log"
    normalization: str = "LN"
    act_fn: str = "relu"
    init: str = "gpt2"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.pos not in POSITIONAL_ENCODINGS:
            raise SimcheckError(
                f"unknown positional encoding '{self.pos}'; choose one of "
                f"{', '.join(POSITIONAL_ENCODINGS)}"
            )
        for name in ("d_vocab", "d_vocab_out", "n_layers", "n_heads", "d_model", "n_ctx"):
            if getattr(self, name) < 1:
                raise SimcheckError(f"model {name} must be >= 1, got {getattr(self, name)}")
        if self.d_mlp < 0:
            raise SimcheckError(f"d_mlp must be >= 0 (0 = attention only), got {self.d_mlp}")
        if self.d_head is None and self.d_model % self.n_heads:
            raise SimcheckError(
                f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}; "
                "change one of them or set d_head explicitly"
            )
        if self.period < 1:
            raise SimcheckError(f"period must be >= 1, got {self.period}")
        if self.locality is not None and self.locality < 0:
            raise SimcheckError(f"locality (tau) must be >= 0 or None, got {self.locality}")
        if self.locality is not None and self.pos != "periodic":
            raise SimcheckError(
                "a local attention bias (locality) belongs to the 'periodic' encoding; "
                f"drop locality or use pos='periodic' (got pos='{self.pos}')"
            )
        if self.normalization not in ("LN", "none"):
            raise SimcheckError(f"normalization must be 'LN' or 'none', got {self.normalization}")
        if self.init not in INIT_MODES:
            raise SimcheckError(
                f"unknown init '{self.init}'; choose one of {', '.join(INIT_MODES)}"
            )
        if self.local_scale not in ("log", "constant"):
            raise SimcheckError(f"local_scale must be 'log' or 'constant', got {self.local_scale}")

    @property
    def head_dim(self) -> int:
        return self.d_head or self.d_model // self.n_heads

    @property
    def delta(self) -> int:
        """Delta: the period of the positions when they are periodic; 1 otherwise (the model
        treats every position alike outside what its encoding reads)."""
        return self.period if self.pos == "periodic" else 1

    @property
    def max_length(self) -> int:
        """The longest input the model takes: the learned table's size, else unbounded."""
        return self.n_ctx if self.pos == "learned" else POSITION_FREE_CTX

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelSpec:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise SimcheckError(f"model spec has unknown fields {sorted(unknown)}")
        return cls(**data)

    @classmethod
    def for_task(cls, task: Task, **overrides: Any) -> ModelSpec:
        """Defaults sized for ``task`` (its layers, encoding, period and locality), with any
        field overridden by keyword. Overrides set to None keep the task's default."""
        pos = overrides.get("pos") or task.default_pos
        defaults: dict[str, Any] = {
            "d_vocab": task.vocab_size,
            "d_vocab_out": task.output_size,
            "pos": pos,
            "n_layers": task.default_layers,
            "period": task.period or 1,
            "locality": task.locality if pos == "periodic" else None,
        }
        defaults.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**defaults)


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
        normalization_type=None if spec.normalization == "none" else "LN",
        positional_embedding_type=_TL_TYPE.get(spec.pos, "standard"),
        rotary_dim=spec.head_dim if spec.pos == "rotary" else None,
        default_prepend_bos=False,
        init_mode=spec.init,
        seed=None,
        device="cpu",
    )


class SimcheckTransformer(HookedTransformer):
    """A `HookedTransformer` that knows its `ModelSpec` and checks its input.

    Every forward pass (``model(tokens)``, ``run_with_cache``, ``run_with_hooks``) first checks
    that the token ids are in the vocabulary and that the input is no longer than the model
    can take, and raises a one-line `SimcheckError` otherwise.
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
        if isinstance(input, torch.Tensor) and not input.dtype.is_floating_point:
            check_input_length(self, input.shape[-1])
            check_token_ids(self, input)
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
    small enough for long inputs."""
    check_input_length(model, tokens.shape[1])
    size = batch_size or auto_batch_size(model, tokens.shape[1])
    chunks = [model(chunk)[:, -1, :] for chunk in tokens.split(size)]
    return torch.cat(chunks).float()
