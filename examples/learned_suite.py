"""The classic suite with models that learn at N: a recipe per task, measured bins, the check.

`examples/classic_suite.py` trains one small model (2 layers, 64 wide) per task at N = 50;
parity, repeat copy, addition, reverse, interleaved majority and unique copy without
positions are not learned at N there, so those rows are failures to learn, not failures to
extrapolate. This grid gives each task a recipe sized to learn it, at the shorter range the
CPU budget allows, and puts the check in front of the models that learned.

Pre-registration (written before any model of this grid was trained; not to be changed
after seeing results)
------------------------------------------------------------------------------------------

**Scale.** Training lengths up to N = 20 (the papers use 50); measured bins 1-20, 21-40,
41-60 (the papers' 1-50, 51-100, 101-150 at the same ratios 1 : 2 : 3); check at T = 60.
The length of a sequence is everything the model reads (input, separator, output), as in
`simcheck.tasks.seq2seq`.

**Recipes** (fixed here, from the published configurations scaled to two CPU cores and the
classic suite's timings; no calibration run). All: simcheck `HookedTransformer`, LayerNorm,
GELU, AdamW, warmup 5%, cosine decay to 10%, batch 64, gradient clipping 1, lengths uniform
in [task's shortest, current longest]:

- ``counting`` (binary majority, majority of 8): 2 layers x 2 heads x 64 (MLP 256), lr 3e-3,
  2000 steps, no curriculum. (Huang et al.: 1 x 1 x 16 for binary majority; the classic suite's
  size learns both at N = 50.)
- ``copying`` (sort, unique copy): 2 x 4 x 128 (MLP 512), lr 1e-3, 6000 steps, curriculum over
  30% of the steps. (Huang et al.: unique copy 2 x 1 x 64; wider here to learn without
  positions too.)
- ``deep`` (parity, interleaved majority, repeat copy, reverse, addition): 4 x 4 x 128 (MLP
  512), lr 1e-3, 6000 steps, curriculum over 30% of the steps. (Huang et al.: parity
  4 x 2 x 256, repeat copy 4 x 4 x 256; width halved to fit the CPU: about 65 ms a step on
  one thread.)

Encodings: ``ape`` (learned table of 60 rows, each batch shifted by a random offset in
[0, 60 - length], so every row up to T is trained, as in Huang et al.) and ``nope`` (no
positional encoding).

**Measured** (evaluation seed 777, 1000 sequences per bin, lengths uniform in the bin):
token accuracy (over the bin's target positions) and exact match (every target right).

- *Learned at N*: token accuracy in 1-20 >= 0.99 and exact match in 1-20 >= 0.9.
- *Generalizes* (what the check is compared with): learned at N, token accuracy in 41-60
  >= 0.95 and no more than 0.03 below that in 1-20.
- *Published-pattern outcome* (exact match, as Huang et al. report): ``generalizes`` when
  exact match >= 0.9 in all three bins; ``fails-short`` when < 0.9 in 1-20; ``fails``
  otherwise.

**Published pattern** (Huang et al. 2025, APE with offsets): binary majority, majority, sort
and unique copy generalize; interleaved majority degrades (0.968 / 0.847: ``fails`` by the
rule above, since 0.847 < 0.9); parity, repeat copy and addition fail. Target: reproduced on
>= 7 of these 8 tasks among the models learned at N (reported per task; an unlearned task is
a stated CPU limit, not a reproduction). Reverse has no published APE outcome here.

**What the check must say.** `check_positions` at T = 60 with the default `CheckConfig`
(eps 0.1, delta 0.05, confidence 0.95, interventions on), check seed 0, default roles. The
prediction "generalizes" is the outcome over positions ``certified``. Targets: the
prediction agrees with *generalizes* on >= 90% of the models learned at N; every
disagreement listed with its numbers; each learned model that fails beyond N has a diagnosis
that names the term, the state and a cause (confirmed or not), reported verbatim.

**Retry with more steps** (added after the first four development models had finished, before
any other): every task whose development ``ape`` model is not learned at N gets one more
``ape`` model, seed 0, with 3x the steps of its recipe (the same size and schedule), up to
four tasks in the order of the table. The retries are their own part (``retry``), summarised
and tabled separately; a learned retry is judged by the same criteria. They answer whether an
unlearned task is a limit of the budget.

**Ablation** (added after reading every part above; exploratory, not scored): unique copy
with APE, seeds 0 and 1, at Huang et al.'s size (2 layers x 1 head x 64, MLP 256), lr 1e-3,
18000 steps, curriculum over 30%: whether the published configuration generalizes where
ours (2 x 4 x 128) did not.

**Held-out part**: the development grid is seed 0 of every task with both encodings; the
held-out grid is seed 1 of every task with ``ape``, run once at the end and reported
separately. Formal languages (Tomita, Dyck) stay at the classic suite's N = 50 grid.

Usage
-----

    python examples/learned_suite.py --part dev [--workers 2]
    python examples/learned_suite.py --part holdout
    python examples/learned_suite.py --part retry       # after dev
    python examples/learned_suite.py --part ablation    # exploratory
    python examples/learned_suite.py --report        # only rewrite the tables

Runs and per-model results are cached under ``--out`` (default ``runs/learned_suite``); the
tables go to ``examples/results/learned_suite.md`` and ``.csv``.
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
from simcheck.report.check_report import intervention_lines
from simcheck.tasks import SequenceTask, TargetRole

TRAIN_LEN = 20
TEST_LEN = 60
BINS = ((1, 20), (21, 40), (41, 60))
EVAL_SAMPLES = 1000
EVAL_SEED = 777
LEARNED_TOKEN, LEARNED_EXACT = 0.99, 0.9
ACCURACY, ACCURACY_DROP, EXACT = 0.95, 0.03, 0.9
COMMON = {"batch_size": 64, "warmup": 0.05, "min_lr_ratio": 0.1, "grad_clip": 1.0}
RECIPES: dict[str, dict[str, Any]] = {
    "counting": {"n_layers": 2, "n_heads": 2, "d_model": 64, "d_mlp": 256, "lr": 3e-3,
                 "steps": 2000},
    "copying": {"n_layers": 2, "n_heads": 4, "d_model": 128, "d_mlp": 512, "lr": 1e-3,
                "steps": 6000, "curriculum": 0.3},
    "deep": {"n_layers": 4, "n_heads": 4, "d_model": 128, "d_mlp": 512, "lr": 1e-3,
             "steps": 6000, "curriculum": 0.3},
}  # fmt: skip
TASKS = (  # spec, name, recipe, published APE outcome (pattern rule above)
    ("majority:V=2", "binary majority", "counting", "generalizes"),
    ("majority:V=8", "majority (8 symbols)", "counting", "generalizes"),
    ("sort:V=100", "sort", "copying", "generalizes"),
    ("unique_copy:V=100", "unique copy", "copying", "generalizes"),
    ("interleaved_majority:p=3", "interleaved majority (period 3)", "deep", "fails"),
    ("parity", "parity", "deep", "fails"),
    ("repeat_copy:V=4", "repeat copy", "deep", "fails"),
    ("addition:B=10", "addition", "deep", "fails"),
    ("reverse:V=4", "reverse", "deep", ""),
)
NAMES = {spec: name for spec, name, _, _ in TASKS}
RECIPE_OF = {spec: recipe for spec, _, recipe, _ in TASKS}
PUBLISHED = {spec: published for spec, _, _, published in TASKS}
NOTES = [
    "Notes, written after reading the results (they explain; they change no criterion):",
    "",
    "- **Learned at N** is strict (token accuracy >= 0.99 and exact match >= 0.9): repeat "
    "copy with NoPE misses it by a hair (token accuracy 0.98989, exact match 0.950) and "
    "counts as not learned.",
    "- **Agreement.** The check agrees with measured generalization on every model learned at "
    "N: 9/9 development, 5/5 held out, 2/2 retries, and on all 31 models. Seven learned models "
    "fail beyond N (repeat copy APE on both seeds, reverse APE on both seeds and NoPE, unique "
    "copy and interleaved majority after the retry): the check says not-simulatable for each, "
    "with the first output role certified where the measured first-role accuracy holds at T.",
    "- **Published pattern, seed 0:** reproduced on 5 of 8 tasks (binary majority, majority, "
    "sort generalize; repeat copy fails: 0.996 tokens and 0.980 exact match at N, exact match "
    "0.000 in 41-60; interleaved majority, learned after the retry (0.993 / 0.983 at N), "
    "degrades to exact match 0.867 and 0.753, as published 0.968 / 0.847). Parity and "
    "addition are not learned at N by the 4 x 4 x 128 model, with 6000 steps or with 18000 (token "
    "accuracy 0.72 and 0.85 at N after 754 s and 1005 s of training): the CPU limit, measured. "
    "Unique copy contradicts the published outcome: with 18000 steps it is learned (0.999 / "
    "0.994) and fails (0.470 tokens, 0.000 exact match in 41-60); the classic suite's smaller "
    "model at N = 50 fails the same way (0.681 in 101-150). The exploratory ablation at "
    "Huang et al.'s size (2 x 1 x 64, 18000 steps, seeds 0 and 1) learns it less well "
    "(token accuracy 0.979 and 0.973 at N) and falls further (0.264 and 0.197 in 41-60): "
    "width is not what separates these models from the published one; the training length "
    "(N = 20 here, 50 there) and their schedule were not tested.",
    "- **Diagnoses** (below): in all seven learned-and-failing models the term is the model "
    "gap at every failing role (task gap at most 0.05 at the task-matched witnesses) and "
    "attention dilution is observed "
    "in several heads, but rescaling a named head's logits by log length removes at most 13% "
    "of the long error (the other heads' rescalings at most 40%, all of them together at most "
    "47%), below the 50% that confirms: no cause is confirmed, and the tool says so. The "
    "interchange table localises the failure instead: the site whose patch from the witness "
    "removes the most is in the last layer at every failing role (the MLP output, the "
    "residual stream entering it or a head's output of L3; L1 heads in the two-layer "
    "unique-copy model), removing 66-100% of the long error, except unique copy's last role "
    "(33%). With random offsets every position row is trained, so the positional "
    "cause does not apply. A reading not tested here: the last layer looks the source token "
    "up at a distance (output position minus source position) that training lengths never "
    "showed; simcheck does not yet name or repair such a cause.",
    "- **Runs.** Development models trained and checked at b6a2c33 (the pre-registration), then "
    "evaluated and checked again at 25402a6 to record the interventions' summary (bins and "
    "outcomes identical on 18 of 18); retries, then the held-out part, at 25402a6, once each; "
    "the ablation at 6bcb3f5.",
    "",
]
"""Notes on the results, written after reading them (they explain; they change no criterion)."""
RESULTS = Path(__file__).resolve().parent / "results"
STEM = "learned_suite"


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
        suffix = f"-{self.part}" if self.part in ("retry", "ablation") else ""
        return f"{task}-{self.pos}-s{self.seed}{suffix}"

    @property
    def recipe(self) -> str:
        """The recipe's name as the tables show it."""
        if self.part == "ablation":
            return ABLATION_NAME
        steps = f" x{RETRY_STEPS} steps" if self.part == "retry" else ""
        return RECIPE_OF[self.task] + steps

    def train_options(self) -> dict[str, Any]:
        ape = self.pos == "ape"
        recipe = ABLATION if self.part == "ablation" else RECIPES[RECIPE_OF[self.task]]
        options = {
            **COMMON,
            **recipe,
            "pos": "learned" if ape else "none",
            "pos_offsets": ape,
            "seed": self.seed,
            "data_seed": self.seed,
            "train_len": TRAIN_LEN,
        }
        if self.part == "retry":
            options["steps"] *= RETRY_STEPS
        if ape:
            options["n_ctx"] = TEST_LEN
        return options


RETRY_STEPS, RETRY_TASKS = 3, 4
ABLATION_TASK, ABLATION_NAME = "unique_copy:V=100", "Huang et al. size"
ABLATION = {"n_layers": 2, "n_heads": 1, "d_model": 64, "d_mlp": 256, "lr": 1e-3,
            "steps": 18000, "curriculum": 0.3}  # fmt: skip
"""Unique copy at Huang et al.'s size (2 x 1 x 64), with the retry's steps."""


def grid(part: str, root: Path) -> list[Model]:
    if part == "dev":
        return [Model(part, spec, pos, 0) for spec in NAMES for pos in ("ape", "nope")]
    if part == "holdout":
        return [Model(part, spec, "ape", 1) for spec in NAMES]
    if part == "ablation":
        return [Model(part, ABLATION_TASK, "ape", seed) for seed in (0, 1)]
    unlearned = []
    for spec in NAMES:
        cache = root / "results" / f"{Model('dev', spec, 'ape', 0).name}.json"
        if not cache.is_file():
            raise SystemExit(f"{cache} is missing: run --part dev first")
        if not judge(json.loads(cache.read_text()))["learned"]:
            unlearned.append(Model(part, spec, "ape", 0))
    return unlearned[:RETRY_TASKS]


# ---------------------------------------------------------------------- one model


def run_model(model: Model, root: Path) -> dict[str, Any]:
    """Train (or reuse a finished run), measure the bins and the roles, check; cached."""
    torch.set_num_threads(1)
    cache = root / "results" / f"{model.name}.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    run_dir = root / "runs" / model.name
    try:
        run = simcheck.load_run(run_dir)
        if not run.finished:
            raise simcheck.SimcheckError("unfinished")
    except simcheck.SimcheckError:
        simcheck.train(model.task, run_dir, overwrite=True, progress=False,
                       **model.train_options())  # fmt: skip
        run = simcheck.load_run(run_dir)
    last = (run_dir / "metrics.jsonl").read_text().splitlines()[-1]
    train_s = json.loads(last)["seconds"]  # the training clock, also for a reused run
    bins = simcheck.evaluate(
        run, lengths=[TRAIN_LEN], samples=EVAL_SAMPLES, seed=EVAL_SEED, bins=BINS,
        progress=False, save=False,
    ).bins  # fmt: skip
    began = time.perf_counter()
    positions = check_positions(run, test_lengths=[TEST_LEN])
    check_s = time.perf_counter() - began
    roles = []
    for role in positions.roles:
        sequence = isinstance(run.task, SequenceTask)
        task = TargetRole(run.task, role.role) if sequence else run.task
        lengths = [role.train_len, role.prefix_lengths[TEST_LEN]]
        measured = simcheck.evaluate(
            run, lengths=lengths, samples=EVAL_SAMPLES, seed=EVAL_SEED, task=task,
            progress=False, save=False,
        ).rows  # fmt: skip
        result = role.report.results[0]
        roles.append({
            "role": role.role,
            "outcome": role.outcome(TEST_LEN),
            "accuracy_n": measured[0]["accuracy"],
            "accuracy_t": measured[1]["accuracy"],
            "diagnosis": result.diagnosis.lines() if result.diagnosis is not None else [],
            "interventions": intervention_lines(result),
        })  # fmt: skip
    result = {
        **asdict(model),
        "name": model.name,
        "recipe": model.recipe,
        "train_s": train_s,
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
    learned = train["token_accuracy"] >= LEARNED_TOKEN and train["exact_match"] >= LEARNED_EXACT
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
    return {"learned": learned, "generalizes": generalizes, "pattern": pattern,
            "agrees": predicted == generalizes}  # fmt: skip


def table(results: list[dict[str, Any]]) -> pd.DataFrame:
    rows = []
    for r in results:
        j = judge(r)
        by_bin = {b["bin"]: b for b in r["bins"]}
        row = {"part": r["part"], "task": NAMES[r["task"]], "spec": r["task"], "pos": r["pos"],
               "seed": r["seed"], "recipe": r["recipe"]}  # fmt: skip
        for lo, hi in BINS:
            row[f"tok {lo}-{hi}"] = by_bin[f"{lo}-{hi}"]["token_accuracy"]
            row[f"em {lo}-{hi}"] = by_bin[f"{lo}-{hi}"]["exact_match"]
        row.update(j)
        row["published"] = PUBLISHED[r["task"]] if r["pos"] == "ape" else ""
        row["check"] = r["outcome"]
        row["per role"] = ", ".join(f"{x['role']} {x['outcome']}" for x in r["roles"])
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
        f"measured generalization on {agree}/{len(learned)} learned models "
        f"({100 * agree / max(len(learned), 1):.0f}%; target >= 90%), and on "
        f"{int(sub.agrees.sum())}/{len(sub)} of all models."
    ]
    ape = sub[(sub.pos == "ape") & (sub.published != "")]
    reproduced = ape[ape.learned & (ape.pattern == ape.published)]
    unlearned = ape[~ape.learned]
    lines.append(
        f"  - published APE pattern: reproduced on {len(reproduced)}/{len(ape)} tasks "
        f"(target >= 7/8) by models learned at N; not learned at N (CPU limit): "
        f"{', '.join(unlearned.task) or 'none'}."
    )
    failing = sub[sub.learned & ~sub.generalizes]
    named = [f"{t} {p}" for t, p in zip(failing.task, failing.pos, strict=True)]
    lines.append(
        f"  - learned at N and failing beyond: {len(failing)} ({', '.join(named) or 'none'})."
    )
    return lines


def pattern_lines(frame: pd.DataFrame) -> list[str]:
    """The published APE pattern task by task over seed 0: the development model, or its retry
    where the development model was not learned at N."""
    lines = []
    counts = {"reproduced": 0, "contradicted": 0, "not learned at N": 0}
    for spec, published in PUBLISHED.items():
        if not published:
            continue
        rows = frame[(frame.spec == spec) & (frame.pos == "ape") & (frame.seed == 0)]
        learned = rows[rows.learned]
        row = (learned if not learned.empty else rows).iloc[0]
        verdict = (
            "not learned at N" if not row.learned
            else "reproduced" if row.pattern == published else "contradicted"
        )  # fmt: skip
        counts[verdict] += 1
        lines.append(f"  - {row.task}: published {published}; here {row.pattern} "
                     f"({row.part}, {row.recipe}): {verdict}")  # fmt: skip
    head = ", ".join(f"{n} {k}" for k, n in counts.items())
    return [f"- published APE pattern, seed 0 (development model, else its retry): {head}", *lines]


def fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return "-" if value != value else f"{value:.3f}"
    return str(value)


def disagreements(frame: pd.DataFrame) -> list[str]:
    lines = []
    for _, row in frame[~frame.agrees].iterrows():
        measured = "generalizes" if row.generalizes else "does not generalize"
        learned = "learned" if row.learned else "not learned"
        toks = " / ".join(f"{row[f'tok {lo}-{hi}']:.3f}" for lo, hi in BINS)
        lines.append(
            f"- {row.task}, {row.pos}, seed {row.seed} ({row.part}, {learned} at N): the check "
            f"says {row.check} ({row['per role']}); measured {measured} (token accuracy {toks})."
        )
    return lines


def diagnoses(results: list[dict[str, Any]]) -> list[str]:
    """The diagnosis of every learned model that fails beyond N, per failing role."""
    lines = []
    for r in results:
        j = judge(r)
        if not j["learned"] or j["generalizes"]:
            continue
        lines += [f"### {NAMES[r['task']]}, {r['pos']}, seed {r['seed']} ({r['part']})", ""]
        for role in r["roles"]:
            lines.append(
                f"- role {role['role']}: {role['outcome']}; accuracy {role['accuracy_n']:.3f} at "
                f"N, {role['accuracy_t']:.3f} at T"
            )
            said = role["diagnosis"] + role.get("interventions", [])
            lines += [f"      {line}" for line in said]
        lines.append("")
    return lines


def write_report(root: Path, command: str) -> None:
    results = [json.loads(p.read_text()) for p in sorted((root / "results").glob("*.json"))]
    if not results:
        raise SystemExit(f"no results under {root}: run a part first")
    order = {spec: i for i, spec in enumerate(NAMES)}
    parts = {"dev": 0, "holdout": 1, "retry": 2, "ablation": 3}
    results.sort(key=lambda r: (parts[r["part"]], order[r["task"]], r["pos"], r["seed"]))
    frame = table(results)
    RESULTS.mkdir(exist_ok=True)
    write_text(RESULTS / f"{STEM}.csv", frame.to_csv(index=False))
    columns = ["task", "pos", "seed", "recipe",
               *(f"{k} {lo}-{hi}" for k in ("tok", "em") for lo, hi in BINS),
               "learned", "pattern", "published", "check", "per role", "generalizes", "agrees",
               "train s", "check s"]  # fmt: skip
    lines = [
        "# The classic suite with models that learn at N",
        "",
        "Commands: `python examples/learned_suite.py --part dev`, then `--part retry`, then "
        "`--part holdout`, and the exploratory `--part ablation` (2 "
        f"workers, one thread each, on a 2-core CPU); this file written by `{command}`.",
        f"Source: {source_revision()}; versions: {json.dumps(library_versions())}",
        "",
        f"N = {TRAIN_LEN}, bins {', '.join(f'{lo}-{hi}' for lo, hi in BINS)} of {EVAL_SAMPLES} "
        f"sequences, check at T = {TEST_LEN}; recipes {json.dumps(RECIPES)} with "
        f"{json.dumps(COMMON)} (pre-registration in examples/learned_suite.py). `train s` and "
        "`check s` are seconds on one CPU thread.",
        "",
        "## Summary",
        "",
        *summary_lines(frame, "dev"),
        *summary_lines(frame, "holdout"),
        *summary_lines(frame, "retry"),
        *summary_lines(frame, "ablation"),
        *pattern_lines(frame),
        "",
        "Disagreements (the check against measured generalization):",
        "",
        *(disagreements(frame) or ["- none"]),
        "",
        *NOTES,
    ]
    for part in ("dev", "holdout", "retry", "ablation"):
        sub = frame[frame.part == part]
        if sub.empty:
            continue
        lines += [f"## {part}", "", "| " + " | ".join(columns) + " |",
                  "|" + "---|" * len(columns)]  # fmt: skip
        for _, row in sub.iterrows():
            lines.append("| " + " | ".join(fmt(row[c]) for c in columns) + " |")
        lines.append("")
    lines += ["## Diagnoses of the models that learned at N and failed beyond it", "",
              *(diagnoses(results) or ["none", ""])]  # fmt: skip
    write_text(RESULTS / f"{STEM}.md", "\n".join(lines) + "\n")
    print("\n".join(lines[:24]))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=("dev", "holdout", "retry", "ablation"))
    parser.add_argument("--report", action="store_true", help="only rewrite the tables")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", default="runs/learned_suite")
    args = parser.parse_args(argv)
    root = Path(args.out)
    command = "python examples/learned_suite.py " + shlex.join(argv or sys.argv[1:])
    if not args.report:
        if args.part is None:
            raise SystemExit("give --part dev, holdout, retry or ablation (or --report)")
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        models = grid(args.part, root)
        cost = {"deep": 0, "copying": 1, "counting": 2}
        models.sort(key=lambda m: cost[RECIPE_OF[m.task]])  # long ones first: workers end together
        started = time.perf_counter()
        jobs = [(m, root) for m in models]
        with multiprocessing.get_context("spawn").Pool(args.workers) as pool:
            for result in pool.imap_unordered(_job, jobs):
                print(f"{result['name']}: {result['outcome']} (train {result['train_s']} s, "
                      f"check {result['check_s']:.0f} s)", flush=True)  # fmt: skip
        print(f"part {args.part}: {time.perf_counter() - started:.0f} s wall")
    write_report(root, command)


if __name__ == "__main__":
    main(sys.argv[1:])
