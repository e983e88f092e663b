"""`simcheck.probes.logit_gaps`: the one rule for the gap below the top logit (single linkage
with an
absolute ``tie_tol``), and the three places that use it agreeing on it: `simcheck.theory.hardness`,
the `LogitMargin` probe and `simcheck.theory.bounds.logit_gap`'s top gaps."""

from __future__ import annotations

import math

import pytest
import torch

from simcheck import SimcheckError
from simcheck.probes import LogitMargin
from simcheck.probes.logit_gaps import TIE_TOL, below_top, top_cutoff, top_gap
from simcheck.theory.bounds import LogitTable, logit_gap
from simcheck.theory.hardness import off_top_mass
from simcheck.theory.hardness import top_gap as hardness_top_gap

INF = math.inf


def test_the_default_tolerance_is_absolute_1e_6():
    assert TIE_TOL == 1e-6
    f64 = torch.float64
    assert float(top_gap(torch.tensor([5.0, 5.0 - 2e-6, 4.0], dtype=f64))) == pytest.approx(2e-6)
    # a relative tolerance would tie these two large logits; the absolute one does not
    assert float(top_gap(torch.tensor([1000.0, 999.995], dtype=f64))) == pytest.approx(5e-3)


def test_ties_chain_by_single_linkage():
    row = torch.tensor([0.0, -6e-7, -1.2e-6, -1.8e-6, -1.0], dtype=torch.float64)
    # steps of 6e-7 link the first four values although they span 1.8e-6
    assert float(top_cutoff(row)) == pytest.approx(-1.8e-6)
    assert float(top_gap(row)) == pytest.approx(1.0 - 1.8e-6)
    assert below_top(row).tolist() == [False, False, False, False, True]
    assert float(top_gap(row, tie_tol=0.0)) == pytest.approx(6e-7)
    assert float(top_gap(row, tie_tol=1.0)) == INF  # one cluster


def test_masked_keys_and_single_clusters():
    rows = torch.tensor(
        [
            [2.0, -INF, 1.5, math.nan],  # masked and nan keys are not values
            [1.0, 1.0, 1.0, 1.0],  # all tied
            [3.0, -INF, -INF, -INF],  # one visible key
            [-INF, -INF, -INF, -INF],  # none
        ]
    )
    assert top_gap(rows).tolist() == [0.5, INF, INF, INF]
    assert top_gap(torch.tensor([[0.5]])).tolist() == [INF]
    assert top_gap(torch.empty(2, 0)).tolist() == [INF, INF]
    with pytest.raises(SimcheckError, match="tie_tol must be >= 0"):
        top_gap(rows, tie_tol=-1.0)


def test_hardness_probe_and_bounds_share_the_rule():
    generator = torch.Generator().manual_seed(0)
    content = torch.randn(2, 4, 4, generator=generator, dtype=torch.float64)
    content[0, 1, 1] = content[0, 1].max() - 5e-7  # a near tie at the top of one row
    content[1, 2, :] = 0.25  # a row of one value
    expected = top_gap(content)
    assert expected[1, 2] == INF
    assert hardness_top_gap is top_gap
    table = LogitTable(content, None, tuple((t, 0) for t in range(4)), period=1)
    torch.testing.assert_close(logit_gap(table).top_gaps, expected)
    scores = content[None].float()  # [batch, query, head, key] as the probe receives them
    margin = LogitMargin(0).finalize({"blocks.0.attn.hook_attn_scores": scores}, None)
    torch.testing.assert_close(margin, expected[None].float())
    weights = torch.softmax(scores, dim=-1)
    torch.testing.assert_close(off_top_mass(scores, weights), (weights * below_top(scores)).sum(-1))
