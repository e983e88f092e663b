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

from simcheck.diagnosis import Diagnosis
from simcheck.runs import atomic_write, write_text
from simcheck.simstats import Coverage, needed_count
from simcheck.witnesses import Witness

CERTIFICATE_FORMAT = "simcheck-certificate"
CERTIFICATE_VERSION = 1
CERTIFICATE_FILE = "certificate.json"
SUMMARY_FILE = "summary.txt"
HTML_FILE = "report.html"
FIGURES = ("decomposition.png", "discrepancy.png", "coverage.png")


@dataclass(frozen=True)
class ProbeStat:
    """Normalised discrepancy of one probe (one head, or the whole state) between long
    inputs and their chosen witnesses: median, mean and max over inputs."""

    probe: str
    head: int | None
    depth: float
    median: float
    mean: float
    max: float


@dataclass(frozen=True)
class WorstCase:
    """A long input with one of the largest simulation errors, and its best witness."""

    index: int
    x: np.ndarray
    z: Witness
    joint: float
    task_gap: float
    model_gap: float
    short_error: float
    long_error: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "x": " ".join(str(int(t)) for t in self.x),
            "witness": self.z.to_dict(),
            "joint_error": self.joint,
            "task_gap": self.task_gap,
            "model_gap": self.model_gap,
            "short_error": self.short_error,
            "long_error": self.long_error,
        }


@dataclass
class LengthResult:
    """Everything measured at one test length T; per-input arrays have one entry per input.

    The error terms (``task_gap``, ``short_error``, ``model_gap``) are those of each input's
    chosen witness (least max(task gap, model gap)); ``matched_terms`` holds the same terms
    at the witness that best matches the *task* (least task gap), which says how the model
    treats a short input the task considers equivalent: the diagnosis reads those.
    """

    length: int
    eps_star: float
    task_floor: float
    simulatable: bool
    joint: np.ndarray
    long_error: np.ndarray
    task_gap: np.ndarray
    model_gap: np.ndarray
    short_error: np.ndarray
    floor_gap: np.ndarray
    signed_terms: np.ndarray | None
    by_method: dict[str, float]
    witness_lengths: np.ndarray
    witness_methods: list[str]
    probes: list[ProbeStat]
    matched_terms: dict[str, np.ndarray]
    coverage: dict[str, Coverage]
    attention: dict[str, dict[str, list[float]]]
    worst: list[WorstCase]
    worst_case_trace: list[float] = field(default_factory=list)
    diagnosis: Diagnosis | None = None

    @property
    def ratio(self) -> float:
        """eps* over the task's floor: 1 means as simulatable as the task itself (below 1
        when the model-guided search beat the constructions)."""
        if self.task_floor > 0:
            return self.eps_star / self.task_floor
        return 1.0 if self.eps_star == 0 else math.inf

    def row(self) -> dict[str, Any]:
        """One row of `CheckReport.table`."""
        return {
            "T": self.length,
            "eps*": self.eps_star,
            "task floor": self.task_floor,
            "ratio": self.ratio,
            "long error": float(self.long_error.mean()),
            "task gap": float(self.task_gap.mean()),
            "short error": float(self.short_error.mean()),
            "model gap": float(self.model_gap.mean()),
            "witness len": float(self.witness_lengths.mean()),
            "verdict": "simulatable" if self.simulatable else "NOT simulatable",
        }

    def to_dict(self, samples: int, delta: float) -> dict[str, Any]:
        methods: dict[str, int] = {}
        for method in self.witness_methods:
            methods[method] = methods.get(method, 0) + 1
        return {
            "T": self.length,
            "eps_star": self.eps_star,
            "task_floor": self.task_floor,
            "ratio_to_floor": self.ratio,
            "simulatable": self.simulatable,
            "counts": {
                "inputs": samples,
                "needed_within_eps": needed_count(samples, delta),
                "best_witness_methods": methods,
            },
            "eps_star_by_method": self.by_method,
            "errors": {
                name: _moments(getattr(self, name))
                for name in ("long_error", "task_gap", "short_error", "model_gap", "joint")
            },
            "witness_length": _moments(self.witness_lengths.astype(float)),
            "probes": [vars(s) for s in self.probes],
            "coverage": {
                name: {"outside": c.outside, "nn_ratio": c.ratio, "threshold": c.threshold}
                for name, c in self.coverage.items()
            },
            "attention": self.attention,
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
    def simulatable(self) -> bool:
        """True when eps* <= eps at every test length."""
        return all(r.simulatable for r in self.results)

    @property
    def verdict(self) -> str:
        """One sentence: simulatable or not, at which (T, N, eps, delta)."""
        c = self.config
        lengths = ", ".join(str(r.length) for r in self.results)
        if self.simulatable:
            return (
                f"simulatable at T={lengths} from N={c['train_len']} with eps={c['eps']}, "
                f"delta={c['delta']}"
            )
        failing = ", ".join(str(r.length) for r in self.results if not r.simulatable)
        return (
            f"NOT simulatable at T={failing} from N={c['train_len']} with eps={c['eps']}, "
            f"delta={c['delta']}"
        )

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
        """One row per test length: eps*, the task floor, mean error terms, verdict."""
        return pd.DataFrame([r.row() for r in self.results]).set_index("T")

    def probe_table(self) -> pd.DataFrame:
        """Median normalised discrepancy per probe and head (rows) and test length (columns)."""
        rows = {}
        for r in self.results:
            for s in r.probes:
                key = (s.depth, s.probe, "" if s.head is None else s.head)
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
                "simulatable": self.simulatable,
                "config": c,
                "results": [r.to_dict(c["samples"], c["delta"]) for r in self.results],
            }
        )

    def to_json(self) -> str:
        """The certificate as canonical JSON (sorted keys, two-space indent)."""
        return json.dumps(self.certificate(), indent=2, sort_keys=True) + "\n"

    def summary(self) -> str:
        """The terminal summary: verdict, per-length table, diagnoses."""
        with pd.option_context("display.float_format", "{:.4g}".format, "display.width", 120):
            lines = [self.verdict, "", self.table().to_string(), ""]
        for r in self.results:
            if r.diagnosis:
                lines.append(f"T={r.length}:")
                lines += [f"  {line}" for line in r.diagnosis.lines()]
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
        table = self.table().to_html(float_format=lambda v: f"{v:.4g}")
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
