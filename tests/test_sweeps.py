"""Sweeps: spec parsing, the local and Ray backends, resuming and retrying."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from simcheck.cli import main
from simcheck.errors import SimcheckError, SweepSpecError
from simcheck.report.check_report import CheckReport
from simcheck.sweeps.runner import (
    POINTS_DIR,
    RESULTS_CSV,
    RESULTS_PARQUET,
    _drive,
    _record_success,
    load_sweep,
    results_without_timings,
    sweep,
    write_results,
)
from simcheck.sweeps.spec import Point, load_spec, parse_spec

TINY = {
    "name": "tiny",
    "grid": {"task": ["modp:p=3"], "pos": ["periodic", "learned"], "seed": [0]},
    "model": {"d_model": 8, "d_mlp": 16, "n_ctx": 64},
    "train": {"train_len": 8, "steps": 20, "batch_size": 8, "checkpoint_every": 10},
    "eval": {"lengths": [8, 32], "samples": 16},
    "check": {
        "test_lengths": [32],
        "samples": 4,
        "max_samples": 8,
        "witnesses": ["types"],
        "reference_samples": 16,
    },
}


def tiny(**changes) -> dict:
    spec = json.loads(json.dumps(TINY))
    for key, value in changes.items():
        spec[key] = value
    return spec


def write_toml(path: Path, steps: int = 20, points: int = 2) -> Path:
    seeds = ", ".join(str(s) for s in range(points))
    path.write_text(
        f"""
name = "tiny"
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
checkpoint_every = 50
[eval]
lengths = "8,16,32"
samples = 16
[check]
test_lengths = [32]
samples = 4
max_samples = 8
witnesses = ["types"]
reference_samples = 16
"""
    )
    return path


def with_none(table: pd.DataFrame) -> pd.DataFrame:
    """Missing values as None whatever the file format made of them (CSV: NaN)."""
    return table.astype(object).where(table.notna(), None)


# ------------------------------------------------------------------------- the spec
def test_grid_expands_to_the_product_of_its_axes():
    spec = parse_spec(
        {
            "grid": {
                "task": ["modp", "simple"],
                "train_len": [4, 8],
                "seed": [0, 1, 2],
            }
        }
    )
    assert len(spec.points) == 2 * 2 * 3
    assert len({p.name for p in spec.points}) == len(spec.points)
    first = spec.points[0]
    assert first.task == "modp:p=3,k=0,alpha=1.0"
    assert first.train_config().data_seed == first.model_spec().seed == 0


def test_task_parameters_are_an_axis_and_grids_union_without_duplicates():
    spec = parse_spec(
        {
            "grid": [
                {"task": "modp", "params": {"p": [2, 3]}, "seed": [0]},
                {"task": "modp:p=3", "seed": [0, 1]},
            ]
        }
    )
    tasks = [(p.task, p.model_spec().seed) for p in spec.points]
    assert tasks == [
        ("modp:p=2,k=0,alpha=1.0", 0),
        ("modp:p=3,k=0,alpha=1.0", 0),
        ("modp:p=3,k=0,alpha=1.0", 1),
    ]
    assert spec.points[0].model_spec().period == 2  # the task's own defaults still apply


def test_point_names_do_not_depend_on_the_evaluation_settings():
    a = parse_spec(tiny())
    b = parse_spec(tiny(eval={"lengths": [8, 16], "samples": 8}))
    assert [p.name for p in a.points] == [p.name for p in b.points]
    assert a.settings_digest != b.settings_digest
    assert Point.from_dict(a.points[1].to_dict()) == a.points[1]


def test_toml_file_is_read(tmp_path):
    spec = load_spec(write_toml(tmp_path / "grid.toml", points=3))
    assert spec.name == "tiny" and len(spec.points) == 3
    assert spec.evaluation.lengths == (8, 16, 32)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"grid": {"task": "modp"}, "gird": {}}, "unknown keys ['gird']"),
        ({"grid": {"task": "modp", "layers": [1]}}, "[grid] has unknown keys ['layers']"),
        ({"grid": {"task": "modp", "params": {"q": [1]}}}, "does not have"),
        ({"grid": {"task": "modp:p=3", "params": {"p": [2]}}}, "keep one"),
        ({"grid": {"task": "modp", "seed": []}}, "empty list"),
        ({"grid": {"task": "modp", "d_model": ["big"]}}, "d_model must be an integer, got 'big'"),
        ({"grid": {"task": "modp", "d_model": [16]}, "model": {"d_model": 8}}, "keep one"),
        ({"grid": {"seed": [0]}}, "needs a task axis"),
        ({"model": {}}, "no [grid] table"),
        ({"grid": {"task": "modq"}}, "unknown task"),
        ({"grid": {"task": "modp", "pos": "learned", "n_ctx": 64}}, "exceed the model's n_ctx"),
        ({"grid": {"task": "modp"}, "check": {"eps": 0.1, "epsilon": 1}}, "['epsilon']"),
        ({"grid": {"task": "modp"}, "eval": {"lengths": "8,x"}}, "cannot read lengths"),
    ],
)
def test_bad_specs_fail_with_one_line_errors(data, message):
    with pytest.raises(SimcheckError) as err:
        parse_spec(data)
    assert message.lower() in str(err.value).lower()
    assert "\n" not in str(err.value)


def test_bad_toml_and_missing_file(tmp_path):
    with pytest.raises(SweepSpecError, match="no sweep spec"):
        load_spec(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[grid\ntask = 1")
    with pytest.raises(SweepSpecError, match="not valid TOML"):
        load_spec(bad)


# ------------------------------------------------------------------------- running
@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep") / "local"
    return sweep(tiny(), out, workers=2, progress=False)


def test_local_sweep_writes_a_row_per_point(local_sweep):
    table = local_sweep.table
    assert len(table) == 2 and (table["status"] == "ok").all()
    assert list(table["pos"]) == ["periodic", "learned"]
    for column in ("loss@8", "loss@32", "eps*@32", "long_error@32", "model_gap@32", "plateau"):
        assert table[column].notna().all() and (table[column] >= 0).all()
    assert table["simulatable@32"].dtype == bool
    assert sorted(local_sweep.ran) == sorted(table["point"])
    path = local_sweep.path
    for run, t32 in zip(table["run"], table["outcome@32"], strict=True):
        assert (path / run / "model.safetensors").is_file()
        (saved,) = (path / run / "check").glob("*/certificate.json")  # one folder per settings
        assert CheckReport.load(saved.parent).outcome[32] == t32
    csv = pd.read_csv(path / RESULTS_CSV)
    parquet = pd.read_parquet(path / RESULTS_PARQUET)
    pd.testing.assert_frame_equal(with_none(csv), with_none(parquet), check_dtype=False)
    manifest = json.loads((path / "sweep.json").read_text())
    assert manifest["versions"]["torch"] and len(manifest["points"]) == 2
    assert manifest["source_revision"]


def test_rerun_reuses_finished_points(local_sweep):
    again = sweep(tiny(), local_sweep.path, workers=2, progress=False)
    assert again.ran == [] and sorted(again.reused) == sorted(local_sweep.table["point"])
    pd.testing.assert_frame_equal(again.table, load_sweep(local_sweep.path))
    pd.testing.assert_frame_equal(again.table, local_sweep.table)


def test_new_check_settings_redo_checks_but_not_training(local_sweep):
    changed = tiny(check={**TINY["check"], "samples": 6})
    result = sweep(changed, local_sweep.path, workers=2, progress=False)
    assert sorted(result.ran) == sorted(local_sweep.table["point"])
    assert list(result.table["weights_sha256"]) == list(local_sweep.table["weights_sha256"])
    assert (result.table["train_s"] < 2).all()  # training was reused, not redone


def test_ray_backend_gives_the_local_results(local_sweep, tmp_path):
    pytest.importorskip("ray")
    result = sweep(tiny(), tmp_path / "ray", backend="ray", workers=2, progress=False)
    pd.testing.assert_frame_equal(
        results_without_timings(result.table), results_without_timings(local_sweep.table)
    )


def test_failed_points_are_retried_once_then_reported(tmp_path):
    spec = parse_spec(tiny())
    first, second = spec.points
    calls: list[str] = []

    def outcomes(points, attempt):
        for point in points:
            calls.append(point.name)
            if point == first and calls.count(first.name) == 1:
                yield point, {"error": "flaky"}
            elif point == second:
                yield point, {"error": "RuntimeError: broken", "traceback": "..."}
            else:  # a worker records the point it finished
                row = {"point": point.name, "status": "ok", "loss@8": 0.5}
                _record_success(tmp_path, spec.settings_digest, point, row, attempt)
                yield point, {"row": row}

    (tmp_path / POINTS_DIR).mkdir()
    ran, failed = _drive(tmp_path, spec, list(spec.points), outcomes, progress=False, already=0)
    assert ran == [first.name]
    assert failed == {second.name: "RuntimeError: broken"}
    assert calls.count(first.name) == 2 and calls.count(second.name) == 2
    record = json.loads((tmp_path / POINTS_DIR / f"{first.name}.json").read_text())
    assert record["attempts"] == 2
    table = write_results(tmp_path, spec)
    assert list(table["status"]) == ["ok", "failed"]
    assert table.loc[1, "error"] == "RuntimeError: broken"


def test_killed_sweep_finishes_only_the_missing_points(tmp_path):
    spec_file = write_toml(tmp_path / "grid.toml", steps=300, points=3)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "simcheck.cli", "sweep", str(spec_file), "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # one point at a time (no ensemble, whose members finish together), so that a kill
    # after the first point's record lands between points
    process = subprocess.Popen(
        [*command, "--workers", "1", "--ensemble", "1", "--quiet"], env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    points = out / POINTS_DIR
    deadline = time.time() + 240
    while time.time() < deadline and not list(points.glob("*.json")):
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    finished = {p.name: p.stat().st_mtime_ns for p in points.glob("*.json")}
    assert 1 <= len(finished) < 3, "the sweep should have been killed midway"
    rerun = subprocess.run(
        [*command, "--workers", "2"], env=env, capture_output=True, text=True, timeout=300
    )
    assert rerun.returncode == 0, rerun.stderr
    assert f"{len(finished)} finished earlier, {3 - len(finished)} to run" in rerun.stdout
    for name, mtime in finished.items():
        assert (points / name).stat().st_mtime_ns == mtime  # not redone
    table = load_sweep(out)
    assert len(table) == 3 and (table["status"] == "ok").all()


# ------------------------------------------------------------------------- the CLI
def test_cli_dry_run_lists_points(tmp_path, capsys):
    spec_file = write_toml(tmp_path / "grid.toml", points=2)
    assert main(["sweep", str(spec_file), "--out", str(tmp_path / "o"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.count("pending") == 2 and "2 points" in out


def test_cli_bad_spec_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('[grid]\ntask = "modp"\nwidth = [1]\n')
    assert main(["sweep", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("simcheck: error:") and "width" in err and "\n" not in err


def test_unknown_backend_and_bad_workers(tmp_path):
    with pytest.raises(SimcheckError, match="unknown backend"):
        sweep(tiny(), tmp_path, backend="slurm", progress=False)
    with pytest.raises(SimcheckError, match="workers must be"):
        sweep(tiny(), tmp_path, workers=0, progress=False)


def test_point_names_show_non_default_task_parameters():
    spec = parse_spec({"grid": {"task": ["modp", "modp:p=5"], "train_len": 16}})
    names = [p.name for p in spec.points]
    assert names[0].startswith("modp-periodic-N16-s0-")
    assert names[1].startswith("modp-p5-periodic-N16-s0-")


def test_cli_bounds_reads_n_star_from_the_enclosing_sweep(local_sweep, capsys):
    periodic = local_sweep.table.set_index("pos").loc["periodic", "run"]
    assert main(["bounds", str(local_sweep.path / periodic), "--eps", "0.5"]) == 0
    captured = capsys.readouterr()
    assert "Thm 4.1" in captured.out and "empirical N*:" in captured.out
    assert f"read from the sweep in {local_sweep.path}" in captured.err
    learned = local_sweep.table.set_index("pos").loc["learned", "run"]
    assert main(["bounds", str(local_sweep.path / learned)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("simcheck: error:") and "\n" not in err


def test_imports_register_tasks_in_every_worker(tmp_path):
    spec = tiny(imports=["sweep_tasks"])
    spec["grid"] = {"task": "last_token_test", "seed": [0, 1]}
    spec["check"] = {**TINY["check"], "witnesses": ["blocks"]}
    result = sweep(spec, tmp_path, workers=2, progress=False)
    assert result.failed == {} and list(result.table["task"]) == ["last_token_test"] * 2
    with pytest.raises(SweepSpecError, match="cannot import 'no_such_module'"):
        parse_spec(tiny(imports=["no_such_module"]))


def test_points_failing_in_workers_are_retried_then_reported(tmp_path):
    import sweep_tasks  # noqa: F401  registers the task here, not in the fresh workers

    spec = tiny(grid={"task": "last_token_test", "seed": [0]})
    result = sweep(spec, tmp_path, workers=1, progress=False)
    (name,) = result.failed
    assert "last_token_test" in result.failed[name]
    failure = json.loads((tmp_path / POINTS_DIR / f"{name}.failed.json").read_text())
    assert failure["attempts"] == 2 and "Traceback" in failure["traceback"]
    assert list(result.table["status"]) == ["failed"]


def test_a_dying_worker_fails_only_its_point(tmp_path):
    spec = tiny(imports=["sweep_tasks"])
    spec["grid"] = {"task": ["crash_test", "last_token_test"], "seed": [0]}
    spec["check"] = {**TINY["check"], "witnesses": ["blocks"]}
    result = sweep(spec, tmp_path, workers=1, progress=False)
    assert list(result.table["status"]) == ["failed", "ok"]
    (name,) = result.failed
    assert name.startswith("crash_test") and "died" in result.failed[name]
