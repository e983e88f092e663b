"""`check`: is a model's behaviour on long inputs simulated by its behaviour on short ones?

For each test length T the checker samples M long inputs x from the task (or hill-climbs
to bad ones, ``worst_case``), builds short witnesses z (|z| <= N) for each, and evaluates
task and model on both:

    |f(x) - g(x)|  <=  |f(x) - f(z)|  +  |f(z) - g(z)|  +  |g(z) - g(x)|
      long error        task gap         short error      model gap

One z must serve task and model at once (the paper's chain), so an input's simulation
error is the minimum over its witnesses of max(task gap, model gap), and eps* is the
smallest eps that a 1 - delta fraction of inputs reach. The task's own floor takes the
constructed witnesses (not the model-guided search) best for the task gap alone: it depends
on the task, N and the inputs only, and no model beats it with these constructions. Probe
states of x and of its chosen witness are compared, normalised by each probe's spread over
inputs of length <= N; long states are also placed among short ones without witnesses
(coverage).
"""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from simcheck.attention import AttentionMode, attention_name, parse_attention
from simcheck.diagnosis import attention_summary, diagnose
from simcheck.errors import SimcheckError
from simcheck.models import check_input_length
from simcheck.probes import Output, Probe, default_probes
from simcheck.recording import record
from simcheck.report import CheckReport, LengthResult, ProbeStat, WorstCase
from simcheck.runs import Run, library_versions, load_run, task_record, weights_hash
from simcheck.simstats import coverage, discrepancy, head_vectors, simulation_error, spread
from simcheck.tasks import Task, get_task
from simcheck.witnesses import (
    WITNESS_METHODS,
    Structure,
    Witness,
    blocks_witnesses,
    local_search_many,
    types_witnesses,
    user_witnesses,
)

WitnessSpec = str | Callable[..., Any]
SEARCH_PROBE_WEIGHT = 1e-3
"""Weight of the mean probe discrepancy next to the joint error in the search objective:
a tie-breaker that keeps the search on strings whose states resemble x's."""


@dataclass
class _Outcome:
    """Task and model on a list of sequences: f, g [K, ...] and comparable states."""

    f: torch.Tensor
    g: torch.Tensor
    states: dict[str, torch.Tensor]


@dataclass
class _Simulation:
    """Everything about M long inputs and their best witnesses at one length."""

    tokens: np.ndarray
    f_x: torch.Tensor
    g_x: torch.Tensor
    states_x: dict[str, torch.Tensor]
    witnesses: list[list[Witness]]
    best: list[int]
    joint: np.ndarray
    task_gap: np.ndarray
    model_gap: np.ndarray
    short_error: np.ndarray
    floor_gap: np.ndarray
    by_method: dict[str, np.ndarray]
    best_states: dict[str, torch.Tensor]
    f_z: torch.Tensor
    g_z: torch.Tensor
    matched: dict[str, np.ndarray]


def witness_structure(model: Any, task: Task) -> Structure:
    """Delta and tau for witnesses: the model's period (periodic positions) and the task's,
    combined by lcm; the wider of the model's local bias and the task's window."""
    spec = getattr(model, "simcheck_spec", None)
    model_period = spec.period if spec is not None and spec.pos == "periodic" else 1
    model_window = spec.locality if spec is not None and spec.locality is not None else 0
    period = math.lcm(model_period or 1, task.period or 1)
    window = max(model_window, task.locality or 0)
    return Structure(period, window, max(1, task.min_length), task.vocab_size)


def _resolve(subject: Any, task: Task | str | None, train_len: int | None) -> tuple:
    """(model, task, N, source description) from a run, a run directory or a model."""
    if isinstance(subject, str | bytes) or hasattr(subject, "__fspath__"):
        subject = load_run(subject, task=get_task(task) if isinstance(task, str) else task)
    if isinstance(subject, Run):
        run_task = (
            subject.task if task is None else (get_task(task) if isinstance(task, str) else task)
        )
        return subject.model, run_task, train_len or subject.train_len, str(subject.path)
    if task is None or train_len is None:
        raise SimcheckError(
            "checking a bare model needs task= and train_len= (the task it was trained on and "
            "its training length N); or pass a run directory"
        )
    return subject, get_task(task) if isinstance(task, str) else task, train_len, "model"


def _check_fit(model: Any, task: Task) -> None:
    if task.vocab_size > model.cfg.d_vocab or task.output_size != model.cfg.d_vocab_out:
        raise SimcheckError(
            f"task '{task.spec()}' (vocabulary {task.vocab_size}, output {task.output_size}) does "
            f"not fit the model (d_vocab {model.cfg.d_vocab}, d_vocab_out "
            f"{model.cfg.d_vocab_out}); pass the task the model was trained on"
        )


def _method_name(method: WitnessSpec) -> str:
    return method if isinstance(method, str) else getattr(method, "__name__", "user")


class _Checker:
    """Holds the model, task and settings of one `check` call."""

    def __init__(
        self,
        model: Any,
        task: Task,
        train_len: int,
        probes: list[Probe],
        mode: AttentionMode,
        methods: list[WitnessSpec],
        blocks_candidates: int,
        search_rounds: int,
        search_proposals: int,
        seed: int,
    ) -> None:
        self.model, self.task, self.train_len, self.seed = model, task, train_len, seed
        self.probes, self.mode, self.methods = probes, mode, methods
        self.recorded = [p for p in probes if p.comparable]
        self.compared = [p for p in self.recorded if not p.diagnostic]
        self.structure = witness_structure(model, task)
        self.blocks_candidates = blocks_candidates
        self.search_rounds, self.search_proposals = search_rounds, search_proposals
        self.spreads: dict[str, torch.Tensor] = {}

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, sequences: Sequence[np.ndarray]) -> _Outcome:
        """f, g and probe states (at the last position) for sequences of any lengths."""
        groups: dict[int, list[int]] = defaultdict(list)
        for index, sequence in enumerate(sequences):
            groups[len(sequence)].append(index)
        parts: list[tuple[list[int], torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]] = []
        for length in sorted(groups):
            rows = groups[length]
            tokens = torch.as_tensor(np.stack([sequences[i] for i in rows]), dtype=torch.long)
            recording = record(self.model, tokens, self.probes, attention=self.mode)
            f = self.task.oracle(tokens).float()
            g = self.task.prediction(recording["output"][:, 0]).float()
            states = {p.name: recording[p.name][:, 0] for p in self.recorded}
            parts.append((rows, f, g, states))
        order = torch.as_tensor([i for rows, *_ in parts for i in rows])
        inverse = torch.empty_like(order)
        inverse[order] = torch.arange(len(order))
        f = torch.cat([part[1] for part in parts])[inverse]
        g = torch.cat([part[2] for part in parts])[inverse]
        states = {
            name: torch.cat([part[3][name] for part in parts])[inverse] for name in parts[0][3]
        }
        return _Outcome(f, g, states)

    def probe_discrepancy(
        self, states_x: dict[str, torch.Tensor], states_z: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """Normalised discrepancy per probe, [inputs, groups] (groups = heads or 1)."""
        result = {}
        for probe in self.compared:
            long = head_vectors(states_x[probe.name], probe.per_head)
            short = head_vectors(states_z[probe.name], probe.per_head)
            result[probe.name] = discrepancy(long, short, self.spreads[probe.name])
        return result

    # ------------------------------------------------------------------ witnesses
    def candidates(self, x: np.ndarray) -> list[Witness]:
        """The constructed witnesses of ``x``. Randomised constructions draw from a generator
        seeded by the check's seed and x's bytes, so an input always gets the same
        witnesses: re-checking an input (as the worst-case climb does) gives the same error."""
        digest = hashlib.sha256(np.ascontiguousarray(x, dtype=np.int64).tobytes()).digest()
        rng = np.random.default_rng([self.seed, int.from_bytes(digest[:8], "little")])
        out: list[Witness] = []
        for method in self.methods:
            if method == "types":
                out += types_witnesses(x, self.train_len, self.structure)
            elif method == "blocks":
                out += blocks_witnesses(
                    x, self.train_len, self.structure, candidates=self.blocks_candidates, rng=rng
                )
            elif callable(method):
                out += user_witnesses(method, x, self.train_len, self.structure)
        return out

    # ------------------------------------------------------------------ the core
    def simulate(
        self, tokens: np.ndarray, rng: np.random.Generator, search: bool = True
    ) -> _Simulation:
        """Witnesses, gaps and states for long inputs ``tokens`` [M, T] (``search``: run the
        local search if it is among the methods)."""
        long = self.evaluate(list(tokens))
        witnesses = [self.candidates(x) for x in tokens]
        if not all(witnesses):
            raise SimcheckError(
                "the witness methods produced no candidate for some long input; add 'types', "
                "which always produces one"
            )
        owner = np.array([i for i, ws in enumerate(witnesses) for _ in ws])
        flat = [w.tokens for ws in witnesses for w in ws]
        short = self.evaluate(flat)
        task_gap = self.task.distance(long.f[owner], short.f).numpy()
        model_gap = self.task.distance(long.g[owner], short.g).numpy()
        joint = np.maximum(task_gap, model_gap)
        methods = np.array([w.method for ws in witnesses for w in ws])
        starts = np.cumsum([0] + [len(ws) for ws in witnesses])
        spans = list(pairwise(starts))
        best = [int(np.argmin(joint[a:b])) for a, b in spans]
        floor = np.array([task_gap[a:b].min() for a, b in spans])
        task_best = starts[:-1] + np.array([int(np.argmin(task_gap[a:b])) for a, b in spans])
        short_error = self.task.distance(short.f, short.g).numpy()
        by_method = {
            name: np.array([joint[a:b][methods[a:b] == name].min(initial=np.inf) for a, b in spans])
            for name in dict.fromkeys(str(m) for m in methods)
        }
        picked = starts[:-1] + np.array(best)
        states_z = {name: value[picked] for name, value in short.states.items()}
        sim = _Simulation(
            tokens=tokens,
            f_x=long.f,
            g_x=long.g,
            states_x=long.states,
            witnesses=witnesses,
            best=best,
            joint=joint[picked],
            task_gap=task_gap[picked],
            model_gap=model_gap[picked],
            short_error=short_error[picked],
            floor_gap=floor,
            by_method=by_method,
            best_states=states_z,
            f_z=short.f[picked],
            g_z=short.g[picked],
            matched={
                "task_gap": task_gap[task_best],
                "short_error": short_error[task_best],
                "model_gap": model_gap[task_best],
            },
        )
        if search and "search" in self.methods:
            self.search(sim, rng)
        return sim

    def search(self, sim: _Simulation, rng: np.random.Generator) -> None:
        """Improve each input's witness by local search on joint error + probe discrepancy,
        and adopt the result where it lowers the joint error."""

        def objective(pairs: list[tuple[int, np.ndarray]]) -> np.ndarray:
            owner = np.array([i for i, _ in pairs])
            out = self.evaluate([z for _, z in pairs])
            task_gap = self.task.distance(sim.f_x[owner], out.f).numpy()
            model_gap = self.task.distance(sim.g_x[owner], out.g).numpy()
            states_x = {name: value[owner] for name, value in sim.states_x.items()}
            disc = self.probe_discrepancy(states_x, out.states)
            mean_disc = torch.stack([d.nanmean(-1) for d in disc.values()]).nanmean(0)
            mean_disc = torch.nan_to_num(mean_disc, nan=0.0).numpy()
            return np.maximum(task_gap, model_gap) + SEARCH_PROBE_WEIGHT * mean_disc

        starts = [sim.witnesses[i][sim.best[i]].tokens for i in range(len(sim.best))]
        found = local_search_many(
            starts,
            objective,
            self.train_len,
            self.structure,
            rng,
            rounds=self.search_rounds,
            proposals=self.search_proposals,
        )
        out = self.evaluate([w.tokens for w in found])
        task_gap = self.task.distance(sim.f_x, out.f).numpy()
        model_gap = self.task.distance(sim.g_x, out.g).numpy()
        joint = np.maximum(task_gap, model_gap)
        sim.by_method["search"] = np.minimum(joint, sim.joint)
        for i, witness in enumerate(found):
            sim.witnesses[i].append(witness)
            if joint[i] < sim.joint[i]:
                sim.best[i] = len(sim.witnesses[i]) - 1
                sim.joint[i], sim.task_gap[i], sim.model_gap[i] = (
                    joint[i],
                    task_gap[i],
                    model_gap[i],
                )
                sim.short_error[i] = float(self.task.distance(out.f[i : i + 1], out.g[i : i + 1]))
                sim.f_z[i], sim.g_z[i] = out.f[i], out.g[i]
                for name in sim.best_states:
                    sim.best_states[name][i] = out.states[name][i]

    def worst_inputs(
        self, tokens: np.ndarray, rng: np.random.Generator, rounds: int
    ) -> tuple[np.ndarray, list[float]]:
        """Hill-climb each long input towards a larger simulation error: each round replaces
        a random eighth of every input with fresh task tokens and keeps the change where the
        error (min over witnesses of max(task gap, model gap)) grows."""
        tokens = tokens.copy()
        count, length = tokens.shape
        segment = max(1, length // 8)
        error = self.simulate(tokens, rng, search=False).joint
        trace = [float(error.mean())]
        for _ in range(rounds):
            proposal = tokens.copy()
            fresh = np.asarray(self.task.sample(count, length, rng))
            for row, start in enumerate(rng.integers(0, length - segment + 1, size=count)):
                proposal[row, start : start + segment] = fresh[row, start : start + segment]
            candidate = self.simulate(proposal, rng, search=False).joint
            better = candidate > error
            tokens[better], error[better] = proposal[better], candidate[better]
            trace.append(float(error.mean()))
        return tokens, trace

    # ------------------------------------------------------------------ reference
    def reference(self, samples: int, rng: np.random.Generator) -> dict[str, Any]:
        """Record inputs of lengths <= N: spreads, short states for coverage, and attention
        summaries at length N."""
        low = max(self.structure.min_length, self.structure.window + 1, 1)
        if low > self.train_len:
            raise SimcheckError(
                f"training length {self.train_len} is below the shortest input the task and "
                f"model need ({low}); pass the model's real training length"
            )
        lengths = rng.integers(low, self.train_len + 1, size=samples)
        sequences = []
        for length, count in sorted(zip(*np.unique(lengths, return_counts=True), strict=True)):
            sequences += list(np.asarray(self.task.sample(int(count), int(length), rng)))
        short = self.evaluate(sequences)
        for probe in self.compared:
            self.spreads[probe.name] = spread(
                head_vectors(short.states[probe.name], probe.per_head)
            )
        at_n = np.asarray(self.task.sample(min(samples, 64), self.train_len, rng))
        at_n_outcome = self.evaluate(list(at_n))
        return {
            "states": short.states,
            "lengths": lengths,
            "attention_at_n": attention_summary(self.recorded, at_n_outcome.states),
            "short_error": self.task.distance(short.f, short.g).numpy(),
        }


def check(
    subject: Any,
    task: Task | str | None = None,
    train_len: int | None = None,
    test_lengths: Sequence[int] = (1024,),
    eps: float = 0.1,
    delta: float = 0.05,
    samples: int = 100,
    witnesses: Sequence[WitnessSpec] = ("types", "blocks", "search"),
    seed: int = 0,
    worst_case: int = 0,
    attention: AttentionMode = "softmax",
    probes: Sequence[Probe] | None = None,
    reference_samples: int = 256,
    blocks_candidates: int = 16,
    search_rounds: int = 10,
    search_proposals: int = 16,
    diverge_at: float = 0.5,
    progress: bool = False,
) -> CheckReport:
    """Check whether ``subject`` (a `Run`, a run directory, or a model with ``task`` and
    ``train_len``) is simulatable at each test length with error ``eps`` and confidence
    ``delta``; see the module docstring for the method.

    Args:
        witnesses: ``"types"``, ``"blocks"``, ``"search"`` and/or functions
            ``fn(x, max_length, structure) -> list of token arrays``.
        worst_case: rounds of hill climbing over long inputs (0: sampled inputs only).
        attention: ``"softmax"`` or ``"hardmax[:bits]"`` (finite precision).
        probes: states to compare (default `simcheck.probes.default_probes`).
        diverge_at: a probe diverges when its median normalised discrepancy exceeds this.
    """
    model, task, train_len, source = _resolve(subject, task, train_len)
    _check_fit(model, task)
    lengths = [int(t) for t in test_lengths]
    _validate(eps, delta, samples, lengths, witnesses, reference_samples, worst_case)
    for length in lengths:
        check_input_length(model, length)
    mode = parse_attention(attention)
    structure = witness_structure(model, task)
    chosen = list(probes) if probes else default_probes(model, structure.period, structure.window)
    if not any(isinstance(p, Output) for p in chosen):
        chosen.append(Output())
    checker = _Checker(
        model, task, train_len, chosen, mode, list(witnesses),
        blocks_candidates, search_rounds, search_proposals, seed,
    )  # fmt: skip
    reference = checker.reference(reference_samples, np.random.default_rng([seed, 0]))
    results = []
    for length in tqdm(lengths, desc="check", disable=not progress):
        rng = np.random.default_rng([seed, length])
        tokens = np.asarray(task.sample(samples, length, rng))
        trace: list[float] = []
        if worst_case:
            tokens, trace = checker.worst_inputs(tokens, rng, worst_case)
        sim = checker.simulate(tokens, rng)
        results.append(_summarise(checker, sim, reference, length, eps, delta, diverge_at, trace))
    config = {
        "source": source,
        "model": {
            "weights_sha256": weights_hash(model),
            "spec": model.simcheck_spec.to_dict() if hasattr(model, "simcheck_spec") else None,
        },
        "task": task_record(task),
        "train_len": train_len,
        "test_lengths": lengths,
        "eps": eps,
        "delta": delta,
        "samples": samples,
        "seed": seed,
        "witnesses": [_method_name(m) for m in witnesses],
        "structure": {"period": structure.period, "window": structure.window},
        "blocks_candidates": blocks_candidates,
        "search": {"rounds": search_rounds, "proposals": search_proposals},
        "worst_case_rounds": worst_case,
        "attention": attention_name(mode),
        "reference": {
            "samples": reference_samples,
            "lengths": [int(reference["lengths"].min()), int(reference["lengths"].max())],
            "mean_short_error": float(reference["short_error"].mean()),
        },
        "diverge_at": diverge_at,
        "probes": [p.name for p in chosen],
        "versions": library_versions(),
    }
    return CheckReport(config, results)


def _validate(
    eps: float,
    delta: float,
    samples: int,
    lengths: list[int],
    witnesses: Sequence[WitnessSpec],
    reference_samples: int,
    worst_case: int,
) -> None:
    if not eps > 0:
        raise SimcheckError(f"eps must be positive, got {eps}")
    if not 0 <= delta < 1:
        raise SimcheckError(f"delta must be in [0, 1), got {delta}")
    if samples < 1 or reference_samples < 2:
        raise SimcheckError("samples must be >= 1 and reference_samples >= 2")
    if not lengths or min(lengths) < 1:
        raise SimcheckError(f"test lengths must be positive integers, got {lengths}")
    if worst_case < 0:
        raise SimcheckError(f"worst_case is a number of rounds >= 0, got {worst_case}")
    if not witnesses:
        raise SimcheckError(f"give at least one witness method: {', '.join(WITNESS_METHODS)}")
    for method in witnesses:
        if isinstance(method, str) and method not in WITNESS_METHODS:
            raise SimcheckError(
                f"unknown witness method '{method}'; use {', '.join(WITNESS_METHODS)} or a function"
            )
    if list(witnesses) == ["search"]:
        raise SimcheckError("'search' starts from a construction: add 'types' or 'blocks'")


def _summarise(
    checker: _Checker,
    sim: _Simulation,
    reference: dict[str, Any],
    length: int,
    eps: float,
    delta: float,
    diverge_at: float,
    trace: list[float],
) -> LengthResult:
    task = checker.task
    long_error = task.distance(sim.f_x, sim.g_x).numpy()
    disc = checker.probe_discrepancy(sim.states_x, sim.best_states)
    stats = []
    for probe in checker.compared:
        values = disc[probe.name].numpy()
        for group in range(values.shape[1]):
            column = values[:, group]
            finite = column[np.isfinite(column)]
            stats.append(
                ProbeStat(
                    probe=probe.name,
                    head=group if probe.per_head else None,
                    depth=probe.depth,
                    median=float(np.median(finite)) if finite.size else math.nan,
                    mean=float(finite.mean()) if finite.size else math.nan,
                    max=float(finite.max()) if finite.size else math.nan,
                )
            )
    covered = {}
    for probe in checker.compared:
        if probe.name.startswith("resid_"):
            long = sim.states_x[probe.name].reshape(len(sim.tokens), -1)
            short = reference["states"][probe.name].reshape(len(reference["lengths"]), -1)
            covered[probe.name] = coverage(long, short)
    signed = None
    if task.output == "scalar":
        signed = np.stack(
            [
                (sim.f_x - sim.f_z).numpy(),
                (sim.f_z - sim.g_z).numpy(),
                (sim.g_z - sim.g_x).numpy(),
            ],
            axis=1,
        )
    order = np.argsort(-sim.joint, kind="stable")[:3]
    worst = [
        WorstCase(
            index=int(i),
            x=sim.tokens[i],
            z=sim.witnesses[i][sim.best[i]],
            joint=float(sim.joint[i]),
            task_gap=float(sim.task_gap[i]),
            model_gap=float(sim.model_gap[i]),
            short_error=float(sim.short_error[i]),
            long_error=float(long_error[i]),
        )
        for i in order
    ]
    eps_star = simulation_error(sim.joint, delta)
    result = LengthResult(
        length=length,
        eps_star=eps_star,
        task_floor=simulation_error(sim.floor_gap, delta),
        simulatable=eps_star <= eps,
        joint=sim.joint,
        long_error=long_error,
        task_gap=sim.task_gap,
        model_gap=sim.model_gap,
        short_error=sim.short_error,
        floor_gap=sim.floor_gap,
        signed_terms=signed,
        by_method={m: simulation_error(v, delta) for m, v in sim.by_method.items()},
        witness_lengths=np.array([sim.witnesses[i][b].length for i, b in enumerate(sim.best)]),
        witness_methods=[sim.witnesses[i][b].method for i, b in enumerate(sim.best)],
        probes=stats,
        matched_terms=sim.matched,
        coverage=covered,
        attention=attention_summary(checker.recorded, sim.states_x),
        worst=worst,
        worst_case_trace=trace,
    )
    result.diagnosis = diagnose(
        result,
        model=checker.model,
        train_len=checker.train_len,
        eps=eps,
        diverge_at=diverge_at,
        attention_at_n=reference["attention_at_n"],
        mode=checker.mode,
    )
    return result
