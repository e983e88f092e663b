"""The ``simcheck`` command line: ``tasks``, ``train``, ``eval``, ``check``, ``sweep``,
``bounds``, ``show`` and ``demo``.

Every subcommand is a thin layer over the Python API of the same name. Errors in the input
print one line, ``simcheck: error: ...``, that says how to fix them, and exit with status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from simcheck.errors import SimcheckError, SweepInterrupted, TrainingInterrupted
from simcheck.evaluation import evaluate, parse_lengths
from simcheck.io import weights_hash
from simcheck.models import INIT_MODES, POSITIONAL_ENCODINGS
from simcheck.plotting import length_curves_figure, save_figure
from simcheck.report import CERTIFICATE_FILE, CERTIFICATE_VERSION
from simcheck.runs import (
    EVAL_CSV,
    EVAL_JSON,
    EVAL_PNG,
    LOSS_CURVE_FILE,
    METRICS_FILE,
    load_run,
    read_json,
)
from simcheck.tasks import task_class, task_names, task_parameters
from simcheck.training import resume_training, train


def _first_line(doc: str | None) -> str:
    return (doc or "").strip().splitlines()[0] if doc else ""


def _show_progress(args: argparse.Namespace) -> bool:
    """Progress bars on a terminal, unless --quiet; none in logs and pipes."""
    return not args.quiet and sys.stderr.isatty()


def cmd_tasks(args: argparse.Namespace) -> int:
    """List the registered tasks with their parameters and defaults."""
    for name in task_names():
        cls = task_class(name)
        params = ", ".join(
            f"{k}={default} ({kind.__name__})"
            for k, (kind, default) in task_parameters(cls).items()
        )
        print(f"{name:<8} {_first_line(cls.__doc__)}")
        print(f"{'':<8} parameters: {params or 'none'}")
        print(
            f"{'':<8} output: {cls.output}; default model: {cls.default_layers} layer(s), "
            f"pos={cls.default_pos}"
        )
    print("\nSpec strings: NAME or NAME:key=value,key=value, e.g. modp:p=3,k=0")
    return 0


_MODEL_ARGS = {
    "pos": "pos",
    "layers": "n_layers",
    "heads": "n_heads",
    "d_model": "d_model",
    "d_head": "d_head",
    "d_mlp": "d_mlp",
    "n_ctx": "n_ctx",
    "period": "period",
    "locality": "locality",
    "local_scale": "local_scale",
    "norm": "normalization",
    "init": "init",
    "seed": "seed",
}
_TRAIN_ARGS = (
    "train_len",
    "min_len",
    "steps",
    "batch_size",
    "lr",
    "weight_decay",
    "warmup",
    "grad_clip",
    "data_seed",
    "log_every",
    "checkpoint_every",
)


def cmd_train(args: argparse.Namespace) -> int:
    """Train a model, or resume a run with --resume."""
    progress = _show_progress(args)
    if args.resume:
        run = resume_training(args.resume, progress=progress)
    else:
        if not args.task:
            raise SimcheckError("simcheck train needs --task SPEC (or --resume RUN_DIR)")
        options = {field: getattr(args, arg) for arg, field in _MODEL_ARGS.items()}
        options.update({name: getattr(args, name) for name in _TRAIN_ARGS})
        options = {k: v for k, v in options.items() if v is not None}
        if args.pos_offsets:
            options["pos_offsets"] = True
        run = train(args.task, args.out, overwrite=args.overwrite, progress=progress, **options)
    print(f"trained: {run}")
    print(f"loss curve: {run.path / LOSS_CURVE_FILE}")
    print(f"evaluate with: simcheck eval {run.path} --lengths 8,16,...,1024")
    return 0


def _user_model(args: argparse.Namespace) -> tuple[Any, str] | None:
    """The model named by --model or --weights/--config, with a short name; None if none is."""
    if not (args.model or args.weights or args.config):
        return None
    from simcheck.user_models import load_user_model

    return load_user_model(args.model, args.weights, args.config)


def _adapter(args: argparse.Namespace) -> Any:
    """The `ModelAdapter` the adapter flags describe (unset flags leave fields to the model)."""
    from simcheck.adapter import ModelAdapter

    values = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(ModelAdapter)
        if getattr(args, f.name, None) is not None
    }
    return ModelAdapter(**values)


def cmd_eval(args: argparse.Namespace) -> int:
    """Evaluate one or more runs (or a user's model) across test lengths; with several,
    compare their plateaus."""
    lengths = parse_lengths(args.lengths)
    user = _user_model(args)
    if user is not None and args.runs:
        raise SimcheckError("give run directories or --model/--weights, not both")
    if user is None and not args.runs:
        raise SimcheckError(
            "nothing to evaluate: give run directories, or a model with --model "
            "MODULE:FUNCTION or --weights FILE --config FILE (with --task and --train-len)"
        )
    adapter = _adapter(args)
    subjects: list[tuple[Any, str]] = [user[::-1]] if user else []
    for path in args.runs:
        run = load_run(path)  # refuse a bad directory before any work
        if not run.finished:
            state = run.status.get("state", "unknown")
            print(
                f"note: {run.path} is {state} at step {run.status.get('step', '?')}: "
                "evaluating its last checkpoint"
            )
        subjects.append((str(run.path), run))
    results = {}
    for name, subject in subjects:
        result = evaluate(
            subject,
            lengths,
            samples=args.samples,
            seed=args.seed,
            batch_size=args.batch_size,
            progress=_show_progress(args),
            task=args.task,
            train_len=args.train_len,
            adapter=adapter,
            device=args.device,
            out=args.out,
        )
        results[name] = result
        print(f"{name}: {result.meta['task']}  pos={result.meta['pos']}  N={result.train_len}")
        print(result.format_table())
        written = args.out or (None if user else Path(name))
        if written is not None:
            print(f"wrote {Path(written) / EVAL_CSV}, {EVAL_JSON} and {EVAL_PNG}")
        print()
    if len(results) > 1:
        print(f"{'run':<40} {'pos':<9} {'N':>5} {'plateau':>10}")
        for path, result in results.items():
            plateau = "-" if result.plateau is None else f"{result.plateau:.3e}"
            print(f"{path:<40} {result.meta['pos']:<9} {result.train_len:>5} {plateau:>10}")
    if args.figure:
        curves = [result.curve(path) for path, result in results.items()]
        save_figure(length_curves_figure(curves, ylabel="test loss (mean ± 2 sem)"), args.figure)
        print(f"figure: {args.figure}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """Check a run (or a user's model) at the test lengths: certify it or diagnose it; write
    the certificate and the report."""
    from simcheck.checker import check

    user = _user_model(args)
    if user is not None and args.run:
        raise SimcheckError("give a run directory or --model/--weights, not both")
    config = _check_config(args)
    suffix = "" if config.attention == "softmax" else "-" + config.attention.replace(":", "")
    if user is not None:
        subject, default_out = user[0], Path(f"check-{user[1]}{suffix}")
    elif args.run:
        subject = load_run(args.run)
        default_out = subject.path / f"check{suffix}"
    else:
        raise SimcheckError(
            "nothing to check: give a run directory, or a model with --model MODULE:FUNCTION "
            "or --weights FILE --config FILE (with --task and --train-len)"
        )
    report = check(
        subject,
        task=args.task,
        train_len=args.train_len,
        config=config,
        adapter=_adapter(args),
        device=args.device,
        progress=_show_progress(args),
    )
    out = report.save(args.out or default_out)
    print(report.summary())
    print(f"wrote {out}/: certificate.json, summary.txt, report.html and figures")
    return 0 if report.certified or not args.strict else 1


_ADAPTER_HELP = {
    "outputs": ("--outputs", "output ids that answer the task, in the task's order (default all)"),
    "prefix": ("--prefix", "tokens put before every input, e.g. a BOS id (default none)"),
    "period": ("--period", "Delta of the model's positions (default 1, or the run's)"),
    "window": ("--window", "tau, the model's local window (default 0, or the run's)"),
    "positions": ("--positions", "the model's position encoding (default: read from the model)"),
    "trained_positions": (
        "--trained-positions",
        "leading positions training showed the model (default N + prefix length)",
    ),
}
"""The command-line flag and help of every `ModelAdapter` field."""


def _add_model_options(parser: argparse.ArgumentParser, eval_command: bool) -> None:
    """Options for a model simcheck did not build: where it comes from, its task and N, and
    one flag per `ModelAdapter` field; and the device."""
    from simcheck.adapter import POSITION_KINDS, ModelAdapter

    group = parser.add_argument_group(
        "your own model (a HookedTransformer simcheck did not build; see README 'Your own model')"
    )
    group.add_argument(
        "--model", metavar="MODULE:FUNCTION", help="a function that returns the model"
    )
    group.add_argument("--weights", type=Path, help="model weights (.safetensors or a state dict)")
    group.add_argument("--config", type=Path, help="its HookedTransformerConfig as JSON")
    group.add_argument("--task", help="the task the model answers (default: the run's)")
    if eval_command:
        group.add_argument("--train-len", type=int, help="training length N (default: the run's)")
    for field in dataclasses.fields(ModelAdapter):
        flag, text = _ADAPTER_HELP[field.name]
        if field.name in ("outputs", "prefix"):
            group.add_argument(flag, dest=field.name, type=_id_list, metavar="IDS", help=text)
        elif field.name == "positions":
            group.add_argument(flag, dest=field.name, choices=POSITION_KINDS, help=text)
        else:
            group.add_argument(flag, dest=field.name, type=int, help=text)
    group.add_argument("--device", help="run the model on cpu, cuda, cuda:N or mps")


def _id_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give token ids separated by commas, e.g. 3,4"
        ) from None


_CHECK_HELP = {
    "test_lengths": ("--test-len", "test lengths T, e.g. 256,1024 (default 8 x N)"),
    "eps": ("--eps", "error to certify"),
    "delta": ("--delta", "fraction of long inputs allowed above eps"),
    "confidence": ("--confidence", "confidence level of each verdict"),
    "samples": ("--samples", "long inputs per length at the first look"),
    "max_samples": ("--max-samples", "most long inputs per length while undecided"),
    "witnesses": ("--witnesses", "witness methods, comma-separated"),
    "seed": ("--seed", "seed of inputs and witnesses"),
    "worst_case": ("--worst-case", "rounds of hill climbing towards inputs with large errors"),
    "attention": ("--attention", "softmax, or hardmax[:bits] for finite precision"),
    "reference_samples": ("--reference-samples", "inputs of lengths <= N"),
    "blocks_candidates": ("--blocks-candidates", "block-subsampling witnesses per input"),
    "search_rounds": ("--search-rounds", "rounds of the witness search"),
    "search_proposals": ("--search-proposals", "edits the witness search tries per round"),
    "diverge_at": ("--diverge-at", "median discrepancy (x spread) at which a state diverges"),
    "class_metric": ("--class-metric", "class tasks: compare decisions or total variation"),
}
"""The command-line flag and help of every `CheckConfig` field."""


def _add_check_options(parser: argparse.ArgumentParser) -> None:
    """One flag per `CheckConfig` field, its default read from the field."""
    from simcheck.check_config import CLASS_METRICS, CheckConfig

    defaults = CheckConfig()
    group = parser.add_argument_group("check settings")
    for name in CheckConfig.field_names():
        flag, text = _CHECK_HELP[name]
        default = getattr(defaults, name)
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        help_text = text if name == "test_lengths" else f"{text} (default {shown})"
        if name == "test_lengths":
            group.add_argument(flag, dest=name, type=_lengths_arg, help=help_text)
        elif name == "witnesses":
            group.add_argument(flag, dest=name, type=_comma_list, help=help_text)
        elif name == "class_metric":
            group.add_argument(flag, dest=name, choices=CLASS_METRICS, help=help_text)
        else:
            group.add_argument(flag, dest=name, type=type(default), help=help_text)
    group.add_argument("--bits", type=int, help="precision p: --attention hardmax:<bits>")


def _lengths_arg(text: str) -> list[int]:
    try:
        return parse_lengths(text)
    except SimcheckError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _comma_list(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _check_config(args: argparse.Namespace) -> Any:
    """The `CheckConfig` the check flags describe (unset flags keep the defaults)."""
    from simcheck.check_config import CheckConfig

    values = {
        name: getattr(args, name)
        for name in CheckConfig.field_names()
        if getattr(args, name, None) is not None
    }
    if args.bits is not None:
        if values.get("attention", "hardmax") != "hardmax":
            raise SimcheckError(
                f"--bits sets the precision of hard attention, but --attention is "
                f"'{values['attention']}': drop --bits or use --attention hardmax"
            )
        values["attention"] = f"hardmax:{args.bits}"
    return CheckConfig(**values)


def cmd_sweep(args: argparse.Namespace) -> int:
    """Run (or finish) every point of a sweep spec; print the results table."""
    from simcheck.sweep_spec import load_spec
    from simcheck.sweeps import default_sweep_dir, point_finished, sweep

    spec = load_spec(args.spec)
    if args.dry_run:
        out = Path(args.out or default_sweep_dir(spec))
        for point in spec.points:
            done = point_finished(out, point, spec)
            print(f"{'done   ' if done else 'pending'} {point.name}  {point.task}  {point.options}")
        print(f"{len(spec.points)} points in {out}")
        return 0
    result = sweep(
        spec,
        args.out,
        backend=args.backend,
        workers=args.workers,
        threads=args.threads,
        address=args.address,
        progress=not args.quiet,
    )
    print(result.summary())
    return 1 if result.failed else 0


def cmd_bounds(args: argparse.Namespace) -> int:
    """Print the theory's quantities for a run beside the sweep's empirical N*."""
    from simcheck.bounds import bounds
    from simcheck.sweep_table import empirical_n_star
    from simcheck.sweeps import load_sweep

    run = load_run(args.run)
    sweep_dir = args.sweep or _enclosing_sweep(run.path)
    n_star = None
    if sweep_dir is not None:
        spec = run.model.simcheck_spec
        n_star = empirical_n_star(
            load_sweep(sweep_dir),
            args.eps,
            task=run.task.spec(),
            pos=spec.pos,
            n_layers=spec.n_layers,
            d_model=spec.d_model,
            length=args.length,
        )
    result = bounds(run, eps=args.eps, bits=args.bits, tie_tol=args.tie_tol, n_star=n_star)
    print(json.dumps(result.to_dict(), indent=2) if args.json else result.summary())
    if sweep_dir is not None:
        print(f"empirical N* read from the sweep in {sweep_dir}")
    return 0


def _enclosing_sweep(run_dir: Path) -> Path | None:
    """The sweep directory holding ``run_dir`` (``SWEEP/runs/<point>``), if it is one."""
    from simcheck.sweeps import MANIFEST_FILE, RESULTS_PARQUET

    sweep_dir = run_dir.resolve().parent.parent
    if (sweep_dir / MANIFEST_FILE).is_file() and (sweep_dir / RESULTS_PARQUET).is_file():
        return sweep_dir
    return None


def cmd_show(args: argparse.Namespace) -> int:
    """Print what a run directory holds: task, model, training, state, last loss, plateau."""
    run = load_run(args.run)
    spec = run.model.simcheck_spec
    training = run.spec["training"]
    print(f"run       {run.path}")
    print(f"task      {run.task.spec()}")
    print(
        f"model     pos={spec.pos} layers={spec.n_layers} heads={spec.n_heads} "
        f"d_model={spec.d_model} d_mlp={spec.d_mlp} max_length={spec.max_length} seed={spec.seed}"
    )
    print(
        f"training  N={training['train_len']} steps={training['steps']} "
        f"batch={training['batch_size']} lr={training['lr']} data_seed={training['data_seed']}"
    )
    print(f"state     {run.status.get('state', 'unknown')} at step {run.status.get('step', '?')}")
    metrics = run.path / METRICS_FILE
    lines = metrics.read_text().splitlines() if metrics.is_file() else []
    if lines:
        last = json.loads(lines[-1])
        print(f"loss      {last['loss']:.3e} (mean of the steps up to {last['step']})")
    if (run.path / EVAL_JSON).is_file():
        evaluation = read_json(run.path / EVAL_JSON)
        if evaluation.get("plateau") is not None:
            print(
                f"plateau   {evaluation['plateau']:.3e} at lengths {evaluation['plateau_lengths']}"
            )
    for certificate in sorted(run.path.glob(f"check*/{CERTIFICATE_FILE}")):
        _show_certificate(certificate, run)
    versions = run.spec.get("versions", {})
    print(
        f"versions  simcheck {versions.get('simcheck')}, torch {versions.get('torch')}, "
        f"transformer-lens {versions.get('transformer-lens')}"
    )
    return 0


def _show_certificate(path: Path, run: Any) -> None:
    """One line per saved check: its outcome and chain bound per length, flagged when the
    weights have changed since (a resumed or retrained run)."""
    try:
        certificate = read_json(path)
        if certificate.get("version") != CERTIFICATE_VERSION:
            print(
                f"check     {path.parent.name}: certificate version {certificate.get('version')} "
                f"(this simcheck writes {CERTIFICATE_VERSION}, with outcomes): run "
                f"`simcheck check {run.path}` again"
            )
            return
        outcomes = ", ".join(
            f"T={r['T']}: {r['outcome']} (chain bound {r['chain_bound']:.3g})"
            for r in certificate["results"]
        )
        same = certificate["config"]["model"]["weights_sha256"] == weights_hash(run.model)
    except (SimcheckError, KeyError, TypeError):
        print(f"check     {path.parent.name}: unreadable certificate {path}")
        return
    stale = "" if same else " [weights changed since]"
    print(f"check     {path.parent.name}: {outcomes}{stale}")


def cmd_demo(args: argparse.Namespace) -> int:
    """Train ModPTask(p=3) with periodic and with learned positions at N=32 and compare them
    across test lengths up to 32x N."""
    from simcheck.demo import run_demo

    run_demo(Path(args.out), steps=args.steps, progress=_show_progress(args))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="simcheck",
        description="Length generalization in transformers: tasks, training, evaluation.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("tasks", help="list the tasks and their parameters").set_defaults(func=cmd_tasks)

    tr = sub.add_parser("train", help="train a model on a task (or --resume a run)")
    tr.add_argument("--task", help="task spec, e.g. modp:p=3,k=0 (see `simcheck tasks`)")
    tr.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run")
    tr.add_argument("--out", help="run directory (default runs/<task>-<pos>-N<len>-s<seed>)")
    tr.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")
    model = tr.add_argument_group("model")
    model.add_argument(
        "--pos", choices=POSITIONAL_ENCODINGS, help="positional encoding (default: the task's)"
    )
    model.add_argument("--layers", type=int, help="layers (default: the task's)")
    model.add_argument("--heads", type=int, help="attention heads per layer (default 1)")
    model.add_argument("--d-model", type=int, help="residual width (default 32)")
    model.add_argument("--d-head", type=int, help="head width (default d_model/heads)")
    model.add_argument("--d-mlp", type=int, help="MLP width, 0 = attention only (default 128)")
    model.add_argument(
        "--n-ctx", type=int, help="positions of a learned table: the longest input (default 1024)"
    )
    model.add_argument("--period", type=int, help="Delta for --pos periodic (default: task's)")
    model.add_argument(
        "--locality", type=int, help="tau of the periodic local attention bias (default: task's)"
    )
    model.add_argument(
        "--local-scale",
        choices=("log", "constant"),
        help="scale the local bias by log(i+1) or not (default log)",
    )
    model.add_argument("--norm", choices=("LN", "none"), help="LayerNorm or none (default LN)")
    model.add_argument("--init", choices=INIT_MODES, help="weight initialisation (default gpt2)")
    model.add_argument("--seed", type=int, help="initialisation seed (default 0)")
    training = tr.add_argument_group("training")
    training.add_argument("--train-len", type=int, help="longest training length N (default 32)")
    training.add_argument("--min-len", type=int, help="shortest training length")
    training.add_argument("--steps", type=int, help="optimizer steps (default 3000)")
    training.add_argument("--batch-size", type=int, help="sequences per step (default 64)")
    training.add_argument("--lr", type=float, help="peak learning rate (default 3e-3)")
    training.add_argument("--weight-decay", type=float, help="AdamW weight decay (default 0)")
    training.add_argument("--warmup", type=float, help="warmup fraction (default 0.05)")
    training.add_argument("--grad-clip", type=float, help="max gradient norm (default 1)")
    training.add_argument("--data-seed", type=int, help="seed of the data stream (default 0)")
    training.add_argument(
        "--pos-offsets", action="store_true", help="random position offsets for learned positions"
    )
    training.add_argument("--log-every", type=int, help="steps between metric lines")
    training.add_argument("--checkpoint-every", type=int, help="steps between checkpoints")
    tr.add_argument("--quiet", action="store_true", help="no progress bar")
    tr.set_defaults(func=cmd_train)

    ev = sub.add_parser("eval", help="evaluate a run across test lengths")
    ev.add_argument("runs", nargs="*", metavar="RUN", help="run directories")
    ev.add_argument(
        "--lengths",
        default="8,16,...,1024",
        help="test lengths: '8,16,32' or '8,16,...,2048' (default 8,16,...,1024)",
    )
    ev.add_argument("--samples", type=int, default=512, help="inputs per length (default 512)")
    ev.add_argument("--seed", type=int, default=0, help="evaluation data seed (default 0)")
    ev.add_argument("--batch-size", type=int, help="rows per forward pass (default: automatic)")
    ev.add_argument("--quiet", action="store_true", help="no progress bar")
    ev.add_argument("--figure", type=Path, help="also draw every run's curve into this PNG")
    ev.add_argument(
        "--out", type=Path, help="write eval.json/csv/png here (default: the run's directory)"
    )
    _add_model_options(ev, eval_command=True)
    ev.set_defaults(func=cmd_eval)

    ck = sub.add_parser(
        "check", help="certify or diagnose a run's length generalization at long test lengths"
    )
    ck.add_argument("run", nargs="?", metavar="RUN", help="run directory")
    ck.add_argument("--train-len", type=int, help="training length N (default: the run's)")
    _add_check_options(ck)
    _add_model_options(ck, eval_command=False)
    ck.add_argument(
        "--out", type=Path, help="output directory (default RUN/check, or check-<model name>)"
    )
    ck.add_argument(
        "--strict", action="store_true", help="exit 1 unless every test length is certified"
    )
    ck.add_argument("--quiet", action="store_true", help="no progress bar")
    ck.set_defaults(func=cmd_check)

    sw = sub.add_parser("sweep", help="train, evaluate and check every point of a grid (resumable)")
    sw.add_argument("spec", metavar="SPEC.toml", help="sweep spec (see examples/sweeps/)")
    sw.add_argument("--out", type=Path, help="sweep directory (default runs/sweeps/<name>)")
    sw.add_argument("--backend", choices=("local", "ray"), default="local")
    sw.add_argument("--workers", type=int, help="parallel points (default: CPUs / threads)")
    sw.add_argument("--threads", type=int, default=1, help="torch threads per point (1)")
    sw.add_argument("--address", help="Ray cluster address for --backend ray (default: local)")
    sw.add_argument("--dry-run", action="store_true", help="list the points and stop")
    sw.add_argument("--quiet", action="store_true", help="no progress bar")
    sw.set_defaults(func=cmd_sweep)

    bd = sub.add_parser("bounds", help="the theory's N, gamma and L for a run, beside N*")
    bd.add_argument("run", metavar="RUN", help="run directory")
    bd.add_argument("--sweep", type=Path, help="sweep directory for N* (default: the enclosing)")
    bd.add_argument("--eps", type=float, default=0.1, help="target error (default 0.1)")
    bd.add_argument("--bits", type=int, default=8, help="precision p (default 8)")
    bd.add_argument("--tie-tol", type=float, default=1e-6, help="logits closer than this tie")
    bd.add_argument("--length", type=int, help="test length T of N* (default: the largest)")
    bd.add_argument("--json", action="store_true", help="print JSON instead of a table")
    bd.set_defaults(func=cmd_bounds)

    show = sub.add_parser("show", help="summarise a run directory")
    show.add_argument("run", help="run directory")
    show.set_defaults(func=cmd_show)

    demo = sub.add_parser("demo", help="quick end-to-end demo on the default task (~1 min)")
    demo.add_argument("--out", default="runs/demo", help="where runs and figure go")
    demo.add_argument("--steps", type=int, default=3000, help="training steps per model")
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (TrainingInterrupted, SweepInterrupted) as err:
        print(f"simcheck: {err}", file=sys.stderr)
        return 130
    except SimcheckError as err:
        print(f"simcheck: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("simcheck: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
