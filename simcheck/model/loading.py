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

from simcheck._util.io import load_tensors, write_json
from simcheck.errors import SimcheckError

_NOT_SAVED = ("device",)
"""Config fields left out of a saved config: where to run is chosen when loading."""


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
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise SimcheckError(f"--config {path}: no such file") from None
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
    if isinstance(data.get("dtype"), str):
        dtype = getattr(torch, data["dtype"].removeprefix("torch."), None)
        if not isinstance(dtype, torch.dtype):
            raise SimcheckError(f"--config {path}: unknown dtype {data['dtype']!r}")
        data["dtype"] = dtype
    data.setdefault("device", "cpu")
    try:
        return HookedTransformerConfig.from_dict(data)
    except (TypeError, ValueError, AssertionError) as err:
        raise SimcheckError(
            f"--config {path} is not a valid TransformerLens config: {err}"
        ) from None


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise SimcheckError(f"--weights {path}: no such file")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(path)
        except (SafetensorError, OSError) as err:
            raise SimcheckError(
                f"--weights {path} is not a readable safetensors file ({err})"
            ) from None
    state = load_tensors(path, "--weights")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise SimcheckError(f"--weights {path} must hold a state dict (names to tensors)")
    return state


def load_weights_and_config(weights: str | Path, config: str | Path) -> HookedTransformer:
    """A `HookedTransformer` built from ``config`` (JSON) with ``weights`` loaded strictly."""
    cfg = _read_config(Path(config))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*deprecated.*", category=DeprecationWarning)
        model = HookedTransformer(cfg)
    state = _read_weights(Path(weights))
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(state) & set(expected) if state[k].shape != expected[k].shape)
    if missing or unexpected or wrong:
        problems = []
        if missing:
            problems.append(f"missing {missing[:4]}{' ...' if len(missing) > 4 else ''}")
        if unexpected:
            problems.append(f"unexpected {unexpected[:4]}{' ...' if len(unexpected) > 4 else ''}")
        if wrong:
            problems.append(f"shapes differ for {wrong[:4]}{' ...' if len(wrong) > 4 else ''}")
        raise SimcheckError(
            f"--weights {weights} do not fit --config {config}: {'; '.join(problems)}; pass "
            "the config the weights were saved with"
        )
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
