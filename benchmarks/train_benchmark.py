"""Training speed of simcheck's default ModPTask(p=3) periodic model, three ways, one thread.

The model is ``simcheck.build_model(get_task("modp:p=3"), pos="periodic", d_model=32)``:
one layer, one head, d_mlp 128, pre-LayerNorm, relu, periodic positions (Delta = 3), one
output. Every way trains it on batches of 64 from ``task.batch(64, length, rng)`` with the
length drawn uniformly from [task.min_length, 32], AdamW at lr 3e-3, MSE at the last
position, and is timed over ``--steps`` steps after 20 untimed warm-up steps:

- ``simcheck.train``: the whole ``simcheck.train(...)`` call (run directory, spec, data,
  deterministic kernels, grad clipping, scheduler, metrics, checkpoints and loss plot)
  divided into steps; the warm-up is a separate 20-step call. The row ``simcheck.train
  (logged)`` uses the ``seconds`` that the run itself logs in ``metrics.jsonl`` (time since
  the loop started, at the last step), which leaves out setup and the final checkpoint.
  Its training forward is the fused one (`simcheck.model.fused`, the default); the row
  ``forward="hooked"`` trains through the `HookedTransformer` itself;
- ``ensemble of K``: `simcheck.training.ensemble.train_ensemble` on K members (seeds and data
  seeds 0..K-1, the same settings), counted in member-steps per second (the whole call);
- ``HookedTransformer loop``: a bare AdamW loop over the same ``HookedTransformer``,
  ``model(tokens)[:, -1, 0]``;
- ``plain torch``: the same architecture written in plain torch with
  ``torch.nn.functional.scaled_dot_product_attention``, computed at every position as a
  plain implementation does (the fused forward computes the last layer at the read
  position only, which is where part of its speed comes from).

Each way is repeated ``--repeats`` times, and the table shows the median steps/s and its
ratio to plain torch. Run:

    OMP_NUM_THREADS=1 python benchmarks/train_benchmark.py --steps 400 --repeats 3 --ensemble 8
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import simcheck
from simcheck.model.build import ModelSpec
from simcheck.settings.train import TrainConfig
from simcheck.training.ensemble import Member, train_ensemble

TASK = "modp:p=3"
D_MODEL = 32
TRAIN_LEN = 32
BATCH = 64
LR = 3e-3
WARMUP = 20


class PlainTransformer(nn.Module):
    """One pre-LN block (one attention head, relu MLP), final LN, unembed to one output;
    positions read as row ``t mod period`` of a learned table."""

    def __init__(self, vocab: int, d_model: int, d_mlp: int, period: int, out: int) -> None:
        super().__init__()
        self.period = period
        self.embed = nn.Embedding(vocab, d_model)
        self.pos = nn.Parameter(torch.randn(period, d_model) * 0.02)
        self.ln1 = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.ln2 = nn.LayerNorm(d_model)
        self.mlp_in = nn.Linear(d_model, d_mlp)
        self.mlp_out = nn.Linear(d_mlp, d_model)
        self.ln_final = nn.LayerNorm(d_model)
        self.unembed = nn.Linear(d_model, out)
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        length = tokens.shape[1]
        positions = torch.arange(length, device=tokens.device) % self.period
        x = self.embed(tokens) + self.pos[positions]
        q, k, v = self.qkv(self.ln1(x)).unsqueeze(1).chunk(3, dim=-1)  # [b, 1 head, t, d]
        x = x + self.proj(F.scaled_dot_product_attention(q, k, v, is_causal=True).squeeze(1))
        x = x + self.mlp_out(F.relu(self.mlp_in(self.ln2(x))))
        return self.unembed(self.ln_final(x))


def _loop(model: nn.Module, task, steps: int) -> float:
    """Seconds for ``steps`` bare AdamW steps after ``WARMUP`` untimed ones."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR)
    rng = np.random.default_rng(0)
    model.train()

    def step() -> None:
        length = int(rng.integers(task.min_length, TRAIN_LEN + 1))
        batch = task.batch(BATCH, length, rng)
        loss = F.mse_loss(model(batch.tokens)[:, -1, 0], batch.targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(WARMUP):
        step()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    return time.perf_counter() - started


def time_hooked(task, steps: int) -> float:
    model = simcheck.build_model(task, pos="periodic", d_model=D_MODEL)
    return steps / _loop(model, task, steps)


def time_plain(task, steps: int) -> float:
    spec = simcheck.model.build.ModelSpec.for_task(task, pos="periodic", d_model=D_MODEL)
    torch.manual_seed(0)
    model = PlainTransformer(spec.d_vocab, spec.d_model, spec.d_mlp, spec.period, spec.d_vocab_out)
    return steps / _loop(model, task, steps)


def _config(steps: int, seed: int = 0, forward: str = "fused") -> tuple[ModelSpec, TrainConfig]:
    spec = ModelSpec.for_task(simcheck.get_task(TASK), pos="periodic", d_model=D_MODEL, seed=seed)
    config = TrainConfig(
        train_len=TRAIN_LEN, steps=steps, batch_size=BATCH, data_seed=seed, forward=forward
    )
    return spec, config


def _train(task, out: Path, steps: int, forward: str) -> None:
    spec, config = _config(steps, forward=forward)
    simcheck.train(task, out, model=spec, config=config, progress=False)


def time_train(task, steps: int, forward: str = "fused") -> tuple[float, float | None]:
    """Steps/s of the whole call, and from the run's own logged seconds (None if absent)."""
    with tempfile.TemporaryDirectory() as tmp:
        _train(task, Path(tmp) / "warmup", WARMUP, forward)
        out = Path(tmp) / "run"
        started = time.perf_counter()
        _train(task, out, steps, forward)
        whole = steps / (time.perf_counter() - started)
        logged = None
        metrics = out / "metrics.jsonl"
        if metrics.is_file():
            records = [json.loads(line) for line in metrics.read_text().splitlines() if line]
            last = [r for r in records if r.get("step") == steps and r.get("seconds")]
            if last:
                logged = steps / last[-1]["seconds"]
    return whole, logged


def _logged(task, steps: int) -> float:
    """Logged steps/s of ``simcheck.train`` with the hooked forward."""
    return time_train(task, steps, forward="hooked")[1] or math.nan


def time_ensemble(task, steps: int, members: int) -> float:
    """Member-steps/s of one `train_ensemble` call on ``members`` models."""
    with tempfile.TemporaryDirectory() as tmp:
        jobs = [
            Member(task, Path(tmp) / f"m{seed}", *_config(steps, seed=seed))
            for seed in range(members)
        ]
        started = time.perf_counter()
        train_ensemble(jobs)
        return members * steps / (time.perf_counter() - started)


def median(values: list[float]) -> float:
    return statistics.median(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400, help="timed steps per repeat")
    parser.add_argument("--repeats", type=int, default=1, help="repeats (median is shown)")
    parser.add_argument("--ensemble", type=int, default=8, help="members of the ensemble row")
    args = parser.parse_args()
    torch.set_num_threads(1)
    task = simcheck.get_task(TASK)

    results: dict[str, list[float]] = {
        "simcheck.train (whole call)": [],
        "simcheck.train (logged seconds)": [],
        'simcheck.train, forward="hooked" (logged seconds)': [],
        "HookedTransformer loop": [],
        "plain torch (SDPA)": [],
    }
    ensemble_row = f"ensemble of {args.ensemble} (member-steps/s, whole call)"
    ways: list[tuple[str, Callable[[], float]]] = [
        ("HookedTransformer loop", lambda: time_hooked(task, args.steps)),
        ("plain torch (SDPA)", lambda: time_plain(task, args.steps)),
        ('simcheck.train, forward="hooked" (logged seconds)', lambda: _logged(task, args.steps)),
    ]
    if args.ensemble > 1:
        results[ensemble_row] = []
        ways.append((ensemble_row, lambda: time_ensemble(task, args.steps, args.ensemble)))
    for _ in range(args.repeats):
        whole, logged = time_train(task, args.steps)
        results["simcheck.train (whole call)"].append(whole)
        if logged is not None:
            results["simcheck.train (logged seconds)"].append(logged)
        for name, run in ways:
            results[name].append(run())

    plain = median(results["plain torch (SDPA)"])
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); task {TASK}, "
        f"d_model {D_MODEL}, batch {BATCH}, lengths [{task.min_length}, {TRAIN_LEN}], "
        f"{args.steps} steps after {WARMUP} warm-up, median of {args.repeats}\n"
    )
    print("| way | steps/s | ratio to plain torch |")
    print("| --- | ---: | ---: |")
    for name, values in results.items():
        if values:
            rate = median(values)
            print(f"| {name} | {rate:.1f} | {rate / plain:.2f} |")


if __name__ == "__main__":
    main()
