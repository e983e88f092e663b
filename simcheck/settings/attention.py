"""Attention modes by name: ``"softmax"`` or the paper's finite precision, `FinitePrecision`.

Kept apart from `simcheck.model.chunked`, which computes attention with torch and
TransformerLens, so that settings naming a mode (`simcheck.checking.config.CheckConfig`, the
command line's flags) can be read and checked without importing either.
"""

from __future__ import annotations

from dataclasses import dataclass

from simcheck.errors import SimcheckError

MAX_BITS = 64
"""The most bits a finite-precision mode takes (beyond float32's own exponent range anyway)."""


@dataclass(frozen=True)
class FinitePrecision:
    """The paper's finite-precision attention with ``bits`` bits (see `simcheck.model.chunked`)."""

    bits: int = 8

    def __post_init__(self) -> None:
        if not 1 <= self.bits <= MAX_BITS:
            raise SimcheckError(f"precision bits must be in 1..{MAX_BITS}, got {self.bits}")

    @property
    def name(self) -> str:
        return f"hardmax:{self.bits}"


AttentionMode = str | FinitePrecision


def parse_attention(mode: AttentionMode | None) -> AttentionMode:
    """``"softmax"``, ``"hardmax"`` (8 bits), ``"hardmax:P"`` or a `FinitePrecision`."""
    if mode is None or mode == "softmax":
        return "softmax"
    if isinstance(mode, FinitePrecision):
        return mode
    if isinstance(mode, str) and mode.split(":")[0] == "hardmax":
        _, colon, bits = mode.partition(":")
        if colon and not bits.isdigit():
            raise SimcheckError(f"attention mode '{mode}': write hardmax:P with P a bit count")
        return FinitePrecision(int(bits)) if bits else FinitePrecision()
    raise SimcheckError(f"unknown attention mode {mode!r}; use 'softmax', 'hardmax' or 'hardmax:P'")


def attention_name(mode: AttentionMode) -> str:
    """The mode as a string, for records and file names."""
    return mode.name if isinstance(mode, FinitePrecision) else mode
