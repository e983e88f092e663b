"""simcheck.theory.bounds: the logit table against the model's own logits, gamma, L, the formulas,
the two-layer quantities, the report, N* from a sweep table, and the hardmax threshold.

The hand-set model (`gap_model`) is one head on ModPTask(p=3) inputs whose logit of query
(t_q, r_q) and key (t_k, r_k) is 0.5 [r_k = 0] + 2 t_k (1 + r_q + t_q): every query row holds
{0, 0.5, c, c + 0.5} with c >= 2, so gamma = 0.5 exactly.
"""

from __future__ import annotations

import json
import math
from functools import partial

import pandas as pd
import pytest
import torch
from handmade import blank_modp_head

import simcheck
from simcheck import SimcheckError, get_task, record
from simcheck.probes import AttentionLogits
from simcheck.sweeps.table import empirical_n_star
from simcheck.theory.bounds import (
    LogitTable,
    attention_logit_table,
    bounds,
    complexity_proxy,
    hardmax_threshold,
    logit_gap,
    positional_margin,
    row_logits,
    theorem_4_1_N,
    theorem_5_2_N,
    weight_norm_bound,
)
from simcheck.theory.hardness import adversarial_tokens, first_hard_length, hardness_curve, top_gap

MODP = "modp:p=3,k=0,alpha=1.0"
TOKEN = 3
"""Residual dimension of the hand-set model that holds the token id; 0..2 flag the residue."""


def gap_model() -> simcheck.model.build.SimcheckTransformer:
    """The hand-set model of the module docstring (scores are q.k / sqrt(4) = q.k / 2)."""
    model = blank_modp_head()
    attn = model.blocks[0].attn
    with torch.no_grad():
        model.W_E[1, TOKEN] = 1.0
        model.W_pos[:, :3] = torch.eye(3)
        attn.W_K[0] = torch.eye(4)
        attn.b_Q[0] = torch.tensor([1.0, 0.0, 0.0, 4.0])  # q_0 = 1, q_3 = 4 (1 + r_q + t_q)
        attn.W_Q[0, :3, TOKEN] = 4.0 * torch.arange(3.0)
        attn.W_Q[0, TOKEN, TOKEN] = 4.0
    return model


def closed_form(t_q: int, r_q: int, t_k: int, r_k: int) -> float:
    return 0.5 * (r_k == 0) + 2.0 * t_k * (1 + r_q + t_q)


def modp_inputs(count: int, length: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 2, (count, length), generator=generator)


def random_model(pos: str, **overrides) -> simcheck.model.build.SimcheckTransformer:
    """A 2-head ModPTask(p=3) model with LayerNorm and every parameter random."""
    model = simcheck.build_model(
        get_task("modp:p=3"), pos=pos, d_model=8, n_heads=2, d_mlp=0, **overrides
    )
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator))
    return model


def one_line_error(call, *words: str) -> None:
    with pytest.raises(SimcheckError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message


# ------------------------------------------------------------------ table and gamma
def test_table_matches_the_closed_form_and_the_recorded_logits():
    model = gap_model()
    table = attention_logit_table(model)
    expected = torch.tensor(
        [[closed_form(*q, *k) for k in table.types] for q in table.types], dtype=torch.float32
    )
    assert table.types == tuple((t, r) for t in range(2) for r in range(3))
    assert torch.allclose(table.content[0], expected, atol=1e-6)

    tokens = modp_inputs(4, 12)
    length = tokens.shape[1]
    logits = record(model, tokens, [AttentionLogits(0)], positions=range(length))["attn_logits.L0"]
    types = tokens * 3 + torch.arange(length) % 3  # [batch, position]
    predicted = table.content[0][types[:, :, None], types[:, None, :]]  # [batch, query, key]
    visible = torch.ones(length, length).tril().bool()
    assert torch.allclose(logits[:, :, 0][:, visible], predicted[:, visible], atol=1e-5)


@pytest.mark.parametrize(
    ("pos", "overrides"),
    [("periodic", {"locality": 2, "local_scale": "constant"}), ("none", {})],
)
def test_table_predicts_the_last_row_with_layernorm_and_local_bias(pos, overrides):
    model = random_model(pos, **overrides)
    table = attention_logit_table(model)
    assert len(table.types) == (6 if pos == "periodic" else 2)
    assert table.locality == (2 if pos == "periodic" else 0)
    tokens = modp_inputs(8, 13, seed=3)
    logits = record(model, tokens, [AttentionLogits(0)])["attn_logits.L0"][:, 0]
    assert torch.allclose(row_logits(table, tokens), logits, atol=1e-5)


def test_achievable_logits_are_those_the_model_produces():
    """Inside the window each offset has its own residue and bias, and offset 0 is the query
    itself: the achievable set is exactly the set of logits seen on many inputs."""
    model = random_model("periodic", locality=2, local_scale="constant")
    table = attention_logit_table(model)
    tokens = modp_inputs(200, 13, seed=5)  # last position 12: residue 0
    logits = record(model, tokens, [AttentionLogits(0)])["attn_logits.L0"][:, 0]
    for head in range(table.n_heads):
        for token in range(2):
            seen = logits[tokens[:, -1] == token, head].flatten()
            achievable = torch.tensor([e.value for e in table.achievable(head, token * 3)])
            distance = (seen[:, None] - achievable[None, :]).abs()
            assert distance.min(dim=1).values.max() < 1e-5  # every seen logit is achievable
            assert distance.min(dim=0).values.max() < 1e-5  # every achievable logit is seen


def test_adversarial_input_holds_both_sides_of_the_gap():
    model = random_model("periodic", locality=2, local_scale="constant")
    table = attention_logit_table(model)
    gap = logit_gap(table)
    tokens = adversarial_tokens(table, gap, 40)
    assert (tokens.shape[1] - 1) % 3 == table.types[gap.query][1]
    present = row_logits(table, tokens)[0, gap.head]
    for entry in (gap.upper, gap.lower):
        assert (present - entry.value).abs().min() < 1e-6


def test_logit_gap_finds_the_designed_gamma():
    model = gap_model()
    table = attention_logit_table(model)
    gap = logit_gap(table)
    assert gap.gamma == pytest.approx(0.5, abs=1e-6)
    assert gap.upper.value - gap.lower.value == pytest.approx(0.5, abs=1e-6)
    assert torch.allclose(gap.top_gaps, torch.full_like(gap.top_gaps, 0.5), atol=1e-6)
    assert "head 0" in gap.describe(table)


def test_logit_gap_clusters_values_within_the_tie_tolerance():
    content = torch.tensor([0.0, 1e-7, 0.3, 1.0]).expand(1, 4, 4)
    table = LogitTable(content, None, tuple((t, 0) for t in range(4)), period=1)
    assert logit_gap(table).gamma == pytest.approx(0.3)
    assert logit_gap(table, tie_tol=0.5).gamma == pytest.approx(0.7)  # {0, 1e-7, 0.3} vs 1
    assert logit_gap(table, tie_tol=1.0).gamma == math.inf


def test_top_gap_of_rows():
    rows = torch.tensor([[2.0, 2.0 - 1e-8, 1.5, -math.inf], [1.0, 1.0, 1.0, 1.0]])
    assert torch.allclose(top_gap(rows), torch.tensor([0.5, math.inf]))


# ------------------------------------------------------------------ the hardmax threshold
def test_hardmax_threshold_on_the_adversarial_input():
    bits = 4
    model = gap_model()
    table = attention_logit_table(model)
    gap = logit_gap(table)
    threshold = hardmax_threshold(gap.gamma, bits)
    assert threshold == pytest.approx(256.0)
    attack = partial(adversarial_tokens, table, gap)
    tokens = attack(300)
    assert (tokens.shape[1] - 1) % 3 == table.types[gap.query][1]
    assert float(top_gap(row_logits(table, tokens))[0, gap.head]) == pytest.approx(0.5)

    curve = hardness_curve(model, attack, [64, 128, 270, 400], bits)
    mass = dict(zip(curve["length"], curve["max_off_top_mass"], strict=True))
    assert all(mass[n] > 0 for n in mass if n <= threshold / 2)
    assert all(mass[n] == 0 for n in mass if n >= 1.05 * threshold)
    first = first_hard_length(model, attack, bits, low=64, high=1024)
    assert first is not None and abs(first / threshold - 1) < 0.03


def test_random_inputs_turn_hard_past_the_threshold():
    curve = hardness_curve(gap_model(), get_task("modp:p=3"), [64, 300], bits=4, samples=16)
    assert curve["max_off_top_mass"].tolist()[0] > 0
    assert curve["max_off_top_mass"].tolist()[1] == 0


# ------------------------------------------------------------------ L and the formulas
def test_weight_norm_bound_is_the_largest_spectral_norm():
    model = blank_modp_head()
    with torch.no_grad():
        model.W_E[0, 0], model.W_E[1, 1] = 3.0, 4.0
    norms = weight_norm_bound(model)
    assert norms.bound == pytest.approx(4.0)
    assert norms.largest == "W_E"
    assert "W_pos" in norms.norms and not any("mlp" in name for name in norms.norms)
    with torch.no_grad():
        model.blocks[0].attn.W_Q[0] = 7.0 * torch.eye(4)
    norms = weight_norm_bound(model)
    assert norms.bound == pytest.approx(7.0)
    assert norms.largest == "blocks.0.attn.W_Q[0]"


def test_theorem_formulas():
    assert hardmax_threshold(0.5, 4) == 256.0
    assert hardmax_threshold(1e-6, 8) == math.inf
    statistics = 2.0**2 * 3**7 * 2**6 / 0.1**2
    assert theorem_4_1_N(2.0, 3, 2, 0, 0.1, 0.5, 4) == pytest.approx(statistics)
    assert theorem_4_1_N(2.0, 3, 2, 1, 0.1, 0.5, 4) == pytest.approx(4 * statistics)
    assert theorem_4_1_N(0.1, 1, 2, 0, 1.0, 0.5, 8) == 2.0**16  # the threshold term wins
    assert theorem_4_1_N(2.0, 3, 2, 0, 0.1, 0.5, 4, constant=3.0) == pytest.approx(3 * statistics)
    assert theorem_5_2_N(2.0, 0.5, 0.1) == pytest.approx(20.0**3)
    assert theorem_5_2_N(2.0, 0.25, 0.1) == pytest.approx(20.0**4)
    assert theorem_5_2_N(2.0, 0.0, 0.1) == math.inf
    assert theorem_5_2_N(1e6, 1e-3, 0.1) == math.inf


# ------------------------------------------------------------------ two layers
def kgram_model(n_heads: int = 2) -> simcheck.model.build.SimcheckTransformer:
    """A 2-layer InContextKGram(S=3, k=2) model: periodic positions (Delta 1), tau = 1."""
    model = simcheck.build_model(get_task("kgram:S=3,k=2"), d_model=8, n_heads=n_heads, d_mlp=0)
    with torch.no_grad():
        model.blocks[0].attn.local_bias.copy_(torch.tensor([[0.2, 3.0], [1.25, -1.0]]))
    return model


def test_positional_margin_takes_the_local_biases_with_one():
    margin = positional_margin(kgram_model())
    assert torch.allclose(margin.margins, torch.tensor([2.0, 0.25], dtype=torch.float64))
    assert margin.gamma_pos == pytest.approx(0.25)
    assert margin.head == 1


def test_complexity_proxy_of_the_hand_set_model():
    model = gap_model()
    assert pytest.approx(math.exp(8.5)) == complexity_proxy(model).C  # no value path: V = 0
    with torch.no_grad():
        model.blocks[0].attn.W_V[0] = torch.eye(4)
        model.blocks[0].attn.W_O[0] = 2.0 * torch.eye(4)
    proxy = complexity_proxy(model)
    assert pytest.approx(8.5) == proxy.R  # query (1, 2): logits from 0 to 2 (1 + 2 + 1) + 0.5
    assert pytest.approx(2.0 * math.sqrt(2.0)) == proxy.V  # |e_r + e_token| = sqrt(2)
    assert pytest.approx(math.exp(8.5) * (1 + 2.0 * math.sqrt(2.0))) == proxy.C


# ------------------------------------------------------------------ the report
def test_one_layer_report():
    report = bounds(gap_model(), eps=0.1, bits=4)
    assert report.theorem == "4.1"
    assert report.threshold == pytest.approx(256.0)
    expected = theorem_4_1_N(report.norms.bound, 3, 2, 0, 0.1, 0.5, 4)
    assert report.n_theory == pytest.approx(expected)
    text = report.summary()
    assert "up to an unknown constant (taken as 1)" in text
    assert "empirical N*: not given (pass a sweep results table)" in text
    data = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert data["gamma"] == 0.5 and data["hardmax_threshold"] == 256.0
    assert data["N"] == float(f"{expected:.6g}")


def test_two_layer_report_with_measured_n_star():
    model = kgram_model()
    report = bounds(model, eps=0.1, n_star=16)
    assert report.theorem == "5.2" and report.threshold is None
    assert report.margin is not None and report.complexity is not None
    assert report.n_theory == pytest.approx(theorem_5_2_N(report.complexity.C, 0.25, 0.1))
    assert "empirical N*: 16 (smallest training length in the sweep" in report.summary()
    data = report.to_dict()
    assert data["gamma_pos"] == 0.25 and data["n_star"] == 16
    with torch.no_grad():
        model.blocks[0].attn.local_bias[1] = torch.tensor([1.0, 0.0])  # ties with 1: margin 0
    assert bounds(model).to_dict()["N"] == "inf"


# ------------------------------------------------------------------ refusals
def test_refusals_are_one_line_errors():
    learned = blank_modp_head("learned", n_ctx=16)
    one_line_error(lambda: attention_logit_table(learned), "periodic or no positions")
    one_line_error(lambda: bounds(learned), "periodic or no positions")
    one_line_error(lambda: attention_logit_table(kgram_model(), layer=1), "layer=0")
    one_line_error(lambda: positional_margin(gap_model()), "locality")
    one_line_error(lambda: bounds(gap_model(), eps=0.0), "eps")


# ------------------------------------------------------------------ N* from a sweep table
def sweep_table() -> pd.DataFrame:
    """Train lengths 8, 16, 32 (2 seeds each, periodic) and one learned-position point.

    At T=256: N=8 has a seed that is not simulatable, N=16 errs 0.05, N=32 errs 0.005. At
    T=64 everything periodic passes. A failed run at N=8 is ignored."""
    rows = []
    for train_len, seed, ok_256, error_256 in [
        (8, 0, False, 0.04),
        (8, 1, True, 0.04),
        (16, 0, True, 0.05),
        (16, 1, True, 0.05),
        (32, 0, True, 0.005),
        (32, 1, True, 0.004),
    ]:
        rows.append(
            {
                "task": MODP,
                "pos": "periodic",
                "n_layers": 1,
                "d_model": 32,
                "train_len": train_len,
                "seed": seed,
                "status": "ok",
                "simulatable@64": True,
                "long_error@64": 0.01,
                "simulatable@256": ok_256,
                "long_error@256": error_256,
            }
        )
    failed = {**rows[0], "seed": 2, "status": "failed", "simulatable@256": None}
    failed["long_error@256"] = float("nan")
    learned = {**rows[1], "pos": "learned", "train_len": 4, "long_error@256": 0.001}
    return pd.DataFrame([*rows, failed, learned])


def test_empirical_n_star_from_a_sweep_table():
    table = sweep_table()
    periodic = partial(empirical_n_star, task=MODP, pos="periodic", n_layers=1, d_model=32)
    assert periodic(table, eps=0.1) == 16  # N=8 has a seed that is not simulatable
    assert periodic(table, eps=0.01) == 32
    assert periodic(table, eps=0.001) is None
    assert periodic(table, eps=0.1, length=64) == 8
    assert empirical_n_star(table, eps=0.1) == 4  # no filter: the learned point counts
    assert empirical_n_star(table, eps=0.1, task=get_task("modp:p=3"), pos="periodic") == 16
    assert empirical_n_star(table, eps=0.1, task="modp:p=5,k=0,alpha=1.0") is None


def test_empirical_n_star_one_failing_seed_disqualifies_a_length():
    table = sweep_table()
    table.loc[(table["train_len"] == 16) & (table["seed"] == 1), "long_error@256"] = 0.2
    assert empirical_n_star(table, eps=0.1, pos="periodic") == 32


def test_empirical_n_star_refuses_a_table_without_the_columns():
    table = sweep_table()
    one_line_error(lambda: empirical_n_star(table, eps=0.1, length=128), "T=128", "[64, 256]")
    one_line_error(lambda: empirical_n_star(table.drop(columns=["status"]), eps=0.1), "status")


def test_finite_precision_takes_the_local_bias_at_unit_scale():
    """In p-bit mode the whole logit (content + phi) is scaled by log n, so a log-scaled local
    bias enters at unit scale there: the table's unit-scale logits are what the model uses.
    With softmax the bias keeps its log(i + 1) scale, so the two differ inside the window."""
    model = random_model("periodic", locality=2, local_scale="log")
    with torch.no_grad():
        model.blocks[0].attn.local_bias.normal_()
    table = attention_logit_table(model)
    tokens = modp_inputs(8, 13, seed=3)
    probe = AttentionLogits(0)
    hard = record(model, tokens, [probe], attention="hardmax:8")[probe.name][:, 0]
    soft = record(model, tokens, [probe])[probe.name][:, 0]
    assert torch.allclose(row_logits(table, tokens), hard, atol=1e-5)
    assert not torch.allclose(soft, hard, atol=1e-3)
