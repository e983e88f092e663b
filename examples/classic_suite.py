"""The classic length-generalization suite on CPU: train, measure per length bin, check.

The tasks of Huang et al. 2025's study (majority, parity, interleaved majority, copy, sort,
addition, formal languages) and reverse, each trained at lengths up to N = 50 with learned
absolute positions with random offsets (APE) and with no positions (NoPE), measured in the
papers' length bins (1-50, 51-100, 101-150) and checked by `simcheck.api.roles` at the
longest test length.

Pre-registration (written before any model of this grid was trained; not to be changed
after seeing results)
------------------------------------------------------------------------------------------

**Models.** Every model is a simcheck `HookedTransformer` of one size for all tasks (scaled
to 2 CPU cores): 2 layers, 2 heads, d_model 64, d_mlp 256, LayerNorm, GELU; trained with
`simcheck.train` (AdamW, lr 3e-3, warmup 5%, cosine decay to 10%, batch 64, gradient
clipping 1), lengths uniform in [task's shortest, 50], for 8000 steps (copy, sort, reverse,
addition and interleaved majority: output segments) or 2000 steps (the single-answer tasks
and the formal languages). These settings come from calibration runs on unique copy and
sort at seed 100, a seed outside both grids: at 4000 steps or with 4 heads unique copy was
not learned; with 2 heads, lr 3e-3 and 8000 steps its training loss fell to about 0.3 per
sequence. Encodings: ``ape`` (a learned table of 150 rows, each batch shifted by a random
offset in [0, 150 - length], so every row up to the longest test length is trained, as in
Huang et al.) and ``nope`` (no positional encoding). The papers train larger models for
longer (GPT-2 style, several layers, 10^4 - 10^5 steps); what a 2-layer, 64-wide model does
not learn in these steps is reported as such.

**Length.** The length of a sequence is everything the model reads: input, separator and
output (simcheck's convention); the layouts are in `simcheck.tasks.seq2seq`.

**Measured** (evaluation seed 777, 1000 sequences per bin, lengths uniform in the bin):
accuracy per token (over all target positions of the bin's sequences) and exact match (the
share of sequences whose every target is right), in bins 1-50, 51-100 and 101-150.

- *Learned at N*: token accuracy in 1-50 >= 0.95.
- *Generalizes* (what the check is compared with): learned at N, token accuracy in
  101-150 >= 0.95, and no more than 0.03 below that in 1-50.
- *Published-pattern outcome* (what Huang et al. report, exact match): ``generalizes`` when
  exact match >= 0.9 in all three bins; ``fails-short`` when exact match < 0.9 in 1-50;
  ``fails`` otherwise.

**What the check must say.** `check_positions` at T = 150 (the bins' longest length) with
the default `CheckConfig` (eps 0.1, delta 0.05, confidence 0.95, 100 to 800 inputs,
witnesses types, blocks and search, classes judged by decisions), check seed 0, over the
default roles: first, middle and last target for output segments; middle and last for
every-position tasks; last for single-answer tasks. The prediction "generalizes" is the
outcome over positions ``certified``; anything else predicts that it does not. Targets:

1. the prediction agrees with *generalizes* in >= 90% of the models learned at N;
2. as a finer reading (reported, no target): each role's outcome against that role's own
   accuracy at T = 150 on 1000 fresh prefixes (>= 0.95 and no more than 0.03 below the
   role's accuracy at N).

**Published pattern** (Huang et al. 2025, APE with offsets; the clear cases): binary
majority, majority, sort and unique copy generalize; parity, repeat copy and addition do
not. Our notes do not hold the paper's per-task NoPE and formal-language outcomes; those rows
are reported without a published column.

**Held-out part**: the development grid is training seed 0 of every task and encoding;
the held-out grid is seed 1 of every task with ``ape`` (the encoding of the published
pattern; NoPE is left out to fit the CPU budget), run once at the end and reported
separately.

Usage
-----

    python examples/classic_suite.py --part dev [--workers 2]
    python examples/classic_suite.py --part holdout
    python examples/classic_suite.py --report     # only rewrite the tables

Runs and per-model results are cached under ``--out`` (default ``runs/classic_suite``), so
an interrupted run continues where it stopped; the tables go to
``examples/results/classic_suite.md`` and ``.csv`` with every part run so far.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shlex
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

import simcheck
from simcheck._util.io import library_versions, source_revision, write_text
from simcheck.api.roles import check_positions
from simcheck.tasks import SequenceTask, TargetRole

TRAIN_LEN = 50
TEST_LEN = 150
BINS = ((1, 50), (51, 100), (101, 150))
EVAL_SAMPLES = 1000
EVAL_SEED = 777
ACCURACY = 0.95
ACCURACY_DROP = 0.03
EXACT = 0.9
SIZE = {"n_layers": 2, "n_heads": 2, "d_model": 64, "d_mlp": 256}
TRAIN = {"lr": 3e-3, "batch_size": 64}
LONG_STEPS, SHORT_STEPS = 8000, 2000
TASKS = (
    ("majority:V=2", "binary majority"),
    ("majority:V=8", "majority (8 symbols)"),
    ("parity", "parity"),
    ("interleaved_majority:p=3", "interleaved majority (period 3)"),
    ("unique_copy:V=100", "unique copy"),
    ("repeat_copy:V=4", "repeat copy"),
    ("sort:V=100", "sort"),
    ("reverse:V=4", "reverse"),
    ("addition:B=10", "addition"),
    *((f"tomita:n={n}", f"Tomita {n}") for n in range(1, 8)),
    ("dyck:k=1", "Dyck-1"),
    ("dyck:k=2", "Dyck-2"),
)
LONG_TASKS = ("unique_copy", "repeat_copy", "sort", "reverse", "addition", "interleaved_majority")
ENCODINGS = ("ape", "nope")
PUBLISHED_APE = {
    "majority:V=2": "generalizes",
    "majority:V=8": "generalizes",
    "sort:V=100": "generalizes",
    "unique_copy:V=100": "generalizes",
    "parity": "fails",
    "repeat_copy:V=4": "fails",
    "addition:B=10": "fails",
}
RESULTS = Path(__file__).resolve().parent / "results"
STEM = "classic_suite"
FIRST_VERSION = "results_generic_witnesses"
"""Where the development grid's results under the first version of the check are kept."""
EXPLANATIONS: list[str] = [
    "Notes, written after reading the results (they explain; they change no criterion):",
    "",
    "- **Dyck-1, ape, seed 0**: the one disagreement on the development grid is one of "
    "granularity. The criterion pools the tokens of the 101-150 bin (0.993), most of which "
    "are easy (inside a bracket the set is `( )`); the check reads the last position of a "
    "length-150 string, where EOS must be allowed exactly at depth 0, and that role's own "
    "accuracy at T = 150 is 0.785 (middle role: 1.000, certified). Exact match in the bin "
    "is 0.505. The check agrees with the role it reads; the token-pooled criterion hides the "
    "failure.",
    "- **Unique copy, ape** (published: generalizes): learned at N (token accuracy 1.000) but "
    "not beyond: 0.956 in 51-100, 0.681 in 101-150; per role at T = 150 the first output "
    "is right (1.000), the middle nearly (0.985), the last not (0.016): the error grows "
    "with the output index. The held-out seed does better (0.983 and 0.916) and fails the "
    "same way (exact match 0.014 in 101-150; last role not-simulatable), and the "
    "calibration model (seed 100) had 0.823 in 101-150: not one seed's accident. The "
    "published models are larger and train far longer than a 2-layer, 64-wide model's "
    "8000 CPU steps; the check agrees with what this "
    "model does (not-simulatable at the last role).",
    "- **Parity, repeat copy, addition** (published: fail) and **reverse** are not learned "
    "at N at this size (fails-short, and the check says fails-short): consistent with the "
    "published failure in that nothing generalizes, but a run that does not learn at N "
    "cannot tell a failure to extrapolate from a failure to learn.",
    "- **Interleaved majority** is not learned at N by either encoding (token accuracy "
    "0.84). A possible reason, not tested here: with random offsets a learned row's index "
    "mod 3 does not give a position's residue from the start of the sequence, and without "
    "positions it must be counted.",
    "- **Formal languages.** Tomita 1, 2, 7 and Dyck-1 with NoPE generalize, and so does "
    "Tomita 4 with APE by tokens (0.998 in 101-150, exact match 0.785). Tomita 5 and 6 (the "
    "modular-counting languages), Tomita 3 and 4 with NoPE are not learned at N by tokens; "
    "Tomita 3 with APE and Dyck-2 pass 0.95 at N by tokens but not by exact match, and do "
    "not hold 0.95 beyond it (0.939; 0.884 and 0.894): the check certifies none of them. "
    "Dyck-1 and Tomita 4 with APE on the held-out seed generalize by tokens (0.997, 0.998) "
    "and are certified, while their exact match falls (0.701, 0.726): the criterion counts "
    "tokens, and the published-pattern column counts sequences.",
    "- **The first version of the check** (below) could not certify sort, which generalizes: "
    "a sorted output's next token is the input's successor of the current one, and the "
    "proportion-preserving and block witnesses drop it (task gap 1, `unexplained-pass`). "
    "The task's own sub-instances keep it, and sort is certified.",
    "",
]
"""Notes on the disagreements, written after reading them (they explain; they change no
criterion)."""


@dataclass(frozen=True)
class Model:
    """One model of the grid."""

    part: str
    task: str
    pos: str
    seed: int

    @property
    def name(self) -> str:
        task = self.task.replace(":", "-").replace("=", "").replace(",", "-")
        return f"{task}-{self.pos}-s{self.seed}"

    @property
    def steps(self) -> int:
        return LONG_STEPS if self.task.split(":")[0] in LONG_TASKS else SHORT_STEPS

    def train_options(self) -> dict[str, Any]:
        ape = self.pos == "ape"
        return {
            **SIZE,
            **TRAIN,
            "pos": "learned" if ape else "none",
            "n_ctx": TEST_LEN if ape else None,
            "pos_offsets": ape,
            "seed": self.seed,
            "data_seed": self.seed,
            "train_len": TRAIN_LEN,
            "steps": self.steps,
        }


def grid(part: str) -> list[Model]:
    if part not in ("dev", "holdout"):
        raise SystemExit(f"unknown part '{part}': use dev or holdout")
    if part == "dev":
        return [Model(part, task, pos, 0) for task, _ in TASKS for pos in ENCODINGS]
    return [Model(part, task, "ape", 1) for task, _ in TASKS]


# ---------------------------------------------------------------------- one model


def run_model(model: Model, root: Path) -> dict[str, Any]:
    """Train (or reuse), measure the bins and the roles, check; cached as JSON."""
    torch.set_num_threads(1)
    cache = root / "results" / f"{model.name}.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    run_dir = root / "runs" / model.name
    started = time.perf_counter()
    trained = None
    try:
        run = simcheck.load_run(run_dir)
        if not run.finished:
            raise simcheck.SimcheckError("unfinished")
    except simcheck.SimcheckError:
        options = {k: v for k, v in model.train_options().items() if v is not None}
        simcheck.train(model.task, run_dir, overwrite=True, progress=False, **options)
        trained = time.perf_counter() - started
        run = simcheck.load_run(run_dir)
    bins = simcheck.evaluate(
        run,
        lengths=[TRAIN_LEN],
        samples=EVAL_SAMPLES,
        seed=EVAL_SEED,
        bins=BINS,
        progress=False,
        save=False,
    ).bins
    began = time.perf_counter()
    positions = check_positions(run, test_lengths=[TEST_LEN])
    check_s = time.perf_counter() - began
    roles = []
    for role in positions.roles:
        task = (
            run.task if not isinstance(run.task, SequenceTask) else TargetRole(run.task, role.role)
        )
        lengths = [role.train_len, role.prefix_lengths[TEST_LEN]]
        measured = simcheck.evaluate(
            run, lengths=lengths, samples=EVAL_SAMPLES, seed=EVAL_SEED, task=task,
            progress=False, save=False,
        ).rows  # fmt: skip
        roles.append({
            "role": role.role,
            "train_len": role.train_len,
            "prefix_len": role.prefix_lengths[TEST_LEN],
            "outcome": role.outcome(TEST_LEN),
            "accuracy_n": measured[0]["accuracy"],
            "accuracy_t": measured[1]["accuracy"],
            "eps_star": role.report.results[0].eps_star,
        })  # fmt: skip
    result = {
        **asdict(model),
        "name": model.name,
        "steps": model.steps,
        "train_s": trained,
        "check_s": check_s,
        "bins": bins,
        "outcome": positions.outcome(TEST_LEN),
        "worst_role": positions.worst(TEST_LEN)[0],
        "roles": roles,
    }
    cache.parent.mkdir(parents=True, exist_ok=True)
    write_text(cache, json.dumps(result, indent=1, default=float))
    return result


def _job(args: tuple[Model, Path]) -> dict[str, Any]:
    return run_model(*args)


# ---------------------------------------------------------------------- the tables


def judge(result: dict[str, Any]) -> dict[str, Any]:
    """The pre-registered labels of one model's measurements."""
    by_bin = {b["bin"]: b for b in result["bins"]}
    train, mid, far = (by_bin[f"{lo}-{hi}"] for lo, hi in BINS)
    learned = train["token_accuracy"] >= ACCURACY
    generalizes = (
        learned
        and far["token_accuracy"] >= ACCURACY
        and far["token_accuracy"] >= train["token_accuracy"] - ACCURACY_DROP
    )
    if train["exact_match"] < EXACT:
        pattern = "fails-short"
    elif min(mid["exact_match"], far["exact_match"]) >= EXACT:
        pattern = "generalizes"
    else:
        pattern = "fails"
    predicted = result["outcome"] == "certified"
    roles_agree = [
        (r["outcome"] == "certified")
        == (r["accuracy_t"] >= ACCURACY and r["accuracy_t"] >= r["accuracy_n"] - ACCURACY_DROP)
        for r in result["roles"]
    ]
    return {
        "learned": learned,
        "generalizes": generalizes,
        "pattern": pattern,
        "predicted": predicted,
        "agrees": predicted == generalizes,
        "roles_agree": sum(roles_agree),
        "roles": len(roles_agree),
    }


def table(results: list[dict[str, Any]]) -> pd.DataFrame:
    names = dict(TASKS)
    rows = []
    for r in results:
        j = judge(r)
        by_bin = {b["bin"]: b for b in r["bins"]}
        row = {
            "part": r["part"],
            "task": names[r["task"]],
            "spec": r["task"],
            "pos": r["pos"],
            "seed": r["seed"],
        }
        for lo, hi in BINS:
            row[f"tok {lo}-{hi}"] = by_bin[f"{lo}-{hi}"]["token_accuracy"]
            row[f"em {lo}-{hi}"] = by_bin[f"{lo}-{hi}"]["exact_match"]
        row["pattern"] = j["pattern"]
        row["published"] = PUBLISHED_APE.get(r["task"], "") if r["pos"] == "ape" else ""
        row["learned"] = j["learned"]
        row["generalizes"] = j["generalizes"]
        row["check"] = r["outcome"]
        row["worst role"] = r["worst_role"]
        row["per role"] = ", ".join(f"{x['role']} {x['outcome']}" for x in r["roles"])
        row["agrees"] = j["agrees"]
        row["roles agree"] = f"{j['roles_agree']}/{j['roles']}"
        row["train s"] = r["train_s"]
        row["check s"] = r["check_s"]
        rows.append(row)
    return pd.DataFrame(rows)


def summary_lines(frame: pd.DataFrame, part: str) -> list[str]:
    sub = frame[frame.part == part]
    if sub.empty:
        return [f"- {part}: not run yet"]
    learned = sub[sub.learned]
    agree = int(learned.agrees.sum())
    lines = [
        f"- {part}: {len(sub)} models, {len(learned)} learned at N; the check agrees with "
        f"measured generalization in {agree}/{len(learned)} learned models "
        f"({100 * agree / max(len(learned), 1):.0f}%; target >= 90%), and in "
        f"{int(sub.agrees.sum())}/{len(sub)} of all models."
    ]
    roles = sub["roles agree"].str.split("/", expand=True).astype(int)
    lines.append(
        f"  - per role: outcome agrees with the role's own accuracy at T={TEST_LEN} in "
        f"{int(roles[0].sum())}/{int(roles[1].sum())} roles."
    )
    ape = sub[(sub.pos == "ape") & (sub.published != "")]
    positive = ape[ape.published == "generalizes"]
    negative = ape[ape.published == "fails"]
    lines.append(
        f"  - published APE pattern (exact match): {int((positive.pattern == 'generalizes').sum())}"
        f"/{len(positive)} of the tasks published to generalize do here; "
        f"{int((negative.pattern != 'generalizes').sum())}/{len(negative)} of those published "
        f"to fail do not generalize ({int((negative.pattern == 'fails-short').sum())} of "
        "them not learned at N: fails-short)."
    )
    return lines


def fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def load_results(folder: Path) -> pd.DataFrame:
    """The table of the cached results in ``folder`` (empty when there are none)."""
    results = [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]
    if not results:
        return pd.DataFrame()
    order = {spec: i for i, (spec, _) in enumerate(TASKS)}
    results.sort(key=lambda r: (r["part"] != "dev", order[r["task"]], r["pos"], r["seed"]))
    return table(results)


def disagreements(frame: pd.DataFrame) -> list[str]:
    """One line per model the check and the measurement disagree on, with the numbers."""
    lines = []
    for _, row in frame[~frame.agrees].iterrows():
        said = (
            "certified" if row.check == "certified" else f"{row.check} (worst: {row['worst role']})"
        )
        measured = "generalizes" if row.generalizes else "does not generalize"
        learned = "learned" if row.learned else "not learned"
        lines.append(
            f"- {row.task}, {row.pos}, seed {row.seed} ({learned} at N): the check says "
            f"{said}; measured {measured} (token accuracy "
            f"{row['tok 1-50']:.3f} / {row['tok 51-100']:.3f} / {row['tok 101-150']:.3f}); "
            f"per role: {row['per role']}; {row['roles agree']} roles agree with their own "
            "accuracy at T."
        )
    return lines


def write_report(root: Path, command: str) -> None:
    frame = load_results(root / "results")
    if frame.empty:
        raise SystemExit(f"no results under {root}: run a part first")
    first_version = load_results(root / FIRST_VERSION)
    RESULTS.mkdir(exist_ok=True)
    write_text(RESULTS / f"{STEM}.csv", frame.to_csv(index=False))
    columns = ["task", "pos", "seed", *(f"{k} {lo}-{hi}" for k in ("tok", "em") for lo, hi in BINS),
               "pattern", "published", "check", "per role", "generalizes", "agrees"]  # fmt: skip
    lines = [
        "# The classic length-generalization suite",
        "",
        "Commands: `OMP_NUM_THREADS=1 python examples/classic_suite.py --part dev`, then "
        f"`--part holdout` (2 workers); this file written by `{command}`. Timings are in the "
        f"`.csv` (`train s`, `check s`).",
        f"Source: {source_revision()}; versions: {json.dumps(library_versions())}",
        "",
        f"Models: {SIZE}, {TRAIN}, {SHORT_STEPS} or {LONG_STEPS} steps, N = {TRAIN_LEN}; "
        f"bins of {EVAL_SAMPLES} sequences; check at T = {TEST_LEN} (see the pre-registration "
        "in examples/classic_suite.py).",
        "",
        "The tasks this model size does not learn at N are trained with a recipe per task at "
        "N = 20 (bins 1-20, 21-40, 41-60) in `examples/learned_suite.py`: results in "
        "`examples/results/learned_suite.md`.",
        "",
        "## Summary",
        "",
        *summary_lines(frame, "dev"),
        *summary_lines(frame, "holdout"),
        "",
        "Disagreements (the check against measured generalization):",
        "",
        *(disagreements(frame) or ["- none"]),
        "",
        *EXPLANATIONS,
    ]
    for part in ("dev", "holdout"):
        sub = frame[frame.part == part]
        if sub.empty:
            continue
        lines += [f"## {part}", "", "| " + " | ".join(columns) + " |",
                  "|" + "---|" * len(columns)]  # fmt: skip
        for _, row in sub.iterrows():
            lines.append("| " + " | ".join(fmt(row[c]) for c in columns) + " |")
        lines.append("")
    if not first_version.empty:
        lines += [
            "## The first version of the check (generic witnesses only)",
            "",
            "The development grid was first checked with the witnesses `types`, `blocks` and "
            "`search` only; the task witnesses (`Task.short_instances`) were added after it, "
            "and every table above uses them. The held-out grid was run with the final check "
            "only.",
            "",
            *summary_lines(first_version, "dev"),
            "",
            *disagreements(first_version),
            "",
        ]
    write_text(RESULTS / f"{STEM}.md", "\n".join(lines) + "\n")
    print("\n".join(lines[:20]))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=("dev", "holdout"))
    parser.add_argument("--report", action="store_true", help="only rewrite the tables")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", default="runs/classic_suite")
    parser.add_argument("--only", default=None, help="comma-separated task specs to run")
    args = parser.parse_args(argv)
    root = Path(args.out)
    command = "python examples/classic_suite.py " + shlex.join(argv or sys.argv[1:])
    if not args.report:
        if args.part is None:
            raise SystemExit("give --part dev or --part holdout (or --report)")
        models = grid(args.part)
        if args.only:
            keep = set(args.only.split(","))
            models = [m for m in models if m.task in keep]
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        started = time.perf_counter()
        models.sort(key=lambda m: -m.steps)  # the long ones first: the pool ends together
        jobs = [(m, root) for m in models]
        if args.workers > 1:
            with multiprocessing.get_context("spawn").Pool(args.workers) as pool:
                for result in pool.imap_unordered(_job, jobs):
                    print(f"{result['name']}: {result['outcome']}", flush=True)
        else:
            for job in jobs:
                result = _job(job)
                print(f"{result['name']}: {result['outcome']}", flush=True)
        print(f"part {args.part}: {time.perf_counter() - started:.0f} s wall")
    write_report(root, command)


if __name__ == "__main__":
    main()
