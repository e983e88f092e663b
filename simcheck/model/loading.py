"""Load a model a user built elsewhere: a factory ``PKG.MODULE:FUNCTION`` or weights + config.

The command line's ``--model`` and ``--weights``/``--config`` options land here:

- ``load_factory("mypkg.models:build")`` imports ``mypkg.models`` (the current directory is on
  the import path, as for ``python -m``) or a file (``path/to/models.py:build``) and calls
  ``build()``, which must return a TransformerLens `HookedTransformer`.
- ``load_weights_and_config("model.safetensors", "config.json")`` builds a `HookedTransformer`
  from a JSON of `HookedTransformerConfig` fields (`save_config` writes one from a model) and
  loads the weights (safetensors, or a ``torch.save``d state dict) strictly.

Everything that does not fit ends in a one-line `SimcheckError` that says how to fix it.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import json
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

from simcheck._util.io import write_json
from simcheck._util.safe_load import load_tensors
from simcheck.errors import SimcheckError, error_gist

_NOT_SAVED = ("device",)
"""Config fields left out of a saved config: where to run is chosen when loading."""
_INTEGER_FIELDS = (
    "n_layers", "d_model", "n_ctx", "d_head", "n_heads", "d_mlp", "d_vocab", "d_vocab_out",
    "n_key_value_heads", "num_experts", "experts_per_token",
)  # fmt: skip
"""Config fields that size the model: integers, which TransformerLens does not check."""
SAFETENSORS_FIX = (
    "save the weights as safetensors instead: safetensors.torch.save_file(model.state_dict(), "
    '"model.safetensors")'
)
"""How to give weights that load without unpickling anything."""


def _import_module(name: str) -> Any:
    """A module by dotted name (current directory on the path) or by file path."""
    if name.endswith(".py"):
        path = Path(name)
        if not path.is_file():
            raise SimcheckError(f"--model {name}: no such file")
        spec = importlib.util.spec_from_file_location(path.stem, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as err:
        raise SimcheckError(
            f"cannot import '{name}' ({err}); run from the directory that holds it, add that "
            "directory to PYTHONPATH, or give a file: --model path/to/file.py:FUNCTION"
        ) from None


def load_factory(target: str) -> HookedTransformer:
    """Call the factory ``MODULE:FUNCTION`` (``MODULE`` dotted or a ``.py`` file) and return
    the `HookedTransformer` it builds."""
    module_name, colon, function = target.rpartition(":")
    if not colon or not module_name or not function.isidentifier():
        raise SimcheckError(
            f"--model {target!r}: write PKG.MODULE:FUNCTION or path/to/file.py:FUNCTION, a "
            "function that takes no arguments and returns the HookedTransformer"
        )
    module = _import_module(module_name)
    factory = getattr(module, function, None)
    if not callable(factory):
        raise SimcheckError(f"--model {target}: '{module_name}' has no function '{function}'")
    model = factory()
    if not isinstance(model, HookedTransformer):
        raise SimcheckError(
            f"--model {target}: {function}() returned {type(model).__name__}, not a "
            "TransformerLens HookedTransformer; return the model itself"
        )
    return model.eval()


def save_config(model: HookedTransformer, path: str | Path) -> None:
    """Write ``model.cfg`` as JSON, readable by `load_weights_and_config` and by
    ``--config``."""
    data = model.cfg.to_dict()
    for name in _NOT_SAVED:
        data.pop(name, None)
    data["dtype"] = str(data["dtype"]).removeprefix("torch.")
    write_json(Path(path), data)


def _read_config(path: Path) -> HookedTransformerConfig:
    """The `HookedTransformerConfig` in the JSON file ``path`` (as `save_config` writes it)."""
    _check_file(path, "--config", "the JSON file save_config wrote")
    try:
        data = json.loads(path.read_text())
    except OSError as err:
        raise SimcheckError(f"--config {path} cannot be read ({err.strerror})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise SimcheckError(f"--config {path} is not JSON ({err})") from None
    if not isinstance(data, dict):
        raise SimcheckError(
            f"--config {path} must be a JSON object of HookedTransformerConfig fields"
        )
    known = set(HookedTransformerConfig.__dataclass_fields__)
    unknown = sorted(set(data) - known)
    if unknown:
        raise SimcheckError(
            f"--config {path} has fields HookedTransformerConfig does not know: {unknown}; "
            "write the config with simcheck.model.loading.save_config(model, path)"
        )
    for name in _INTEGER_FIELDS:
        value = data.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise SimcheckError(f"--config {path}: {name} must be an integer, got {value!r}")
    if isinstance(data.get("dtype"), str):
        dtype = getattr(torch, data["dtype"].removeprefix("torch."), None)
        if not isinstance(dtype, torch.dtype):
            raise SimcheckError(f"--config {path}: unknown dtype {data['dtype']!r}")
        data["dtype"] = dtype
    data.setdefault("device", "cpu")
    try:
        return HookedTransformerConfig.from_dict(data)
    except Exception as err:  # TransformerLens checks a config with asserts and arithmetic
        raise SimcheckError(
            f"--config {path} is not a valid TransformerLens config ({error_gist(err)})"
        ) from None


def _check_file(path: Path, option: str, expected: str) -> None:
    """Refuse a path that is not a file, saying whether it is a directory or nothing."""
    if path.is_dir():
        raise SimcheckError(f"{option} {path} is a directory: give {expected}")
    if not path.is_file():
        raise SimcheckError(f"{option} {path}: no such file")


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    """The state dict in ``path``: safetensors, or a ``torch.save``d dict of tensors."""
    _check_file(path, "--weights", "the weights file (.safetensors or a torch.save'd state dict)")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(path)
        except (SafetensorError, OSError) as err:
            raise SimcheckError(
                f"--weights {path} is not a readable safetensors file ({err})"
            ) from None
    state = load_tensors(path, "--weights", SAFETENSORS_FIX)
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise SimcheckError(f"--weights {path} must hold a state dict (names to tensors)")
    return state


def _build(cfg: HookedTransformerConfig, config: Path, meta: bool = False) -> HookedTransformer:
    """``HookedTransformer(cfg)`` without its deprecation warning; with ``meta``, on the meta
    device, which gives every tensor its shape and no memory."""
    place = torch.device("meta") if meta else contextlib.nullcontext()
    with warnings.catch_warnings(), place:
        warnings.filterwarnings("ignore", message=".*deprecated.*", category=DeprecationWarning)
        try:
            return HookedTransformer(cfg, move_to_device=not meta)
        except Exception as err:  # TransformerLens checks a config as it builds the model
            raise SimcheckError(
                f"--config {config}: TransformerLens cannot build its model ({error_gist(err)})"
            ) from None


def _listed(names: list[str]) -> str:
    """The first few of ``names``, for a message."""
    return f"{names[:4]}{' ...' if len(names) > 4 else ''}"


def load_weights_and_config(weights: str | Path, config: str | Path) -> HookedTransformer:
    """A `HookedTransformer` built from ``config`` (JSON) with ``weights`` loaded strictly.

    The weights are compared with a model built on the meta device first, so a config that
    describes a model too large for memory is refused for not fitting the weights, before
    anything is allocated; its layers (and experts) are counted against the weights' tensors
    before even that, so it cannot keep the building busy either."""
    weights, config = Path(weights), Path(config)
    cfg = _read_config(config)
    state = _read_weights(weights)
    experts = cfg.num_experts or 1
    if cfg.n_layers * experts > len(state):
        layers = f"{cfg.n_layers} layers" + (f" of {experts} experts" if experts > 1 else "")
        raise SimcheckError(
            f"--weights {weights} do not fit --config {config}: its {layers} take more "
            f"tensors than the {len(state)} the weights hold; pass the config the weights "
            "were saved with"
        )
    expected = _build(cfg, config, meta=True).state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(state) & set(expected) if state[k].shape != expected[k].shape)
    if missing or unexpected or wrong:
        problems = []
        if missing:
            problems.append(f"missing {_listed(missing)}")
        if unexpected:
            problems.append(f"unexpected {_listed(unexpected)}")
        if wrong:
            problems.append(f"shapes differ for {_listed(wrong)}")
        raise SimcheckError(
            f"--weights {weights} do not fit --config {config}: {'; '.join(problems)}; pass "
            "the config the weights were saved with"
        )
    model = _build(cfg, config)
    model.load_state_dict(state, strict=True)
    return model.eval()


def load_user_model(
    factory: str | None = None, weights: str | Path | None = None, config: str | Path | None = None
) -> tuple[HookedTransformer, str]:
    """The model the command line names, and a short name for it (for output folders)."""
    if factory and (weights or config):
        raise SimcheckError("give either --model or --weights with --config, not both")
    if factory:
        return load_factory(factory), factory.rpartition(":")[2]
    if not (weights and config):
        raise SimcheckError("--weights and --config go together: give both")
    return load_weights_and_config(weights, config), Path(weights).stem
