"""`ModelSpec`: everything needed to rebuild one of simcheck's models, and its choices.

Kept apart from `simcheck.model.build`, which builds the model with torch and TransformerLens,
so that a spec can be read, checked and turned into command-line flags without importing
either. `simcheck.model.build` offers the same names.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from simcheck.errors import SimcheckError
from simcheck.settings.fields import check_field_types, setting

if TYPE_CHECKING:
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
NORMALIZATIONS: tuple[str, ...] = ("LN", "RMS", "none")
"""Pre-normalisation of each block's inputs: LayerNorm, RMSNorm (TransformerLens's ``LN`` and
``RMS``, each with a learned gain) or none."""
ACT_FNS: tuple[str, ...] = ("relu", "gelu", "gelu_new", "gelu_fast", "silu", "solu")
"""MLP activations, by TransformerLens's names."""
LocalScale = Literal["log", "constant"]
LOCAL_SCALES: tuple[str, ...] = ("log", "constant")
POSITION_FREE_CTX = 1 << 20
"""Context given to models whose positional encoding has no table of positions."""


def _choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise SimcheckError(f"unknown {name} '{value}'; choose one of {', '.join(choices)}")


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild a model: architecture, positional encoding and init seed.

    Attributes:
        d_vocab: input vocabulary size (the task's).
        d_vocab_out: output width: 1 for scalar regression, the vocabulary for distributions.
        pos: positional encoding, one of `POSITIONAL_ENCODINGS`.
        n_layers, n_heads, d_model, d_head, d_mlp: sizes; ``d_mlp = 0`` is attention-only;
            ``d_head`` None is d_model / n_heads.
        n_ctx: positions of the ``learned`` table (the longest input such a model takes).
        period: Delta for ``periodic`` positions (1 for every other encoding).
        locality: tau for the ``periodic`` local attention bias; None for no local bias.
        local_scale: ``"log"`` scales the local bias by log(i + 1) at query i, ``"constant"``
            leaves it alone.
        normalization: one of `NORMALIZATIONS`: ``"LN"`` (pre-LayerNorm), ``"RMS"``
            (pre-RMSNorm) or ``"none"``.
        act_fn: the MLP activation, one of `ACT_FNS`.
        init: TransformerLens's initialisation scheme, one of `INIT_MODES`.
        seed: the initialisation seed (>= 0).
    """

    d_vocab: int = setting(help="input vocabulary size: the task's", cli=False)
    d_vocab_out: int = setting(help="output width: the task's", cli=False)
    pos: PositionalEncoding = setting(
        "learned", help="positional encoding", shown="the task's", choices=POSITIONAL_ENCODINGS
    )
    n_layers: int = setting(1, help="layers", flag="--layers", shown="the task's")
    n_heads: int = setting(1, help="attention heads per layer", flag="--heads")
    d_model: int = setting(32, help="residual width")
    d_head: int | None = setting(None, help="head width", shown="d_model / heads")
    d_mlp: int = setting(128, help="MLP width, 0 = attention only")
    n_ctx: int = setting(1024, help="positions of a learned table: the longest input")
    period: int = setting(1, help="Delta of --pos periodic", shown="the task's")
    locality: int | None = setting(
        None, help="tau of the periodic local attention bias", shown="the task's"
    )
    local_scale: LocalScale = setting(
        "log", help="scale the local bias by log(i+1), or not", choices=LOCAL_SCALES
    )
    normalization: str = setting(
        "LN", help="pre-normalisation: LayerNorm, RMSNorm or none", flag="--norm",
        choices=NORMALIZATIONS,
    )  # fmt: skip
    act_fn: str = setting("relu", help="MLP activation", choices=ACT_FNS)
    init: str = setting("gpt2", help="weight initialisation", choices=INIT_MODES)
    seed: int = setting(0, help="initialisation seed")

    def __post_init__(self) -> None:
        check_field_types(self)
        _choice("positional encoding", self.pos, POSITIONAL_ENCODINGS)
        for name in ("d_vocab", "d_vocab_out", "n_layers", "n_heads", "d_model", "n_ctx"):
            if getattr(self, name) < 1:
                raise SimcheckError(f"model {name} must be >= 1, got {getattr(self, name)}")
        if self.d_head is not None and self.d_head < 1:
            raise SimcheckError(
                f"d_head must be >= 1, or None for d_model / n_heads, got {self.d_head}"
            )
        if self.d_mlp < 0:
            raise SimcheckError(f"d_mlp must be >= 0 (0 = attention only), got {self.d_mlp}")
        if self.d_head is None and self.d_model % self.n_heads:
            raise SimcheckError(
                f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}; "
                "change one of them or set d_head explicitly"
            )
        if self.period < 1:
            raise SimcheckError(f"period must be >= 1, got {self.period}")
        if self.period != 1 and self.pos != "periodic":
            raise SimcheckError(
                f"a period (Delta={self.period}) belongs to the 'periodic' encoding; drop "
                f"period or use pos='periodic' (got pos='{self.pos}')"
            )
        if self.locality is not None and self.locality < 0:
            raise SimcheckError(f"locality (tau) must be >= 0 or None, got {self.locality}")
        if self.locality is not None and self.pos != "periodic":
            raise SimcheckError(
                "a local attention bias (locality) belongs to the 'periodic' encoding; "
                f"drop locality or use pos='periodic' (got pos='{self.pos}')"
            )
        _choice("local_scale", self.local_scale, LOCAL_SCALES)
        _choice("normalization", self.normalization, NORMALIZATIONS)
        _choice("act_fn", self.act_fn, ACT_FNS)
        _choice("init", self.init, INIT_MODES)
        if self.seed < 0:
            raise SimcheckError(f"seed must be >= 0, got {self.seed}")

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
        """The spec a record (``spec.json``) holds. Records written by simcheck 0.1.0 kept
        the task's period for every encoding; only ``periodic`` positions read it, so for the
        others it is read as 1."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise SimcheckError(f"model spec has unknown fields {sorted(unknown)}")
        if data.get("pos") != "periodic" and "period" in data:
            data = {**data, "period": 1}
        return cls(**data)

    @classmethod
    def for_task(cls, task: Task, **overrides: Any) -> ModelSpec:
        """Defaults sized for ``task`` (its layers, encoding, and with ``periodic`` positions
        its period and locality), with any field overridden by keyword. Overrides set to None
        keep the task's default."""
        pos = overrides.get("pos") or task.default_pos
        defaults: dict[str, Any] = {
            "d_vocab": task.vocab_size,
            "d_vocab_out": task.output_size,
            "pos": pos,
            "n_layers": task.default_layers,
            "period": (task.period or 1) if pos == "periodic" else 1,
            "locality": task.locality if pos == "periodic" else None,
        }
        defaults.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**defaults)


def model_period(model: Any) -> int:
    """Delta of a model's positions: its `ModelSpec.delta` (``model.simcheck_spec``) for
    simcheck's models; 1 for any other model, unless a `ModelAdapter` says otherwise. Reads
    attributes only, so probes can use it on any model, TransformerLens 4.x's included."""
    spec = getattr(model, "simcheck_spec", None)
    return spec.delta if spec is not None else 1


def model_window(model: Any) -> int:
    """tau of a simcheck model's local attention bias; 0 without one or for any other model."""
    spec = getattr(model, "simcheck_spec", None)
    return spec.locality if spec is not None and spec.locality is not None else 0
