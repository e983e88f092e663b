"""Training: run files, bit-for-bit reproducibility, resume after Ctrl-C or a crash,
divergence, TensorBoard logging, and the errors of `train` and `load_run`."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch

import simcheck
from simcheck.cli import main
from simcheck.errors import TrainingInterrupted
from simcheck.tasks import ModPTask, Task
from simcheck.training import trainer as training
from simcheck.training.trainer import resume_training

TASK = "modp:p=3"
# 40 steps, checkpoints at 10, 20, 30, a metrics line every 5 steps
CONFIG = {"pos": "periodic", "train_len": 8, "steps": 40, "log_every": 5, "checkpoint_every": 10}


def read_metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def read_status(run_dir: Path) -> dict:
    return json.loads((run_dir / "status.json").read_text())


def without_timing(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny) -> simcheck.Run:
    """An uninterrupted run of CONFIG: what every resumed run must reproduce."""
    out = tmp_path_factory.mktemp("reference") / "run"
    return simcheck.train(TASK, out, **CONFIG, **tiny)


@pytest.fixture
def count_calls(monkeypatch):
    """Wrap `Trainer.train_step` so that ``action(call_number)`` runs before each step."""

    def install(action):
        original = training.Trainer.train_step
        calls = {"n": 0}

        def wrapped(self):
            calls["n"] += 1
            action(calls["n"])
            return original(self)

        monkeypatch.setattr(training.Trainer, "train_step", wrapped)
        return calls

    return install


# ------------------------------------------------------------------ run files


def test_train_writes_the_run_files(reference, tiny):
    run_dir = reference.path
    for name in ("spec.json", "model.safetensors", "status.json", "metrics.jsonl", "loss.png"):
        assert (run_dir / name).is_file(), name
    spec = json.loads((run_dir / "spec.json").read_text())
    assert spec["task"]["spec"] == ModPTask(p=3).spec()
    assert spec["task"]["name"] == "modp"
    assert spec["task"]["params"] == {"p": 3, "k": 0, "alpha": 1.0}
    assert spec["model"]["pos"] == "periodic"
    assert spec["model"]["period"] == 3
    assert spec["model"]["d_model"] == tiny["d_model"]
    assert spec["training"]["steps"] == 40
    assert spec["training"]["train_len"] == 8
    assert spec["training"]["batch_size"] == 8
    assert spec["versions"]["torch"] == metadata.version("torch")
    assert {"simcheck", "numpy", "python"} <= set(spec["versions"])
    assert read_status(run_dir)["state"] == "finished"
    assert read_status(run_dir)["step"] == 40
    metrics = read_metrics(run_dir)
    assert [m["step"] for m in metrics] == [5, 10, 15, 20, 25, 30, 35, 40]
    assert all(np.isfinite(m["loss"]) and 1 <= m["length"] <= 8 for m in metrics)
    assert (run_dir / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert reference.finished
    assert reference.train_len == 8
    assert reference.task == ModPTask(p=3)


def test_run_metrics_is_the_log_as_a_table(reference):
    table = reference.metrics
    assert list(table.columns) == ["step", "loss", "lr", "grad_norm", "length", "seconds"]
    assert table.to_dict("records") == read_metrics(reference.path)


def test_spec_records_the_thread_count(tmp_path, quick_train):
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        run = quick_train(TASK, tmp_path / "run", train_len=8, steps=2)
    finally:
        torch.set_num_threads(threads)
    assert run.spec["torch_threads"] == 2


def test_training_lowers_the_loss(tmp_path, quick_train):
    run = quick_train(TASK, tmp_path / "run", pos="periodic", train_len=8, steps=60, log_every=10)
    losses = [m["loss"] for m in read_metrics(run.path)]
    assert losses[-1] < losses[0]


# ------------------------------------------------------------------ reproducibility


def test_same_seeds_give_identical_weights(tmp_path, quick_train, reference, weights_equal):
    again = quick_train(TASK, tmp_path / "again", **CONFIG)
    assert weights_equal(again.model, reference.model)
    assert without_timing(read_metrics(again.path)) == without_timing(read_metrics(reference.path))


@pytest.mark.parametrize("change", [{"data_seed": 1}, {"seed": 1}])
def test_other_seeds_give_other_weights(tmp_path, quick_train, reference, change):
    other = quick_train(TASK, tmp_path / "other", **{**CONFIG, **change})
    assert not torch.equal(other.model.embed.W_E, reference.model.embed.W_E)


def test_load_run_reproduces_the_trained_model_bit_for_bit(
    tmp_path, quick_train, monkeypatch, weights_equal
):
    trained = {}
    original = training.Trainer.run

    def keep_model(self, progress):
        trained["model"] = self.model
        return original(self, progress)

    monkeypatch.setattr(training.Trainer, "run", keep_model)
    out = tmp_path / "run"
    quick_train("kgram:S=3,k=2", out, train_len=8, steps=20)
    loaded = simcheck.load_run(out)
    assert loaded.model.simcheck_spec == trained["model"].simcheck_spec
    tokens = torch.randint(0, 3, (4, 50), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(loaded.model(tokens), trained["model"](tokens))
    assert weights_equal(loaded.model, trained["model"])
    assert "kgram" in repr(loaded)


# ------------------------------------------------------------------ resume


def test_ctrl_c_then_resume_matches_an_uninterrupted_run(
    tmp_path, reference, count_calls, tiny, weights_equal, monkeypatch
):
    out = tmp_path / "interrupted"
    handler_before = signal.getsignal(signal.SIGINT)

    def ctrl_c(call):
        if call == 23:
            os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C, while step 23 runs

    count_calls(ctrl_c)
    with pytest.raises(TrainingInterrupted, match="--resume"):
        simcheck.train(TASK, out, **CONFIG, **tiny)
    assert signal.getsignal(signal.SIGINT) is handler_before
    status = read_status(out)
    assert (status["state"], status["step"]) == ("interrupted", 23)  # the step was finished
    assert (out / "train_state.pt").is_file()

    monkeypatch.undo()  # resume without the signal-sending wrapper
    resumed = resume_training(out, progress=False)
    assert resumed.finished
    assert weights_equal(resumed.model, reference.model)
    # every metrics line is reproduced, including the one whose window (steps 21..25) the
    # interruption cut: the checkpoint carries the losses logged since the last line
    assert without_timing(read_metrics(out)) == without_timing(read_metrics(reference.path))


# before the first checkpoint, and after it with the step-15 metrics line already written
@pytest.mark.parametrize("crash_at", [5, 17])
def test_crash_then_resume_matches_an_uninterrupted_run(
    tmp_path, reference, count_calls, crash_at, tiny, weights_equal, monkeypatch
):
    out = tmp_path / "crashed"

    def crash(call):
        if call == crash_at:
            raise RuntimeError("power cut")

    count_calls(crash)
    with pytest.raises(RuntimeError, match="power cut"):
        simcheck.train(TASK, out, **CONFIG, **tiny)
    assert read_status(out)["state"] == "running"
    assert (out / "model.safetensors").is_file() == (crash_at > 10)

    monkeypatch.undo()
    resumed = simcheck.train(TASK, out, resume=True, progress=False)
    assert resumed.finished
    assert weights_equal(resumed.model, reference.model)
    assert without_timing(read_metrics(out)) == without_timing(read_metrics(reference.path))


def test_resume_drops_a_torn_last_metrics_line(
    tmp_path, reference, count_calls, tiny, weights_equal, monkeypatch
):
    out = tmp_path / "killed"

    def kill(call):
        if call == 15:
            raise RuntimeError("killed")

    count_calls(kill)
    with pytest.raises(RuntimeError, match="killed"):
        simcheck.train(TASK, out, **CONFIG, **tiny)
    with open(out / "metrics.jsonl", "a") as handle:
        handle.write('{"step": 15, "loss": 0.0')  # the kill cut the write of step 15 short

    monkeypatch.undo()
    resumed = resume_training(out, progress=False)
    assert weights_equal(resumed.model, reference.model)
    assert without_timing(read_metrics(out)) == without_timing(read_metrics(reference.path))


def test_second_ctrl_c_stops_at_once(tmp_path, count_calls, tiny):
    out = tmp_path / "run"

    def double_ctrl_c(call):
        if call == 12:
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)

    count_calls(double_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        simcheck.train(TASK, out, **CONFIG, **tiny)
    assert read_status(out) == {"state": "running", "step": 10, "steps": 40}


def test_resume_of_a_finished_run_does_not_train(tmp_path, reference, count_calls, weights_equal):
    out = tmp_path / "finished"
    shutil.copytree(reference.path, out)
    before = (out / "metrics.jsonl").read_text()

    def fail(call):
        raise AssertionError("a finished run was trained again")

    count_calls(fail)
    run = resume_training(out, progress=False)
    assert run.finished
    assert weights_equal(run.model, reference.model)
    assert (out / "metrics.jsonl").read_text() == before


# ------------------------------------------------------------------ divergence


def test_non_finite_loss_keeps_the_last_checkpoint(
    tmp_path, reference, monkeypatch, tiny, weights_equal
):
    out = tmp_path / "diverged"
    calls = {"n": 0}
    real_loss = ModPTask.loss

    def poisoned_loss(self, output, targets):
        calls["n"] += 1
        loss = real_loss(self, output, targets)
        return loss * float("nan") if calls["n"] > 15 else loss

    checkpoints = {}
    real_save = training.Trainer.save_checkpoint

    def save_and_record(self, state):
        checkpoints[self.step] = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        return real_save(self, state)

    with monkeypatch.context() as patch:
        patch.setattr(ModPTask, "loss", poisoned_loss)
        patch.setattr(training.Trainer, "save_checkpoint", save_and_record)
        with pytest.raises(simcheck.TrainingDiverged, match="step 16") as info:
            simcheck.train(TASK, out, **CONFIG, **tiny)
    assert "checkpoint at step 10" in str(info.value)
    assert list(checkpoints) == [10]
    status = read_status(out)
    assert status["state"] == "diverged"
    assert "nan" in status["message"]
    assert (status["step"], status["diverged_at"]) == (10, 16)  # step: the weights on disk

    kept = simcheck.load_run(out)
    assert not kept.finished
    for name, param in kept.model.named_parameters():
        assert torch.isfinite(param).all()
        assert torch.equal(param, checkpoints[10][name]), name

    # the checkpoint is good: resuming (with a sane loss) ends where an uninterrupted run does
    resumed = resume_training(out, progress=False)
    assert weights_equal(resumed.model, reference.model)
    assert without_timing(read_metrics(out)) == without_timing(read_metrics(reference.path))


def test_divergence_before_any_checkpoint_says_so(tmp_path, monkeypatch, tiny):
    out = tmp_path / "diverged-early"
    real_loss = ModPTask.loss
    monkeypatch.setattr(ModPTask, "loss", lambda self, o, t: real_loss(self, o, t) * float("inf"))
    with pytest.raises(simcheck.TrainingDiverged, match="no checkpoint had been written yet"):
        simcheck.train(TASK, out, **CONFIG, **tiny)
    assert read_status(out)["state"] == "diverged"
    with pytest.raises(simcheck.RunDirError, match="first checkpoint"):
        simcheck.load_run(out)


# ------------------------------------------------------------------ TensorBoard


def test_tensorboard_gets_each_logged_step_once_across_a_resume(
    tmp_path, count_calls, tiny, monkeypatch
):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out, board = tmp_path / "run", tmp_path / "board"

    def crash(call):
        if call == 17:  # after the step-15 line, with the checkpoint of step 10 on disk
            raise RuntimeError("power cut")

    count_calls(crash)
    with pytest.raises(RuntimeError, match="power cut"):
        simcheck.train(TASK, out, tensorboard=board, **CONFIG, **tiny)
    monkeypatch.undo()
    resume_training(out, progress=False, tensorboard=board)

    events = EventAccumulator(str(board))
    events.Reload()
    logged = read_metrics(out)
    for name in ("loss", "lr", "grad_norm", "length", "seconds"):
        scalars = events.Scalars(f"train/{name}")
        assert [s.step for s in scalars] == [m["step"] for m in logged], name
        assert [s.value for s in scalars] == pytest.approx([m[name] for m in logged], rel=1e-6)


def test_cli_train_logs_to_tensorboard(tmp_path):
    pytest.importorskip("tensorboard")
    board = tmp_path / "board"
    argv = ["train", "--task", TASK, "--train-len", "8", "--steps", "4", "--log-every", "2"]
    argv += ["--d-model", "16", "--d-mlp", "32", "--batch-size", "8", "--quiet"]
    assert main([*argv, "--out", str(tmp_path / "run"), "--tensorboard", str(board)]) == 0
    assert list(board.glob("events.out.tfevents.*"))


def test_tensorboard_without_the_package_is_refused(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if not installed
    with pytest.raises(simcheck.SimcheckError, match="pip install tensorboard"):
        simcheck.train(TASK, tmp_path / "run", tensorboard=tmp_path / "board", progress=False)
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------ existing runs and bad input


def test_existing_run_needs_resume_or_overwrite(tmp_path, quick_train):
    out = tmp_path / "run"
    quick_train(TASK, out, train_len=8, steps=20)
    with pytest.raises(simcheck.SimcheckError, match="--resume"):
        quick_train(TASK, out, train_len=8, steps=20)
    (out / "eval.json").write_text("{}")  # left by an evaluation of the old model
    replaced = quick_train(TASK, out, train_len=8, steps=30, log_every=10, overwrite=True)
    assert replaced.spec["training"]["steps"] == 30
    assert [m["step"] for m in read_metrics(out)] == [10, 20, 30]
    assert not (out / "eval.json").exists()


def test_unknown_option(tmp_path):
    with pytest.raises(simcheck.SimcheckError, match="dropout"):
        simcheck.train(TASK, tmp_path / "run", dropout=0.1, progress=False)
    assert not (tmp_path / "run").exists()


def test_train_len_beyond_a_learned_table(tmp_path):
    with pytest.raises(simcheck.LengthError, match="n_ctx"):
        simcheck.train(TASK, tmp_path / "run", pos="learned", n_ctx=16, train_len=17)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "options",
    [
        {"steps": 0},
        {"batch_size": 0},
        {"lr": 0.0},
        {"train_len": 0},
        {"min_len": 9, "train_len": 8},
        {"warmup": 1.0},
        {"curriculum": -0.1},
        {"curriculum": 1.5},
        {"pos": "periodic", "pos_offsets": True},
        {"task": "kgram", "model": simcheck.ModelSpec(d_vocab=2, d_vocab_out=1)},
    ],
)
def test_invalid_training_options(tmp_path, options):
    options = dict(options)
    task = options.pop("task", TASK)
    with pytest.raises(simcheck.SimcheckError):
        simcheck.train(task, tmp_path / "run", progress=False, **options)


def test_curriculum_grows_the_longest_length_to_n(tmp_path):
    """Under a curriculum over half the steps, the longest length drawn grows step by step from
    the shortest to N and every drawn batch respects it; without one, N from the first step."""
    task = simcheck.tasks.get_task(TASK)
    spec = simcheck.ModelSpec.for_task(task, pos="periodic", d_model=8, d_mlp=8)
    config = simcheck.TrainConfig(train_len=16, steps=40, curriculum=0.5, batch_size=2)
    trainer = training.Trainer(tmp_path / "ramp", task, spec, config)
    bounds = []
    for step in range(config.steps):
        trainer.step = step
        bounds.append(trainer.longest_length())
        batch, _ = trainer.draw_batch()
        assert batch.tokens.shape[1] <= bounds[-1]
    assert bounds == sorted(bounds)
    assert bounds[0] < 4 and bounds[19] == 16 and bounds[-1] == 16
    plain = training.Trainer(
        tmp_path / "plain", task, spec, simcheck.TrainConfig(train_len=16, steps=40)
    )
    assert plain.longest_length() == 16


def test_grad_norm_is_logged_without_clipping(tmp_path, quick_train):
    run = quick_train(TASK, tmp_path / "run", train_len=8, steps=10, log_every=5, grad_clip=0)
    assert all(m["grad_norm"] > 0 for m in read_metrics(run.path))


def test_alibi_trains_without_clipping(tmp_path):
    run = simcheck.train(
        "simple", tmp_path / "run", pos="alibi", train_len=8, steps=3, grad_clip=0,
        d_model=8, d_mlp=8, batch_size=8, progress=False,
    )  # fmt: skip
    assert run.finished


# ------------------------------------------------------------------ a task from a notebook


@dataclass(frozen=True)
class Majority(Task):
    """1 when 1-tokens outnumber 0-tokens, 0 when fewer, 0.5 on a tie (not registered)."""

    name: ClassVar[str] = "majority_test"
    vocab_size: ClassVar[int] = 2
    default_pos: ClassVar[str] = "none"

    def sample(self, batch, length, generator):
        return (generator.random((batch, length)) < generator.random((batch, 1))).astype(int)

    def oracle(self, tokens):
        margin = (tokens == 1).sum(-1) - (tokens == 0).sum(-1)
        return (torch.sign(margin).float() + 1) / 2


def test_unregistered_task_trains_and_loads_with_task_given(tmp_path, quick_train, weights_equal):
    out = tmp_path / "majority"
    run = quick_train(Majority(), out, train_len=8, steps=20)
    assert run.model.simcheck_spec.pos == "none"
    with pytest.raises(simcheck.RunDirError, match="majority_test"):
        simcheck.load_run(out)
    again = simcheck.load_run(out, task=Majority())
    assert weights_equal(again.model, run.model)


# ------------------------------------------------------------------ load_run errors


@pytest.fixture
def run_copy(tmp_path, modp_run_dir) -> Path:
    out = tmp_path / "copy"
    shutil.copytree(modp_run_dir, out)
    return out


def test_load_run_missing_directory(tmp_path):
    with pytest.raises(simcheck.RunDirError, match="no run directory"):
        simcheck.load_run(tmp_path / "nothing")


def test_load_run_without_spec(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(simcheck.RunDirError, match=r"spec\.json is missing"):
        simcheck.load_run(tmp_path / "empty")


@pytest.mark.parametrize("text", ["{not json", "", "\x00\xff"])
def test_load_run_corrupt_spec(run_copy, text):
    (run_copy / "spec.json").write_text(text)
    with pytest.raises(simcheck.RunDirError, match="not valid JSON"):
        simcheck.load_run(run_copy)


@pytest.mark.parametrize("drop", ["model", "task", "training"])
def test_load_run_incomplete_spec(run_copy, drop):
    spec = json.loads((run_copy / "spec.json").read_text())
    del spec[drop]
    (run_copy / "spec.json").write_text(json.dumps(spec))
    with pytest.raises(simcheck.RunDirError, match="lacks"):
        simcheck.load_run(run_copy)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_load_run_corrupt_weights(run_copy, damage):
    weights = run_copy / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(
        {"garbage": b"not a safetensors file" * 20, "truncated": data[: len(data) // 2],
         "empty": b""}[damage]
    )  # fmt: skip
    with pytest.raises(simcheck.RunDirError, match="safetensors"):
        simcheck.load_run(run_copy)


def test_load_run_weights_of_another_model(run_copy, tmp_path, quick_train):
    other = quick_train(TASK, tmp_path / "wide", pos="periodic", train_len=8, steps=2, d_model=24)
    shutil.copy(other.path / "model.safetensors", run_copy / "model.safetensors")
    with pytest.raises(simcheck.RunDirError, match="does not match"):
        simcheck.load_run(run_copy)


def test_load_run_without_weights(run_copy):
    (run_copy / "model.safetensors").unlink()
    with pytest.raises(simcheck.RunDirError, match="--resume"):
        simcheck.load_run(run_copy)


def test_load_run_of_an_unregistered_task(run_copy):
    spec = json.loads((run_copy / "spec.json").read_text())
    spec["task"]["name"] = "no_such_task"
    spec["task"]["spec"] = "no_such_task"
    (run_copy / "spec.json").write_text(json.dumps(spec))
    with pytest.raises(simcheck.RunDirError, match="no_such_task") as info:
        simcheck.load_run(run_copy)
    assert "task=" in str(info.value)
    run = simcheck.load_run(run_copy, task=ModPTask(p=3))
    assert run.task == ModPTask(p=3)
    assert run.finished


@pytest.mark.parametrize("damage", [b"not a checkpoint", b""])
def test_resume_from_a_corrupt_checkpoint(run_copy, damage):
    status = json.loads((run_copy / "status.json").read_text())
    (run_copy / "status.json").write_text(json.dumps({**status, "state": "interrupted"}))
    (run_copy / "train_state.pt").write_bytes(damage)
    with pytest.raises(simcheck.RunDirError, match="checkpoint is corrupt"):
        resume_training(run_copy, progress=False)


@pytest.mark.parametrize("forward", ["fused", "hooked"])
@pytest.mark.parametrize("offsets", [False, True])
def test_position_offsets_train_exactly_the_rows_they_cover(
    tmp_path, quick_train, monkeypatch, offsets, forward
):
    covered = torch.zeros(64, dtype=torch.bool)
    real_output = training.Trainer.last_output

    def recording_output(self, tokens, offset):
        if offset is not None:
            covered[offset : offset + tokens.shape[1]] = True
        return real_output(self, tokens, offset)

    monkeypatch.setattr(training.Trainer, "last_output", recording_output)
    initial = simcheck.build_model(ModPTask(), pos="learned", n_ctx=64, d_model=16, d_mlp=32)
    run = quick_train(
        TASK, tmp_path / "run", pos="learned", n_ctx=64, train_len=8, steps=20,
        pos_offsets=offsets, forward=forward,
    )  # fmt: skip
    moved = (run.model.pos_embed.W_pos != initial.pos_embed.W_pos).any(-1)
    if offsets:
        assert covered[8:].any()  # windows reached beyond the training length
        assert torch.equal(moved, covered)
    else:
        assert not covered.any()
        assert moved[:8].all() and not moved[8:].any()


def test_load_run_with_a_task_that_does_not_fit(run_copy):
    with pytest.raises(simcheck.RunDirError, match="does not fit"):
        simcheck.load_run(run_copy, task=simcheck.get_task("kgram:S=4"))


def test_atomic_writes_get_the_usual_permissions(tmp_path):
    """Files written atomically are readable like any other file (umask applies), not
    left private as the temporary file was created."""
    import os

    from simcheck._util.io import write_text

    umask = os.umask(0o022)
    try:
        write_text(tmp_path / "report.txt", "x")
    finally:
        os.umask(umask)
    assert (tmp_path / "report.txt").stat().st_mode & 0o777 == 0o644
