"""Classification tasks: oracles and margins against brute force over every short string,
per-sequence samplers, class losses and metrics, training and evaluation end to end, and
the registry."""

from __future__ import annotations

import itertools
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from float32 import forward_tolerance

import simcheck
from simcheck import build_model, evaluate, get_task
from simcheck.cli import main
from simcheck.errors import TaskSpecError
from simcheck.storage.runs import SPEC_FILE, WEIGHTS_FILE
from simcheck.tasks import NO_CLASS, FirstToken, Majority, Parity, ResidueMajority

CLASS_SPECS = ["majority:V=2,alpha=1.0", "parity", "residue_majority:p=3,k=0", "first:V=2"]
CANONICAL_SPECS = {
    "majority:V=2,alpha=1.0": "majority:V=2,alpha=1.0",
    "majority:V=3": "majority:V=3,alpha=1.0",
    "parity": "parity:alpha=1.0",
    "parity:alpha=0.5": "parity:alpha=0.5",
    "residue_majority:p=3,k=0": "residue_majority:p=3,k=0,alpha=1.0",
    "residue_majority:p=4,k=3,alpha=2.0": "residue_majority:p=4,k=3,alpha=2.0",
    "first:V=2": "first:V=2,alpha=1.0",
    "first:V=5,alpha=0.3": "first:V=5,alpha=0.3",
}
RESIDUE_PARAMS = [(1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2), (4, 3), (5, 4)]


# ------------------------------------------------------------------ brute-force references


def all_strings(vocab: int, max_len: int):
    """Every string over ``range(vocab)`` of lengths 1..max_len, grouped by length."""
    for length in range(1, max_len + 1):
        yield length, [list(s) for s in itertools.product(range(vocab), repeat=length)]


def naive_majority(seq: list[int], vocab: int) -> int:
    counts = Counter(seq)
    top = max(counts.values())
    leaders = [token for token in range(vocab) if counts[token] == top]
    return leaders[0] if len(leaders) == 1 else -1


def naive_parity(seq: list[int]) -> int:
    return sum(1 for x in seq if x == 1) % 2


def naive_residue(seq: list[int], p: int, k: int) -> tuple[int, int]:
    """(ones, zeros) among the positions t with t % p == k."""
    members = [seq[t] for t in range(len(seq)) if t % p == k]
    return members.count(1), members.count(0)


def naive_residue_majority(seq: list[int], p: int, k: int) -> int:
    ones, zeros = naive_residue(seq, p, k)
    if ones > zeros:
        return 1
    if zeros > ones:
        return 0
    return -1  # a tie, including the empty residue class


def naive_first(seq: list[int]) -> int:
    return seq[0]


def naive_majority_margin(seq: list[int], vocab: int) -> float:
    counts = sorted((seq.count(token) for token in range(vocab)), reverse=True)
    return (counts[0] - counts[1]) / len(seq)


def naive_residue_margin(seq: list[int], p: int, k: int) -> float:
    ones, zeros = naive_residue(seq, p, k)
    size = ones + zeros
    return abs(ones - zeros) / size if size else 0.0


def oracle_list(task, strings: list[list[int]]) -> list[int]:
    return task.oracle(torch.tensor(strings, dtype=torch.long)).tolist()


# ------------------------------------------------------------------ oracles


def test_no_class_is_minus_one():
    assert NO_CLASS == -1


@pytest.mark.parametrize(("vocab", "max_len"), [(2, 8), (3, 5)])
def test_majority_oracle_matches_brute_force(vocab, max_len):
    task = Majority(V=vocab)
    seen_ties = 0
    for _, strings in all_strings(vocab, max_len):
        expected = [naive_majority(s, vocab) for s in strings]
        assert oracle_list(task, strings) == expected
        seen_ties += expected.count(-1)
    assert seen_ties > 0


def test_majority_hand_examples():
    task = Majority(V=3)
    assert task.target([2, 2, 0]).tolist() == [2]
    assert task.target([0, 1]).tolist() == [NO_CLASS]
    assert task.target([0, 1, 2]).tolist() == [NO_CLASS]
    assert task.target([1, 1, 2, 2, 0]).tolist() == [NO_CLASS]  # top count shared by 1 and 2
    assert task.target([0, 0, 1, 1, 1, 2]).tolist() == [1]


def test_parity_oracle_matches_brute_force():
    task = Parity()
    for _, strings in all_strings(2, 8):
        assert oracle_list(task, strings) == [naive_parity(s) for s in strings]


@pytest.mark.parametrize(("p", "k"), RESIDUE_PARAMS)
def test_residue_majority_oracle_matches_brute_force(p, k):
    task = ResidueMajority(p=p, k=k)
    for length, strings in all_strings(2, 8):
        expected = [naive_residue_majority(s, p, k) for s in strings]
        assert oracle_list(task, strings) == expected, f"length {length}"
        if length <= k:
            assert set(expected) == {-1}


@pytest.mark.parametrize(("p", "k", "length"), [(3, 2, 1), (3, 2, 2), (5, 4, 4), (2, 1, 1)])
def test_residue_majority_empty_class_has_no_class(p, k, length):
    task = ResidueMajority(p=p, k=k)
    tokens = torch.tensor(list(itertools.product([0, 1], repeat=length)))
    assert (task.oracle(tokens) == NO_CLASS).all()


def test_residue_majority_hand_examples():
    task = ResidueMajority(p=3, k=1)
    # positions 1 and 4 are in the class
    assert task.target([0, 1, 0, 0, 1]).tolist() == [1]
    assert task.target([1, 0, 1, 1, 0]).tolist() == [0]
    assert task.target([1, 1, 1, 1, 0]).tolist() == [NO_CLASS]  # one 1, one 0: a tie
    assert task.target([1]).tolist() == [NO_CLASS]  # position 1 does not exist
    assert task.target([0, 1]).tolist() == [1]


@pytest.mark.parametrize("vocab", [2, 3])
def test_first_oracle_matches_brute_force(vocab):
    task = FirstToken(V=vocab)
    for _, strings in all_strings(vocab, 8 if vocab == 2 else 5):
        assert oracle_list(task, strings) == [naive_first(s) for s in strings]


@pytest.mark.parametrize("spec", CLASS_SPECS)
def test_class_oracle_returns_long_class_ids(spec):
    task = get_task(spec)
    tokens = torch.tensor(list(itertools.product([0, 1], repeat=6)))
    out = task.oracle(tokens)
    assert out.shape == (tokens.shape[0],)
    assert out.dtype == torch.long
    assert set(out.tolist()) <= {NO_CLASS, *range(task.num_classes)}


# ------------------------------------------------------------------ margins


@pytest.mark.parametrize(("vocab", "max_len"), [(2, 8), (3, 5)])
def test_majority_margin_matches_brute_force(vocab, max_len):
    task = Majority(V=vocab)
    for _, strings in all_strings(vocab, max_len):
        margin = task.margin(torch.tensor(strings))
        expected = [naive_majority_margin(s, vocab) for s in strings]
        assert margin.shape == (len(strings),)
        np.testing.assert_allclose(margin.numpy(), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize(("p", "k"), RESIDUE_PARAMS)
def test_residue_majority_margin_matches_brute_force(p, k):
    task = ResidueMajority(p=p, k=k)
    for _, strings in all_strings(2, 8):
        margin = task.margin(torch.tensor(strings))
        expected = [naive_residue_margin(s, p, k) for s in strings]
        np.testing.assert_allclose(margin.numpy(), expected, rtol=0, atol=1e-12)


def test_margin_is_zero_exactly_on_ties():
    task = Majority(V=2)
    for _, strings in all_strings(2, 8):
        tokens = torch.tensor(strings)
        ties = task.oracle(tokens) == NO_CLASS
        assert torch.equal(task.margin(tokens) == 0, ties)


@pytest.mark.parametrize("spec", ["parity", "first:V=2", "first:V=3", "modp:p=3"])
def test_tasks_without_a_margin_return_none(spec):
    assert get_task(spec).margin(torch.zeros(4, 6, dtype=torch.long)) is None


# ------------------------------------------------------------------ samplers


@pytest.mark.parametrize(
    "spec", [*CLASS_SPECS, "majority:V=3", "first:V=4", "residue_majority:p=2,k=1,alpha=0.5"]
)
def test_sampler_shape_dtype_vocabulary_and_seed(spec):
    task = get_task(spec)
    raw = np.asarray(task.sample(64, 13, np.random.default_rng(5)))
    assert raw.shape == (64, 13)
    assert raw.dtype == np.int64
    assert raw.min() >= 0 and raw.max() < task.vocab_size
    batch = task.batch(64, 13, np.random.default_rng(5))
    assert batch.tokens.dtype == torch.int64
    assert torch.equal(batch.tokens, torch.from_numpy(raw))
    assert torch.equal(batch.targets, task.oracle(batch.tokens))
    again = task.batch(64, 13, np.random.default_rng(5))
    other = task.batch(64, 13, np.random.default_rng(6))
    assert torch.equal(again.tokens, batch.tokens)
    assert not torch.equal(other.tokens, batch.tokens)


def test_sampler_uses_every_token_of_a_larger_vocabulary():
    tokens = get_task("majority:V=4").sample(200, 50, np.random.default_rng(0))
    assert set(np.unique(tokens).tolist()) == {0, 1, 2, 3}


@pytest.mark.parametrize("spec", ["majority:V=2,alpha=1.0", "parity", "first:V=2"])
def test_fraction_of_ones_per_sequence_is_roughly_uniform(spec):
    """With alpha = 1 each sequence's frequency of 1s is Uniform[0, 1]: over long sequences
    its fraction of 1s has mean 1/2 and std about sqrt(1/12) = 0.289 (not the 0.03 of
    i.i.d. fair tokens)."""
    tokens = get_task(spec).sample(4000, 200, np.random.default_rng(1))
    fraction = tokens.mean(axis=1)
    assert fraction.mean() == pytest.approx(0.5, abs=0.02)
    assert fraction.std() == pytest.approx(math.sqrt(1 / 12 + 1 / 6 / 200), abs=0.015)
    # roughly uniform: each quarter of [0, 1] holds about a quarter of the sequences
    quarters = np.histogram(fraction, bins=4, range=(0, 1))[0] / len(fraction)
    np.testing.assert_allclose(quarters, 0.25, atol=0.03)


def test_smaller_alpha_pushes_frequencies_to_the_extremes():
    # Beta(a, a) has variance 1 / (4 (2a + 1)): 1/12 for a = 1, 1/8 for a = 1/2, 1/44 for a = 5
    rng = np.random.default_rng(2)
    for alpha, var in [(0.5, 1 / 8), (5.0, 1 / 44)]:
        fraction = Parity(alpha=alpha).sample(4000, 400, rng).mean(axis=1)
        assert fraction.var() == pytest.approx(var + 0.25 * (1 - 4 * var) / 400, rel=0.1)


def test_majority_v3_token_shares_follow_a_flat_dirichlet():
    """Dirichlet(1, 1, 1) gives each token a Beta(1, 2) share: mean 1/3, variance 1/18."""
    tokens = get_task("majority:V=3").sample(4000, 300, np.random.default_rng(3))
    for token in range(3):
        share = (tokens == token).mean(axis=1)
        assert share.mean() == pytest.approx(1 / 3, abs=0.02)
        assert share.std() == pytest.approx(math.sqrt(1 / 18), abs=0.015)


@pytest.mark.parametrize(("p", "k"), [(3, 0), (2, 1)])
def test_residue_classes_have_independent_frequencies(p, k):
    tokens = ResidueMajority(p=p, k=k).sample(4000, 60 * p, np.random.default_rng(4))
    classes = np.arange(tokens.shape[1]) % p
    fractions = np.stack([tokens[:, classes == r].mean(axis=1) for r in range(p)])
    for r in range(p):
        assert fractions[r].mean() == pytest.approx(0.5, abs=0.02)
        assert fractions[r].std() == pytest.approx(math.sqrt(1 / 12), abs=0.02)
    corr = np.corrcoef(fractions)
    off_diagonal = corr[~np.eye(p, dtype=bool)]
    assert np.abs(off_diagonal).max() < 0.06
    # within one residue class the positions share a frequency: strongly correlated halves
    member = np.flatnonzero(classes == k)
    half = len(member) // 2
    inside = np.corrcoef(tokens[:, member[:half]].mean(1), tokens[:, member[half:]].mean(1))
    assert inside[0, 1] > 0.8


@pytest.mark.parametrize("length", [2, 4, 8])
def test_majority_tie_rate_at_even_length(length):
    """With a Uniform[0, 1] frequency the count of 1s is uniform on 0..n, so a tie
    (count n/2) has probability 1/(n + 1)."""
    batch = get_task("majority:V=2,alpha=1.0").batch(20000, length, np.random.default_rng(7))
    ties = float((batch.targets == NO_CLASS).double().mean())
    assert ties == pytest.approx(1 / (length + 1), abs=0.01)
    counts = np.bincount(batch.tokens.sum(1).numpy(), minlength=length + 1) / 20000
    np.testing.assert_allclose(counts, 1 / (length + 1), atol=0.015)


def test_majority_has_no_ties_at_odd_length_with_two_tokens():
    batch = get_task("majority:V=2").batch(2000, 7, np.random.default_rng(8))
    assert (batch.targets != NO_CLASS).all()


# ------------------------------------------------------------------ loss, metric, decision


def class_batch(seed: int = 0):
    """Random logits [8, 3] and targets with two NO_CLASS rows."""
    gen = torch.Generator().manual_seed(seed)
    output = torch.randn(8, 3, generator=gen, dtype=torch.float64).float() * 3
    targets = torch.tensor([0, 1, NO_CLASS, 2, 2, NO_CLASS, 1, 0])
    return output, targets


def test_loss_is_cross_entropy_on_valid_rows_and_zero_on_no_class_rows():
    task = Majority(V=3)
    output, targets = class_batch()
    loss = task.loss(output, targets)
    assert loss.shape == (8,)
    log_q = torch.log_softmax(output.double(), dim=-1)
    for i, target in enumerate(targets.tolist()):
        if target == NO_CLASS:
            assert loss[i].item() == 0.0
        else:
            assert loss[i].item() == pytest.approx(-log_q[i, target].item(), rel=1e-5)
            assert loss[i].item() > 0


def test_mean_loss_averages_over_valid_rows_only():
    task = Majority(V=3)
    output, targets = class_batch(seed=1)
    valid = targets != NO_CLASS
    manual = F.cross_entropy(output[valid], targets[valid])
    assert task.mean_loss(output, targets).item() == pytest.approx(manual.item(), rel=1e-6)
    # not the plain mean over all rows, which the two zero rows would pull down
    assert task.mean_loss(output, targets).item() > task.loss(output, targets).mean().item()


def test_mean_loss_gradient_matches_the_valid_rows_cross_entropy():
    task = Majority(V=3)
    output, targets = class_batch(seed=2)
    a = output.clone().requires_grad_(True)
    b = output.clone().requires_grad_(True)
    task.mean_loss(a, targets).backward()
    valid = targets != NO_CLASS
    F.cross_entropy(b[valid], targets[valid], reduction="sum").div(int(valid.sum())).backward()
    torch.testing.assert_close(a.grad, b.grad)
    assert (a.grad[~valid] == 0).all()


def test_mean_loss_is_zero_and_differentiable_when_no_row_has_a_class():
    task = Majority(V=2)
    output = torch.randn(5, 2, requires_grad=True)
    targets = torch.full((5,), NO_CLASS)
    loss = task.mean_loss(output, targets)
    assert loss.item() == 0.0
    assert loss.requires_grad
    loss.backward()
    assert output.grad is not None
    assert torch.equal(output.grad, torch.zeros_like(output))


def test_mean_loss_of_a_scalar_task_is_the_plain_mean():
    task = get_task("modp:p=3")
    output = torch.randn(6, 1)
    targets = torch.rand(6)
    assert task.mean_loss(output, targets).item() == pytest.approx(
        task.loss(output, targets).mean().item(), rel=1e-6
    )


def test_metric_is_one_when_wrong_zero_when_right_nan_without_class():
    task = Majority(V=3)
    output = torch.tensor(
        [[5.0, 0.0, 0.0], [5.0, 0.0, 0.0], [0.0, 0.0, 9.0], [0.0, 1.0, 0.0], [1.0, 2.0, 3.0]]
    )
    targets = torch.tensor([0, 1, 2, NO_CLASS, 0])
    metric = task.metric(output, targets)
    assert metric[:3].tolist() == [0.0, 1.0, 0.0]
    assert math.isnan(metric[3].item())
    assert metric[4].item() == 1.0


def test_decision_is_the_argmax_with_ties_to_the_smaller_id():
    task = Majority(V=3)
    prediction = torch.tensor(
        [[0.2, 0.5, 0.3], [0.1, 0.1, 0.8], [0.4, 0.4, 0.2], [0.3, 0.35, 0.35]]
    )
    assert task.decision(prediction).tolist() == [1, 2, 0, 1]
    logits = torch.randn(50, 3)
    assert torch.equal(task.decision(task.prediction(logits)), logits.argmax(-1))


def test_decision_is_refused_for_tasks_without_classes():
    with pytest.raises(simcheck.SimcheckError, match="no classes"):
        get_task("modp:p=3").decision(torch.rand(4, 2))


def test_prediction_of_class_task_is_softmax():
    task = Parity()
    logits = torch.randn(7, 2)
    torch.testing.assert_close(task.prediction(logits), torch.softmax(logits, -1))


def test_distance_of_class_ids_is_disagreement():
    task = Majority(V=3)
    a = torch.tensor([0, 1, 2, 2, 0])
    b = torch.tensor([0, 2, 2, 1, 1])
    assert task.distance(a, b).tolist() == [0.0, 1.0, 0.0, 1.0, 1.0]


@pytest.mark.parametrize(
    ("spec", "classes"),
    [
        ("majority:V=2", 2),
        ("majority:V=5", 5),
        ("parity", 2),
        ("residue_majority:p=4,k=1", 2),
        ("first:V=2", 2),
        ("first:V=6", 6),
    ],
)
def test_class_task_attributes(spec, classes):
    task = get_task(spec)
    assert task.output == "classes"
    assert task.num_classes == classes
    assert task.output_size == task.num_classes
    assert task.metric_name == "error"
    assert task.metric_max == 1.0


@pytest.mark.parametrize(
    ("spec", "metric_max"), [("modp:p=3", 1.0), ("simple", 2.0), ("kgram", 1.0)]
)
def test_metric_max_of_other_tasks(spec, metric_max):
    assert get_task(spec).metric_max == metric_max


def test_residue_majority_period_and_min_length():
    task = ResidueMajority(p=4, k=3)
    assert task.period == 4
    assert task.min_length == 4


@pytest.mark.parametrize(
    "spec",
    ["majority:V=1", "majority:alpha=0", "first:V=1", "parity:alpha=-1",
     "residue_majority:p=3,k=3", "residue_majority:p=0,k=0", "residue_majority:k=-1"],
)  # fmt: skip
def test_invalid_parameters_are_refused(spec):
    with pytest.raises(TaskSpecError):
        get_task(spec)


# ------------------------------------------------------------------ training and evaluation

EVAL_LENGTHS = [4, 8]
EVAL_SAMPLES = 64


@pytest.fixture(scope="module")
def majority_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("class-runs") / "run"
    simcheck.train(
        "majority:V=2",
        out,
        pos="none",
        train_len=8,
        steps=30,
        d_model=16,
        d_mlp=32,
        batch_size=8,
        progress=False,
    )
    return out


@pytest.fixture(scope="module")
def majority_eval(majority_run):
    return evaluate(majority_run, EVAL_LENGTHS, samples=EVAL_SAMPLES, progress=False, save=False)


def test_training_a_class_task_writes_a_run(majority_run):
    assert (majority_run / SPEC_FILE).is_file()
    assert (majority_run / WEIGHTS_FILE).is_file()
    run = simcheck.load_run(majority_run)
    assert run.task.spec() == "majority:V=2,alpha=1.0"
    assert run.model.cfg.d_vocab_out == 2
    assert run.train_len == 8
    assert run.finished


def test_evaluation_rows_of_a_class_task(majority_eval, majority_run):
    run = simcheck.load_run(majority_run)
    task = run.task
    assert [row["length"] for row in majority_eval.rows] == EVAL_LENGTHS
    assert majority_eval.meta["output"] == "classes"
    assert majority_eval.meta["metric"] == "error"
    for row in majority_eval.rows:
        length = row["length"]
        batch = task.batch(EVAL_SAMPLES, length, np.random.default_rng([0, length]))
        hand_no_class = sum(naive_majority(s, 2) == -1 for s in batch.tokens.tolist())
        assert row["no_class"] == hand_no_class
        assert row["samples"] == EVAL_SAMPLES - hand_no_class
        assert row["accuracy"] == pytest.approx(1.0 - row["metric_mean"], abs=1e-12)
        assert 0.0 <= row["accuracy"] <= 1.0
        assert row["metric_p95"] in (0.0, 1.0)
        # the accuracy is that of the model's argmax over the rows with a class; evaluate
        # reads the fused forward, this the hooked one: decisions whose two top logits are
        # closer than twice the float32 tolerance may go either way
        with torch.no_grad():
            logits = run.model(batch.tokens)[:, -1, :]
        tol = forward_tolerance(run.model, length, float(logits.abs().max())).atol
        valid = batch.targets != NO_CLASS
        right = (logits.argmax(-1) == batch.targets)[valid].double()
        top2 = logits[valid].topk(2, dim=-1).values
        unsure = ((top2[:, 0] - top2[:, 1]) <= 2 * tol).double()
        assert (right - unsure).mean() - 1e-12 <= row["accuracy"] <= (right + unsure).mean() + 1e-12
        # cross-entropy moves by at most twice the logit tolerance
        loss = F.cross_entropy(logits[valid].float(), batch.targets[valid])
        assert row["loss_mean"] == pytest.approx(loss.item(), abs=2 * tol)
    # at length 4 a tie (two 1s) has probability 1/5: some of the 64 inputs are left out
    assert majority_eval.rows[0]["no_class"] > 0


def test_evaluation_table_of_a_class_task_shows_accuracy(majority_eval):
    text = majority_eval.format_table()
    head = text.splitlines()[0]
    assert "accuracy" in head
    assert "no class" in head
    assert "error mean" not in head
    for row in majority_eval.rows:
        assert f"{row['accuracy']:.4f}" in text
    assert "accuracy" in majority_eval.table().columns
    assert "no_class" in majority_eval.table().columns


def test_evaluation_at_lengths_where_no_input_has_a_class(tmp_path):
    """ResidueMajority(p=3, k=2) has an empty residue class at lengths 1 and 2: every input
    is left out, and the row says so instead of failing."""
    run = simcheck.train(
        "residue_majority:p=3,k=2",
        tmp_path / "run",
        pos="periodic",
        train_len=6,
        steps=3,
        d_model=16,
        d_mlp=32,
        batch_size=8,
        progress=False,
    )
    result = evaluate(run, [2, 3], samples=16, progress=False, save=False)
    empty, full = result.rows
    assert empty["samples"] == 0
    assert empty["no_class"] == 16
    assert math.isnan(empty["accuracy"])
    assert math.isnan(empty["loss_mean"])
    assert full["samples"] + full["no_class"] == 16
    assert full["no_class"] == 0  # one position in the class: never a tie
    assert 0.0 <= full["accuracy"] <= 1.0
    assert "nan" in result.format_table().splitlines()[2]


def test_model_output_width_follows_the_number_of_classes():
    assert build_model(get_task("majority:V=3")).cfg.d_vocab_out == 3
    assert build_model(get_task("majority:V=3")).cfg.d_vocab == 3
    assert build_model(get_task("parity")).cfg.d_vocab_out == 2


# ------------------------------------------------------------------ registry


def test_cli_lists_the_class_tasks(capsys):
    assert main(["tasks"]) == 0
    out = capsys.readouterr().out
    names = {
        line.split()[0].rstrip(":") for line in out.splitlines() if line and not line[0].isspace()
    }
    assert {"majority", "parity", "residue_majority", "first"} <= names
    assert out.count("output: classes") >= 4


@pytest.mark.parametrize(("spec", "canonical"), CANONICAL_SPECS.items())
def test_spec_round_trips(spec, canonical):
    task = get_task(spec)
    assert task.spec() == canonical
    again = get_task(task.spec())
    assert again == task
    assert again.spec() == canonical
