"""Compare two `paper_figures.md` files cell by cell: do their seed ranges overlap?

Every table cell of ``examples/results/paper_figures.md`` reads "mean [min, max]" over the
seeds. For two reproductions (say, before and after a change to training), this prints how
many cells have overlapping [min, max] ranges, how many new means fall in the old range
and how many are within 2x of the old mean: for all cells, and for the loss tables alone
(test loss, plateau, final training loss: the rows that start with "N=").

    python examples/compare_reproductions.py examples/results/paper_figures.md \
        examples/results/paper_figures_rerun.md
"""

from __future__ import annotations

import argparse
import re

CELL = re.compile(r"([-\d.e+]+) \[([-\d.e+]+), ([-\d.e+]+)\]")


def cells(path: str) -> list[tuple[str, tuple[float, float, float]]]:
    """(row label, (mean, min, max)) for every "mean [min, max]" cell, in file order."""
    found = []
    with open(path, encoding="utf-8") as handle:
        lines = handle.readlines()
    for line in lines:
        if line.startswith("|"):
            label = line.split("|")[1].strip()
            found += [(label, tuple(map(float, m.groups()))) for m in CELL.finditer(line)]
    return found


def summary(name: str, pairs: list) -> str:
    overlap = sum(max(a[1], b[1]) <= min(a[2], b[2]) for (_, a), (_, b) in pairs)
    inside = sum(a[1] <= b[0] <= a[2] for (_, a), (_, b) in pairs)
    near = sum(a[0] > 0 and 0.5 <= b[0] / a[0] <= 2 for (_, a), (_, b) in pairs)
    return (
        f"{name}: {len(pairs)} cells; seed ranges overlap in {overlap}; new mean inside the "
        f"old range in {inside}; new mean within 2x of the old in {near}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before")
    parser.add_argument("after")
    args = parser.parse_args()
    before, after = cells(args.before), cells(args.after)
    if [label for label, _ in before] != [label for label, _ in after]:
        raise SystemExit("the two files do not have the same tables; compare like with like")
    pairs = list(zip(before, after, strict=True))
    print(summary("all tables", pairs))
    print(summary("loss tables (rows N=...)", [p for p in pairs if p[0][0].startswith("N=")]))


if __name__ == "__main__":
    main()
