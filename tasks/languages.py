"""Formal languages as next-character-set prediction: Tomita 1-7, Dyck-1 and Dyck-2.

Every position has a target: the set of characters that may come next, such that the
string can still be completed into the language, with an end-of-string mark (EOS) where the
prefix is itself in the language. The set is one class, its bitmask: character c is bit c,
EOS the bit after the alphabet (so Tomita has 2^3 = 8 classes, Dyck-2 2^5 = 32). A model is
right at a position when it predicts the whole set; a prefix that can no longer be
completed has the empty set (class 0).

Samples of length L are drawn uniformly among the strings of length L in the language; a
length with none (odd lengths of Dyck and of Tomita 2) draws uniformly among the strings
of length L that can still be completed (Dyck: those ending one bracket deep). The counts
that make the draw uniform are computed by dynamic programming in log space, so any length
works.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from simcheck._util.lazy_import import lazy_module
from simcheck.errors import TaskSpecError

from .registry import register_task
from .sequence import SequenceTask

torch = lazy_module("torch")

DEAD = -1
"""The DFA state of a prefix that no completion puts back into the language."""
PUMPING_DRAWS = 3
"""Pumped-down witnesses a formal language builds per long input."""


def _loops(visited: list[int]) -> list[tuple[int, int]]:
    """(i, j), i < j, with the same state at visits i and j and no repeat in between: the
    stretches a pumping step may cut."""
    last: dict[int, int] = {}
    loops = []
    for index, state in enumerate(visited):
        if state in last:
            loops.append((last[state], index))
        last[state] = index
    return loops


# Tomita's seven languages over {0, 1}, as DFAs: (transitions {state: (on 0, on 1)},
# accepting states). State 0 starts; DEAD absorbs.
TOMITA: dict[int, tuple[dict[int, tuple[int, int]], frozenset[int], str]] = {
    1: ({0: (DEAD, 0)}, frozenset({0}), "1*"),
    2: ({0: (DEAD, 1), 1: (0, DEAD)}, frozenset({0}), "(10)*"),
    # 0: outside a run of 1s that needs care; 1: odd run of 1s; 2: even run of 1s;
    # 3: odd run of 0s right after an odd run of 1s; 4: even such run
    3: (
        {0: (0, 1), 1: (3, 2), 2: (0, 1), 3: (4, DEAD), 4: (3, 1)},
        frozenset({0, 1, 2, 4}),
        "no odd run of 1s immediately followed by an odd run of 0s",
    ),
    4: ({0: (1, 0), 1: (2, 0), 2: (DEAD, 0)}, frozenset({0, 1, 2}), "no 000"),
    5: (
        {0: (1, 2), 1: (0, 3), 2: (3, 0), 3: (2, 1)},
        frozenset({0}),
        "even number of 0s and even number of 1s",
    ),
    6: ({0: (1, 2), 1: (2, 0), 2: (0, 1)}, frozenset({0}), "#0 - #1 = 0 (mod 3)"),
    7: ({0: (0, 1), 1: (2, 1), 2: (2, 3), 3: (DEAD, 3)}, frozenset({0, 1, 2, 3}), "0*1*0*1*"),
}


class _Step:
    """A transition function over a table: ``step(states, symbol)``."""

    def __init__(self, table: np.ndarray) -> None:
        self.table = table  # [states, symbols], -1 for none
        self.symbols = table.shape[1]

    def __call__(self, states: np.ndarray, symbol) -> np.ndarray:
        symbol = np.broadcast_to(symbol, states.shape)
        safe = np.clip(states, 0, None)
        return np.where(states >= 0, self.table[safe, symbol], -1)


def sample_paths(
    generator: np.random.Generator,
    log_counts: np.ndarray,
    step: _Step,
    start: np.ndarray,
    length: int,
    log_multiplicity: np.ndarray | None = None,
) -> np.ndarray:
    """Draw ``length`` symbols per row uniformly among the paths that ``log_counts`` counts.

    ``log_counts[r, s]`` is the log number of good completions of length r from state s;
    ``step(states, symbol)`` the next states (-1: no path); ``log_multiplicity[symbol]``
    the log number of strings one move stands for (default 0). Returns the symbols
    [batch, length]."""
    batch = start.shape[0]
    states = start.copy()
    symbols = np.zeros((batch, length), dtype=np.int64)
    options = log_counts.shape[1]
    for t in range(length):
        remaining = length - t - 1
        weights = []
        for symbol in range(step.symbols):
            nxt = step(states, symbol)
            w = np.where(nxt >= 0, log_counts[remaining][np.clip(nxt, 0, options - 1)], -np.inf)
            if log_multiplicity is not None:
                w = w + log_multiplicity[symbol]
            weights.append(w)
        logw = np.stack(weights, axis=1)
        logw = logw - logw.max(axis=1, keepdims=True)
        p = np.exp(logw)
        p /= p.sum(axis=1, keepdims=True)
        choice = (generator.random((batch, 1)) > np.cumsum(p, axis=1)).sum(1)
        choice = np.minimum(choice, step.symbols - 1)
        symbols[:, t] = choice
        states = step(states, choice)
    return symbols


@register_task
@dataclass(frozen=True)
class Tomita(SequenceTask):
    """Tomita(n): the set of next characters of Tomita language n (1-7) over {0, 1}.

    Next-character-set prediction (see the module docstring); classes: bitmasks of
    {0, 1, EOS}."""

    name: ClassVar[str] = "tomita"
    vocab_size: ClassVar[int] = 2
    default_layers: ClassVar[int] = 2
    default_pos: ClassVar[str] = "learned"

    n: int = 1

    def __post_init__(self) -> None:
        if self.n not in TOMITA:
            raise TaskSpecError(f"task 'tomita': n must be one of 1..7, got n={self.n}")

    @property
    def num_classes(self) -> int:
        return 8

    @property
    def description(self) -> str:
        return TOMITA[self.n][2]

    def target_span(self, length: int) -> tuple[int, int]:
        return 0, length - 1

    @functools.cached_property
    def _tables(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Transitions [states, 2] (-1 dead), accepting [states], live [states]."""
        transitions, accepting, _ = TOMITA[self.n]
        size = len(transitions)
        table = np.array([transitions[s] for s in range(size)], dtype=np.int64)
        accept = np.array([s in accepting for s in range(size)])
        live = accept.copy()
        for _ in range(size):
            nxt = np.where(table >= 0, live[np.clip(table, 0, None)], False)
            live = live | nxt.any(1)
        return table, accept, live

    def states(self, tokens: torch.Tensor) -> np.ndarray:
        """The DFA state after each prefix, [batch, length] (-1 dead)."""
        table, _, _ = self._tables
        step = _Step(table)
        array = tokens.numpy() if hasattr(tokens, "numpy") else np.asarray(tokens)
        state = np.zeros(array.shape[0], dtype=np.int64)
        out = np.empty(array.shape, dtype=np.int64)
        for t in range(array.shape[1]):
            state = step(state, array[:, t])
            out[:, t] = state
        return out

    def position_targets(self, tokens: torch.Tensor) -> torch.Tensor:
        table, accept, live = self._tables
        states = self.states(tokens)
        safe = np.clip(states, 0, None)
        mask = np.zeros(states.shape, dtype=np.int64)
        for symbol in (0, 1):
            nxt = table[safe, symbol]
            ok = (states >= 0) & (nxt >= 0) & live[np.clip(nxt, 0, None)]
            mask |= ok.astype(np.int64) << symbol
        mask |= ((states >= 0) & accept[safe]).astype(np.int64) << 2
        return torch.as_tensor(mask)

    def short_instances(
        self, x: np.ndarray, max_length: int, generator: np.random.Generator
    ) -> list[np.ndarray]:
        """x pumped down: cut the stretches between two visits of the same DFA state (chosen
        at random) until at most ``max_length`` tokens are left. The DFA ends in x's state,
        so the next-character set is x's. Three draws."""
        states = [0, *self.states(torch.as_tensor(np.asarray(x)[None]))[0].tolist()]
        if states[-1] == DEAD:
            return []
        out = []
        for _ in range(PUMPING_DRAWS):
            keep = list(range(len(x)))  # token t leads from states[t] to states[t + 1]
            visits = [0, *(t + 1 for t in keep)]
            while len(keep) > max_length:
                loops = _loops([states[v] for v in visits])
                if not loops:
                    break
                start, end = loops[int(generator.integers(len(loops)))]
                visits = visits[: start + 1] + visits[end + 1 :]
                keep = keep[:start] + keep[end:]
            if 1 <= len(keep) <= max_length:  # an empty string is no input
                out.append(np.asarray(x)[keep].astype(np.int64))
        return out

    def _log_counts(self, length: int, final: np.ndarray) -> np.ndarray:
        table, _, _ = self._tables
        counts = np.full((length + 1, table.shape[0]), -np.inf)
        counts[0] = np.where(final, 0.0, -np.inf)
        for r in range(1, length + 1):
            prev = counts[r - 1]
            w = np.where(table >= 0, prev[np.clip(table, 0, None)], -np.inf)
            counts[r] = np.logaddexp(w[:, 0], w[:, 1])
        return counts

    def sample(self, batch: int, length: int, generator: np.random.Generator) -> np.ndarray:
        table, accept, live = self._tables
        counts = self._log_counts(length, accept)
        if not np.isfinite(counts[length][0]):
            counts = self._log_counts(length, live)
        return sample_paths(generator, counts, _Step(table), np.zeros(batch, np.int64), length)


@register_task
@dataclass(frozen=True)
class Dyck(SequenceTask):
    """Dyck(k): the set of next characters of Dyck-k (k = 1 or 2 bracket types).

    Tokens: ``(`` = 0, ``)`` = 1, and for k = 2 ``[`` = 2, ``]`` = 3. Next set: any opening
    bracket (depth is unbounded), the closing bracket of the innermost open one, EOS at depth
    0; a prefix that closes what is not open has the empty set. Classes: bitmask of the 2k
    brackets and EOS. Samples are uniform among balanced strings of length L (L even) or
    among prefixes one bracket deep (L odd), bracket types uniform."""

    name: ClassVar[str] = "dyck"
    default_layers: ClassVar[int] = 2
    default_pos: ClassVar[str] = "learned"

    k: int = 1

    def __post_init__(self) -> None:
        if self.k not in (1, 2):
            raise TaskSpecError(f"task 'dyck': k must be 1 or 2, got k={self.k}")

    @property
    def vocab_size(self) -> int:  # type: ignore[override]
        return 2 * self.k

    @property
    def num_classes(self) -> int:
        return 2 ** (2 * self.k + 1)

    def target_span(self, length: int) -> tuple[int, int]:
        return 0, length - 1

    def position_targets(self, tokens: torch.Tensor) -> torch.Tensor:
        array = tokens.numpy() if hasattr(tokens, "numpy") else np.asarray(tokens)
        batch, length = array.shape
        stack = np.zeros((batch, length + 1), dtype=np.int64)  # bracket type per depth
        depth = np.zeros(batch, dtype=np.int64)
        alive = np.ones(batch, dtype=bool)
        rows = np.arange(batch)
        opens = sum(1 << (2 * t) for t in range(self.k))
        eos = 1 << (2 * self.k)
        out = np.zeros((batch, length), dtype=np.int64)
        for t in range(length):
            token = array[:, t]
            kind, closing = token // 2, token % 2 == 1
            top = stack[rows, np.clip(depth - 1, 0, None)]
            bad = closing & ((depth == 0) | (top != kind))
            alive &= ~bad
            pushed = ~closing
            stack[rows[pushed], depth[pushed]] = kind[pushed]
            depth = np.where(alive, np.where(pushed, depth + 1, depth - 1), 0)
            top = stack[rows, np.clip(depth - 1, 0, None)]
            mask = opens | np.where(depth > 0, 1 << (2 * top + 1), eos)
            out[:, t] = np.where(alive, mask, 0)
        return torch.as_tensor(out)

    def short_instances(
        self, x: np.ndarray, max_length: int, generator: np.random.Generator
    ) -> list[np.ndarray]:
        """x pumped down: cut balanced stretches (a bracket and its match, with all between)
        chosen at random, then unmatched opening brackets below the innermost, until at
        most ``max_length`` tokens are left. The innermost open bracket and whether one is
        open stay x's, so the next-character set is x's. Three draws."""
        tokens = [int(t) for t in x]
        stack: list[int] = []
        match: dict[int, int] = {}
        for i, t in enumerate(tokens):
            if t % 2 == 0:
                stack.append(i)
            elif not stack or tokens[stack[-1]] // 2 != t // 2:
                return []  # a dead prefix: nothing to keep
            else:
                match[stack.pop()] = i
        out = []
        for _ in range(PUMPING_DRAWS):
            keep = set(range(len(tokens)))
            spans = list(match.items())
            order = generator.permutation(len(spans))
            for k in order:
                if len(keep) <= max_length:
                    break
                start, end = spans[k]
                if start in keep and len(keep) - (end - start + 1) >= max_length // 2:
                    keep -= set(range(start, end + 1))
            for k in sorted(order):  # the smallest spans last, if still too long
                if len(keep) <= max_length:
                    break
                start, end = spans[k]
                if start in keep:
                    keep -= set(range(start, end + 1))
            for i in stack[:-1]:
                if len(keep) <= max_length:
                    break
                keep.discard(i)
            if len(keep) <= max_length and keep:
                out.append(np.array([tokens[i] for i in sorted(keep)], dtype=np.int64))
        return out

    def sample(self, batch: int, length: int, generator: np.random.Generator) -> np.ndarray:
        final = length % 2
        # log number of completions of r brackets from depth d ending at depth `final`,
        # every opening bracket counted k times (its type)
        counts = np.full((length + 1, length + 2), -np.inf)
        counts[0, final] = 0.0
        log_k = np.log(self.k)
        for r in range(1, length + 1):
            up = np.append(counts[r - 1, 1:], -np.inf) + log_k
            down = np.concatenate([[-np.inf], counts[r - 1, :-1]])
            counts[r] = np.logaddexp(up, down)
        depth_step = _Step(
            np.array([[d + 1 if d + 1 <= length else -1, d - 1] for d in range(length + 2)])
        )
        moves = sample_paths(
            generator,
            counts,
            depth_step,
            np.zeros(batch, np.int64),
            length,
            log_multiplicity=np.array([log_k, 0.0]),
        )
        kinds = generator.integers(0, self.k, size=(batch, length))
        tokens = np.zeros((batch, length), dtype=np.int64)
        stack = np.zeros((batch, length + 1), dtype=np.int64)
        depth = np.zeros(batch, dtype=np.int64)
        rows = np.arange(batch)
        for t in range(length):
            opening = moves[:, t] == 0
            top = stack[rows, np.clip(depth - 1, 0, None)]
            kind = np.where(opening, kinds[:, t], top)
            stack[rows[opening], depth[opening]] = kind[opening]
            depth = np.where(opening, depth + 1, depth - 1)
            tokens[:, t] = 2 * kind + (~opening)
        return tokens
