"""In-context k-gram: the paper's two-layer task, an induction head generalised to k-1 tokens."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from simcheck._util.lazy_import import lazy_module
from simcheck.errors import TaskSpecError

from .base import MAX_VOCAB, OutputKind, Task, check_alpha, check_range, token_counts
from .registry import register_task

torch = lazy_module("torch")


MAX_TRANSITIONS = 1 << 20
"""The most transition probabilities a sequence may draw: S^k, a row of S for each of the
S^(k-1) contexts."""


@register_task
@dataclass(frozen=True)
class InContextKGram(Task):
    """InContextKGram(S, k): predict the next token from what followed the current context.

    Inputs: each sequence comes from its own random order-(k-1) Markov chain over S tokens.
    Every context (k-1 tokens) gets a transition row drawn from Dirichlet(alpha, ..., alpha);
    the first k-1 tokens are uniform.

    Target (at the last position n-1): the context is the last k-1 tokens
    x[n-k+1 .. n-1]. Every earlier occurrence of it, ending at t <= n-2, contributes its
    follower x[t+1]; the target is the empirical distribution of those followers. With no
    earlier occurrence (including sequences shorter than k) the target is uniform over the S
    tokens: the posterior mean of the Dirichlet prior given no data. For k=1 the context is
    empty and the target is the token histogram of the whole sequence.

    Loss: KL(target || model), cross-entropy minus the target's entropy. Metric: total
    variation distance. Locality tau = k-1: the model needs the k-1 previous tokens at each
    position, which the limit transformer reads through its local attention bias.
    """

    name: ClassVar[str] = "kgram"
    output: ClassVar[OutputKind] = "distribution"
    default_layers: ClassVar[int] = 2
    default_pos: ClassVar[str] = "periodic"

    S: int = 3
    k: int = 2
    alpha: float = 1.0

    def __post_init__(self) -> None:
        check_range(self.name, "S", self.S, 2, MAX_VOCAB, " (vocabulary size)")
        if self.k < 1:
            raise TaskSpecError(f"task 'kgram': k must be >= 1, got k={self.k}")
        # compared in logs: S ** k itself can be too large to compute or to print
        if self.k * math.log(self.S) > math.log(MAX_TRANSITIONS):
            raise TaskSpecError(
                f"task 'kgram': S^k transition probabilities (S={self.S}, k={self.k}) are more "
                f"than {MAX_TRANSITIONS} to sample for each sequence; lower S or k"
            )
        check_alpha(self.name, self.alpha)

    @property
    def vocab_size(self) -> int:  # type: ignore[override]
        return self.S

    @property
    def locality(self) -> int:  # type: ignore[override]
        return self.k - 1

    @property
    def min_length(self) -> int:  # type: ignore[override]
        return self.k

    def sample(self, batch: int, length: int, generator: np.random.Generator) -> np.ndarray:
        contexts = self.S ** (self.k - 1)
        rows = generator.dirichlet(np.full(self.S, self.alpha), size=(batch, contexts))
        cdf = np.cumsum(rows, axis=-1)
        cdf[..., -1] = 1.0
        tokens = np.empty((batch, length), dtype=np.int64)
        start = min(self.k - 1, length)
        tokens[:, :start] = generator.integers(0, self.S, size=(batch, start))
        uniforms = generator.random((batch, max(length - start, 0)))
        context = np.zeros(batch, dtype=np.int64)
        for t in range(start):
            context = context * self.S + tokens[:, t]
        modulus = contexts  # context index keeps the last k-1 tokens in base S
        arange = np.arange(batch)
        for step, t in enumerate(range(start, length)):
            row_cdf = cdf[arange, context]
            nxt = (uniforms[:, step, None] > row_cdf).sum(-1)
            tokens[:, t] = nxt
            context = (context * self.S + nxt) % modulus if modulus > 1 else context
        return tokens

    def follower_counts(self, tokens: torch.Tensor) -> torch.Tensor:
        """Counts [batch, S] of the tokens that followed earlier occurrences of the context."""
        batch, n = tokens.shape
        width = self.k - 1
        starts = n - width  # occurrences start at s = 0 .. n-k, followers at s + k - 1
        if starts <= 0:
            return torch.zeros(batch, self.S)
        followers = tokens[:, width:]
        if width == 0:
            match = torch.ones_like(followers, dtype=torch.bool)
        else:
            windows = tokens.unfold(1, width, 1)[:, :starts]
            match = (windows == tokens[:, None, n - width :]).all(-1)
        return token_counts(followers, self.S, match.float())

    def oracle(self, tokens: torch.Tensor) -> torch.Tensor:
        counts = self.follower_counts(tokens)
        total = counts.sum(-1, keepdim=True)
        uniform = torch.full_like(counts, 1.0 / self.S)
        return torch.where(total > 0, counts / total.clamp_min(1), uniform)

    def baseline(self, tokens: torch.Tensor) -> torch.Tensor:
        """Log-probabilities of the sequence's own unigram histogram (add-1/2 smoothing): a
        model that ignores context."""
        counts = token_counts(tokens, self.S).float() + 0.5
        return (counts / counts.sum(-1, keepdim=True)).log()
