"""Models trained elsewhere: a Hugging Face GPT-2, converted by TransformerLens's own GPT-2
conversion (`simcheck.model.huggingface`).

The converted model's logits equal the Hugging Face model's; the adapter comes from the
config's ``simcheck`` entry and what the user passes wins; a folder, the model object and
``simcheck check --hf`` give the same check; bad folders get one-line errors; the example runs.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from float32 import assert_paths_close
from transformers import GPT2Config, GPT2LMHeadModel

import simcheck
from simcheck import ModelAdapter, SimcheckError
from simcheck.cli import main
from simcheck.model.huggingface import is_hf_folder, load_hf_model
from simcheck.report.check_report import CERTIFICATE_FILE
from simcheck.storage.subjects import resolve

N, T = 8, 32
TASK = "majority:V=2"
SMALL = {"samples": 40, "max_samples": 40, "reference_samples": 48, "witnesses": ["types"]}
SMALL_FLAGS = ["--samples", "40", "--max-samples", "40", "--reference-samples", "48",
               "--witnesses", "types"]  # fmt: skip


def gpt2(seed: int = 0, **overrides) -> GPT2LMHeadModel:
    """An untrained small GPT-2 over the tokens 0 and 1 (weights random but fixed by seed)."""
    fields = {"vocab_size": 2, "n_positions": T, "n_embd": 16, "n_layer": 2, "n_head": 2,
              "bos_token_id": None, "eos_token_id": None, **overrides}  # fmt: skip
    torch.manual_seed(seed)
    return GPT2LMHeadModel(GPT2Config(**fields)).eval()


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    """A GPT-2 saved with save_pretrained, declaring its outputs in the config."""
    model = gpt2()
    model.config.simcheck = {"outputs": [0, 1], "trained_positions": T}
    folder = tmp_path_factory.mktemp("hf") / "gpt2"
    model.save_pretrained(folder)
    return folder


# ----------------------------------------------------------------------- the conversion


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"n_inner": 24, "activation_function": "relu"},
        {"scale_attn_by_inverse_layer_idx": True, "n_layer": 3, "n_embd": 24, "n_head": 3},
    ],
    ids=["default", "n_inner-relu", "inverse-layer-scale"],
)
def test_converted_logits_equal_the_hf_model(overrides):
    hf = gpt2(seed=1, **overrides)
    with torch.no_grad():  # trained-looking weights: larger than the 0.02 initialisation
        for param in hf.parameters():
            param.mul_(5)
    model, _ = load_hf_model(hf)
    tokens = torch.randint(0, 2, (8, T), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected, got = hf(tokens).logits, model(tokens)
    assert got.shape == expected.shape
    # within 1e-4 of the logits' size, and within the float32 bound of the computation
    scale = max(1.0, expected.abs().max().item())
    assert (got - expected).abs().max().item() <= 1e-4 * scale
    assert_paths_close(got, expected, model, T)


def test_folder_and_model_object_convert_alike(saved):
    from_folder, adapter = load_hf_model(saved)
    from_model, _ = load_hf_model(GPT2LMHeadModel.from_pretrained(saved))
    tokens = torch.randint(0, 2, (4, 20), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(from_folder(tokens), from_model(tokens))
    assert adapter == ModelAdapter(outputs=(0, 1), trained_positions=T)


def test_user_adapter_fields_win_over_the_config(saved):
    subject = resolve(saved, task=TASK, train_len=N, adapter=ModelAdapter(trained_positions=12))
    assert subject.adapter.trained_positions == 12
    assert subject.adapter.outputs == (0, 1)


def test_a_simcheck_run_directory_is_not_taken_for_a_hf_folder(tmp_path):
    simcheck.train(TASK, tmp_path / "run", steps=2, train_len=N, progress=False)
    assert not is_hf_folder(tmp_path / "run")


# ------------------------------------------------------------------------------ checking


def test_folder_model_and_cli_give_one_certificate(saved, tmp_path, capsys):
    by_folder = simcheck.check(saved, task=TASK, train_len=N, test_lengths=[T], **SMALL)
    by_model = simcheck.check(
        GPT2LMHeadModel.from_pretrained(saved), task=TASK, train_len=N, test_lengths=[T], **SMALL
    )
    assert by_folder.outcome == by_model.outcome
    assert by_folder.results[0].eps_star == by_model.results[0].eps_star
    out = tmp_path / "check"
    argv = ["check", "--hf", str(saved), "--task", TASK, "--train-len", str(N),
            "--test-len", str(T), *SMALL_FLAGS, "--out", str(out), "--quiet"]  # fmt: skip
    assert main(argv) == 0
    certificate = json.loads((out / CERTIFICATE_FILE).read_text())
    assert certificate["outcome"] == {str(t): o for t, o in by_folder.outcome.items()}
    assert certificate["config"]["model"]["adapter"]["outputs"] == [0, 1]
    assert certificate["config"]["source"] == str(saved)


def test_evaluate_takes_a_hf_folder(saved):
    rows = simcheck.evaluate(
        saved, task=TASK, train_len=N, lengths=[N], samples=16, progress=False, save=False
    ).rows
    assert rows[0]["length"] == N and 0 <= rows[0]["accuracy"] <= 1


def test_cli_eval_takes_a_hf_folder_with_the_same_accuracy(saved, tmp_path):
    """`simcheck eval --hf` reads the folder and measures what `evaluate` measures."""
    out = tmp_path / "eval"
    argv = ["eval", "--hf", str(saved), "--task", TASK, "--train-len", str(N),
            "--lengths", str(N), "--samples", "16", "--out", str(out), "--quiet"]  # fmt: skip
    assert main(argv) == 0
    row = json.loads((out / "eval.json").read_text())["rows"][0]
    expected = simcheck.evaluate(
        saved, task=TASK, train_len=N, lengths=[N], samples=16, progress=False, save=False
    ).rows[0]
    # the same inputs through the same forward, on one machine: the same number
    assert (row["length"], row["accuracy"]) == (N, expected["accuracy"])


# --------------------------------------------------------------------------- bad input


def _bad_folders(root: Path, saved: Path) -> dict[str, tuple[Path, list[str]]]:
    empty = root / "empty"
    empty.mkdir()
    garbage = root / "garbage"
    garbage.mkdir()
    (garbage / "config.json").write_text("{not json")
    no_weights = root / "no-weights"
    no_weights.mkdir()
    (no_weights / "config.json").write_text((saved / "config.json").read_text())
    bad_entry = root / "bad-entry"
    bad_entry.mkdir()
    config = json.loads((saved / "config.json").read_text())
    (bad_entry / "config.json").write_text(json.dumps({**config, "simcheck": {"colour": 1}}))
    for weights in saved.glob("*.safetensors"):
        (bad_entry / weights.name).write_bytes(weights.read_bytes())
    return {
        "missing": (root / "nowhere", ["no such folder", "save_pretrained"]),
        "empty": (empty, ["has no config.json", "save_pretrained"]),
        "garbage-config": (garbage, ["not a loadable Hugging Face model"]),
        "no-weights": (no_weights, ["not a loadable Hugging Face model", "weights"]),
        "unknown-adapter-field": (bad_entry, ["unknown fields ['colour']", "outputs"]),
    }


@pytest.mark.parametrize(
    "case", ["missing", "empty", "garbage-config", "no-weights", "unknown-adapter-field"]
)
def test_bad_folders_get_one_line_errors(case, saved, tmp_path, capsys):
    folder, fragments = _bad_folders(tmp_path, saved)[case]
    argv = ["check", "--hf", str(folder), "--task", TASK, "--train-len", str(N)]
    assert main([*argv, "--out", str(tmp_path / "out")]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    for fragment in fragments:
        assert fragment in err, err
    assert not (tmp_path / "out").exists()


def test_other_architectures_are_refused_in_one_line(tmp_path):
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    config = GPTNeoXConfig(vocab_size=4, hidden_size=16, num_hidden_layers=1,
                           num_attention_heads=2, intermediate_size=32)  # fmt: skip
    with pytest.raises(SimcheckError) as err:
        load_hf_model(GPTNeoXForCausalLM(config))
    assert "\n" not in str(err.value)
    assert "gpt_neox" in str(err.value) and "HookedTransformer" in str(err.value)


def test_hf_and_model_flags_are_exclusive(saved, tmp_path, capsys):
    argv = ["check", "--hf", str(saved), "--model", "x:y", "--task", TASK, "--train-len", "8"]
    assert main(argv) != 0
    assert "one of them" in capsys.readouterr().err


# ----------------------------------------------------------------------------- the example


def test_example_runs_quick(tmp_path, capsys):
    path = Path(__file__).parent.parent / "examples" / "hf_trained_model.py"
    spec = importlib.util.spec_from_file_location("hf_trained_model_example", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    example.main(["--quick", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert "(same)" in out
    assert f"simcheck check --hf {tmp_path / 'gpt2-majority'}" in out
    assert (tmp_path / "gpt2-majority" / "config.json").is_file()
    assert (tmp_path / "check-gpt2-majority" / CERTIFICATE_FILE).is_file()
