"""Your own model: a HookedTransformer built and trained with plain TransformerLens and torch,
then evaluated, checked and diagnosed by simcheck.

simcheck did not build these models, so a `simcheck.ModelAdapter` says how to read them:

- ``outputs``: TransformerLens's default unembedding gives one logit per vocabulary token
  (d_vocab_out = d_vocab = 3: the task's tokens 0 and 1, and BOS = 2). The scalar task reads
  logit 0 as its value, the two-class task logits 0 and 1 as its classes.
- ``prefix=(BOS,)``: the BOS token the models were trained with is put in front of every input
  simcheck runs them on (long inputs, witnesses, evaluation inputs), so it stays at position 0;
  the lengths N and T count task tokens only.

Two one-layer models with a learned absolute position table (TransformerLens's "standard"
positions, n_ctx = 128), trained at lengths up to N = 16 and checked at T = 64:

- majority:V=2, cross-entropy on logits 0 and 1: counting needs no positions, and the check
  certifies it;
- modp:p=3, squared error on logit 0: the answer depends on positions mod 3, which the model
  reads from table rows 0..16 only; rows 17..64 never received a gradient, and the check says
  not-simulatable, with the cause "position embeddings beyond the trained range".

Then `simcheck.theory.bounds` refuses the learned-position model in one line (the theory needs
periodic or no positions), the modp model's weights (safetensors) and config (JSON) are saved
to --out, reloaded and checked again, and the equivalent ``simcheck check --weights ...
--config ...`` command is printed.

    python examples/your_own_model.py [--steps 2000] [--out runs/your_own_model] [--quick]
                                      [--device cpu]

About a minute on one CPU thread (OMP_NUM_THREADS=1; each model trains in about 20 s, the
three checks take a few seconds each); ``--quick`` (300 steps, small samples, about 15 s) is
what the tests run (tests/test_your_own_model.py).
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from transformer_lens import HookedTransformer, HookedTransformerConfig

import simcheck
from simcheck.model.loading import load_weights_and_config, save_config
from simcheck.theory.bounds import bounds

BOS = 2  # after the task's tokens 0 and 1
N = 16  # the longest training length, in task tokens
T = 64  # the test length
N_CTX = 128  # rows of the position table: BOS + up to 127 task tokens
BATCH = 64
LR = 3e-3


def build(seed: int = 0, device: str = "cpu") -> HookedTransformer:
    """A one-layer HookedTransformer over tokens 0, 1 and BOS, with learned positions and the
    default unembedding (d_vocab_out = d_vocab)."""
    cfg = HookedTransformerConfig(
        n_layers=1,
        d_model=32,
        n_ctx=N_CTX,
        d_head=16,
        n_heads=2,
        d_mlp=64,
        d_vocab=3,
        act_fn="gelu",
        normalization_type="LN",
        seed=seed,
        device=device,
    )
    with warnings.catch_warnings():  # TransformerLens 3.x announces its 4.0 bridge
        warnings.simplefilter("ignore", DeprecationWarning)
        return HookedTransformer(cfg)


def squared_error(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Scalar task: logit 0 is the value."""
    return ((logits[:, 0] - targets.float()) ** 2).mean()


def class_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Two-class task: logits 0 and 1 are the classes; rows without a class (ties) skipped."""
    valid = targets >= 0
    return F.cross_entropy(logits[valid, :2], targets[valid])


def train(
    model: HookedTransformer,
    task: simcheck.Task,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    steps: int,
    min_len: int,
    seed: int = 0,
) -> float:
    """Plain torch: AdamW, fresh inputs every step, one length per batch in [min_len, N], BOS
    in front, loss at the last position. Returns the mean loss of the last 100 steps."""
    device = next(model.parameters()).device
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR)
    rng = np.random.default_rng(seed)
    losses = []
    model.train()
    for _ in range(steps):
        batch = task.batch(BATCH, int(rng.integers(min_len, N + 1)), rng)
        tokens = torch.cat([torch.full((BATCH, 1), BOS), batch.tokens], dim=1).to(device)
        loss = loss_fn(model(tokens)[:, -1], batch.targets.to(device))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return float(np.mean(losses[-100:]))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000, help="training steps per model")
    parser.add_argument("--out", type=Path, default=Path("runs/your_own_model"))
    parser.add_argument("--device", default="cpu", help="cpu, cuda or mps")
    parser.add_argument("--quick", action="store_true", help="300 steps, small samples")
    args = parser.parse_args(argv)
    steps = 300 if args.quick else args.steps
    samples = 64 if args.quick else 1024
    settings = (
        {"samples": 50, "max_samples": 50, "reference_samples": 64, "witnesses": ["types"]}
        if args.quick
        else {}
    )
    args.out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    wall, cpu = time.perf_counter(), time.process_time()
    cfg = build().cfg
    print(
        f"models: {cfg.n_layers} layer, d_model {cfg.d_model}, {cfg.n_heads} heads, d_mlp "
        f"{cfg.d_mlp}, {cfg.positional_embedding_type} (learned) positions with n_ctx {cfg.n_ctx}, "
        f"d_vocab {cfg.d_vocab} (BOS = {BOS}), d_vocab_out {cfg.d_vocab_out}"
    )
    print(
        f"training: AdamW lr {LR:g}, {steps} steps of {BATCH} inputs, N = {N}; evaluation: "
        f"{samples} inputs per length; check at T = {T} with "
        f"{settings or 'the default settings'}\n"
    )

    models = {
        "majority": ("majority:V=2", class_cross_entropy, 1, (0, 1)),
        "modp": ("modp:p=3", squared_error, 3, (0,)),
    }
    reports = {}
    for name, (spec, loss_fn, min_len, outputs) in models.items():
        task = simcheck.get_task(spec)
        model = build(seed=0, device=args.device)
        start = time.perf_counter()
        final = train(model, task, loss_fn, steps, min_len)
        seconds = time.perf_counter() - start
        model.eval()
        print(f"== {spec}: trained {steps} steps at lengths {min_len}..{N} in {seconds:.0f} s")
        print(f"   final training loss {final:.3g}")
        adapter = simcheck.ModelAdapter(outputs=outputs, prefix=(BOS,))
        full = adapter.resolved(model, N)  # what simcheck reads from model.cfg and N
        print(
            f"   adapter: outputs={adapter.outputs} prefix={adapter.prefix}; read from the "
            f"model: positions={full.positions} period={full.period} window={full.window} "
            f"trained_positions={full.trained_positions}"
        )
        # The model lives on --device already (device= would move it there first).
        result = simcheck.evaluate(
            model,
            [8, 16, 32, 64],
            task=task,
            train_len=N,
            adapter=adapter,
            samples=samples,
            progress=False,
            save=False,
        )
        print(result.format_table())
        start = time.perf_counter()
        report = simcheck.check(
            model, task=task, train_len=N, adapter=adapter, test_lengths=[T], **settings
        )
        report.save(args.out / f"check-{name}")
        print(f"   check ({time.perf_counter() - start:.0f} s): {report.verdict}")
        columns = ["outcome", "M", "uncovered", "interval", "chain bound", "long error"]
        print("   " + report.table()[columns].to_string().replace("\n", "\n   "))
        print(f"   wrote {args.out / f'check-{name}'}/ (certificate, summary, report.html)")
        diagnosis = report.result(T).diagnosis
        if diagnosis is not None:
            print(f"   diagnosis at T={T}:")
            for line in diagnosis.lines():
                print(f"     {line}")
            print(f"   causes: {[cause.kind for cause in diagnosis.causes]}")
        print()
        reports[name] = (model, task, adapter, report)

    model, task, adapter, report = reports["modp"]
    print("== bounds need periodic or no positions:")
    try:
        bounds(model, adapter=adapter)
    except simcheck.SimcheckError as err:
        print(f"   simcheck.theory.bounds refuses this model: {err}")
    print()

    weights, config = args.out / "modp.safetensors", args.out / "modp.config.json"
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, weights)
    save_config(model, config)
    again = load_weights_and_config(weights, config)
    recheck = simcheck.check(
        again, task=task, train_len=N, adapter=adapter, test_lengths=[T], **settings
    )
    same = recheck.outcome == report.outcome
    print(f"== saved {weights} and {config}")
    print(f"   reloaded and checked again: {recheck.verdict} ({'same' if same else 'DIFFERENT'})")
    flags = "" if args.device == "cpu" else f" --device {args.device}"
    if args.quick:
        flags += " --samples 50 --max-samples 50 --reference-samples 64 --witnesses types"
    print("   the same check from the command line:")
    print(
        f"   simcheck check --weights {weights} --config {config} --task {models['modp'][0]} "
        f"--train-len {N} --outputs 0 --prefix {BOS} --test-len {T}{flags}"
    )
    print(
        f"\ntotal: {time.perf_counter() - wall:.0f} s wall, {time.process_time() - cpu:.0f} s "
        f"CPU on {torch.get_num_threads()} thread(s), after imports"
    )


if __name__ == "__main__":
    main()
