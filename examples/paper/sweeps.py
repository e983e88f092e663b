"""The paper's three sweeps: their specs (shrunk for a smoke run) and running them."""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import simcheck
from simcheck.sweeps.spec import SweepSpec, load_spec

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

SWEEPS = Path(__file__).resolve().parent.parent / "sweeps"
SWEEP_NAMES = ("fig2_modp", "fig1_simple", "fig4_kgram")
"""The sweeps, in the order they run."""
QUICK = {"steps": 60, "seeds": [0, 1], "train_lens": 2, "eval": "8..256*2", "samples": 32}
"""The smoke run: steps, seeds, how many of the shortest training lengths, evaluation
lengths and inputs per length; the checker gets 8 long inputs (one look)."""


def read_toml(name: str) -> dict[str, Any]:
    """The spec dict of ``examples/sweeps/<name>.toml``."""
    return tomllib.loads((SWEEPS / f"{name}.toml").read_text())


def quick_spec(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` shrunk to a smoke run (`QUICK`): fewer steps, seeds, lengths and samples."""
    data = copy.deepcopy(data)
    grids = data["grid"] if isinstance(data["grid"], list) else [data["grid"]]
    for grid in grids:
        grid["seed"] = QUICK["seeds"]
        grid["train_len"] = sorted(grid["train_len"])[: QUICK["train_lens"]]
        grid.pop("steps", None)
    data.setdefault("train", {})["steps"] = QUICK["steps"]
    data["eval"] = {"lengths": QUICK["eval"], "samples": QUICK["samples"]}
    data["check"] = {**data.get("check", {}), "samples": 8, "max_samples": 8}
    return data


def sweep_specs(quick: bool) -> dict[str, SweepSpec]:
    """The three specs by name, shrunk when ``quick``."""
    specs = {}
    for name in SWEEP_NAMES:
        data = read_toml(name)
        specs[name] = load_spec(quick_spec(data) if quick else data)
    return specs


def run_sweeps(specs: dict[str, SweepSpec], out: Path, workers: int) -> dict[str, dict[str, float]]:
    """Run (or finish) every sweep into ``out/<name>``; return per sweep this call's wall
    time and how many points it ran, reused and lost to failures."""
    calls = {}
    for name, spec in specs.items():
        started = time.perf_counter()
        result = simcheck.sweep(spec, out / name, workers=workers, progress=True)
        calls[name] = {
            "wall": time.perf_counter() - started,
            "ran": len(result.ran),
            "reused": len(result.reused),
            "failed": len(result.failed),
        }
        print(result.summary().splitlines()[0], flush=True)
        if result.failed:
            print(f"  {len(result.failed)} point(s) failed; the figures leave them out")
    return calls
