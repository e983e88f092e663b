"""What the interventions cost: `simcheck.check` with and without them, side by side.

At a test length that is not certified the check runs the interchange interventions (every
site patched from the witness) and a repair per suspected cause on up to
``intervention_samples`` uncovered inputs (`simcheck.checking.interventions`). The target: they take
at most 3x the check's own time, that is (time with - time without) / time without <= 3.

Subjects (trained once, seed 0, into ``--out``, not timed), each checked at one failing
length with every setting at its default but ``interventions``:

- ``modp learned``: ModPTask(p=3), learned positions, N = 32, 3000 steps, T = 256 (the demo's
  learned model);
- ``needle``: needle:V=4, NoPE, N = 32, 2000 steps, T = 1024;
- ``lag learned``: lag:V=4,tau=1, learned positions (2048 rows), N = 32, 2000 steps, T = 512;
- ``kgram learned``: kgram:S=3,k=2, 2 layers, learned positions (2048 rows), N = 32, 3000
  steps, T = 256 (more sites: two layers).

For each subject the two settings alternate, ``--repeats`` times each, and the table gives
the median, min and max seconds of each and the ratio of the medians.

    OMP_NUM_THREADS=1 python benchmarks/intervention_benchmark.py [--repeats 3]

Writes the table to stdout and, with ``--write``, to
``examples/results/intervention_benchmark.txt`` with the command and the versions.
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import time
from pathlib import Path

import simcheck
from simcheck._util.io import library_versions, source_revision, write_text

SUBJECTS = {
    "modp learned": ("modp:p=3", {"pos": "learned"}, 3000, 256),
    "needle": ("needle:V=4", {"pos": "none"}, 2000, 1024),
    "lag learned": ("lag:V=4,tau=1", {"pos": "learned", "n_ctx": 2048}, 2000, 512),
    "kgram learned": (
        "kgram:S=3,k=2",
        {"pos": "learned", "n_ctx": 2048, "n_layers": 2},
        3000,
        256,
    ),
}
TRAIN_LEN = 32
RESULT = Path(__file__).resolve().parent.parent / "examples" / "results"


def subject(name: str, out: Path) -> simcheck.Run:
    """The trained run of subject ``name`` (trained on first use)."""
    task, model, steps, _ = SUBJECTS[name]
    folder = out / name.replace(" ", "-")
    try:
        run = simcheck.load_run(folder)
        if run.finished:
            return run
    except simcheck.SimcheckError:
        pass
    return simcheck.train(
        task, folder, train_len=TRAIN_LEN, steps=steps, overwrite=True, progress=False, **model
    )


def timed(run: simcheck.Run, length: int, interventions: bool) -> tuple[float, str]:
    began = time.perf_counter()
    report = simcheck.check(run, test_lengths=[length], interventions=interventions)
    return time.perf_counter() - began, report.outcome[length]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("runs/intervention_benchmark"))
    parser.add_argument("--write", action="store_true", help="also write the results file")
    args = parser.parse_args()
    header = (
        f"{'subject':<14} {'T':>5} {'outcome':<16} {'without (s)':>22} {'with (s)':>22} "
        f"{'extra / check':>13}"
    )
    lines = [header, "-" * len(header)]
    for name, (_, _, _, length) in SUBJECTS.items():
        run = subject(name, args.out)
        times: dict[bool, list[float]] = {False: [], True: []}
        outcome = ""
        for _ in range(args.repeats):
            for flag in (False, True):
                seconds, outcome = timed(run, length, flag)
                times[flag].append(seconds)
        cells = []
        for flag in (False, True):
            t = times[flag]
            cells.append(f"{statistics.median(t):7.2f} [{min(t):5.2f}, {max(t):5.2f}]")
        without, with_ = (statistics.median(times[f]) for f in (False, True))
        lines.append(
            f"{name:<14} {length:>5} {outcome:<16} {cells[0]:>22} {cells[1]:>22} "
            f"{(with_ - without) / without:>13.2f}"
        )
        print(lines[-1], flush=True)
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    footer = (
        f"\nmedian [min, max] over {args.repeats} alternating calls; extra / check = (with - "
        f"without) / without (target <= 3).\nCommand: `{command}`; source {source_revision()}; "
        + ", ".join(f"{k} {v}" for k, v in library_versions().items())
    )
    print(footer)
    if args.write:
        write_text(RESULT / "intervention_benchmark.txt", "\n".join(lines) + "\n" + footer + "\n")


if __name__ == "__main__":
    main()
