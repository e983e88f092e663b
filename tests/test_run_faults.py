"""Faults a run meets and the one-line errors they give: a second process training into the
same run directory, a metrics log torn by a kill or corrupted, a status file that is not an
object, tokens a model cannot take, task parameters that are not finite numbers."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from float32 import assert_paths_close

import simcheck
from simcheck.cli import main
from simcheck.errors import RunDirError, TaskSpecError, TokenError
from simcheck.storage import runs
from simcheck.tasks import SimpleTask

TASK = "modp:p=3"
TINY_CLI = ["--d-model", "16", "--d-mlp", "32", "--batch-size", "8", "--quiet"]
HOLD_LOCK = """
import sys, time
from pathlib import Path
from simcheck.storage.runs import run_lock
with run_lock(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(600)
"""


def one_line_error(capsys, code: int) -> str:
    """The single ``simcheck: error: ...`` line of a CLI call that exited with status 2."""
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("simcheck: error: "), err
    return lines[0]


@pytest.fixture
def run_copy(tmp_path, modp_run_dir) -> Path:
    out = tmp_path / "copy"
    shutil.copytree(modp_run_dir, out)
    return out


@pytest.fixture
def holder(run_copy):
    """Another process that holds the lock of ``run_copy`` until it is killed."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(run_copy)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    try:
        assert process.stdout.readline() == "held\n"
        yield process
    finally:
        process.kill()
        process.wait()
        process.stdout.close()


def state_of(run_dir: Path) -> dict[str, bytes]:
    """The bytes of the files a training run writes."""
    names = ("spec.json", "model.safetensors", "train_state.pt", "status.json", "metrics.jsonl")
    return {name: (run_dir / name).read_bytes() for name in names}


# ------------------------------------------------------------------ one writer per run directory


def test_a_second_writer_is_refused_until_the_holder_dies(run_copy, holder, tiny, capsys):
    before = state_of(run_copy)
    holds = f"is being trained by process {holder.pid} on "
    with pytest.raises(RunDirError, match=holds):
        simcheck.train(TASK, run_copy, overwrite=True, train_len=8, steps=10, **tiny)
    with pytest.raises(RunDirError, match=holds):
        simcheck.train(TASK, run_copy, resume=True, progress=False)
    argv = ["train", "--task", TASK, "--train-len", "8", "--steps", "10", "--overwrite"]
    assert holds in one_line_error(capsys, main([*argv, "--out", str(run_copy), *TINY_CLI]))
    assert state_of(run_copy) == before  # the refused writers changed nothing

    holder.send_signal(signal.SIGKILL)  # dies holding the lock: the system releases it
    holder.wait()
    run = simcheck.train(TASK, run_copy, overwrite=True, train_len=8, steps=10, **tiny)
    assert run.finished and run.spec["training"]["steps"] == 10
    assert f"took over {run_copy / '.lock'} from process {holder.pid}" in capsys.readouterr().err


def test_a_finished_writer_leaves_nothing_to_take_over(tmp_path, quick_train, capsys):
    out = tmp_path / "run"
    quick_train(TASK, out, train_len=8, steps=5)
    quick_train(TASK, out, train_len=8, steps=5, overwrite=True)
    assert "took over" not in capsys.readouterr().err
    assert (out / ".lock").read_text() == ""


def test_a_file_system_without_locks_trains_with_a_note(tmp_path, quick_train, monkeypatch, capsys):
    def no_locks(handle, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(runs.fcntl, "flock", no_locks)
    assert quick_train(TASK, tmp_path / "run", train_len=8, steps=5).finished
    assert "cannot be locked (No locks available)" in capsys.readouterr().err


def test_resume_of_a_directory_without_a_run_leaves_it_untouched(tmp_path):
    with pytest.raises(RunDirError, match=r"spec\.json is missing"):
        simcheck.train(TASK, tmp_path, resume=True)
    assert not list(tmp_path.iterdir())


# ------------------------------------------------------------------ metrics.jsonl


def test_a_torn_last_metrics_line_is_ignored(run_copy, capsys):
    complete = runs.read_metrics(run_copy)
    with open(run_copy / "metrics.jsonl", "ab") as handle:
        handle.write(b'{"step": 60, "loss": 0.0')  # killed in the middle of a write
    assert runs.read_metrics(run_copy) == complete
    assert simcheck.load_run(run_copy).metrics.to_dict("records") == complete
    assert main(["show", str(run_copy)]) == 0
    assert f"(mean of the steps up to {complete[-1]['step']})" in capsys.readouterr().out


@pytest.mark.parametrize("bad", [b'{"step": 20, "lo', b"[1, 2]", b'{"step": 20}', b"\xff\xfe"])
def test_a_corrupt_metrics_line_names_the_file_and_line(run_copy, capsys, bad):
    lines = (run_copy / "metrics.jsonl").read_bytes().splitlines(keepends=True)
    lines[1] = bad + b"\n"
    (run_copy / "metrics.jsonl").write_bytes(b"".join(lines))
    where = f"{run_copy / 'metrics.jsonl'}, line 2: "
    assert where in one_line_error(capsys, main(["show", str(run_copy)]))
    status = json.loads((run_copy / "status.json").read_text())
    (run_copy / "status.json").write_text(json.dumps({**status, "state": "interrupted"}))
    with pytest.raises(RunDirError, match="line 2"):
        simcheck.train(TASK, run_copy, resume=True, progress=False)


# ------------------------------------------------------------------ status.json and spec.json


@pytest.mark.parametrize("text", ["[]", '"finished"', "3", "null"])
def test_a_status_that_is_not_an_object_is_a_run_dir_error(run_copy, capsys, text):
    (run_copy / "status.json").write_text(text)
    with pytest.raises(RunDirError, match=r"status\.json holds a JSON \w+, not an object"):
        simcheck.load_run(run_copy)
    assert "not an object" in one_line_error(capsys, main(["show", str(run_copy)]))
    lengths = ["--lengths", "8,16", "--samples", "16"]
    assert "not an object" in one_line_error(capsys, main(["eval", str(run_copy), *lengths]))
    with pytest.raises(RunDirError, match="not an object"):
        simcheck.train(TASK, run_copy, resume=True, progress=False)


def test_a_spec_that_is_not_an_object_is_a_run_dir_error(run_copy):
    (run_copy / "spec.json").write_text('"modp"')
    with pytest.raises(RunDirError, match=r"spec\.json holds a JSON str, not an object"):
        simcheck.load_run(run_copy)


# ------------------------------------------------------------------ threads


def test_resume_at_another_thread_count_says_so(run_copy, capsys):
    spec = json.loads((run_copy / "spec.json").read_text())
    recorded = torch.get_num_threads() + 1
    (run_copy / "spec.json").write_text(json.dumps({**spec, "torch_threads": recorded}))
    status = json.loads((run_copy / "status.json").read_text())
    (run_copy / "status.json").write_text(json.dumps({**status, "state": "interrupted"}))
    assert simcheck.train(TASK, run_copy, resume=True, progress=False).finished
    assert f"trained with {recorded} torch threads" in capsys.readouterr().err


def test_the_check_records_the_thread_count(modp_run_dir):
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        report = simcheck.check(
            modp_run_dir, test_lengths=[16], witnesses=["types"], samples=30,
            reference_samples=64, progress=False,
        )  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    assert report.config["torch_threads"] == 2
    assert json.loads(report.to_json())["config"]["torch_threads"] == 2


# ------------------------------------------------------------------ model input


@pytest.fixture(scope="module")
def model():
    return simcheck.build_model(simcheck.get_task(TASK), pos="periodic", d_model=16, d_mlp=32)


@pytest.mark.parametrize(
    ("tokens", "message"),
    [
        (torch.rand(2, 5), "dtype torch.float32; cast with .long(), or pass start_at_layer=L"),
        (torch.zeros(2, 3, 4, dtype=torch.long), "[batch, length] or [length], got (2, 3, 4)"),
        (torch.zeros((), dtype=torch.long), "[batch, length] or [length], got ()"),
        (torch.zeros(2, 5, dtype=torch.bool), "got dtype torch.bool; cast with .long()"),
        ([[0, 1, 0]], "as an integer tensor [batch, length], got list"),
    ],
)
def test_tokens_the_model_cannot_take_are_a_token_error(model, tokens, message):
    with pytest.raises(TokenError, match=re.escape(message)):
        model(tokens)
    with pytest.raises(TokenError, match=re.escape(message)):
        model.run_with_cache(tokens)


def test_a_residual_stream_still_enters_with_start_at_layer(model):
    tokens = torch.tensor([[0, 1, 1, 0, 1], [1, 1, 0, 0, 0]])
    logits, cache = model.run_with_cache(tokens)
    residual = cache["blocks.0.hook_resid_pre"]
    assert residual.dtype.is_floating_point and residual.dim() == 3
    assert torch.equal(model(residual, start_at_layer=0), logits)
    assert torch.equal(model(residual, "logits", False, None, None, 0), logits)  # positional
    assert_paths_close(model(tokens[0]), logits[:1], model, 5)  # one sequence, no batch axis


# ------------------------------------------------------------------ task parameters


@pytest.mark.parametrize(
    "spec",
    [
        "simple:omega=inf",
        "simple:omega=-inf",
        "simple:omega=nan",
        "simple:alpha=inf",
        "modp:alpha=inf",
        "kgram:alpha=inf",
        "majority:alpha=inf",
        "parity:alpha=inf",
        "residue_majority:alpha=inf",
        "first:alpha=inf",
    ],
)
def test_task_parameters_must_be_finite(spec):
    with pytest.raises(TaskSpecError, match="must be a finite number"):
        simcheck.get_task(spec)


def test_an_infinite_omega_is_refused_when_the_task_is_built():
    with pytest.raises(TaskSpecError, match="omega must be a finite number, got inf"):
        SimpleTask(omega=float("inf"))
