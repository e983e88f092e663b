"""A model simcheck did not build: a plain TransformerLens `HookedTransformer` with a BOS token
and the default unembedding (d_vocab_out = d_vocab), read through a `ModelAdapter`.

The BOS prefix stays at position 0 of every input the check and the evaluation run; a
learned-position model trained at N is diagnosed with positions beyond the trained range at
T >> N; the default unembedding needs ``outputs``; `evaluate` and `bounds` take bare models;
the command line's ``--model`` and ``--weights``/``--config`` work, and what does not fit is a
one-line error.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from float32 import assert_paths_close
from safetensors.torch import save_file
from transformer_lens import HookedTransformer, HookedTransformerConfig

import simcheck
from simcheck import ModelAdapter, SimcheckError, build_model, get_task
from simcheck.cli import main
from simcheck.model.loading import save_config
from simcheck.report.check_report import CERTIFICATE_FILE
from simcheck.storage.runs import EVAL_JSON
from simcheck.storage.subjects import resolve
from simcheck.theory.bounds import bounds

BOS = 2  # after the tokens 0 and 1 of the binary tasks
N = 8
T = 64
MODP = "modp:p=3"
ADAPTER = ModelAdapter(outputs=0, prefix=(BOS,))
SMALL = {"samples": 50, "max_samples": 50, "reference_samples": 64, "witnesses": ["types"]}
SMALL_FLAGS = [
    "--samples",
    "50",
    "--max-samples",
    "50",
    "--reference-samples",
    "64",
    "--witnesses",
    "types",
]
MODEL_CONFIG = {
    "n_layers": 1,
    "d_model": 16,
    "d_head": 8,
    "n_heads": 2,
    "d_mlp": 32,
    "d_vocab": 3,
    "act_fn": "gelu",
    "normalization_type": "LN",
    "device": "cpu",
}
"""A tiny one-layer model over tokens 0, 1 and BOS, learned positions ("standard")."""


def tl_model(seed: int = 0, n_ctx: int = T + 1, **overrides) -> HookedTransformer:
    """A plain TransformerLens model: learned positions, default unembedding."""
    cfg = HookedTransformerConfig(**{**MODEL_CONFIG, "n_ctx": n_ctx, "seed": seed, **overrides})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return HookedTransformer(cfg)


def with_bos(tokens: torch.Tensor) -> torch.Tensor:
    return torch.cat([torch.full((tokens.shape[0], 1), BOS), tokens], dim=1)


@pytest.fixture(scope="module")
def trained_modp() -> HookedTransformer:
    """`tl_model` trained with plain torch on ModPTask(p=3) at lengths 1..N=8, BOS in front,
    logit 0 as the value: 400 steps of 32, enough to fit short inputs (a few seconds).
    Module-scoped: tests that move or change it work on a copy."""
    torch.manual_seed(0)
    model = tl_model(seed=0)
    task, rng = get_task(MODP), np.random.default_rng(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(400):
        batch = task.batch(32, int(rng.integers(1, N + 1)), rng)
        out = model(with_bos(batch.tokens))[:, -1, 0]
        loss = ((out - batch.targets.float()) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


@pytest.fixture(scope="module")
def modp_report(trained_modp):
    """The check of `trained_modp` at T=64 on the CPU with the small settings."""
    return simcheck.check(
        trained_modp, task=MODP, train_len=N, adapter=ADAPTER, test_lengths=[T], **SMALL
    )


def assert_one_line(err: pytest.ExceptionInfo, *fragments: str) -> None:
    message = str(err.value)
    assert "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, message


# ---------------------------------------------------------------------------- the BOS prefix


def test_bos_stays_at_position_zero_of_every_input(trained_modp, device):
    model = copy.deepcopy(trained_modp)
    seen: list[torch.Tensor] = []
    # every forward pass starts at the token embedding, whatever path simcheck takes
    model.embed.register_forward_pre_hook(lambda module, args: seen.append(args[0].cpu()))
    settings = {**SMALL, "witnesses": ["types", "blocks", "search"]}
    settings.update(blocks_candidates=4, search_rounds=2, search_proposals=4)
    simcheck.check(
        model,
        task=MODP,
        train_len=N,
        adapter=ADAPTER,
        device=device,
        test_lengths=[T],
        **settings,
    )
    simcheck.evaluate(
        model,
        [4, T],
        task=MODP,
        train_len=N,
        adapter=ADAPTER,
        samples=16,
        progress=False,
        save=False,
    )
    assert seen
    for tokens in seen:
        assert (tokens[:, 0] == BOS).all()
        assert not (tokens[:, 1:] == BOS).any()
    lengths = {tokens.shape[1] for tokens in seen}
    assert T + 1 in lengths  # the long inputs, BOS in front
    assert any(length <= N + 1 for length in lengths)  # witnesses and reference inputs


# --------------------------------------------------------- positions beyond the trained range


def test_learned_positions_fit_short_inputs_and_fail_long(trained_modp):
    result = simcheck.evaluate(
        trained_modp,
        [N, T],
        task=MODP,
        train_len=N,
        adapter=ADAPTER,
        samples=128,
        progress=False,
        save=False,
    )
    error = result.table()["metric_mean"]
    assert error[N] < 0.06 < error[T]


def test_learned_positions_are_diagnosed_beyond_the_trained_range(modp_report):
    result = modp_report.result(T)
    assert result.outcome == "not-simulatable"
    causes = {cause.kind: cause.message for cause in result.diagnosis.causes}
    assert "positions_beyond_training" in causes
    # trained rows: BOS at 0 and task tokens at 1..N; the last long position is T
    assert (
        f"learned absolute positions {N + 1}..{T} were never seen"
        in causes["positions_beyond_training"]
    )
    assert result.diagnosis.first_divergence["probe"] == "resid_pre.L0"
    adapter = modp_report.config["model"]["adapter"]
    assert adapter["prefix"] == [BOS] and adapter["outputs"] == [0]
    assert adapter["positions"] == "learned" and adapter["trained_positions"] == N + 1


def test_check_on_each_device_names_the_positions_cause(trained_modp, modp_report, device):
    report = simcheck.check(
        copy.deepcopy(trained_modp),
        task=MODP,
        train_len=N,
        adapter=ADAPTER,
        device=device,
        test_lengths=[T],
        **SMALL,
    )
    assert report.config["model"]["device"].startswith(device)
    kinds = [cause.kind for cause in report.result(T).diagnosis.causes]
    assert "positions_beyond_training" in kinds
    if device == "cpu":
        assert report.outcome == modp_report.outcome


def test_positions_declared_trained_are_not_blamed(trained_modp):
    adapter = ModelAdapter(outputs=0, prefix=(BOS,), trained_positions=T + 1)
    report = simcheck.check(
        trained_modp, task=MODP, train_len=N, adapter=adapter, test_lengths=[T], **SMALL
    )
    diagnosis = report.result(T).diagnosis
    assert diagnosis is not None
    assert "positions_beyond_training" not in [cause.kind for cause in diagnosis.causes]


# ----------------------------------------------------------------------------- output mapping


@pytest.mark.parametrize(
    ("spec", "outputs"), [(MODP, (0,)), ("majority:V=2", (0, 1))], ids=["scalar", "classes"]
)
def test_default_unembedding_needs_outputs(spec, outputs):
    model = tl_model()
    assert model.cfg.d_vocab_out == 3
    for run in (
        lambda adapter: simcheck.check(
            model, task=spec, train_len=N, adapter=adapter, test_lengths=[16], **SMALL
        ),
        lambda adapter: simcheck.evaluate(
            model,
            [4],
            task=spec,
            train_len=N,
            adapter=adapter,
            samples=8,
            progress=False,
            save=False,
        ),
    ):
        for adapter in (None, ModelAdapter(prefix=(BOS,))):
            with pytest.raises(SimcheckError) as err:
                run(adapter)
            assert_one_line(err, "outputs", "gives 3")
        run(ModelAdapter(outputs=outputs, prefix=(BOS,)))  # works


def test_output_ids_are_read_in_the_task_order():
    """``outputs=(1, 0)`` reads class 0 from logit 1: the task's order, not the model's."""
    model = tl_model()
    tokens = get_task("majority:V=2").sample(8, 6, np.random.default_rng(0))
    logits = model(with_bos(torch.as_tensor(tokens)))[:, -1].detach()
    subject = resolve(model, "majority:V=2", N, ModelAdapter(outputs=(1, 0), prefix=(BOS,)))
    assert_paths_close(subject.last_outputs(tokens), logits[:, [1, 0]], model, tokens.shape[1] + 1)


# -------------------------------------------------------------------- bare models: eval, bounds


def test_evaluate_takes_a_bare_model(trained_modp):
    result = simcheck.evaluate(
        trained_modp,
        [4, 8],
        task=MODP,
        train_len=N,
        adapter=ADAPTER,
        samples=16,
        progress=False,
        save=False,
    )
    assert list(result.table().index) == [4, 8] and result.train_len == N
    periodic = build_model(get_task(MODP), pos="periodic", d_model=16, d_mlp=32)
    result = simcheck.evaluate(
        periodic, [4, 8], task=MODP, train_len=N, samples=16, progress=False, save=False
    )
    assert list(result.table().index) == [4, 8]


def test_bounds_refuse_learned_positions_in_one_line(trained_modp):
    for adapter in (None, ADAPTER):
        with pytest.raises(SimcheckError) as err:
            bounds(trained_modp, adapter=adapter)
        assert_one_line(err, "periodic or no positions", "learned")


def test_bounds_take_a_bare_periodic_model():
    model = build_model(get_task(MODP), pos="periodic", d_model=16, d_mlp=32)
    result = bounds(model)
    assert result.n_layers == 1 and result.period == 3 and result.vocab == 2
    assert result.n_theory > 0


# ------------------------------------------------------------------------------ command line

FACTORY = """
import warnings
from transformer_lens import HookedTransformer, HookedTransformerConfig

CONFIG = {config!r}


def factory():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return HookedTransformer(HookedTransformerConfig(**CONFIG))


def not_a_model():
    return {{"W_E": None}}
"""


@pytest.fixture
def factory_file(tmp_path) -> Path:
    """A module with ``factory()`` (a tiny untrained TL model) and ``not_a_model()``."""
    path = tmp_path / "user_factories.py"
    path.write_text(FACTORY.format(config={**MODEL_CONFIG, "n_ctx": T + 1, "seed": 0}))
    return path


@pytest.fixture
def saved_modp(trained_modp, tmp_path) -> tuple[Path, Path]:
    """`trained_modp` saved as safetensors and its config as JSON."""
    weights, config = tmp_path / "modp.safetensors", tmp_path / "modp.config.json"
    save_file(trained_modp.state_dict(), weights)
    save_config(trained_modp, config)
    return weights, config


CHECK = ["check", "--task", MODP, "--train-len", str(N), "--outputs", "0", "--prefix", str(BOS)]


def read_certificate(directory: Path) -> dict:
    return json.loads((directory / CERTIFICATE_FILE).read_text())


def test_cli_checks_a_factory_model(factory_file, tmp_path, capsys):
    out = tmp_path / "check"
    argv = [*CHECK, "--model", f"{factory_file}:factory", "--test-len", "32", *SMALL_FLAGS]
    assert main([*argv, "--out", str(out), "--quiet"]) == 0
    assert f"wrote {out}/" in capsys.readouterr().out
    certificate = read_certificate(out)
    assert certificate["config"]["model"]["adapter"]["prefix"] == [BOS]
    assert certificate["config"]["source"] == "model"


def test_cli_evaluates_a_dotted_factory(factory_file, tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(factory_file.parent))
    out = tmp_path / "eval"
    argv = ["eval", "--model", "user_factories:factory", "--task", MODP, "--train-len", str(N)]
    argv += ["--outputs", "0", "--prefix", str(BOS), "--lengths", "4,8", "--samples", "8"]
    assert main([*argv, "--out", str(out), "--quiet"]) == 0
    assert "N=8" in capsys.readouterr().out
    assert (out / EVAL_JSON).is_file()


def test_cli_checks_weights_and_config_as_the_api_does(saved_modp, modp_report, tmp_path):
    weights, config = saved_modp
    out = tmp_path / "check"
    argv = [*CHECK, "--weights", str(weights), "--config", str(config), "--test-len", str(T)]
    assert main([*argv, *SMALL_FLAGS, "--out", str(out), "--quiet"]) == 0
    certificate = read_certificate(out)
    assert certificate["outcome"] == {str(T): "not-simulatable"}
    assert certificate["outcome"] == {str(t): o for t, o in modp_report.outcome.items()}
    assert (
        certificate["config"]["model"]["weights_sha256"]
        == modp_report.config["model"]["weights_sha256"]
    )
    kinds = [cause["kind"] for cause in certificate["results"][0]["diagnosis"]["causes"]]
    assert "positions_beyond_training" in kinds


def _bad_config(tmp_path, saved_modp):
    data = json.loads(saved_modp[1].read_text())
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({**data, "d_modle": 16}))
    return path


def _wider_config(tmp_path, saved_modp):
    path = tmp_path / "wider.json"
    save_config(tl_model(d_model=32, d_head=16), path)
    return path


ERRORS = {
    "missing weights": (
        lambda tmp, saved, factory: [
            "--weights",
            str(tmp / "nope.safetensors"),
            "--config",
            str(saved[1]),
        ],
        ["nope.safetensors: no such file"],
    ),
    "unknown config field": (
        lambda tmp, saved, factory: [
            "--weights",
            str(saved[0]),
            "--config",
            str(_bad_config(tmp, saved)),
        ],
        ["does not know", "d_modle"],
    ),
    "weights do not fit": (
        lambda tmp, saved, factory: [
            "--weights",
            str(saved[0]),
            "--config",
            str(_wider_config(tmp, saved)),
        ],
        ["do not fit", "shapes differ"],
    ),
    "weights without config": (
        lambda tmp, saved, factory: ["--weights", str(saved[0])],
        ["--weights and --config go together"],
    ),
    "model without colon": (
        lambda tmp, saved, factory: ["--model", str(factory)],
        ["MODULE:FUNCTION"],
    ),
    "factory returns no model": (
        lambda tmp, saved, factory: ["--model", f"{factory}:not_a_model"],
        ["returned dict", "not a TransformerLens HookedTransformer"],
    ),
    "output beyond d_vocab_out": (
        lambda tmp, saved, factory: ["--model", f"{factory}:factory", "--outputs", "7"],
        ["output ids [7] are outside", "d_vocab_out"],
    ),
    "prefix beyond d_vocab": (
        lambda tmp, saved, factory: ["--model", f"{factory}:factory", "--prefix", "3"],
        ["prefix tokens [3] are outside"],
    ),
}


def assert_cli_error(capsys, code: int, fragments) -> None:
    captured = capsys.readouterr()
    assert code == 2, captured
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("simcheck: error: ")
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.mark.parametrize("case", list(ERRORS))
def test_cli_one_line_errors(case, saved_modp, factory_file, tmp_path, capsys):
    build_argv, fragments = ERRORS[case]
    extra = build_argv(tmp_path, saved_modp, factory_file)
    # later flags win: the case's --outputs / --prefix replace CHECK's
    out = str(tmp_path / "check")  # a new folder: a check is not saved among other files
    code = main([*CHECK, "--test-len", "16", *SMALL_FLAGS, *extra, "--out", out])
    assert_cli_error(capsys, code, fragments)


@pytest.mark.parametrize("command", ["check", "eval"])
def test_cli_refuses_a_run_directory_with_a_model(command, modp_run_dir, factory_file, capsys):
    argv = [command, str(modp_run_dir), "--model", f"{factory_file}:factory", "--task", MODP]
    code = main([*argv, "--train-len", str(N), "--outputs", "0"])
    assert_cli_error(capsys, code, ["not both"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="cuda is present here")
def test_cli_refuses_an_unavailable_device(factory_file, tmp_path, capsys):
    argv = [*CHECK, "--model", f"{factory_file}:factory", "--device", "cuda", *SMALL_FLAGS]
    code = main([*argv, "--test-len", "16", "--out", str(tmp_path / "check")])
    assert_cli_error(capsys, code, ["device 'cuda' is not available here", "cpu"])


# ------------------------------------------------------------------------------ the example


def test_example_runs_quick(tmp_path, capsys):
    path = Path(__file__).parent.parent / "examples" / "your_own_model.py"
    spec = importlib.util.spec_from_file_location("your_own_model_example", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    example.main(["--quick", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert "T=64: not-simulatable" in out
    assert "causes: ['positions_beyond_training']" in out
    assert (
        "simcheck.theory.bounds refuses this model: the bounds need periodic or no positions" in out
    )
    assert "(same)" in out
    assert f"simcheck check --weights {tmp_path / 'modp.safetensors'}" in out
    for name in ("modp.safetensors", "modp.config.json", "check-modp/certificate.json"):
        assert (tmp_path / name).is_file(), name
