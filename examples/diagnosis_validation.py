"""Diagnosis validation: do interventions confirm the failure mechanism planted in a model,
and does a range check find the length where the model fails?

Each model below fails (or holds) for a reason known by construction. Every model is checked
over a range of lengths (`simcheck.check` with ``up_to``), with the interventions of
`simcheck.checking.interventions` at the first length where it fails, and measured on fresh
inputs at
every doubling of the length.

Pre-registration (written and committed before any model of these grids was trained; not to
be changed after seeing results)
------------------------------------------------------------------------------------------

**Models** (N = training length; sizes and steps from calibration runs at seed 100, outside
both grids, on the development configurations; trained models are one-layer simcheck models,
d_model 32, d_mlp 128, unless said otherwise, with `simcheck.train`'s defaults otherwise):

Development part (seeds 0, 1, 2):

- ``D1`` positions: ``modp:p=3``, learned absolute positions without offsets (a 2048-row
  table), N = 32, 3000 steps. Planted cause: ``positions_beyond_training``.
- ``D2`` dilution: ``needle:V=4``, no positions (NoPE), N = 32, 2000 steps. Planted cause:
  ``attention_dilution`` (one key among n loses weight as n grows).
- ``D3`` finite precision: a hand-built one-head model of ``majority:V=2`` whose BOS sink key
  outscores every task key by gamma = 0.5 (`sink_model`), checked and measured in p-bit
  attention ``hardmax:4``: task keys round to 0 beyond n = 2^(4/0.5) = 256 > N = 32. The
  seed is the check's and the measurement's (the weights are fixed). Planted cause:
  ``small_logit_margin``.
- ``D4`` a local task without the local bias: ``lag:V=4,tau=1``, learned absolute positions
  without offsets (2048 rows), N = 32, 2000 steps. Planted cause:
  ``positions_beyond_training``.
- ``D5`` the same local task with the local bias: ``lag:V=4,tau=1``, periodic positions
  (Delta = 1) with the tau = 1 local attention bias, N = 32, 2000 steps. Expected to
  generalize: no planted cause.
- ``D6`` witness resolution: ``modp:p=3`` with periodic positions (Delta = 3), N = 6, 2000
  steps: the model generalizes, but strings of length <= 6 cannot resolve the long inputs'
  proportions. Planted: ``witness_resolution`` (which no intervention can confirm).
- ``D7`` generalizes: ``majority:V=2``, NoPE, N = 16, 2000 steps. No planted cause.
- ``E1`` (exploratory, outside every target): ``kgram:S=3,k=2``, learned positions without
  offsets (2048 rows), 2 layers, N = 32, 3000 steps: a local task read through an induction
  circuit, whose every query position needs its neighbour, so that no remapping of the
  position table can repair it. Planted: ``positions_beyond_training``; reported, not
  scored.

Held-out part (mechanism x task pairs not used while developing; seeds 0, 1, 2; run once, at
the end, and reported separately):

- ``H1`` positions: ``residue_majority:p=3``, learned positions without offsets (2048 rows),
  N = 32, 3000 steps. Planted: ``positions_beyond_training``.
- ``H2`` dilution: ``first:V=2``, NoPE, 2 layers, N = 32, 3000 steps: without positions the
  first token is found through the causal mask (its layer-0 state attends to itself only),
  one key among n. Planted: ``attention_dilution``.
- ``H3`` finite precision: the sink model for ``majority:V=3`` with gamma = 0.6, checked and
  measured in ``hardmax:5`` (threshold 2^(5/0.6) = 322). Planted: ``small_logit_margin``.
- ``H4`` a local task without the local bias: ``lag:V=8,tau=2``, learned positions (2048
  rows), N = 32, 2000 steps. Planted: ``positions_beyond_training``.
- ``H5`` with the local bias: ``lag:V=8,tau=2``, periodic positions with the tau = 2 bias,
  N = 32, 2000 steps. No planted cause.
- ``H6`` witness resolution: ``simple:omega=3``, NoPE, N = 8, 2000 steps. Planted:
  ``witness_resolution``.
- ``H7`` generalizes: ``modp:p=3`` with periodic positions, N = 32, 3000 steps. No planted
  cause.

**Check.** ``simcheck.check(model, up_to=U, seed=seed)`` with every other setting at its
default (eps 0.1, delta 0.05, confidence 0.95 over the whole range, interventions on), in
the model's attention mode; U = 16 N (512 for N = 32, 256 for N = 16, 96 for N = 6, 128 for
N = 8). The range stops at its first failure (not-simulatable or fails-short).

**Measured** (the criterion, fixed here): at N and at every T = 2N, 4N, ... up to 4 U, 1000
fresh inputs of length T from a stream of their own (seed 4242 + model seed, distinct from
the check's), run in the model's attention mode; an input *errs* when the task's metric
(misclassification for classes, absolute error for scalars) exceeds eps = 0.1.

- *learned at N*: at most 5% of the inputs of length N err;
- the *measured failure* m: the first T whose share of erring inputs exceeds 5% (delta); none
  when no T up to 4 U does;
- a *failing model*: learned at N, with m <= U; a *generalizing model*: learned at N, no m.

**Targets** (each part separately; the exploratory model E1 is outside all of them):

1. *cause*: in >= 90% of the failing models with a planted cause, the first confirmed cause
   of the diagnosis at the range's first failure is the planted one;
2. *repair*: in >= 90% of those models, the planted cause's repair (the best of its repairs)
   removes >= 50% of the long error on the uncovered inputs (the point estimate);
3. *no false confirmation*: no cause is confirmed at any checked length of a generalizing
   model (all of them);
4. *range*: in >= 90% of the models learned at N, the range's first failure c is within one
   doubling of m, both counted as 2 U when absent (a failure beyond U is one the range
   cannot see);
5. *forecast*: where a forecast with a length is made, it lies within a factor 2 of m, or
   beyond 2 U when the model has no measured failure: >= 90% of the forecasts made;
6. *resolution*: for the witness-resolution models, the first length that is not certified
   names witness resolution and no cause is confirmed there: >= 90% of them.

Every disagreement is listed with its numbers in ``examples/results/diagnosis_validation.md``.

Usage
-----

    python examples/diagnosis_validation.py --part dev [--workers 2]
    python examples/diagnosis_validation.py --part holdout
    python examples/diagnosis_validation.py --report

Runs and per-model results are cached under ``--out`` (default
``runs/diagnosis_validation``); the tables go to ``examples/results/diagnosis_validation.md``
and ``.csv``.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

import simcheck
from simcheck._util.io import library_versions, source_revision, write_text
from simcheck.checking.chain import ChainTerms
from simcheck.checking.interventions import Runner
from simcheck.model.chunked import parse_attention
from simcheck.storage.subjects import resolve

EPS, DELTA = 0.1, 0.05
MEASURE_SAMPLES = 1000
MEASURE_SEED = 4242
RESULTS = Path(__file__).resolve().parent / "results"
STEM = "diagnosis_validation"
POSITIONS = "positions_beyond_training"
DILUTION = "attention_dilution"
PRECISION = "small_logit_margin"
RESOLUTION = "witness_resolution"


@dataclass(frozen=True)
class Config:
    """One configuration of the grid (see the module docstring)."""

    key: str
    part: str
    mechanism: str
    planted: str | None
    task: str
    train_len: int
    model: dict[str, Any] = field(default_factory=dict)
    steps: int = 2000
    sink: tuple[int, float] | None = None  # (vocabulary, gamma) of a hand-built model
    attention: str = "softmax"
    scored: bool = True

    @property
    def up_to(self) -> int:
        return 16 * self.train_len


LEARNED = {"pos": "learned", "n_ctx": 2048}
CONFIGS = (
    Config("D1", "dev", "positions", POSITIONS, "modp:p=3", 32, LEARNED, 3000),
    Config("D2", "dev", "dilution", DILUTION, "needle:V=4", 32, {"pos": "none"}),
    Config("D3", "dev", "precision", PRECISION, "majority:V=2", 32, sink=(2, 0.5),
           attention="hardmax:4"),
    Config("D4", "dev", "local, no bias", POSITIONS, "lag:V=4,tau=1", 32, LEARNED),
    Config("D5", "dev", "local, bias", None, "lag:V=4,tau=1", 32, {"pos": "periodic"}),
    Config("D6", "dev", "resolution", RESOLUTION, "modp:p=3", 6, {"pos": "periodic"}),
    Config("D7", "dev", "generalizes", None, "majority:V=2", 16, {"pos": "none"}),
    Config("E1", "dev", "positions, relational", POSITIONS, "kgram:S=3,k=2", 32,
           {**LEARNED, "n_layers": 2}, 3000, scored=False),
    Config("H1", "holdout", "positions", POSITIONS, "residue_majority:p=3", 32, LEARNED, 3000),
    Config("H2", "holdout", "dilution", DILUTION, "first:V=2", 32,
           {"pos": "none", "n_layers": 2}, 3000),
    Config("H3", "holdout", "precision", PRECISION, "majority:V=3", 32, sink=(3, 0.6),
           attention="hardmax:5"),
    Config("H4", "holdout", "local, no bias", POSITIONS, "lag:V=8,tau=2", 32, LEARNED),
    Config("H5", "holdout", "local, bias", None, "lag:V=8,tau=2", 32, {"pos": "periodic"}),
    Config("H6", "holdout", "resolution", RESOLUTION, "simple:omega=3", 8, {"pos": "none"}),
    Config("H7", "holdout", "generalizes", None, "modp:p=3", 32, {"pos": "periodic"}, 3000),
)  # fmt: skip
SEEDS = (0, 1, 2)
NOTES = [
    "Notes, written after reading the results (they explain; they change no criterion):",
    "",
    "- **The held-out dilution configuration (H2) did not fail within its range.** The NoPE "
    "first-token models were learned at N = 32 and certified at 64 to 512; measured, seeds 1 "
    "and 2 never fail up to 2048 and seed 0 first fails at 1024, beyond U = 512. So the "
    "held-out part has no failing dilution model: its cause and repair targets rest on the "
    "positional (H1, H4) and finite-precision (H3) models, and the dilution mechanism is "
    "validated on the development part only (D2: confirmed in 3 of 3, forecasts 359, 200 and "
    "103 against measured failures at 512, 256 and 128). H2 counts for the range target (it "
    "agrees: no failure up to 512) and, for seeds 1 and 2, for no false confirmation.",
    "- **H1 (residue majority, learned positions)**: at T = 64 the check is undecided for "
    "seeds 0 and 2 (the measured failure is at 64), and the range goes on to 128, where it is "
    "not-simulatable and the positional cause is confirmed: one doubling, within the target.",
    "- **E1 (exploratory)**: the two-layer k-gram model with learned positions fails at 64, "
    "and neither way of remapping the position table repairs it (10-19% of the long error): "
    "its layer-0 head reads each query's previous position, at every query, and no single "
    "remapping of a 32-row table keeps that offset for 64 or more positions. The interchange "
    "table points at the second layer's head instead (L1 head 0's output or attention "
    "patched from the witness removes about half). A positional cause that no table remapping "
    "can repair stays *also observed, not confirmed*: the tool says what it could test.",
    "",
]


# ---------------------------------------------------------------------- models


def sink_model(vocab: int, gamma: float, scale: float = 4.0) -> tuple[Any, simcheck.ModelAdapter]:
    """Majority(V) by one attention head over a BOS sink, built by hand (NoPE, one layer,
    attention only, no normalisation; BOS = token V, put in front by the adapter).

    The head gives the BOS key a logit ``gamma`` above every task token's, whose values are
    one-hot token indicators (BOS's is 0); the unembedding reads them, so the output is the
    attention-weighted token histogram and its argmax the majority. In p-bit attention a
    task key weighs n^-gamma against the sink and rounds to 0 once n > 2^(p/gamma): beyond
    that length the output is 0 and the decision falls to class 0."""
    d_model = 2 + 2 * vocab  # [BOS, constant, one-hot token, read-out]
    model = simcheck.build_model(
        simcheck.get_task(f"majority:V={vocab}"),
        pos="none",
        n_layers=1,
        n_heads=1,
        d_model=d_model,
        d_mlp=0,
        normalization="none",
        d_vocab=vocab + 1,
    )
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
        model.embed.W_E[vocab, 0] = 1.0
        attn = model.blocks[0].attn
        attn.W_Q[0, 1, 0] = gamma * float(model.cfg.d_head) ** 0.5
        attn.W_K[0, 0, 0] = 1.0
        for token in range(vocab):
            model.embed.W_E[token, 1] = 1.0
            model.embed.W_E[token, 2 + token] = 1.0
            attn.W_V[0, 2 + token, 1 + token] = 1.0
            attn.W_O[0, 1 + token, 2 + vocab + token] = 1.0
            model.unembed.W_U[2 + vocab + token, token] = scale
    return model, simcheck.ModelAdapter(prefix=(vocab,))


def model_of(config: Config, seed: int, root: Path) -> tuple[Any, dict[str, Any], float | None]:
    """The model to check (a run, or a hand-built model), what `check` needs beside it, and
    the training time (None when reused or built by hand)."""
    if config.sink is not None:
        model, adapter = sink_model(*config.sink)
        return model, {"task": config.task, "train_len": config.train_len, "adapter": adapter}, None
    out = root / "runs" / f"{config.key}-s{seed}"
    try:
        run = simcheck.load_run(out)
        if run.finished:
            return run, {}, None
    except simcheck.SimcheckError:
        pass
    started = time.perf_counter()
    simcheck.train(
        config.task, out, train_len=config.train_len, steps=config.steps, seed=seed,
        data_seed=seed, overwrite=True, progress=False, **config.model,
    )  # fmt: skip
    return simcheck.load_run(out), {}, time.perf_counter() - started


# ---------------------------------------------------------------------- one model


def measure(subject: Any, attention: str, lengths: list[int], seed: int) -> dict[int, float]:
    """The share of erring inputs at each length (the pre-registered criterion)."""
    task = subject.task
    runner = Runner(subject, parse_attention(attention))
    gaps = ChainTerms.for_task(task, "decision")
    shares = {}
    for length in lengths:
        rng = np.random.default_rng([MEASURE_SEED + seed, length])
        tokens = np.asarray(task.sample(MEASURE_SAMPLES, length, rng))
        targets = task.oracle(torch.as_tensor(tokens))
        valid = task.valid(targets).numpy()
        tokens, targets = tokens[valid], targets[valid]
        targets = targets.long() if task.output == "classes" else targets.float()
        error = gaps.error(targets, runner.predictions(tokens))
        shares[length] = float((error > EPS).mean())
    return shares


def summarise_report(report: Any) -> dict[str, Any]:
    """What the targets read of a range check."""
    span = report.length_range()
    first = span.first_failure
    causes, planted_repairs = [], {}
    confirmed_anywhere = []
    for r in report.results:
        if r.diagnosis is not None:
            confirmed_anywhere += [c.kind for c in r.diagnosis.causes if c.confirmed]
    at = None
    if first is not None:
        at = report.result(first)
    elif span.first_uncertified is not None:
        at = report.result(span.first_uncertified)
    if at is not None and at.diagnosis is not None:
        causes = [
            {
                "kind": c.kind,
                "confirmed": c.confirmed,
                "removed": None if c.repair is None or c.repair.error is None
                else c.repair.error.removed,
                "target": None if c.repair is None else c.repair.target,
            }
            for c in at.diagnosis.causes
        ]  # fmt: skip
        for repair in at.repairs:
            if repair.error is not None and math.isfinite(repair.error.removed):
                best = planted_repairs.get(repair.cause, -math.inf)
                planted_repairs[repair.cause] = max(best, repair.error.removed)
    forecast = span.forecast
    return {
        "lengths": list(span.lengths),
        "outcomes": list(span.outcomes),
        "longest_certified": span.longest_certified,
        "first_uncertified": span.first_uncertified,
        "first_failure": first,
        "diagnosed_at": None if at is None else at.length,
        "causes": causes,
        "best_repair": planted_repairs,
        "confirmed_anywhere": confirmed_anywhere,
        "forecast": None if forecast is None else forecast.length,
        "forecast_basis": None if forecast is None else forecast.basis,
        "patching_top": None
        if at is None or not at.patching
        else max(at.patching, key=lambda p: -math.inf if math.isnan(p.error.removed)
                 else p.error.removed).site,
    }  # fmt: skip


def run_model(config: Config, seed: int, root: Path) -> dict[str, Any]:
    """Build or train, measure, check; cached as JSON."""
    torch.set_num_threads(1)
    cache = root / "results" / f"{config.key}-s{seed}.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    model, extra, train_s = model_of(config, seed, root)
    subject = resolve(model, extra.get("task"), extra.get("train_len"), extra.get("adapter"))
    n, up_to = config.train_len, config.up_to
    lengths = [n] + [n * 2**k for k in range(1, 20) if n * 2**k <= 4 * up_to]
    began = time.perf_counter()
    shares = measure(subject, config.attention, lengths, seed)
    measure_s = time.perf_counter() - began
    began = time.perf_counter()
    report = simcheck.check(
        model, up_to=up_to, seed=seed, attention=config.attention, **extra
    )  # fmt: skip
    check_s = time.perf_counter() - began
    result = {
        **asdict(config),
        "seed": seed,
        "train_s": train_s,
        "measure_s": measure_s,
        "check_s": check_s,
        "measured": {str(k): v for k, v in shares.items()},
        **summarise_report(report),
    }
    cache.parent.mkdir(parents=True, exist_ok=True)
    write_text(cache, json.dumps(result, indent=1, default=float))
    return result


def _job(args: tuple[Config, int, Path]) -> dict[str, Any]:
    return run_model(*args)


# ---------------------------------------------------------------------- judging


def judge(r: dict[str, Any]) -> dict[str, Any]:
    """The pre-registered labels and target outcomes of one model."""
    n, up_to = r["train_len"], 16 * r["train_len"]
    measured = {int(k): v for k, v in r["measured"].items()}
    learned = measured[n] <= DELTA
    m = next((t for t in sorted(measured) if t > n and measured[t] > DELTA), None)
    failing = learned and m is not None and m <= up_to
    generalizing = learned and m is None
    confirmed = [c for c in r["causes"] if c["confirmed"]]
    top = confirmed[0]["kind"] if confirmed else None
    planted = r["planted"]
    cause_ok = repair_ok = None
    if failing and planted and planted != RESOLUTION:
        cause_ok = top == planted
        repair_ok = r["best_repair"].get(planted, -math.inf) >= 0.5
    c = r["first_failure"]
    range_ok = None
    if learned:
        cap = 2 * up_to
        mm, cc = min(m or cap, cap), min(c or cap, cap)
        range_ok = max(mm, cc) <= 2 * min(mm, cc)
    forecast_ok = None
    if r["forecast"] is not None:
        f = r["forecast"]
        forecast_ok = (m / 2 <= f <= 2 * m) if m is not None else f >= 2 * up_to
    resolution_ok = None
    if planted == RESOLUTION and learned:
        kinds = [cause["kind"] for cause in r["causes"]]
        resolution_ok = RESOLUTION in kinds and not confirmed
    return {
        "learned": learned,
        "m": m,
        "failing": failing,
        "generalizing": generalizing,
        "top_confirmed": top,
        "cause_ok": cause_ok,
        "repair_ok": repair_ok,
        "no_false_ok": (not r["confirmed_anywhere"]) if generalizing else None,
        "range_ok": range_ok,
        "forecast_ok": forecast_ok,
        "resolution_ok": resolution_ok,
    }


TARGETS = (
    ("cause_ok", "cause: the first confirmed cause is the planted one", 0.9),
    ("repair_ok", "repair: the planted cause's repair removes >= 50%", 0.9),
    ("no_false_ok", "no cause confirmed on generalizing models", 1.0),
    ("range_ok", "range: first failure within one doubling of the measured one", 0.9),
    ("forecast_ok", "forecast within a factor 2 (where made)", 0.9),
    ("resolution_ok", "resolution named, nothing confirmed", 0.9),
)


def table(results: list[dict[str, Any]]) -> pd.DataFrame:
    rows = []
    for r in results:
        j = judge(r)
        measured = {int(k): v for k, v in r["measured"].items()}
        rows.append(
            {
                "part": r["part"],
                "key": r["key"],
                "mechanism": r["mechanism"],
                "task": r["task"],
                "seed": r["seed"],
                "scored": r["scored"],
                "planted": r["planted"] or "-",
                "err@N": measured[r["train_len"]],
                "measured failure": j["m"],
                "range": ", ".join(
                    f"{t}:{o}" for t, o in zip(r["lengths"], r["outcomes"], strict=True)
                ),
                "first failure": r["first_failure"],
                "top confirmed": j["top_confirmed"] or "-",
                "planted repair": r["best_repair"].get(r["planted"]) if r["planted"] else None,
                "top patch": r["patching_top"],
                "forecast": r["forecast"],
                **{key: j[key] for key, _, _ in TARGETS},
                "train s": r["train_s"],
                "check s": r["check_s"],
            }
        )
    return pd.DataFrame(rows)


def fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def target_lines(frame: pd.DataFrame, part: str) -> list[str]:
    sub = frame[(frame.part == part) & frame.scored]
    if sub.empty:
        return [f"- {part}: not run yet"]
    lines = [f"- **{part}** ({len(sub)} scored models):"]
    for key, label, goal in TARGETS:
        judged = sub[key].dropna()
        hits = int(judged.sum())
        share = hits / len(judged) if len(judged) else math.nan
        verdict = (
            "met"
            if len(judged) and share >= goal
            else ("no cases" if not len(judged) else "NOT met")
        )
        lines.append(
            f"  - {label}: {hits}/{len(judged)} ({fmt(share)}; target >= {goal:.0%}): {verdict}"
        )
    return lines


def disagreement_lines(frame: pd.DataFrame, results: list[dict[str, Any]]) -> list[str]:
    by_name = {(r["key"], r["seed"]): r for r in results}
    lines = []
    for row in frame.itertuples():
        misses = [label for key, label, _ in TARGETS if getattr(row, key) is False]
        if not misses:
            continue
        r = by_name[(row.key, row.seed)]
        causes = (
            "; ".join(
                f"{c['kind']} ({'confirmed' if c['confirmed'] else 'not confirmed'}, removed "
                f"{fmt(c['removed'])})"
                for c in r["causes"]
            )
            or "none"
        )
        measured = ", ".join(f"{k}: {fmt(v)}" for k, v in r["measured"].items())
        kind = "" if row.scored else ", exploratory"
        lines.append(
            f"- **{row.key} seed {row.seed}** ({row.mechanism}, {row.task}{kind}): "
            f"missed {'; '.join(misses)}. Measured share erring by T: {measured}. Range: "
            f"{row.range}. Causes at T = {r['diagnosed_at']}: {causes}. Best repair per cause: "
            f"{ {k: fmt(v) for k, v in r['best_repair'].items()} }. Forecast: "
            f"{fmt(r['forecast'])}."
        )
    return lines or ["- none"]


def write_report(root: Path, command: str) -> None:
    results = [json.loads(p.read_text()) for p in sorted((root / "results").glob("*.json"))]
    if not results:
        raise SystemExit(f"no results under {root / 'results'}: run a part first")
    frame = table(results)
    frame.to_csv(RESULTS / f"{STEM}.csv", index=False)
    shown = [c for c in frame.columns if c not in ("part", "scored")]
    lines = [
        "# Diagnosis validation: planted failure mechanisms, interventions and range checks",
        "",
        "Pre-registered in `examples/diagnosis_validation.py` (its docstring) before any model "
        "of these grids was trained. E1 is exploratory (reported, not scored).",
        "",
        "## Targets",
        "",
        *target_lines(frame, "dev"),
        *target_lines(frame, "holdout"),
        "",
        "## Every model",
        "",
    ]
    for part in ("dev", "holdout"):
        sub = frame[frame.part == part]
        if sub.empty:
            continue
        lines += [f"### {part}", "", "| " + " | ".join(shown) + " |",
                  "|" + "---|" * len(shown)]  # fmt: skip
        for row in sub.itertuples(index=False):
            values = dict(zip(frame.columns, row, strict=True))
            lines.append("| " + " | ".join(fmt(values[c]) for c in shown) + " |")
        lines.append("")
    lines += ["## Disagreements", "", *disagreement_lines(frame, results), "", *NOTES]
    lines += ["## Runs", ""]
    for part in ("dev", "holdout"):
        record = root / f"command-{part}.txt"
        if record.is_file():
            lines.append(f"- {part}: {record.read_text().strip()}")
    lines += [
        "",
        f"Tables written by `{command}`; "
        + ", ".join(f"{k} {v}" for k, v in library_versions().items())
        + f"; {sum(r['check_s'] for r in results):.0f} s of checks and "
        f"{sum(r['train_s'] or 0 for r in results):.0f} s of training in all (one thread "
        "per model).",
        "",
    ]
    write_text(RESULTS / f"{STEM}.md", "\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=("dev", "holdout"))
    parser.add_argument("--report", action="store_true", help="only rewrite the tables")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("runs/diagnosis_validation"))
    args = parser.parse_args()
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    if args.part:
        args.out.mkdir(parents=True, exist_ok=True)
        write_text(
            args.out / f"command-{args.part}.txt",
            f"`{command}` at source {source_revision()}",
        )
        jobs = [(c, s, args.out) for c in CONFIGS if c.part == args.part for s in SEEDS]
        context = multiprocessing.get_context("spawn")
        with context.Pool(args.workers) as pool:
            for done in pool.imap_unordered(_job, jobs):
                print(f"{done['key']} seed {done['seed']}: range {done['outcomes']}", flush=True)
    write_report(args.out, command)


if __name__ == "__main__":
    main()
