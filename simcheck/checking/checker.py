"""`check`: is a model's behaviour on long inputs simulated by its behaviour on short ones?

For each test length T the checker samples long inputs x from the task (or hill-climbs to
bad ones, ``worst_case``), builds short witnesses z (|z| <= N) for each, and evaluates task
and model on both:

    |f(x) - g(x)|  <=  |f(x) - f(z)|  +  |f(z) - g(z)|  +  |g(z) - g(x)|
      long error        task gap         short error      model gap

It runs in three steps:

1. **simulate** (`Simulation`, frozen): every witness's three terms. An input's *chain* is
   the least sum of the three over its witnesses: a bound on its long error that holds
   because of a short input; its *simulation error* is the least max(task gap, model gap)
   (eps* is its 1 - delta quantile), and its *floor* the least task gap (the task floor,
   which no model beats with these witnesses).
2. **summarise** (`LengthResult`): the outcome (`simcheck.checking.outcomes`) from exact binomial
   intervals on the fraction of uncovered inputs (chain > eps), of long errors > eps, and of
   errors > eps at lengths <= N. While the outcome is undecided the sample doubles, up to
   ``max_samples``, with the error level split over the looks (`simcheck.checking.confidence`).
3. **diagnose** (`simcheck.checking.diagnosis`): the dominant term, the first diverging state (probe
   states of x and of its chain witness, normalised by each probe's spread over inputs of
   length <= N) and the recognised causes.

Long inputs, reference inputs and randomised witnesses draw from streams seeded by
(seed, purpose, length, look) and by each input's bytes, distinct from `simcheck.evaluate`'s
streams, so the same seed gives the same bytes and never the evaluation's inputs.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from simcheck._util.io import library_versions, torch_threads, weights_hash
from simcheck._util.progress import progress_bar
from simcheck.checking.chain import ChainTerms
from simcheck.checking.confidence import Interval, clopper_pearson, look_alpha, look_schedule
from simcheck.checking.config import CheckConfig
from simcheck.checking.diagnosis import (
    TERMS,
    Evidence,
    MarginEvidence,
    ProbeStat,
    ShortBehaviour,
    attention_summary,
    diagnose,
)
from simcheck.checking.forecast import MAX_FACTOR, Forecast, crossing, dilution_trends
from simcheck.checking.interventions import (
    Interchange,
    Runner,
    emulated_quantiles,
    plan_repairs,
    run_repairs,
)
from simcheck.checking.outcomes import FAILS_SHORT, NOT_SIMULATABLE, UNDECIDED, decide
from simcheck.checking.results import LengthResult, WorstCase
from simcheck.checking.statistics import (
    coverage,
    discrepancy,
    head_vectors,
    simulation_error,
    spread,
)
from simcheck.checking.witnesses import (
    Structure,
    Witness,
    WitnessContext,
    local_search_many,
    user_witnesses,
    witness_method,
)
from simcheck.errors import SimcheckError
from simcheck.model.recording import record
from simcheck.model.subject import Subject
from simcheck.probes import AttentionMass, Output, Probe, Residual, default_probes
from simcheck.settings.attention import parse_attention
from simcheck.tasks import Task, task_record

SEARCH_PROBE_WEIGHT = 1e-3
"""Weight of the mean probe discrepancy next to the chain in the search objective: a
tie-breaker that keeps the search on strings whose states resemble x's."""
SEARCH_SURROGATE_WEIGHT = 0.1
"""Weight of the continuous model-gap surrogate (total variation of class probabilities)
where the chain compares decisions, whose 0/1 terms give a search no direction."""
CHECK_STREAM = 0x5EED_C4EC
"""Mixed into every seed of the check, so its inputs differ from `simcheck.evaluate`'s."""
REFERENCE_STREAM = 0
"""The reference inputs' stream key (test lengths are >= 1, so it never meets theirs)."""
RANGE_STOPS = (NOT_SIMULATABLE, FAILS_SHORT)
"""Outcomes at which a range check stops: the model fails there. Past an undecided length or
an unexplained pass it goes on, since neither says the model fails."""
FORECAST_INPUTS = 256
"""Long inputs of the longest certified length that the forecast runs longer, at most."""
INTERVENTION_STREAM = 0x1A7E
"""The stream key of the interventions' bootstrap resamples (with the test length)."""
MAX_DRAWS = 50
"""Batches drawn at most while collecting long inputs that have a class."""


@dataclass(frozen=True)
class _Outcome:
    """Task and model on a list of sequences: f, g [K, ...], comparable states and the raw
    task outputs (the logits behind g, for decision margins)."""

    f: torch.Tensor
    g: torch.Tensor
    states: dict[str, torch.Tensor]
    raw: torch.Tensor


@dataclass(frozen=True)
class Simulation:
    """Task, model and witnesses on M long inputs at one length.

    Attributes:
        tokens: the long inputs [M, T].
        f_x, g_x: task and model on them (oracle space).
        states_x: their comparable probe states.
        witnesses: each input's candidate witnesses.
        terms: each input's [candidates, 3] array of task gap, short error, model gap.
        chain_best: per input, the witness with the least chain (sum of the terms).
        f_z, g_z, states_z: task, model and states at that witness.
        raw_x: the model's raw task outputs on the long inputs (logits, for margins).
    """

    tokens: np.ndarray
    f_x: torch.Tensor
    g_x: torch.Tensor
    states_x: dict[str, torch.Tensor]
    witnesses: tuple[tuple[Witness, ...], ...]
    terms: tuple[np.ndarray, ...]
    chain_best: np.ndarray
    f_z: torch.Tensor
    g_z: torch.Tensor
    states_z: dict[str, torch.Tensor]
    raw_x: torch.Tensor

    @property
    def count(self) -> int:
        return len(self.witnesses)

    @property
    def chain(self) -> np.ndarray:
        """Per input, the least task gap + short error + model gap over its witnesses."""
        return np.array([t.sum(1).min() for t in self.terms])

    @property
    def joint(self) -> np.ndarray:
        """Per input, the least max(task gap, model gap): the simulation error."""
        return np.array([np.maximum(t[:, 0], t[:, 2]).min() for t in self.terms])

    @property
    def floor_gap(self) -> np.ndarray:
        """Per input, the least task gap over the witnesses."""
        return np.array([t[:, 0].min() for t in self.terms])

    def at_chain(self) -> np.ndarray:
        """[M, 3] terms at each input's chain witness."""
        return np.stack([t[b] for t, b in zip(self.terms, self.chain_best, strict=True)])

    def task_match_index(self) -> list[int]:
        """Per input, the index of its best task match (least task gap, then least chain)."""
        return [int(np.lexsort((t.sum(1), t[:, 0]))[0]) for t in self.terms]

    def at_task_match(self) -> np.ndarray:
        """[M, 3] terms at each input's best task match (least task gap, then least chain)."""
        best = self.task_match_index()
        return np.stack([t[b] for t, b in zip(self.terms, best, strict=True)])

    def task_matched(self) -> list[Witness]:
        """Each input's best task match: the counterfactual of the interventions."""
        best = self.task_match_index()
        return [ws[b] for ws, b in zip(self.witnesses, best, strict=True)]

    def chosen(self) -> list[Witness]:
        return [ws[b] for ws, b in zip(self.witnesses, self.chain_best, strict=True)]

    @staticmethod
    def concat(parts: Sequence[Simulation]) -> Simulation:
        """The simulations of several batches of inputs as one."""
        if len(parts) == 1:
            return parts[0]
        return Simulation(
            tokens=np.concatenate([p.tokens for p in parts]),
            f_x=torch.cat([p.f_x for p in parts]),
            g_x=torch.cat([p.g_x for p in parts]),
            states_x={k: torch.cat([p.states_x[k] for p in parts]) for k in parts[0].states_x},
            witnesses=sum((p.witnesses for p in parts), ()),
            terms=sum((p.terms for p in parts), ()),
            chain_best=np.concatenate([p.chain_best for p in parts]),
            f_z=torch.cat([p.f_z for p in parts]),
            g_z=torch.cat([p.g_z for p in parts]),
            states_z={k: torch.cat([p.states_z[k] for p in parts]) for k in parts[0].states_z},
            raw_x=torch.cat([p.raw_x for p in parts]),
        )


@dataclass(frozen=True)
class Reference:
    """Inputs of lengths <= N: their outcome, lengths and tokens (by length)."""

    outcome: _Outcome
    lengths: np.ndarray
    sequences: list[np.ndarray]
    attention_at_n: dict[int, dict[str, list[float]]]


def _subset(outcome: _Outcome, rows: list[int]) -> _Outcome:
    """The outcome of some of the sequences."""
    index = torch.as_tensor(rows, dtype=torch.long)
    return _Outcome(
        outcome.f[index],
        outcome.g[index],
        {name: value[index] for name, value in outcome.states.items()},
        outcome.raw[index],
    )


def witness_structure(subject: Subject) -> Structure:
    """Delta and tau for witnesses: the model's period (its adapter's) and the task's,
    combined by lcm; the wider of the model's local window and the task's."""
    task, adapter = subject.task, subject.adapter
    assert task is not None and adapter.period is not None and adapter.window is not None
    period = math.lcm(adapter.period, task.period or 1)
    window = max(adapter.window, task.locality or 0)
    return Structure(period, window, max(1, task.min_length), task.vocab_size)


def _stream(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng([seed, CHECK_STREAM, *keys])


class _Checker:
    """The model, task, probes and settings of one `check` call."""

    def __init__(self, subject: Subject, probes: list[Probe], config: CheckConfig) -> None:
        assert subject.task is not None and subject.train_len is not None
        self.subject, self.config = subject, config
        self.model, self.task, self.train_len = subject.model, subject.task, subject.train_len
        self.mode = parse_attention(config.attention)
        self.probes = probes
        self.recorded = [p for p in probes if p.comparable]
        self.compared = [p for p in self.recorded if not p.diagnostic]
        self.structure = witness_structure(subject)
        self.refines = any(
            isinstance(m, str) and witness_method(m).refines for m in config.witnesses
        )
        self.gaps = ChainTerms.for_task(self.task, config.class_metric)
        self.spreads: dict[str, torch.Tensor] = {}

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, sequences: Sequence[np.ndarray]) -> _Outcome:
        """f, g and probe states (at the last position) for sequences of any lengths."""
        groups: dict[int, list[int]] = defaultdict(list)
        for index, sequence in enumerate(sequences):
            groups[len(sequence)].append(index)
        parts = []
        for length in sorted(groups):
            rows = groups[length]
            tokens = torch.as_tensor(np.stack([sequences[i] for i in rows]), dtype=torch.long)
            model_input = self.subject.model_input(tokens)
            recording = record(self.model, model_input, self.probes, attention=self.mode)
            f = self.task.oracle(tokens)
            f = f.long() if self.task.output == "classes" else f.float()
            raw = recording["output"][:, 0].cpu().float()
            g = self.task.prediction(raw).float()
            states = {p.name: recording[p.name][:, 0].cpu() for p in self.recorded}
            parts.append((rows, f, g, states, raw))
        order = torch.as_tensor([i for rows, *_ in parts for i in rows])
        inverse = torch.empty_like(order)
        inverse[order] = torch.arange(len(order))
        f = torch.cat([part[1] for part in parts])[inverse]
        g = torch.cat([part[2] for part in parts])[inverse]
        states = {
            name: torch.cat([part[3][name] for part in parts])[inverse] for name in parts[0][3]
        }
        raw = torch.cat([part[4] for part in parts])[inverse]
        return _Outcome(f, g, states, raw)

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

    def sample_long(self, count: int, length: int, rng: np.random.Generator) -> np.ndarray:
        """``count`` long inputs from the task that have an answer (class tasks leave out
        inputs without a class)."""
        kept: list[np.ndarray] = []
        have = 0
        for _ in range(MAX_DRAWS):
            tokens = np.asarray(self.task.sample(count, length, rng), dtype=np.int64)
            valid = self.task.valid(self.task.oracle(torch.as_tensor(tokens))).numpy()
            kept.append(tokens[valid])
            have += int(valid.sum())
            if have >= count:
                return np.concatenate(kept)[:count]
        raise SimcheckError(
            f"task '{self.task.spec()}' gave only {have} inputs with an answer in "
            f"{MAX_DRAWS * count} draws at length {length}: its sampler rarely produces a class"
        )

    # ------------------------------------------------------------------ witnesses
    def candidates(self, x: np.ndarray) -> list[Witness]:
        """The constructed witnesses of ``x``. Randomised constructions draw from a generator
        seeded by the check's seed and x's bytes, so an input always gets the same
        witnesses: re-checking an input (as the worst-case climb does) gives the same error."""
        digest = hashlib.sha256(np.ascontiguousarray(x, dtype=np.int64).tobytes()).digest()
        rng = np.random.default_rng([self.config.seed, int.from_bytes(digest[:8], "little")])
        out: list[Witness] = []
        for method in self.config.witnesses:
            if callable(method):
                out += user_witnesses(method, x, self.train_len, self.structure, rng)
                continue
            registered = witness_method(method)
            if registered.refines:  # run after the constructions, on the check's objective
                continue
            options = {name: getattr(self.config, name) for name in registered.options}
            context = WitnessContext(x, self.train_len, self.structure, rng, self.task, options)
            out += registered.witnesses(context)
        return out

    def _terms(
        self, f_x: torch.Tensor, g_x: torch.Tensor, short: _Outcome
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return (
            self.gaps.task_gap(f_x, short.f),
            self.gaps.error(short.f, short.g),
            self.gaps.model_gap(g_x, short.g),
        )

    # ------------------------------------------------------------------ step 1: simulate
    def simulate(self, tokens: np.ndarray, search: bool) -> Simulation:
        """Witnesses and their terms for long inputs ``tokens`` [M, T]; with ``search`` the
        local search (when among the methods) refines each input's chain witness."""
        long = self.evaluate(list(tokens))
        witnesses = [self.candidates(x) for x in tokens]
        if not all(witnesses):
            raise SimcheckError(
                "the witness methods produced no candidate for some long input; add 'types', "
                "which always produces one"
            )
        owner = np.array([i for i, ws in enumerate(witnesses) for _ in ws])
        short = self.evaluate([w.tokens for ws in witnesses for w in ws])
        flat = np.stack(self._terms(long.f[owner], long.g[owner], short), axis=1)
        starts = np.cumsum([0] + [len(ws) for ws in witnesses])
        terms = [flat[a:b] for a, b in itertools.pairwise(starts)]
        best = np.array([int(np.argmin(t.sum(1))) for t in terms])
        picked = torch.as_tensor(starts[:-1] + best)
        f_z, g_z = short.f[picked], short.g[picked]
        states_z = {name: value[picked] for name, value in short.states.items()}
        if search and self.refines:
            rows, starts = self._search_starts(tokens, witnesses, terms)
            if rows:
                sub = _subset(long, rows)
                found = self.search(tokens[rows], sub, starts)
                out = self.evaluate([w.tokens for w in found])
                found_terms = np.stack(self._terms(sub.f, sub.g, out), axis=1)
                for j, i in enumerate(rows):
                    witnesses[i].append(found[j])
                    terms[i] = np.vstack([terms[i], found_terms[j]])
                    if found_terms[j].sum() < terms[i][best[i]].sum():
                        best[i] = len(witnesses[i]) - 1
                        f_z[i], g_z[i] = out.f[j], out.g[j]
                        for name in states_z:
                            states_z[name][i] = out.states[name][j]
        return Simulation(
            tokens=tokens,
            f_x=long.f,
            g_x=long.g,
            states_x=long.states,
            witnesses=tuple(tuple(ws) for ws in witnesses),
            terms=tuple(terms),
            chain_best=best,
            f_z=f_z,
            g_z=g_z,
            states_z=states_z,
            raw_x=long.raw,
        )

    def _search_starts(
        self, tokens: np.ndarray, witnesses: list[list[Witness]], terms: list[np.ndarray]
    ) -> tuple[list[int], list[Witness]]:
        """Per input, the witness with the least chain among those the search can start
        from (ending with x's window, length congruent to x's mod Delta: the constructions'
        witnesses always are; a user function's may not be). Inputs without one are left
        out."""
        tail, period = self.structure.tail, self.structure.period
        rows, starts = [], []
        for i, (x, ws, t) in enumerate(zip(tokens, witnesses, terms, strict=True)):
            for k in np.argsort(t.sum(1), kind="stable"):
                z = ws[k].tokens
                if (
                    len(z) >= tail
                    and (len(x) - len(z)) % period == 0
                    and np.array_equal(z[-tail:], x[-tail:])
                ):
                    rows.append(i)
                    starts.append(ws[k])
                    break
        return rows, starts

    def search(self, tokens: np.ndarray, long: _Outcome, starts: list[Witness]) -> list[Witness]:
        """Local search from each input's chain witness on chain + surrogate + probe
        discrepancy. It keeps x's window and the length's residue mod Delta, as the
        constructions do, and draws from a generator seeded by the check's seed and the
        inputs' bytes (so re-simulating the same inputs gives the same witnesses)."""
        digest = hashlib.sha256(np.ascontiguousarray(tokens).tobytes()).digest()
        rng = np.random.default_rng([self.config.seed, int.from_bytes(digest[:8], "little")])

        def objective(pairs: list[tuple[int, np.ndarray]]) -> np.ndarray:
            owner = np.array([i for i, _ in pairs])
            out = self.evaluate([z for _, z in pairs])
            chain = np.stack(self._terms(long.f[owner], long.g[owner], out), axis=1).sum(1)
            surrogate = self.gaps.surrogate(long.g[owner], out.g)
            states_x = {name: value[owner] for name, value in long.states.items()}
            disc = self.probe_discrepancy(states_x, out.states)
            mean_disc = torch.stack([d.nanmean(-1) for d in disc.values()]).nanmean(0)
            mean_disc = torch.nan_to_num(mean_disc, nan=0.0).numpy()
            return chain + SEARCH_SURROGATE_WEIGHT * surrogate + SEARCH_PROBE_WEIGHT * mean_disc

        return local_search_many(
            [w.tokens for w in starts],
            objective,
            self.train_len,
            self.structure,
            rng,
            rounds=self.config.search_rounds,
            proposals=self.config.search_proposals,
            keep_window=True,
            xs=list(tokens),
        )

    def worst_inputs(
        self, tokens: np.ndarray, rng: np.random.Generator, rounds: int
    ) -> tuple[np.ndarray, list[float]]:
        """Hill-climb each long input towards a larger chain: each round replaces a random
        eighth of every input with fresh task tokens and keeps the change where the chain
        (least task gap + short error + model gap over the witnesses) grows."""
        tokens = tokens.copy()
        count, length = tokens.shape
        segment = max(1, length // 8)
        error = self.simulate(tokens, search=False).chain
        trace = [float(error.mean())]
        for _ in range(rounds):
            proposal = tokens.copy()
            fresh = np.asarray(self.task.sample(count, length, rng))
            for row, start in enumerate(rng.integers(0, length - segment + 1, size=count)):
                proposal[row, start : start + segment] = fresh[row, start : start + segment]
            valid = self.task.valid(self.task.oracle(torch.as_tensor(proposal))).numpy()
            candidate = np.full(count, -np.inf)
            if valid.any():
                candidate[valid] = self.simulate(proposal[valid], search=False).chain
            better = candidate > error
            tokens[better], error[better] = proposal[better], candidate[better]
            trace.append(float(error.mean()))
        return tokens, trace

    def attention_by_type(self, sequence: np.ndarray) -> np.ndarray:
        """The last query's attention mass per key type (token * Delta + position mod Delta,
        over the model's positions, prefix included), [layers, heads, types], for one input:
        what the report shows of a long input beside its witness."""
        period = self.structure.period
        probes = [
            AttentionMass(layer, "type", period=period) for layer in range(self.model.cfg.n_layers)
        ]
        tokens = torch.as_tensor(np.array(sequence, dtype=np.int64)[None])
        recording = record(
            self.model, self.subject.model_input(tokens), probes, attention=self.mode
        )
        return np.stack([recording[p.name][0, 0].float().cpu().numpy() for p in probes])

    # ------------------------------------------------------------------ reference
    def reference(self, rng: np.random.Generator) -> Reference:
        """Record inputs of lengths <= N: spreads, short errors, short states for coverage,
        and attention summaries at length N."""
        low = max(self.structure.min_length, self.structure.window + 1, 1)
        if low > self.train_len:
            raise SimcheckError(
                f"training length {self.train_len} is below the shortest input the task and "
                f"model need ({low}); pass the model's real training length"
            )
        lengths = rng.integers(low, self.train_len + 1, size=self.config.reference_samples)
        sequences: list[np.ndarray] = []
        for length, count in sorted(zip(*np.unique(lengths, return_counts=True), strict=True)):
            sequences += list(np.asarray(self.task.sample(int(count), int(length), rng)))
        short = self.evaluate(sequences)
        for probe in self.compared:
            self.spreads[probe.name] = spread(
                head_vectors(short.states[probe.name], probe.per_head)
            )
        at_n = np.asarray(self.task.sample(min(self.config.reference_samples, 64),
                                           self.train_len, rng))  # fmt: skip
        at_n_outcome = self.evaluate(list(at_n))
        return Reference(
            outcome=short,
            lengths=np.array([len(s) for s in sequences]),
            sequences=sequences,
            attention_at_n=attention_summary(self.recorded, at_n_outcome.states),
        )


# ---------------------------------------------------------------------- the entry point


@dataclass(frozen=True)
class CheckOutput:
    """What a check finds: the settings and provenance (``config``, the certificate's
    ``config``), one `LengthResult` per checked length and, for a range, the forecast."""

    config: dict[str, Any]
    results: list[LengthResult]
    forecast: Forecast | None


def run_check(
    resolved: Subject,
    config: CheckConfig,
    probes: Sequence[Probe] | None = None,
    progress: bool = False,
) -> CheckOutput:
    """Check the model of ``resolved`` at each test length of ``config``: certify it, or say
    why not (the module docstring). `simcheck.api.check` is the entry point that takes a
    run, a run directory or a model; this takes the resolved `Subject`."""
    model, task, train_len = resolved.model, resolved.task, resolved.train_len
    assert task is not None and train_len is not None
    config.validate_for(task.metric_max, task.metric_name, train_len)
    lengths = config.lengths_for(train_len)
    for length in lengths:
        resolved.check_length(length)
    structure = witness_structure(resolved)
    chosen = list(probes) if probes else default_probes(model, structure.period, structure.window)
    # the compared output is the task's: the adapter's output ids, in the task's order
    output = Output(select=resolved.adapter.outputs)
    chosen = [p for p in chosen if not isinstance(p, Output)] + [output]
    checker = _Checker(resolved, chosen, config)
    reference = checker.reference(_stream(config.seed, REFERENCE_STREAM))
    schedule = [config.samples] if config.worst_case else look_schedule(
        config.samples, config.max_samples
    )  # fmt: skip
    # a range (up_to) makes one statement over all its lengths: the level is split over them
    looks = len(schedule) * (len(lengths) if config.up_to is not None else 1)
    alpha = look_alpha(config.confidence, looks)
    short = _short_behaviour(checker, reference, alpha)
    results: list[LengthResult] = []
    last_certified: Simulation | None = None
    for length in progress_bar(lengths, desc="check", disable=not progress):
        result, sim = _check_length(checker, reference, short, length, schedule, alpha)
        results.append(result)
        if result.certified and len(results) == sum(r.certified for r in results):
            last_certified = sim  # the longest length up to which every length is certified
        if config.up_to is not None and result.outcome in RANGE_STOPS:
            break  # the range's answer is known: the model fails here
    forecast = None
    if config.up_to is not None and last_certified is not None and config.interventions:
        certified = list(itertools.takewhile(lambda r: r.certified, results))
        forecast = _forecast(checker, last_certified, certified)
    report_config = {
        "source": resolved.source,
        "model": {
            "weights_sha256": weights_hash(model),
            "spec": model.simcheck_spec.to_dict() if hasattr(model, "simcheck_spec") else None,
            "adapter": resolved.adapter.to_dict(),
            "device": str(resolved.device),
        },
        "task": task_record(task),
        "train_len": train_len,
        **config.to_dict(),
        "test_lengths": lengths,
        "looks": schedule,
        "look_level": 1 - alpha,
        "structure": {"period": structure.period, "window": structure.window},
        "reference": {
            "lengths": [int(reference.lengths.min()), int(reference.lengths.max())],
            "short": short.to_dict(),
        },
        "probes": [p.name for p in chosen],
        "slack_statistic": "decision margin" if checker.gaps.decisions else "eps - chain",
        "versions": library_versions(),
        "torch_threads": torch_threads(),
    }
    return CheckOutput(report_config, results, forecast)


def _check_length(
    checker: _Checker,
    reference: Reference,
    short: ShortBehaviour,
    length: int,
    schedule: list[int],
    alpha: float,
) -> tuple[LengthResult, Simulation]:
    """Simulate, look, and summarise at one test length; the simulation comes along for
    the forecast."""
    config = checker.config
    parts: list[Simulation] = []
    trace: list[float] = []
    drawn = 0
    for look, size in enumerate(schedule):
        rng = _stream(config.seed, length, look)
        tokens = checker.sample_long(size - drawn, length, rng)
        drawn = size
        if config.worst_case:
            tokens, trace = checker.worst_inputs(tokens, rng, config.worst_case)
        parts.append(checker.simulate(tokens, search=True))
        sim = Simulation.concat(parts)
        intervals = _intervals(checker, sim, alpha)
        outcome = decide(intervals["chain"], short.interval, intervals["long"], config.delta)
        if outcome != UNDECIDED:
            break
    result = summarise(checker, sim, reference, short, length, intervals, outcome, look + 1, trace)
    return result, sim


def _intervals(checker: _Checker, sim: Simulation, alpha: float) -> dict[str, Interval]:
    eps = checker.config.eps
    long_error = checker.gaps.error(sim.f_x, sim.g_x)
    return {
        "chain": clopper_pearson(int((sim.chain > eps).sum()), sim.count, alpha),
        "long": clopper_pearson(int((long_error > eps).sum()), sim.count, alpha),
    }


def _short_behaviour(checker: _Checker, reference: Reference, alpha: float) -> ShortBehaviour:
    """How the model does on the reference inputs of lengths <= N."""
    task, out = checker.task, reference.outcome
    valid = task.valid(out.f).numpy()
    f, g = out.f[valid], out.g[valid]
    errors = checker.gaps.error(f, g)
    interval = clopper_pearson(int((errors > checker.config.eps).sum()), len(errors), alpha)
    if task.output == "scalar":
        return ShortBehaviour(interval, float(errors.mean()), float(g.std()), float(f.std()))
    targets = f if task.output == "distribution" else torch.nn.functional.one_hot(
        f, task.num_classes
    ).float()  # fmt: skip
    decision_share = class_share = None
    if task.output == "classes":
        decision_share = float(torch.bincount(g.argmax(-1)).max()) / len(g)
        class_share = float(torch.bincount(f).max()) / len(f)
    return ShortBehaviour(
        interval,
        float(errors.mean()),
        _mean_tv_spread(g),
        _mean_tv_spread(targets),
        decision_share,
        class_share,
    )


def _mean_tv_spread(p: torch.Tensor) -> float:
    """Mean total variation of probability rows from their mean."""
    return float(0.5 * (p - p.mean(0, keepdim=True)).abs().sum(-1).mean())


# ---------------------------------------------------------------------- step 2: summarise


def summarise(
    checker: _Checker,
    sim: Simulation,
    reference: Reference,
    short: ShortBehaviour,
    length: int,
    intervals: dict[str, Interval],
    outcome: str,
    looks: int,
    trace: list[float],
) -> LengthResult:
    """The `LengthResult` of one length: outcome, statistics and diagnosis."""
    config, task = checker.config, checker.task
    long_error = checker.gaps.error(sim.f_x, sim.g_x)
    chain, joint, floor = sim.chain, sim.joint, sim.floor_gap
    at_chain, matched = sim.at_chain(), sim.at_task_match()
    stats = _probe_stats(checker, sim)
    covered = {}
    for probe in checker.compared:
        if isinstance(probe, Residual):
            long = sim.states_x[probe.name].reshape(sim.count, -1)
            ref = reference.outcome.states[probe.name].reshape(len(reference.sequences), -1)
            covered[probe.name] = coverage(long, ref)
    signed = None
    if task.output == "scalar":
        signed = np.stack(
            [(sim.f_x - sim.f_z).numpy(), (sim.f_z - sim.g_z).numpy(), (sim.g_z - sim.g_x).numpy()],
            axis=1,
        )
    chosen = sim.chosen()
    worst = [
        WorstCase(
            index=int(i),
            x=sim.tokens[i],
            z=chosen[i],
            chain=float(chain[i]),
            task_gap=float(at_chain[i, 0]),
            short_error=float(at_chain[i, 1]),
            model_gap=float(at_chain[i, 2]),
            long_error=float(long_error[i]),
            attention_x=checker.attention_by_type(sim.tokens[i]),
            attention_z=checker.attention_by_type(chosen[i].tokens),
        )
        for i in np.argsort(-chain, kind="stable")[:3]
    ]
    by_method: dict[str, float] = {}
    for name in dict.fromkeys(w.method for ws in sim.witnesses for w in ws):
        per_input = [
            min((max(t[k, 0], t[k, 2]) for k, w in enumerate(ws) if w.method == name),
                default=math.inf)
            for ws, t in zip(sim.witnesses, sim.terms, strict=True)
        ]  # fmt: skip
        by_method[name] = simulation_error(np.array(per_input), config.delta)
    attention = attention_summary(checker.recorded, sim.states_x)
    result = LengthResult(
        length=length,
        outcome=outcome,
        chain_interval=intervals["chain"],
        long_interval=intervals["long"],
        looks=looks,
        chain_bound=simulation_error(chain, config.delta),
        eps_star=simulation_error(joint, config.delta),
        task_floor=simulation_error(floor, config.delta),
        eps=config.eps,
        chain=chain,
        joint=joint,
        long_error=long_error,
        task_gap=at_chain[:, 0],
        short_error=at_chain[:, 1],
        model_gap=at_chain[:, 2],
        floor_gap=floor,
        signed_terms=signed,
        by_method=by_method,
        witness_lengths=np.array([w.length for w in chosen]),
        witness_methods=[w.method for w in chosen],
        probes=stats,
        matched_terms=dict(zip(TERMS, matched.T, strict=True)),
        coverage=covered,
        attention=attention,
        worst=worst,
        worst_case_trace=trace,
    )
    result.slack = _slack(checker, sim, chain)
    uncovered = chain > config.eps
    result.diagnosis = diagnose(
        Evidence(
            length=length,
            train_len=checker.train_len,
            eps=config.eps,
            delta=config.delta,
            outcome=outcome,
            chain=intervals["chain"],
            long=intervals["long"],
            uncovered=uncovered,
            matched=result.matched_terms,
            floor_gap=floor,
            probes=tuple(stats),
            coverage=covered,
            attention=attention,
            attention_at_n=reference.attention_at_n,
            short=short,
            margin=_margin_evidence(task, sim.tokens[uncovered], reference),
            learned_positions=checker.subject.adapter.learned_absolute,
            trained_positions=checker.subject.adapter.trained_positions or checker.train_len,
            prefix=len(checker.subject.adapter.prefix),
            mode=checker.mode,
            diverge_at=config.diverge_at,
        )
    )
    if config.interventions and outcome in (NOT_SIMULATABLE, UNDECIDED):
        _intervene(checker, sim, reference, result, uncovered & (matched[:, 0] <= config.eps / 2))
    return result


def _forecast(checker: _Checker, sim: Simulation, certified: list[LengthResult]) -> Forecast | None:
    """Where the certificate of a range ends, from the long inputs of its longest certified
    length run as if longer (`simcheck.checking.forecast`); None where the emulation does not apply
    (finite precision, learned absolute positions)."""
    if not isinstance(checker.mode, str) or checker.subject.adapter.learned_absolute:
        return None
    config, task = checker.config, checker.task
    rows = slice(0, FORECAST_INPUTS)
    tokens, f = sim.tokens[rows], sim.f_x[rows]

    def slack(raw: torch.Tensor) -> np.ndarray:
        if checker.gaps.decisions:
            return _decision_margin(raw, f)
        return config.eps - checker.gaps.error(f, task.prediction(raw).float())

    runner = Runner(checker.subject, checker.mode)
    structure = checker.structure
    factors, quantiles = emulated_quantiles(
        runner, tokens, slack, config.delta, structure.period, structure.window, MAX_FACTOR
    )
    factor = crossing(factors, quantiles)
    from_length = certified[-1].length
    statistic = "decision margin" if checker.gaps.decisions else "eps - error"
    pairs = list(zip(factors, quantiles, strict=True))
    if factor is None:
        found = f"stays at {min(quantiles):.3g} or above up to k = {factors[-1]:.0f}"
    else:
        shown = [*[p for p in pairs if p[1] > 0][-2:], next(p for p in pairs if p[1] <= 0)]
        found = "is " + ", ".join(f"{q:.3g} at k = {k:.3g}" for k, q in shown)
    basis = (
        f"the {len(tokens)} long inputs of T = {from_length} run as if k times longer with the "
        f"same type proportions (log k added to the logits of the repeated key types, in every "
        f"head): the {config.delta:g}-quantile of the slack ({statistic}) {found}"
    )
    trends = dilution_trends([r.length for r in certified], [r.attention for r in certified])
    if trends:
        basis += "; over the certified lengths " + "; ".join(trends)
    length = None if factor is None else factor * from_length
    return Forecast(length, from_length, factor, statistic, basis)


def _decision_margin(raw: torch.Tensor, f: torch.Tensor) -> np.ndarray:
    """Per input, the logit of the task's class minus the largest other logit."""
    target = f.clamp_min(0)[:, None]
    right = raw.gather(1, target)[:, 0]
    return (right - raw.scatter(1, target, -math.inf).amax(1)).numpy()


def _slack(checker: _Checker, sim: Simulation, chain: np.ndarray) -> np.ndarray:
    """Per long input, how far it is from breaking the certificate (`simcheck.checking.forecast`):
    the decision margin (logit of the task's class minus the largest other) where the chain
    compares decisions, else eps minus the chain."""
    if not checker.gaps.decisions:
        return checker.config.eps - chain
    return _decision_margin(sim.raw_x, sim.f_x)


def _intervene(
    checker: _Checker,
    sim: Simulation,
    reference: Reference,
    result: LengthResult,
    chosen: np.ndarray,
) -> None:
    """Run the interchange interventions and the repairs on (up to
    ``intervention_samples``) of the ``chosen`` inputs, and confirm or reject the causes by
    them. The check chooses the uncovered inputs whose task-matched witness the task treats
    like x (task gap at most eps / 2), so that patching from z asks the model to do what the
    task does."""
    config = checker.config
    rows = np.flatnonzero(chosen)[: config.intervention_samples]
    if rows.size == 0:
        return
    witnesses = sim.task_matched()
    runner = Runner(checker.subject, checker.mode)
    interchange = Interchange.build(
        runner,
        checker.gaps,
        sim.tokens[rows],
        [witnesses[i].tokens for i in rows],
        _stream(config.seed, INTERVENTION_STREAM, result.length),
        config.confidence,
        checker.structure.period,
        checker.structure.window,
    )
    result.patching = interchange.sites()
    assert result.diagnosis is not None
    planned = plan_repairs(
        checker.subject,
        checker.mode,
        checker.structure.period,
        result.length,
        result.attention,
        reference.attention_at_n,
        [cause.kind for cause in result.diagnosis.causes],
    )
    result.repairs = run_repairs(planned, interchange)
    result.diagnosis = result.diagnosis.with_repairs(result.repairs)


def _probe_stats(checker: _Checker, sim: Simulation) -> list[ProbeStat]:
    disc = checker.probe_discrepancy(sim.states_x, sim.states_z)
    stats = []
    for probe in checker.compared:
        values = disc[probe.name].numpy()
        for group in range(values.shape[1]):
            finite = values[:, group][np.isfinite(values[:, group])]
            stats.append(
                ProbeStat(
                    probe=probe,
                    head=group if probe.per_head else None,
                    median=float(np.median(finite)) if finite.size else math.nan,
                    mean=float(finite.mean()) if finite.size else math.nan,
                    max=float(finite.max()) if finite.size else math.nan,
                )
            )
    return stats


def _margin_evidence(
    task: Task, uncovered: np.ndarray, reference: Reference
) -> MarginEvidence | None:
    """The task's margin statistic on the uncovered long inputs and its smallest value
    with an answer among the reference inputs (None when the task has no margin)."""
    if len(uncovered) == 0 or task.margin(torch.as_tensor(uncovered[:1])) is None:
        return None
    long = task.margin(torch.as_tensor(uncovered)).numpy()
    by_length: dict[int, list[np.ndarray]] = defaultdict(list)
    for sequence in reference.sequences:
        by_length[len(sequence)].append(sequence)
    smallest = math.inf
    for group in by_length.values():
        tokens = torch.as_tensor(np.stack(group))
        margins = task.margin(tokens).numpy()
        valid = task.valid(task.oracle(tokens)).numpy() & (margins > 0)
        if valid.any():
            smallest = min(smallest, float(margins[valid].min()))
    return MarginEvidence(task.margin_name, long, smallest)
