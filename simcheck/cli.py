"""The ``simcheck`` command line: ``tasks``, ``train``, ``eval`` and ``demo``.

Every subcommand is a thin layer over the Python API of the same name. Errors in the input
print one line, ``simcheck: error: ...``, that says how to fix them, and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from simcheck.errors import SimcheckError
from simcheck.evaluation import evaluate, parse_lengths
from simcheck.models import POSITIONAL_ENCODINGS
from simcheck.tasks import task_class, task_names, task_parameters
from simcheck.training import TrainingInterrupted, resume_training, train


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
    print(f"evaluate with: simcheck eval {run.path} --lengths 8,16,...,1024")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    """Evaluate a run across test lengths."""
    result = evaluate(
        args.run,
        parse_lengths(args.lengths),
        samples=args.samples,
        seed=args.seed,
        batch_size=args.batch_size,
        progress=_show_progress(args),
    )
    print(f"{result.meta['task']}  pos={result.meta['pos']}  N={result.train_len}")
    print(result.format_table())
    print(f"wrote {Path(args.run) / 'eval.csv'}, eval.json and eval.png")
    return 0


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
    ev.add_argument("run", help="run directory")
    ev.add_argument(
        "--lengths",
        default="8,16,...,1024",
        help="test lengths: '8,16,32' or '8,16,...,2048' (default 8,16,...,1024)",
    )
    ev.add_argument("--samples", type=int, default=512, help="inputs per length (default 512)")
    ev.add_argument("--seed", type=int, default=0, help="evaluation data seed (default 0)")
    ev.add_argument("--batch-size", type=int, help="rows per forward pass (default: automatic)")
    ev.add_argument("--quiet", action="store_true", help="no progress bar")
    ev.set_defaults(func=cmd_eval)

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
    except TrainingInterrupted as err:
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
