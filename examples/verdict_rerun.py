"""Rerun the verdict validation's seed-0 checks and measurements at the current code and
compare them with the cached ones.

`examples/verdict_validation.py` caches every model, measurement and check under
``runs/verdict_validation``. After a change to simcheck's numerics (training aside: the
cached models are reused), this reruns, for every model of both parts, the seed-0 check and
the measurement of length generalization, and prints how many outcomes and measured labels
(generalizes at T, learned at N: the pre-registered criteria) are unchanged, listing any
that changed. Nothing in the cache is overwritten.

    OMP_NUM_THREADS=1 python examples/verdict_rerun.py [--out runs/verdict_validation]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import verdict_validation as validation


def rerun(job: tuple[validation.Model, str]) -> tuple[str, dict]:
    import torch

    model, root = job
    torch.set_num_threads(1)
    check = validation.check_job(model, Path(root), 0)
    return check["outcome"], validation.measure_job(model, Path(root))


def labels(model: validation.Model, measured: dict) -> tuple[bool, bool]:
    return (
        validation.generalizes(model.task, measured, "T"),
        validation.learned_at_n(model.task, measured),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/verdict_validation"))
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    models = validation.grid("dev") + validation.grid("holdout")
    cached = [
        (
            json.loads(validation._job_path(args.out, "check", m, 0).read_text())["outcome"],
            json.loads(validation._job_path(args.out, "measure", m).read_text()),
        )
        for m in models
    ]  # a missing file is an error: run verdict_validation.py first
    with multiprocessing.get_context("spawn").Pool(args.workers) as pool:
        fresh = pool.map(rerun, [(m, str(args.out)) for m in models])
    same_outcome = same_labels = 0
    for model, (old, old_measure), (new, new_measure) in zip(models, cached, fresh, strict=True):
        same_outcome += old == new
        same_labels += labels(model, old_measure) == labels(model, new_measure)
        if old != new or labels(model, old_measure) != labels(model, new_measure):
            print(f"changed: {model.name}: {old} -> {new}; labels "
                  f"{labels(model, old_measure)} -> {labels(model, new_measure)}")  # fmt: skip
    print(
        f"{len(models)} models: seed-0 outcome unchanged for {same_outcome}, measured labels "
        f"unchanged for {same_labels}"
    )


if __name__ == "__main__":
    main()
