"""How fast the command line answers what needs no model: help, the task list, an argument
error, and ``import simcheck``.

Each command runs ``--runs`` times, each in a fresh Python process (as a user's shell runs
it), and the table gives the wall time of the whole process: min, median and max seconds.
The target is under 1 s for every row; none of them may import torch or TransformerLens.

    OMP_NUM_THREADS=1 python benchmarks/cli_benchmark.py [--runs 10]   # ~20 s
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

COMMANDS = {
    "simcheck --help": ["-m", "simcheck.cli", "--help"],
    "simcheck train --help": ["-m", "simcheck.cli", "train", "--help"],
    "simcheck tasks": ["-m", "simcheck.cli", "tasks"],
    "simcheck train --task modp --norm BatchNorm (argument error)": [
        "-m", "simcheck.cli", "train", "--task", "modp", "--norm", "BatchNorm",
    ],
    'python -c "import simcheck"': ["-c", "import simcheck"],
}  # fmt: skip
"""Each row's label and the arguments of ``python`` that run it (``python -m simcheck.cli``
is what the ``simcheck`` script runs)."""


def wall_times(arguments: list[str], runs: int) -> list[float]:
    """Seconds each of ``runs`` fresh processes took, start to exit."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, *arguments], capture_output=True, check=False, env=os.environ
        )
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="processes per command (10)")
    args = parser.parse_args()
    wall_times(COMMANDS["simcheck --help"], 1)  # warm the file cache once
    print(f"wall seconds of {args.runs} fresh processes per command\n")
    print("| command | min | median | max |")
    print("| --- | ---: | ---: | ---: |")
    for label, arguments in COMMANDS.items():
        times = wall_times(arguments, args.runs)
        print(
            f"| `{label}` | {min(times):.2f} | {statistics.median(times):.2f} | {max(times):.2f} |"
        )


if __name__ == "__main__":
    main()
