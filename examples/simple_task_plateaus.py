"""SimpleTask(omega=3), NoPE, 1 layer: the long-length plateau against the training length.

The paper's first qualitative result: for each training length N the test loss flattens to a
plateau as the test length grows, and the plateau falls as N grows. This script trains
3 seeds at each N in {4, 8, 32}, evaluates each model from 4 to 1024 tokens, and prints the
plateau (mean MSE at 256, 512 and 1024) per N with its spread over seeds.

    python examples/simple_task_plateaus.py [--out runs/simple-plateaus] [--steps 3000]

About 4 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np

import simcheck
from simcheck._util.plotting import length_curves_figure, save_figure

TASK = "simple:omega=3"
TRAIN_LENS = (4, 8, 32)
SEEDS = (0, 1, 2)
LENGTHS = "4..1024*2"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/simple-plateaus"))
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--samples", type=int, default=512)
    args = parser.parse_args()

    plateaus: dict[int, list[float]] = {}
    curves = []
    for train_len in TRAIN_LENS:
        for seed in SEEDS:
            run = simcheck.train(
                TASK,
                args.out / f"N{train_len}-s{seed}",
                pos="none",
                n_layers=1,
                train_len=train_len,
                steps=args.steps,
                seed=seed,
                data_seed=seed,
                overwrite=True,
                progress=False,
            )
            result = simcheck.evaluate(run, LENGTHS, samples=args.samples, progress=False)
            plateaus.setdefault(train_len, []).append(result.plateau)
            print(f"N={train_len:<3} seed={seed}  plateau={result.plateau:.3e}", flush=True)
            if seed == SEEDS[0]:
                curve = result.curve(f"N={train_len} (seed {seed})")
                if curves:  # every model sees the same inputs: draw the baseline once
                    curve["baseline"] = None
                curve["baseline_label"] = "baseline: the constant 0"
                curves.append(curve)

    print(f"\n{TASK}, pos=none, 1 layer: plateau = mean MSE at lengths 256, 512, 1024")
    print(f"{'N':>4} {'mean':>10} {'min':>10} {'max':>10}   per seed")
    for train_len, values in plateaus.items():
        seeds = "  ".join(f"{v:.2e}" for v in values)
        print(
            f"{train_len:>4} {np.mean(values):>10.3e} {min(values):>10.3e} "
            f"{max(values):>10.3e}   {seeds}"
        )
    means = [np.mean(plateaus[n]) for n in TRAIN_LENS]
    falling = all(a > b for a, b in itertools.pairwise(means))
    print(f"plateau falls as N grows: {'yes' if falling else 'NO'}")
    figure = args.out / "simple_plateaus.png"
    save_figure(
        length_curves_figure(curves, ylabel="test MSE", title=f"{TASK}, NoPE, 1 layer"), figure
    )
    print(f"figure: {figure}")


if __name__ == "__main__":
    main()
