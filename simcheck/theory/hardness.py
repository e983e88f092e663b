"""Hard attention in p-bit precision, measured: how much attention is left outside the top
logits as the input grows, to see the threshold 2^(p/gamma) of `simcheck.theory.bounds` at work.

- `off_top_mass`, `top_gap`: per attention row, the mass outside (and the gap below) the top
  cluster of logits, with the tie rule of `simcheck.probes.logit_gaps` (single linkage, absolute
  ``tie_tol``, default 1e-6);
- `hardness_curve`: that mass against the length, in `FinitePrecision` attention;
- `first_hard_length`: the smallest length at which attention is exactly hard (bisection);
- `adversarial_tokens`: an input whose last query meets exactly the gap gamma.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from simcheck.errors import SimcheckError
from simcheck.model.chunked import FinitePrecision
from simcheck.model.recording import record
from simcheck.probes import AttentionLogits, AttentionRow
from simcheck.probes.logit_gaps import TIE_TOL, below_top
from simcheck.probes.logit_gaps import top_gap as top_gap  # re-exported: hardness's public API
from simcheck.tasks import Task
from simcheck.theory.bounds import LogitGap, LogitTable

InputFactory = Callable[[int], Any]
"""Returns token ids [batch, length'] for a requested length (length' may round it up)."""


def off_top_mass(
    logits: torch.Tensor, weights: torch.Tensor, tie_tol: float = TIE_TOL
) -> torch.Tensor:
    """The attention mass outside each row's top cluster of logits, [...] for [..., key]
    rows; the top cluster is `simcheck.probes.logit_gaps`'s (single linkage, steps of at most
    ``tie_tol`` tie). Exact zero means the row attends only to its top logits (hard
    attention)."""
    return (weights * below_top(logits, tie_tol)).sum(dim=-1)


def _factory(inputs: Task | InputFactory, samples: int, seed: int) -> InputFactory:
    if isinstance(inputs, Task):
        return lambda n: inputs.sample(samples, n, np.random.default_rng([seed, n]))
    return inputs


@torch.no_grad()
def _hardness_at(
    model: Any, tokens: Any, bits: int, layer: int, tie_tol: float
) -> tuple[int, torch.Tensor]:
    """(length, off-top mass [batch, head]) of the last query of ``tokens`` in p-bit mode."""
    rows, logits = AttentionRow(layer), AttentionLogits(layer)
    recording = record(model, tokens, [rows, logits], attention=FinitePrecision(bits))
    mass = off_top_mass(recording[logits.name], recording[rows.name], tie_tol)
    return recording.length, mass[:, 0]


def hardness_curve(
    model: Any,
    inputs: Task | InputFactory,
    lengths: Sequence[int],
    bits: int,
    layer: int = 0,
    tie_tol: float = TIE_TOL,
    samples: int = 64,
    seed: int = 0,
) -> pd.DataFrame:
    """The attention mass outside the top-logit cluster at the last position, in p-bit
    attention, per length: columns ``length`` (the real length of the inputs),
    ``max_off_top_mass`` (over inputs and heads) and ``mean_off_top_mass``.

    ``inputs`` is a task (``samples`` random inputs per length, seeded by ``seed`` and the
    length) or a function from a length to token ids, e.g.
    ``functools.partial(adversarial_tokens, table, gap)``.
    """
    make = _factory(inputs, samples, seed)
    rows = []
    for n in lengths:
        length, mass = _hardness_at(model, make(n), bits, layer, tie_tol)
        rows.append(
            {
                "length": length,
                "max_off_top_mass": float(mass.max()),
                "mean_off_top_mass": float(mass.mean()),
            }
        )
    return pd.DataFrame(rows)


def first_hard_length(
    model: Any,
    inputs: InputFactory,
    bits: int,
    low: int,
    high: int,
    layer: int = 0,
    tie_tol: float = TIE_TOL,
) -> int | None:
    """The smallest length in [low, high] at which the inputs' last query attends only to its
    top logits in p-bit attention, by bisection: valid for inputs whose set of logits does
    not change with length (such as `adversarial_tokens`), where hardness is monotone in
    the length. Returns the real length of the inputs, or None when ``high`` is not hard."""

    def hard(n: int) -> tuple[bool, int]:
        length, mass = _hardness_at(model, inputs(n), bits, layer, tie_tol)
        return bool((mass == 0).all()), length

    is_hard, length = hard(high)
    if not is_hard:
        return None
    is_hard, low_length = hard(low)
    if is_hard:
        return low_length
    while high - low > 1:  # invariant: low is soft, high is hard
        middle = (low + high) // 2
        is_hard, middle_length = hard(middle)
        if is_hard:
            high, length = middle, middle_length
        else:
            low = middle
    return length


def _lowest_token(table: LogitTable, head: int, query: int, residue: int) -> int:
    """The token whose key type at ``residue`` has the lowest content logit for the query."""
    vocab = len(table.types) // table.period
    keys = [table.type_index(t, residue) for t in range(vocab)]
    return int(torch.argmin(table.content[head, query, keys]))


def adversarial_tokens(table: LogitTable, gap: LogitGap, length: int) -> torch.Tensor:
    """An input [1, n] that attacks gamma: its last position has the query type of the row
    attaining gamma, and its keys take the two key types on either side of the gap (at their
    residues, or at their offsets when inside the local window); positions that can hold
    neither take the token of lowest logit for their residue. n is the smallest length
    >= ``length`` whose last position has the query's residue.

    When those lowest-logit keys (or the window's) still sit above the gap, the gap that
    decides hardness is larger than gamma: check it with ``top_gap(row_logits(...))``.
    """
    if gap.head is None or gap.query is None or gap.upper is None or gap.lower is None:
        raise SimcheckError("every query row has a single distinct logit: there is no gap")
    head, query = gap.head, gap.query
    token_q, residue_q = table.types[query]
    n = length + (residue_q + 1 - length) % table.period
    tau = table.locality if table.local_bias is not None else 0
    if n <= tau + 1:
        raise SimcheckError(f"the input must be longer than the window: use length > {tau + 1}")
    pair = (gap.upper, gap.lower)
    tokens = torch.empty(n, dtype=torch.long)
    for position in range(n):
        offset = n - 1 - position
        residue = position % table.period
        inside = offset <= tau and table.local_bias is not None
        fits = [
            e
            for e in pair
            if (e.offset == offset if inside else e.offset is None)
            and table.types[e.key][1] == residue
        ]
        if fits:
            tokens[position] = table.types[fits[(position // table.period) % len(fits)].key][0]
        else:
            tokens[position] = _lowest_token(table, head, query, residue)
    tokens[n - 1] = token_q
    return tokens[None]
