"""Hostile inputs on the command line and in the API: a weights file or a checkpoint that
carries pickled code, damaged files, a file given where a run directory belongs, a directory
given where a file belongs, a config of a model too large for memory. Each gets one line that
names the problem and the fix; nothing in the files runs, and nothing large is allocated."""

from __future__ import annotations

import io
import json
import os
import pickle
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

from simcheck._util.safe_load import load_tensors, pickled_import
from simcheck.cli import main
from simcheck.errors import SimcheckError
from simcheck.model.loading import load_weights_and_config, save_config

CONFIG = {"n_layers": 1, "d_model": 8, "d_head": 4, "n_heads": 2, "d_mlp": 16, "d_vocab": 3,
          "n_ctx": 32, "act_fn": "relu", "device": "cpu", "seed": 0}  # fmt: skip
"""A tiny TransformerLens model over tokens 0, 1, 2 with learned positions."""
CHECK = ["check", "--task", "majority:V=2", "--train-len", "8"]
"""The start of a `simcheck check` of a model of one's own (its weights and config follow)."""


class _Payload:
    """Unpickling this runs a shell command that creates a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def torch_saved(obj, protocol: int = 2) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer, pickle_protocol=protocol)
    return buffer.getvalue()


PICKLED_CODE = {
    "torch.save": lambda payload: torch_saved({"embed.W_E": payload}),
    "torch.save protocol 4": lambda payload: torch_saved({"embed.W_E": payload}, protocol=4),
    "bare pickle protocol 0": lambda payload: pickle.dumps({"embed.W_E": payload}, protocol=0),
    "bare pickle protocol 2": lambda payload: pickle.dumps({"embed.W_E": payload}, protocol=2),
    "bare pickle protocol 5": lambda payload: pickle.dumps({"embed.W_E": payload}, protocol=5),
}
"""Files whose unpickling would run the payload, in each form a pickle can take."""


def damaged() -> dict[str, bytes]:
    """Files that are no torch.save'd state dict: empty, not a zip, random, a cut zip."""
    whole = torch_saved({"w": torch.zeros(3)})
    return {
        "empty": b"",
        "text": b"not a zip",
        "random": bytes(range(256)) * 4,
        "zip header only": b"PK\x03\x04 truncated",
        "cut in half": whole[: len(whole) // 2],
    }


def one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    return lines[0]


def assert_refused_as_code(message: str, marker: Path) -> None:
    """The one-line refusal of pickled code: it says so, names safetensors, and neither gives
    torch's advice to load with ``weights_only=False`` nor runs the payload."""
    assert "\n" not in message and "pickled code" in message and "posix.system" in message
    assert "safetensors" in message and "weights_only" not in message
    assert not marker.exists()


@pytest.fixture(scope="module")
def config_file(tmp_path_factory) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        model = HookedTransformer(HookedTransformerConfig(**CONFIG))
    path = tmp_path_factory.mktemp("model") / "config.json"
    save_config(model, path)
    return path


# ------------------------------------------------------------------ pickled code, damage


@pytest.mark.parametrize("form", list(PICKLED_CODE))
def test_weights_that_pickle_code_are_refused_in_one_line_without_running_it(
    tmp_path, config_file, form
):
    marker = tmp_path / "ran"
    weights = tmp_path / "evil.pt"
    weights.write_bytes(PICKLED_CODE[form](_Payload(marker)))
    with pytest.raises(SimcheckError) as info:
        load_weights_and_config(weights, config_file)
    assert_refused_as_code(str(info.value), marker)


def test_the_cli_refuses_pickled_weights(tmp_path, config_file, capsys):
    marker = tmp_path / "ran"
    weights = tmp_path / "evil.pt"
    weights.write_bytes(PICKLED_CODE["torch.save protocol 4"](_Payload(marker)))
    code = main([*CHECK, "--weights", str(weights), "--config", str(config_file)])
    err = one_line(capsys.readouterr().err)
    assert code == 2 and err.startswith("simcheck: error: --weights")
    assert_refused_as_code(err, marker)


@pytest.mark.parametrize("form", list(damaged()))
def test_damaged_weights_get_one_line_without_torch_advice(tmp_path, config_file, capsys, form):
    weights = tmp_path / "weights.pt"
    weights.write_bytes(damaged()[form])
    assert main([*CHECK, "--weights", str(weights), "--config", str(config_file)]) == 2
    err = one_line(capsys.readouterr().err)
    assert "is not a readable torch.save'd file" in err and "safetensors" in err
    assert "weights_only" not in err and "pickled code" not in err


def test_a_torch_saved_state_dict_still_loads(tmp_path, config_file):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        model = HookedTransformer(HookedTransformerConfig(**{**CONFIG, "seed": 1}))
    torch.save(model.state_dict(), tmp_path / "weights.pt")
    loaded = load_weights_and_config(tmp_path / "weights.pt", config_file)
    assert torch.equal(loaded.W_E, model.W_E)


@pytest.mark.parametrize("protocol", [2, 4])
def test_the_pickle_scan_knows_a_state_dict_from_code(tmp_path, protocol):
    """The opcodes of a state dict import torch's rebuilders only, in either protocol; those
    of a payload name what they would call."""
    plain, evil = tmp_path / "plain.pt", tmp_path / "evil.pt"
    plain.write_bytes(torch_saved({"w": torch.zeros(3)}, protocol=protocol))
    evil.write_bytes(torch_saved({"w": _Payload(tmp_path / "ran")}, protocol=protocol))
    assert pickled_import(plain) is None
    assert pickled_import(evil) == "posix.system"


def test_a_checkpoint_holding_pickled_code_is_refused_on_resume(tmp_path, quick_train, capsys):
    run = quick_train("modp:p=3", tmp_path / "run", steps=4, checkpoint_every=2)
    marker = tmp_path / "ran"
    (run.path / "train_state.pt").write_bytes(PICKLED_CODE["torch.save"](_Payload(marker)))
    (run.path / "status.json").write_text('{"state": "interrupted", "step": 2, "steps": 8}')
    code = main(["train", "--resume", str(run.path), "-q"])
    err = one_line(capsys.readouterr().err)
    assert code == 2 and "cannot resume" in err and "--resume" in err
    assert_refused_as_code(err, marker)


def test_a_damaged_checkpoint_is_refused_on_resume(tmp_path, quick_train, capsys):
    run = quick_train("modp:p=3", tmp_path / "run", steps=4, checkpoint_every=2)
    state = run.path / "train_state.pt"
    state.write_bytes(state.read_bytes()[:100])
    (run.path / "status.json").write_text('{"state": "interrupted", "step": 2, "steps": 8}')
    assert main(["train", "--resume", str(run.path), "-q"]) == 2
    err = one_line(capsys.readouterr().err)
    assert "is not a readable torch.save'd file" in err and "checkpoint is corrupt" in err
    assert "weights_only" not in err


def test_the_errors_never_repeat_torchs_advice(tmp_path):
    """Whatever torch says of a file, the message keeps to one line without its advice."""
    path = tmp_path / "weights.pt"
    for content in [
        *damaged().values(),
        *(f(_Payload(tmp_path / "x")) for f in PICKLED_CODE.values()),
    ]:
        path.write_bytes(content)
        with pytest.raises(SimcheckError) as info:
            load_tensors(path, "--weights", "FIX")
        assert "\n" not in str(info.value) and "weights_only" not in str(info.value)
        assert str(info.value).endswith("; FIX")


# ------------------------------------------------------------------ files and directories


@pytest.mark.parametrize(
    "argv",
    [["check"], ["eval", "--lengths", "8"], ["show"], ["bounds"], ["train", "--resume"]],
    ids=["check", "eval", "show", "bounds", "train --resume"],
)
def test_a_file_given_as_a_run_is_called_a_file(tmp_path, capsys, argv):
    path = tmp_path / "model.pt"
    path.write_bytes(b"weights")
    assert main([*argv, str(path)]) == 2
    err = one_line(capsys.readouterr().err)
    assert f"{path} is a file, not a run directory" in err
    assert "simcheck train --out" in err and "--weights FILE --config FILE" in err
    assert "train one with" not in err


@pytest.mark.parametrize("option", ["--weights", "--config"])
def test_a_directory_given_as_a_model_file_is_called_a_directory(
    tmp_path, config_file, capsys, option
):
    files = {"--weights": str(tmp_path / "w.pt"), "--config": str(config_file)}
    torch.save({}, files["--weights"])
    files[option] = str(tmp_path)
    assert main([*CHECK, *(x for item in files.items() for x in item)]) == 2
    assert f"{option} {tmp_path} is a directory" in one_line(capsys.readouterr().err)


@pytest.mark.parametrize(
    ("huge", "fragment"),
    [
        ({"d_vocab": 10**9, "d_model": 10**4, "d_head": 5000}, "shapes differ"),
        ({"n_layers": 10**9}, "1000000000 layers take more tensors"),
    ],
    ids=["40 TB of embedding", "a billion layers"],
)
def test_a_config_too_large_for_memory_is_refused_by_the_weights(
    tmp_path, config_file, huge, fragment
):
    """The config is compared with the weights before any of it is allocated (on the meta
    device, or by counting its layers), so it fails at once instead of running out of
    memory."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.save(
            HookedTransformer(HookedTransformerConfig(**CONFIG)).state_dict(), tmp_path / "w.pt"
        )
    config = tmp_path / "huge.json"
    config.write_text(json.dumps({**json.loads(config_file.read_text()), **huge}))
    with pytest.raises(SimcheckError, match="do not fit") as info:
        load_weights_and_config(tmp_path / "w.pt", config)
    assert fragment in str(info.value)


# ------------------------------------------------------------------ the terminal


def test_an_argument_with_a_line_break_is_repeated_on_one_line(capsys):
    assert main(["tasks", "a\nb"]) == 2
    assert "unrecognized arguments: a\\nb" in one_line(capsys.readouterr().err)


def test_no_traceback_reaches_the_terminal_for_a_newline_in_a_task_name(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "simcheck.cli", "train", "--task", "modp\nrm -rf", "--out",
         str(tmp_path / "x")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    err = one_line(done.stderr)
    assert "unknown task 'modp\\nrm -rf'" in err and "Traceback" not in done.stderr
