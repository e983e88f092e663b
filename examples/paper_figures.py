"""The paper's Figures 1-4 from three sweeps: loss plateaus, the model gap, ModPTask attention.

Runs the sweeps of ``examples/sweeps`` (``fig2_modp.toml``, ``fig1_simple.toml``,
``fig4_kgram.toml``: 36, 36 and 45 models, 3 seeds per point; finished points are reused,
so once they are done the command only draws) and draws

- Figure 1, SimpleTask(omega): test loss against test length for each N (omega=3), the
  plateau against N for omega in {1, 3, 6}, and the checker's model gap at T=256 beside the
  measured long error at the same length;
- Figure 2, ModPTask(p): the same with p in {2, 3, 5} (left panel at p=3);
- Figure 3, the attention row of the trained ModPTask(p=5) model with the largest N (seed 0)
  over the keys of one long input, the residue class coloured, with its statistics over 64
  inputs (every seed at that N in the table);
- Figure 4, in-context k-gram (two layers): the plateau against N for S in {2, 3, 4} at k=2
  at k=2 (one head per layer) and for k in {2, 3} at S=3 (two heads per layer, 10000 steps),
  test loss against length (S=3, k=2, one head), and the model gap panel.

Every curve is the mean over seeds with a min-max band over seeds. The markdown report holds
the numbers behind each curve, a trend statement per claim computed from them, running times,
seeds, versions and the command.

    python examples/paper_figures.py [--out runs/paper] [--workers 2] [--draw-only]
        [--results examples/results] [--quick]

Writes ``paper_fig1_simple.png``, ``paper_fig2_modp.png``, ``paper_fig3_attention.png``,
``paper_fig4_kgram.png`` and ``paper_figures.md`` into ``examples/results/`` (``--quick``:
into ``runs/paper-quick``, a smoke run with 2 seeds, the 2 shortest training lengths, 60
steps and shorter evaluations: about 1 minute on 2 cores). The full sweeps took 433 s,
273 s and 2367 s of wall time (51 minutes together, four fifths of it the two-layer k-gram
models), on 2 CPU cores with OMP_NUM_THREADS=1 and 2 workers; drawing from finished sweeps
takes a few seconds.
``examples/REPRODUCTION.md`` compares the results with the paper's claims.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from importlib import metadata
from pathlib import Path

import pandas as pd
from paper.attention import attention_study
from paper.figures import attention_figure, binary_figure, kgram_figure
from paper.report import attention_md, binary_md, kgram_md, report_md
from paper.stats import Family, with_kgram_label
from paper.sweeps import run_sweeps, sweep_specs
from paper.tables import logged_walls, read_table, timing

from simcheck._util.io import library_versions, source_revision, write_text
from simcheck._util.plotting import save_figure

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def draw(
    tables: dict[str, pd.DataFrame], totals: dict[str, int], out: Path, results: Path
) -> list[str]:
    """Save every figure whose sweep has rows; return the report's figure sections."""
    sections = []
    omega, p = Family("task.omega", "omega"), Family("task.p", "p")
    simple, modp, kgram = (tables.get(n) for n in ("fig1_simple", "fig2_modp", "fig4_kgram"))
    if simple is not None and len(simple):
        fig = binary_figure(simple, omega, 3.0, "SimpleTask", "|f(x) - g(x)|")
        save_figure(fig, results / "paper_fig1_simple.png")
        sections.append(
            binary_md(1, "SimpleTask(omega)", simple, omega, 3.0, totals["fig1_simple"])
        )
    if modp is not None and len(modp):
        fig = binary_figure(modp, p, 3, "ModPTask", "|f(x) - g(x)|")
        save_figure(fig, results / "paper_fig2_modp.png")
        sections.append(binary_md(2, "ModPTask(p)", modp, p, 3, totals["fig2_modp"]))
        study = attention_study(modp, out / "fig2_modp")
        if study is not None:
            save_figure(attention_figure(study), results / "paper_fig3_attention.png")
            sections.append(attention_md(study))
    if kgram is not None and len(kgram):
        kgram = with_kgram_label(kgram)
        by_s = Family("task.S", "S", (("task.k", 2), ("n_heads", 1)))
        by_k = Family("task.k", "k", (("task.S", 3), ("n_heads", 2)))
        save_figure(kgram_figure(kgram, by_s, by_k), results / "paper_fig4_kgram.png")
        sections.append(kgram_md(kgram, by_s, by_k, totals["fig4_kgram"]))
    return sections


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="sweep directories (runs/paper)")
    parser.add_argument("--workers", type=int, default=2, help="parallel sweep points")
    parser.add_argument("--draw-only", action="store_true", help="read the results; run nothing")
    parser.add_argument("--results", type=Path, default=None, help="where figures and report go")
    parser.add_argument("--quick", action="store_true", help="a 2-minute smoke run")
    args = parser.parse_args()
    if args.out is None:
        args.out = Path("runs/paper-quick" if args.quick else "runs/paper")
    if args.results is None:
        args.results = args.out if args.quick else RESULTS
    started = time.perf_counter()
    specs = sweep_specs(args.quick)
    calls = {} if args.draw_only else run_sweeps(specs, args.out, args.workers)
    tables, totals = {}, {}
    for name, spec in specs.items():
        tables[name], totals[name] = read_table(spec, args.out / name)
        print(f"{name}: {len(tables[name])} of {totals[name]} points finished")
    args.results.mkdir(parents=True, exist_ok=True)
    sections = draw(tables, totals, args.out, args.results)
    info = {
        "command": shlex.join(["python", "examples/paper_figures.py", *sys.argv[1:]]),
        "seconds": time.perf_counter() - started,
        "cpus": os.cpu_count(),
        "draw_only": args.draw_only,
        "workers": args.workers,
        "walls": logged_walls(args.out),
        "calls": calls,
        "log": args.out / "log.txt",
        "times": {n: timing(t) for n, t in tables.items() if len(t)},
        "revision": source_revision(HERE),
        "versions": {
            **library_versions(),
            **{name: metadata.version(name) for name in ("pandas", "matplotlib")},
        },
    }
    report = report_md(args.out, args.quick, sections, info)
    write_text(args.results / "paper_figures.md", report)
    print(f"{info['seconds']:.0f} s; figures and paper_figures.md in {args.results}")


if __name__ == "__main__":
    main()
