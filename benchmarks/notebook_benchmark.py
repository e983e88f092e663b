"""Time `examples/quickstart.ipynb` cell by cell, executed headless as a reader would run it.

The notebook runs with nbclient in a fresh ``python3`` kernel, in a temporary folder (its runs
land there), with full settings unless ``--quick`` (which sets ``SIMCHECK_QUICK=1``). Prints
the total and each code cell's seconds from nbclient's execution timestamps.

    OMP_NUM_THREADS=2 python benchmarks/notebook_benchmark.py
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parent.parent / "examples" / "quickstart.ipynb"


def _seconds(cell: nbformat.NotebookNode) -> float | None:
    stamps = cell.get("metadata", {}).get("execution")
    if not stamps:
        return None
    start, end = (
        datetime.datetime.fromisoformat(stamps[key].replace("Z", "+00:00"))
        for key in ("iopub.execute_input", "shell.execute_reply")
    )
    return (end - start).total_seconds()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="run with SIMCHECK_QUICK=1")
    args = parser.parse_args()
    if args.quick:
        os.environ["SIMCHECK_QUICK"] = "1"
    with tempfile.TemporaryDirectory() as folder:
        copy = Path(folder) / NOTEBOOK.name
        shutil.copy(NOTEBOOK, copy)
        notebook = nbformat.read(copy, as_version=4)
        client = NotebookClient(
            notebook, timeout=1800, kernel_name="python3", resources={"metadata": {"path": folder}}
        )
        start = time.perf_counter()
        client.execute()
        total = time.perf_counter() - start
    settings = "quick" if args.quick else "full"
    print(f"{NOTEBOOK.name} ({settings} settings) executed in {total:.0f} s")
    for index, cell in enumerate(notebook.cells):
        seconds = _seconds(cell) if cell.cell_type == "code" else None
        if seconds is not None:
            print(f"cell {index:>2}: {seconds:6.1f} s   {cell.source.splitlines()[0][:60]}")


if __name__ == "__main__":
    main()
