"""Tasks: oracles on hand examples and against naive references, samplers, input checks,
the registry, losses and metrics, and a task defined the way a notebook user would."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest
import torch

import simcheck
from simcheck.errors import TokenError
from simcheck.tasks import (
    EMPTY_CLASS_TARGET,
    InContextKGram,
    ModPTask,
    SimpleTask,
    Task,
    bernoulli_tokens,
    beta_frequencies,
    get_task,
    register_task,
    registry,
    task_names,
)

# ------------------------------------------------------------------ naive references


def naive_simple(seq: list[int], omega: float) -> float:
    zeros = sum(1 for x in seq if x == 0)
    ones = sum(1 for x in seq if x == 1)
    return math.sin(omega * (zeros - ones) / (zeros + ones))


def naive_modp(seq: list[int], p: int, k: int) -> float:
    members = [seq[t] for t in range(len(seq)) if t % p == k]
    if not members:
        return 0.5
    return sum(members) / len(members)


def naive_kgram(seq: list[int], S: int, k: int) -> list[float]:
    """Followers of every earlier occurrence of the last k-1 tokens, as a distribution."""
    n = len(seq)
    context = seq[n - (k - 1) :] if k > 1 else []
    counts = [0] * S
    for end in range(k - 2, n - 1):  # the occurrence is seq[end-k+2 .. end], follower end+1
        window = seq[end - (k - 1) + 1 : end + 1]
        if window == context:
            counts[seq[end + 1]] += 1
    total = sum(counts)
    if total == 0:
        return [1.0 / S] * S
    return [c / total for c in counts]


# ------------------------------------------------------------------ SimpleTask


@pytest.mark.parametrize(
    ("tokens", "expected"),
    [
        ([0, 0, 1], math.sin(1.0)),
        ([0, 0, 0, 0], math.sin(3.0)),
        ([1, 1, 1, 1, 1], math.sin(-3.0)),
        ([0], math.sin(3.0)),
        ([1], math.sin(-3.0)),
        ([1, 0], 0.0),
    ],
)
def test_simple_oracle_hand_examples(tokens, expected):
    out = SimpleTask(omega=3).target(tokens)
    assert out.shape == (1,)
    assert out.item() == pytest.approx(expected, abs=1e-6)


def test_simple_oracle_matches_naive_reference():
    task = SimpleTask(omega=2.5)
    rng = np.random.default_rng(1)
    tokens = rng.integers(0, 2, size=(20, 13))
    expected = [naive_simple(list(row), 2.5) for row in tokens]
    assert task.target(tokens).tolist() == pytest.approx(expected, abs=1e-6)


# ------------------------------------------------------------------ ModPTask


@pytest.mark.parametrize(
    ("k", "expected"),
    [(0, 1 / 3), (1, 1.0), (2, 1.0)],  # classes {0,3,6}: 1,0,0; {1,4}: 1,1; {2,5}: 1,1
)
def test_modp_oracle_zero_based_positions(k, expected):
    task = ModPTask(p=3, k=k)
    assert task.target([1, 1, 1, 0, 1, 1, 0]).item() == pytest.approx(expected)


def test_modp_first_position_is_position_zero():
    task = ModPTask(p=3, k=0)
    # only position 0 (and 3) belong to the class; a 1 at position 1 or 2 must not count
    assert task.target([1, 0, 0, 0]).item() == pytest.approx(0.5)
    assert task.target([0, 1, 1, 0]).item() == pytest.approx(0.0)
    assert task.target([1]).item() == pytest.approx(1.0)
    assert task.target([0]).item() == pytest.approx(0.0)


def test_modp_empty_class_gives_midpoint():
    task = ModPTask(p=3, k=2)
    assert EMPTY_CLASS_TARGET == 0.5
    assert task.target([1, 1]).item() == EMPTY_CLASS_TARGET
    assert task.target([[0], [1]]).tolist() == [EMPTY_CLASS_TARGET] * 2
    assert task.target([0, 0, 1]).item() == 1.0  # length 3: class {2} now holds a 1


def test_modp_all_zero_input():
    assert ModPTask(p=3, k=1).target([0] * 10).item() == 0.0


@pytest.mark.parametrize(("p", "k"), [(1, 0), (2, 1), (3, 0), (5, 3)])
@pytest.mark.parametrize("length", [1, 2, 4, 7, 16])
def test_modp_oracle_matches_naive_reference(p, k, length):
    task = ModPTask(p=p, k=k)
    rng = np.random.default_rng([p, k, length])
    tokens = rng.integers(0, 2, size=(10, length))
    expected = [naive_modp(list(row), p, k) for row in tokens]
    assert task.target(tokens).tolist() == pytest.approx(expected, abs=1e-6)


# ------------------------------------------------------------------ InContextKGram


def test_kgram_hand_example_bigram():
    target = InContextKGram(S=3, k=2).target([0, 1, 0, 2, 0])
    assert target.shape == (1, 3)
    assert target[0].tolist() == pytest.approx([0.0, 0.5, 0.5])


def test_kgram_no_earlier_occurrence_is_uniform():
    task = InContextKGram(S=3, k=2)
    assert task.target([0, 1, 2]).tolist()[0] == pytest.approx([1 / 3] * 3)
    assert task.target([1]).tolist()[0] == pytest.approx([1 / 3] * 3)  # shorter than k
    # length exactly k: the only earlier window is position 0
    assert task.target([0, 0]).tolist()[0] == pytest.approx([1.0, 0.0, 0.0])


def test_kgram_trigram_overlapping_occurrences():
    task = InContextKGram(S=3, k=3)
    # context (1, 1); earlier occurrences at (0,1) -> 1 and (1,2) -> 2, which overlap
    assert task.target([1, 1, 1, 2, 1, 1]).tolist()[0] == pytest.approx([0.0, 0.5, 0.5])
    # context (2, 2): occurrences ending at 1 and 2, both followed by 2
    assert task.target([2, 2, 2, 2]).tolist()[0] == pytest.approx([0.0, 0.0, 1.0])
    assert task.target([2, 2]).tolist()[0] == pytest.approx([1 / 3] * 3)  # length < k


def test_kgram_unigram_is_histogram():
    task = InContextKGram(S=3, k=1)
    assert task.target([0, 1, 1, 2]).tolist()[0] == pytest.approx([0.25, 0.5, 0.25])
    assert task.target([2]).tolist()[0] == pytest.approx([0.0, 0.0, 1.0])


@pytest.mark.parametrize("k", [1, 2, 3, 4])
@pytest.mark.parametrize("S", [2, 3, 4])
def test_kgram_oracle_matches_naive_reference(S, k):
    task = InContextKGram(S=S, k=k)
    for length in (1, 2, 3, 5, 9, 24):
        rng = np.random.default_rng([S, k, length])
        # a small effective alphabet makes repeated contexts (and so nontrivial targets) likely
        tokens = rng.integers(0, S, size=(12, length))
        got = task.target(tokens)
        assert got.shape == (12, S)
        for row, out in zip(tokens, got, strict=True):
            assert out.tolist() == pytest.approx(naive_kgram(list(row), S, k), abs=1e-6)
        assert torch.allclose(got.sum(-1), torch.ones(12))


# ------------------------------------------------------------------ samplers


@pytest.mark.parametrize(
    "task",
    [SimpleTask(), ModPTask(p=3, k=1), InContextKGram(S=4, k=3), InContextKGram(S=3, k=1)],
    ids=str,
)
@pytest.mark.parametrize("length", [1, 2, 17])
def test_sample_shape_dtype_vocab_and_seeding(task, length):
    a = np.asarray(task.sample(6, length, np.random.default_rng(0)))
    assert a.shape == (6, length)
    assert np.issubdtype(a.dtype, np.integer)
    assert a.min() >= 0
    assert a.max() < task.vocab_size
    b = np.asarray(task.sample(6, length, np.random.default_rng(0)))
    assert np.array_equal(a, b)
    batch = task.batch(6, length, np.random.default_rng(0))
    assert torch.equal(batch.tokens, torch.as_tensor(a))
    assert torch.allclose(batch.targets, task.oracle(batch.tokens))


@pytest.mark.parametrize("task", [SimpleTask(), ModPTask(), InContextKGram()], ids=str)
def test_sample_differs_between_seeds(task):
    a = np.asarray(task.sample(8, 40, np.random.default_rng(0)))
    b = np.asarray(task.sample(8, 40, np.random.default_rng(1)))
    assert not np.array_equal(a, b)


def _class_fractions(tokens: np.ndarray, p: int) -> np.ndarray:
    return np.stack([tokens[:, r::p].mean(1) for r in range(p)], axis=1)


def test_modp_residue_classes_have_independent_frequencies():
    tokens = ModPTask(p=3, k=0).sample(2000, 300, np.random.default_rng(0))
    fractions = _class_fractions(tokens, 3)
    corr = np.corrcoef(fractions.T)
    off_diagonal = corr[~np.eye(3, dtype=bool)]
    assert np.abs(off_diagonal).max() < 0.15
    # so the global fraction of 1s is a poor answer for class 0 in many rows
    gap = np.abs(fractions[:, 0] - tokens.mean(1))
    assert (gap > 0.1).mean() > 0.5
    # contrast: SimpleTask shares one frequency per row, so the classes move together
    simple = SimpleTask().sample(2000, 300, np.random.default_rng(0))
    assert np.corrcoef(_class_fractions(simple, 3).T)[0, 1] > 0.9


def test_beta_frequencies_follow_alpha():
    rng = np.random.default_rng(0)
    concentrated = beta_frequencies(rng, 200.0, (4000,))
    flat = beta_frequencies(rng, 1.0, (4000,))
    assert abs(concentrated.mean() - 0.5) < 0.01
    assert concentrated.std() < 0.05 < flat.std()
    tokens = bernoulli_tokens(rng, np.full((50, 400), 0.2))
    assert tokens.dtype == np.int64
    assert set(np.unique(tokens)) <= {0, 1}
    assert abs(tokens.mean() - 0.2) < 0.01


def _modal_follower_share(tokens: np.ndarray, k: int) -> float:
    """Over all (row, context) pairs, the share of followers equal to the context's most
    frequent follower within that row."""
    agree = total = 0
    for row in tokens:
        followers: dict[tuple[int, ...], list[int]] = {}
        for t in range(k - 1, len(row)):
            followers.setdefault(tuple(row[t - k + 1 : t]), []).append(int(row[t]))
        for seen in followers.values():
            agree += max(seen.count(v) for v in set(seen))
            total += len(seen)
    return agree / total


@pytest.mark.parametrize("k", [2, 3])
def test_kgram_sampler_is_a_markov_chain(k):
    rng = np.random.default_rng(0)
    sharp = InContextKGram(S=3, k=k, alpha=0.01).sample(40, 200, rng)
    flat = InContextKGram(S=3, k=k, alpha=100.0).sample(40, 200, rng)
    # near-deterministic transitions: given its context, the next token is almost fixed
    assert _modal_follower_share(sharp, k) > 0.9
    assert _modal_follower_share(flat, k) < 0.6


def test_kgram_sampler_rows_use_their_own_chain():
    tokens = InContextKGram(S=3, k=2, alpha=0.01).sample(200, 100, np.random.default_rng(0))
    # the follower of token 0 in each row (its modal one) is not the same in every row
    modal = set()
    for row in tokens:
        after_zero = [int(row[t + 1]) for t in range(len(row) - 1) if row[t] == 0]
        if after_zero:
            modal.add(max(set(after_zero), key=after_zero.count))
    assert len(modal) == 3


# ------------------------------------------------------------------ input checks


def test_token_outside_vocab_is_rejected_with_a_clear_message():
    task = ModPTask(p=3)
    with pytest.raises(TokenError) as info:
        task.target([0, 1, 2])
    message = str(info.value)
    assert "token 2" in message
    assert "0..1" in message
    assert isinstance(info.value, simcheck.SimcheckError)
    with pytest.raises(TokenError, match="token -1"):
        task.target([0, -1])
    with pytest.raises(TokenError, match=r"0\.\.2"):
        InContextKGram(S=3).target([[0, 1], [3, 0]])


@pytest.mark.parametrize(
    "bad",
    [
        [0.0, 1.0],
        np.array([0.5, 1.0]),
        torch.tensor([0.0, 1.0]),
        [True, False],
        [],
        torch.zeros(2, 0, dtype=torch.long),
        torch.zeros(1, 2, 3, dtype=torch.long),
        [[0, 1], [0]],
        "0101",
    ],
    ids=["float-list", "float-numpy", "float-torch", "bool", "empty", "zero-length", "3d",
         "ragged", "string"],
)  # fmt: skip
def test_malformed_tokens_are_rejected(bad):
    with pytest.raises(TokenError):
        SimpleTask().target(bad)


def test_accepted_token_containers():
    task = ModPTask(p=2, k=0)
    expected = torch.tensor([2 / 3])
    for tokens in ([1, 0, 1, 1, 0], (1, 0, 1, 1, 0), np.array([1, 0, 1, 1, 0], dtype=np.int32)):
        assert torch.allclose(task.target(tokens), expected)
    checked = task.check_tokens(torch.tensor([1, 0], dtype=torch.int8))
    assert checked.dtype == torch.long
    assert checked.shape == (1, 2)


def test_batch_rejects_a_sampler_with_the_wrong_shape():
    @dataclass(frozen=True)
    class Broken(SimpleTask):
        def sample(self, batch, length, generator):
            return np.zeros((batch, length + 1), dtype=np.int64)

    with pytest.raises(TokenError, match="shape"):
        Broken().batch(2, 5, np.random.default_rng(0))


# ------------------------------------------------------------------ registry


def test_get_task_parses_parameters():
    task = get_task("modp:p=5,k=2")
    assert isinstance(task, ModPTask)
    assert (task.p, task.k, task.alpha) == (5, 2, 1.0)
    assert task.period == 5
    assert get_task(" kgram : S=4 , k=3 ") == InContextKGram(S=4, k=3)
    assert get_task("simple") == SimpleTask()
    assert get_task(task) is task


@pytest.mark.parametrize("name", task_names())
def test_spec_round_trips_for_every_registered_task(name):
    task = get_task(name)
    assert get_task(task.spec()) == task
    assert str(task) == task.spec()


@pytest.mark.parametrize(
    "task", [ModPTask(p=7, k=6, alpha=0.25), InContextKGram(S=5, k=1, alpha=3.0), SimpleTask(1.5)]
)
def test_spec_round_trips_non_default_parameters(task):
    again = get_task(task.spec())
    assert again == task
    assert again.params() == task.params()


def test_unknown_task_suggests_the_close_name():
    with pytest.raises(simcheck.TaskSpecError) as info:
        get_task("modq:p=3")
    assert "modp" in str(info.value)
    assert "unknown task 'modq'" in str(info.value)


def test_unknown_parameter_lists_the_valid_ones():
    with pytest.raises(simcheck.TaskSpecError) as info:
        get_task("modp:q=3")
    message = str(info.value)
    assert "'q'" in message
    for valid in ("p=3", "k=0", "alpha=1.0"):
        assert valid in message


@pytest.mark.parametrize("spec", ["modp:p=abc", "modp:alpha=x", "kgram:k=1.5", "modp:p"])
def test_malformed_parameter_values(spec):
    with pytest.raises(simcheck.TaskSpecError):
        get_task(spec)


def test_wrong_type_message_names_parameter_and_type():
    with pytest.raises(simcheck.TaskSpecError, match=r"p='abc'.*int"):
        get_task("modp:p=abc")


@pytest.mark.parametrize(
    "spec",
    [
        "modp:p=3,k=3",
        "modp:p=3,k=-1",
        "modp:p=0",
        "modp:alpha=0",
        "simple:alpha=-1",
        "kgram:S=1",
        "kgram:k=0",
        "kgram:alpha=0",
        "kgram:S=10,k=8",
    ],
)
def test_invalid_parameter_values(spec):
    with pytest.raises(simcheck.TaskSpecError):
        get_task(spec)


@pytest.mark.parametrize("spec", ["", "   ", None, 3])
def test_non_string_or_empty_spec(spec):
    with pytest.raises(simcheck.TaskSpecError):
        get_task(spec)


def test_register_requires_a_dataclass():
    class NotADataclass(Task):
        name: ClassVar[str] = "nodataclass"

    with pytest.raises(simcheck.TaskSpecError, match="dataclass"):
        register_task(NotADataclass)
    assert "nodataclass" not in task_names()


# ------------------------------------------------------------------ loss, metric, distance


def test_scalar_loss_metric_and_distance():
    task = SimpleTask()
    output = torch.tensor([[0.5], [-1.0], [2.0]])
    targets = torch.tensor([0.0, 1.0, 2.0])
    assert task.loss(output, targets).tolist() == pytest.approx([0.25, 4.0, 0.0])
    assert task.metric(output, targets).tolist() == pytest.approx([0.5, 2.0, 0.0])
    assert task.metric_name == "abs_err"
    assert task.output_size == 1
    assert task.prediction(output).tolist() == [0.5, -1.0, 2.0]


def test_distribution_loss_is_kl():
    task = InContextKGram(S=3)
    target = torch.tensor([[0.2, 0.3, 0.5], [1.0, 0.0, 0.0]])
    # a model whose softmax equals the target scores zero
    assert task.loss(target.log()[:1], target[:1]).item() == pytest.approx(0.0, abs=1e-6)
    logits = torch.tensor([[1.0, -0.5, 0.3], [0.0, 0.0, 0.0]])
    q = np.exp(logits.numpy()) / np.exp(logits.numpy()).sum(-1, keepdims=True)
    p = target.numpy()
    cross_entropy = -(p * np.log(q)).sum(-1)
    entropy = -np.array([(row[row > 0] * np.log(row[row > 0])).sum() for row in p])
    loss = task.loss(logits, target)
    assert loss.tolist() == pytest.approx((cross_entropy - entropy).tolist(), abs=1e-6)
    assert (loss > 0).all()
    assert loss[1].item() == pytest.approx(math.log(3), abs=1e-6)  # one-hot target: -log(1/3)
    assert task.output_size == 3


def test_distribution_distance_is_total_variation():
    task = InContextKGram(S=3)
    a = torch.tensor([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.2, 0.3, 0.5]])
    b = torch.tensor([[0.0, 1.0, 0.0], [0.5, 0.0, 0.5], [0.2, 0.3, 0.5]])
    assert task.distance(a, b).tolist() == pytest.approx([1.0, 0.5, 0.0])
    assert task.metric_name == "tv"
    logits = torch.tensor([[0.0, 0.0, 0.0]])
    uniform = torch.full((1, 3), 1 / 3)
    assert task.metric(logits, uniform).item() == pytest.approx(0.0, abs=1e-7)
    assert task.metric(logits, a[:1]).item() == pytest.approx(2 / 3, abs=1e-6)


def test_baselines():
    tokens = torch.tensor([[1, 1, 0, 0, 0], [1, 1, 1, 1, 0]])
    assert ModPTask().baseline(tokens)[:, 0].tolist() == pytest.approx([0.4, 0.8])
    assert SimpleTask().baseline(tokens).tolist() == [[0.0], [0.0]]
    kgram = InContextKGram(S=3, k=2)
    probs = kgram.baseline(torch.tensor([[0, 0, 1]])).exp()
    assert probs[0].tolist() == pytest.approx([2.5 / 4.5, 1.5 / 4.5, 0.5 / 4.5])


# ------------------------------------------------------------------ a notebook task


@dataclass(frozen=True)
class Parity(Task):
    """Parity of the number of 1-tokens (a task a notebook user might write)."""

    name: ClassVar[str] = "parity_test"
    vocab_size: ClassVar[int] = 2
    default_pos: ClassVar[str] = "none"
    bias: float = 0.5
    flip: bool = False

    def sample(self, batch, length, generator):
        return (generator.random((batch, length)) < self.bias).astype(np.int64)

    def oracle(self, tokens):
        parity = (tokens.sum(-1) % 2).float()
        return 1 - parity if self.flip else parity


@pytest.fixture
def private_registry(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    return registry._REGISTRY


def test_custom_task_batches_without_registration():
    task = Parity(bias=0.3)
    batch = task.batch(5, 7, np.random.default_rng(0))
    assert batch.tokens.shape == (5, 7)
    assert batch.targets.tolist() == [float(sum(r) % 2) for r in batch.tokens.tolist()]
    assert task.spec() == "parity_test:bias=0.3,flip=False"
    assert task.output_size == 1
    assert "parity_test" not in task_names()


def test_register_custom_task(private_registry):
    assert register_task(Parity) is Parity
    assert "parity_test" in task_names()
    task = get_task("parity_test:bias=0.25,flip=true")
    assert task == Parity(bias=0.25, flip=True)
    assert get_task(task.spec()) == task
    assert task.target([1, 1, 1]).item() == 0.0
    with pytest.raises(simcheck.TaskSpecError):
        get_task("parity_test:flip=maybe")


def test_private_registry_is_restored():
    # runs after test_register_custom_task: the registration did not leak
    assert "parity_test" not in task_names()
    assert {"simple", "modp", "kgram"} <= set(task_names())


def test_a_task_without_a_vocabulary_size_says_so():
    @dataclass(frozen=True)
    class Forgetful(Task):
        name: ClassVar[str] = "forgetful"

    with pytest.raises(simcheck.TaskSpecError, match="vocab_size"):
        Forgetful().check_tokens([0, 1])
