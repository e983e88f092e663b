"""The theory's numbers computed from trained weights: logit gap, weight norm and the training
lengths of Thm 4.1 (one layer) and Thm 5.2 (two layers).

Izzo, Nichani & Lee bound the training length N past which a model length-generalizes by
quantities of its weights (arXiv 2510.27015): gamma, the smallest gap between
distinct achievable first-layer attention logits; L, a norm bound of the weights; the period
Delta, the vocabulary |Sigma| and the locality tau; and for two layers the positional margin
and a complexity C(g). This module reads them off a model:

- `attention_logit_table`: every achievable layer-0 logit, by (query type, key type), where a
  type is (token, position mod Delta); computed with the model's own modules;
- `logit_gap` (gamma), `weight_norm_bound` (L), `positional_margin` (gamma_pos) and
  `complexity_proxy` (a proxy for C(g));
- `hardmax_threshold`, `theorem_4_1_N`, `theorem_5_2_N`: the formulas, with the unknown
  constant taken as 1;
- `bounds`: all of it for one model, as a `Bounds` report, beside an optional measured N*
  (`simcheck.sweeps.table.empirical_n_star` reads it from a sweep's results table).

`simcheck.theory.hardness` measures, in p-bit attention, the threshold 2^(p/gamma) at work.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
from transformer_lens.components.abstract_attention import AbstractAttention

from simcheck.errors import SimcheckError
from simcheck.model.recording import as_tokens
from simcheck.model.subject import Subject, subject_of
from simcheck.probes.logit_gaps import TIE_TOL, top_gap
from simcheck.settings.adapter import ModelAdapter

UNKNOWN_CONSTANT = "up to an unknown constant (taken as 1)"
"""How every theoretical N is labelled: the paper's O(.) hides a constant nobody has computed."""

TABLE_POSITIONS = ("periodic", "none")
"""Positional encodings with a finite set of position types (residues mod Delta)."""


# ------------------------------------------------------------------ the logit table
class Entry(NamedTuple):
    """One achievable logit of a query row: its value, the key type, and the offset i - j of
    the key when it sits inside the local window (None: outside, no local bias)."""

    value: float
    key: int
    offset: int | None


@dataclass(frozen=True)
class LogitTable:
    """The achievable layer-0 attention logits of a model with periodic (or no) positions.

    A type is (token, residue) with residue = position mod ``period``; type index
    ``token * period + residue`` (as `simcheck.probes.AttentionMass` with ``by="type"``).

    Attributes:
        content: [head, query_type, key_type], the logit of a key outside the local window
            (offset i - j > tau): q(type) . k(type) / attn_scale.
        local_bias: [head, tau + 1], phi[h, o], added to the logit of a key at offset o <= tau
            (whose residue is then (r_q - o) mod period), or None without a local bias. The
            model scales it by log(i + 1) at query i when its ``local_scale`` is ``"log"``;
            the table keeps it at unit scale, as the model does with ``"constant"``.
        types: (token, residue) of each type index.
        period: Delta.
        local_scale: the model's scaling of the local bias (``"log"`` or ``"constant"``).
    """

    content: torch.Tensor
    local_bias: torch.Tensor | None
    types: tuple[tuple[int, int], ...]
    period: int
    local_scale: str = "log"

    @property
    def n_heads(self) -> int:
        return self.content.shape[0]

    @property
    def locality(self) -> int:
        """tau; 0 without a local bias (only the query itself is 'local' then)."""
        return 0 if self.local_bias is None else self.local_bias.shape[1] - 1

    def type_index(self, token: int, residue: int) -> int:
        return token * self.period + residue

    def label(self, index: int) -> str:
        token, residue = self.types[index]
        return f"(t={token}, r={residue})"

    def entry_label(self, entry: Entry) -> str:
        where = "" if entry.offset is None else f" at offset {entry.offset}"
        return f"key {self.label(entry.key)}{where}"

    def achievable(self, head: int, query: int) -> list[Entry]:
        """Every logit the query type ``query`` can see in head ``head`` (local bias at unit
        scale): each key type outside the window (each occurs there in a long enough input),
        and inside it the key types that fit each offset o (residue r_q - o; at o = 0 the
        key is the query itself)."""
        row = self.content[head, query]
        entries = [Entry(float(row[k]), k, None) for k in range(len(self.types))]
        if self.local_bias is None:
            return entries
        token_q, residue_q = self.types[query]
        vocab = len(self.types) // self.period
        for offset in range(self.locality + 1):
            residue = (residue_q - offset) % self.period
            tokens = [token_q] if offset == 0 else range(vocab)
            bias = float(self.local_bias[head, offset])
            for token in tokens:
                key = self.type_index(token, residue)
                entries.append(Entry(float(row[key]) + bias, key, offset))
        return entries


def _subject(subject: Any, adapter: ModelAdapter | None = None) -> Subject:
    """A `Subject` from an already resolved subject, a model, or a `Run` (anything that holds
    a ``model``). Run directories are resolved before they get here, by `simcheck.api.bounds`
    (the analysis never reads storage)."""
    if isinstance(subject, Subject):
        return subject
    return subject_of(getattr(subject, "model", subject), adapter=adapter, needs=())


def _check_table_model(subject: Subject, layer: int) -> Subject:
    positions = subject.adapter.positions
    if positions not in TABLE_POSITIONS:
        raise SimcheckError(
            f"the bounds need periodic or no positions, but this model has {positions} "
            "positions (no finite set of position types); train with pos='periodic' or "
            "'none', or declare ModelAdapter(positions='periodic', period=...) if the model's "
            "positions are periodic"
        )
    n_layers = subject.model.cfg.n_layers
    if not 0 <= layer < n_layers:
        raise SimcheckError(f"layer {layer} does not exist; the model has layers 0..{n_layers - 1}")
    if layer != 0:
        raise SimcheckError(
            f"layer {layer}'s attention inputs depend on the whole context (earlier layers mix "
            "positions), so its logits have no finite table; use layer=0"
        )
    return subject


def _type_embeddings(subject: Subject) -> torch.Tensor:
    """The layer-0 residual stream of every type, [types, d_model]: the model's ``embed`` row
    of the token plus its ``pos_embed`` row of the residue, in type order."""
    model, period = subject.model, subject.adapter.period
    device = model.W_E.device
    tokens = torch.arange(model.cfg.d_vocab, device=device)
    embed = model.embed(tokens[None, :])[0]  # [vocab, d_model]
    positions = model.pos_embed(torch.zeros(1, period, dtype=torch.long, device=device))[0]
    return (embed[:, None, :] + positions[None, :, :]).reshape(-1, embed.shape[-1])


@torch.no_grad()
def attention_logit_table(subject: Any, layer: int = 0) -> LogitTable:
    """Enumerate the achievable pre-softmax attention logits of each head of ``layer`` (0 only),
    exactly as the model computes them: type embeddings, then ``ln1`` (TransformerLens's
    LayerNorm, LayerNormPre or identity), then W_Q, b_Q, W_K, b_K and the division by
    ``attn.attn_scale`` (sqrt(d_head)). The local bias is kept apart (see `LogitTable`).

    ``subject`` is a model, a run (directory) or a resolved `Subject`. Layer 0 only: a later
    layer's inputs depend on the context. Periodic or no positions only: learned, rotary or
    ALiBi positions have no finite set of position types.
    """
    subject = _check_table_model(_subject(subject), layer)
    model, period = subject.model, subject.adapter.period
    block = model.blocks[layer]
    residual = _type_embeddings(subject)[None]  # [1, types, d_model]
    normalized = block.ln1(residual)
    q, k, _ = block.attn.calculate_qkv_matrices(normalized, normalized, normalized)
    content = AbstractAttention.calculate_attention_scores(block.attn, q, k)[0]
    types = tuple((t, r) for t in range(model.cfg.d_vocab) for r in range(period))
    bias = getattr(block.attn, "local_bias", None)
    return LogitTable(
        content=content.detach().clone(),
        local_bias=None if bias is None else bias.detach().clone(),
        types=types,
        period=period,
        local_scale=getattr(block.attn, "local_scale", "log"),
    )


def row_logits(table: LogitTable, tokens: torch.Tensor) -> torch.Tensor:
    """The layer-0 logits of the last query of each input, predicted from the table (local
    bias at unit scale): [batch, head, key] for ``tokens`` [batch, length]."""
    tokens = as_tokens(tokens)
    length = tokens.shape[1]
    residues = torch.arange(length) % table.period
    keys = tokens * table.period + residues  # [batch, key]
    query = keys[:, -1]
    content = table.content.to(keys.device)
    logits = content[:, query[:, None], keys].permute(1, 0, 2).clone()  # [batch, head, key]
    if table.local_bias is not None:
        for offset in range(min(table.locality + 1, length)):
            logits[:, :, length - 1 - offset] += table.local_bias[:, offset].to(logits.device)
    return logits


# ------------------------------------------------------------------ gamma
@dataclass(frozen=True)
class LogitGap:
    """gamma and where it is attained.

    Attributes:
        gamma: the smallest gap between distinct achievable logits of one query row, over
            heads and query types; inf when every row has a single distinct value.
        head, query: the row that attains it (None with gamma = inf).
        upper, lower: the two entries on either side of the gap (None with gamma = inf).
        top_gaps: [head, query_type], each row's gap between its top cluster and the next
            value (inf for rows with one distinct value): the gap that decides when p-bit
            attention of that row becomes hard, when the row's top value is present.
        tie_tol: logits linked by steps of at most this count as one value.
    """

    gamma: float
    head: int | None
    query: int | None
    upper: Entry | None
    lower: Entry | None
    top_gaps: torch.Tensor
    tie_tol: float

    def describe(self, table: LogitTable) -> str:
        """Where gamma is attained, in words."""
        if self.head is None or self.upper is None or self.lower is None:
            return "every query row has a single distinct logit"
        return (
            f"head {self.head}, query {table.label(self.query)}: "
            f"{table.entry_label(self.upper)} vs {table.entry_label(self.lower)}"
        )


def _row_gaps(entries: list[Entry], tie_tol: float) -> tuple[float, int | None, float]:
    """(smallest gap, index of its lower entry in sorted order, top gap) of one row sorted
    by value, with values linked by steps <= tie_tol clustered together (single linkage):
    the tie rule of `simcheck.probes.logit_gaps`, whose `top_gap` gives the top gap."""
    values = [e.value for e in entries]
    steps = np.diff(values)
    breaks = np.flatnonzero(steps > tie_tol)
    if breaks.size == 0:
        return math.inf, None, math.inf
    smallest = int(breaks[np.argmin(steps[breaks])])
    top = float(top_gap(torch.tensor(values, dtype=torch.float64), tie_tol))
    return float(steps[smallest]), smallest, top


def logit_gap(table: LogitTable, tie_tol: float = TIE_TOL) -> LogitGap:
    """gamma: over heads and query types, the smallest gap between distinct achievable logits
    in one query row, with the row's values clustered by ``tie_tol`` (sorted values whose
    steps are at most ``tie_tol`` are one value; the gap between clusters is the step between
    them). Also each row's top gap (the step below its top cluster), by the rule of
    `simcheck.probes.logit_gaps.top_gap`, the one `simcheck.theory.hardness` and the
    `simcheck.probes.LogitMargin` probe use.

    Logits inside the local window carry the local bias at unit scale: with the model's
    ``"log"`` local scale its weight grows as log(i + 1) with the length, so those logits move
    with n; gamma is taken at scale 1, as the model computes with ``"constant"``."""
    if tie_tol < 0:
        raise SimcheckError(f"tie_tol must be >= 0, got {tie_tol}")
    best: tuple[float, int | None, int | None, Entry | None, Entry | None]
    best = (math.inf, None, None, None, None)
    top_gaps = torch.full(table.content.shape[:2], math.inf, dtype=torch.float64)
    for head in range(table.n_heads):
        for query in range(len(table.types)):
            entries = sorted(table.achievable(head, query), key=lambda e: e.value)
            gap, lower, top = _row_gaps(entries, tie_tol)
            top_gaps[head, query] = top
            if lower is not None and gap < best[0]:
                best = (gap, head, query, entries[lower + 1], entries[lower])
    gamma, head, query, upper, lower_entry = best
    return LogitGap(gamma, head, query, upper, lower_entry, top_gaps, tie_tol)


# ------------------------------------------------------------------ L
@dataclass(frozen=True)
class WeightNorms:
    """L and the spectral norm of every weight matrix it is taken over."""

    bound: float
    norms: dict[str, float]

    @property
    def largest(self) -> str:
        """The matrix that attains L."""
        return max(self.norms, key=self.norms.__getitem__)


def _weight_matrices(model: Any) -> dict[str, torch.Tensor]:
    matrices = {"W_E": model.W_E}
    table = getattr(model.pos_embed, "W_pos", None)
    if table is not None and table.requires_grad:  # NoPE and ALiBi tables are frozen zeros
        matrices["W_pos"] = table
    for index, block in enumerate(model.blocks):
        for name in ("W_Q", "W_K", "W_V", "W_O"):
            for head, matrix in enumerate(getattr(block.attn, name)):
                matrices[f"blocks.{index}.attn.{name}[{head}]"] = matrix
        if not model.cfg.attn_only:
            matrices[f"blocks.{index}.mlp.W_in"] = block.mlp.W_in
            matrices[f"blocks.{index}.mlp.W_out"] = block.mlp.W_out
    matrices["W_U"] = model.W_U
    return matrices


@torch.no_grad()
def weight_norm_bound(model: Any) -> WeightNorms:
    """L, "a norm bound of the weights": our choice is the largest spectral norm
    (``torch.linalg.matrix_norm(ord=2)``) over the weight matrices W_E, W_pos (when trained),
    each head's W_Q, W_K, W_V, W_O, each MLP's W_in and W_out, and W_U. Biases, LayerNorm
    gains and the local bias are not matrices and are left out."""
    norms = {
        name: float(torch.linalg.matrix_norm(matrix.detach().float(), ord=2))
        for name, matrix in _weight_matrices(model).items()
    }
    return WeightNorms(max(norms.values()), norms)


# ------------------------------------------------------------------ formulas
def _power(base: float, exponent: float) -> float:
    """base ** exponent, inf where it overflows a float."""
    try:
        return float(base) ** exponent
    except OverflowError:
        return math.inf


def hardmax_threshold(gamma: float, bits: int) -> float:
    """2^(bits / gamma): past this length, p-bit attention of a row whose top gap is gamma is
    exactly hard (a key gamma below the top gets weight n^-gamma < 2^-bits). inf for
    gamma <= 0."""
    if gamma <= 0:
        return math.inf
    return _power(2.0, bits / gamma)


def theorem_4_1_N(
    L: float,
    delta_period: int,
    vocab: int,
    tau: int,
    eps: float,
    gamma: float,
    bits: int,
    constant: float = 1.0,
) -> float:
    """Thm 4.1's training length for one layer in p-bit precision, with worst-case error eps:
    ``constant * max(2^(bits/gamma), L^2 Delta^7 |Sigma|^6 (tau+1)^2 / eps^2)``.

    The paper states it as O(.): the constant is unknown and taken as 1 by default, so the
    value is a scale, not a guarantee. We write (tau + 1) where the paper writes tau: without
    a local bias tau = 0 and the second term would vanish, though the window still holds the
    query itself.
    """
    if eps <= 0:
        raise SimcheckError(f"eps must be > 0, got {eps}")
    statistics = L * L * delta_period**7 * vocab**6 * (tau + 1) ** 2 / (eps * eps)
    return constant * max(hardmax_threshold(gamma, bits), statistics)


def theorem_5_2_N(C: float, gamma_pos: float, eps: float, constant: float = 1.0) -> float:
    """Thm 5.2's training length for two layers in infinite precision:
    ``constant * (C / eps)^max(1/gamma_pos, 3)``.

    The paper takes max(C(f), C(g)) and the smaller of the two margins; the true task's C(f)
    and gamma(f) are unknown here, so only the learned model's are used. The constant is
    unknown and taken as 1 by default. inf for gamma_pos <= 0.
    """
    if eps <= 0:
        raise SimcheckError(f"eps must be > 0, got {eps}")
    if gamma_pos <= 0:
        return math.inf
    return constant * _power(C / eps, max(1.0 / gamma_pos, 3.0))


# ------------------------------------------------------------------ two layers
@dataclass(frozen=True)
class PositionalMargin:
    """gamma_pos: per head, the largest minus the second-largest of {phi[h, 0..tau], 1}; the
    minimum over heads."""

    gamma_pos: float
    margins: torch.Tensor
    local_bias: torch.Tensor

    @property
    def head(self) -> int:
        return int(self.margins.argmin())


@torch.no_grad()
def positional_margin(subject: Any, layer: int = 0) -> PositionalMargin:
    """The positional margin of Thm 5.2: for each head of ``layer``, the local biases
    phi[h, 0..tau] together with the value 1, largest minus second largest; gamma_pos is the
    smallest over heads. Needs periodic positions with a local bias (``subject``: a model,
    a run (directory) or a resolved `Subject`)."""
    model = _subject(subject).model
    if not 0 <= layer < model.cfg.n_layers:
        raise SimcheckError(
            f"layer {layer} does not exist; the model has layers 0..{model.cfg.n_layers - 1}"
        )
    if getattr(model.blocks[layer].attn, "local_bias", None) is None:
        raise SimcheckError(
            "the positional margin needs a local attention bias; build the model with "
            "pos='periodic' and locality=tau"
        )
    bias = model.blocks[layer].attn.local_bias.detach().double().cpu()
    with_one = torch.cat([bias, torch.ones(bias.shape[0], 1, dtype=bias.dtype)], dim=1)
    top2 = with_one.topk(2, dim=1).values
    margins = top2[:, 0] - top2[:, 1]
    return PositionalMargin(float(margins.min()), margins, bias)


@dataclass(frozen=True)
class ComplexityProxy:
    """C = exp(R) * (1 + V): see `complexity_proxy`."""

    C: float
    R: float
    V: float


@torch.no_grad()
def complexity_proxy(subject: Any) -> ComplexityProxy:
    """A computable proxy for C(g), which the paper says grows exponentially in the
    first-layer weight norms. Our choice: C = exp(R) * (1 + V), with

    - R, the largest first-layer content logit range: over heads and query types, the largest
      achievable content logit minus the smallest (`attention_logit_table`). The Lipschitz
      constant of softmax attention as a function of its input histogram scales with
      exp(logit range).
    - V, the size of what a head can write: the largest spectral norm of W_V @ W_O over the
      heads of layer 0, times the largest norm of a type embedding E[t] + p_r.
    """
    subject = _subject(subject)
    table = attention_logit_table(subject, layer=0)
    spread = table.content.amax(dim=-1) - table.content.amin(dim=-1)
    R = float(spread.max())
    attn = subject.model.blocks[0].attn
    ov = torch.linalg.matrix_norm(attn.W_V @ attn.W_O, ord=2).max()
    embed = torch.linalg.vector_norm(_type_embeddings(subject), dim=-1).max()
    V = float(ov * embed)
    return ComplexityProxy(_power(math.e, R) * (1 + V), R, V)


# ------------------------------------------------------------------ the report
def _significant(value: float) -> float | str | None:
    """A float rounded to 6 significant digits for JSON; inf as "inf", nan as None."""
    if math.isnan(value):
        return None
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return float(f"{value:.6g}")


def _show(value: float | int | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        return str(value)
    return f"{value:.6g}"


@dataclass(frozen=True)
class Bounds:
    """The theory's numbers for one model (1 layer: Thm 4.1; 2 layers: Thm 5.2).

    Attributes:
        n_layers, eps, bits, tie_tol: the model's depth and the parameters used.
        period, vocab, tau: Delta, |Sigma| and tau (0 without a local bias).
        gap: gamma of layer 0 and where it is attained; gap_where describes it.
        norms: L and the per-matrix spectral norms.
        threshold: 2^(bits/gamma) (one layer only).
        n_theory: the theorem's N, up to an unknown constant taken as 1.
        margin, complexity: gamma_pos and the proxy for C(g) (two layers only).
        n_star: the measured N* of a sweep, when given.
    """

    n_layers: int
    eps: float
    bits: int
    tie_tol: float
    period: int
    vocab: int
    tau: int
    gap: LogitGap
    gap_where: str
    norms: WeightNorms
    n_theory: float
    threshold: float | None = None
    margin: PositionalMargin | None = None
    complexity: ComplexityProxy | None = None
    n_star: int | None = None

    @property
    def theorem(self) -> str:
        return "4.1" if self.n_layers == 1 else "5.2"

    def _rows(self) -> list[tuple[str, float | int | None, str]]:
        gamma = self.gap.gamma
        rows: list[tuple[str, float | int | None, str]] = [
            ("theorem", None, f"Thm {self.theorem} ({self.n_layers} layer(s))"),
            (
                "gamma",
                gamma,
                "smallest gap between distinct achievable layer-0 logits of one query row "
                f"(local bias at unit scale; ties within {self.tie_tol:g}): {self.gap_where}",
            ),
            ("top gap", float(self.gap.top_gaps.min()), "smallest gap below a row's top logit"),
            (
                "L",
                self.norms.bound,
                f"largest spectral norm of a weight matrix ({self.norms.largest})",
            ),
            ("Delta", self.period, "period of the positions"),
            ("|Sigma|", self.vocab, "vocabulary size"),
            ("tau", self.tau, "locality of the attention bias (0: none)"),
            ("eps", self.eps, "target error"),
        ]
        if self.threshold is not None:
            rows += [
                ("bits", self.bits, "precision p of the attention weights"),
                ("2^(p/gamma)", self.threshold, "length past which p-bit attention is hard"),
                (
                    "N (Thm 4.1)",
                    self.n_theory,
                    "max(2^(p/gamma), L^2 Delta^7 |Sigma|^6 (tau+1)^2 / eps^2), "
                    + UNKNOWN_CONSTANT,
                ),
            ]
        if self.margin is not None and self.complexity is not None:
            rows += [
                (
                    "gamma_pos",
                    self.margin.gamma_pos,
                    f"positional margin of {{phi, 1}}, smallest at head {self.margin.head}",
                ),
                ("R", self.complexity.R, "largest layer-0 content logit range"),
                ("V", self.complexity.V, "largest |W_V W_O| times largest embedding norm"),
                ("C(g)", self.complexity.C, "proxy exp(R) (1 + V); C(f) is unknown"),
                (
                    "N (Thm 5.2)",
                    self.n_theory,
                    "(C(g)/eps)^max(1/gamma_pos, 3), " + UNKNOWN_CONSTANT,
                ),
            ]
        return rows

    def summary(self) -> str:
        """A plain-text table (quantity, value, meaning) and the measured N* beside N."""
        rows = [(q, _show(v), m) for q, v, m in self._rows()]
        width_q = max(len(r[0]) for r in rows)
        width_v = max(len(r[1]) for r in rows)
        lines = [f"{'quantity':<{width_q}}  {'value':>{width_v}}  meaning"]
        lines += [f"{q:<{width_q}}  {v:>{width_v}}  {m}" for q, v, m in rows]
        lines += [
            "",
            f"theoretical N (Thm {self.theorem}): {_show(self.n_theory)}, {UNKNOWN_CONSTANT}",
        ]
        if self.n_star is None:
            lines.append("empirical N*: not given (pass a sweep results table)")
        else:
            lines.append(
                f"empirical N*: {self.n_star} (smallest training length in the sweep whose "
                "models are simulatable and length-generalize)"
            )
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: floats rounded to 6 significant digits, inf as the string "inf"."""
        out: dict[str, Any] = {
            "theorem": self.theorem,
            "n_layers": self.n_layers,
            "eps": _significant(self.eps),
            "bits": self.bits,
            "tie_tol": _significant(self.tie_tol),
            "period": self.period,
            "vocab": self.vocab,
            "tau": self.tau,
            "gamma": _significant(self.gap.gamma),
            "gamma_at": self.gap_where,
            "top_gap": _significant(float(self.gap.top_gaps.min())),
            "L": _significant(self.norms.bound),
            "L_matrix": self.norms.largest,
            "norms": {name: _significant(v) for name, v in self.norms.norms.items()},
            "N": _significant(self.n_theory),
            "N_note": UNKNOWN_CONSTANT,
            "n_star": self.n_star,
        }
        if self.threshold is not None:
            out["hardmax_threshold"] = _significant(self.threshold)
        if self.margin is not None and self.complexity is not None:
            out["gamma_pos"] = _significant(self.margin.gamma_pos)
            out["R"] = _significant(self.complexity.R)
            out["V"] = _significant(self.complexity.V)
            out["C"] = _significant(self.complexity.C)
        return out


def bounds(
    run_or_model: Any,
    eps: float = 0.1,
    bits: int = 8,
    tie_tol: float = 1e-6,
    n_star: int | None = None,
    adapter: ModelAdapter | None = None,
) -> Bounds:
    """The theory's numbers for a model, a `Run` or a resolved `Subject` (`simcheck.bounds`
    also takes a run directory): Thm 4.1 for one layer, Thm 5.2 for two (with layer 0's gamma
    and L as well). ``n_star`` is a measured N* (see `simcheck.sweeps.table.empirical_n_star`)
    shown beside the theoretical N. A model simcheck did not build needs periodic or no
    positions, declared by ``adapter`` (`ModelAdapter`)."""
    if isinstance(bits, bool) or not isinstance(bits, int) or bits < 1:
        raise SimcheckError(f"bits (the precision p) must be an integer >= 1, got {bits!r}")
    subject = _subject(run_or_model, adapter)
    model = subject.model
    n_layers = model.cfg.n_layers
    if n_layers > 2:
        raise SimcheckError(f"the paper's bounds cover 1 and 2 layers; this model has {n_layers}")
    table = attention_logit_table(subject)
    gap = logit_gap(table, tie_tol)
    norms = weight_norm_bound(model)
    common = {
        "n_layers": n_layers,
        "eps": eps,
        "bits": bits,
        "tie_tol": tie_tol,
        "period": table.period,
        "vocab": model.cfg.d_vocab,
        "tau": table.locality,
        "gap": gap,
        "gap_where": gap.describe(table),
        "norms": norms,
        "n_star": n_star,
    }
    if n_layers == 1:
        n = theorem_4_1_N(
            norms.bound, table.period, model.cfg.d_vocab, table.locality, eps, gap.gamma, bits
        )
        return Bounds(**common, n_theory=n, threshold=hardmax_threshold(gap.gamma, bits))
    margin = positional_margin(subject)
    complexity = complexity_proxy(subject)
    n = theorem_5_2_N(complexity.C, margin.gamma_pos, eps)
    return Bounds(**common, n_theory=n, margin=margin, complexity=complexity)
