"""The tasks that isolate one failure mechanism: needle (attention dilution) and lag
(locality): oracles against plain Python, samplers, their short instances, bad parameters."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from simcheck import get_task
from simcheck.errors import TaskSpecError
from simcheck.tasks import NO_CLASS


@pytest.mark.parametrize("length", [1, 2, 5])
def test_needle_oracle_says_whether_the_last_token_id_occurs(length):
    task = get_task("needle:V=3")
    strings = torch.tensor(list(itertools.product(range(3), repeat=length)))
    expected = [int(2 in row) for row in strings.tolist()]
    assert task.oracle(strings).tolist() == expected


def test_needle_sampler_holds_at_most_one_needle_in_half_the_rows():
    task = get_task("needle:V=4")
    tokens = task.sample(4000, 50, np.random.default_rng(0))
    counts = (tokens == 3).sum(1)
    assert set(np.unique(counts)) <= {0, 1}
    assert counts.mean() == pytest.approx(0.5, abs=0.03)
    where = np.argmax(tokens == 3, axis=1)[counts == 1]
    assert where.mean() == pytest.approx(24.5, abs=1.5)  # uniform over the positions


@pytest.mark.parametrize("seed", range(5))
def test_needle_short_instances_keep_the_answer_and_the_last_token(seed):
    task = get_task("needle:V=4")
    rng = np.random.default_rng(seed)
    for x in task.sample(20, 80, rng):
        (z,) = task.short_instances(x, 16, rng)
        assert len(z) == 16 and z[-1] == x[-1]
        assert int(task.oracle(torch.as_tensor(z[None]))) == int(
            task.oracle(torch.as_tensor(x[None]))
        )


@pytest.mark.parametrize("length", [1, 2, 4])
def test_lag_oracle_is_the_token_tau_before_the_last(length):
    task = get_task("lag:V=3,tau=1")
    strings = torch.tensor(list(itertools.product(range(3), repeat=length)))
    expected = [row[-2] if length > 1 else NO_CLASS for row in strings.tolist()]
    assert task.oracle(strings).tolist() == expected


def test_lag_is_local_and_its_short_instances_keep_the_window():
    task = get_task("lag:V=8,tau=2")
    assert task.locality == 2 and task.min_length == 3
    x = task.sample(1, 40, np.random.default_rng(1))[0]
    (z,) = task.short_instances(x, 10, np.random.default_rng(0))
    assert np.array_equal(z, x[-10:])
    assert task.short_instances(x, 2, np.random.default_rng(0)) == []


@pytest.mark.parametrize(
    ("spec", "message"),
    [("needle:V=1", "V must be in 2.."), ("lag:tau=0", "tau"), ("lag:V=1", "V must be")],
)
def test_bad_parameters_are_refused(spec, message):
    with pytest.raises(TaskSpecError, match=message):
        get_task(spec)
