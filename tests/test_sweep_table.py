"""simcheck.sweeps.table: the per-length column names, read back and listed; simcheck._util.io: the
weight hash does not depend on where the weights live."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

import simcheck
from simcheck._util.io import weights_hash
from simcheck.sweeps.runner import _column_rank
from simcheck.sweeps.table import CHECK_KINDS, EVAL_KINDS, KINDS, column, lengths_of, parse_column


def test_column_names_and_reads_back_every_kind():
    assert column("long_error", 256) == "long_error@256"
    assert column("eps*", 64) == "eps*@64"
    assert KINDS == EVAL_KINDS + CHECK_KINDS
    for kind in KINDS:
        assert parse_column(column(kind, 32)) == (kind, 32)
    for other in ("plateau", "simulatable", "error", "task.p", "x@8", "loss@", "loss@8a"):
        assert parse_column(other) is None
    with pytest.raises(simcheck.SimcheckError, match="not a per-length column"):
        column("plateau", 8)


def test_lengths_of_lists_one_kind_sorted():
    table = pd.DataFrame(
        columns=["loss@16", "loss@8", "error@8", "long_error@64", "model_gap@128", "plateau"]
    )
    assert lengths_of(table, "loss") == [8, 16]
    assert lengths_of(table, "error") == [8]  # not long_error@64
    assert lengths_of(table, "long_error") == [64]
    assert lengths_of(table, "simulatable") == []


def test_results_table_columns_keep_their_order():
    columns = [
        "error", "simulatable", "simulatable@64", "certified", "loss@128", "point",
        "error@8", "task.p", "loss@16", "eps*@64", "plateau", "total_s", "outcome@64",
        "final_loss", "train_len", "run", "weights_sha256",
    ]  # fmt: skip
    assert sorted(columns, key=_column_rank) == [
        "point", "task.p", "train_len", "run", "final_loss", "loss@16", "loss@128", "error@8",
        "plateau", "outcome@64", "eps*@64", "simulatable@64", "certified", "simulatable",
        "weights_sha256", "total_s", "error",
    ]  # fmt: skip


def test_weights_hash_reads_the_bytes_on_the_cpu():
    model = simcheck.build_model(simcheck.get_task("modp:p=3"), d_model=16, d_mlp=16)
    digest = weights_hash(model)
    assert len(digest) == 64 and digest == weights_hash(model)
    if torch.cuda.is_available():
        assert weights_hash(model.to("cuda")) == digest
