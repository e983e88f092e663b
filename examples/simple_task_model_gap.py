"""SimpleTask(omega=3) without positions: does the model gap at T=1024 fall with N as the
long error does?

Trains (or reuses) one NoPE model per training length N in {4, 8, 32}, runs the simulation
check at T=1024 and measures the mean absolute long error |f(x) - g(x)| at 1024 on 512 fresh
inputs. The model gap |g(x) - g(z)| is the checker's, at each input's chain witness, beside
the check's outcome and chain bound. Prints a table and says whether the two orders over N
agree; writes it to
``examples/results/simple_task_model_gap.md``.

    python examples/simple_task_model_gap.py [--out runs/simple_model_gap] [--steps 3000]

About 2 minutes on 2 CPU cores (training three models: about 1.5 minutes).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

import simcheck
from simcheck._util.io import library_versions, write_text
from simcheck.errors import RunDirError

TASK = "simple:omega=3"
TRAIN_LENGTHS = (4, 8, 32)
TEST_LENGTH = 1024
RESULTS = Path(__file__).parent / "results" / "simple_task_model_gap.md"


def trained(out: Path, train_len: int, steps: int) -> simcheck.Run:
    """The finished run at ``out``, or a new one trained there."""
    try:
        run = simcheck.load_run(out)
        if run.finished and run.train_len == train_len:
            return run
    except RunDirError:
        pass
    return simcheck.train(
        TASK, out, pos="none", train_len=train_len, steps=steps, overwrite=True, progress=False
    )


def long_error(run: simcheck.Run, samples: int = 512) -> float:
    """Mean |f(x) - g(x)| at the test length on inputs drawn with their own seed."""
    result = simcheck.evaluate(
        run, [TEST_LENGTH], samples=samples, seed=1234, progress=False, save=False
    )
    return float(result.rows[0]["metric_mean"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/simple_model_gap"))
    parser.add_argument("--steps", type=int, default=3000)
    args = parser.parse_args()
    started = time.perf_counter()
    rows = []
    for train_len in TRAIN_LENGTHS:
        run = trained(args.out / f"N{train_len}", train_len, args.steps)
        report = simcheck.check(run, test_lengths=[TEST_LENGTH], samples=100, progress=False)
        result = report.result(TEST_LENGTH)
        rows.append(
            {
                "N": train_len,
                "model gap": float(result.model_gap.mean()),
                "eps*": result.eps_star,
                "task floor": result.task_floor,
                "chain bound": result.chain_bound,
                "long error": long_error(run),
                "outcome": result.outcome,
            }
        )
    gap_order = list(np.argsort([-r["model gap"] for r in rows], kind="stable"))
    error_order = list(np.argsort([-r["long error"] for r in rows], kind="stable"))
    agree = gap_order == error_order
    lines = [
        "| N | mean model gap | eps* | task floor | chain bound | mean abs long error | outcome |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    lines += [
        f"| {r['N']} | {r['model gap']:.3g} | {r['eps*']:.3g} | {r['task floor']:.3g} | "
        f"{r['chain bound']:.3g} | {r['long error']:.3g} | {r['outcome']} |"
        for r in rows
    ]
    seconds = time.perf_counter() - started
    versions = ", ".join(f"{k} {v}" for k, v in library_versions().items())
    text = "\n".join(
        [
            f"# {TASK}, NoPE: model gap against long error at T={TEST_LENGTH}",
            "",
            *lines,
            "",
            f"The orders over N of the model gap and of the long error agree: "
            f"{'yes' if agree else 'no'}.",
            "",
            f"Command: `python examples/simple_task_model_gap.py` ({seconds:.0f} s; {versions}).",
            "",
        ]
    )
    print(text)
    write_text(RESULTS, text)


if __name__ == "__main__":
    main()
