"""Sweeps: train, evaluate and check every point of a grid, resumably, on local processes or Ray.

``sweep(spec, out)`` (CLI: ``simcheck sweep SPEC.toml``) reads a `simcheck.sweeps.spec`
specification and, for each point, trains a model into ``out/runs/<point>/``, evaluates it at
the spec's lengths and runs the simulation check. Each finished point leaves
``out/points/<point>.json``, written atomically by the process that ran it; the results
table of every point, ``out/results.csv`` and ``out/results.parquet``, is rewritten at the
end from those files. Every path is checked to lie inside ``out`` before anything runs.

- **Resumable.** A point whose result file exists (made with the same evaluation and check
  settings) is never redone; a point killed mid-training resumes from its last checkpoint.
  Killing a sweep and starting it again finishes only the missing points.
- **Retries.** A point that raises, or whose worker process dies, is retried once; if it
  fails again it is reported (``out/points/<point>.failed.json`` holds the traceback) and a
  later run tries it again.
- **Backends.** ``"local"``: a pool of worker processes (default: one per core), each torch
  computation on ``threads`` threads; the workers end when the driver does, even when it is
  killed (see `_worker_init`). ``"ray"``: the same points as Ray tasks on the cluster
  at ``address`` (``ray.init(address=...)``; a local Ray instance when None). Every point runs
  single-process with fixed seeds and thread count, so both backends give the same table
  (the timing columns aside).
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import itertools
import json
import math
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from multiprocessing import get_context
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import pandas as pd

from simcheck._util.io import (
    atomic_write,
    library_versions,
    source_revision,
    write_json,
    write_text,
)
from simcheck._util.progress import progress_bar
from simcheck.errors import SimcheckError, SweepInterrupted
from simcheck.storage.runs import read_json
from simcheck.sweeps.spec import (
    MODEL_FIELDS,
    TRAIN_FIELDS,
    Point,
    SweepSpec,
    import_modules,
    load_spec,
    settings_digest,
)
from simcheck.sweeps.table import CHECK_KINDS, EVAL_KINDS, check_columns, eval_columns, parse_column
from simcheck.tasks import task_class

BACKENDS = ("local", "ray")
MANIFEST_FILE = "sweep.json"
RESULTS_CSV = "results.csv"
RESULTS_PARQUET = "results.parquet"
POINTS_DIR = "points"
RUNS_DIR = "runs"
TIMING_COLUMNS = ("train_s", "eval_s", "check_s", "total_s")
"""Columns that measure time, the only ones that differ between two runs of a sweep."""
ATTEMPTS = 2
ENSEMBLE_MAX_LAYERS = 1
"""Deepest models that train as ensembles in a sweep. On CPU cores a one-layer model's step
is mostly fixed cost, which an ensemble shares; deeper models are compute-bound, and the
padding of each member's batch to the longest costs more than the sharing saves
(``benchmarks/train_benchmark.py``)."""
DEFAULT_ENSEMBLE = 8
"""Most points per ensemble in a sweep (1 trains every point alone)."""
"""A failing point is tried this many times per sweep run (once, then retried once)."""
PR_SET_PDEATHSIG = 1
"""Linux's ``prctl`` option: the signal a process gets when its parent dies."""


# --------------------------------------------------------------------------- one point
def execute_point(
    point: dict[str, Any],
    settings: dict[str, Any],
    root: str,
    threads: int,
    attempt: int,
    imports: tuple[str, ...] = (),
    trained_s: float = 0.0,
) -> dict[str, Any]:
    """Train (or resume), evaluate and check one point, record its row in
    ``root/points/<point>.json`` (atomically: a point is recorded whole or not at all, and
    one killed before is redone by the next run) and return ``{"row": ...}``; or return
    ``{"error": ..., "traceback": ...}``. Runs in a worker process (local pool or Ray task),
    so it takes and returns plain data, and records the point itself, so that a finished
    point is kept even when the driver is gone; ``attempt`` counts this sweep run's tries of
    the point, ``imports`` are the spec's modules that register tasks, ``trained_s`` the
    seconds it trained before this call (its share of an ensemble), counted in ``train_s``."""
    import torch

    torch.set_num_threads(threads)
    try:
        import_modules(imports)
        parsed = Point.from_dict(point)
        row = run_point(parsed, settings, Path(root), trained_s)
        _record_success(Path(root), settings_digest(settings), parsed, row, attempt)
        return {"row": row}
    except Exception as err:  # reported to the driver, which retries or records the failure
        return _failure(err)


def run_group(
    points: list[dict[str, Any]],
    settings: dict[str, Any],
    root: str,
    threads: int,
    attempt: int,
    imports: tuple[str, ...] = (),
) -> list[dict[str, Any]]:
    """`execute_point` for each of a group of points, one outcome per point, in order. A
    group of several trains first as one ensemble (`simcheck.training.ensemble`), then each point is
    evaluated, checked and recorded on its own; a member whose training fails gets its
    error and the others go on."""
    failed: dict[int, BaseException] = {}
    share = 0.0
    if len(points) > 1:
        import torch

        from simcheck.tasks import get_task
        from simcheck.training.ensemble import Member, train_ensemble

        torch.set_num_threads(threads)
        try:
            import_modules(imports)
            parsed = [Point.from_dict(point) for point in points]
            members = [
                Member(get_task(p.task), Path(root) / RUNS_DIR / p.name, p.model_spec(),
                       p.train_config())
                for p in parsed
            ]  # fmt: skip
            started = time.perf_counter()
            trained = train_ensemble(members)
            share = (time.perf_counter() - started) / len(points)
        except Exception as err:  # the whole group fails; the driver retries each point alone
            return [_failure(err)] * len(points)
        failed = {i: r for i, r in enumerate(trained) if isinstance(r, Exception)}
    return [
        _failure(failed[i])
        if i in failed
        else execute_point(point, settings, root, threads, attempt, imports, share)
        for i, point in enumerate(points)
    ]


def _failure(err: BaseException) -> dict[str, Any]:
    """A point's outcome when ``err`` stopped it (with its traceback, when it has one)."""
    trace = "".join(traceback.format_exception(err)) if err.__traceback__ else ""
    return {"error": f"{type(err).__name__}: {err}", "traceback": trace}


def ensemble_groups(points: Sequence[Point], size: int, workers: int) -> list[list[Point]]:
    """Split ``points`` into the groups that train together: points that can share an
    ensemble (`simcheck.training.ensemble.ensemble_key`) and have at most `ENSEMBLE_MAX_LAYERS`
    layers, at most ``size`` per group and spread over at least ``workers`` groups where
    there are enough, grouped by training length; the others one per group."""
    from simcheck.training.ensemble import ensemble_key

    keyed: dict[Any, list[Point]] = {}
    groups: list[list[Point]] = []
    for point in points:
        spec = point.model_spec()
        key = ensemble_key(spec, point.train_config())
        if task_class(point.task.partition(":")[0].strip()).per_position:
            key = None  # an ensemble reads one position per member
        if size > 1 and key is not None and spec.n_layers <= ENSEMBLE_MAX_LAYERS:
            keyed.setdefault(key, []).append(point)
        else:
            groups.append([point])
    for members in keyed.values():
        # similar lengths together: a step pads every member to the longest input drawn
        members = sorted(members, key=lambda p: p.train_config().train_len)
        count = max(math.ceil(len(members) / size), min(workers, len(members)))
        bounds = [round(i * len(members) / count) for i in range(count + 1)]
        groups += [members[a:b] for a, b in itertools.pairwise(bounds)]
    return groups


def run_point(
    point: Point, settings: dict[str, Any], root: Path, trained_s: float = 0.0
) -> dict[str, Any]:
    """Train (resuming a started run), evaluate and check ``point`` under ``root/runs``;
    return its row of the results table. ``settings`` is `SweepSpec.settings`; ``trained_s``
    as in `execute_point`."""
    from simcheck.api.check import check
    from simcheck.checking.config import CheckConfig
    from simcheck.evaluation.evaluation import evaluate
    from simcheck.report.check_report import CHECK_DIR, check_name
    from simcheck.storage.runs import EVAL_CSV, EVAL_JSON, SPEC_FILE
    from simcheck.tasks import get_task
    from simcheck.training.trainer import resume_training, train

    task = get_task(point.task)
    run_dir = root / RUNS_DIR / point.name
    started = time.perf_counter() - trained_s
    if (run_dir / SPEC_FILE).exists():
        run = resume_training(run_dir, task=task, progress=False)
    else:
        run = train(
            task, run_dir, model=point.model_spec(), config=point.train_config(),
            progress=False, overwrite=True,
        )  # fmt: skip
    trained = time.perf_counter()
    ev = settings["eval"]
    result = evaluate(
        run, ev["lengths"], samples=ev["samples"], seed=ev["seed"], progress=False, save=False
    )
    write_json(run_dir / EVAL_JSON, result.to_dict())
    write_text(run_dir / EVAL_CSV, result.table().to_csv())
    evaluated = time.perf_counter()
    ck = dict(settings["check"])
    report = None
    if ck.pop("enabled"):
        config = CheckConfig(**ck)
        report = check(run, config=config)
        report.save(run_dir / CHECK_DIR / check_name(config), overwrite=True, figures=False)
    checked = time.perf_counter()
    row = _config_columns(point, run_dir.relative_to(root))
    row["final_loss"] = _final_loss(run_dir)
    row.update(eval_columns(result.rows))
    row["plateau"] = result.plateau
    if report is not None:
        row.update(check_columns(report.results))
        row["certified"] = report.certified
        row["simulatable"] = report.simulatable
    row["weights_sha256"] = result.meta["weights_sha256"]
    row.update(
        train_s=trained - started,
        eval_s=evaluated - trained,
        check_s=checked - evaluated,
        total_s=checked - started,
    )
    return row


def _config_columns(point: Point, run: Path) -> dict[str, Any]:
    """The point's full configuration, one column per task parameter, model field and
    training field."""
    from simcheck.tasks import get_task

    task = get_task(point.task)
    row: dict[str, Any] = {"point": point.name, "status": "ok", "task": task.spec()}
    row["task_name"] = task.name
    row.update({f"task.{k}": v for k, v in task.params().items()})
    spec = dataclasses.asdict(point.model_spec())
    row.update({k: spec[k] for k in MODEL_FIELDS})
    config = dataclasses.asdict(point.train_config())
    row.update({k: config[k] for k in TRAIN_FIELDS})
    row["run"] = str(run)
    return row


def _final_loss(run_dir: Path) -> float | None:
    from simcheck.storage.runs import read_metrics

    records = read_metrics(run_dir)
    return records[-1]["loss"] if records else None


# --------------------------------------------------------------------------- backends
Outcomes = Iterator[tuple[Point, dict[str, Any]]]


def _worker_init(lifeline: Connection) -> None:
    """Make this worker process end when the sweep's driver ends, however it ends: killed
    with SIGKILL, a driver runs no clean-up, and an orphaned worker would go on training,
    hold its run directory's lock and the caller's stdout, and wait for ever on the pool's
    pipes.

    Two ways, for two kinds of end. On Linux the kernel sends the worker SIGKILL when the
    driver dies (``prctl(PR_SET_PDEATHSIG)``), even while it runs C code that holds
    Python's lock. On every system (macOS and Windows included) a thread waits on
    ``lifeline``, the read end of a pipe whose only write end the driver holds: when the
    driver ends, the operating system closes that end, the wait returns and the thread ends
    the process; this also covers a driver that died before the ``prctl`` call."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):  # a libc without prctl
            ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    threading.Thread(target=_exit_with_driver, args=(lifeline,), daemon=True).start()


def _exit_with_driver(lifeline: Connection) -> None:
    """Wait until the driver's end of ``lifeline`` closes (the driver never writes to it),
    then end this process at once."""
    with contextlib.suppress(EOFError, OSError):
        lifeline.recv_bytes()
    os._exit(1)


def _local_outcomes(
    groups: Sequence[list[Point]],
    attempt: int,
    settings: dict[str, Any],
    root: Path,
    threads: int,
    workers: int,
    imports: tuple[str, ...],
) -> Outcomes:
    """Run the groups of points (`run_group`) on a pool of ``workers`` spawned processes, at
    most one group per worker in flight; yield each point as its group ends. A worker that
    dies breaks the pool: the points in flight fail (the driver retries them) and a fresh
    pool takes the rest. Each pool's workers hold the read end of a pipe whose write end
    only this process holds (`_worker_init`)."""
    queue = list(groups)
    job = (settings, str(root), threads, attempt, imports)
    context = get_context("spawn")
    while queue:
        lifeline, held = context.Pipe(duplex=False)
        pool = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=context,
            initializer=_worker_init,
            initargs=(lifeline,),
        )
        with held, lifeline, pool:  # the pool shuts down first, then the pipe closes
            futures: dict[Future, list[Point]] = {}
            broken = False
            try:
                while (queue or futures) and not broken:
                    while queue and len(futures) < workers:
                        group = queue.pop(0)
                        dicts = [point.to_dict() for point in group]
                        futures[pool.submit(run_group, dicts, *job)] = group
                    done, _ = wait(futures, return_when=FIRST_COMPLETED)
                    for future in done:
                        group = futures.pop(future)
                        try:
                            outcomes = future.result()
                        except BrokenProcessPool:
                            broken = True
                            died = {"error": "its worker process died (out of memory or killed)"}
                            outcomes = [died] * len(group)
                        yield from zip(group, outcomes, strict=True)
                for group in futures.values():  # in flight when the pool broke
                    for point in group:
                        yield point, {"error": "a worker process died while it ran"}
                futures.clear()
            finally:
                for future in futures:
                    future.cancel()


def _ray_outcomes(
    groups: Sequence[list[Point]],
    attempt: int,
    settings: dict[str, Any],
    root: Path,
    threads: int,
    workers: int,
    address: str | None,
    imports: tuple[str, ...],
) -> Outcomes:
    """Run the groups of points as Ray tasks (``threads`` CPUs each); yield each point as
    its group ends. Starts a
    local Ray instance with ``workers * threads`` CPUs when none is running and ``address``
    is None, and shuts it down after."""
    try:
        import ray
    except ImportError:
        raise SimcheckError(
            "the ray backend needs Ray, an optional extra: pip install 'simcheck[ray]' "
            "(or use --backend local)"
        ) from None
    started_here = not ray.is_initialized()
    if started_here:
        options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        if address is None:
            options["num_cpus"] = workers * threads
        try:
            ray.init(address=address, **options)
        except (ConnectionError, RuntimeError, ValueError) as err:
            raise SimcheckError(
                f"cannot start or reach Ray at {address or 'a new local instance'} "
                f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); "
                "check --address (start a cluster with `ray start --head`) or use --backend local"
            ) from None
    task = ray.remote(run_group).options(num_cpus=threads, max_retries=0)
    job = (settings, str(root), threads, attempt, imports)
    refs = {task.remote([p.to_dict() for p in group], *job): group for group in groups}
    try:
        while refs:
            ready, _ = ray.wait(list(refs), num_returns=1)
            for ref in ready:
                group = refs.pop(ref)
                try:
                    outcomes = ray.get(ref)
                except ray.exceptions.RayError as err:
                    failed = {"error": f"the Ray task failed: {type(err).__name__}: {err}"}
                    outcomes = [failed] * len(group)
                yield from zip(group, outcomes, strict=True)
    finally:
        for ref in refs:  # left over when the driver stops early (Ctrl-C)
            ray.cancel(ref, force=True)
        if started_here:
            ray.shutdown()


# --------------------------------------------------------------------------- the sweep
@dataclass
class SweepResult:
    """What a sweep produced.

    Attributes:
        path: the sweep directory.
        table: one row per point of the spec, in grid order (see ``results.csv``).
        ran: the points this call ran to completion.
        reused: the points finished by an earlier run and not redone.
        failed: the points that failed twice in this call, with their errors.
    """

    path: Path
    table: pd.DataFrame
    ran: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        """Counts and the main columns of the table, as text."""
        lines = [
            f"sweep {self.path}: {len(self.table)} points; ran {len(self.ran)}, reused "
            f"{len(self.reused)}, failed {len(self.failed)}",
            f"results: {self.path / RESULTS_CSV}, {self.path / RESULTS_PARQUET}",
        ]
        lines += [f"FAILED {name}: {error}" for name, error in self.failed.items()]
        main = [c for c in self.table.columns if c in ("task", "pos", "train_len", "seed")]
        shown = ("outcome", "chain_bound", "long_error")
        main += [
            c
            for c in self.table.columns
            if c == "plateau" or ((kind := parse_column(c)) is not None and kind[0] in shown)
        ]
        if main:
            lines.append(self.table[main].to_string(index=False, float_format="%.4g"))
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"SweepResult({str(self.path)!r}, {len(self.table)} points, ran {len(self.ran)}, "
            f"reused {len(self.reused)}, failed {len(self.failed)})"
        )


def default_sweep_dir(spec: SweepSpec) -> Path:
    """``runs/sweeps/<name>``."""
    return Path("runs") / "sweeps" / spec.name


def sweep(
    spec: str | Path | Mapping[str, Any] | SweepSpec,
    out: str | Path | None = None,
    *,
    backend: str = "local",
    workers: int | None = None,
    threads: int = 1,
    address: str | None = None,
    ensemble: int = DEFAULT_ENSEMBLE,
    progress: bool = True,
) -> SweepResult:
    """Run every point of ``spec`` (a TOML path, a dict of the same shape, or a `SweepSpec`)
    that is not finished in ``out`` (default ``runs/sweeps/<name>``) and return the results.

    Args:
        backend: ``"local"`` (worker processes) or ``"ray"``.
        workers: parallel points (default: the CPU count divided by ``threads``); for Ray,
            the CPUs of the local instance it starts when no ``address`` is given.
        threads: torch threads per point (recorded: results depend on it in the last bits).
        address: a Ray cluster's address (``"auto"``, ``"ray://host:10001"``); ``out`` must
            then be on a filesystem every node sees.
        ensemble: most points that train together as one ensemble (`simcheck.training.ensemble`;
            one-layer models with the same architecture and batch size); 1 trains each
            point alone. A point's weights then depend on its ensemble's other members in
            float rounding only; a retried point trains alone.
    """
    spec = load_spec(spec)
    if backend not in BACKENDS:
        raise SimcheckError(f"unknown backend '{backend}'; choose one of {', '.join(BACKENDS)}")
    if threads < 1:
        raise SimcheckError(f"threads must be >= 1, got {threads}")
    if workers is not None and workers < 1:
        raise SimcheckError(f"workers must be >= 1, got {workers}")
    if ensemble < 1:
        raise SimcheckError(f"ensemble must be >= 1 (1 trains each point alone), got {ensemble}")
    workers = workers or max(1, (os.cpu_count() or 1) // threads)
    root = Path(out if out is not None else default_sweep_dir(spec)).resolve()
    root.mkdir(parents=True, exist_ok=True)
    (root / POINTS_DIR).mkdir(exist_ok=True)
    _check_paths(root, spec)
    settings = spec.settings()
    _write_manifest(root, spec, settings, threads, ensemble)
    reused = [p.name for p in spec.points if point_finished(root, p, spec)]
    pending = [p for p in spec.points if p.name not in set(reused)]
    if progress:
        print(
            f"sweep {spec.name}: {len(spec.points)} points, {len(reused)} finished earlier, "
            f"{len(pending)} to run ({backend}, {workers} worker(s) x {threads} thread(s))"
        )

    def outcomes(points: Sequence[Point], attempt: int) -> Outcomes:
        job = (settings, root, threads)
        size = ensemble if attempt == 1 else 1  # a retried point trains alone
        groups = ensemble_groups(points, size, workers)
        if backend == "ray":
            return _ray_outcomes(groups, attempt, *job, workers, address, spec.imports)
        workers_needed = min(workers, len(groups))
        return _local_outcomes(groups, attempt, *job, workers_needed, spec.imports)

    ran, failed = _drive(root, spec, pending, outcomes, progress, len(reused))
    table = write_results(root, spec)
    return SweepResult(root, table, ran=ran, reused=reused, failed=failed)


def _check_paths(root: Path, spec: SweepSpec) -> None:
    """Refuse to run unless every point's run directory and record resolve to a name right
    inside ``root/runs`` and ``root/points``. The spec's names are made safe when it is read
    (`simcheck.sweeps.spec.safe_name`); this makes sure that no name, however it was made, nor
    a link left in the folder, leads a point's files anywhere else."""
    runs, points = (root / RUNS_DIR).resolve(), (root / POINTS_DIR).resolve()
    for point in spec.points:
        for folder, path in ((runs, runs / point.name), (points, points / f"{point.name}.json")):
            if path.resolve().parent != folder:
                raise SimcheckError(
                    f"point {point.name!r} would write {path.resolve()}, outside {folder}; a "
                    "point's name must be a plain directory name"
                )


def _drive(
    root: Path,
    spec: SweepSpec,
    pending: list[Point],
    outcomes: Callable[[Sequence[Point], int], Outcomes],
    progress: bool,
    already: int,
) -> tuple[list[str], dict[str, str]]:
    """Run ``pending`` (``outcomes(points, attempt)`` runs them and yields each as it ends),
    retrying each failure once; record each failure as it arrives (a finished point was
    recorded by the process that ran it)."""
    ran: list[str] = []
    failed: dict[str, str] = {}
    bar = progress_bar(
        total=len(spec.points), initial=already, desc=f"sweep {spec.name}", unit="point",
        disable=not progress, dynamic_ncols=True,
    )  # fmt: skip
    try:
        with bar:
            for attempt in range(1, ATTEMPTS + 1):
                if not pending:
                    break
                retry = []
                for point, outcome in outcomes(pending, attempt):
                    if "row" in outcome:
                        ran.append(point.name)
                        bar.update(1)
                    elif attempt < ATTEMPTS:
                        bar.write(f"point {point.name} failed ({outcome['error']}); retrying")
                        retry.append(point)
                    else:
                        _record_failure(root, point, outcome, attempt)
                        failed[point.name] = outcome["error"]
                        bar.update(1)
                    bar.set_postfix(failed=len(failed))
                pending = retry
    except KeyboardInterrupt:
        raise SweepInterrupted(
            f"sweep interrupted: {already + len(ran)} of {len(spec.points)} points are "
            f"finished in {root}; run the same command again to finish the rest"
        ) from None
    return ran, failed


def _point_file(root: Path, point: Point, suffix: str = ".json") -> Path:
    return root / POINTS_DIR / f"{point.name}{suffix}"


def finished_row(root: Path, point: Point, spec: SweepSpec) -> dict[str, Any] | None:
    """The results-table row of ``point`` in the sweep directory ``root`` when it was made
    with ``spec``'s evaluation and check settings; None otherwise (the point is to be run)."""
    path = _point_file(root, point)
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None  # a damaged record: the point is redone (its training is reused)
    return record["row"] if record.get("settings_digest") == spec.settings_digest else None


def point_finished(root: Path, point: Point, spec: SweepSpec) -> bool:
    """Whether ``point`` has a result in ``root`` made with ``spec``'s settings."""
    return finished_row(root, point, spec) is not None


def _record_success(
    root: Path, digest: str, point: Point, row: dict[str, Any], attempt: int
) -> None:
    """Write ``point``'s record (its row, made with the settings of ``digest`` at this
    ``attempt``) atomically, and drop a failure recorded by an earlier run."""
    write_json(
        _point_file(root, point),
        {
            "point": point.to_dict(),
            "settings_digest": digest,
            "attempts": attempt,
            "row": row,
        },
    )
    _point_file(root, point, ".failed.json").unlink(missing_ok=True)


def _record_failure(root: Path, point: Point, outcome: dict[str, Any], attempts: int) -> None:
    write_json(
        _point_file(root, point, ".failed.json"),
        {"point": point.to_dict(), "attempts": attempts, **outcome},
    )


def _write_manifest(
    root: Path, spec: SweepSpec, settings: dict[str, Any], threads: int, ensemble: int
) -> None:
    write_json(
        root / MANIFEST_FILE,
        {
            "name": spec.name,
            "spec": spec.source,
            "settings": settings,
            "settings_digest": spec.settings_digest,
            "threads": threads,
            "ensemble": ensemble,
            "points": [{"name": p.name, **p.to_dict()} for p in spec.points],
            "versions": library_versions(),
            "source_revision": source_revision(),
        },
    )


def write_results(root: Path, spec: SweepSpec) -> pd.DataFrame:
    """Collect the rows of every point of ``spec`` (failed and missing ones marked in
    ``status``) and write ``results.csv`` and ``results.parquet`` atomically."""
    rows = []
    for point in spec.points:
        row = finished_row(root, point, spec)
        if row is not None:
            rows.append(row)
            continue
        failure = _point_file(root, point, ".failed.json")
        row = _config_columns(point, Path(RUNS_DIR) / point.name)
        if failure.is_file():
            row.update(status="failed", error=read_json(failure).get("error"))
        else:
            row["status"] = "missing"
        rows.append(row)
    table = pd.DataFrame(rows)
    table = table[sorted(table.columns, key=_column_rank)]
    atomic_write(root / RESULTS_CSV, lambda tmp: table.to_csv(tmp, index=False))
    atomic_write(root / RESULTS_PARQUET, lambda tmp: table.to_parquet(tmp, index=False))
    return table


_PER_LENGTH = "per length"
_METRIC_ORDER = (
    "final_loss", *((_PER_LENGTH, kind) for kind in EVAL_KINDS), "plateau",
    *((_PER_LENGTH, kind) for kind in CHECK_KINDS), "certified", "simulatable",
    "weights_sha256", *TIMING_COLUMNS, "error",
)  # fmt: skip
"""The measurements in table order; ``(_PER_LENGTH, kind)`` stands for the ``kind@T``
columns."""
_CONFIG_ORDER = (
    "point",
    "status",
    "task",
    "task_name",
    "task.",
    *MODEL_FIELDS,
    *TRAIN_FIELDS,
    "run",
)


def _column_rank(column: str) -> tuple[int, int, str]:
    """Configuration columns first, then the measurements, each family by test length."""
    per_length = parse_column(column)
    key: str | tuple[str, str] = column
    length = 0
    if per_length is not None:
        key, length = (_PER_LENGTH, per_length[0]), per_length[1]
    elif column.startswith("task.") and column not in _CONFIG_ORDER:
        key = "task."
    order = _CONFIG_ORDER + _METRIC_ORDER
    rank = order.index(key) if key in order else len(order)
    return rank, length, column


def load_sweep(path: str | Path) -> pd.DataFrame:
    """The results table of the sweep directory ``path``."""
    path = Path(path)
    if (path / RESULTS_PARQUET).is_file():
        return pd.read_parquet(path / RESULTS_PARQUET)
    if (path / RESULTS_CSV).is_file():
        return pd.read_csv(path / RESULTS_CSV)
    raise SimcheckError(
        f"{path} holds no sweep results ({RESULTS_PARQUET}); run `simcheck sweep SPEC.toml "
        f"--out {path}` first"
    )


def results_without_timings(table: pd.DataFrame) -> pd.DataFrame:
    """The table without `TIMING_COLUMNS`: what two runs of a sweep must agree on."""
    return table.drop(columns=[c for c in TIMING_COLUMNS if c in table.columns])
