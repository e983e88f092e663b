"""Classification tasks: one class per sequence, decided at the last position.

Each oracle returns a class id per row, or `NO_CLASS` where the input has none (a tie for
the top count, an empty count); those rows are left out of losses, accuracies and the
check, and counted. Token frequencies are drawn per sequence (Beta or Dirichlet), so the
inputs span easy and near-tie cases at every length instead of concentrating on one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from simcheck._util.lazy_import import lazy_module

from .base import (
    MAX_VOCAB,
    NO_CLASS,
    OutputKind,
    Task,
    check_alpha,
    check_range,
    mixed_binary_tokens,
    token_counts,
)
from .binary import ResidueTask
from .registry import register_task

torch = lazy_module("torch")


def dirichlet_tokens(
    generator: np.random.Generator, alpha: float, vocab: int, batch: int, length: int
) -> np.ndarray:
    """[batch, length] tokens, each row i.i.d. from its own frequencies ~ Dirichlet(alpha)."""
    freq = generator.dirichlet(np.full(vocab, alpha), size=batch)
    cdf = np.cumsum(freq, axis=-1)
    cdf[:, -1] = 1.0
    uniforms = generator.random((batch, length))
    # a token is the number of cdf entries below its uniform; searched row by row, as the
    # comparison of every uniform with every entry would take batch x length x vocab memory
    tokens = np.empty((batch, length), dtype=np.int64)
    for row in range(batch):
        tokens[row] = np.searchsorted(cdf[row], uniforms[row])
    return tokens


def top_class(counts: torch.Tensor) -> torch.Tensor:
    """The index of the largest count per row [batch, classes], `NO_CLASS` where two or more
    share it (or every count is 0)."""
    top = counts.max(dim=-1, keepdim=True).values
    shared = (counts == top).sum(-1) > 1
    return torch.where(shared, torch.full_like(shared, NO_CLASS, dtype=torch.long),
                       counts.argmax(-1))  # fmt: skip


@dataclass(frozen=True)
class TokenFrequencyTask(Task):
    """Base of the class tasks over V tokens drawn i.i.d. from per-sequence frequencies
    ~ Dirichlet(alpha, ..., alpha) (not a task itself): parameters, checks and sampler."""

    output: ClassVar[OutputKind] = "classes"
    default_layers: ClassVar[int] = 1

    V: int = 2
    alpha: float = 1.0

    def __post_init__(self) -> None:
        check_range(self.name, "V", self.V, 2, MAX_VOCAB, " (vocabulary size)")
        check_alpha(self.name, self.alpha)

    @property
    def vocab_size(self) -> int:  # type: ignore[override]
        return self.V

    def sample(self, batch: int, length: int, generator: np.random.Generator) -> np.ndarray:
        return dirichlet_tokens(generator, self.alpha, self.V, batch, length)


@register_task
@dataclass(frozen=True)
class Majority(TokenFrequencyTask):
    """Majority(V): the most frequent token of the whole sequence; no class on a tie.

    Each sequence draws token frequencies from Dirichlet(alpha, ..., alpha), then its tokens
    independently. A one-layer model without positions computes it (uniform attention
    averages the token embeddings; the MLP picks the largest). Long inputs can be closer to
    a tie than any input of length <= N (a fraction of 1s within 1/N of 1/2): the witness
    resolution the check names.
    """

    name: ClassVar[str] = "majority"
    default_pos: ClassVar[str] = "none"
    margin_name: ClassVar[str] = "lead of the top token (share of the sequence)"

    def oracle(self, tokens: torch.Tensor) -> torch.Tensor:
        return top_class(token_counts(tokens, self.V))

    def margin(self, tokens: torch.Tensor) -> torch.Tensor:
        """(top count - second count) / length."""
        top2 = token_counts(tokens, self.V).topk(2, dim=-1).values
        return (top2[:, 0] - top2[:, 1]).double() / tokens.shape[1]


@register_task
@dataclass(frozen=True)
class Parity(Task):
    """Parity: the number of 1-tokens mod 2 (class 1 when odd).

    The frequency of 1s is drawn per sequence from Beta(alpha, alpha). Every token flips the
    answer, so no proportion of the input decides it: a standard failure case of length
    generalization.
    """

    name: ClassVar[str] = "parity"
    vocab_size: ClassVar[int] = 2
    output: ClassVar[OutputKind] = "classes"
    default_layers: ClassVar[int] = 2
    default_pos: ClassVar[str] = "none"

    alpha: float = 1.0

    def __post_init__(self) -> None:
        check_alpha(self.name, self.alpha)

    def sample(self, batch: int, length: int, generator: np.random.Generator) -> np.ndarray:
        return mixed_binary_tokens(generator, self.alpha, batch, length)

    def oracle(self, tokens: torch.Tensor) -> torch.Tensor:
        return (tokens == 1).sum(-1).remainder(2).long()


@register_task
@dataclass(frozen=True)
class ResidueMajority(ResidueTask):
    """ResidueMajority(p, k): whether 1s outnumber 0s among positions t = k (mod p).

    Class 1 when they do, 0 when 0s do, no class on a tie or when the residue class is
    empty (length <= k). Positions are 0-based. Each residue class draws its own frequency
    of 1s from Beta(alpha, alpha), so the global majority does not answer it: a model must
    read positions mod p (the classification twin of ModPTask; period Delta = p).
    """

    name: ClassVar[str] = "residue_majority"
    output: ClassVar[OutputKind] = "classes"
    margin_name: ClassVar[str] = "lead of 1s over 0s (share of the residue class)"

    def oracle(self, tokens: torch.Tensor) -> torch.Tensor:
        in_class = self.in_class(tokens.shape[1])
        ones = ((tokens == 1) & in_class).sum(-1)
        zeros = ((tokens == 0) & in_class).sum(-1)
        return top_class(torch.stack([zeros, ones], dim=-1))

    def margin(self, tokens: torch.Tensor) -> torch.Tensor:
        """|ones - zeros| / size among positions t = k (mod p) (0 for an empty class)."""
        in_class = self.in_class(tokens.shape[1])
        lead = (((tokens == 1) & in_class).sum(-1) - ((tokens == 0) & in_class).sum(-1)).abs()
        return lead.double() / max(int(in_class.sum()), 1)


@register_task
@dataclass(frozen=True)
class FirstToken(TokenFrequencyTask):
    """FirstToken(V): the token at position 0.

    Token frequencies are drawn per sequence from Dirichlet(alpha, ..., alpha), so the
    majority token agrees with the first one more often than chance: a model that cannot
    find position 0 falls back on it and fails at training length already. Finding
    position 0 needs positional information (learned positions without offsets), or the
    causal mask read through two layers.
    """

    name: ClassVar[str] = "first"
    default_pos: ClassVar[str] = "learned"

    def oracle(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens[:, 0].long()
