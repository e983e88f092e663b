"""Models trained elsewhere as Hugging Face GPT-2s: converted to a `HookedTransformer`.

A researcher who trains a ``transformers`` ``GPT2LMHeadModel`` with their own loop and saves it
with ``save_pretrained`` can check it as it is: `load_hf_model` reads the folder offline
(``local_files_only``: nothing is downloaded), builds the `HookedTransformerConfig` from the
GPT-2 config (the fields TransformerLens's own GPT-2 config reads, with the MLP width from
``n_inner`` where the config sets one) and converts the weights with TransformerLens's own
GPT-2 conversion (``convert_gpt2_weights``), without folding layer norms or centring weights,
so the logits are the Hugging Face model's and every hook point is TransformerLens's.

What the check needs beyond the weights comes from an optional ``simcheck`` entry of the
config (``config.simcheck = {...}`` before ``save_pretrained``): ``outputs`` (the token ids
whose logits answer the task, in the task's order), ``prefix`` (tokens put before every
input, such as a BOS id), ``trained_positions`` (how many leading positions training showed
the model; default N plus the prefix) and ``positions`` (``learned`` for GPT-2's table).
Anything the user passes (`ModelAdapter` fields, command-line flags) wins.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import torch

from simcheck.errors import SimcheckError, error_gist
from simcheck.settings.adapter import ModelAdapter

ADAPTER_KEY = "simcheck"
"""The entry of a Hugging Face config that holds the adapter's fields."""
ADAPTER_FIELDS = ("outputs", "prefix", "trained_positions", "positions")
"""The `ModelAdapter` fields the entry may set."""


def is_hf_folder(path: Path) -> bool:
    """Whether ``path`` is a folder ``save_pretrained`` wrote (a ``config.json`` with a
    ``model_type``), as opposed to a simcheck run directory."""
    config = path / "config.json"
    if not (path.is_dir() and config.is_file()) or (path / "spec.json").is_file():
        return False
    try:
        return "model_type" in json.loads(config.read_text())
    except (OSError, ValueError):
        return False


def is_hf_model(model: Any) -> bool:
    """Whether ``model`` is a ``transformers`` model (checked without importing it)."""
    return any(cls.__module__.startswith("transformers.") for cls in type(model).__mro__)


def load_hf_model(source: Any) -> tuple[Any, ModelAdapter]:
    """The `HookedTransformer` of a Hugging Face GPT-2 (a ``GPT2LMHeadModel`` or the folder
    ``save_pretrained`` wrote), and the adapter its config declares (see the module
    docstring). Other architectures and unreadable folders get a one-line error."""
    hf = source if is_hf_model(source) else read_hf_folder(source)
    hf.eval()
    config = hf.config
    if getattr(config, "model_type", None) != "gpt2":
        raise SimcheckError(
            f"a Hugging Face {getattr(config, 'model_type', type(hf).__name__)} model: simcheck "
            "converts GPT-2 models (GPT2LMHeadModel); build other models as a HookedTransformer "
            "and pass it with a ModelAdapter"
        )
    cfg = _tl_config(config)
    from transformer_lens import HookedTransformer
    from transformer_lens.pretrained.weight_conversions import convert_gpt2_weights

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*deprecated.*", category=DeprecationWarning)
        model = HookedTransformer(cfg)
    state = convert_gpt2_weights(hf, cfg)
    model.load_and_process_state_dict(
        state,
        fold_ln=False,
        center_writing_weights=False,
        center_unembed=False,
        fold_value_biases=False,
        refactor_factored_attn_matrices=False,
    )
    return model.eval(), _adapter(config)


def read_hf_folder(folder: str | Path) -> Any:
    """The ``transformers`` model ``save_pretrained`` wrote to ``folder``, loaded offline
    (``local_files_only``); a missing or unreadable folder gets a one-line error."""
    path = Path(folder)
    if not path.is_dir():
        raise SimcheckError(
            f"{path}: no such folder; give the folder a Hugging Face model was saved to "
            "with save_pretrained"
        )
    if not (path / "config.json").is_file():
        raise SimcheckError(f"{path} has no config.json: give the folder save_pretrained wrote")
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return AutoModelForCausalLM.from_pretrained(path, local_files_only=True).eval()
    except Exception as err:  # transformers raises many types for a folder it cannot read
        raise SimcheckError(
            f"{path} is not a loadable Hugging Face model ({error_gist(err)}); give the "
            "folder save_pretrained wrote, config.json and weights together"
        ) from None
    finally:
        if bars:
            hf_logging.enable_progress_bar()


def _tl_config(config: Any) -> Any:
    """The `HookedTransformerConfig` of a GPT-2 config: the fields TransformerLens's own
    conversion reads, the MLP width from ``n_inner`` where set, no folding."""
    from transformer_lens import HookedTransformerConfig

    if config.n_embd % config.n_head:
        raise SimcheckError(
            f"the GPT-2 config's n_embd={config.n_embd} is not divisible by n_head={config.n_head}"
        )
    return HookedTransformerConfig(
        d_model=config.n_embd,
        d_head=config.n_embd // config.n_head,
        n_heads=config.n_head,
        d_mlp=config.n_inner or 4 * config.n_embd,
        n_layers=config.n_layer,
        n_ctx=config.n_positions,
        eps=config.layer_norm_epsilon,
        d_vocab=config.vocab_size,
        act_fn=config.activation_function,
        use_attn_scale=getattr(config, "scale_attn_weights", True),
        scale_attn_by_inverse_layer_idx=config.scale_attn_by_inverse_layer_idx,
        normalization_type="LN",
        positional_embedding_type="standard",
        original_architecture="GPT2LMHeadModel",
        default_prepend_bos=False,
        device="cpu",
        dtype=torch.float32,
    )


def _adapter(config: Any) -> ModelAdapter:
    """The adapter fields the config's ``simcheck`` entry declares."""
    entry = getattr(config, ADAPTER_KEY, None) or {}
    if not isinstance(entry, dict):
        raise SimcheckError(
            f"the Hugging Face config's '{ADAPTER_KEY}' entry must be a dict of ModelAdapter "
            f"fields ({', '.join(ADAPTER_FIELDS)}), got {entry!r}"
        )
    unknown = sorted(set(entry) - set(ADAPTER_FIELDS))
    if unknown:
        raise SimcheckError(
            f"the Hugging Face config's '{ADAPTER_KEY}' entry has unknown fields {unknown}; "
            f"it may set {', '.join(ADAPTER_FIELDS)}"
        )
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in entry.items()}
    return ModelAdapter(**values)
