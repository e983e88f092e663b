"""The command line: listing tasks, train then eval, check, show, flags made from the settings
classes, --json, --version, -q/-v, a start without torch, and one-line errors with exit
status 2."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path

import pytest

from simcheck import CheckConfig, ModelAdapter, ModelSpec, TrainConfig, load_run
from simcheck.cli import (
    ADAPTER_FLAGS,
    CHECK_FLAGS,
    FROM_TASK,
    MODEL_FLAGS,
    TRAIN_FLAGS,
    build_parser,
    main,
)

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
    argv = ["eval", str(copy), "--lengths", "8", "--samples", "4", "--quiet", "--json"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "is interrupted at step 20" in captured.err
    results = json.loads(captured.out)["results"]  # the note stays out of the document
    assert [row["length"] for row in results[str(copy)]["rows"]] == [8]


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


@pytest.mark.parametrize(
    ("flags", "named"),
    [(["--steps", "60"], "--steps"), (["--norm", "RMS", "--lr", "0.1"], "--norm, --lr"),
     (["--task", "modp"], "--task"), (["--overwrite"], "--overwrite")],
)  # fmt: skip
def test_train_resume_refuses_settings_it_would_ignore(cli_run, capsys, flags, named):
    code = main(["train", "--resume", str(cli_run), *flags, "--quiet"])
    assert_one_line_error(capsys, code, "recorded settings", f"drop {named}")


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


# ------------------------------------------------------------------ a start without torch


def test_help_tasks_and_argument_errors_import_neither_torch_nor_transformer_lens():
    """What answers at once must not load torch (seconds) or TransformerLens (more)."""
    code = textwrap.dedent(
        """
        import sys
        from simcheck.cli import main
        codes = [main(argv) for argv in (
            ["--help"], ["--version"], ["tasks"], ["train", "--help"], ["eval", "--help"],
            ["check", "--help"], ["show", "--help"],
            ["train", "--task", "modp", "--norm", "BatchNorm"],
            ["train", "--task", "modp", "--weight-decay", "-1"],
            ["eval", "RUN", "--lengths", "8,16,...,64"], ["check", "RUN", "--seed", "-1"],
        )]
        print(codes)
        print(sorted(m for m in ("torch", "transformer_lens") if m in sys.modules))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    codes, heavy = done.stdout.strip().splitlines()[-2:]
    assert codes == "[0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2]"
    assert heavy == "[]"


# ------------------------------------------------------------------ flags from the settings


def _subparser(name: str) -> argparse.ArgumentParser:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices[name]


def _group_dests(parser: argparse.ArgumentParser, title: str) -> set[str]:
    group = next(g for g in parser._action_groups if (g.title or "").startswith(title))
    return {action.dest for action in group._group_actions}


@pytest.mark.parametrize(
    ("cls", "flags", "derived"),
    [
        (ModelSpec, MODEL_FLAGS, FROM_TASK),
        (TrainConfig, TRAIN_FLAGS, ()),
        (CheckConfig, CHECK_FLAGS, ()),
        (ModelAdapter, ADAPTER_FLAGS, ()),
    ],
)
def test_every_settings_field_has_a_flag_and_every_flag_a_field(cls, flags, derived):
    fields = {field.name for field in dataclasses.fields(cls)}
    assert set(flags) | set(derived) == fields
    assert not set(flags) & set(derived)
    options = [flag.flag for flag in flags.values()]
    assert len(set(options)) == len(options)


def test_the_commands_take_those_flags():
    train = _subparser("train")
    model_fields = {field.name for field in dataclasses.fields(ModelSpec)}
    assert _group_dests(train, "model") == model_fields - set(FROM_TASK)
    assert _group_dests(train, "training") == {f.name for f in dataclasses.fields(TrainConfig)}
    check = _subparser("check")
    assert _group_dests(check, "check settings") == {*CheckConfig.field_names(), "bits"}
    adapter = {field.name for field in dataclasses.fields(ModelAdapter)}
    for command in ("eval", "check"):
        assert adapter <= _group_dests(_subparser(command), "your own model")


def test_train_help_lists_every_option(capsys):
    assert main(["train", "--help"]) == 0
    out = capsys.readouterr().out
    for flag in ("--act-fn", "--min-lr-ratio", "--layers", "--heads", "--norm", "--pos"):
        assert flag in out
    assert "{LN,RMS,none}" in out


def test_train_flags_reach_the_run_record(tmp_path):
    out = tmp_path / "run"
    model = {
        "--pos": "periodic", "--layers": "1", "--heads": "2", "--d-model": "16",
        "--d-head": "4", "--d-mlp": "16", "--n-ctx": "64", "--period": "3",
        "--locality": "1", "--local-scale": "constant", "--norm": "RMS", "--act-fn": "gelu",
        "--init": "xavier_uniform", "--seed": "3",
    }  # fmt: skip
    training = {
        "--train-len": "8", "--min-len": "4", "--steps": "6", "--batch-size": "4",
        "--lr": "0.002", "--weight-decay": "0.01", "--warmup": "0.2", "--min-lr-ratio": "0.25",
        "--grad-clip": "0", "--data-seed": "2", "--log-every": "3", "--checkpoint-every": "3",
        "--curriculum": "0.5",
    }  # fmt: skip
    argv = ["train", "--task", "modp:p=3", "--out", str(out), "--quiet"]
    assert main([*argv, *(x for item in {**model, **training}.items() for x in item)]) == 0
    spec = json.loads((out / "spec.json").read_text())
    by_flag = {flag.flag: name for name, flag in {**MODEL_FLAGS, **TRAIN_FLAGS}.items()}
    assert set(by_flag) == set(model) | set(training) | {"--pos-offsets", "--forward"}
    for flag, value in model.items():
        assert str(spec["model"][by_flag[flag]]) == value, flag
    for flag, value in training.items():
        assert spec["training"][by_flag[flag]] == pytest.approx(float(value)), flag
    assert spec["training"]["forward"] == "fused"  # the default, recorded
    hooked = tmp_path / "hooked"
    assert main([*argv[:4], str(hooked), "--quiet", "--steps", "2", "--forward", "hooked"]) == 0
    assert json.loads((hooked / "spec.json").read_text())["training"]["forward"] == "hooked"
    assert main([*argv[:4], str(tmp_path / "bad"), "--forward", "compiled"]) == 2
    run = load_run(out)
    assert run.model.cfg.normalization_type == "RMS"
    assert run.model.cfg.act_fn == "gelu"


def test_train_pos_offsets_flag(tmp_path):
    out = tmp_path / "run"
    argv = ["train", "--task", "modp:p=3", "--pos", "learned", "--n-ctx", "16", "--pos-offsets"]
    assert main([*argv, "--train-len", "8", "--steps", "2", "--out", str(out), *TINY]) == 0
    assert json.loads((out / "spec.json").read_text())["training"]["pos_offsets"] is True


# ------------------------------------------------------------------ --version, -q/-v, --json


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"simcheck {metadata.version('simcheck')}\n"


@pytest.mark.parametrize(
    ("flags", "bar"),
    [((), False), (("-v",), True), (("--verbose",), True), (("-q",), False)],
)
@pytest.mark.parametrize("where", ["before", "after"])
def test_verbose_draws_progress_bars_off_a_terminal_and_quiet_none(
    cli_run, tmp_path, capsys, flags, bar, where
):
    argv = ["eval", str(cli_run), "--lengths", "8,16", "--samples", "4", "--out", str(tmp_path)]
    argv = [*flags, *argv] if where == "before" else [*argv, *flags]
    assert main(argv) == 0
    err = capsys.readouterr().err  # not a terminal under pytest
    assert ("length" in err) == bar, err


def test_quiet_and_verbose_together_are_refused(cli_run, capsys):
    code = main(["-q", "eval", str(cli_run), "--lengths", "8", "-v"])
    assert_one_line_error(capsys, code, "-q and -v")


def test_show_json(cli_run, capsys):
    assert main(["show", str(cli_run), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["run"] == str(cli_run)
    assert data["task"] == "modp:p=3,k=0,alpha=1.0"
    assert data["model"]["pos"] == "periodic"
    assert data["model"]["d_model"] == 16
    assert data["training"]["steps"] == 30
    assert (data["state"], data["step"]) == ("finished", 30)
    last = json.loads((cli_run / "metrics.jsonl").read_text().splitlines()[-1])
    assert data["last_metrics"]["loss"] == last["loss"]


def test_check_json_prints_the_certificate(cli_run, tmp_path, capsys):
    out = tmp_path / "check"
    argv = ["check", str(cli_run), "--test-len", "16", "--samples", "20", "--max-samples", "20"]
    argv += ["--reference-samples", "16", "--witnesses", "types", "--out", str(out)]
    assert main([*argv, "--quiet", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    saved = json.loads((out / "certificate.json").read_text())
    assert data["out"] == str(out)
    assert data["certificate"]["outcome"] == saved["outcome"]
    assert [r["T"] for r in data["certificate"]["results"]] == [16]


# ------------------------------------------------------------------ bad values, one line each


@pytest.mark.parametrize(
    ("flags", "fragment"),
    [
        (["--weight-decay", "-1"], "weight_decay must be >= 0"),
        (["--data-seed", "-1"], "data_seed must be >= 0"),
        (["--seed", "-1"], "seed must be >= 0"),
        (["--grad-clip", "-1"], "grad_clip must be >= 0"),
        (["--grad-clip", "nan"], "grad_clip must be >= 0 and finite"),
        (["--d-head", "0"], "d_head must be >= 1"),
        (["--pos", "none", "--period", "3"], "period"),
        (["--min-lr-ratio", "2"], "min_lr_ratio"),
    ],
)
def test_train_refuses_bad_values(tmp_path, capsys, flags, fragment):
    code = main(["train", "--task", "modp:p=3", "--out", str(tmp_path / "run"), *flags, *TINY])
    assert_one_line_error(capsys, code, fragment)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["eval", "RUN", "--batch-size", "0"], "batch_size must be an integer >= 1"),
        (["eval", "RUN", "--seed", "-1"], "seed must be an integer >= 0"),
        (["check", "RUN", "--seed", "-1"], "seed must be >= 0"),
        (["bounds", "RUN", "--bits", "0"], "bits"),
        (["eval", "RUN", "--lengths", "1,2,...,100000000"], "1..100000000+1"),
        (["eval", "RUN", "--lengths", "1..100000000+1"], "more than 10000 lengths"),
    ],
)
def test_commands_refuse_bad_values(cli_run, capsys, argv, fragment):
    code = main([str(cli_run) if arg == "RUN" else arg for arg in argv])
    assert_one_line_error(capsys, code, fragment)


def _blocked(tmp_path: Path, kind: str) -> Path:
    """An output path that cannot be written: a file, a path under a file, a directory where
    a file belongs, or a path in a folder without write permission."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    if kind == "file":
        return blocker
    if kind == "under a file":
        return blocker / "out"
    if kind == "directory":
        return tmp_path
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    return locked / "out"


UNWRITABLE = pytest.param(
    "unwritable",
    marks=pytest.mark.skipif(
        hasattr(os, "geteuid") and os.geteuid() == 0, reason="root may write anywhere"
    ),
)
FRAGMENTS = {
    "file": "is a file",
    "under a file": "which is a file",
    "directory": "is a directory",
    "unwritable": "not writable",
}


@pytest.mark.parametrize("kind", ["file", "under a file", UNWRITABLE])
@pytest.mark.parametrize(
    ("command", "flag", "what"),
    [("train", "--out", "run directory"), ("eval", "--out", "evaluation directory"),
     ("check", "--out", "check directory")],
)  # fmt: skip
def test_output_directories_that_cannot_be_written(
    cli_run, tmp_path, capsys, command, flag, what, kind
):
    out = _blocked(tmp_path, kind)
    argv = {
        "train": ["train", "--task", "modp:p=3", "--steps", "2", *TINY],
        "eval": ["eval", str(cli_run), "--lengths", "8", "--quiet"],
        "check": ["check", str(cli_run), "--test-len", "16", "--quiet"],
    }[command]
    assert_one_line_error(capsys, main([*argv, flag, str(out)]), what, FRAGMENTS[kind])


@pytest.mark.parametrize("kind", ["directory", "under a file", UNWRITABLE])
def test_a_figure_that_cannot_be_written(cli_run, tmp_path, capsys, kind):
    figure = _blocked(tmp_path, kind)
    argv = ["eval", str(cli_run), "--lengths", "8", "--quiet", "--figure", str(figure)]
    assert_one_line_error(capsys, main(argv), "figure", FRAGMENTS[kind])
