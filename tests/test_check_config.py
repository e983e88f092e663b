"""`CheckConfig`: its validation, and the command line and sweep specs that read their check
settings (and defaults) from it."""

from __future__ import annotations

import dataclasses
import json

import pytest

from simcheck.checking.config import CLASS_METRICS, DEFAULT_LENGTH_FACTOR, CheckConfig
from simcheck.cli import CHECK_FLAGS, _check_config, build_parser
from simcheck.errors import SimcheckError
from simcheck.sweeps.spec import CheckSettings, parse_spec


def my_witness(x, n, structure, rng):
    """A user witness construction (never called here)."""
    return [x[:n]]


# --- the dataclass ----------------------------------------------------------------------


def test_check_config_is_frozen():
    config = CheckConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.eps = 0.2
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.test_lengths = (64,)


def test_replace_returns_a_changed_copy():
    config = CheckConfig()
    changed = config.replace(eps=0.2, test_lengths=[64, 128])
    assert changed.eps == 0.2 and changed.test_lengths == (64, 128)
    assert config.eps == 0.1 and config.test_lengths == ()
    assert changed == CheckConfig(eps=0.2, test_lengths=(64, 128))
    with pytest.raises(SimcheckError, match="eps"):
        config.replace(eps=0.0)


def test_sequences_are_stored_as_tuples():
    config = CheckConfig(test_lengths=[64, 256], witnesses=["types"])
    assert config.test_lengths == (64, 256)
    assert config.witnesses == ("types",)
    assert hash(config) == hash(CheckConfig(test_lengths=(64, 256), witnesses=("types",)))


def test_to_dict_is_json_ready_with_witness_functions_by_name():
    config = CheckConfig(test_lengths=(64,), witnesses=("types", my_witness))
    data = config.to_dict()
    assert set(data) == set(CheckConfig.field_names())
    assert data["witnesses"] == ["types", "my_witness"]
    assert data["test_lengths"] == [64]
    assert json.loads(json.dumps(data)) == data
    assert json.loads(json.dumps(CheckConfig().to_dict()))["eps"] == 0.1


def test_lengths_for_defaults_to_eight_n():
    assert DEFAULT_LENGTH_FACTOR == 8
    assert CheckConfig().lengths_for(16) == [128]
    assert CheckConfig(test_lengths=(64, 256)).lengths_for(16) == [64, 256]


def test_field_names_are_the_dataclass_fields_in_order():
    assert CheckConfig.field_names() == [f.name for f in dataclasses.fields(CheckConfig)]
    assert CheckConfig.field_names()[:2] == ["test_lengths", "eps"]


# --- validation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"eps": 0.0}, "eps"),
        ({"eps": -0.1}, "eps"),
        ({"eps": float("nan")}, "eps"),
        ({"delta": 0.0}, "delta"),
        ({"delta": 1.0}, "delta"),
        ({"delta": 1.5}, "delta"),
        ({"confidence": 0.0}, "confidence"),
        ({"confidence": 1.0}, "confidence"),
        ({"samples": 0}, "samples"),
        ({"samples": 200, "max_samples": 100}, "max_samples"),
        ({"reference_samples": 1}, "reference_samples"),
        ({"test_lengths": (64, 0)}, "test lengths"),
        ({"test_lengths": (-8,)}, "test lengths"),
        ({"worst_case": -1}, "worst_case"),
        ({"search_rounds": -1}, "search_rounds"),
        ({"blocks_candidates": 0}, "blocks_candidates"),
        ({"search_proposals": 0}, "search_proposals"),
        ({"class_metric": "foo"}, "class_metric"),
    ],
)
def test_bad_settings_raise_naming_the_setting(changes, named):
    with pytest.raises(SimcheckError, match=named) as info:
        CheckConfig(**changes)
    assert "\n" not in str(info.value)


def test_class_metric_error_lists_the_choices():
    with pytest.raises(SimcheckError) as info:
        CheckConfig(class_metric="foo")
    for choice in CLASS_METRICS:
        assert choice in str(info.value)
    assert CheckConfig(class_metric="tv").class_metric == "tv"


def test_validate_for_refuses_eps_at_or_beyond_the_metric_maximum():
    for eps in (1.0, 1.5):
        with pytest.raises(SimcheckError) as info:
            CheckConfig(eps=eps).validate_for(1.0, "abs_err", 8)
        message = str(info.value)
        assert "\n" not in message
        assert "largest value" in message and "abs_err" in message
        assert "pick eps in (0, 1)" in message


@pytest.mark.parametrize("train_len", [0, -3])
def test_validate_for_refuses_a_training_length_below_one(train_len):
    with pytest.raises(SimcheckError, match="train_len must be >= 1") as info:
        CheckConfig().validate_for(1.0, "abs_err", train_len)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("lengths", [(8,), (4, 64), (64, 8)])
def test_validate_for_refuses_test_lengths_not_beyond_n(lengths):
    with pytest.raises(SimcheckError) as info:
        CheckConfig(test_lengths=lengths).validate_for(1.0, "abs_err", 8)
    message = str(info.value)
    assert "\n" not in message
    assert "N=8" in message and "T > 8" in message
    short = [t for t in lengths if t <= 8]
    assert str(short) in message


def test_validate_for_accepts_valid_settings():
    CheckConfig().validate_for(1.0, "abs_err", 8)  # 8 N = 64
    CheckConfig(eps=0.99, test_lengths=(9, 64)).validate_for(1.0, "abs_err", 8)
    CheckConfig(eps=0.5).validate_for(2.0, "tv", 1)


# --- the command line -------------------------------------------------------------------


def parse_check(*flags: str):
    return build_parser().parse_args(["check", "RUN", *flags])


def test_every_check_setting_has_a_flag_and_help():
    assert set(CHECK_FLAGS) == set(CheckConfig.field_names())
    flags = [option.flag for option in CHECK_FLAGS.values()]
    assert len(set(flags)) == len(flags)
    assert all(flag.startswith("--") for flag in flags)


def test_check_help_shows_every_flag_and_its_default(capsys):
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["check", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    text = " ".join(out.split())  # help lines wrap anywhere
    defaults = CheckConfig()
    for name in CheckConfig.field_names():
        flag = CHECK_FLAGS[name].flag
        assert flag in out, name
        value = getattr(defaults, name)
        if name != "test_lengths" and value is not None and not isinstance(value, bool):
            shown = ",".join(map(str, value)) if isinstance(value, tuple) else value
            assert f"(default {shown})" in text, name
    assert "--bits" in out
    assert "--no-interventions" in out and "--up-to" in out


def test_up_to_and_no_interventions_reach_the_config():
    args = build_parser().parse_args(["check", "RUN", "--up-to", "512", "--no-interventions"])
    config = _check_config(args)
    assert config.up_to == 512 and config.interventions is False
    assert _check_config(build_parser().parse_args(["check", "RUN"])).interventions is True


def test_no_check_flags_give_the_default_config():
    args = parse_check()
    assert args.run == "RUN"
    assert _check_config(args) == CheckConfig()


def test_check_flags_give_the_matching_config():
    args = parse_check(
        "--eps", "0.05", "--test-len", "64,128", "--witnesses", "types,blocks",
        "--class-metric", "tv", "--bits", "8", "--samples", "20", "--max-samples", "80",
        "--seed", "3", "--diverge-at", "0.25", "--worst-case", "2",
    )  # fmt: skip
    config = _check_config(args)
    assert config == CheckConfig(
        eps=0.05,
        test_lengths=(64, 128),
        witnesses=("types", "blocks"),
        class_metric="tv",
        attention="hardmax:8",
        samples=20,
        max_samples=80,
        seed=3,
        diverge_at=0.25,
        worst_case=2,
    )
    assert config.test_lengths == (64, 128)
    assert config.witnesses == ("types", "blocks")


def test_check_test_len_reads_progressions():
    config = _check_config(parse_check("--test-len", "16..128*2"))
    assert config.test_lengths == (16, 32, 64, 128)


def test_check_attention_flag_without_bits():
    assert _check_config(parse_check("--attention", "hardmax")).attention == "hardmax"


@pytest.mark.parametrize("bad", ["abc", "0,64", "64,,x", "8,4,...,2"])
def test_bad_test_len_is_an_argparse_error(bad, capsys):
    with pytest.raises(SystemExit) as info:
        parse_check("--test-len", bad)
    assert info.value.code == 2
    assert "--test-len" in capsys.readouterr().err


def test_bad_class_metric_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as info:
        parse_check("--class-metric", "foo")
    assert info.value.code == 2
    assert "--class-metric" in capsys.readouterr().err


def test_a_value_check_config_refuses_raises_from_check_config():
    with pytest.raises(SimcheckError, match="delta"):
        _check_config(parse_check("--delta", "2"))


# --- sweep specs ------------------------------------------------------------------------


def spec_with(check: dict, train_len: int = 8) -> dict:
    return {"grid": {"task": "modp:p=3", "train_len": train_len}, "check": check}


def test_sweep_check_table_becomes_a_check_config():
    spec = parse_spec(spec_with({"eps": 0.05, "samples": 20}))
    assert isinstance(spec.check, CheckSettings)
    assert spec.check.enabled is True
    assert spec.check.config == CheckConfig(eps=0.05, samples=20)


def test_sweep_without_check_table_uses_the_defaults():
    spec = parse_spec({"grid": {"task": "modp:p=3", "train_len": 8}})
    assert spec.check == CheckSettings()
    assert spec.check.config == CheckConfig()


def test_sweep_check_lists_become_tuples():
    spec = parse_spec(spec_with({"test_lengths": [128, 64], "witnesses": ["types"]}))
    assert spec.check.config.test_lengths == (64, 128)
    assert spec.check.config.witnesses == ("types",)
    spec = parse_spec(spec_with({"test_lengths": "16..64*2", "witnesses": "blocks"}))
    assert spec.check.config.test_lengths == (16, 32, 64)
    assert spec.check.config.witnesses == ("blocks",)


def test_sweep_check_refuses_an_unknown_key():
    with pytest.raises(SimcheckError, match="epsilon") as info:
        parse_spec(spec_with({"epsilon": 0.1}))
    assert "[check]" in str(info.value)


def test_sweep_check_refuses_a_value_check_config_refuses():
    with pytest.raises(SimcheckError, match=r"\[check\]") as info:
        parse_spec(spec_with({"eps": -1}))
    assert "eps" in str(info.value)


@pytest.mark.parametrize("lengths", [[8], [4], [8, 64]])
def test_sweep_refuses_test_lengths_not_beyond_train_len(lengths):
    with pytest.raises(SimcheckError, match="test_lengths") as info:
        parse_spec(spec_with({"test_lengths": lengths}, train_len=8))
    assert "N=8" in str(info.value)


def test_sweep_checks_test_lengths_against_every_point():
    spec = {"grid": {"task": "modp:p=3", "train_len": [8, 16]}, "check": {"test_lengths": [12]}}
    with pytest.raises(SimcheckError, match="N=16"):
        parse_spec(spec)


def test_sweep_check_can_be_disabled():
    spec = parse_spec(spec_with({"enabled": False, "eps": 0.2}))
    assert spec.check.enabled is False
    assert spec.check.config.eps == 0.2
    settings = spec.settings()["check"]
    assert settings["enabled"] is False
    assert settings["eps"] == 0.2
    assert json.loads(json.dumps(settings)) == settings


def test_disabled_check_does_not_refuse_short_test_lengths():
    spec = parse_spec(spec_with({"enabled": False, "test_lengths": [8]}, train_len=8))
    assert spec.check.enabled is False


def test_sweep_settings_digest_follows_the_check_settings():
    base = parse_spec(spec_with({"eps": 0.05}))
    same = parse_spec(spec_with({"eps": 0.05}))
    other = parse_spec(spec_with({"eps": 0.06}))
    assert base.settings_digest == same.settings_digest != other.settings_digest
