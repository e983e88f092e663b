"""Wall time of `simcheck.check` end to end, on the CPU and, where one is present, a GPU.

The subject is a small trained model: ModPTask(p=3), periodic positions, N = 16, trained for
``--steps`` (300) steps, seed 0, into a temporary directory (about half a minute on 2 CPU
cores; not timed), or the run directory given by ``--run``. For each device in ``--devices``
and each test length T in ``--lengths``, the script times ``--repeats`` calls of::

    simcheck.check(run, test_lengths=[T], samples=100, max_samples=100, device=device)

(every other setting at its `CheckConfig` default, seed included, so every call checks the
same inputs). The time covers everything the check does: the reference inputs of lengths
<= N, the long inputs, the witnesses, the recordings, the statistics and the report object;
not the training and not the loading of the run. On each device an untimed warm-up check
(T = 2N, a handful of inputs) comes first, so that moving the model and one-time setup (the
CUDA context, kernel loading) are not timed. On cuda and mps the clock is read after
synchronising the device.

The table gives, per device and T, the median, min and max seconds of the calls, the median
over the cpu median at the same T in the same invocation (``time vs cpu``; n/a without a cpu
row), and the outcome, which should agree across devices.

GPU rows appear only where a GPU is present: the default ``--devices`` is cpu, plus cuda and
mps when torch sees them; naming a device that is not available is a one-line error.

Run it from the repository root::

    python benchmarks/check_benchmark.py
    python benchmarks/check_benchmark.py --lengths 128,512 --repeats 1
    python benchmarks/check_benchmark.py --devices cpu,cuda --run runs/demo/periodic

Threads: ``OMP_NUM_THREADS`` if set, else 2.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

import simcheck

TASK, POS, TRAIN_LEN, SEED = "modp:p=3", "periodic", 16, 0
SETTINGS = {"samples": 100, "max_samples": 100}
"""The fixed check settings; the rest are `CheckConfig`'s defaults."""
WARMUP = {"samples": 4, "max_samples": 4, "reference_samples": 16}
"""The untimed warm-up check's settings (at T = 2N)."""


def threads() -> int:
    """Torch threads: ``OMP_NUM_THREADS`` when the environment sets it, else 2."""
    return int(os.environ.get("OMP_NUM_THREADS", "2"))


def parse_device(name: str) -> Any:
    """``name`` as a ``torch.device`` that is available here; else exit with a one-line error."""
    from simcheck.errors import SimcheckError
    from simcheck.model.subject import parse_device as device_present

    try:
        return device_present(name)
    except SimcheckError as err:
        sys.exit(f"check_benchmark: {err}")


def default_devices() -> str:
    """cpu, plus cuda and mps where torch sees them."""
    devices = ["cpu"]
    if torch.cuda.is_available():
        devices.append("cuda")
    if torch.backends.mps.is_available():
        devices.append("mps")
    return ",".join(devices)


def device_name(device: torch.device) -> str:
    """``cpu``, ``mps``, or ``cuda:N (its name)``."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work, so that the clock covers it (no-op on cpu)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def quiet_check(run: Any, device: torch.device, length: int, settings: dict) -> Any:
    """`simcheck.check` at one length, without TransformerLens's "Moving model" line."""
    with contextlib.redirect_stdout(io.StringIO()):
        return simcheck.check(run, test_lengths=[length], device=device, **settings)


def time_device(
    run: Any, device: torch.device, lengths: list[int], repeats: int
) -> dict[int, tuple[list[float], str]]:
    """Per T: the seconds of ``repeats`` timed checks on ``device`` and the outcome."""
    quiet_check(run, device, 2 * run.train_len, WARMUP)
    timings = {}
    for length in lengths:
        times, outcomes = [], set()
        for _ in range(repeats):
            synchronize(device)
            start = time.perf_counter()
            report = quiet_check(run, device, length, SETTINGS)
            synchronize(device)
            times.append(time.perf_counter() - start)
            outcomes.add(report.outcome[length])
        timings[length] = (times, "/".join(sorted(outcomes)))
    return timings


def markdown_row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", default="128,512,2048", help="comma-separated T")
    parser.add_argument(
        "--devices",
        default=default_devices(),
        help="comma-separated: cpu, cuda, cuda:N, mps (default: cpu, plus any GPU present)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed checks per (device, T)")
    parser.add_argument("--steps", type=int, default=300, help="training steps of the model")
    parser.add_argument("--run", help="time this run directory instead of training one")
    args = parser.parse_args(argv)

    lengths = [int(x) for x in args.lengths.split(",")]
    devices = list(dict.fromkeys(parse_device(name) for name in args.devices.split(",")))
    torch.set_num_threads(threads())
    with tempfile.TemporaryDirectory(prefix="check_benchmark_") as scratch:
        if args.run:
            run, source = simcheck.load_run(args.run), f"run {args.run}"
        else:
            start = time.perf_counter()
            run = simcheck.train(
                TASK,
                Path(scratch) / "run",
                pos=POS,
                train_len=TRAIN_LEN,
                steps=args.steps,
                seed=SEED,
                progress=False,
            )
            source = (
                f"{TASK}, pos={POS}, N={TRAIN_LEN}, {args.steps} steps, seed {SEED} "
                f"(trained in {time.perf_counter() - start:.0f} s, not timed)"
            )
        print(
            f"model: {source}; check: samples={SETTINGS['samples']}, "
            f"max_samples={SETTINGS['max_samples']}, other settings default; "
            f"devices: {', '.join(device_name(d) for d in devices)}; "
            f"{threads()} torch threads; {args.repeats} timed call(s) per row\n"
        )
        results = {device: time_device(run, device, lengths, args.repeats) for device in devices}

    print(markdown_row(["device", "T", "median s", "min s", "max s", "time vs cpu", "outcome"]))
    print(markdown_row(["---", "---:", "---:", "---:", "---:", "---:", "---"]))
    cpu = results.get(torch.device("cpu"))
    for device, timings in results.items():
        for length in lengths:
            times, outcome = timings[length]
            median = statistics.median(times)
            ratio = "n/a" if cpu is None else f"{median / statistics.median(cpu[length][0]):.2f}x"
            cells = [f"{median:.2f}", f"{min(times):.2f}", f"{max(times):.2f}", ratio, outcome]
            print(markdown_row([str(device), str(length), *cells]))


if __name__ == "__main__":
    main()
