"""A MkDocs hook: ``<!-- settings: dotted.path.Class -->`` in a page becomes the table of that
settings class's fields (name, flag, default, range or choices, help), read from the fields'
own declarations (`simcheck.settings.fields.setting`), so the reference cannot drift from the
code."""

from __future__ import annotations

import dataclasses
import importlib
import re
from typing import Any

MARKER = re.compile(r"<!-- settings: ([\w.]+) -->")


def _default(field: dataclasses.Field) -> str:
    shown = field.metadata.get("shown")
    if shown:
        return shown
    if field.default is dataclasses.MISSING:
        return "required"
    value = field.default
    if isinstance(value, tuple):
        return ", ".join(map(str, value)) or "none"
    return "none" if value is None else str(value)


def _rule(field: dataclasses.Field) -> str:
    meta = field.metadata
    if meta.get("choices"):
        return "one of " + ", ".join(f"`{c}`" for c in meta["choices"])
    signs = (">", ">=", "<", "<=")
    bounds = meta.get("range", (None,) * 4)
    return " and ".join(f"{s} {v:g}" for s, v in zip(signs, bounds, strict=True) if v is not None)


def _table(path: str) -> str:
    module, _, name = path.rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    from simcheck.settings.fields import field_flag

    rows = ["| field | flag | default | values | what it sets |", "| --- | --- | --- | --- | --- |"]
    for field in dataclasses.fields(cls):
        meta = field.metadata
        flag = f"`{field_flag(field)}`" if meta.get("cli", True) else "(from the task)"
        help_text = str(meta.get("help", "")).replace("|", "\\|")
        rows.append(
            f"| `{field.name}` | {flag} | {_default(field)} | {_rule(field)} | {help_text} |"
        )
    return "\n".join(rows)


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    return MARKER.sub(lambda match: _table(match.group(1)), markdown)
