"""Property tests of the parsers a user types into: lengths, task specs, sweep specs and a
model's ``--config`` JSON. Whatever the input, the answer is a result or a one-line
`SimcheckError`, never another exception (a traceback from deep inside a library)."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from simcheck.checking.config import CheckConfig
from simcheck.errors import SimcheckError
from simcheck.model.build import ModelSpec
from simcheck.model.loading import _read_config
from simcheck.settings.lengths import parse_lengths
from simcheck.settings.train import TrainConfig
from simcheck.sweeps.spec import parse_spec
from simcheck.tasks import get_task, task_class, task_names, task_parameters

PROPERTY = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
"""Fixed examples (derandomized) so CI sees the same inputs on every run."""


def one_line_error_or(call, *args):
    """Run ``call``; a `SimcheckError` must be one line. Returns the result or None."""
    try:
        return call(*args)
    except SimcheckError as err:
        message = str(err)
        assert message and "\n" not in message, repr(message)
        return None


# ------------------------------------------------------------------ lengths

LENGTH_PIECES = st.sampled_from(
    ["1", "8", "0", "-3", "16", "1024", "10**9", "9" * 30, "٣", "..", "...", "*", "+", ",",
     " ", "2", "x", "\n", "1e3", "nan"]
)  # fmt: skip


@PROPERTY
@given(st.lists(LENGTH_PIECES, max_size=12).map("".join))
@example("8..1024*2")
@example("9" * 5000)
@example("1.." + "9" * 5000 + "*2")
@example("1..999999999999*2")
@example("1..10000000+1")
@example("8,16,...,1024")
@example("٣,8")
def test_lengths_text_parses_or_gives_one_line(text):
    result = one_line_error_or(parse_lengths, text)
    if result is not None:
        assert result == sorted(set(result)) and all(v >= 1 for v in result)


@PROPERTY
@given(st.text(max_size=40))
def test_lengths_of_any_text(text):
    one_line_error_or(parse_lengths, text)


@PROPERTY
@given(st.lists(st.one_of(st.integers(), st.floats(), st.text(max_size=3), st.none()), max_size=6))
@example([True, 3])
@example(b"\x08\x10")
def test_lengths_of_any_list(values):
    one_line_error_or(parse_lengths, values)


# ------------------------------------------------------------------ task specs

VALUES = st.one_of(
    st.sampled_from(
        [
            "nan",
            "inf",
            "-inf",
            "-1",
            "0",
            "1",
            "1e308",
            "10" * 40,
            "2.5",
            "é",
            "",
            "true",
            " 3 ",
            "0x10",
        ]
    ),
    st.integers(-(10**12), 10**12).map(str),
    st.text(max_size=6),
)


@st.composite
def task_specs(draw) -> str:
    name = draw(st.one_of(st.sampled_from(task_names()), st.text(max_size=8)))
    try:
        keys = list(task_parameters(task_class(name)))
    except SimcheckError:
        keys = []
    items = draw(
        st.lists(
            st.tuples(st.one_of(st.sampled_from(keys or ["p"]), st.text(max_size=4)), VALUES),
            max_size=3,
        )
    )
    return name + (":" + ",".join(f"{k}={v}" for k, v in items) if items else "")


@PROPERTY
@given(task_specs())
@example("majority:V=1000000000000")
@example("needle:V=1000000000000")
@example("modp:p=0")
@example("kgram:S=1000000,k=40")
@example("kgram:k=9014")
@example("kgram:k=1000000000000")
@example("simple:omega=nan")
@example("sort:V=1000000000")
def test_task_specs_build_or_give_one_line(spec):
    task = one_line_error_or(get_task, spec)
    if task is not None:
        assert get_task(task.spec()) == task


@PROPERTY
@given(st.text(max_size=30))
def test_task_spec_of_any_text(text):
    one_line_error_or(get_task, text)


# ------------------------------------------------------------------ sweep specs

SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 10**6), st.floats(allow_nan=True),
    st.text(max_size=8), st.sampled_from(["modp:p=3", "periodic", "8..64*2", "softmax"]),
)  # fmt: skip
FIELDS = {
    "grid": ["task", "pos", "train_len", "seed", "d_model", "steps", "lr"],
    "model": [f for f in ModelSpec.__dataclass_fields__ if f not in ("d_vocab", "d_vocab_out")],
    "train": list(TrainConfig.__dataclass_fields__),
    "eval": ["lengths", "samples", "seed"],
    "check": [*CheckConfig.field_names(), "enabled"],
}


@st.composite
def sweep_specs(draw) -> dict:
    spec = {}
    for table, keys in FIELDS.items():
        if draw(st.booleans()):
            chosen = draw(st.lists(st.sampled_from(keys), max_size=3, unique=True))
            spec[table] = {
                k: draw(st.one_of(SCALARS, st.lists(SCALARS, max_size=3))) for k in chosen
            }
    if draw(st.booleans()):  # a valid task, so that the other fields are read too
        spec.setdefault("grid", {})["task"] = "modp:p=3"
    if draw(st.booleans()):
        spec[draw(st.text(max_size=5))] = draw(SCALARS)
    return spec


@PROPERTY
@given(sweep_specs())
@example({"grid": {"task": "modp:p=3", "train_len": [8], "steps": 10}})
@example({"grid": {"task": "modp:p=3", "train_len": 10**9}})
@example({"grid": {"task": "modp:p=3"}, "eval": {"lengths": "1..10000000+1"}})
@example({"grid": {"task": "modp:p=3"}, "check": {"eps": math.nan}})
@example({"grid": [{"task": "modp:p=3"}, "x"]})
def test_sweep_specs_parse_or_give_one_line(spec):
    one_line_error_or(parse_spec, spec)


# ------------------------------------------------------------------ --config JSON

CONFIG_FIELDS = ["n_layers", "d_model", "n_ctx", "d_head", "n_heads", "d_mlp", "d_vocab",
                 "act_fn", "normalization_type", "dtype", "positional_embedding_type",
                 "attn_only", "d_vocab_out", "seed"]  # fmt: skip
JSON_VALUES = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-3, 10**4),
        st.floats(allow_nan=False),
        st.text(max_size=6),
    ),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=6,
)


@PROPERTY
@given(
    st.one_of(
        JSON_VALUES,
        st.dictionaries(st.sampled_from(CONFIG_FIELDS), JSON_VALUES, max_size=6),
    )
)
@example({"n_layers": 1, "d_model": 8, "n_ctx": 16, "d_head": 4, "act_fn": "relu", "d_vocab": 3})
@example({"n_layers": 1, "d_model": 8, "n_ctx": 16, "d_head": 4, "dtype": "float128"})
@example({"n_layers": -1, "d_model": 0, "n_ctx": 16, "d_head": 4})
def test_config_json_reads_or_gives_one_line(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("config") / "config.json"
    path.write_text(json.dumps(data))
    one_line_error_or(_read_config, path)


@pytest.mark.parametrize("text", ["", "{", "[1, 2]", "\x00\xff", "null", '{"n_layers": 1}'])
def test_config_files_that_are_not_configs(tmp_path, text):
    path = tmp_path / "config.json"
    path.write_bytes(text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text)
    with pytest.raises(SimcheckError):
        _read_config(path)
