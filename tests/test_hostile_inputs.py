"""Hostile inputs on the command line: a weights file that carries pickled code, a file given
where a run directory belongs, a corrupted checkpoint. Each gets one line that names the
problem and the fix; nothing in them runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import simcheck
from simcheck._util.io import load_tensors
from simcheck.cli import main
from simcheck.errors import SimcheckError
from simcheck.model.loading import save_config


class _Payload:
    """Unpickling this runs a shell command that creates a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def pickled_code(path: Path, marker: Path) -> Path:
    """A ``torch.save``d file whose unpickling would run code."""
    torch.save({"W_E": _Payload(marker)}, path)
    return path


def one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    return lines[0]


def test_loading_pickled_code_is_refused_in_one_line_without_running_it(tmp_path):
    marker = tmp_path / "ran"
    path = pickled_code(tmp_path / "evil.pt", marker)
    with pytest.raises(SimcheckError) as info:
        load_tensors(path, "--weights")
    message = str(info.value)
    assert "pickled code" in message and "safetensors" in message
    assert "weights_only" not in message and "\n" not in message
    assert not marker.exists()


def test_the_cli_refuses_pickled_weights(tmp_path, capsys):
    marker = tmp_path / "ran"
    weights = pickled_code(tmp_path / "evil.pt", marker)
    model = simcheck.build_model(simcheck.get_task("majority:V=2"), pos="learned", n_ctx=32)
    save_config(model, tmp_path / "config.json")
    code = main(
        ["check", "--weights", str(weights), "--config", str(tmp_path / "config.json"),
         "--task", "majority:V=2", "--train-len", "8"]
    )  # fmt: skip
    err = one_line(capsys.readouterr().err)
    assert code == 2
    assert "pickled code" in err and "safetensors" in err and "weights_only" not in err
    assert not marker.exists()


@pytest.mark.parametrize("content", [b"", b"not a zip", b"PK\x03\x04 truncated"])
def test_damaged_weights_get_one_line(tmp_path, content):
    path = tmp_path / "weights.pt"
    path.write_bytes(content)
    with pytest.raises(SimcheckError, match=r"not a readable torch\.save'd file") as info:
        load_tensors(path, "--weights")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("command", ["check", "eval", "show", "bounds"])
def test_a_file_given_as_a_run_is_called_a_file(tmp_path, capsys, command):
    path = tmp_path / "model.pt"
    path.write_bytes(b"weights")
    extra = ["--lengths", "8"] if command == "eval" else []
    assert main([command, str(path), *extra]) == 2
    err = one_line(capsys.readouterr().err)
    assert f"{path} is a file, not a run directory" in err
    assert "simcheck train --out" in err and "--weights" in err


def test_a_checkpoint_holding_pickled_code_is_refused_on_resume(tmp_path, quick_train, capsys):
    run = quick_train("modp:p=3", tmp_path / "run", steps=4, checkpoint_every=2)
    marker = tmp_path / "ran"
    pickled_code(run.path / "train_state.pt", marker)
    (run.path / "status.json").write_text('{"state": "interrupted", "step": 2, "steps": 8}')
    code = main(["train", "--resume", str(run.path), "-q"])
    err = one_line(capsys.readouterr().err)
    assert code == 2 and "pickled code" in err and "--resume" in err
    assert not marker.exists()


def test_no_traceback_reaches_the_terminal_for_a_newline_in_a_task_name(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "simcheck.cli", "train", "--task", "modp\nrm -rf", "--out",
         str(tmp_path / "x")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    err = one_line(done.stderr)
    assert "unknown task 'modp\\nrm -rf'" in err and "Traceback" not in done.stderr
