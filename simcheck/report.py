"""The result of `simcheck.check`: verdict, tables, figures, certificate and HTML report.

The certificate is versioned JSON with sorted keys and floats rounded to 6 significant
digits, written without timestamps, so the same model, settings and seed give the same
bytes.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from simcheck.confidence import Interval
from simcheck.diagnosis import Diagnosis, ProbeStat
from simcheck.io import atomic_write, write_text
from simcheck.outcomes import ADVICE, CERTIFIED, MEANING
from simcheck.simstats import Coverage, needed_count
from simcheck.witnesses import Witness

CERTIFICATE_FORMAT = "simcheck-certificate"
CERTIFICATE_VERSION = 2
CERTIFICATE_FILE = "certificate.json"
SUMMARY_FILE = "summary.txt"
HTML_FILE = "report.html"
FIGURES = ("decomposition.png", "discrepancy.png", "coverage.png")


@dataclass(frozen=True)
class WorstCase:
    """A long input with one of the largest chains, and its chain witness."""

    index: int
    x: np.ndarray
    z: Witness
    chain: float
    task_gap: float
    short_error: float
    model_gap: float
    long_error: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "x": " ".join(str(int(t)) for t in self.x),
            "witness": self.z.to_dict(),
            "chain": self.chain,
            "task_gap": self.task_gap,
            "short_error": self.short_error,
            "model_gap": self.model_gap,
            "long_error": self.long_error,
        }


@dataclass
class LengthResult:
    """Everything measured at one test length T; per-input arrays have one entry per input.

    Attributes:
        outcome: one of `simcheck.outcomes.OUTCOMES`.
        chain_interval: the fraction of inputs not covered (chain > eps), with its exact
            binomial interval.
        long_interval: the fraction of inputs whose measured long error exceeds eps.
        looks: how many looks the sequential sampling took.
        chain_bound: the 1 - delta quantile of the chain: the long-error bound the
            witnesses give.
        eps_star: the 1 - delta quantile of the simulation error min max(task gap,
            model gap): how closely short inputs reproduce task and model at once.
        task_floor: the same quantile of the least task gap: the task's own floor.
        chain, joint, floor_gap, long_error: per input.
        task_gap, short_error, model_gap: the terms at each input's chain witness (least
            sum); ``matched_terms`` holds them at the witness that best matches the *task*
            (least task gap): how the model treats a short input the task considers
            equivalent; the diagnosis reads those.
    """

    length: int
    outcome: str
    chain_interval: Interval
    long_interval: Interval
    looks: int
    chain_bound: float
    eps_star: float
    task_floor: float
    eps: float
    chain: np.ndarray
    joint: np.ndarray
    long_error: np.ndarray
    task_gap: np.ndarray
    short_error: np.ndarray
    model_gap: np.ndarray
    floor_gap: np.ndarray
    signed_terms: np.ndarray | None
    by_method: dict[str, float]
    witness_lengths: np.ndarray
    witness_methods: list[str]
    probes: list[ProbeStat]
    matched_terms: dict[str, np.ndarray]
    coverage: dict[str, Coverage]
    attention: dict[int, dict[str, list[float]]]
    worst: list[WorstCase]
    worst_case_trace: list[float] = field(default_factory=list)
    diagnosis: Diagnosis | None = None

    @property
    def samples(self) -> int:
        """Long inputs drawn (over all looks)."""
        return self.chain_interval.samples

    @property
    def certified(self) -> bool:
        return self.outcome == CERTIFIED

    @property
    def simulatable(self) -> bool:
        """eps* <= eps: short inputs reproduce task and model within eps on all but a delta
        fraction of inputs (the simulation criterion alone, without the short error)."""
        return self.eps_star <= self.eps

    @property
    def ratio(self) -> float:
        """eps* over the task's floor: 1 means as simulatable as the task itself (below 1
        when the model-guided search beat the constructions); NaN when the floor is 0."""
        return self.eps_star / self.task_floor if self.task_floor > 0 else math.nan

    def row(self) -> dict[str, Any]:
        """One row of `CheckReport.table`."""
        chain = self.chain_interval
        return {
            "T": self.length,
            "outcome": self.outcome,
            "M": self.samples,
            "uncovered": chain.fraction,
            "interval": f"[{chain.low:.3f}, {chain.high:.3f}]",
            "chain bound": self.chain_bound,
            "eps*": self.eps_star,
            "task floor": self.task_floor,
            "ratio": self.ratio,
            "long error": float(self.long_error.mean()),
            "task gap": float(self.task_gap.mean()),
            "short error": float(self.short_error.mean()),
            "model gap": float(self.model_gap.mean()),
            "witness len": float(self.witness_lengths.mean()),
        }

    def to_dict(self, delta: float) -> dict[str, Any]:
        methods: dict[str, int] = {}
        for method in self.witness_methods:
            methods[method] = methods.get(method, 0) + 1
        return {
            "T": self.length,
            "outcome": self.outcome,
            "certified": self.certified,
            "uncovered": self.chain_interval.to_dict(),
            "long_error_above_eps": self.long_interval.to_dict(),
            "looks": self.looks,
            "chain_bound": self.chain_bound,
            "eps_star": self.eps_star,
            "task_floor": self.task_floor,
            "ratio_to_floor": None if math.isnan(self.ratio) else self.ratio,
            "simulatable": self.simulatable,
            "counts": {
                "inputs": self.samples,
                "needed_within_eps": needed_count(self.samples, delta),
                "best_witness_methods": methods,
            },
            "eps_star_by_method": self.by_method,
            "errors": {
                name: _moments(getattr(self, name))
                for name in ("long_error", "chain", "task_gap", "short_error", "model_gap", "joint")
            },
            "witness_length": _moments(self.witness_lengths.astype(float)),
            "probes": [s.to_dict() for s in self.probes],
            "coverage": {
                name: {"outside": c.outside, "nn_ratio": c.ratio, "threshold": c.threshold}
                for name, c in self.coverage.items()
            },
            "attention": {f"L{layer}": value for layer, value in self.attention.items()},
            "worst": [w.to_dict() for w in self.worst],
            "worst_case_trace": self.worst_case_trace,
            "diagnosis": self.diagnosis.to_dict() if self.diagnosis else None,
        }


def _moments(values: np.ndarray) -> dict[str, float]:
    return {
        "mean": float(values.mean()),
        "median": float(np.median(values)),
        "q95": float(np.quantile(values, 0.95)),
        "max": float(values.max()),
    }


def _rounded(value: Any) -> Any:
    """JSON-ready copy: floats to 6 significant digits, non-finite floats as strings."""
    if isinstance(value, dict):
        return {str(k): _rounded(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_rounded(v) for v in value]
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        value = float(value)
        if not math.isfinite(value):
            return str(value)
        return float(f"{value:.6g}")
    return value


class CheckReport:
    """The answer of `simcheck.check`.

    Attributes:
        config: the settings, model hash, task spec and library versions of the check.
        results: one `LengthResult` per test length.
    """

    def __init__(self, config: dict[str, Any], results: list[LengthResult]) -> None:
        self.config = config
        self.results = results

    # ----------------------------------------------------------------- answers
    @property
    def outcome(self) -> dict[int, str]:
        """The outcome per test length (`simcheck.outcomes`)."""
        return {r.length: r.outcome for r in self.results}

    @property
    def certified(self) -> bool:
        """True when every test length is certified."""
        return all(r.certified for r in self.results)

    @property
    def simulatable(self) -> bool:
        """True when eps* <= eps at every test length (the simulation criterion alone)."""
        return all(r.simulatable for r in self.results)

    @property
    def verdict(self) -> str:
        """One sentence: the outcome at each T, with N, eps, delta and the confidence."""
        c = self.config
        setting = (
            f"from N={c['train_len']} with eps={c['eps']}, delta={c['delta']} at "
            f"{c['confidence']:.0%} confidence"
        )
        if self.certified:
            lengths = ", ".join(str(r.length) for r in self.results)
            return f"certified at T={lengths} {setting}"
        outcomes = "; ".join(f"T={r.length}: {r.outcome}" for r in self.results)
        return f"{outcomes} ({setting})"

    @property
    def eps_star(self) -> dict[int, float]:
        """eps* per test length."""
        return {r.length: r.eps_star for r in self.results}

    def result(self, length: int) -> LengthResult:
        """The result at test length ``length``."""
        for r in self.results:
            if r.length == length:
                return r
        raise KeyError(f"no result at T={length}; checked {[r.length for r in self.results]}")

    def table(self) -> pd.DataFrame:
        """One row per test length: outcome, inputs drawn, the uncovered fraction with its
        interval, the chain bound, eps*, the task floor, mean error terms."""
        return pd.DataFrame([r.row() for r in self.results]).set_index("T")

    def probe_table(self) -> pd.DataFrame:
        """Median normalised discrepancy per probe and head (rows) and test length (columns)."""
        rows = {}
        for r in self.results:
            for s in r.probes:
                key = (s.depth, s.name, "" if s.head is None else s.head)
                rows.setdefault(key, {})[r.length] = s.median
        frame = pd.DataFrame.from_dict(rows, orient="index").sort_index()
        frame.index = pd.MultiIndex.from_tuples(
            [(p, h) for _, p, h in frame.index], names=["probe", "head"]
        )
        return frame

    def coverage_table(self) -> pd.DataFrame:
        """Fraction of long states outside the training states, per state and test length."""
        rows = {
            name: {r.length: r.coverage[name].outside for r in self.results if name in r.coverage}
            for name in self.results[0].coverage
        }
        return pd.DataFrame.from_dict(rows, orient="index")

    # ----------------------------------------------------------------- outputs
    def certificate(self) -> dict[str, Any]:
        """The versioned, JSON-ready record of the check."""
        c = self.config
        return _rounded(
            {
                "format": CERTIFICATE_FORMAT,
                "version": CERTIFICATE_VERSION,
                "verdict": self.verdict,
                "outcome": {str(t): o for t, o in self.outcome.items()},
                "certified": self.certified,
                "config": c,
                "results": [r.to_dict(c["delta"]) for r in self.results],
            }
        )

    def to_json(self) -> str:
        """The certificate as canonical JSON (sorted keys, two-space indent)."""
        return json.dumps(self.certificate(), indent=2, sort_keys=True) + "\n"

    def summary(self) -> str:
        """The terminal summary: verdict, per-length table, what each outcome means, and
        the diagnoses."""
        with pd.option_context("display.float_format", "{:.4g}".format, "display.width", 160):
            lines = [self.verdict, "", self.table().to_string(na_rep="-"), ""]
        for r in self.results:
            lines.append(f"T={r.length}: {r.outcome}: {MEANING[r.outcome]}")
            if r.certified:
                lines.append(
                    f"  long error <= {r.chain_bound:.3g} (the chain bound) on all but "
                    f"{self.config['delta']:g} of inputs; uncovered fraction at most "
                    f"{r.chain_interval.high:.3f} at {self.config['confidence']:.0%} confidence"
                )
            if r.diagnosis:
                lines += [f"  {line}" for line in r.diagnosis.lines()]
            if not r.certified:
                lines.append(f"  what to do: {ADVICE[r.outcome]}")
        return "\n".join(lines).rstrip() + "\n"

    def plot(self) -> Figure:
        """Error decomposition against T, per-probe discrepancy heatmap and coverage."""
        from simcheck.report_figures import report_figure

        return report_figure(self)

    def to_html(self) -> str:
        """A self-contained HTML report (figures inlined as PNG)."""
        from simcheck.report_figures import figures

        images = "".join(
            f'<figure><img alt="{name}" src="data:image/png;base64,{_png_base64(fig)}"></figure>'
            for name, fig in figures(self).items()
        )
        diagnoses = "".join(
            f"<h3>T = {r.length}</h3><ul>"
            + "".join(f"<li>{html.escape(line)}</li>" for line in r.diagnosis.lines())
            + "</ul>"
            for r in self.results
            if r.diagnosis
        )
        c = self.config
        return (
            "<!DOCTYPE html><html><head><meta charset='utf-8'><title>simcheck report</title>"
            "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}"
            "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px}"
            "img{max-width:100%}</style></head><body>"
            f"<h1>simcheck: {html.escape(c['task']['spec'])}</h1>"
            f"<p><b>{html.escape(self.verdict)}</b></p>"
            f"<p>source {html.escape(str(c['source']))}, weights sha256 "
            f"{c['model']['weights_sha256'][:16]}..., attention {c['attention']}, "
            f"M={c['samples']}, witnesses {', '.join(c['witnesses'])}, seed {c['seed']}</p>"
            f"{self._repr_html_()}{diagnoses}{images}"
            "<h2>Probe discrepancy (median, x spread)</h2>"
            f"{self.probe_table().to_html(float_format=lambda v: f'{v:.3g}')}"
            "</body></html>\n"
        )

    def _repr_html_(self) -> str:
        table = self.table().to_html(float_format=lambda v: f"{v:.4g}", na_rep="-")
        return f"<p>{html.escape(self.verdict)}</p>{table}"

    def __repr__(self) -> str:
        return f"CheckReport({self.verdict})"

    def save(self, directory: str | Path) -> Path:
        """Write the certificate, the summary, the figures and the HTML report into
        ``directory`` (created if needed), each file atomically; returns the directory."""
        from simcheck.plotting import save_figure
        from simcheck.report_figures import figures

        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        write_text(out / CERTIFICATE_FILE, self.to_json())
        write_text(out / SUMMARY_FILE, self.summary())
        for name, fig in figures(self).items():
            save_figure(fig, out / name)
        atomic_write(out / HTML_FILE, lambda tmp: tmp.write_text(self.to_html()))
        return out


def _png_base64(fig: Figure) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode()
