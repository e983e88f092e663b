"""simcheck's probes on a TransformerLens `TransformerBridge`, checked against the HuggingFace
model underneath.

TransformerLens 4.x has no `HookedTransformer`: models are `TransformerBridge` objects wrapping
HuggingFace models (TransformerLens 3.9, which simcheck pins, ships `TransformerBridge` too).
simcheck's recording path (`simcheck.record` with the probes of `simcheck.probes`, "hooks"
engine) runs on a bridge under either version. This script checks that it is right. It:

1. imports simcheck from the checkout it sits in (no install needed; simcheck's
   ``transformer-lens<4`` pin stops pip in a 4.x environment) and reports whether the parts
   that need `HookedTransformer` (model building, training, runs) import too;
2. builds tiny models with random weights (2 layers, 2 heads, d_model 32, vocabulary 8, 128
   positions; ``--arch gpt2,llama,opt,gpt_neo``) or loads ``--model-dir``, saves each with a
   word-level tokenizer and boots it with ``TransformerBridge.boot_transformers(path)``, once
   as booted and once after ``enable_compatibility_mode()``;
3. runs `simcheck.record` with Residual, HeadOutput, AttentionRow, AttentionLogits,
   AttentionEntropy, LogitMargin, TopWeight, AttentionMass and Output, and prints each
   probe's largest absolute difference from a reference: the same checkpoint loaded
   independently as a HuggingFace model (``attn_implementation="eager"``) and the bridge's
   own ``run_with_cache``; also the input guards and the refusal of finite-precision mode.

Llama's rotary attention makes `AttentionLogits` ask for ``hook_rot_q`` / ``hook_rot_k``;
OPT and GPT-Neo use TransformerLens's generic attention bridge, whose ``hook_attn_scores`` is
the pattern again, so simcheck rebuilds the logits from q and k on every bridge.

One mismatch is known and documented (docs/transformer_lens_4.md), and does not fail the
run: GPT-Neo does not scale its attention logits by 1/sqrt(d_head), but the bridge's config
says ``use_attn_scale=True``, so the rebuilt logits (and LogitMargin) are the true ones
divided by sqrt(d_head). For GPT-Neo the script checks them multiplied back by sqrt(d_head).
Exit status 0: every check matches (known issues aside); 1: an unexpected mismatch.

Run it from a checkout, with no network needed::

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 python examples/bridge_probes.py \
        [--arch gpt2,llama,opt,gpt_neo] [--model-dir SAVED_MODEL]

in simcheck's environment (TransformerLens 3.9) or in one with TransformerLens 4.x::

    python3 -m venv /tmp/tl4
    /tmp/tl4/bin/pip install torch==2.13.0 'transformer-lens>=4,<5'
"""

from __future__ import annotations

import argparse
import importlib.abc
import importlib.metadata
import importlib.util
import math
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
TOLERANCE = 1e-4
PACKAGE_DIR = {"simcheck": "simcheck", "simcheck.tasks": "tasks", "simcheck.probes": "probes"}
"""The ``[tool.setuptools.package-dir]`` table of pyproject.toml."""


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


class _CheckoutFinder(importlib.abc.MetaPathFinder):
    """Finds simcheck's three packages in this checkout, as an install would lay them out."""

    def find_spec(self, name, path=None, target=None):
        if name not in PACKAGE_DIR:
            return None
        folder = REPO / PACKAGE_DIR[name]
        return importlib.util.spec_from_file_location(
            name, folder / "__init__.py", submodule_search_locations=[str(folder)]
        )


def import_simcheck() -> None:
    """Import simcheck from this checkout and say which of its parts load here."""
    for name in [n for n in sys.modules if n == "simcheck" or n.startswith("simcheck.")]:
        del sys.modules[name]
    sys.meta_path.insert(0, _CheckoutFinder())
    import simcheck
    import simcheck.model.recording
    import simcheck.probes

    print(f"simcheck {simcheck.__version__} from {Path(simcheck.__file__).parent}")
    print("  simcheck.record, simcheck.probes: import")
    try:
        import simcheck.model.build

        print("  simcheck.model.build (build_model, train, load_run, check): import")
    except ImportError as error:
        message = str(error).split(". ")[0]
        print(
            f"  simcheck.model.build (build_model, train, load_run, check): ImportError: {message}"
        )


def _tokenizer(vocab_size: int):
    import transformers
    from tokenizers import Tokenizer, models, pre_tokenizers

    tok = Tokenizer(models.WordLevel(vocab={str(i): i for i in range(vocab_size)}, unk_token="0"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    last = str(vocab_size - 1)
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="0", bos_token=last, eos_token=last, pad_token="0"
    )


def make_tiny_model(directory: Path, arch: str = "gpt2") -> Path:
    """Save a 2-layer, 2-head, d_model 32, vocabulary 8 model with random weights."""
    import transformers

    torch.manual_seed(0)
    if arch == "gpt2":
        config = transformers.GPT2Config(
            n_layer=2,
            n_head=2,
            n_embd=32,
            vocab_size=8,
            n_positions=128,
            bos_token_id=7,
            eos_token_id=7,
        )
        model = transformers.GPT2LMHeadModel(config)
    elif arch == "llama":
        config = transformers.LlamaConfig(
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=2,
            hidden_size=32,
            intermediate_size=64,
            vocab_size=8,
            max_position_embeddings=128,
            bos_token_id=7,
            eos_token_id=7,
            pad_token_id=0,
        )
        model = transformers.LlamaForCausalLM(config)
    elif arch == "opt":
        config = transformers.OPTConfig(
            num_hidden_layers=2,
            num_attention_heads=2,
            hidden_size=32,
            ffn_dim=64,
            word_embed_proj_dim=32,
            vocab_size=8,
            max_position_embeddings=128,
            bos_token_id=7,
            eos_token_id=7,
            pad_token_id=0,
        )
        model = transformers.OPTForCausalLM(config)
    elif arch == "gpt_neo":
        config = transformers.GPTNeoConfig(
            num_layers=2,
            num_heads=2,
            hidden_size=32,
            vocab_size=8,
            max_position_embeddings=128,
            attention_types=[[["global"], 2]],
            bos_token_id=7,
            eos_token_id=7,
        )
        model = transformers.GPTNeoForCausalLM(config)
    else:
        raise ValueError(f"unknown architecture {arch!r}")
    model.save_pretrained(directory)
    _tokenizer(8).save_pretrained(directory)
    return directory


class HFReference:
    """Residuals, attention (pre- and post-softmax), per-layer attention output and logits
    of the plain HuggingFace model, eager attention."""

    def __init__(self, path: Path, tokens: torch.Tensor) -> None:
        import transformers

        model = transformers.AutoModelForCausalLM.from_pretrained(path, attn_implementation="eager")
        model.eval()
        self.arch = model.config.model_type
        layers = {
            "gpt2": lambda: model.transformer.h,
            "gpt_neo": lambda: model.transformer.h,
            "llama": lambda: model.model.layers,
            "opt": lambda: model.model.decoder.layers,
        }[self.arch]()
        n_heads = model.config.num_attention_heads
        self.qk: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self.attn_out: dict[int, torch.Tensor] = {}
        handles = []
        for layer, block in enumerate(layers):
            attn = block.self_attn if hasattr(block, "self_attn") else block.attn
            handles.append(attn.register_forward_hook(self._keep_out(layer)))
            if self.arch == "gpt2":
                handles.append(attn.c_attn.register_forward_hook(self._keep_qkv(layer, n_heads)))
        with torch.no_grad():
            out = model(tokens, output_attentions=True, output_hidden_states=True)
        for handle in handles:
            handle.remove()
        self.logits = out.logits
        self.pattern = out.attentions  # per layer [batch, head, query, key]
        self.resid_pre = out.hidden_states[:-1]  # the last one has the final norm applied

    def _keep_qkv(self, layer: int, n_heads: int):
        def hook(module, inputs, output):
            q, k, _ = output.split(output.shape[-1] // 3, dim=-1)
            shape = (*q.shape[:2], n_heads, -1)
            self.qk[layer] = (q.reshape(shape), k.reshape(shape))  # [batch, pos, head, d]

        return hook

    def _keep_out(self, layer: int):
        def hook(module, inputs, output):
            self.attn_out[layer] = output[0] if isinstance(output, tuple) else output

        return hook

    def logits_of(self, layer: int) -> torch.Tensor:
        """Pre-softmax scores q k^T / sqrt(d) [batch, head, query, key], future keys -inf
        (GPT-2 only: its fused c_attn gives q and k before any position transform)."""
        q, k = self.qk[layer]
        scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(q.shape[-1])
        length = q.shape[1]
        future = torch.ones(length, length, dtype=torch.bool).triu(1)
        return scores.masked_fill(future, -math.inf)


@dataclass
class Row:
    """One line of the report. ``kind``: "check" (counts towards the exit status), "info"
    (about the bridge, not simcheck), "moved" (compatibility mode legitimately changes the
    value) or "known" (a documented mismatch). ``ok`` decides text values."""

    value: float | str
    kind: str = "check"
    ok: bool = True
    note: str = ""

    @property
    def matches(self) -> bool:
        return self.value <= TOLERANCE if isinstance(self.value, float) else self.ok


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float | str:
    """Largest |a - b| over entries finite in both; inf if the infinite entries differ."""
    a, b = a.float(), b.float()
    if a.shape != b.shape:
        return f"shape {tuple(a.shape)}, expected {tuple(b.shape)}"
    finite = torch.isfinite(a) & torch.isfinite(b)
    if not torch.equal(torch.isfinite(a), torch.isfinite(b)) or not torch.equal(
        a[~finite], b[~finite]
    ):
        return float("inf")
    return float((a - b)[finite].abs().max()) if finite.any() else 0.0


def _diff_row(a: torch.Tensor, b: torch.Tensor, kind: str = "check", note: str = "") -> Row:
    value = _max_diff(a, b)
    return Row(value, kind, ok=not isinstance(value, str), note=note)


def _entropy(weights: torch.Tensor) -> torch.Tensor:
    logs = torch.where(weights > 0, weights.clamp_min(1e-30).log(), torch.zeros_like(weights))
    return -(weights * logs).sum(-1)


def boot(path: Path, compat: bool):
    from transformer_lens.model_bridge import TransformerBridge

    bridge = TransformerBridge.boot_transformers(str(path), device="cpu")
    if compat:
        bridge.enable_compatibility_mode(disable_warnings=True)
    bridge.eval()
    return bridge


def describe_bridge(bridge, probes) -> None:
    cfg = bridge.cfg
    print(
        f"  cfg: n_layers={cfg.n_layers} n_ctx={cfg.n_ctx} d_vocab={cfg.d_vocab} "
        f"n_heads={cfg.n_heads} d_head={cfg.d_head} "
        f"positional_embedding_type={cfg.positional_embedding_type!r} "
        f"use_attn_scale={cfg.use_attn_scale}"
    )
    names = set(bridge.hook_dict)
    asked = sorted({h for p in probes for h in p.hook_names(bridge)})
    missing = [h for h in asked if h not in names]
    print(f"  hook points simcheck asks for: {len(asked)}, missing: {missing or 'none'}")
    extra = [f"blocks.0.attn.hook_{x}" for x in ("attn_scores", "rot_q", "rot_k")]
    print("  " + ", ".join(f"{h.split('.', 2)[2]}: {'yes' if h in names else 'no'}" for h in extra))
    reported: dict[str, str] = {}

    def keep_name(asked_name: str):
        def hook(value, hook):
            reported[asked_name] = hook.name

        return hook

    layer0 = [h for h in asked if h.startswith("blocks.0.") or not h.startswith("blocks.")]
    tokens = torch.zeros(1, 5, dtype=torch.long)
    bridge.run_with_hooks(tokens, fwd_hooks=[(h, keep_name(h)) for h in layer0])
    renamed = [f"{a} -> {r}" for a, r in sorted(reported.items()) if a != r]
    print("  hook.name differs from the name asked for: " + (", ".join(renamed) or "none"))
    cache_names = [f"blocks.0.attn.hook_{x}" for x in ("q", "k", "z", "pattern", "attn_scores")]
    _, cache = bridge.run_with_cache(tokens, names_filter=cache_names)
    shapes = ", ".join(
        f"{n.split('hook_')[1]} {tuple(cache[n].shape)}" for n in cache_names if n in cache
    )
    print(f"  shapes at T=5: {shapes}")
    attn = bridge.blocks[0].attn
    w_o = getattr(attn, "W_O", None)
    shown = tuple(w_o.shape) if w_o is not None else "missing"
    print(f"  blocks[0].attn: {type(attn).__name__}, W_O {shown}")


def _refused(run, error_type: type) -> Row:
    try:
        run()
    except error_type as error:
        return Row(f"{type(error).__name__}: {str(error)[:50]}...")
    except Exception as error:
        return Row(f"{type(error).__name__} (expected {error_type.__name__})", ok=False)
    return Row(f"ran (expected {error_type.__name__})", ok=False)


@torch.no_grad()
def compare(path: Path, compat: bool, tokens: torch.Tensor, positions: tuple[int, ...]) -> dict:
    import simcheck
    from simcheck.errors import LengthError, SimcheckError, TokenError
    from simcheck.probes import (
        AttentionEntropy,
        AttentionLogits,
        AttentionMass,
        AttentionRow,
        HeadOutput,
        LogitMargin,
        Output,
        Residual,
        TopWeight,
    )
    from simcheck.probes.logit_gaps import top_gap

    bridge = boot(path, compat)
    n_layers = bridge.cfg.n_layers
    probes = [Residual(layer, p) for layer in range(n_layers) for p in ("pre", "mid", "post")]
    for layer in range(n_layers):
        kinds = (
            HeadOutput,
            AttentionRow,
            AttentionLogits,
            AttentionEntropy,
            LogitMargin,
            TopWeight,
        )
        probes += [kind(layer) for kind in kinds] + [AttentionMass(layer, by="token")]
    probes.append(Output())
    describe_bridge(bridge, probes)

    rec = simcheck.record(bridge, tokens, probes, positions=positions)
    again = simcheck.record(bridge, tokens, probes, positions=positions, batch_size=1)
    q = torch.tensor(rec.positions)
    hf = HFReference(path, tokens)
    _, cache = bridge.run_with_cache(tokens)
    # compatibility mode folds and centres weights: the residual stream, attention output and
    # logits move away from the HuggingFace model's (they still match the bridge's own cache)
    vs_hf = "moved" if compat else "check"
    # GPT-Neo does not scale its logits by 1/sqrt(d_head); the bridge's cfg says it does
    unscaled = hf.arch == "gpt_neo" and bridge.cfg.use_attn_scale
    scale = math.sqrt(bridge.cfg.d_head)
    known = "known: GPT-Neo does not scale by 1/sqrt(d_head), the bridge cfg says it does"
    rows: dict[str, Row] = {}

    recorded = rec.keys()  # a Recording is not a dict: keys() lists its probes
    rows["record == record(batch_size=1)"] = Row(max(_max_diff(rec[n], again[n]) for n in recorded))
    rows["Output vs HF logits"] = _diff_row(rec["output"], hf.logits[:, q], vs_hf)
    centred = rec["output"] - rec["output"].mean(-1, keepdim=True)
    hf_centred = hf.logits[:, q] - hf.logits[:, q].mean(-1, keepdim=True)
    rows["Output vs HF logits, both centred over the vocabulary"] = _diff_row(centred, hf_centred)
    future = torch.arange(tokens.shape[1])[None, :] > q[:, None]  # [query, key]
    for layer in range(n_layers):
        hf_pattern = hf.pattern[layer][:, :, q].transpose(1, 2)  # [batch, query, head, key]
        rows[f"L{layer} Residual(pre) vs HF hidden_states[{layer}]"] = _diff_row(
            rec[f"resid_pre.L{layer}"], hf.resid_pre[layer][:, q], vs_hf
        )
        for point in ("pre", "mid", "post"):
            rows[f"L{layer} Residual({point}) vs bridge cache"] = _diff_row(
                rec[f"resid_{point}.L{layer}"], cache[f"blocks.{layer}.hook_resid_{point}"][:, q]
            )
        b_o = bridge.blocks[layer].attn.b_O
        heads = rec[f"head_out.L{layer}"].sum(2) + (0.0 if b_o is None else b_o)
        rows[f"L{layer} HeadOutput summed + b_O vs bridge hook_attn_out"] = _diff_row(
            heads, cache[f"blocks.{layer}.hook_attn_out"][:, q]
        )
        rows[f"L{layer} HeadOutput summed + b_O vs HF attention output"] = _diff_row(
            heads, hf.attn_out[layer][:, q], vs_hf
        )
        rows[f"L{layer} AttentionRow vs HF attentions"] = _diff_row(
            rec[f"attn_row.L{layer}"], hf_pattern
        )
        logits = rec[f"attn_logits.L{layer}"]
        infinite = ~torch.isfinite(logits)
        rows[f"L{layer} AttentionLogits is -inf exactly at future keys"] = Row(
            f"shape {tuple(logits.shape)}, key axis {tokens.shape[1]} expected",
            ok=logits.shape[-1] == tokens.shape[1]
            and torch.equal(infinite, future[None, :, None, :].expand_as(logits))
            and bool((logits[infinite] == -math.inf).all()),
        )
        hf_margin = top_gap(hf_pattern.log())  # log-softmax differs from the logits by a shift
        name = f"L{layer} softmax(AttentionLogits) vs HF attentions"
        rows[name] = _diff_row(
            torch.softmax(logits, -1), hf_pattern, *(("known", known) if unscaled else ())
        )
        margin_name = f"L{layer} LogitMargin vs margin of log(HF attentions)"
        rows[margin_name] = _diff_row(
            rec[f"logit_margin.L{layer}"], hf_margin, *(("known", known) if unscaled else ())
        )
        if unscaled:
            rows[f"L{layer} softmax(AttentionLogits * sqrt(d_head)) vs HF attentions"] = _diff_row(
                torch.softmax(logits * scale, -1), hf_pattern
            )
            rows[f"L{layer} LogitMargin * sqrt(d_head) vs margin of log(HF attentions)"] = (
                _diff_row(rec[f"logit_margin.L{layer}"] * scale, hf_margin)
            )
        scores = cache[f"blocks.{layer}.attn.hook_attn_scores"][:, :, q].transpose(1, 2)
        rows[f"L{layer} AttentionLogits vs bridge hook_attn_scores (visible keys)"] = _diff_row(
            logits,
            scores.masked_fill(infinite, -math.inf) if logits.shape == scores.shape else scores,
            "info",
        )
        pattern = cache[f"blocks.{layer}.attn.hook_pattern"][:, :, q].transpose(1, 2)
        visible = pattern > 0
        rows[f"L{layer} bridge hook_attn_scores vs hook_pattern (visible keys)"] = Row(
            float((scores - pattern)[visible].abs().max()), "info"
        )
        rows[f"L{layer} softmax(bridge hook_attn_scores) vs hook_pattern"] = _diff_row(
            torch.softmax(scores, -1), pattern, "info"
        )
        rows[f"L{layer} bridge hook_attn_scores, value at masked keys"] = Row(
            float(scores[~visible].max()) if (~visible).any() else float("nan"), "info"
        )
        if hf.arch == "gpt2":
            hf_logits = hf.logits_of(layer)[:, :, q].transpose(1, 2)
            rows[f"L{layer} AttentionLogits (rebuilt) vs HF q k^T/sqrt(d)"] = _diff_row(
                logits, hf_logits
            )
            visible_scores = scores.masked_fill(hf_logits == -math.inf, -math.inf)
            rows[f"L{layer} bridge hook_attn_scores vs HF q k^T/sqrt(d) (visible keys)"] = (
                _diff_row(visible_scores, hf_logits, "info")
            )
        rows[f"L{layer} AttentionEntropy vs entropy of HF attentions"] = _diff_row(
            rec[f"attn_entropy.L{layer}"], _entropy(hf_pattern)
        )
        rows[f"L{layer} TopWeight vs max of HF attentions"] = _diff_row(
            rec[f"attn_top.L{layer}"], hf_pattern.amax(-1)
        )
        one_hot = torch.nn.functional.one_hot(tokens, bridge.cfg.d_vocab).float()
        rows[f"L{layer} AttentionMass(token) vs HF attentions"] = _diff_row(
            rec[f"attn_mass_token.L{layer}"], torch.einsum("bqhk,bkt->bqht", hf_pattern, one_hot)
        )
    n_ctx, d_vocab = bridge.cfg.n_ctx, bridge.cfg.d_vocab
    rows[f"input of length n_ctx + 1 = {n_ctx + 1}"] = _refused(
        lambda: simcheck.record(bridge, torch.zeros(1, n_ctx + 1, dtype=torch.long), probes[:1]),
        LengthError,
    )
    rows[f"token id d_vocab = {d_vocab}"] = _refused(
        lambda: simcheck.record(bridge, torch.full((1, 4), d_vocab), probes[:1]), TokenError
    )
    rows["finite precision (attention='hardmax')"] = _refused(
        lambda: simcheck.record(bridge, tokens, probes[:1], attention="hardmax"), SimcheckError
    )
    return rows


def _print_rows(rows: dict[str, Row]) -> tuple[bool, int]:
    """Print the rows; return whether every check matched and how many known issues showed."""
    ok, known = True, 0
    width = max(map(len, rows))
    for name, row in rows.items():
        shown = f"{row.value:.3g}" if isinstance(row.value, float) else row.value
        note = ""
        if row.kind == "info":
            note = "(information)"
        elif row.kind == "moved":
            note = "" if row.matches else "(differs: compatibility mode moves it)"
        elif row.kind == "known":
            known += not row.matches
            note = f"({row.note})" if not row.matches else "(known issue not seen: see docs)"
        elif not row.matches:
            note, ok = "<-- MISMATCH", False
        print(f"  {name:<{width}}  {shown}  {note}".rstrip())
    return ok, known


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, help="a saved model (default: tiny random ones)")
    parser.add_argument(
        "--arch",
        default="gpt2",
        help="comma-separated tiny random models to try: gpt2, llama (rotary), opt, gpt_neo",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(
        f"torch {_version('torch')}, transformer-lens {_version('transformer-lens')}, "
        f"transformers {_version('transformers')}"
    )
    import_simcheck()
    generator = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, 8, (3, 24), generator=generator)
    positions = (0, 5, 11, -1)
    ok, known = True, []
    with tempfile.TemporaryDirectory() as tmp:
        models = (
            [("model-dir", args.model_dir)]
            if args.model_dir
            else [(a, None) for a in args.arch.split(",")]
        )
        for arch, given in models:
            path = given or make_tiny_model(Path(tmp) / arch, arch=arch)
            for compat in (False, True):
                mode = "enable_compatibility_mode()" if compat else "as booted"
                print(f"\n== {arch} bridge, {mode}")
                try:
                    matched, seen = _print_rows(compare(path, compat, tokens, positions))
                except Exception as error:  # report and go on: this is what is being measured
                    print(f"  fails: {type(error).__name__}: {str(error)[:200]}")
                    matched, seen = False, 0
                ok &= matched
                if seen:
                    known.append(f"{arch} ({mode}): {seen} rows")
    print("\nall checks match" if ok else "\nsome checks do not match (see above)")
    if known:
        print("known, documented mismatches (docs/transformer_lens_4.md): " + "; ".join(known))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
