"""In-context k-gram (S=3, k=2), 2 layers: trained at N=64, evaluated up to 4N.

The model must find the earlier occurrences of its current token and report what followed
them: an induction head. With the limit transformer's positions (periodic with Delta = 1,
i.e. no absolute position, plus a learned local attention bias on offsets <= tau = k-1),
the first layer learns to look one token back and the second to match and copy.
The loss (KL from the target distribution) is compared with the unigram baseline: a model
that predicts the sequence's own token histogram.

    python examples/kgram_length.py [--out runs/kgram] [--steps 3000]   # about 1 minute
"""

from __future__ import annotations

import argparse
from pathlib import Path

import simcheck


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/kgram"))
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--train-len", type=int, default=64)
    args = parser.parse_args()

    run = simcheck.train(
        "kgram:S=3,k=2",
        args.out,
        n_layers=2,
        train_len=args.train_len,
        steps=args.steps,
        overwrite=True,
        progress=False,
    )
    n = args.train_len
    result = simcheck.evaluate(run, [n // 4, n // 2, n, 2 * n, 4 * n], samples=512)
    print(result.format_table())
    at_n = result.table().loc[n]
    ratio = at_n["baseline_loss"] / at_n["loss_mean"]
    print(
        f"at N={n}: loss {at_n['loss_mean']:.3e}, unigram baseline "
        f"{at_n['baseline_loss']:.3e} ({ratio:.0f}x lower)"
    )
    at_4n = result.table().loc[4 * n]
    print(
        f"at 4N={4 * n}: loss {at_4n['loss_mean']:.3e}, unigram baseline "
        f"{at_4n['baseline_loss']:.3e}"
    )


if __name__ == "__main__":
    main()
