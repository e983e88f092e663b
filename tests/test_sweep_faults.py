"""Sweeps under faults and hostile specs: a killed driver, invalid values, absurd grids,
names that lead elsewhere, files that are not TOML, and specs that import code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from pathlib import Path

import pytest

from simcheck.cli import main
from simcheck.errors import SimcheckError, SweepSpecError
from simcheck.sweeps.runner import POINTS_DIR, RUNS_DIR, _worker_init, default_sweep_dir, sweep
from simcheck.sweeps.spec import MAX_POINTS, Point, load_spec, parse_spec

SPEC = """
[grid]
task = "modp:p=3"
seed = [{seeds}]
[model]
d_model = 8
d_mlp = 16
[train]
train_len = 8
steps = {steps}
batch_size = 8
checkpoint_every = 20
[eval]
lengths = [8, 32]
samples = 16
[check]
test_lengths = [32]
samples = 4
max_samples = 8
witnesses = ["types"]
reference_samples = 16
"""


def write_spec(path: Path, seeds: int = 2, steps: int = 20, extra: str = "") -> Path:
    """A tiny sweep spec of ``seeds`` points; ``extra`` is TOML put in front of it."""
    path.write_text(extra + SPEC.format(seeds=", ".join(map(str, range(seeds))), steps=steps))
    return path


def dry_run_error(spec_file: Path, capsys) -> str:
    """The one line `simcheck sweep --dry-run` prints for a refused spec."""
    assert main(["sweep", str(spec_file), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("simcheck: error:") and "\n" not in err
    return err


# ------------------------------------------------------------------------- a killed driver
def children_of(pid: int) -> list[int]:
    """The processes whose parent is ``pid``, read from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:  # ended while we looked
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, ended but not yet reaped, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="reads processes from /proc")
def test_workers_end_with_a_killed_driver_and_the_rerun_records_each_point_once(tmp_path):
    spec_file = write_spec(tmp_path / "grid.toml", seeds=4, steps=60)
    out = tmp_path / "out"
    driver = subprocess.Popen(
        [sys.executable, "-m", "simcheck.cli", "sweep", str(spec_file), "--out", str(out),
         "--workers", "2", "--quiet"],
        env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    records = out / POINTS_DIR
    deadline = time.time() + 300
    while time.time() < deadline and not list(records.glob("*.json")):
        time.sleep(0.1)
    children = children_of(driver.pid)
    driver.kill()  # SIGKILL, the driver alone: nothing of it can clean up
    finished = {p.name: p.stat().st_mtime_ns for p in records.glob("*.json")}
    assert 1 <= len(finished) < 4, "the sweep should have been killed midway"
    assert len(children) >= 2, "both workers should have been running"
    # Every worker ends within seconds, and none holds the caller's stdout or stderr open:
    # communicate() returns only when both pipes are closed by every process holding them.
    driver.communicate(timeout=15)
    deadline = time.time() + 5
    while time.time() < deadline and any(map(alive, children)):
        time.sleep(0.1)
    assert not [pid for pid in children if alive(pid)]

    result = sweep(spec_file, out, workers=2, progress=False)
    assert sorted(result.reused) == sorted(Path(name).stem for name in finished)
    assert sorted(result.ran + result.reused) == sorted(result.table["point"])
    assert len(result.table) == 4 and (result.table["status"] == "ok").all()
    assert len(list(records.glob("*.json"))) == 4  # one record per point, none failed
    assert len(list((out / RUNS_DIR).iterdir())) == 4
    for name, mtime in finished.items():
        assert (records / name).stat().st_mtime_ns == mtime  # kept, not redone


def test_a_worker_ends_when_the_driver_end_of_its_lifeline_closes():
    """The portable half of `_worker_init`: no parent dies here (so Linux's parent-death
    signal never fires), yet closing the driver's end of the pipe ends the busy worker."""
    context = get_context("spawn")
    lifeline, held = context.Pipe(duplex=False)
    with ProcessPoolExecutor(
        1, mp_context=context, initializer=_worker_init, initargs=(lifeline,)
    ) as pool:
        assert pool.submit(os.getpid).result(timeout=120) != os.getpid()
        busy = pool.submit(time.sleep, 120)
        time.sleep(0.5)
        started = time.time()
        held.close()
        with pytest.raises(BrokenProcessPool):
            busy.result(timeout=20)
        assert time.time() - started < 10
    lifeline.close()


# ------------------------------------------------------------------------- invalid values
def _toml(data: dict) -> str:
    """``data`` (tables of single values and lists) as TOML."""
    lines = []
    for table, values in data.items():
        lines.append(f"[{table}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("table", "key", "value", "message"),
    [
        ("check", "eps", -1, "eps must be positive"),
        ("check", "delta", 1, "delta must be in (0, 1)"),
        ("check", "witnesses", ["bogus"], "unknown witness method 'bogus'"),
        ("check", "samples", 0, "samples must be >= 1"),
        ("check", "eps", 1.5, "eps=1.5 is not below 1"),
        ("check", "eps", "0.1", "[check] eps = '0.1' should be int or float"),
        ("check", "samples", True, "[check] samples = True should be int"),
        ("grid", "seed", [-1], "seed must be >= 0"),
        ("grid", "weight_decay", [-1.0], "weight_decay must be >= 0"),
        ("train", "train_len", 1_000_000, "exceed the model's n_ctx"),
        ("eval", "samples", 0, "[eval] samples must be an integer >= 1"),
        ("eval", "seed", -1, "[eval] seed must be an integer >= 0"),
    ],
)
def test_dry_run_and_run_refuse_every_invalid_value(tmp_path, capsys, table, key, value, message):
    spec = {
        "grid": {"task": "modp:p=3", "seed": [0]},
        "train": {"train_len": 8},
        "eval": {"lengths": [8, 32]},
        "check": {},
    }
    spec[table][key] = value
    spec_file = tmp_path / "bad.toml"
    spec_file.write_text(_toml(spec))
    err = dry_run_error(spec_file, capsys)
    assert message in err and str(spec_file) in err
    with pytest.raises(SimcheckError, match=r"bad\.toml"):  # a real run: before any work
        sweep(spec_file, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_lengths_no_forward_pass_could_hold_are_refused_even_without_a_check(tmp_path, capsys):
    spec = {
        "grid": {"task": "modp:p=3", "train_len": [1_000_000]},
        "eval": {"lengths": [8]},
        "check": {"enabled": False},
    }
    with pytest.raises(SweepSpecError, match="TiB for one layer's attention scores"):
        parse_spec(spec)
    spec["grid"]["train_len"] = [2048]  # periodic positions reach any length
    assert parse_spec(spec).points[0].train_config().train_len == 2048


# ------------------------------------------------------------------------- absurd grids
def test_a_grid_beyond_the_limit_is_refused_at_once_with_its_numbers():
    axes = {f"{key}": list(range(1, 9)) for key in ("d_model", "n_layers", "steps")}
    spec = {"grid": {"task": "modp", **axes, "seed": list(range(16)), "lr": [0.1] * 64}}
    started = time.perf_counter()
    with pytest.raises(SweepSpecError) as err:
        parse_spec(spec)
    assert time.perf_counter() - started < 1
    assert "524,288 points" in str(err.value) and f"{MAX_POINTS:,}" in str(err.value)
    assert "64 lr" in str(err.value)


def test_a_grid_at_the_limit_is_validated_in_seconds():
    spec = {
        "grid": {
            "task": "modp",
            "params": {"p": list(range(2, 12))},
            "seed": list(range(10)),
            "lr": [0.001 * i for i in range(1, 11)],
            "train_len": list(range(8, 18)),
        }
    }
    started = time.perf_counter()
    parsed = parse_spec(spec)
    names = {p.name for p in parsed.points}
    assert len(parsed.points) == len(names) == MAX_POINTS
    assert time.perf_counter() - started < 8


# ------------------------------------------------------------------------- names and paths
def test_a_sweep_name_cannot_leave_the_sweeps_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    grid = {"task": "modp:p=3", "train_len": 8}
    names = ["../../x", "/etc/x", "..", "", "a/b", "a:b"]
    specs = [parse_spec({"name": name, "grid": grid}) for name in names]
    folder = (tmp_path / "runs" / "sweeps").resolve()
    for spec in specs:
        assert default_sweep_dir(spec).resolve().parent == folder
        assert not spec.name.startswith((".", "-"))
    assert len({spec.name for spec in specs}) == len(names)  # still one folder per name
    assert parse_spec({"name": "fig2_modp", "grid": grid}).name == "fig2_modp"


def test_point_names_from_hostile_parameters_stay_inside_the_sweep(tmp_path):
    label = "/../../../../x"
    spec = {
        "imports": ["sweep_tasks"],
        "grid": {"task": "labelled_test", "params": {"label": [label, "plain"]}},
        "train": {"train_len": 8, "steps": 10, "batch_size": 8},
        "eval": {"lengths": [8]},
        "check": {"enabled": False},
    }
    parsed = parse_spec(spec)
    hostile, plain = (p.name for p in parsed.points)
    assert "/" not in hostile and not hostile.startswith(".")
    assert plain.startswith("labelled_test-none-N8-s0-")  # safe names are left alone
    out = tmp_path / "a" / "b" / "c" / "d" / "out"
    result = sweep(spec, out, workers=1, progress=False)
    assert result.failed == {} and len(result.ran) == 2
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert written and all(p.resolve().is_relative_to(out.resolve()) for p in written)
    assert (out / RUNS_DIR / hostile / "model.safetensors").is_file()


def test_a_name_that_would_leave_the_sweep_is_refused_before_anything_runs(tmp_path, monkeypatch):
    monkeypatch.setattr(Point, "name", property(lambda self: "../escaped"))
    spec = {"grid": {"task": "modp:p=3", "train_len": 8}, "check": {"enabled": False}}
    with pytest.raises(SimcheckError, match="outside"):
        sweep(spec, tmp_path / "out", progress=False)
    assert not (tmp_path / "out" / "escaped").exists()
    assert not list((tmp_path / "out").rglob("*.json"))


# ------------------------------------------------------------------------- files
@pytest.mark.parametrize(
    ("content", "message"),
    [
        (bytes(range(256)) * 4, "is not a text file (byte 128 is not UTF-8)"),
        (b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 64, "is not valid TOML"),
        (b"[grid\ntask = 1", "is not valid TOML"),
        (b"grid = 5", "no [grid] table"),
        (b"name = 1\n[grid]\ntask = 'modp'", "name must be a string"),
        (b"[grid]\ntask = 'modp'\nseed = [[0, 1]]", "[grid] seed = [0, 1] is not a single value"),
        (b"[grid]\ntask = 'modp'\n[model]\nd_model = [8]", "[model] d_model = [8] is not a single"),
        (b"[grid]\ntask = 'modp'\n[grid.params]\np = [{a = 1}]", "is not a single value"),
        (b"[grid]\ntask = 'modp'\n[eval]\nlengths = [[8]]", "lengths must be integers"),
        (b"imports = [1]\n[grid]\ntask = 'modp'", "imports lists module names"),
    ],
)
def test_a_file_that_is_not_a_valid_spec_is_one_line_naming_it(tmp_path, capsys, content, message):
    spec_file = tmp_path / "spec.toml"
    spec_file.write_bytes(content)
    err = dry_run_error(spec_file, capsys)
    assert str(spec_file) in err and message in err
    with pytest.raises(SweepSpecError, match=r"spec\.toml"):
        load_spec(spec_file)


# ------------------------------------------------------------------------- imports run code
def test_dry_run_says_when_the_spec_ran_code(tmp_path, capsys):
    plain = write_spec(tmp_path / "plain.toml")
    assert main(["sweep", str(plain), "--out", str(tmp_path / "o"), "--dry-run"]) == 0
    assert "trust" not in capsys.readouterr().err
    imports = write_spec(tmp_path / "imports.toml", extra='imports = ["sweep_tasks"]\n')
    assert main(["sweep", str(imports), "--out", str(tmp_path / "o"), "--dry-run"]) == 0
    captured = capsys.readouterr()
    assert captured.out.count("pending") == 2
    assert "imported sweep_tasks" in captured.err and "run only specs you trust" in captured.err
