"""Each extension point takes one file: a task, a probe, a witness construction, declared
here, is found by the Python API, the command line and sweeps (a probe by the API, which is
where probes are chosen); outcomes are one Enum that everything printing them reads.
``docs/contributing/`` has the page for each."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pytest
import torch

import simcheck
from simcheck.checking.config import CheckConfig
from simcheck.checking.outcomes import Outcome
from simcheck.checking.witnesses import register_witness, witness_methods
from simcheck.cli import _check_config, build_parser, main
from simcheck.probes import Probe
from simcheck.sweeps.spec import parse_spec
from simcheck.tasks import Task, register_task

# ------------------------------------------------------------------ a task, in one file


@register_task
@dataclass(frozen=True)
class FirstIsLast(Task):
    """Whether the first token equals the last (classes: 0 or 1)."""

    name: ClassVar[str] = "first_is_last_test"
    output: ClassVar[str] = "classes"
    vocab_size: ClassVar[int] = 3
    default_pos: ClassVar[str] = "learned"

    @property
    def num_classes(self) -> int:
        return 2

    def sample(self, batch: int, length: int, generator: np.random.Generator) -> np.ndarray:
        return generator.integers(0, 3, size=(batch, length))

    def oracle(self, tokens: torch.Tensor) -> torch.Tensor:
        return (tokens[:, 0] == tokens[:, -1]).long()


def test_a_task_in_one_file_is_found_by_the_api_the_cli_and_sweeps(capsys, tmp_path):
    task = simcheck.get_task("first_is_last_test")
    assert isinstance(task, FirstIsLast) and task.output_size == 2
    assert main(["tasks"]) == 0
    assert "first_is_last_test" in capsys.readouterr().out
    spec = parse_spec(
        {"grid": {"task": "first_is_last_test", "train_len": [8]}, "train": {"steps": 2}}
    )
    assert [point.task for point in spec.points] == ["first_is_last_test"]
    run = simcheck.train("first_is_last_test", tmp_path / "run", train_len=6, steps=2,
                         progress=False)  # fmt: skip
    assert run.finished and run.task == task


# ------------------------------------------------------------------ a probe, in one file


@dataclass(frozen=True)
class MlpOut(Probe):
    """A layer's MLP output at the query positions: [batch, query, d_model]."""

    layer: int

    def hook_names(self, model: Any) -> list[str]:
        return [f"blocks.{self.layer}.hook_mlp_out"]


def test_a_probe_in_one_file_is_recorded_and_compared_by_the_check():
    task = simcheck.get_task("modp:p=3")
    model = simcheck.build_model(task, pos="periodic", d_model=16, d_mlp=16, seed=0)
    tokens = torch.as_tensor(task.sample(2, 12, np.random.default_rng(0)))
    recording = simcheck.record(model, tokens, [MlpOut(0)])
    assert recording["mlpout.layer=0"].shape == (2, 1, 16)
    report = simcheck.check(
        model, task=task, train_len=8, test_lengths=[32], probes=[MlpOut(0)], samples=20,
        reference_samples=32, witnesses=["types"],
    )  # fmt: skip
    assert "mlpout.layer=0" in report.config["probes"]
    assert "mlpout.layer=0" in set(report.probe_table().index.get_level_values("probe"))


# ------------------------------------------------------------------ a witness construction


@register_witness("last_half_test", help="the second half of x, cut to N")
def last_half(context: Any) -> list[np.ndarray]:
    """x's last N tokens (a sub-string ending on x's window)."""
    return [context.x[-context.max_length :]]


def test_a_witness_construction_in_one_file_is_found_by_the_api_the_cli_and_sweeps():
    assert "last_half_test" in witness_methods()
    assert CheckConfig(witnesses=("types", "last_half_test")).witnesses[-1] == "last_half_test"
    args = build_parser().parse_args(["check", "RUN", "--witnesses", "types,last_half_test"])
    assert _check_config(args).witnesses == ("types", "last_half_test")
    spec = parse_spec(
        {"grid": {"task": "modp:p=3", "train_len": [8]},
         "check": {"witnesses": ["types", "last_half_test"]}}
    )  # fmt: skip
    assert spec.check.config.witnesses == ("types", "last_half_test")
    task = simcheck.get_task("modp:p=3")
    model = simcheck.build_model(task, pos="periodic", d_model=16, d_mlp=16, seed=0)
    report = simcheck.check(
        model, task=task, train_len=8, test_lengths=[32], samples=20, reference_samples=32,
        witnesses=["types", "last_half_test"],
    )  # fmt: skip
    assert "last_half_test" in report.result(32).by_method


# ------------------------------------------------------------------ outcomes: one Enum


def test_everything_that_prints_an_outcome_reads_it_from_the_enum(tmp_path):
    """An outcome added to `Outcome` (with its place in `decide`) reaches every output with
    no other edit: the summary, the HTML page's list and the certificate read the Enum."""
    task = simcheck.get_task("modp:p=3")
    model = simcheck.build_model(task, pos="periodic", d_model=16, d_mlp=16, seed=1)
    report = simcheck.check(model, task=task, train_len=8, test_lengths=[32], samples=20,
                            reference_samples=32, witnesses=["types"])  # fmt: skip
    outcome = Outcome(report.outcome[32])
    assert outcome.meaning in report.summary()
    page = report.to_html()
    for member in Outcome:
        assert member.meaning.replace("'", "&#39;").replace(">", "&gt;").replace(
            "<", "&lt;"
        ) in page  # fmt: skip
    saved = json.loads(report.to_json())
    assert Outcome(saved["outcome"]["32"]) is outcome


@pytest.mark.parametrize("name", [o.value for o in Outcome])
def test_each_outcome_round_trips_by_its_name(name):
    assert str(Outcome(name)) == name and Outcome(name).advice
