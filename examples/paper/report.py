"""The markdown report: the numbers behind each figure, the trend statements, and where the
results came from."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from paper.attention import (
    ATTENTION_SAMPLES,
    ATTENTION_SEED,
    CLASS_MASS_MIN,
    OFF_CLASS_MAX,
    UNIFORM_RANGE,
    near_hardmax,
)
from paper.stats import (
    KGRAM_PAIRS,
    Family,
    check_length,
    fmt,
    kgram_loss_rows,
    loss_curves,
    seed_list,
    seed_stats,
    show,
)
from paper.trends import (
    FLAT_FACTOR,
    against_baseline,
    falls_in_n,
    flatness,
    gap_against_error,
    rises_in_param,
)
from simcheck.sweeps.table import column

FINAL_LOSS = (
    "Training loss at the end (`final_loss`: mean over the last 50 steps, random lengths <= N)"
)
ATTENTION_COLUMNS = {
    "class_mass_mean": "class mass mean",
    "class_mass_min": "class mass min",
    "relative_mean": "rel mean",
    "relative_p5": "rel p5",
    "relative_p95": "rel p95",
    "relative_min": "rel min",
    "relative_max": "rel max",
    "relative_token0": "rel, key token 0",
    "relative_token1": "rel, key token 1",
    "off_class_max": "off-class max",
    "off_class_mean": "off-class mean",
}
"""Figure 3's statistics and their headers; rel = an in-class key's weight times the class
size (1 = uniform over the class)."""


def cell(stats: pd.DataFrame, key: Any) -> str:
    """``mean [min, max]`` of one row of `seed_stats`."""
    if key not in stats.index:
        return "-"
    row = stats.loc[key]
    return f"{fmt(row['mean'])} [{fmt(row['min'])}, {fmt(row['max'])}]"


def md_table(header: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    lines = [list(header), ["---"] * len(header), *body]
    return "\n".join("| " + " | ".join(map(str, line)) + " |" for line in lines)


def bullets(lines: Sequence[str]) -> str:
    return "\n".join(f"- {line}" for line in lines)


def curves_md(curves: dict[int, pd.DataFrame], what: str) -> str:
    """The loss curves: one row per N, one column per test length."""
    if not curves:
        return f"{what}: no finished points yet."
    lengths = list(next(iter(curves.values())).index)
    body = [[f"N={n}", *(cell(c, t) for t in lengths)] for n, c in curves.items()]
    return f"{what}, mean [min, max] over seeds:\n\n" + md_table(["", *map(str, lengths)], body)


def family_md(rows: pd.DataFrame, family: Family, name: str) -> str:
    """Column ``name`` per N (rows) and value of the family's parameter (columns)."""
    part = family.rows(rows)
    stats = seed_stats(part, [family.param, "train_len"], name)
    values = sorted(part[family.param].unique())
    lengths = sorted(part["train_len"].unique())
    body = [[f"N={n}", *(cell(stats, (v, n)) for v in values)] for n in lengths]
    if name == "plateau":
        base = part.groupby(family.param)["baseline_plateau"].mean()
        body.append(["trivial baseline", *(fmt(base[v]) for v in values)])
    header = ["", *(f"{family.symbol}={show(v)}" for v in values)]
    return md_table(header, body)


GAP_KINDS = ("model_gap", "error", "long_error", "task_gap", "eps*", "floor")
"""The per-length columns of the simulation-check tables, in their order."""


def gaps_md(rows: pd.DataFrame, family: Family, t: int) -> str:
    """Model gap, measured errors, eps* and the task floor per (parameter, N)."""
    part = family.rows(rows)
    columns = [column(kind, t) for kind in GAP_KINDS]
    by = [family.param, "train_len"]
    stats = {c: seed_stats(part, by, c) for c in columns}
    body = [
        [f"{family.symbol}={show(v)}", f"N={n}", *(cell(stats[c], (v, n)) for c in columns)]
        for v, n in stats[columns[0]].index
    ]
    return md_table([family.symbol, "N", *columns], body)


def binary_md(
    number: int, task: str, rows: pd.DataFrame, family: Family, left: Any, total: int
) -> str:
    """Figure 1 or 2's section."""
    t = check_length(rows)
    curves = loss_curves(rows[rows[family.param] == left])
    parts = [
        f"## Figure {number}: {task}",
        "",
        f"`paper_fig{number}_{'simple' if number == 1 else 'modp'}.png`. {len(rows)} of {total} "
        f"points; seeds {seed_list(rows)}; test loss = MSE at the last position.",
        "",
        curves_md(curves, f"Test loss against test length T at {family.symbol}={show(left)}"),
        "",
        "Plateau (mean loss over the 3 longest T beyond N), mean [min, max] over seeds; last "
        "row: the task's trivial predictor (`baseline`) scored the same way:",
        "",
        family_md(rows, family, "plateau"),
        "",
        f"{FINAL_LOSS}, mean [min, max] over seeds:",
        "",
        family_md(rows, family, "final_loss"),
        "",
        f"Simulation check at T={t} (means over the checker's inputs; `{column('error', t)}` is "
        f"the evaluation's mean |f(x) - g(x)| on its own inputs), mean [min, max] over seeds:",
        "",
        gaps_md(rows, family, t),
        "",
        "Trends (computed from the means above; a step against the claim is marked within "
        "seed spread when the two min-max ranges overlap):",
        "",
        f"Result 1, test loss plateaus at {family.symbol}={show(left)} (flat within "
        f"{FLAT_FACTOR:g}x over the plateau lengths):",
        "",
        bullets(flatness(curves)),
        "",
        "Did the models learn the task at all (plateau against the trivial predictor)?",
        "",
        bullets(against_baseline(rows, family)),
        "",
        "Result 2, the plateau falls as N grows:",
        "",
        bullets(falls_in_n(rows, family, "plateau", "plateau")),
        "",
        f"Result 3, the plateau rises with {family.symbol}:",
        "",
        bullets(rises_in_param(rows, family, "plateau", "plateau")),
        "",
        f"The model gap at T={t} against N, and against the measured long error:",
        "",
        bullets(falls_in_n(rows, family, column("model_gap", t), "model gap")),
        bullets(gap_against_error(rows, family, t)),
    ]
    return "\n".join(parts)


def kgram_md(rows: pd.DataFrame, by_s: Family, by_k: Family, total: int) -> str:
    """Figure 4's section."""
    t = check_length(rows)
    curves = loss_curves(kgram_loss_rows(rows))
    parts = [
        "## Figure 4: in-context k-gram (2 layers)",
        "",
        f"`paper_fig4_kgram.png`. {len(rows)} of {total} points; seeds "
        f"{seed_list(rows)}; test loss = KL(target || model) at the last "
        "position, error = total variation.",
        "",
        curves_md(curves, "Test loss against test length T at S=3, k=2"),
        "",
        "Plateau, mean [min, max] over seeds (last row: the unigram predictor `baseline`), by S "
        "at k=2:",
        "",
        family_md(rows, by_s, "plateau"),
        "",
        "by k at S=3:",
        "",
        family_md(rows, by_k, "plateau"),
        "",
        f"{FINAL_LOSS}, mean [min, max] over seeds, by S at k=2 and by k at S=3:",
        "",
        family_md(rows, by_s, "final_loss"),
        "",
        family_md(rows, by_k, "final_loss"),
        "",
        f"Simulation check at T={t}, mean [min, max] over seeds:",
        "",
        gaps_md(rows, KGRAM_PAIRS, t),
        "",
        "Trends:",
        "",
        f"Result 1, test loss plateaus at S=3, k=2 (flat within {FLAT_FACTOR:g}x):",
        "",
        bullets(flatness(curves)),
        "",
        "Did the models learn the task at all (plateau against the unigram predictor)?",
        "",
        bullets(against_baseline(rows, by_s) + against_baseline(rows, by_k)),
        "",
        "Result 2, the plateau falls as N grows:",
        "",
        bullets(
            falls_in_n(rows, by_s, "plateau", "plateau")
            + falls_in_n(rows, by_k, "plateau", "plateau")
        ),
        "",
        "Result 3, the plateau rises with S (k=2) and with k (S=3):",
        "",
        bullets(
            rises_in_param(rows, by_s, "plateau", "plateau")
            + rises_in_param(rows, by_k, "plateau", "plateau")
        ),
        "",
        f"The model gap at T={t}:",
        "",
        bullets(falls_in_n(rows, KGRAM_PAIRS, column("model_gap", t), "model gap")),
        bullets(gap_against_error(rows, KGRAM_PAIRS, t)),
    ]
    return "\n".join(parts)


def attention_md(study: dict[str, Any]) -> str:
    """Figure 3's section: the statistics per seed and head, and the checks."""
    records = study["stats"]
    header = ["seed", "head", *ATTENTION_COLUMNS.values()]
    body = [
        [str(r["seed"]), str(r["head"]), *(f"{r[c]:.3g}" for c in ATTENTION_COLUMNS)]
        for r in records
    ]
    lo, hi = UNIFORM_RANGE
    checks = []
    for r in records:
        passed = {name: "yes" if ok else "no" for name, ok in near_hardmax(r).items()}
        checks.append(
            f"seed {r['seed']}, head {r['head']}: mean class mass {r['class_mass_mean']:.4f} >= "
            f"{CLASS_MASS_MIN}: **{passed['mass']}**; max off-class weight "
            f"{r['off_class_max']:.2e} <= {OFF_CLASS_MAX}: **{passed['off']}**; "
            f"rel 5th-95th percentile [{r['relative_p5']:.3f}, {r['relative_p95']:.3f}] "
            f"inside [{lo:g}, {hi:g}]: **{passed['uniform']}**"
        )
    n_class = int(study["in_class"].sum())
    return "\n".join(
        [
            "## Figure 3: ModPTask(p=5) attention",
            "",
            f"`paper_fig3_attention.png`: {study['task']}, N={study['train_len']}, seed "
            f"{study['seed']} (`{study['run']}`), layer 0 attention of the last position over "
            f"the keys of one input of length T={study['length']}. The residue class is the "
            f"positions t = k (mod p), 0-based: {n_class} of {study['length']} keys, uniform "
            f"weight 1/{n_class} = {1 / n_class:.4f}. Statistics over {ATTENTION_SAMPLES} inputs "
            f"of length {study['length']} (seed {ATTENTION_SEED}), every seed at this N; "
            "rel is an in-class key's weight times the class size (1 = uniform over the "
            "class); its mean and percentiles are over all inputs and in-class keys, and over "
            "the in-class keys holding a 0 or a 1.",
            "",
            md_table(header, body),
            "",
            "Result 4, near-hardmax (near zero off the class, near uniform on it):",
            "",
            bullets(checks),
        ]
    )


def provenance_md(info: dict[str, Any]) -> str:
    """Command, running times, source revision and versions."""
    lines = ["## Provenance", "", f"Command: `{info['command']}`", "", "Running time:", ""]
    for name, t in info["times"].items():
        wall = info["walls"].get(name)
        walled = f"; wall time in {info['log']}: {wall:.0f} s ({wall / 60:.1f} min)" if wall else ""
        call = info["calls"].get(name)
        if call:
            walled += (
                f"; this command's sweep call: {call['wall']:.0f} s, ran {call['ran']}, "
                f"reused {call['reused']}, failed {call['failed']}"
            )
        lines.append(
            f"- {name}: {t['points']} points, sum of per-point total_s {t['total_s']:.0f} s "
            f"({t['total_s'] / 60:.1f} min; train {t['train_s']:.0f} s, eval "
            f"{t['eval_s']:.0f} s, check {t['check_s']:.0f} s){walled}"
        )
        if t["reused_training"]:
            lines[-1] += (
                f". {t['reused_training']} of these points were re-evaluated from weights "
                "trained earlier, so their total_s leaves the training out; the training "
                f"times the runs logged sum to {t['trained_s']:.0f} s"
            )
    walls = [info["walls"][n] for n in info["times"] if n in info["walls"]]
    if walls:
        total = sum(t["total_s"] for t in info["times"].values())
        lines.append(
            f"- all sweeps: sum of total_s {total:.0f} s ({total / 60:.1f} min); sum of the "
            f"logged wall times {sum(walls):.0f} s ({sum(walls) / 60:.1f} min)"
        )
    mode = "drawing only" if info["draw_only"] else f"{info['workers']} sweep worker(s)"
    lines += [
        f"- this command: {info['seconds']:.0f} s on {info['cpus']} CPU cores ({mode}, "
        f"{torch.get_num_threads()} torch thread(s) for Figure 3)",
        "",
        f"Source: git {info['revision']}.",
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in info["versions"].items()),
        "",
    ]
    return "\n".join(lines)


def report_md(out: Path, quick: bool, sections: Sequence[str], info: dict[str, Any]) -> str:
    """The whole report: a header on the sweeps in ``out``, the figure sections, provenance."""
    head = [
        "# The paper's Figures 1-4, reproduced",
        "",
        f"Sweeps in `{out}` (specs: `examples/sweeps/*.toml`"
        f"{', shrunk by --quick' if quick else ''}). Every number is a mean over seeds "
        "with [min, max] over seeds; curves in the figures show the mean with a min-max band. "
        "Trend lines are computed from these numbers by `examples/paper_figures.py`.",
        "",
    ]
    return "\n".join(head) + "\n" + "\n\n".join(sections) + "\n\n" + provenance_md(info)
