"""Sweep specifications: a TOML file (or a dict of the same shape) that names a grid of points.

A point is one model to train, evaluate and check. The file::

    name = "modp"                      # optional; default: the file's stem
    imports = ["mylab.tasks"]          # optional: modules that register your own tasks

    [grid]                             # axes: a list is an axis, a scalar a fixed value
    task = ["modp:p=3", "modp:p=5"]    # task spec strings
    pos = ["periodic", "learned"]      # any ModelSpec field (pos, n_layers, d_model, ...)
    train_len = [8, 16, 32]            # any TrainConfig field (train_len, steps, lr, ...)
    seed = [0, 1, 2]                   # the model's init seed, and the data seed

    [grid.params]                      # task parameters, crossed with every task
    k = [0, 1]

    [model]                            # fixed ModelSpec fields
    d_model = 32

    [train]                            # fixed TrainConfig fields
    steps = 3000

    [eval]                             # simcheck.evaluate at each point
    lengths = "8..1024*2"              # see simcheck.settings.lengths; or a list [8, 16]
    samples = 256
    seed = 1

    [check]                            # simcheck.check at each point (enabled = false skips it)
    test_lengths = [256]               # any CheckConfig field; no test_lengths: 8 N
    eps = 0.1
    samples = 50

Several ``[[grid]]`` tables make a sweep the union of their grids (points in more than one
are run once). ``imports`` names modules to import before the spec is read and in every
worker process before a point runs: tasks registered with ``@register_task`` in a module of
your own are then known everywhere (a task defined in a notebook cell is not: worker
processes start fresh). Importing a module runs its code, even for ``--dry-run``: a spec with
``imports`` must be trusted like any Python file you run.

Every point's full configuration (its task, `ModelSpec`, `TrainConfig` and `CheckConfig`, and
the lengths against the model) is validated when the spec is read, each distinct value once,
so a typo fails before any training starts. A grid of more than `MAX_POINTS` points is
refused from its axes' lengths, before it is expanded. Names become safe directory names
(`safe_name`), so no point or sweep writes outside the sweep's folder.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib
import itertools
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

from simcheck.checking.config import CheckConfig
from simcheck.errors import SimcheckError, SweepSpecError
from simcheck.evaluation.evaluation import parse_lengths
from simcheck.model.build import ModelSpec
from simcheck.tasks import Task, get_task, task_class, task_parameters
from simcheck.training.trainer import TrainConfig

MODEL_FIELDS = tuple(
    f.name for f in dataclasses.fields(ModelSpec) if f.name not in ("d_vocab", "d_vocab_out")
)
TRAIN_FIELDS = tuple(f.name for f in dataclasses.fields(TrainConfig))
TOP_LEVEL_KEYS = ("name", "imports", "grid", "model", "train", "eval", "check")
DEFAULT_EVAL_LENGTHS = (8, 16, 32, 64, 128, 256, 512, 1024)
MAX_POINTS = 10_000
"""The most points a spec may hold (its grids together). Each point trains a model, so a
larger grid is almost always a typo, and expanding and validating it would take minutes."""
MAX_ATTENTION_BYTES = 1 << 40
"""The most memory (1 TiB) one forward pass may need for its attention scores alone (batch x
heads x length^2 float32 numbers, one layer): a point beyond it is a typo, which would
otherwise fail for want of memory, or run for days, only once the sweep reached it."""
NAME_CHARS = 80
"""The longest readable part of a sweep's or a point's directory name."""
_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")


def _slug(text: str) -> str:
    """``text`` with every run of characters other than ASCII letters, digits and ``._+-``
    turned into ``-``, without leading dots or dashes, cut to `NAME_CHARS`: a name that no
    path separator, ``..`` or control character can turn into another directory."""
    return _UNSAFE.sub("-", text).lstrip(".-")[:NAME_CHARS]


def safe_name(text: str) -> str:
    """``text`` as a directory name that stays where it is put (see `_slug`). When cleaning
    changed it, a hash of the original is appended, so that two names differing only in what
    was removed still get two directories."""
    slug = _slug(text)
    if slug and slug == text:
        return slug
    return f"{slug or 'sweep'}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"


@dataclass(frozen=True)
class EvalSettings:
    """What `simcheck.evaluate` does at every point."""

    lengths: tuple[int, ...] = DEFAULT_EVAL_LENGTHS
    samples: int = 256
    seed: int = 1

    def __post_init__(self) -> None:
        for name, least in (("samples", 1), ("seed", 0)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                raise SweepSpecError(f"[eval] {name} must be an integer >= {least}, got {value!r}")


@dataclass(frozen=True)
class CheckSettings:
    """What `simcheck.check` does at every point: a `CheckConfig` (the ``[check]`` table
    sets its fields; no test lengths means 8 N at each point); ``enabled = false`` skips
    the check."""

    enabled: bool = True
    config: CheckConfig = field(default_factory=CheckConfig)

    def to_dict(self) -> dict[str, Any]:
        return {"enabled": self.enabled, **self.config.to_dict()}


@dataclass(frozen=True)
class Point:
    """One model of a sweep: its task, model options and training options.

    ``model`` and ``train`` hold only the options the spec sets (sorted pairs), so the point's
    name and digest do not change when a default elsewhere in the spec changes."""

    task: str
    model: tuple[tuple[str, Any], ...]
    train: tuple[tuple[str, Any], ...]

    @property
    def options(self) -> dict[str, Any]:
        return {**dict(self.model), **dict(self.train)}

    @property
    def digest(self) -> str:
        """A hash of everything that decides the trained weights."""
        blob = json.dumps([self.task, self.model, self.train], sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:10]

    @functools.cached_property
    def name(self) -> str:
        """The point's directory name, readable, unique and safe: the task with its
        non-default parameters, positions, N and seed (through `_slug`, so a task name or a
        string parameter cannot lead out of the sweep's folder) and the digest, e.g.
        ``modp-p5-periodic-N16-s0-<digest>``."""
        task = get_task(self.task)
        defaults = type(task)().params()
        changed = "".join(f"-{k}{v}" for k, v in task.params().items() if defaults.get(k) != v)
        spec, n = self.model_spec(), self.train_config().train_len
        return f"{_slug(f'{task.name}{changed}-{spec.pos}-N{n}-s{spec.seed}')}-{self.digest}"

    def model_spec(self) -> ModelSpec:
        return _model_spec(
            task_class(self.task.partition(":")[0].strip()), self.task, _typed(self.model)
        )

    def train_config(self) -> TrainConfig:
        return _train_config(_typed(self.train))

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, "model": dict(self.model), "train": dict(self.train)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Point:
        return cls(
            task=data["task"],
            model=tuple(sorted(data["model"].items())),
            train=tuple(sorted(data["train"].items())),
        )


def _typed(options: tuple[tuple[str, Any], ...]) -> tuple[tuple[str, type, Any], ...]:
    """``options`` with each value's type: a cache key on which 1, 1.0 and True differ."""
    return tuple((key, type(value), value) for key, value in options)


@functools.lru_cache(maxsize=1 << 14)
def _model_spec(cls: type[Task], task: str, model: tuple[tuple[str, type, Any], ...]) -> ModelSpec:
    """`Point.model_spec`, built once per distinct task and options: building one checks
    every field (a fraction of a millisecond), and a sweep asks for it at every point. The
    task's class is part of the key, so a task registered again is built again."""
    return ModelSpec.for_task(get_task(task), **{key: value for key, _, value in model})


@functools.lru_cache(maxsize=1 << 14)
def _train_config(train: tuple[tuple[str, type, Any], ...]) -> TrainConfig:
    """`Point.train_config`, built once per distinct options (see `_model_spec`)."""
    return TrainConfig(**{key: value for key, _, value in train})


@dataclass(frozen=True)
class SweepSpec:
    """A parsed sweep: its points in grid order, and the evaluation and check settings."""

    name: str
    points: tuple[Point, ...]
    evaluation: EvalSettings = field(default_factory=EvalSettings)
    check: CheckSettings = field(default_factory=CheckSettings)
    source: dict[str, Any] = field(default_factory=dict)
    imports: tuple[str, ...] = ()

    def settings(self) -> dict[str, Any]:
        """The evaluation and check settings as plain data, for worker processes."""
        return {
            "eval": dataclasses.asdict(self.evaluation),
            "check": self.check.to_dict(),
        }

    @property
    def settings_digest(self) -> str:
        """`settings_digest` of these settings."""
        return settings_digest(self.settings())


def settings_digest(settings: Mapping[str, Any]) -> str:
    """A hash of `SweepSpec.settings` (the evaluation and check settings): a point whose
    results were made with other settings is evaluated and checked again (its training is
    reused). A worker process computes it from the settings it was sent."""
    blob = json.dumps([settings["eval"], settings["check"]], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


def load_spec(spec: str | Path | Mapping[str, Any] | SweepSpec) -> SweepSpec:
    """A `SweepSpec` from a TOML file path, a dict of the same shape, or a `SweepSpec`.

    A spec is code, not data: the modules its ``imports`` names are imported, which runs
    them (also when the spec is only listed, as ``simcheck sweep --dry-run`` does). Load only
    specs you trust, as you would run only Python files you trust. A file's problems (not
    UTF-8, not TOML, not a valid spec) are one-line `SweepSpecError`s that name the file.
    """
    if isinstance(spec, SweepSpec):
        return spec
    if isinstance(spec, Mapping):
        return parse_spec(dict(spec), default_name="sweep")
    path = Path(spec)
    if not path.is_file():
        raise SweepSpecError(
            f"no sweep spec at {path}; write a TOML file with a [grid] table "
            "(see examples/sweeps/ for ones that work)"
        )
    try:
        data = tomllib.loads(path.read_bytes().decode("utf-8"))
    except OSError as err:
        raise SweepSpecError(f"cannot read the sweep spec {path}: {err.strerror}") from None
    except UnicodeDecodeError as err:
        raise SweepSpecError(
            f"{path} is not a text file (byte {err.start} is not UTF-8); a sweep spec is a "
            "TOML file with a [grid] table"
        ) from None
    except tomllib.TOMLDecodeError as err:
        raise SweepSpecError(f"{path} is not valid TOML: {err}") from None
    try:
        return parse_spec(data, default_name=path.stem)
    except SimcheckError as err:
        raise SweepSpecError(f"{path}: {err}") from None


def parse_spec(data: dict[str, Any], default_name: str = "sweep") -> SweepSpec:
    """Validate a spec dict and expand its grid(s) into points: the size from the axes'
    lengths first (an absurd grid is refused at once), then each distinct value."""
    _require_known(data, TOP_LEVEL_KEYS, "the sweep spec")
    name = data.get("name", default_name)
    if not isinstance(name, str):
        raise SweepSpecError(f"the sweep's name must be a string, got {name!r}")
    imports = tuple(_axis(data.get("imports", [])) if data.get("imports") else ())
    import_modules(imports)
    fixed_model = _options(_table(data, "model"), MODEL_FIELDS, "[model]")
    fixed_train = _options(_table(data, "train"), TRAIN_FIELDS, "[train]")
    grids = data.get("grid")
    if isinstance(grids, dict):
        grids = [grids]
    if not grids or not isinstance(grids, list):
        raise SweepSpecError(
            'the sweep spec has no [grid] table; add one with at least `task = "modp:p=3"`'
        )
    axes = [_grid_axes(grid, fixed_model, fixed_train) for grid in grids]
    _check_size(axes)
    points: dict[Point, None] = {}  # ordered and without duplicates
    for grid in axes:
        for point in _expand(grid, fixed_model, fixed_train):
            points.setdefault(point, None)
    evaluation = _settings(EvalSettings, _table(data, "eval"), "[eval]")
    check = _check_settings(_table(data, "check"))
    spec = SweepSpec(
        safe_name(name), tuple(points), evaluation, check, source=data, imports=imports
    )
    _validate_points(spec)
    return spec


def import_modules(names: tuple[str, ...]) -> None:
    """Import the modules a spec's ``imports`` names (they register tasks)."""
    for module in names:
        if not isinstance(module, str):
            raise SweepSpecError(f"imports lists module names, got {module!r}")
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise SweepSpecError(
                f"cannot import '{module}' named in imports ({err}); install it or put it on "
                "PYTHONPATH so that every worker can import it too"
            ) from None


def _table(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise SweepSpecError(f"[{key}] must be a table of options, got {value!r}")
    return value


def _require_known(table: Mapping[str, Any], known: tuple[str, ...], where: str) -> None:
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise SweepSpecError(
            f"{where} has unknown keys {unknown}; the valid keys are {', '.join(known)}"
        )


def _axis(value: Any) -> list[Any]:
    values = value if isinstance(value, list) else [value]
    if not values:
        raise SweepSpecError("an axis of [grid] is an empty list; give at least one value")
    return values


def _single(value: Any, where: str) -> Any:
    """``value`` when it is one string, number or boolean (a list or table here would make
    points that cannot be compared or hashed)."""
    if not isinstance(value, str | int | float):
        raise SweepSpecError(
            f"{where} = {value!r} is not a single value; give a string, a number or true/false "
            "(a list in [grid] is an axis of such values)"
        )
    return value


def _options(table: dict[str, Any], known: tuple[str, ...], where: str) -> dict[str, Any]:
    """A ``[model]`` or ``[train]`` table, its keys known and its values single."""
    _require_known(table, known, where)
    return {key: _single(value, f"{where} {key}") for key, value in table.items()}


def _grid_axes(
    grid: Any, fixed_model: dict[str, Any], fixed_train: dict[str, Any]
) -> dict[str, list[Any]]:
    """The axes of one ``[grid]`` table by name (``task``, ``params.<name>``, then model and
    training fields), each a non-empty list of single values: checked, not yet crossed."""
    if not isinstance(grid, dict):
        raise SweepSpecError(f"[grid] must be a table, got {grid!r}")
    _require_known(grid, ("task", "params", *MODEL_FIELDS, *TRAIN_FIELDS), "[grid]")
    if "task" not in grid:
        raise SweepSpecError('[grid] needs a task axis, e.g. task = ["modp:p=3"]')
    params = grid.get("params", {})
    if not isinstance(params, dict):
        raise SweepSpecError(f"[grid.params] must be a table of task parameters, got {params!r}")
    axes = {"task": _axis(grid["task"])}
    for key, value in params.items():
        axes[f"params.{key}"] = [_single(v, f"[grid.params] {key}") for v in _axis(value)]
    for key, value in grid.items():
        if key in ("task", "params"):
            continue
        section = "model" if key in MODEL_FIELDS else "train"
        if key in (fixed_model if section == "model" else fixed_train):
            raise SweepSpecError(f"'{key}' is set in both [grid] and [{section}]; keep one")
        axes[key] = [_single(v, f"[grid] {key}") for v in _axis(value)]
    return axes


def _check_size(grids: list[dict[str, list[Any]]]) -> None:
    """Refuse more than `MAX_POINTS` points, counted from the axes' lengths alone."""
    total = sum(math.prod(len(values) for values in axes.values()) for axes in grids)
    if total > MAX_POINTS:
        shapes = "; ".join(
            " x ".join(f"{len(values)} {key}" for key, values in axes.items()) for axes in grids
        )
        raise SweepSpecError(
            f"the spec's grid has {total:,} points ({shapes}), more than the {MAX_POINTS:,} a "
            "sweep may hold; shorten some axes or split it into several sweeps"
        )


def _expand(
    axes: dict[str, list[Any]], fixed_model: dict[str, Any], fixed_train: dict[str, Any]
) -> list[Point]:
    """The points of one grid's axes, in order."""
    params = {k.removeprefix("params."): v for k, v in axes.items() if k.startswith("params.")}
    tasks = [_task_spec(t, combo) for t in axes["task"] for combo in _combos(params)]
    fields = {k: v for k, v in axes.items() if k in MODEL_FIELDS or k in TRAIN_FIELDS}
    points = []
    for task in tasks:
        for combo in _combos(fields):
            model = {**fixed_model, **{k: v for k, v in combo.items() if k in MODEL_FIELDS}}
            train = {**fixed_train, **{k: v for k, v in combo.items() if k in TRAIN_FIELDS}}
            if "seed" in model and "data_seed" not in train:
                train["data_seed"] = model["seed"]  # one seed axis drives init and data
            points.append(Point(task, tuple(sorted(model.items())), tuple(sorted(train.items()))))
    return points


def _combos(axes: dict[str, list[Any]]) -> list[dict[str, Any]]:
    return [dict(zip(axes, combo, strict=True)) for combo in itertools.product(*axes.values())]


def _task_spec(text: Any, params: dict[str, Any]) -> str:
    """The canonical spec string of ``text`` with ``params`` added."""
    task = get_task(text)  # raises a one-line TaskSpecError for unknown names and params
    given = {item.split("=")[0].strip() for item in str(text).partition(":")[2].split(",")}
    clash = sorted(set(params) & given)
    if clash:
        raise SweepSpecError(
            f"task '{text}' sets {clash} in its spec string and in [grid.params]; keep one"
        )
    known = task_parameters(type(task))
    unknown = sorted(set(params) - set(known))
    if unknown:
        valid = ", ".join(f"{k}={d}" for k, (_, d) in known.items()) or "none"
        raise SweepSpecError(
            f"[grid.params] sets {unknown}, which task '{task.name}' does not have; its "
            f"parameters (with defaults) are {valid}"
        )
    merged = {**task.params(), **params}
    return get_task(f"{task.name}:" + ",".join(f"{k}={v}" for k, v in merged.items())).spec()


def _settings(cls: type, table: dict[str, Any], where: str) -> Any:
    names = tuple(f.name for f in dataclasses.fields(cls))
    _require_known(table, names, where)
    values = dict(table)
    if "lengths" in values:
        values["lengths"] = _lengths(values["lengths"], f"{where} lengths")
    return cls(**values)


def _check_settings(table: dict[str, Any]) -> CheckSettings:
    """The ``[check]`` table as `CheckSettings`; each value of a number or string field must
    have its default's type (``eps = "0.1"`` or ``samples = true`` is refused here, not deep
    inside the check)."""
    _require_known(table, ("enabled", *CheckConfig.field_names()), "[check]")
    values = dict(table)
    enabled = values.pop("enabled", True)
    if not isinstance(enabled, bool):
        raise SweepSpecError(f"[check] enabled must be true or false, got {enabled!r}")
    scalars = {
        f.name: f.default
        for f in dataclasses.fields(CheckConfig)
        if isinstance(f.default, str | int | float)
    }
    for key, value in values.items():
        if key in scalars:
            _check_type(value, scalars[key], f"[check] {key}")
    if "test_lengths" in values:
        values["test_lengths"] = _lengths(values["test_lengths"], "[check] test_lengths")
    if "witnesses" in values:
        values["witnesses"] = tuple(_axis(values["witnesses"]))
    try:
        return CheckSettings(enabled, CheckConfig(**values))
    except SimcheckError as err:
        raise SweepSpecError(f"[check]: {err}") from None


def _check_type(value: Any, default: Any, where: str) -> None:
    """``value`` has the type of ``default``: an int is fine for a float, a bool for nothing
    but a bool."""
    expected = (int, float) if isinstance(default, float) else (type(default),)
    if isinstance(value, bool) != isinstance(default, bool) or not isinstance(value, expected):
        kinds = " or ".join(t.__name__ for t in expected)
        raise SweepSpecError(f"{where} = {value!r} should be {kinds}")


def _lengths(raw: Any, where: str) -> tuple[int, ...]:
    try:
        return tuple(parse_lengths(raw if isinstance(raw, str) else _axis(raw)))
    except SimcheckError as err:
        raise SweepSpecError(f"{where}: {err}") from None


def _validate_points(spec: SweepSpec) -> None:
    """Build every point's `ModelSpec` and `TrainConfig` (so their own checks apply), then
    check what they cannot know alone: the lengths against the model, the check's settings
    against the task, and the memory a forward pass needs. Each distinct model, training
    configuration and combination of the values the later checks read is checked once, which
    keeps a grid of `MAX_POINTS` points to about a second."""
    seen: set[tuple[Any, ...]] = set()
    for point in spec.points:
        try:
            model, config = point.model_spec(), point.train_config()
        except SimcheckError as err:
            raise SweepSpecError(f"point {point.task} {point.options}: {err}") from None
        key = (point.task, model.max_length, model.n_heads, config.train_len, config.batch_size)
        if key not in seen:
            seen.add(key)
            _validate_lengths(point, model, config, spec)


def _validate_lengths(point: Point, model: ModelSpec, config: TrainConfig, spec: SweepSpec) -> None:
    """The point's test lengths beyond N, eps below the metric's largest value, every length
    within the model's reach and one forward pass within `MAX_ATTENTION_BYTES`."""
    n = config.train_len
    checked = spec.check.config.lengths_for(n) if spec.check.enabled else []
    if spec.check.enabled:
        if min(checked) <= n:
            raise SweepSpecError(
                f"point {point.name}: [check] test_lengths {list(checked)} must exceed its "
                f"training length N={n}; raise test_lengths or leave them out (8 N)"
            )
        task = get_task(point.task)
        try:
            spec.check.config.validate_for(task.metric_max, task.metric_name, n)
        except SimcheckError as err:
            raise SweepSpecError(f"point {point.name}: [check] {err}") from None
    longest = max(spec.evaluation.lengths + tuple(checked))
    if max(longest, n) > model.max_length:
        raise SweepSpecError(
            f"point {point.name}: lengths up to {max(longest, n)} exceed the model's n_ctx="
            f"{model.max_length} ({model.pos} positions); raise n_ctx in [model] or shorten "
            "train_len, [eval] lengths or [check] test_lengths"
        )
    for what, batch, length in (("training", config.batch_size, n), ("testing", 1, longest)):
        needed = 4 * batch * model.n_heads * length**2
        if needed > MAX_ATTENTION_BYTES:
            raise SweepSpecError(
                f"point {point.name}: {what} at length {length} ({batch} sequence(s) x "
                f"{model.n_heads} head(s)) needs {needed / 2**40:,.1f} TiB for one layer's "
                f"attention scores alone, more than the {MAX_ATTENTION_BYTES / 2**40:g} TiB a "
                "sweep allows; use shorter lengths"
            )
