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
    lengths = "8,16,...,1024"
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
processes start fresh). Every point is validated when the spec is read, so a typo fails before any
training starts.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import itertools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

from simcheck.check_config import CheckConfig
from simcheck.errors import SimcheckError, SweepSpecError
from simcheck.evaluation import parse_lengths
from simcheck.models import ModelSpec
from simcheck.tasks import get_task, task_parameters
from simcheck.training import TrainConfig

MODEL_FIELDS = tuple(
    f.name for f in dataclasses.fields(ModelSpec) if f.name not in ("d_vocab", "d_vocab_out")
)
TRAIN_FIELDS = tuple(f.name for f in dataclasses.fields(TrainConfig))
TOP_LEVEL_KEYS = ("name", "imports", "grid", "model", "train", "eval", "check")
DEFAULT_EVAL_LENGTHS = (8, 16, 32, 64, 128, 256, 512, 1024)


@dataclass(frozen=True)
class EvalSettings:
    """What `simcheck.evaluate` does at every point."""

    lengths: tuple[int, ...] = DEFAULT_EVAL_LENGTHS
    samples: int = 256
    seed: int = 1


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

    @property
    def name(self) -> str:
        """The point's directory name, readable and unique: the task with its non-default
        parameters, positions, N, seed and digest, e.g. ``modp-p5-periodic-N16-s0-<digest>``."""
        task = get_task(self.task)
        defaults = type(task)().params()
        changed = "".join(f"-{k}{v}" for k, v in task.params().items() if defaults.get(k) != v)
        spec, n = self.model_spec(), self.train_config().train_len
        return f"{task.name}{changed}-{spec.pos}-N{n}-s{spec.seed}-{self.digest}"

    def model_spec(self) -> ModelSpec:
        return ModelSpec.for_task(get_task(self.task), **dict(self.model))

    def train_config(self) -> TrainConfig:
        return TrainConfig(**dict(self.train))

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, "model": dict(self.model), "train": dict(self.train)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Point:
        return cls(
            task=data["task"],
            model=tuple(sorted(data["model"].items())),
            train=tuple(sorted(data["train"].items())),
        )


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
        """A hash of the evaluation and check settings: a point whose results were made with
        other settings is evaluated and checked again (its training is reused)."""
        blob = json.dumps([self.settings()["eval"], self.settings()["check"]], sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:10]


def load_spec(spec: str | Path | Mapping[str, Any] | SweepSpec) -> SweepSpec:
    """A `SweepSpec` from a TOML file path, a dict of the same shape, or a `SweepSpec`."""
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
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise SweepSpecError(f"{path} is not valid TOML: {err}") from None
    return parse_spec(data, default_name=path.stem)


def parse_spec(data: dict[str, Any], default_name: str = "sweep") -> SweepSpec:
    """Validate a spec dict and expand its grid(s) into points."""
    _require_known(data, TOP_LEVEL_KEYS, "the sweep spec")
    name = str(data.get("name", default_name))
    imports = tuple(_axis(data.get("imports", [])) if data.get("imports") else ())
    import_modules(imports)
    fixed_model = _table(data, "model")
    fixed_train = _table(data, "train")
    _require_known(fixed_model, MODEL_FIELDS, "[model]")
    _require_known(fixed_train, TRAIN_FIELDS, "[train]")
    grids = data.get("grid")
    if isinstance(grids, dict):
        grids = [grids]
    if not grids or not isinstance(grids, list):
        raise SweepSpecError(
            'the sweep spec has no [grid] table; add one with at least `task = "modp:p=3"`'
        )
    points: dict[Point, None] = {}  # ordered and without duplicates
    for grid in grids:
        for point in _expand(grid, fixed_model, fixed_train):
            points.setdefault(point, None)
    evaluation = _settings(EvalSettings, _table(data, "eval"), "[eval]")
    check = _check_settings(_table(data, "check"))
    spec = SweepSpec(name, tuple(points), evaluation, check, source=data, imports=imports)
    for point in spec.points:
        _validate_point(point, spec)
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


def _expand(grid: Any, fixed_model: dict[str, Any], fixed_train: dict[str, Any]) -> list[Point]:
    if not isinstance(grid, dict):
        raise SweepSpecError(f"[grid] must be a table, got {grid!r}")
    _require_known(grid, ("task", "params", *MODEL_FIELDS, *TRAIN_FIELDS), "[grid]")
    if "task" not in grid:
        raise SweepSpecError('[grid] needs a task axis, e.g. task = ["modp:p=3"]')
    params = grid.get("params", {})
    if not isinstance(params, dict):
        raise SweepSpecError(f"[grid.params] must be a table of task parameters, got {params!r}")
    tasks = [_task_spec(t, combo) for t in _axis(grid["task"]) for combo in _combos(params)]
    axes = {k: _axis(v) for k, v in grid.items() if k not in ("task", "params")}
    for key in axes:
        section = "model" if key in MODEL_FIELDS else "train"
        if key in (fixed_model if section == "model" else fixed_train):
            raise SweepSpecError(f"'{key}' is set in both [grid] and [{section}]; keep one")
    points = []
    for task in tasks:
        for combo in _combos(axes):
            model = {**fixed_model, **{k: v for k, v in combo.items() if k in MODEL_FIELDS}}
            train = {**fixed_train, **{k: v for k, v in combo.items() if k in TRAIN_FIELDS}}
            if "seed" in model and "data_seed" not in train:
                train["data_seed"] = model["seed"]  # one seed axis drives init and data
            points.append(Point(task, tuple(sorted(model.items())), tuple(sorted(train.items()))))
    return points


def _combos(axes: dict[str, Any]) -> list[dict[str, Any]]:
    keys = list(axes)
    values = [_axis(axes[k]) for k in keys]
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*values)]


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
    """The ``[check]`` table as `CheckSettings`."""
    _require_known(table, ("enabled", *CheckConfig.field_names()), "[check]")
    values = dict(table)
    enabled = values.pop("enabled", True)
    if not isinstance(enabled, bool):
        raise SweepSpecError(f"[check] enabled must be true or false, got {enabled!r}")
    if "test_lengths" in values:
        values["test_lengths"] = _lengths(values["test_lengths"], "[check] test_lengths")
    if "witnesses" in values:
        values["witnesses"] = tuple(_axis(values["witnesses"]))
    try:
        return CheckSettings(enabled, CheckConfig(**values))
    except SimcheckError as err:
        raise SweepSpecError(f"[check]: {err}") from None


def _lengths(raw: Any, where: str) -> tuple[int, ...]:
    lengths = parse_lengths(raw) if isinstance(raw, str) else sorted(set(_axis(raw)))
    if not all(isinstance(n, int) and n >= 1 for n in lengths):
        raise SweepSpecError(f"{where} must be positive integers, got {raw!r}")
    return tuple(lengths)


def _validate_point(point: Point, spec: SweepSpec) -> None:
    """Build the point's model spec and training config so that bad values fail now."""
    _check_types(point.model, ModelSpec, point)
    _check_types(point.train, TrainConfig, point)
    try:
        model = point.model_spec()
        config = point.train_config()
    except TypeError as err:
        raise SweepSpecError(f"point {point.to_dict()}: {err}") from None
    checked = spec.check.config.lengths_for(config.train_len) if spec.check.enabled else []
    longest = max(spec.evaluation.lengths + tuple(checked))
    if spec.check.enabled and min(checked) <= config.train_len:
        raise SweepSpecError(
            f"point {point.name}: [check] test_lengths {list(checked)} must exceed its training "
            f"length N={config.train_len}; raise test_lengths or leave them out (8 N)"
        )
    if max(longest, config.train_len) > model.max_length:
        raise SweepSpecError(
            f"point {point.name}: lengths up to {longest} exceed the model's n_ctx="
            f"{model.max_length} ({model.pos} positions); raise n_ctx in [model] or shorten "
            "[eval] lengths / [check] test_lengths"
        )


def _check_types(options: tuple[tuple[str, Any], ...], cls: type, point: Point) -> None:
    """Each option has the type of its field's default (an int is fine for a float)."""
    defaults = {f.name: f.default for f in dataclasses.fields(cls)}
    for key, value in options:
        default = defaults[key]
        if default is None or default is dataclasses.MISSING:
            expected: tuple[type, ...] = (int,)
        elif isinstance(default, float):
            expected = (int, float)
        else:
            expected = (type(default),)
        if value is not None and (
            not isinstance(value, expected) or (isinstance(value, bool) and bool not in expected)
        ):
            raise SweepSpecError(
                f"option {key}={value!r} of task {point.task} should be "
                f"{' or '.join(t.__name__ for t in expected)}"
            )
