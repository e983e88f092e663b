"""Sequence-to-sequence tasks: ``input SEP output``, a target at every output position.

A sequence of length L holds an input segment, a separator and the output written so far
(teacher forcing); each position from the separator on predicts the next output token.
Samples always end on a target, and a sample of length L is a prefix of a full instance,
so every length is available. Layouts (n input tokens):

- copy, sort, reverse: n = ceil(L / 2); a full instance (input, SEP, output) has length
  2n + 1 and the sample of length 2n predicts all n output tokens.
- interleaved majority (period p): n = L - p; p answers, one per residue class.
- addition: two m-digit operands, m = floor(L / 3): ``a + b = c`` with the m + 1 digits of
  the sum, most significant first (a leading 0 where there is no carry).

"Length" is the whole sequence the model reads, input and output together, as simcheck
measures every task; the oracles answer any token string (`separator_targets`), reading
the input segment only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from simcheck._util.lazy_import import lazy_module
from simcheck.errors import TaskSpecError

from .base import MAX_PERIOD, MAX_VOCAB, NO_CLASS, check_alpha, check_range
from .registry import register_task
from .sequence import SequenceTask, separator_targets

torch = lazy_module("torch")

WINDOW = 2
"""Written output tokens a sub-instance keeps (`_Transduction.short_instances`)."""
PUMPING_DRAWS = 3
"""Random sub-instances of interleaved majority per long input."""


def distinct_tokens(
    generator: np.random.Generator, vocab: int, batch: int, count: int
) -> np.ndarray:
    """[batch, count] tokens, each row ``count`` distinct ids of 0..vocab-1 in random order."""
    return np.argsort(generator.random((batch, vocab)), axis=1)[:, :count]


@dataclass(frozen=True)
class _Transduction(SequenceTask):
    """Base of copy, sort and reverse: n = ceil(L / 2) input tokens, SEP = V, the output
    has n tokens over the V data symbols (the classes)."""

    V: int = 4
    unique: ClassVar[bool] = False
    min_length: ClassVar[int] = 2
    default_layers: ClassVar[int] = 2
    default_pos: ClassVar[str] = "learned"

    def __post_init__(self) -> None:
        check_range(self.name, "V", self.V, 2, MAX_VOCAB, " (data symbols)")

    @property
    def vocab_size(self) -> int:  # type: ignore[override]
        return self.V + 1

    @property
    def num_classes(self) -> int:
        return self.V

    @staticmethod
    def input_length(length: int) -> int:
        return (length + 1) // 2

    def target_span(self, length: int) -> tuple[int, int]:
        return self.input_length(length), length - 1

    def order(self, source: list[int]) -> list[int]:
        """The input index each output token copies, in output order."""
        raise NotImplementedError

    def answer(self, source: list[int]) -> list[int]:
        return [source[i] for i in self.order(source)]

    def short_instances(
        self, x: np.ndarray, max_length: int, generator: np.random.Generator
    ) -> list[np.ndarray]:
        """Sub-instances on a subset S of the input: S holds the input tokens the next output
        and the last ``WINDOW`` written ones copy, so the short instance ``x[S] SEP`` (with its
        own output written up to there) ends on the same tokens and asks for the same one.
        Three subsets: those tokens with the input tokens nearest the next one's (a
        contiguous stretch for copy), and random ones of the largest size and of half of
        it."""
        row = [int(t) for t in x]
        if self.V not in row:
            return []
        sep = row.index(self.V)
        source, written = row[:sep], len(row) - sep - 1
        order = self.order(source)
        if written >= len(order) or not source:
            return []
        needed = sorted({order[k] for k in range(max(0, written - WINDOW), written + 1)})
        # the short instance holds |S| + 1 + (outputs before the next) <= 2 |S| tokens
        size = min(len(source), max(max_length - 1 - written, max_length // 2))
        if size < len(needed):
            return []
        rest = [i for i in range(len(source)) if i not in needed]
        nearest = sorted(rest, key=lambda i: abs(i - order[written]))
        subsets = [sorted([*needed, *nearest[: size - len(needed)]])]
        for count in (size, max(len(needed), size // 2)):
            extra = generator.choice(len(rest), size=count - len(needed), replace=False)
            subsets.append(sorted(set(needed) | {rest[i] for i in extra}))
        out = []
        for subset in subsets:
            if order[written] not in subset or not set(needed) <= set(subset):
                continue
            short = [source[i] for i in subset]
            position = subset.index(order[written])
            index = self.order(short).index(position)
            z = [*short, self.V, *self.answer(short)[:index]]
            if len(z) <= max_length:
                out.append(np.array(z, dtype=np.int64))
        return out

    def sample(self, batch: int, length: int, generator: np.random.Generator) -> np.ndarray:
        n = self.input_length(length)
        if self.unique:
            if n > self.V:
                raise TaskSpecError(
                    f"task '{self.spec()}' needs {n} distinct tokens at length {length} but has "
                    f"V={self.V}; raise V to at least {n}"
                )
            source = distinct_tokens(generator, self.V, batch, n)
        else:
            source = generator.integers(0, self.V, size=(batch, n))
        output = np.array([self.answer(row) for row in source.tolist()], dtype=np.int64)
        separator = np.full((batch, 1), self.V, dtype=np.int64)
        return np.concatenate([source, separator, output], axis=1)[:, :length]

    def position_targets(self, tokens: torch.Tensor) -> torch.Tensor:
        return separator_targets(tokens, self.V, self.answer)


@register_task
@dataclass(frozen=True)
class UniqueCopy(_Transduction):
    """UniqueCopy(V): copy n distinct tokens of V after the separator (SEP = V).

    Distinct tokens make each output the successor of the current token's occurrence in
    the input (an induction head), with no need for positions."""

    name: ClassVar[str] = "unique_copy"
    unique: ClassVar[bool] = True
    V: int = 100

    def order(self, source: list[int]) -> list[int]:
        return list(range(len(source)))


@register_task
@dataclass(frozen=True)
class RepeatCopy(_Transduction):
    """RepeatCopy(V): copy n i.i.d. uniform tokens of V after the separator (SEP = V).

    Repeats are common, so the current token does not say where the copy stands: a model
    must track positions."""

    name: ClassVar[str] = "repeat_copy"

    def order(self, source: list[int]) -> list[int]:
        return list(range(len(source)))


@register_task
@dataclass(frozen=True)
class Sort(_Transduction):
    """Sort(V): write n distinct tokens of V in ascending order after the separator (SEP = V).

    Each output is the smallest input token larger than the previous output (the oracle
    sorts any input, repeats included)."""

    name: ClassVar[str] = "sort"
    unique: ClassVar[bool] = True
    V: int = 100

    def order(self, source: list[int]) -> list[int]:
        return sorted(range(len(source)), key=lambda i: source[i])


@register_task
@dataclass(frozen=True)
class Reverse(_Transduction):
    """Reverse(V): write n i.i.d. uniform tokens of V backwards after the separator (SEP = V).

    Output k is input n - 1 - k, an offset that grows with the length."""

    name: ClassVar[str] = "reverse"

    def order(self, source: list[int]) -> list[int]:
        return list(reversed(range(len(source))))


@register_task
@dataclass(frozen=True)
class InterleavedMajority(SequenceTask):
    """InterleavedMajority(p): the majority bit of each residue class mod p, after SEP.

    n = L - p binary tokens, SEP (id 2), then p answers, the majority bit of the input
    positions t = r (mod p) for r = 0..p-1 (0-based; no class on a tie or an empty class).
    Each residue class draws its frequency of 1s from
    Beta(alpha, alpha), so the answers differ and the global majority does not give them."""

    name: ClassVar[str] = "interleaved_majority"
    vocab_size: ClassVar[int] = 3
    default_layers: ClassVar[int] = 2
    default_pos: ClassVar[str] = "learned"

    p: int = 3
    alpha: float = 1.0

    def __post_init__(self) -> None:
        check_range(self.name, "p", self.p, 1, MAX_PERIOD, " (the period)")
        check_alpha(self.name, self.alpha)

    @property
    def num_classes(self) -> int:
        return 2

    @property
    def min_length(self) -> int:  # type: ignore[override]
        return self.p + 1

    @property
    def period(self) -> int:  # type: ignore[override]
        return self.p

    def target_span(self, length: int) -> tuple[int, int]:
        return length - self.p, length - 1

    def answer(self, source: list[int]) -> list[int]:
        out = []
        for r in range(self.p):
            ones = sum(1 for t in source[r :: self.p] if t == 1)
            zeros = sum(1 for t in source[r :: self.p] if t == 0)
            out.append(NO_CLASS if ones == zeros else int(ones > zeros))
        return out

    def short_instances(
        self, x: np.ndarray, max_length: int, generator: np.random.Generator
    ) -> list[np.ndarray]:
        """Sub-instances on whole periods of the input: a random subset of its blocks of p
        positions (each keeps its residues), the partial last block kept, with the answers
        written as far as x's. Each residue class keeps about its share of 1s, so the
        answer is x's unless x is near a tie. Three draws."""
        row = [int(t) for t in x]
        if 2 not in row:
            return []
        sep = row.index(2)
        source, written = row[:sep], len(row) - sep - 1
        if written >= self.p:
            return []
        blocks, partial = divmod(len(source), self.p)
        room = (max_length - 1 - written - partial) // self.p
        if room < 1:
            return []
        out = []
        for _ in range(PUMPING_DRAWS):
            chosen = np.sort(generator.choice(blocks, size=min(room, blocks), replace=False))
            short = [t for b in chosen for t in source[b * self.p : (b + 1) * self.p]]
            short += source[blocks * self.p :]
            answers = [max(a, 0) for a in self.answer(short)]  # a tie is written as 0
            out.append(np.array([*short, 2, *answers[:written]], dtype=np.int64))
        return out

    def sample(self, batch: int, length: int, generator: np.random.Generator) -> np.ndarray:
        if length < self.min_length:
            raise TaskSpecError(
                f"task '{self.spec()}' needs length >= {self.min_length}, got {length}"
            )
        n = length - self.p
        freq = generator.beta(self.alpha, self.alpha, size=(batch, self.p))
        residue = np.arange(n) % self.p
        source = (generator.random((batch, n)) < freq[:, residue]).astype(np.int64)
        output = np.array([self.answer(row) for row in source.tolist()], dtype=np.int64)
        output = np.where(output < 0, 0, output)  # a tie has no answer: any bit is written
        separator = np.full((batch, 1), 2, dtype=np.int64)
        return np.concatenate([source, separator, output], axis=1)[:, :length]

    def position_targets(self, tokens: torch.Tensor) -> torch.Tensor:
        return separator_targets(tokens, 2, self.answer)


@register_task
@dataclass(frozen=True)
class Addition(SequenceTask):
    """Addition(B): the digits of a + b after ``=``, most significant first, in base B.

    Two m-digit operands (m = floor(L / 3),
    digits uniform, leading zeros allowed), then the m + 1 digits of the sum, most
    significant first. Tokens: digits 0..B-1, ``+`` = B, ``=`` = B + 1. The oracle adds
    operands of any lengths; a string without ``+`` before ``=``, or with an empty operand,
    has no target."""

    name: ClassVar[str] = "addition"
    min_length: ClassVar[int] = 4
    default_layers: ClassVar[int] = 2
    default_pos: ClassVar[str] = "learned"

    B: int = 10

    def __post_init__(self) -> None:
        check_range(self.name, "B", self.B, 2, MAX_VOCAB, " (the base)")

    @property
    def vocab_size(self) -> int:  # type: ignore[override]
        return self.B + 2

    @property
    def num_classes(self) -> int:
        return self.B

    def target_span(self, length: int) -> tuple[int, int]:
        return 2 * (length // 3) + 1, length - 1

    def answer(self, source: list[int]) -> list[int] | None:
        if self.B not in source:
            return None
        plus = source.index(self.B)
        a, b = source[:plus], source[plus + 1 :]
        if not a or not b or self.B in b:
            return None
        width = max(len(a), len(b)) + 1
        total = _value(a, self.B) + _value(b, self.B)
        return [(total // self.B**k) % self.B for k in reversed(range(width))]

    def sample(self, batch: int, length: int, generator: np.random.Generator) -> np.ndarray:
        if length < self.min_length:
            raise TaskSpecError(f"task '{self.spec()}' needs length >= 4, got {length}")
        m = length // 3
        a = generator.integers(0, self.B, size=(batch, m))
        b = generator.integers(0, self.B, size=(batch, m))
        plus = np.full((batch, 1), self.B)
        equals = np.full((batch, 1), self.B + 1)
        source = np.concatenate([a, plus, b], axis=1)
        output = np.array([self.answer(row) for row in source.tolist()], dtype=np.int64)
        return np.concatenate([source, equals, output], axis=1)[:, :length].astype(np.int64)

    def position_targets(self, tokens: torch.Tensor) -> torch.Tensor:
        return separator_targets(tokens, self.B + 1, self.answer)


def _value(digits: list[int], base: int) -> int:
    value = 0
    for digit in digits:
        value = value * base + digit
    return value
