"""A model trained elsewhere: a Hugging Face GPT-2, trained with a plain torch loop, saved with
``save_pretrained`` and checked by simcheck as it is.

The model follows Huang et al. 2025's recipe for binary majority: a GPT-2 of 1 layer, 1 head
and width 16, learned absolute positions trained with random offsets (each batch reads the
table from a random row, so every row up to the longest test length is trained). It learns
``majority:V=2`` at lengths up to N = 16; the data comes from simcheck's task (the oracle),
the model and the training loop from ``transformers`` and torch alone.

Before saving, the config gets a ``simcheck`` entry, which is all simcheck needs beyond the
weights: ``outputs`` (the logits of tokens 0 and 1 are the classes 0 and 1) and
``trained_positions`` (all 64 rows were trained, thanks to the offsets). Then:

- ``simcheck.check(folder, task=..., train_len=...)`` converts the folder to a
  ``HookedTransformer`` with TransformerLens's own GPT-2 conversion (offline; nothing is
  downloaded) and checks it at T = 64;
- ``simcheck.check(model, ...)`` takes the ``GPT2LMHeadModel`` object itself;
- ``simcheck check --hf FOLDER ...`` does the same from the shell (the command is printed and
  run);
- ``simcheck.evaluate`` measures the accuracy the check's verdict is about.

    python examples/hf_trained_model.py [--steps 3000] [--out runs/hf_trained_model] [--quick]

About 16 s on one CPU thread (examples/results/hf_trained_model.txt); ``--quick`` (200
steps, small samples, a few seconds) is what the tests run (tests/test_huggingface.py).
"""

from __future__ import annotations

import argparse
import shlex
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from transformers import GPT2Config, GPT2LMHeadModel
from transformers.utils import logging as hf_logging

import simcheck
from simcheck.cli import main as simcheck_main

TASK = "majority:V=2"
N = 16  # the longest training length
T = 64  # the test length; also the rows of the position table
BATCH = 64
LR = 3e-3
QUICK_CHECK = {"samples": 50, "max_samples": 50, "reference_samples": 64}


def gpt2(seed: int) -> GPT2LMHeadModel:
    """A GPT-2 of 1 layer, 1 head, width 16 over the tokens 0 and 1, without dropout."""
    config = GPT2Config(
        vocab_size=2,
        n_positions=T,
        n_embd=16,
        n_layer=1,
        n_head=1,
        n_inner=64,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=None,
        eos_token_id=None,
    )
    torch.manual_seed(seed)
    return GPT2LMHeadModel(config)


def train(model: GPT2LMHeadModel, steps: int, seed: int) -> GPT2LMHeadModel:
    """A plain loop: lengths uniform in [1, N], a random position offset per batch,
    cross-entropy of the last position's logits 0 and 1 against the majority (ties, which
    have no class, are left out)."""
    task, rng = simcheck.get_task(TASK), np.random.default_rng(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR)
    model.train()
    for _ in range(steps):
        length = int(rng.integers(1, N + 1))
        offset = int(rng.integers(0, T - length + 1))
        batch = task.batch(BATCH, length, rng)
        positions = torch.arange(offset, offset + length)[None].expand(BATCH, -1)
        logits = model(batch.tokens, position_ids=positions).logits[:, -1, :2]
        loss = F.cross_entropy(logits, batch.targets, ignore_index=-1)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/hf_trained_model"))
    parser.add_argument("--quick", action="store_true", help="200 steps, small samples")
    args = parser.parse_args(argv)
    steps = 200 if args.quick else args.steps
    settings = QUICK_CHECK if args.quick else {}

    started = time.perf_counter()
    model = train(gpt2(args.seed), steps, args.seed)
    folder = args.out / "gpt2-majority"
    model.config.simcheck = {"outputs": [0, 1], "trained_positions": T}
    hf_logging.disable_progress_bar()
    model.save_pretrained(folder)
    print(f"trained a GPT-2 on {TASK} at N={N} ({steps} steps, "
          f"{time.perf_counter() - started:.0f} s) and saved it to {folder}")  # fmt: skip

    measured = simcheck.evaluate(
        folder, task=TASK, train_len=N, lengths=[N, T], samples=200 if args.quick else 1000,
        progress=False, save=False,
    )  # fmt: skip
    for row in measured.rows:
        print(f"accuracy at length {row['length']}: {row['accuracy']:.3f}")

    report = simcheck.check(folder, task=TASK, train_len=N, test_lengths=[T], **settings)
    print(f"simcheck.check(folder): T={T}: {report.outcome[T]}")
    print(report.summary())
    same = simcheck.check(model, task=TASK, train_len=N, test_lengths=[T], **settings)
    agree = "(same)" if same.outcome == report.outcome else "(DIFFERENT)"
    print(f"simcheck.check(model):  T={T}: {same.outcome[T]} {agree}")

    out = args.out / "check-gpt2-majority"
    command = ["check", "--hf", str(folder), "--task", TASK, "--train-len", str(N),
               "--test-len", str(T), "--out", str(out), "--quiet"]  # fmt: skip
    for name, value in settings.items():
        command += [f"--{name.replace('_', '-')}", str(value)]
    print(f"simcheck {shlex.join(command)}")
    simcheck_main(command)


if __name__ == "__main__":
    main()
