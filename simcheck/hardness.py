"""Hard attention in p-bit precision, measured: how much attention is left outside the top
logits as the input grows, to see the threshold 2^(p/gamma) of `simcheck.bounds` at work.

- `off_top_mass`, `top_gap`: per attention row, the mass outside (and the gap below) the top
  cluster of logits;
- `hardness_curve`: that mass against the length, in `FinitePrecision` attention;
- `first_hard_length`: the smallest length at which attention is exactly hard (bisection);
- `adversarial_tokens`: an input whose last query meets exactly the gap gamma.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from simcheck.attention import FinitePrecision
from simcheck.bounds import LogitGap, LogitTable
from simcheck.errors import SimcheckError
from simcheck.probes import AttentionLogits, AttentionRow
from simcheck.recording import record
from simcheck.tasks import Task

InputFactory = Callable[[int], Any]
"""Returns token ids [batch, length'] for a requested length (length' may round it up)."""


def _top_cutoff(logits: torch.Tensor, tie_tol: float) -> torch.Tensor:
    """The smallest value of each row's top cluster (values linked to the maximum by steps
    of at most ``tie_tol``), [..., 1]; masked (-inf) keys are ignored."""
    ordered = logits.nan_to_num(nan=-math.inf).sort(dim=-1, descending=True).values
    steps = ordered[..., :-1] - ordered[..., 1:]  # -inf - -inf is nan: no break
    # a sentinel break after the last key: a row of one cluster is cut at its end
    sentinel = torch.ones_like(steps[..., :1], dtype=torch.bool)
    breaks = torch.cat([steps > tie_tol, sentinel], dim=-1)
    first = breaks.int().argmax(dim=-1, keepdim=True)  # argmax returns the first maximum
    return ordered.gather(-1, first)


def top_gap(logits: torch.Tensor, tie_tol: float = 1e-6) -> torch.Tensor:
    """Each row's gap between its top cluster and the next value present, [...] for logits
    [..., key]; inf when the row has one cluster."""
    cutoff = _top_cutoff(logits, tie_tol)
    below = logits.masked_fill(~(logits < cutoff), -math.inf).amax(dim=-1, keepdim=True)
    return (cutoff - below)[..., 0]


def off_top_mass(
    logits: torch.Tensor, weights: torch.Tensor, tie_tol: float = 1e-6
) -> torch.Tensor:
    """The attention mass outside each row's top cluster of logits, [...] for [..., key]
    rows. With a small ``tie_tol`` the top cluster is the keys within tie_tol of the row's
    maximum; exact zero means the row attends only to its top logits (hard attention)."""
    off = torch.isfinite(logits) & (logits < _top_cutoff(logits, tie_tol))
    return (weights * off).sum(dim=-1)


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
    tie_tol: float = 1e-6,
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
    tie_tol: float = 1e-6,
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
