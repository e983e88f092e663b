"""What the sweep runner costs: points per hour, and its overhead against a plain loop.

Runs the same ModPTask grid three ways, side by side in one invocation, each into a fresh
directory:

- ``loop``: one process calls the code of a point (train, evaluate, check) for each point in
  turn, on one torch thread: the work itself, with no runner;
- ``runner x1``: ``simcheck.sweep`` with one worker process of one thread: the same work plus
  everything the runner adds (spawning and importing in the worker, shipping the point and
  its row, the point files, the results table);
- ``runner x2``: ``simcheck.sweep`` with two workers (the default on 2 cores);
- ``ray x2``: ``simcheck.sweep(backend="ray")`` on a local Ray instance of 2 CPUs (when Ray
  is installed); its results table must equal the local one, timings aside (checked).

The overhead is (runner x1 - loop) / loop; the target is under 10%. Points per hour are
measured on the wall clock. Every way must produce the same weights (checked), so the
runner trains each point alone here (``ensemble=1``); what ensembles save is measured by
``benchmarks/train_benchmark.py``.

    python benchmarks/sweep_benchmark.py [--steps 3000] [--out runs/bench_sweep]   # ~10 min
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import time
from pathlib import Path

import torch

import simcheck
from simcheck._util.io import library_versions
from simcheck.sweeps.runner import load_sweep, results_without_timings, run_point
from simcheck.sweeps.spec import parse_spec

GRID = {
    "name": "bench_modp",
    "grid": {
        "task": "modp:p=3",
        "pos": "periodic",
        "train_len": [8, 16, 32, 64],
        "seed": [0, 1, 2],
    },
    "eval": {"lengths": [8, 32, 128, 512], "samples": 256},
    "check": {"test_lengths": [256], "samples": 50},
}
"""Figure 2's ModPTask(p=3) grid: periodic positions, N in {8, 16, 32, 64}, three seeds: 12
points."""


def grid(steps: int) -> dict:
    return {**GRID, "train": {"steps": steps}}


def plain_loop(spec_data: dict, out: Path) -> list[str]:
    """Each point's work, one after the other in this process; returns the weight hashes."""
    spec = parse_spec(spec_data)
    settings = spec.settings()
    torch.set_num_threads(1)
    return [run_point(point, settings, out)["weights_sha256"] for point in spec.points]


def runner(spec_data: dict, out: Path, workers: int, backend: str = "local") -> list[str]:
    result = simcheck.sweep(
        spec_data, out, backend=backend, workers=workers, ensemble=1, progress=False
    )
    return list(result.table["weights_sha256"])


def same_tables(first: Path, second: Path) -> bool:
    """Whether two sweep directories hold the same results table, timings aside."""
    a, b = (results_without_timings(load_sweep(path)) for path in (first, second))
    return a.equals(b)


def timed(label: str, action, out: Path) -> tuple[str, float, list[str]]:
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    started = time.perf_counter()
    hashes = action(out)
    return label, time.perf_counter() - started, hashes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000, help="training steps per point")
    parser.add_argument("--out", type=Path, default=Path("runs/bench_sweep"))
    args = parser.parse_args()
    data = grid(args.steps)
    points = len(parse_spec(data).points)
    rows = [
        timed("loop", lambda out: plain_loop(data, out), args.out / "loop"),
        timed("runner x1", lambda out: runner(data, out, 1), args.out / "runner1"),
        timed("runner x2", lambda out: runner(data, out, 2), args.out / "runner2"),
    ]
    if importlib.util.find_spec("ray") is not None:
        ray_out = args.out / "ray2"
        rows.append(timed("ray x2", lambda out: runner(data, out, 2, "ray"), ray_out))
        print(f"ray table equals the local table: {same_tables(args.out / 'runner2', ray_out)}")
    loop_time = rows[0][1]
    print(f"ModPTask grid: {points} points, {args.steps} steps each (train, evaluate, check)")
    print(f"{'way':<10} {'wall s':>8} {'points/hour':>12} {'vs loop':>9}  same weights")
    for label, seconds, hashes in rows:
        same = "yes" if hashes == rows[0][2] else "NO"
        ratio = f"{seconds / loop_time - 1:+.1%}"
        print(f"{label:<10} {seconds:>8.1f} {points * 3600 / seconds:>12.0f} {ratio:>9}  {same}")
    versions = library_versions()
    print(f"torch {versions['torch']}, transformer-lens {versions['transformer-lens']}")


if __name__ == "__main__":
    main()
