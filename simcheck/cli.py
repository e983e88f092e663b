"""The ``simcheck`` command line: ``tasks``, ``train``, ``eval``, ``check``, ``sweep``,
``bounds``, ``show`` and ``demo``.

Every subcommand is a thin layer over the Python API of the same name. Errors in the input,
argument errors included, print one line, ``simcheck: error: ...``, that says how to fix
them, and exit with status 2.

The flags of the model, training, check and adapter settings are made from the fields of
`ModelSpec`, `TrainConfig`, `CheckConfig` and `ModelAdapter` (one help table per class, keyed
by field name), so a field cannot lack its flag. This module imports only modules without
torch or TransformerLens; each command imports what it needs, so ``--help``, ``tasks`` and
argument errors answer at once. ``-q``/``--quiet`` and ``-v``/``--verbose`` work before or
after the command; ``--json`` (``show``, ``eval``, ``check``, ``bounds``) prints one JSON
document on stdout and sends notes to stderr.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from simcheck import __version__
from simcheck._util.paths import check_output_dir, check_output_file
from simcheck.checking.config import LENGTHS_HELP, CheckConfig
from simcheck.errors import SimcheckError, SweepInterrupted, TrainingInterrupted, one_line
from simcheck.settings.adapter import ModelAdapter
from simcheck.settings.fields import field_flag, field_kinds
from simcheck.settings.lengths import parse_lengths
from simcheck.settings.model import (
    ModelSpec,
)
from simcheck.settings.train import TrainConfig

DEFAULT_EVAL_LENGTHS = "8..1024*2"
"""``simcheck eval``'s test lengths: 8, 16, ..., 1024."""


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, like every other simcheck error."""

    def error(self, message: str) -> NoReturn:
        """Print ``message`` on one line (an argument typed with a line break in it is
        repeated with ``\\n``) and exit with status 2."""
        self.exit(2, f"simcheck: error: {one_line(message)} (see `{self.prog} --help`)\n")


@dataclass(frozen=True)
class _Flag:
    """How one field of a settings class appears on the command line.

    Attributes:
        flag: the option string.
        help: what the field sets.
        default: the default as the help states it, where the field's own default is not the
            one that applies (a task's, a run's); None shows the field's default.
        choices: the values allowed, for a field of names.
        type: the parser of the value, for a field that is not a plain int, float or string.
        metavar: the value's name in the usage line.
    """

    flag: str
    help: str
    default: str | None = None
    choices: tuple[str, ...] | None = None
    type: Callable[[str], Any] | None = None
    metavar: str | None = None


def _shown(default: Any) -> str | None:
    """A field's default as the help shows it; None where it says nothing."""
    if default is None or default is dataclasses.MISSING or isinstance(default, bool):
        return None
    if isinstance(default, tuple):
        return "default " + (",".join(map(str, default)) or "none")
    return f"default {default}"


def _add_fields(
    group: argparse._ArgumentGroup,
    cls: type,
    flags: dict[str, _Flag],
    derived: tuple[str, ...] = (),
) -> None:
    """One flag per field of the settings class ``cls`` (but those in ``derived``, which are
    set from elsewhere), as ``flags`` names it; the value type comes from the field's
    annotation, the default in the help from the field. A flag left out is None in the
    parsed arguments, so the class's own default applies (see `_field_values`)."""
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        if field.name in derived:
            continue
        spec = flags[field.name]
        kind = next(k for k in field_kinds(hints[field.name]) if k is not type(None))
        shown = f"default: {spec.default}" if spec.default else _shown(field.default)
        text = spec.help if shown is None else f"{spec.help} ({shown})"
        if kind is bool:  # a flag turns the field's default around: --x, or --no-x
            group.add_argument(
                spec.flag,
                dest=field.name,
                action="store_const",
                const=not field.default,
                default=None,
                help=text,
            )
            continue
        metavar = spec.metavar or spec.flag.lstrip("-").replace("-", "_").upper()
        group.add_argument(
            spec.flag,
            dest=field.name,
            type=spec.type or kind,
            choices=spec.choices,
            metavar=None if spec.choices else metavar,
            help=text,
        )


def _field_values(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The fields of ``cls`` that flags set (the others keep the class's defaults)."""
    return {
        field.name: getattr(args, field.name)
        for field in dataclasses.fields(cls)
        if getattr(args, field.name, None) is not None
    }


def _lengths_arg(text: str) -> list[int]:
    try:
        return parse_lengths(text)
    except SimcheckError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _comma_list(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _id_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give token ids separated by commas, e.g. 3,4"
        ) from None


PARSERS: dict[str, Callable[[str], Any]] = {
    "lengths": _lengths_arg,
    "names": _comma_list,
    "ids": _id_list,
}
"""The command-line parsers of `simcheck.settings.fields.PARSERS`."""


def flags_of(cls: type) -> dict[str, _Flag]:
    """The flag of every field of the settings class ``cls`` that has one, from the field's
    own declaration (`simcheck.settings.fields.setting`): nothing is restated here."""
    flags = {}
    for field in dataclasses.fields(cls):
        meta = field.metadata
        if not meta.get("cli", True):
            continue
        parse = meta.get("parse")
        flags[field.name] = _Flag(
            field_flag(field),
            meta["help"],
            meta.get("shown"),
            meta.get("choices"),
            PARSERS[parse] if parse else None,
            meta.get("metavar"),
        )
    return flags


MODEL_FLAGS = flags_of(ModelSpec)
"""The flag of every `ModelSpec` field but those of `FROM_TASK`."""
FROM_TASK = tuple(f.name for f in dataclasses.fields(ModelSpec) if not f.metadata.get("cli", True))
"""`ModelSpec` fields the task sets: they have no flag."""
TRAIN_FLAGS = flags_of(TrainConfig)
"""The flag of every `TrainConfig` field."""
CHECK_FLAGS = flags_of(CheckConfig)
"""The flag of every `CheckConfig` field."""
ADAPTER_FLAGS = flags_of(ModelAdapter)
"""The flag of every `ModelAdapter` field."""


def _show_progress(args: argparse.Namespace) -> bool:
    """Progress bars on a terminal; with --verbose also in logs and pipes; never with
    --quiet."""
    return not args.quiet and (args.verbose or sys.stderr.isatty())


def _note(text: str) -> None:
    """A remark beside the results, on stderr: stdout keeps the results (and --json's
    document)."""
    print(f"note: {text}", file=sys.stderr)


def _print_json(data: Any) -> None:
    """One JSON document on stdout, written as simcheck writes its JSON files."""
    print(json.dumps(data, indent=2, sort_keys=True, default=str))


def _first_line(doc: str | None) -> str:
    return (doc or "").strip().splitlines()[0] if doc else ""


def cmd_tasks(args: argparse.Namespace) -> int:
    """List the registered tasks with their parameters and defaults."""
    from simcheck.tasks import task_class, task_names, task_parameters

    for name in task_names():
        cls = task_class(name)
        params = ", ".join(
            f"{k}={default} ({kind.__name__})"
            for k, (kind, default) in task_parameters(cls).items()
        )
        targets = "every target position" if cls.per_position else "the last position"
        print(f"{name}: {_first_line(cls.__doc__)}")
        print(f"{'':<8} parameters: {params or 'none'}")
        print(
            f"{'':<8} output: {cls.output} at {targets}; default model: "
            f"{cls.default_layers} layer(s), pos={cls.default_pos}"
        )
    print("\nSpec strings: NAME or NAME:key=value,key=value, e.g. modp:p=3,k=0")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """Train a model, or resume a run with --resume (which takes no settings: the run's are
    recorded). The model and training settings are checked before torch is imported, so a
    bad value is refused at once."""
    progress = _show_progress(args)
    if args.resume:
        settings = [(ModelSpec, MODEL_FLAGS), (TrainConfig, TRAIN_FLAGS)]
        ignored = [flags[name].flag for cls, flags in settings for name in _field_values(args, cls)]
        ignored += [flag for flag in ("--task", "--out", "--overwrite") if getattr(args, flag[2:])]
        if ignored:
            raise SimcheckError(
                f"--resume continues {args.resume} with its recorded settings: drop "
                f"{', '.join(ignored)} (or train anew with --out and --overwrite)"
            )
        from simcheck.training.trainer import resume_training

        run = resume_training(args.resume, progress=progress, tensorboard=args.tensorboard)
    else:
        if not args.task:
            raise SimcheckError("simcheck train needs --task SPEC (or --resume RUN_DIR)")
        from simcheck.tasks import get_task

        task = get_task(args.task)
        spec = ModelSpec.for_task(task, **_field_values(args, ModelSpec))
        config = TrainConfig(**_field_values(args, TrainConfig))
        from simcheck.training.trainer import train

        run = train(
            task,
            args.out,
            model=spec,
            config=config,
            overwrite=args.overwrite,
            progress=progress,
            tensorboard=args.tensorboard,
        )
    from simcheck.storage.runs import LOSS_CURVE_FILE

    print(f"trained: {run}")
    print(f"loss curve: {run.path / LOSS_CURVE_FILE}")
    print(f"evaluate with: simcheck eval {run.path} --lengths {DEFAULT_EVAL_LENGTHS}")
    return 0


def _user_model(args: argparse.Namespace) -> tuple[Any, str] | None:
    """The model named by --model, --weights/--config or --hf, with a short name; None if
    none is. A Hugging Face folder is read here (a bad one refused before any work) and handed
    on as a ``transformers`` model: the resolver converts it."""
    if args.hf is not None:
        if args.model or args.weights or args.config:
            raise SimcheckError("give --hf or --model or --weights with --config, one of them")
        from simcheck.model.huggingface import read_hf_folder

        return read_hf_folder(args.hf), args.hf.name
    if not (args.model or args.weights or args.config):
        return None
    from simcheck.model.loading import load_user_model

    return load_user_model(args.model, args.weights, args.config)


def cmd_eval(args: argparse.Namespace) -> int:
    """Evaluate one or more runs (or a user's model) across test lengths; with several,
    compare their plateaus. With --json, print every result as one JSON document."""
    if args.figure is not None:
        check_output_file(args.figure, "figure")
    adapter = ModelAdapter(**_field_values(args, ModelAdapter))
    from simcheck.evaluation.evaluation import evaluate
    from simcheck.storage.runs import EVAL_CSV, EVAL_JSON, EVAL_PNG, load_run

    user = _user_model(args)
    if user is not None and args.runs:
        raise SimcheckError("give run directories or --model/--weights/--hf, not both")
    if user is None and not args.runs:
        raise SimcheckError(
            "nothing to evaluate: give run directories, or a model with --model "
            "MODULE:FUNCTION, --weights FILE --config FILE or --hf DIR (with --task and "
            "--train-len)"
        )
    subjects: list[tuple[Any, str]] = [user[::-1]] if user else []
    for path in args.runs:
        run = load_run(path)  # refuse a bad directory before any work
        if not run.finished:
            state = run.status.get("state", "unknown")
            _note(
                f"{run.path} is {state} at step {run.status.get('step', '?')}: "
                "evaluating its last checkpoint",
            )
        subjects.append((str(run.path), run))
    results = {}
    for name, subject in subjects:
        result = evaluate(
            subject,
            args.lengths,
            samples=args.samples,
            seed=args.seed,
            batch_size=args.batch_size,
            progress=_show_progress(args),
            task=args.task,
            train_len=args.train_len,
            adapter=adapter,
            device=args.device,
            out=args.out,
            bins=args.bins,
        )
        results[name] = result
        if args.json:
            continue
        print(f"{name}: {result.meta['task']}  pos={result.meta['pos']}  N={result.train_len}")
        print(result.format_table())
        written = args.out or (None if user else Path(name))
        if written is not None:
            print(f"wrote {Path(written) / EVAL_CSV}, {EVAL_JSON} and {EVAL_PNG}")
        print()
    if len(results) > 1 and not args.json:
        print(f"{'run':<40} {'pos':<9} {'N':>5} {'plateau':>10}")
        for path, result in results.items():
            plateau = "-" if result.plateau is None else f"{result.plateau:.3e}"
            print(f"{path:<40} {result.meta['pos']:<9} {result.train_len:>5} {plateau:>10}")
    if args.figure:
        from simcheck._util.plotting import length_curves_figure, save_figure

        curves = [result.curve(path) for path, result in results.items()]
        save_figure(length_curves_figure(curves, ylabel="test loss (mean ± 2 sem)"), args.figure)
        if not args.json:
            print(f"figure: {args.figure}")
    if args.json:
        _print_json(
            {
                "results": {name: result.to_dict() for name, result in results.items()},
                "figure": None if args.figure is None else str(args.figure),
            }
        )
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """Check a run (or a user's model) at the test lengths: certify it or diagnose it; write
    the certificate and the report. With --json, print the certificate and its folder."""
    config = _check_config(args)
    adapter = ModelAdapter(**_field_values(args, ModelAdapter))
    if args.out is not None:
        check_output_dir(args.out, "check directory")
    from simcheck.api.check import check
    from simcheck.report.check_report import CHECK_DIR, check_name, ensure_replaceable
    from simcheck.storage.runs import load_run

    user = _user_model(args)
    if user is not None and args.run:
        raise SimcheckError("give a run directory or --model/--weights, not both")
    if user is not None:
        subject, default_out = user[0], Path(f"check-{user[1]}") / check_name(config)
    elif args.run:
        subject = load_run(args.run)
        default_out = subject.path / CHECK_DIR / check_name(config, args.train_len)
    else:
        raise SimcheckError(
            "nothing to check: give a run directory, or a model with --model MODULE:FUNCTION, "
            "--weights FILE --config FILE or --hf DIR (with --task and --train-len)"
        )
    out = Path(args.out or default_out)
    ensure_replaceable(out, args.overwrite)  # before the work, not after it
    if args.target_roles is not None:
        return _check_positions(args, subject, config, adapter, out)
    report = check(
        subject,
        task=args.task,
        train_len=args.train_len,
        config=config,
        adapter=adapter,
        device=args.device,
        progress=_show_progress(args),
    )
    report.save(out, overwrite=args.overwrite)
    if args.json:
        _print_json({"out": str(out), "certificate": report.certificate()})
    else:
        print(report.summary())
        print(f"wrote {out}/: certificate.json, summary.txt, report.html and figures")
    return 0 if report.certified or not args.strict else 1


def _check_positions(
    args: argparse.Namespace, subject: Any, config: Any, adapter: Any, out: Path
) -> int:
    """`simcheck check --target-roles`: one check per target role, each saved in its own
    folder under ``out``, and the outcome over positions in ``positions.json``."""
    from simcheck._util.io import write_json
    from simcheck.api.roles import check_positions

    if args.device is not None:
        raise SimcheckError("--target-roles runs on the model's device; drop --device")
    roles = None if args.target_roles == "default" else args.target_roles.split(",")
    result = check_positions(
        subject,
        task=args.task,
        train_len=args.train_len,
        config=config,
        adapter=adapter,
        roles=roles,
    )
    for role in result.roles:
        role.report.save(out / role.role, overwrite=args.overwrite)
    write_json(out / "positions.json", result.to_dict())
    if args.json:
        _print_json({"out": str(out), "positions": result.to_dict()})
    else:
        print(result.summary())
        print(f"wrote {out}/: positions.json and one check folder per role")
    return 0 if result.certified or not args.strict else 1


def _add_model_options(parser: argparse.ArgumentParser, eval_command: bool) -> None:
    """Options for a model simcheck did not build: where it comes from, its task and N, and
    one flag per `ModelAdapter` field; and the device."""
    group = parser.add_argument_group(
        "your own model (a HookedTransformer simcheck did not build; see docs/guides/models.md)"
    )
    group.add_argument(
        "--model", metavar="MODULE:FUNCTION", help="a function that returns the model"
    )
    group.add_argument("--weights", type=Path, help="model weights (.safetensors or a state dict)")
    group.add_argument("--config", type=Path, help="its HookedTransformerConfig as JSON")
    group.add_argument(
        "--hf",
        type=Path,
        metavar="DIR",
        help="a Hugging Face GPT-2 saved with save_pretrained (read offline; its config's "
        "'simcheck' entry may declare outputs and prefix)",
    )
    group.add_argument("--task", help="the task the model answers (default: the run's)")
    if eval_command:
        group.add_argument("--train-len", type=int, help="training length N (default: the run's)")
    _add_fields(group, ModelAdapter, ADAPTER_FLAGS)
    group.add_argument("--device", help="run the model on cpu, cuda, cuda:N or mps")


def _add_check_options(parser: argparse.ArgumentParser) -> None:
    """One flag per `CheckConfig` field, its default read from the field; and --bits."""
    group = parser.add_argument_group("check settings")
    _add_fields(group, CheckConfig, CHECK_FLAGS)
    group.add_argument("--bits", type=int, help="precision p: --attention hardmax:<bits>")


def _check_config(args: argparse.Namespace) -> CheckConfig:
    """The `CheckConfig` the check flags describe (unset flags keep the defaults)."""
    values = _field_values(args, CheckConfig)
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
    from simcheck.sweeps.runner import default_sweep_dir, point_finished, sweep
    from simcheck.sweeps.spec import load_spec

    spec = load_spec(args.spec)
    if args.dry_run:
        out = Path(args.out or default_sweep_dir(spec))
        for point in spec.points:
            done = point_finished(out, point, spec)
            print(f"{'done   ' if done else 'pending'} {point.name}  {point.task}  {point.options}")
        print(f"{len(spec.points)} points in {out}")
        if spec.imports:
            _note(
                f"reading this spec imported {', '.join(spec.imports)}, which ran their code "
                "(as will every worker): run only specs you trust"
            )
        return 0
    result = sweep(
        spec,
        args.out,
        backend=args.backend,
        workers=args.workers,
        threads=args.threads,
        address=args.address,
        progress=not args.quiet,
        **({} if args.ensemble is None else {"ensemble": args.ensemble}),
    )
    print(result.summary())
    return 1 if result.failed else 0


def cmd_bounds(args: argparse.Namespace) -> int:
    """Print the theory's quantities for a run beside the sweep's empirical N*."""
    from simcheck.storage.runs import load_run
    from simcheck.sweeps.runner import load_sweep
    from simcheck.sweeps.table import empirical_n_star
    from simcheck.theory.bounds import bounds

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
    if args.json:
        _print_json(result.to_dict())
    else:
        print(result.summary())
    if sweep_dir is not None:
        _note(f"empirical N* read from the sweep in {sweep_dir}")
    return 0


def _enclosing_sweep(run_dir: Path) -> Path | None:
    """The sweep directory holding ``run_dir`` (``SWEEP/runs/<point>``), if it is one."""
    from simcheck.sweeps.runner import MANIFEST_FILE, RESULTS_PARQUET

    sweep_dir = run_dir.resolve().parent.parent
    if (sweep_dir / MANIFEST_FILE).is_file() and (sweep_dir / RESULTS_PARQUET).is_file():
        return sweep_dir
    return None


def cmd_show(args: argparse.Namespace) -> int:
    """Print what a run directory holds: task, model, training, state, last loss, plateau,
    saved checks; with --json as one JSON document."""
    from simcheck.storage.runs import EVAL_JSON, load_run, read_json_object, read_metrics

    run = load_run(args.run)
    metrics = read_metrics(run.path)
    eval_file = run.path / EVAL_JSON
    evaluation = read_json_object(eval_file) if eval_file.is_file() else {}
    from simcheck.report.check_report import CERTIFICATE_FILE, saved_checks

    summary = {
        "run": str(run.path),
        "task": run.task.spec(),
        "model": run.model.simcheck_spec.to_dict(),
        "training": run.spec["training"],
        "state": run.status.get("state", "unknown"),
        "step": run.status.get("step"),
        "last_metrics": metrics[-1] if metrics else None,
        "plateau": evaluation.get("plateau"),
        "plateau_lengths": evaluation.get("plateau_lengths"),
        "checks": [
            _certificate_summary(folder / CERTIFICATE_FILE, run)
            for folder in saved_checks(run.path)
        ],
        "versions": run.spec.get("versions", {}),
    }
    if args.json:
        _print_json(summary)
    else:
        _print_show(summary, run)
    return 0


def _print_show(summary: dict[str, Any], run: Any) -> None:
    """`cmd_show`'s summary as text, one line per item."""
    spec, training = run.model.simcheck_spec, summary["training"]
    print(f"run       {summary['run']}")
    print(f"task      {summary['task']}")
    print(
        f"model     pos={spec.pos} layers={spec.n_layers} heads={spec.n_heads} "
        f"d_model={spec.d_model} d_mlp={spec.d_mlp} max_length={spec.max_length} seed={spec.seed}"
    )
    print(
        f"training  N={training['train_len']} steps={training['steps']} "
        f"batch={training['batch_size']} lr={training['lr']} data_seed={training['data_seed']}"
    )
    step = "?" if summary["step"] is None else summary["step"]
    print(f"state     {summary['state']} at step {step}")
    last = summary["last_metrics"]
    if last is not None:
        print(f"loss      {last['loss']:.3e} (mean of the steps up to {last['step']})")
    if summary["plateau"] is not None:
        print(f"plateau   {summary['plateau']:.3e} at lengths {summary['plateau_lengths']}")
    for check in summary["checks"]:
        print(f"check     {check['folder']}: {check['text']}")
    versions = summary["versions"]
    print(
        f"versions  simcheck {versions.get('simcheck')}, torch {versions.get('torch')}, "
        f"transformer-lens {versions.get('transformer-lens')}"
    )


def _certificate_summary(path: Path, run: Any) -> dict[str, Any]:
    """A saved check: its folder in the run, its outcome and chain bound per length, whether
    the weights have changed since (a resumed or retrained run), and a line of text that
    says it all (or why the certificate cannot be read)."""
    from simcheck._util.io import weights_hash
    from simcheck.report.check_report import CERTIFICATE_VERSION, LISTED_VERSIONS
    from simcheck.storage.runs import read_json

    folder = path.parent.relative_to(run.path).as_posix()
    summary: dict[str, Any] = {"folder": folder, "path": str(path)}
    try:
        certificate = read_json(path)
        if certificate.get("version") not in LISTED_VERSIONS:
            return {
                **summary,
                "error": "old certificate version",
                "text": f"certificate version {certificate.get('version')} (this simcheck "
                f"writes {CERTIFICATE_VERSION}, with outcomes): run `simcheck check "
                f"{run.path}` again",
            }
        results = [
            {"T": r["T"], "outcome": r["outcome"], "chain_bound": r["chain_bound"]}
            for r in certificate["results"]
        ]
        same = certificate["config"]["model"]["weights_sha256"] == weights_hash(run.model)
    except (SimcheckError, KeyError, TypeError):
        return {**summary, "error": "unreadable", "text": f"unreadable certificate {path}"}
    outcomes = ", ".join(
        f"T={r['T']}: {r['outcome']} (chain bound {r['chain_bound']:.3g})" for r in results
    )
    stale = "" if same else " [weights changed since]"
    return {**summary, "results": results, "weights_changed": not same, "text": outcomes + stale}


def cmd_demo(args: argparse.Namespace) -> int:
    """Train ModPTask(p=3) with periodic and with learned positions at N=32 and compare them
    across test lengths up to 32x N."""
    from simcheck.demo import run_demo

    run_demo(Path(args.out), steps=args.steps, progress=_show_progress(args))
    return 0


def _add_verbosity(parser: argparse.ArgumentParser, default: Any) -> None:
    """-q/--quiet and -v/--verbose. The main parser's default is False; a command's is
    SUPPRESS, so that a flag given before the command is not reset after it."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "-q", "--quiet", action="store_true", default=default, help="no progress bars"
    )
    group.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=default,
        help="progress bars also when stderr is not a terminal (logs, pipes)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="simcheck",
        description="Length generalization in transformers: tasks, training, evaluation.",
    )
    parser.add_argument("--version", action="version", version=f"simcheck {__version__}")
    _add_verbosity(parser, False)
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help: str) -> argparse.ArgumentParser:
        made = sub.add_parser(name, help=help)
        _add_verbosity(made, argparse.SUPPRESS)
        return made

    command("tasks", "list the tasks and their parameters").set_defaults(func=cmd_tasks)

    tr = command("train", "train a model on a task (or --resume a run)")
    tr.add_argument("--task", help="task spec, e.g. modp:p=3,k=0 (see `simcheck tasks`)")
    tr.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run")
    tr.add_argument("--out", help="run directory (default runs/<task>-<pos>-N<len>-s<seed>)")
    tr.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")
    tr.add_argument(
        "--tensorboard",
        metavar="DIR",
        help="also log the training metrics to TensorBoard in DIR (needs tensorboard installed)",
    )
    _add_fields(tr.add_argument_group("model"), ModelSpec, MODEL_FLAGS, derived=FROM_TASK)
    _add_fields(tr.add_argument_group("training"), TrainConfig, TRAIN_FLAGS)
    tr.set_defaults(func=cmd_train)

    ev = command("eval", "evaluate a run across test lengths")
    ev.add_argument("runs", nargs="*", metavar="RUN", help="run directories")
    ev.add_argument(
        "--lengths",
        type=_lengths_arg,
        default=DEFAULT_EVAL_LENGTHS,
        help=f"test lengths: {LENGTHS_HELP} (default {DEFAULT_EVAL_LENGTHS})",
    )
    ev.add_argument("--samples", type=int, default=512, help="inputs per length (default 512)")
    ev.add_argument("--seed", type=int, default=0, help="evaluation data seed (default 0)")
    ev.add_argument("--batch-size", type=int, help="rows per forward pass (default: automatic)")
    ev.add_argument(
        "--bins",
        help="also score length bins, e.g. 1-50,51-100,101-150: inputs of lengths uniform in "
        "each bin (class tasks: accuracy per token and exact match per sequence)",
    )
    ev.add_argument("--figure", type=Path, help="also draw every run's curve into this PNG")
    ev.add_argument(
        "--out", type=Path, help="write eval.json/csv/png here (default: the run's directory)"
    )
    ev.add_argument("--json", action="store_true", help="print the results as JSON")
    _add_model_options(ev, eval_command=True)
    ev.set_defaults(func=cmd_eval)

    ck = command("check", "certify or diagnose a run's length generalization at long test lengths")
    ck.add_argument("run", nargs="?", metavar="RUN", help="run directory")
    ck.add_argument("--train-len", type=int, help="training length N (default: the run's)")
    _add_check_options(ck)
    _add_model_options(ck, eval_command=False)
    ck.add_argument(
        "--out",
        type=Path,
        help="output folder (default RUN/check/<settings>, or check-<model name>/<settings>)",
    )
    ck.add_argument(
        "--overwrite", action="store_true", help="replace a check already saved in that folder"
    )
    ck.add_argument(
        "--strict", action="store_true", help="exit 1 unless every test length is certified"
    )
    ck.add_argument(
        "--target-roles",
        nargs="?",
        const="default",
        metavar="ROLES",
        help="tasks with targets at many positions: check these targets (first,middle,last; "
        "default: every role the task has), each as the last-position problem of its prefix, "
        "and report the outcome over them",
    )
    ck.add_argument("--json", action="store_true", help="print the certificate as JSON")
    ck.set_defaults(func=cmd_check)

    sw = command("sweep", "train, evaluate and check every point of a grid (resumable)")
    sw.add_argument("spec", metavar="SPEC.toml", help="sweep spec (see examples/sweeps/)")
    sw.add_argument("--out", type=Path, help="sweep directory (default runs/sweeps/<name>)")
    sw.add_argument("--backend", choices=("local", "ray"), default="local")
    sw.add_argument("--workers", type=int, help="parallel points (default: CPUs / threads)")
    sw.add_argument("--threads", type=int, default=1, help="torch threads per point (1)")
    sw.add_argument(
        "--ensemble",
        type=int,
        help="most one-layer points that train together as one ensemble; 1 = each alone "
        "(default: 8)",
    )
    sw.add_argument("--address", help="Ray cluster address for --backend ray (default: local)")
    sw.add_argument("--dry-run", action="store_true", help="list the points and stop")
    sw.set_defaults(func=cmd_sweep)

    bd = command("bounds", "the theory's N, gamma and L for a run, beside N*")
    bd.add_argument("run", metavar="RUN", help="run directory")
    bd.add_argument("--sweep", type=Path, help="sweep directory for N* (default: the enclosing)")
    bd.add_argument("--eps", type=float, default=0.1, help="target error (default 0.1)")
    bd.add_argument("--bits", type=int, default=8, help="precision p (default 8)")
    bd.add_argument("--tie-tol", type=float, default=1e-6, help="logits closer than this tie")
    bd.add_argument("--length", type=int, help="test length T of N* (default: the largest)")
    bd.add_argument("--json", action="store_true", help="print JSON instead of a table")
    bd.set_defaults(func=cmd_bounds)

    show = command("show", "summarise a run directory")
    show.add_argument("run", help="run directory")
    show.add_argument("--json", action="store_true", help="print the summary as JSON")
    show.set_defaults(func=cmd_show)

    demo = command("demo", "quick end-to-end demo on the default task (~1 min)")
    demo.add_argument("--out", default="runs/demo", help="where runs and figure go")
    demo.add_argument("--steps", type=int, default=3000, help="training steps per model")
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (``--help`` and ``--version`` 0,
    bad input 2, an interruption 130)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as done:  # --help, --version, or an argument error already printed
        return int(done.code or 0)
    if args.quiet and args.verbose:
        print("simcheck: error: -q and -v contradict each other: give one", file=sys.stderr)
        return 2
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
    except BrokenPipeError:  # the reader went away (``simcheck show --json RUN | head``)
        # point stdout at nothing, so the interpreter's final flush does not fail again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
