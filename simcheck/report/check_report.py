"""The result of `simcheck.check`: verdict, tables, figures, certificate and HTML report.

The certificate is versioned JSON with sorted keys and floats rounded to 6 significant
digits, written without timestamps, so the same model, settings and seed give the same
bytes. `CheckReport.save` writes it into one folder together with the per-input
measurements (``per_input.npz``), the summary, the figures and the HTML report, staged in a
hidden folder and renamed into place, so a killed save never leaves a folder that looks like
a finished check; `CheckReport.load` reads such a folder back. `check_name` names a check's
folder by its settings, so checks with other settings sit side by side in ``RUN/check/``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import secrets
import shutil
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from simcheck._util.io import write_text
from simcheck.checking.columns import table_row
from simcheck.checking.forecast import Forecast, LengthRange
from simcheck.checking.outcomes import FAILS_SHORT, NOT_SIMULATABLE, Outcome
from simcheck.checking.results import LengthResult
from simcheck.errors import SimcheckError

if TYPE_CHECKING:
    from simcheck.checking.config import CheckConfig

CERTIFICATE_FORMAT = "simcheck-certificate"
CERTIFICATE_VERSION = 4
"""Version 3 added each worst input's attention by key type (``worst[].attention``);
version 4 the interventions (``interventions``: patching and repairs), each cause's repair
and confirmation, the slack quantile and the range (``range``)."""
LISTED_VERSIONS = (2, 3, 4)
"""Certificate versions whose outcomes `simcheck show` lists (both record per-length
outcomes; `CheckReport.load` reads only the current one, which comes with per-input data)."""
CERTIFICATE_FILE = "certificate.json"
SUMMARY_FILE = "summary.txt"
HTML_FILE = "report.html"
PER_INPUT_FILE = "per_input.npz"
FIGURES = ("decomposition.png", "discrepancy.png", "coverage.png")
"""The summary figures; each test length adds ``attention-T<length>.png``."""
CHECK_DIR = "check"
"""The folder of a run directory that holds its checks, one sub-folder per settings."""
DEFAULT_CHECK_NAME = "default"
"""The folder name of a check with every setting at its default."""


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


PATCHING_COLUMNS = (
    "site",
    "kind",
    "layer",
    "head",
    "removed",
    "low",
    "high",
    "gap_removed",
    "gap_low",
    "gap_high",
    "inputs",
)
"""The columns of `CheckReport.patching`: the site, the share of the long error removed and
its interval, the share of the model gap removed and its interval, the inputs."""
REPAIR_COLUMNS = ("cause", "target", "action", "removed", "low", "high", "confirmed")
"""The columns of `CheckReport.repairs`."""
TOP_SITES = 3
"""Sites the summary names, those whose patch removed the most of the long error."""


class PatchingFrame(pd.DataFrame):
    """`CheckReport.patching`: a DataFrame, one row per site, whose ``plot()`` draws the
    heatmap of the removed share (layers by component) instead of pandas' line plot."""

    @property
    def _constructor(self) -> type[PatchingFrame]:
        return PatchingFrame

    def plot(self, column: str = "removed") -> Figure:  # type: ignore[override]
        """Heatmap of ``column`` (``removed``: share of the long error; ``gap_removed``:
        of the model gap), rows the layers, columns the sites within a layer."""
        from simcheck.report.figures import patching_figure

        return patching_figure(self, column)


def intervention_lines(result: LengthResult) -> list[str]:
    """What the summary says of a length's interventions beyond the diagnosis: the sites
    whose patch from the witness removed the most of the long error, and the repairs tried
    that no cause names."""
    if not result.patching:
        return []
    ranked = sorted(
        (row for row in result.patching if math.isfinite(row.error.removed)),
        key=lambda row: -row.error.removed,
    )
    inputs = result.patching[0].error.inputs
    if not ranked:
        return [
            f"interchange with the witness: no long error to remove on the {inputs} "
            "uncovered inputs"
        ]
    top = "; ".join(
        f"{row.site} {row.error.removed:.0%} [{row.error.low:.0%}, {row.error.high:.0%}]"
        for row in ranked[:TOP_SITES]
    )
    lines = [
        f"interchange with the witness ({inputs} uncovered inputs, each state at the query "
        f"patched from the task-matched witness): most of the long error removed by {top}"
    ]
    causes = result.diagnosis.causes if result.diagnosis else []
    named = {(c.repair.cause, c.repair.target) for c in causes if c.repair is not None}
    others = [
        r
        for r in result.repairs
        if (r.cause, r.target) not in named and r.error is not None
        and math.isfinite(r.error.removed)
    ]  # fmt: skip
    if others:
        shares = "; ".join(f"{r.target} {r.error.removed:.0%}" for r in others if r.error)
        lines.append(f"other repairs tried (share of the long error removed): {shares}")
    return lines


class CheckReport:
    """The answer of `simcheck.check`.

    Attributes:
        config: the settings, model hash, task spec and library versions of the check.
        results: one `LengthResult` per test length.
        forecast: where a check with ``up_to`` forecasts the certificate to end (None
            otherwise; `simcheck.checking.forecast`).
    """

    def __init__(
        self,
        config: dict[str, Any],
        results: list[LengthResult],
        forecast: Forecast | None = None,
    ) -> None:
        self.config = config
        self.results = results
        self.forecast = forecast

    # ----------------------------------------------------------------- answers
    @property
    def outcome(self) -> dict[int, str]:
        """The outcome per test length (`simcheck.checking.outcomes`)."""
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
        return pd.DataFrame([table_row(r) for r in self.results]).set_index("T")

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

    def patching(self, length: int) -> PatchingFrame:
        """The interchange interventions at test length ``length``: one row per site (the
        residual stream before a layer, a head's output, a head's attention per key type, an
        MLP's output), with the share of the long error and of the model gap that patching
        the site from the witness removed and their intervals. ``.plot()`` draws the
        heatmap. Empty where no intervention ran (the length is certified, or
        ``interventions=False``)."""
        rows = [
            {
                "site": row.site,
                "kind": row.kind,
                "layer": row.layer,
                "head": row.head,
                "removed": row.error.removed,
                "low": row.error.low,
                "high": row.error.high,
                "gap_removed": row.gap.removed,
                "gap_low": row.gap.low,
                "gap_high": row.gap.high,
                "inputs": row.error.inputs,
            }
            for row in self.result(length).patching
        ]
        frame = PatchingFrame(rows, columns=list(PATCHING_COLUMNS))
        frame.attrs["T"] = length
        return frame.set_index("site") if rows else frame

    def repairs(self, length: int) -> pd.DataFrame:
        """The repairs tried at test length ``length``: cause, target, action, the share of
        the long error removed with its interval, and whether it confirms the cause."""
        rows = [
            {
                "cause": r.cause,
                "target": r.target,
                "action": r.action,
                "removed": r.error.removed if r.error else math.nan,
                "low": r.error.low if r.error else math.nan,
                "high": r.error.high if r.error else math.nan,
                "confirmed": r.confirmed,
            }
            for r in self.result(length).repairs
        ]
        return pd.DataFrame(rows, columns=list(REPAIR_COLUMNS))

    def length_range(self) -> LengthRange:
        """The checked lengths as a range: the longest length up to which all are
        certified, the first that is not, the first where the model fails, and the forecast
        of where the certificate ends (made by a check with ``up_to``; see
        `simcheck.checking.forecast`)."""
        results = sorted(self.results, key=lambda r: r.length)
        certified = []
        for r in results:
            if not r.certified:
                break
            certified.append(r)
        first = results[len(certified)] if len(certified) < len(results) else None
        failure = next((r for r in results if r.outcome in (NOT_SIMULATABLE, FAILS_SHORT)), None)
        return LengthRange(
            lengths=tuple(r.length for r in results),
            outcomes=tuple(r.outcome for r in results),
            longest_certified=certified[-1].length if certified else None,
            first_uncertified=first.length if first else None,
            first_failure=failure.length if failure else None,
            forecast=self.forecast,
        )

    @property
    def slack_statistic(self) -> str:
        """What the per-input slack measures for this check's task
        (`simcheck.checking.forecast`)."""
        return self.config.get("slack_statistic", "slack")

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
                "range": self.length_range().to_dict(),
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
            lines.append(f"T={r.length}: {r.outcome}: {Outcome(r.outcome).meaning}")
            lines += [f"  {line}" for line in self.details(r)]
            if not r.certified:
                lines.append(f"  what to do: {Outcome(r.outcome).advice}")
        if self.config.get("up_to") is not None or len(self.results) > 1:
            lines += ["", *self.length_range().lines()]
        return "\n".join(lines).rstrip() + "\n"

    def details(self, result: LengthResult) -> list[str]:
        """What the summary and the HTML report say of one test length below its outcome:
        the certified bound, or the diagnosis."""
        if result.certified:
            return [
                f"long error <= {result.chain_bound:.3g} (the chain bound) on all but "
                f"{self.config['delta']:g} of inputs; uncovered fraction at most "
                f"{result.chain_interval.high:.3f} at {self.config['confidence']:.0%} confidence"
            ]
        lines = result.diagnosis.lines() if result.diagnosis else []
        return lines + intervention_lines(result)

    def plot(self) -> Figure:
        """Error decomposition against T, per-probe discrepancy heatmap and coverage."""
        from simcheck.report.figures import report_figure

        return report_figure(self)

    def to_html(self) -> str:
        """A self-contained HTML report (figures inlined as PNG), every inserted value
        escaped: see `simcheck.report.html`."""
        from simcheck._util.plotting import png_bytes
        from simcheck.report.figures import figures

        return self._html({name: png_bytes(fig) for name, fig in figures(self).items()})

    def _html(self, images: dict[str, bytes]) -> str:
        from simcheck.report.html import render_page

        return render_page(self, images)

    def _repr_html_(self) -> str:
        from simcheck.report.html import render_table

        return render_table(self)

    def __repr__(self) -> str:
        return f"CheckReport({self.verdict})"

    def save(self, directory: str | Path, overwrite: bool = True, figures: bool = True) -> Path:
        """Write the certificate, the per-input measurements, the summary, the figures and
        the HTML report into the folder ``directory``; returns it. Without ``figures`` (as
        sweeps save their many checks) the figures and the HTML report are left out: what
        `load` reads is still there.

        The files are written into a hidden folder beside it, which is then renamed into
        place, so an interrupted save leaves no folder that looks like a finished check. A
        folder that already holds a check is replaced when ``overwrite`` is true and refused
        otherwise; one that holds anything a check does not write is always refused.
        """
        from simcheck._util.plotting import png_bytes
        from simcheck.report.figures import figures as draw_figures

        out = Path(directory)
        ensure_replaceable(out, overwrite)
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = _hidden_sibling(out, "partial")
        staging.mkdir()
        try:
            write_text(staging / CERTIFICATE_FILE, self.to_json())
            write_text(staging / SUMMARY_FILE, self.summary())
            arrays = {
                f"T{r.length}|{name}": value
                for r in self.results
                for name, value in r.per_input().items()
            }
            np.savez_compressed(staging / PER_INPUT_FILE, **arrays)
            if figures:
                images = {name: png_bytes(fig) for name, fig in draw_figures(self).items()}
                for name, data in images.items():
                    (staging / name).write_bytes(data)
                write_text(staging / HTML_FILE, self._html(images))
            if out.exists():
                replaced = _hidden_sibling(out, "replaced")
                os.replace(out, replaced)
                os.replace(staging, out)
                shutil.rmtree(replaced)
            else:
                os.replace(staging, out)
        finally:
            if staging.exists():
                shutil.rmtree(staging)
        return out

    @classmethod
    def load(cls, directory: str | Path) -> CheckReport:
        """The check `save` wrote into ``directory``: its outcome, tables, summary,
        certificate and figures (numbers the certificate rounds come back as the
        certificate has them). Certificates of an older version are refused."""
        folder = Path(directory)
        path = folder / CERTIFICATE_FILE
        if not path.is_file():
            raise SimcheckError(f"{folder} holds no saved check: {CERTIFICATE_FILE} is missing")
        try:
            certificate = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise SimcheckError(f"{path} is not a readable certificate: {err}") from err
        if not isinstance(certificate, dict) or certificate.get("format") != CERTIFICATE_FORMAT:
            raise SimcheckError(f"{path} is not a simcheck certificate")
        version = certificate.get("version")
        if version != CERTIFICATE_VERSION:
            raise SimcheckError(
                f"{path} is certificate version {version}; this simcheck reads version "
                f"{CERTIFICATE_VERSION}: run the check again to save it in this version"
            )
        if not (folder / PER_INPUT_FILE).is_file():
            raise SimcheckError(
                f"{folder} has no {PER_INPUT_FILE} (CheckReport.save writes it beside the "
                "certificate): run the check again and save it"
            )
        try:
            with np.load(folder / PER_INPUT_FILE, allow_pickle=False) as saved:
                arrays = {key: saved[key] for key in saved.files}
            results = []
            for data in certificate["results"]:
                prefix = f"T{data['T']}|"
                mine = {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
                results.append(LengthResult.from_saved(data, mine))
            forecast = (certificate.get("range") or {}).get("forecast")
            return cls(
                certificate["config"],
                results,
                None if forecast is None else Forecast.from_dict(forecast),
            )
        except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as err:
            raise SimcheckError(
                f"{folder} holds an incomplete or damaged check ({type(err).__name__}: {err}): "
                "run the check again"
            ) from err


def check_name(config: CheckConfig, train_len: int | None = None) -> str:
    """The name of a check's folder inside ``RUN/check/``, from its settings.

    ``default`` when every setting is at its default (and N is the run's); otherwise the
    settings a reader looks for first, where they differ (``T256-1024``, ``eps0.05``,
    ``hardmax8``), joined by ``_`` and followed by 8 hex digits of a hash of every other
    setting that differs (``settings-<hash>`` when only those do). The same settings always
    get the same name, and checks with other settings never share a folder.
    """
    from simcheck.checking.config import CheckConfig

    defaults = CheckConfig().to_dict()
    changed = {k: v for k, v in config.to_dict().items() if v != defaults[k]}
    if train_len is not None:
        changed["train_len"] = train_len
    parts = []
    if "test_lengths" in changed:
        parts.append("T" + "-".join(str(t) for t in changed.pop("test_lengths")))
    if "eps" in changed:
        parts.append(f"eps{changed.pop('eps'):g}")
    if "attention" in changed:
        parts.append(changed.pop("attention").replace(":", ""))
    if changed:
        text = json.dumps(changed, sort_keys=True, default=str)
        digest = hashlib.sha256(text.encode()).hexdigest()[:8]
        parts.append(digest if parts else f"settings-{digest}")
    return "_".join(parts) or DEFAULT_CHECK_NAME


def _check_file(path: Path) -> bool:
    """Whether ``path`` is a file `CheckReport.save` writes."""
    names = (CERTIFICATE_FILE, SUMMARY_FILE, HTML_FILE, PER_INPUT_FILE)
    return path.is_file() and (path.name in names or path.suffix == ".png")


def ensure_replaceable(directory: Path, overwrite: bool) -> None:
    """Refuse to save a check into ``directory`` when it is a file, holds anything a check
    does not write, or already holds a check and ``overwrite`` is false."""
    if not directory.exists():
        return
    if not directory.is_dir():
        raise SimcheckError(f"{directory} is a file, not a folder for a check")
    entries = sorted(directory.iterdir())
    foreign = [p.name for p in entries if not _check_file(p)]
    if foreign:
        raise SimcheckError(
            f"{directory} holds {', '.join(foreign[:3])}, which a check does not write: "
            "save the check into a new folder"
        )
    if entries and not overwrite:
        raise SimcheckError(
            f"{directory} already holds a check: pass --overwrite (in Python, overwrite=True) "
            "to replace it, or save into another folder"
        )


def _hidden_sibling(path: Path, purpose: str) -> Path:
    """A fresh hidden name beside ``path`` (listings of checks skip hidden folders)."""
    return path.parent / f".{path.name}.{purpose}-{secrets.token_hex(4)}"


def saved_checks(run_dir: Path) -> list[Path]:
    """The folders of a run directory that hold a saved check: each settings' folder in
    ``check/``, and ``check/`` itself or a ``check-*`` folder where an earlier layout saved
    one there."""
    found = []
    for folder in sorted(run_dir.glob(f"{CHECK_DIR}*")):
        if (folder / CERTIFICATE_FILE).is_file():
            found.append(folder)
        if folder.name == CHECK_DIR and folder.is_dir():
            found += sorted(
                sub
                for sub in folder.iterdir()
                if not sub.name.startswith(".") and (sub / CERTIFICATE_FILE).is_file()
            )
    return found
