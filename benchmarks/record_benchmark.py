"""Time and memory of `simcheck.record` against a bare forward pass and `run_with_cache`.

`simcheck.record` computes attention block by block of query rows, so its memory should grow
linearly in the input length T, while TransformerLens materialises T x T attention. This
script measures, for a 2-layer d_model=64 periodic model of ``modp:p=3`` probed at the last
position with ``default_probes(model, period=3)``, at each length:

- ``record``: ``simcheck.record(model, tokens, probes)``; these probes read attention rows in
  every layer, so every layer runs the explicit block-by-block attention;
- ``sdpa``: ``simcheck.record`` with only those of the probes that read no attention rows
  (residuals, head outputs, output), so every layer runs fused through
  ``scaled_dot_product_attention``;
- ``bare``: ``model(tokens)`` under ``torch.no_grad()``;
- ``run_with_cache``: ``model.run_with_cache(tokens)``;
- ``record_hardmax``: ``simcheck.record(..., attention="hardmax")``.

Each (method, T) runs in a fresh subprocess so that its peak RSS (``ru_maxrss``) is its own;
the peak is reset after the model is built where Linux allows it (``/proc/self/clear_refs``).
An untimed call on a 64-token input comes first, so one-time setup is not timed. The table
shows the median wall time of ``--repeats`` calls and the peak RSS in MiB, total and, in
parentheses, the increment over the RSS right after building the model. A quadratic
method whose estimated memory exceeds ``--memory-limit-gib`` is skipped; one whose
subprocess dies (out of memory, say) is reported as failed.

``--device`` (cpu, cuda, cuda:N or mps; default cpu) puts the model and the tokens there. On
cuda the clock is read after ``torch.cuda.synchronize()``, and the table adds the peak device
memory (``torch.cuda.max_memory_allocated``, reset after the warm-up call) beside the RSS,
with its increment over the memory allocated after the warm-up; the linearity verdict then
rests on the device memory, and ``--memory-limit-gib`` is read as device memory. On mps the
clock is read after ``torch.mps.synchronize()`` and only the RSS is shown. A device that is
not available here is refused with a one-line error.

Run it from the repository root::

    python benchmarks/record_benchmark.py
    python benchmarks/record_benchmark.py --lengths 1024,4096 --repeats 5
    python benchmarks/record_benchmark.py --device cuda   # where a GPU is present

Threads: ``OMP_NUM_THREADS`` if set, else 2. Batch 1, seed 0.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from typing import Any

METHODS = ("record", "sdpa", "bare", "run_with_cache", "record_hardmax")
LAYERS, D_MODEL, PERIOD, BATCH = 2, 64, 3, 1
FLOAT_BYTES = 4
GIB = 1 << 30


def threads() -> int:
    """Torch threads: ``OMP_NUM_THREADS`` when the environment sets it, else 2."""
    return int(os.environ.get("OMP_NUM_THREADS", "2"))


QUADRATIC_TENSORS = {"run_with_cache": 4 * LAYERS, "bare": 4}
"""T x T float tensors alive at the peak: ``run_with_cache`` keeps about four per layer (scores,
masked scores, pattern and their cached copies), a bare pass about four at a time, one layer
after the other. `record` and ``sdpa`` hold no T x T tensor, so they are never skipped."""
WARMUP_LENGTH = 64
"""An untimed call on this many tokens first, so one-time setup is not timed."""


def parse_device(name: str) -> Any:
    """``name`` as a ``torch.device`` that is available here; else exit with a one-line error."""
    from simcheck.errors import SimcheckError
    from simcheck.model.subject import parse_device as device_present

    try:
        return device_present(name)
    except SimcheckError as err:
        sys.exit(f"record_benchmark: {err}")


def device_name(device: Any) -> str:
    """The device for the header: ``cpu``, ``mps``, or ``cuda:N (its name)``."""
    import torch

    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


def synchronize(device: Any) -> None:
    """Wait for the device's queued work, so that the clock covers it (no-op on cpu)."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def estimated_bytes(method: str, length: int, heads: int) -> float:
    """Rough peak memory of the T x T attention tensors ``method`` materialises."""
    return BATCH * heads * length * length * FLOAT_BYTES * QUADRATIC_TENSORS.get(method, 0)


def build() -> tuple[Any, Any, list[Any]]:
    """The benchmarked model, its probes and a seeded token generator."""
    import torch

    import simcheck
    from simcheck.probes import default_probes

    model = simcheck.build_model(
        simcheck.get_task("modp:p=3"), n_layers=LAYERS, d_model=D_MODEL, pos="periodic"
    )
    return model, torch.Generator().manual_seed(0), default_probes(model, period=PERIOD)


def reads_attention(probe: Any, model: Any) -> bool:
    """Whether ``probe`` reads attention scores or weights (keeping its layer explicit)."""
    from simcheck.probes.base import ATTENTION_HOOKS

    return any(name.endswith(ATTENTION_HOOKS) for name in probe.hook_names(model))


def current_rss_kib() -> int:
    """Resident memory now, in KiB (``/proc/self/statm``, Linux)."""
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") // 1024


def reset_peak_rss() -> bool:
    """Reset the peak RSS to the current RSS, so that the import's peak does not count."""
    try:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")
    except OSError:
        return False
    return True


def measure_one(method: str, length: int, repeats: int, device: str = "cpu") -> dict[str, Any]:
    """Run ``method`` at ``length`` ``repeats`` times in this process on ``device``: times,
    peak RSS and, on cuda, the peak device memory."""
    import torch

    import simcheck

    torch.set_num_threads(threads())
    where = parse_device(device)
    model, generator, probes = build()
    model.to(where, print_details=False)
    # drawn on the cpu generator, so every device sees the same tokens
    tokens = torch.randint(0, 2, (BATCH, length), generator=generator).to(where)
    cuda = where.type == "cuda"

    fused_probes = [p for p in probes if not reads_attention(p, model)]

    @torch.no_grad()
    def call(inputs: torch.Tensor) -> None:
        if method == "record":
            simcheck.record(model, inputs, probes)
        elif method == "sdpa":
            simcheck.record(model, inputs, fused_probes)
        elif method == "record_hardmax":
            simcheck.record(model, inputs, probes, attention="hardmax")
        elif method == "bare":
            model(inputs)
        else:
            model.run_with_cache(inputs)

    call(tokens[:, :WARMUP_LENGTH])
    synchronize(where)
    if cuda:
        torch.cuda.reset_peak_memory_stats(where)
        device_base = torch.cuda.memory_allocated(where)
    base = current_rss_kib()
    reset = reset_peak_rss()
    times = []
    for _ in range(repeats):
        synchronize(where)
        start = time.perf_counter()
        call(tokens)
        synchronize(where)
        times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    result = {"times": times, "peak_kib": peak, "base_kib": base, "peak_reset": reset}
    if cuda:
        result["device_peak_kib"] = torch.cuda.max_memory_allocated(where) / 1024
        result["device_base_kib"] = device_base / 1024
    return result


def run_subprocess(
    method: str, length: int, repeats: int, device: str = "cpu"
) -> dict[str, Any] | str:
    """`measure_one` in a fresh interpreter; a string says why there is no measurement."""
    command = [sys.executable, __file__, "--one", method, str(length), "--repeats", str(repeats)]
    command += ["--device", device]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return f"failed (exit {done.returncode}: {last[:80]})"
    return json.loads(done.stdout.strip().splitlines()[-1])


def markdown_row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", default="1024,4096,16384", help="comma-separated T")
    parser.add_argument("--repeats", type=int, default=3, help="calls per measurement (median)")
    parser.add_argument("--memory-limit-gib", type=float, default=12.0)
    parser.add_argument(
        "--device", default="cpu", help="where the model runs: cpu (default), cuda, cuda:N, mps"
    )
    parser.add_argument("--one", nargs=2, metavar=("METHOD", "T"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.one:
        method, length = args.one[0], int(args.one[1])
        print(json.dumps(measure_one(method, length, args.repeats, args.device)))
        return

    lengths = [int(x) for x in args.lengths.split(",")]
    where = parse_device(args.device)
    device = str(where)
    cuda = where.type == "cuda"
    heads = build()[0].cfg.n_heads
    print(
        f"model: modp:p=3, pos=periodic, {LAYERS} layers, d_model={D_MODEL}, {heads} head(s); "
        f"device {device_name(where)}; "
        f"batch {BATCH}, {threads()} torch threads, median of {args.repeats}, "
        f"memory limit {args.memory_limit_gib:g} GiB\n"
    )
    header = ["T", "method", "median time s", "peak MiB (increment)", "time vs bare"]
    align = ["---:", "---", "---:", "---:", "---:"]
    if cuda:
        header.insert(4, "peak device MiB (increment)")
        align.insert(4, "---:")
    print(markdown_row(header))
    print(markdown_row(align))
    blank = [""] * (len(header) - 3)
    increments: dict[int, float] = {}
    resets = True
    for length in lengths:
        results: dict[str, dict[str, Any] | str] = {}
        for method in METHODS:
            need = estimated_bytes(method, length, heads)
            if need > args.memory_limit_gib * GIB:
                results[method] = f"skipped (needs ~{need / GIB:.2f} GiB)"
            else:
                results[method] = run_subprocess(method, length, args.repeats, device)
        bare = results["bare"]
        bare_time = statistics.median(bare["times"]) if isinstance(bare, dict) else math.nan
        for method in METHODS:
            result = results[method]
            if isinstance(result, str):
                print(markdown_row([str(length), method, result, *blank]))
                continue
            median = statistics.median(result["times"])
            increment = (result["peak_kib"] - result["base_kib"]) / 1024
            resets = resets and result["peak_reset"]
            ratio = "n/a" if math.isnan(bare_time) else f"{median / bare_time:.2f}x"
            peak = f"{result['peak_kib'] / 1024:.0f} (+{increment:.0f})"
            row = [str(length), method, f"{median:.3f}", peak, ratio]
            if cuda:
                device_increment = (result["device_peak_kib"] - result["device_base_kib"]) / 1024
                row.insert(4, f"{result['device_peak_kib'] / 1024:.1f} (+{device_increment:.1f})")
                increment = device_increment
            if method == "record":
                increments[length] = increment
            print(markdown_row(row))
    if not resets:
        print("\nnote: the peak RSS could not be reset; increments include the import's peak")
    print()
    print(linearity(increments, heads, "device memory" if cuda else "memory"))


def linearity(increments: dict[int, float], heads: int, what: str = "memory") -> str:
    """Whether `record`'s memory increment grew linearly in T, step by step.

    Up to T = sqrt(SCORE_BUDGET / heads) the engine computes every row in one block, so its
    memory grows like T^2 there by design; the verdict rests on the step between the two
    largest lengths. A step counts as linear when the increment grew by at most 1.25 times
    the length ratio (a quadratic step multiplies it by the square of the ratio).
    """
    from simcheck.model.chunked import SCORE_BUDGET

    points = sorted((t, inc) for t, inc in increments.items() if inc > 0)
    if len(points) < 2:
        return f"record {what}: too few measurements to judge its growth."
    steps = [
        f"T {t1} -> {t2} (x{t2 / t1:g}): increment x{i2 / i1:.2f}"
        for (t1, i1), (t2, i2) in itertools.pairwise(points)
    ]
    (t1, i1), (t2, i2) = points[-2:]
    linear = i2 / i1 <= 1.25 * t2 / t1
    verdict = "grew linearly (or slower)" if linear else "grew faster than linearly"
    one_block = math.isqrt(SCORE_BUDGET // heads)
    return (
        f"record {what} {verdict} between the two largest lengths. Steps: {'; '.join(steps)}. "
        f"Up to T = {one_block} all attention rows fit in one block of SCORE_BUDGET scores, "
        "so growth below that is quadratic by design."
    )


if __name__ == "__main__":
    main()
