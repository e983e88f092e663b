"""The command line: listing tasks, train then eval, and one-line errors with exit status 2."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from simcheck.cli import main

POSITIONS = ("periodic", "learned")
TINY = ["--d-model", "16", "--d-mlp", "32", "--batch-size", "8", "--quiet"]


def assert_one_line_error(capsys, code: int, *fragments: str) -> str:
    captured = capsys.readouterr()
    assert code == 2
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("simcheck: error: ")
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory) -> Path:
    """A run trained through the CLI (ModPTask(p=3), periodic, N=8, 30 steps)."""
    out = tmp_path_factory.mktemp("cli") / "modp"
    argv = ["train", "--task", "modp:p=3", "--pos", "periodic", "--train-len", "8"]
    argv += ["--steps", "30", "--log-every", "10", "--out", str(out), *TINY]
    assert main(argv) == 0
    return out


def test_tasks_lists_every_task_with_parameters(capsys):
    assert main(["tasks"]) == 0
    out = capsys.readouterr().out
    for name, params in {
        "simple": ["omega=3.0 (float)", "alpha=1.0 (float)"],
        "modp": ["p=3 (int)", "k=0 (int)"],
        "kgram": ["S=3 (int)", "k=2 (int)"],
    }.items():
        assert any(line.startswith(name) for line in out.splitlines()), name
        for param in params:
            assert param in out
    assert "pos=periodic" in out


def test_train_records_the_options(cli_run):
    spec = json.loads((cli_run / "spec.json").read_text())
    assert spec["task"]["spec"] == "modp:p=3,k=0,alpha=1.0"
    assert spec["model"]["pos"] == "periodic"
    assert spec["model"]["d_model"] == 16
    assert spec["model"]["d_mlp"] == 32
    assert spec["training"]["train_len"] == 8
    assert spec["training"]["steps"] == 30
    assert spec["training"]["batch_size"] == 8
    assert json.loads((cli_run / "status.json").read_text())["state"] == "finished"
    assert len((cli_run / "metrics.jsonl").read_text().splitlines()) == 3


def test_eval_prints_a_table(cli_run, capsys):
    code = main(["eval", str(cli_run), "--lengths", "8,16", "--samples", "16", "--quiet"])
    assert code == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    out = captured.out
    assert "modp:p=3,k=0,alpha=1.0" in out
    assert "N=8" in out
    rows = [line.split() for line in out.splitlines() if line.split()[:1] in (["8"], ["16*"])]
    assert [row[0] for row in rows] == ["8", "16*"]
    for row in rows:
        float(row[1])  # the mean loss is a number
    assert "plateau" in out
    saved = json.loads((cli_run / "eval.json").read_text())
    assert [row["length"] for row in saved["rows"]] == [8, 16]
    assert saved["meta"]["samples"] == 16


def test_eval_of_several_runs_compares_plateaus_and_draws_one_figure(cli_run, tmp_path, capsys):
    other = tmp_path / "learned"
    argv = ["train", "--task", "modp:p=3", "--pos", "learned", "--n-ctx", "64"]
    assert main([*argv, "--train-len", "8", "--steps", "5", "--out", str(other), *TINY]) == 0
    figure = tmp_path / "figs" / "compare.png"
    argv = ["eval", str(cli_run), str(other), "--lengths", "8,16,32", "--samples", "8"]
    assert main([*argv, "--figure", str(figure), "--quiet"]) == 0
    out = capsys.readouterr().out
    summary = [line.split() for line in out.splitlines()]
    plateaus = {row[0]: float(row[3]) for row in summary if len(row) == 4 and row[1] in POSITIONS}
    for run in (cli_run, other):
        saved = json.loads((run / "eval.json").read_text())
        assert plateaus[str(run)] == pytest.approx(saved["plateau"], rel=1e-3)
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_eval_of_an_unfinished_run_says_so(cli_run, tmp_path, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(cli_run, copy)
    status = json.loads((copy / "status.json").read_text())
    (copy / "status.json").write_text(json.dumps({**status, "state": "interrupted", "step": 20}))
    assert main(["eval", str(copy), "--lengths", "8", "--samples", "4", "--quiet"]) == 0
    assert "is interrupted at step 20" in capsys.readouterr().out


def test_show_summarises_a_run(cli_run, capsys):
    main(["eval", str(cli_run), "--lengths", "8,16", "--samples", "8", "--quiet"])
    capsys.readouterr()
    assert main(["show", str(cli_run)]) == 0
    out = capsys.readouterr().out
    assert "modp:p=3,k=0,alpha=1.0" in out
    assert "pos=periodic" in out and "d_model=16" in out
    assert "finished at step 30" in out
    last = json.loads((cli_run / "metrics.jsonl").read_text().splitlines()[-1])
    assert f"{last['loss']:.3e}" in out
    plateau = json.loads((cli_run / "eval.json").read_text())["plateau"]
    assert f"{plateau:.3e}" in out


def test_show_of_a_missing_directory(tmp_path, capsys):
    assert_one_line_error(capsys, main(["show", str(tmp_path / "none")]), "no run directory")


def test_train_resume_of_a_finished_run(cli_run, capsys):
    assert main(["train", "--resume", str(cli_run), "--quiet"]) == 0
    assert "finished at step 30" in capsys.readouterr().out


def test_train_into_an_existing_run_is_refused(cli_run, capsys):
    code = main(["train", "--task", "modp:p=3", "--out", str(cli_run), *TINY])
    assert_one_line_error(capsys, code, "--resume")


@pytest.mark.parametrize(
    ("task", "fragment"),
    [("nope", "unknown task 'nope'"), ("modp:q=3", "no parameter 'q'"), ("modp:p=x", "int")],
)
def test_train_bad_task(tmp_path, capsys, task, fragment):
    code = main(["train", "--task", task, "--out", str(tmp_path / "run"), *TINY])
    assert_one_line_error(capsys, code, fragment)
    assert not (tmp_path / "run").exists()


def test_train_without_task(capsys):
    assert_one_line_error(capsys, main(["train", "--quiet"]), "--task")


def test_eval_of_a_missing_directory(tmp_path, capsys):
    code = main(["eval", str(tmp_path / "missing"), "--lengths", "8", "--quiet"])
    assert_one_line_error(capsys, code, "no run directory")


def test_eval_beyond_a_learned_table(tmp_path, capsys):
    out = tmp_path / "learned"
    argv = ["train", "--task", "modp:p=3", "--pos", "learned", "--n-ctx", "16"]
    assert main([*argv, "--train-len", "8", "--steps", "3", "--out", str(out), *TINY]) == 0
    capsys.readouterr()
    code = main(["eval", str(out), "--lengths", "8,16,32", "--samples", "4", "--quiet"])
    assert_one_line_error(capsys, code, "32", "n_ctx=16")
    assert not (out / "eval.json").exists()


def test_train_len_beyond_a_learned_table(tmp_path, capsys):
    argv = ["train", "--task", "modp", "--pos", "learned", "--n-ctx", "16", "--train-len", "32"]
    code = main([*argv, "--out", str(tmp_path / "run"), *TINY])
    assert_one_line_error(capsys, code, "n_ctx")


@pytest.mark.parametrize("lengths", ["8,abc", "0,8", "8,..."])
def test_eval_bad_lengths(cli_run, capsys, lengths):
    code = main(["eval", str(cli_run), "--lengths", lengths, "--quiet"])
    assert_one_line_error(capsys, code, "lengths")


def test_module_entry_point_runs():
    done = subprocess.run(
        [sys.executable, "-m", "simcheck.cli", "tasks"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "modp" in done.stdout
    assert "kgram" in done.stdout
