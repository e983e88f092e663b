"""The HTML report of a check: a Jinja2 template that escapes every value it inserts.

Everything the page shows comes from the report (task spec, source, witness names, the
diagnosis's sentences), and some of it from the user (a task or witness function's name, a
path): the template environment escapes by default, so none of it can inject markup, and
no value is marked safe. Figures are inlined as base64 PNG, so the page is one file.

The page: the verdict and settings; the per-length table with what each column means; per
test length the outcome, its meaning, the certified bound or the diagnosis, the three long
inputs with the largest chains as token strips (x above its witness z, the kept tail
outlined, the chain's terms beside) and the attention of the worst one beside its witness's;
then the summary figures with what each measures, and the probe discrepancy table.
"""

from __future__ import annotations

import base64
import math
from typing import Any

from jinja2 import DictLoader, Environment

from simcheck.checking.columns import TABLE_COLUMNS
from simcheck.checking.effects import CONFIRM_SHARE
from simcheck.checking.outcomes import Outcome

COLUMNS = tuple((column.label, column.help) for column in TABLE_COLUMNS)
"""Every column of `CheckReport.table` with what it means (`simcheck.checking.columns`)."""

MAX_STRIP = 2048
"""Token strips longer than this show their first and last MAX_STRIP / 2 tokens."""

_PAGE = """{%- macro strip(cells) -%}
<div class="strip">{% for c in cells %}{% if c.gap %}<span class="gap">... {{ c.gap }} tokens
...</span>{% else %}<span class="k{{ c.token % 10 }}{{ ' r0' if c.r0 }}{{ ' tail' if c.tail }}"
title="position {{ c.position }}, token {{ c.token }}">{{ c.token }}</span>{% endif %}{% endfor %}
</div>
{%- endmacro -%}
<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>simcheck report: {{ task }}</title>
<style>
body{font-family:sans-serif;max-width:1150px;margin:2em auto;padding:0 1em;line-height:1.4}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:2px 6px}
th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}
img{max-width:100%}figure{margin:1em 0}figcaption{font-size:.9em;color:#333}
dl.cols{display:grid;grid-template-columns:max-content auto;gap:.15em 1em;font-size:.9em}
dl.cols dt{font-weight:bold}dl.cols dd{margin:0}
.strip{display:flex;flex-wrap:wrap;gap:1px;margin:.2em 0 .6em 0}
.strip span{display:inline-block;width:11px;height:15px;font:9px/15px monospace;
 text-align:center;color:#222}
.strip span.r0{box-shadow:inset 2px 0 0 #555}
.strip span.tail{outline:2px solid #000;outline-offset:-2px}
.strip span.gap{width:auto;padding:0 4px;background:#fff;color:#555}
.k0{background:#9ecae1}.k1{background:#fdae6b}.k2{background:#a1d99b}.k3{background:#bcbddc}
.k4{background:#fc9272}.k5{background:#c7e9c0}.k6{background:#fdd0a2}.k7{background:#d9d9d9}
.k8{background:#f7b6d2}.k9{background:#dadaeb}
.case{border-left:3px solid #ddd;padding-left:.8em;margin:1em 0}.label{font-size:.9em}
</style></head><body>
<h1>simcheck: {{ task }}</h1>
<p><b>{{ verdict }}</b></p>
<p>{% for name, value in settings %}{{ name }} <code>{{ value }}</code>{% if not loop.last %},
{% endif %}{% endfor %}</p>
{% include "table" %}
<h2>Columns</h2>
<dl class="cols">{% for name, meaning in columns %}<dt>{{ name }}</dt><dd>{{ meaning }}</dd>
{% endfor %}</dl>
<h2>Outcomes</h2>
<dl class="cols">{% for name, meaning in outcomes %}<dt>{{ name }}</dt><dd>{{ meaning }}</dd>
{% endfor %}</dl>
{% for section in sections %}
<h2>T = {{ section.length }}: {{ section.outcome }}</h2>
<p>{{ section.meaning }}</p>
{% if section.lines %}<ul>{% for line in section.lines %}<li>{{ line }}</li>{% endfor %}
</ul>{% endif %}
{% if section.advice %}<p>what to do: {{ section.advice }}</p>{% endif %}
{% if section.cases %}
<h3>The long inputs with the largest chains, above their witnesses</h3>
<p class="label">Each cell is a token, coloured by its id (hover for its position); a dark
left edge marks the positions t = 0 mod Delta = {{ period }}; outlined: the last tau + 1 =
{{ tail }} token(s), which every witness keeps verbatim (the window and the query).</p>
{% for case in section.cases %}<div class="case">
<p class="label">input {{ case.index }}: chain {{ case.chain }} = task gap {{ case.task_gap }} +
short error {{ case.short_error }} + model gap {{ case.model_gap }}; long error
{{ case.long_error }}</p>
<div class="label">x, {{ case.x_length }} tokens</div>
{{ strip(case.x) }}
<div class="label">z, {{ case.z_length }} tokens, by {{ case.method }}</div>
{{ strip(case.z) }}
</div>{% endfor %}{% endif %}
{% if section.attention %}<figure><img alt="attention at T={{ section.length }}"
src="data:image/png;base64,{{ section.attention }}"><figcaption>The attention of the last
query on the first input above (the largest chain) and on its witness: the mass on each key
type (token, position mod Delta; positions as the model counts them, a prefix included), per
head of each layer. Where the witness simulates x, the model spreads its attention over the
types alike on both.</figcaption></figure>{% endif %}
{% if section.patching %}<figure><img alt="patching at T={{ section.length }}"
src="data:image/png;base64,{{ section.patching }}"><figcaption>Interchange interventions on
the uncovered long inputs: each long input x is run with one state at its query position
replaced by its task-matched witness's (the residual stream before a layer, a head's output,
a head's attention redistributed to the witness's mass per key type, an MLP's output); each
cell is the share of the long error that removed (blue) or added (red).</figcaption>
</figure>{% endif %}
{% if section.repairs %}<h3>Repairs: an intervention on the model per suspected cause</h3>
<table><tr><th>cause</th><th>target</th><th>action</th><th>long error removed</th>
<th>interval</th><th>confirmed</th></tr>{% for r in section.repairs %}<tr><td>{{ r.cause }}</td>
<td>{{ r.target }}</td><td>{{ r.action }}</td><td class="num">{{ r.removed }}</td>
<td class="num">{{ r.interval }}</td><td>{{ r.confirmed }}</td></tr>{% endfor %}</table>
<p class="label">A cause is confirmed when its repair removes at least {{ confirm_share }} of
the long error on the uncovered inputs, with the interval above 0.</p>{% endif %}
{% endfor %}
<h2>Figures</h2>
{% for figure in figures %}<figure><img alt="{{ figure.name }}"
src="data:image/png;base64,{{ figure.data }}"><figcaption>{{ figure.caption }}</figcaption>
</figure>{% endfor %}
<h2>Probe discrepancy (median over long inputs, x its spread)</h2>
<table><tr><th>probe</th><th>head</th>{% for t in probe_lengths %}<th>T={{ t }}</th>
{% endfor %}</tr>{% for row in probe_rows %}<tr><td>{{ row.probe }}</td><td>{{ row.head }}</td>
{% for value in row.cells %}<td class="num">{{ value }}</td>{% endfor %}</tr>{% endfor %}
</table>
</body></html>
"""

_NOTEBOOK = """<p>{{ verdict }}</p>
{% include "table" %}"""

_TABLE = """<table><tr>{% for name, meaning in columns %}<th title="{{ meaning }}">{{ name }}</th>
{% endfor %}</tr>{% for row in rows %}<tr>{% for value in row %}<td class="num">{{ value }}</td>
{% endfor %}</tr>{% endfor %}</table>
"""

FIGURE_CAPTIONS = {
    "decomposition.png": (
        "The mean of each term of the chain over the long inputs, the chain bound, eps* and "
        "the task floor against T; the red line is eps."
    ),
    "discrepancy.png": (
        "Per probed state (and head), the median over long inputs of the distance between "
        "the state on x and on its chain witness, divided by the state's spread over inputs "
        "of lengths <= N, on a log10 colour scale that turns red above diverge_at (marked on "
        "the colour bar): the diagnosis calls those states diverging, and its first "
        "diverging state is the earliest of them."
    ),
    "coverage.png": (
        "Per residual state, the fraction of long inputs whose state lies farther from every "
        "state of the inputs of lengths <= N than those lie from each other (the 99th "
        "percentile of their nearest-neighbour distances). It compares with the nearest "
        "short state, not with the input's witness: a state can diverge from its witness's "
        "(ringed: median discrepancy above diverge_at, what the diagnosis reads) while lying "
        "near the state of some other short input, as learned position rows beyond N lie "
        "near the trained rows of other lengths. The diagnosis names a state when either "
        "holds for more than half the inputs (dotted line)."
    ),
}


def _environment() -> Environment:
    """The templates, escaping every inserted value (``autoescape`` on every template)."""
    return Environment(
        loader=DictLoader({"page": _PAGE, "notebook": _NOTEBOOK, "table": _TABLE}), autoescape=True
    )


def _number(value: float, digits: int = 4) -> str:
    """A table's number as the summary prints it ("-" for NaN, as for a zero floor)."""
    return "-" if isinstance(value, float) and math.isnan(value) else f"{value:.{digits}g}"


def _cells(tokens: Any, tail: int, period: int) -> list[dict[str, Any]]:
    """The token strip of one sequence: a cell per token (the middle of a very long one
    left out and counted)."""
    length = len(tokens)
    positions = list(range(length))
    if length > MAX_STRIP:
        half = MAX_STRIP // 2
        positions = [*range(half), -1, *range(length - half, length)]
    cells = []
    for t in positions:
        if t < 0:
            cells.append({"gap": length - MAX_STRIP})
            continue
        cells.append(
            {
                "gap": 0,
                "token": int(tokens[t]),
                "position": t,
                "r0": period > 1 and t % period == 0,
                "tail": t >= length - tail,
            }
        )
    return cells


def _sections(report: Any, images: dict[str, bytes]) -> list[dict[str, Any]]:
    """Per test length, what the page shows: outcome, meaning, bound or diagnosis, advice,
    the worst inputs' token strips and chain terms, and the attention figure."""
    from simcheck.report.figures import attention_figure_name, patching_figure_name

    structure = report.config["structure"]
    tail, period = structure["window"] + 1, structure["period"]
    sections = []
    for r in report.results:
        cases = [
            {
                "index": w.index,
                "chain": f"{w.chain:.3g}",
                "task_gap": f"{w.task_gap:.3g}",
                "short_error": f"{w.short_error:.3g}",
                "model_gap": f"{w.model_gap:.3g}",
                "long_error": f"{w.long_error:.3g}",
                "x_length": len(w.x),
                "z_length": w.z.length,
                "method": w.z.method,
                "x": _cells(w.x, tail, period),
                "z": _cells(w.z.tokens, tail, period),
            }
            for w in r.worst
        ]
        attention = images.get(attention_figure_name(r.length))
        patching = images.get(patching_figure_name(r.length))
        repairs = [
            {
                "cause": repair.cause,
                "target": repair.target,
                "action": repair.action,
                "removed": "-" if repair.error is None else f"{repair.error.removed:.0%}",
                "interval": "-"
                if repair.error is None
                else f"[{repair.error.low:.0%}, {repair.error.high:.0%}]",
                "confirmed": "yes" if repair.confirmed else "no",
            }
            for repair in r.repairs
        ]
        sections.append(
            {
                "length": r.length,
                "outcome": r.outcome,
                "meaning": Outcome(r.outcome).meaning,
                "advice": None if r.certified else Outcome(r.outcome).advice,
                "lines": report.details(r),
                "cases": cases,
                "attention": _base64(attention) if attention else None,
                "patching": _base64(patching) if patching else None,
                "repairs": repairs,
            }
        )
    return sections


def _base64(data: bytes) -> str:
    """PNG bytes as the text of a data: URL."""
    return base64.b64encode(data).decode()


def _table_context(report: Any) -> dict[str, Any]:
    """The verdict, the columns and the rows of `CheckReport.table`, formatted."""
    table = report.table().reset_index()
    rows = [
        [_number(v) if isinstance(v, float) else str(v) for v in row]
        for row in table.itertuples(index=False)
    ]
    return {"verdict": report.verdict, "columns": COLUMNS, "rows": rows}


def render_table(report: Any) -> str:
    """The verdict and the per-length table, each header explaining its column."""
    return _environment().get_template("notebook").render(**_table_context(report))


def render_page(report: Any, images: dict[str, bytes]) -> str:
    """The whole report; ``images`` are the PNGs of `simcheck.report.figures.figures`."""
    c = report.config
    settings = [
        ("source", c["source"]),
        ("weights sha256", c["model"]["weights_sha256"][:16] + "..."),
        ("N", c["train_len"]),
        ("Delta", c["structure"]["period"]),
        ("tau", c["structure"]["window"]),
        ("attention", c["attention"]),
        ("first look M", c["samples"]),
        ("witnesses", ", ".join(c["witnesses"])),
        ("seed", c["seed"]),
    ]
    probes = report.probe_table()
    figures = [
        {"name": name, "data": _base64(images[name]), "caption": caption}
        for name, caption in FIGURE_CAPTIONS.items()
        if name in images
    ]
    return (
        _environment()
        .get_template("page")
        .render(
            **_table_context(report),
            task=c["task"]["spec"],
            settings=settings,
            outcomes=[(o.value, o.meaning) for o in Outcome],
            sections=_sections(report, images),
            period=c["structure"]["period"],
            tail=c["structure"]["window"] + 1,
            figures=figures,
            confirm_share=f"{CONFIRM_SHARE:.0%}",
            probe_lengths=list(probes.columns),
            probe_rows=[
                {"probe": probe, "head": head, "cells": [_number(v, 3) for v in row]}
                for (probe, head), row in zip(probes.index, probes.to_numpy(float), strict=True)
            ],
        )
    )
