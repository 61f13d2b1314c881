"""The `jaxode` command: train, evaluate and predict with time-parameterized surrogates."""

import argparse
import contextlib
import json
import pathlib
import re
import signal
import sys
import time

import numpy as np

from ._datasets import TrajectoryData, load_dataset, load_inputs
from ._ensemble_cli import evaluate_ensemble_folder, predictive_columns, print_ensemble
from ._files import atomic_write_text, read_text
from ._process import set_precision, use_compilation_cache
from ._runs_table import (
    COLUMNS,
    compare_runs,
    format_comparison,
    format_runs,
    json_comparison,
    json_rows,
    runs_table,
)
from ._tracking import add_tracking_options, track_finished
from ._training import (
    CHOICES,
    CONFIG,
    EVALUATION,
    METRICS,
    PLOT,
    PRESETS,
    RUN_FILES,
    CohortDir,
    DataConfig,
    ModelConfig,
    RunConfig,
    RunDir,
    Status,
    TrainConfig,
    calibrate_cohort,
    error_metrics,
    evaluate_model,
    evaluation_data,
    is_time_series,
    load,
    load_run,
    parse_seeds,
    presets,
    summarise,
    summary_table,
    train,
    train_cohort,
)
from ._wording import command_line

PACKAGE = pathlib.Path(__file__).resolve().parent

# (flag, section, field, type, help). Defaults come from the config dataclasses, choices from
# `CHOICES`; options that accept 'none' are read as strings and converted by the config.
OPTIONS = [
    (
        "--data",
        "data",
        "dataset",
        str,
        "data set: elm, cdr, dcr, a path to a .npz/.csv file, or the time series spiral",
    ),
    ("--split-seed", "data", "split_seed", int, "seed of random splits (cdr, user files)"),
    (
        "--folds",
        "data",
        "folds",
        str,
        "k-fold cross-validation of the training and validation rows ('none': the data's split)",
    ),
    ("--fold", "data", "fold", int, "the fold that validates, in [0, folds)"),
    ("--protocol", "data", "protocol", str, "preprocessing: jaxode's or the study's"),
    ("--num-outputs", "data", "num_outputs", int, "output columns at the end of a CSV file"),
    ("--window", "data", "window", int, "time series: points per training window"),
    ("--model", "model", "model", str, "dynamics"),
    ("--field", "model", "field", str, "vector field"),
    ("--basis", "model", "basis", str, "time basis of the weights"),
    ("--degree", "model", "degree", int, "polynomial degree (frequencies / pieces)"),
    ("--width", "model", "width", int, "feature width of the dynamics"),
    ("--hidden", "model", "hidden", int, "hidden size of the mlp field"),
    ("--t1", "model", "t1", float, "final time of the dynamics"),
    ("--solver", "model", "solver", str, "ODE solver (heun/euler take --steps fixed steps)"),
    ("--rtol", "model", "rtol", float, "relative tolerance of the adaptive solver"),
    ("--atol", "model", "atol", float, "absolute tolerance of the adaptive solver"),
    ("--max-steps", "model", "max_steps", int, "step budget of one ODE solve"),
    ("--paradigm", "model", "paradigm", str, "gradients: through the steps, or the adjoint"),
    ("--steps", "model", "steps", int, "time steps of resnet/hamiltonian and fixed-step solvers"),
    ("--opening-activation", "model", "opening_activation", str, "activation of the opening"),
    ("--field-init", "model", "field_init", str, "initialisation of the field's weights"),
    ("--field-init-std", "model", "field_init_std", float, "std of --field-init normal"),
    ("--clamp", "model", "clamp", str, "freeze the weights outside [0, t1]: true or false"),
    (
        "--basis-window",
        "model",
        "basis_window",
        float,
        "end of the basis window when not t1 (1 with --t1 10: the study's raw-time monomials)",
    ),
    ("--field-input", "model", "field_input", str, "time series: what the field sees of y"),
    ("--optimiser", "train", "optimiser", str, "optimiser"),
    ("--lr", "train", "learning_rate", float, "learning rate"),
    ("--schedule", "train", "schedule", str, "learning-rate schedule"),
    ("--decay-every", "train", "decay_every", int, "steps between decays of --schedule step"),
    ("--decay-factor", "train", "decay_factor", float, "factor of --schedule step"),
    ("--epochs", "train", "epochs", int, "passes over the training data"),
    ("--iterations", "train", "iterations", str, "optimisation steps (overrides --epochs)"),
    ("--batch-size", "train", "batch_size", int, "samples per step"),
    ("--sampling", "train", "sampling", str, "minibatches: epoch permutations, or replacement"),
    ("--clip-norm", "train", "clip_norm", str, "gradient clipping norm, or 'none'"),
    ("--loss", "train", "loss", str, "training loss"),
    ("--weight-decay", "train", "weight_decay", float, "decoupled weight decay of adamw"),
    ("--tikhonov", "train", "tikhonov", float, "Tikhonov weight on opening and dynamics"),
    ("--readout-tikhonov", "train", "readout_tikhonov", float, "Tikhonov weight on the readout"),
    ("--gram", "train", "gram", float, "weight of the L2-in-time Gram regulariser"),
    ("--patience", "train", "patience", str, "early stopping after N evaluations, or 'none'"),
    ("--eval-every", "train", "eval_every", int, "epochs between evaluations/checkpoints"),
    (
        "--eval-every-iterations",
        "train",
        "eval_every_iterations",
        str,
        "steps between evaluations (overrides --eval-every)",
    ),
    ("--ridge", "train", "ridge", str, "ridge parameter of a readout warm start, or 'none'"),
    (
        "--max-failed-batches",
        "train",
        "max_failed_batches",
        str,
        "stop after N consecutive batches whose solve failed, or 'none'",
    ),
    (
        "--divergence-factor",
        "train",
        "divergence_factor",
        str,
        "stop when the validation error exceeds this multiple of its lowest, or 'none'",
    ),
    (
        "--count-evaluations",
        "train",
        "count_evaluations",
        str,
        "record field evaluations per solve (adaptive solvers: a few s more): true or false",
    ),
    ("--seed", "train", "seed", int, "seed of initialisation and minibatches"),
    ("--precision", "train", "precision", str, "floating-point precision"),
]
DEFAULTS = {"data": DataConfig(), "model": ModelConfig(), "train": TrainConfig()}
SPLITS = ("train", "val", "test")


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _train_parser(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a surrogate and write a run directory",
        description="Train a time-parameterized surrogate. Options override --config, which "
        "overrides --preset, which overrides the defaults shown.",
    )
    p.add_argument(
        "--preset",
        choices=presets(),
        help=f"a named configuration (TOML files in {PRESETS})",
    )
    p.add_argument(
        "--config", type=pathlib.Path, help="TOML file with [data], [model], [train] sections"
    )
    p.add_argument(
        "--out",
        type=pathlib.Path,
        help="run directory (default runs/<data>-<model>-<basis>[-<optimiser>]-<time>)",
    )
    p.add_argument(
        "--resume", type=pathlib.Path, metavar="RUN_DIR", help="continue an interrupted run"
    )
    p.add_argument(
        "--seeds",
        metavar="SEEDS",
        help="train one run per seed (e.g. 0-4 or 0,2,7) as one cohort, in one compiled "
        "program; --out is then the cohort's folder: a run seed-<s>/ per seed and summary.json "
        "(mean +- sample std of every metric)",
    )
    p.add_argument(
        "--ensemble",
        type=int,
        metavar="K",
        help="train K members (seeds from --seed on) as one cohort, as --seeds does, and "
        "calibrate their ensemble on the validation split: ensemble.json and calibration.png "
        "in --out; jaxode predict --std / --level give its spread and intervals",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_tracking_options(p)
    for flag, section, name, kind, text in OPTIONS:
        choices = CHOICES.get((section, name))
        p.add_argument(
            flag,
            dest=f"{section}.{name}",
            metavar=None if choices else name.upper(),
            type=kind,
            choices=choices,
            default=None,
            help=f"{text} (default {getattr(DEFAULTS[section], name)})",
        )


def _read_toml(path: pathlib.Path, flag: str) -> dict:
    """The sections and keys a TOML file sets (unset keys keep the lower layer's values)."""
    import tomllib

    text = read_text(path, f"{flag} file", "pass a TOML file with [data], [model], [train].")
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"{flag} file {str(path)!r} is not valid TOML: {error}.") from None


def _config_from_args(args) -> RunConfig:
    """Defaults, then `--preset`, then `--config`, then the options given."""
    layers = []
    if args.preset is not None:
        layers.append(_read_toml(PRESETS / f"{args.preset}.toml", "--preset"))
    if args.config is not None:
        layers.append(_read_toml(args.config, "--config"))
    flags = {}
    for _, section, name, *_ in OPTIONS:
        value = getattr(args, f"{section}.{name}")
        if value is not None:
            flags.setdefault(section, {})[name] = value
    merged = {}
    for layer in layers + [flags]:
        for section, values in layer.items():
            if not isinstance(values, dict):
                raise ValueError(f"config entry {section!r} must be a [section] table.")
            merged.setdefault(section, {}).update(values)
    try:
        return RunConfig.from_dict(merged)
    except ValueError as error:
        raise ValueError(_naming_the_flag(str(error), flags)) from None


def _naming_the_flag(message: str, flags: dict) -> str:
    """`message` led by the option that set the field it names, when an option did."""
    for flag, section, name, *_ in OPTIONS:
        if name in flags.get(section, {}) and re.search(rf"\b{section}\.{name}\b", message):
            return f"{flag}: {message}"
    return message


def _print_metrics(metrics: dict) -> None:
    print(
        f"{'split':<6} {'global':>10} {'per-sample':>11} {'global':>10} {'per-sample':>11}\n"
        f"{'':<6} {'(normalised units)':>22} {'(physical units)':>22}"
    )
    for split in SPLITS:
        if f"{split}_global" in metrics:
            print(
                f"{split:<6} {metrics[f'{split}_global']:>10.4f} "
                f"{metrics[f'{split}_per_sample']:>11.4f} "
                f"{metrics[f'{split}_physical_global']:>10.4f} "
                f"{metrics[f'{split}_physical_per_sample']:>11.4f}"
            )


def _timing(metrics: dict) -> str:
    """Compilation and training time apart: on a CPU a short run is mostly compilation."""
    train, steps = metrics.get("train_time") or 0.0, metrics.get("steps") or 0
    rate = f" ({steps / train:.1f} steps/s)" if train > 0 else ""
    return (
        f"time: compiling {metrics.get('compile_time') or 0.0:.1f} s, training {train:.1f} s "
        f"for {steps} steps{rate}"
    )


def _summary(metrics: dict) -> str:
    return (
        f"test relative error (global): {metrics['test_physical_global']:.4f} in physical units, "
        f"{metrics['test_global']:.4f} in normalised units"
    )


class _Terminated(KeyboardInterrupt):
    """SIGTERM, handled as Ctrl-C: clusters send it before they kill a job."""


def _raise_terminated(signum, frame):
    raise _Terminated


@contextlib.contextmanager
def _sigterm_as_interrupt():
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _train(args) -> int:
    if args.resume is not None:
        changed = [
            flag
            for flag, section, name, *_ in OPTIONS
            if getattr(args, f"{section}.{name}") is not None
        ]
        changed += [
            flag
            for flag, value in (
                ("--preset", args.preset),
                ("--config", args.config),
                ("--out", args.out),
                ("--seeds", args.seeds),
                ("--ensemble", args.ensemble),
            )
            if value is not None
        ]
        if changed:
            raise ValueError(
                "--resume continues a run with its stored configuration; drop "
                f"{', '.join(changed)}."
            )
        if CohortDir(args.resume).holds_cohort():
            return _train_cohort(args, None, args.resume)
        if not RunDir(args.resume).holds_run():
            raise FileNotFoundError(f"--resume {str(args.resume)!r} holds no run (no {CONFIG}).")
        config = RunDir(args.resume).config()
        out = args.resume
    else:
        config = _config_from_args(args)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        label = pathlib.Path(config.data.dataset).stem
        # Data, model, basis and (when not the default) optimiser: what tells runs apart.
        optimiser = "" if config.train.optimiser == "adam" else f"-{config.train.optimiser}"
        name = f"{label}-{config.model.model}-{config.model.basis}{optimiser}"
        if args.seeds is not None and args.ensemble is not None:
            raise ValueError("--seeds and --ensemble both set the members: give one of them.")
        name += "-seeds" if args.seeds else "-ensemble" if args.ensemble else ""
        out = args.out or pathlib.Path("runs") / f"{name}-{stamp}"
        if args.seeds is not None or args.ensemble is not None:
            return _train_cohort(args, config, out)
    set_precision(config.train.precision)
    _, result, metrics = train(
        None if args.resume is not None else config,
        out,
        resume=args.resume is not None,
        progress=not args.no_progress,
    )
    if result.status == Status.INTERRUPTED:
        print(f"{result.message} Continue with: jaxode train --resume {out}")
        return 130
    print(result.message)
    if "test_global" not in metrics:
        print(f"no trained parameters to evaluate; {out / METRICS} says why.")
        return 1
    _print_metrics(metrics)
    print(_timing(metrics))
    if not metrics.get("plot", True):
        print(f"{PLOT} skipped: matplotlib is not installed (pip install matplotlib).")
    print(f"{_summary(metrics)}; written to {out}")
    track_finished(args, [(out, {})])
    return 0 if result.status.succeeded else 1


# Normalised units first, as the table of a single run.
_SUMMARY_METRICS = (
    "test_global",
    "test_per_sample",
    "test_physical_global",
    "test_physical_per_sample",
    "val_global",
    "train_global",
    "best_step",
    "train_time",
)


def _member_seeds(args, config: RunConfig) -> list[int]:
    if args.seeds is not None:
        return parse_seeds(args.seeds)
    if args.ensemble < 2:
        raise ValueError(f"--ensemble: an ensemble needs at least 2 members, got {args.ensemble}.")
    return list(range(config.train.seed, config.train.seed + args.ensemble))


def _train_cohort(args, config: RunConfig | None, out: pathlib.Path) -> int:
    """`train --seeds`: one cohort, a run directory per seed and a summary."""
    cohort = CohortDir(out)
    seeds = [] if config is None else _member_seeds(args, config)
    created = not out.exists()
    with cohort.lock():
        if config is None:
            configs = None
            set_precision(cohort.members()[0].config().train.precision)
        else:
            try:
                configs = cohort.start(config, seeds)
            except BaseException:
                cohort.remove_if_empty(created)
                raise
            set_precision(config.train.precision)
        run_dirs = [member.path for member in cohort.members()]
        try:
            outcomes = train_cohort(
                configs, run_dirs, resume=config is None, progress=not args.no_progress
            )
        except BaseException:
            if config is not None and not any(d.exists() for d in run_dirs):
                cohort.remove_start(created)
            raise
        return _report_cohort(cohort, outcomes, args)


def _report_cohort(cohort: CohortDir, outcomes: list, args) -> int:
    out, seeds = cohort.path, cohort.seeds()
    statuses = [result.status for _, result, _ in outcomes]
    for seed, (_, result, metrics) in zip(seeds, outcomes):
        error = metrics.get("test_physical_global")
        figure = "" if error is None else f", test relative error (global, physical) {error:.4f}"
        print(f"seed {seed}: {result.status}{figure}: {result.message}")
    if Status.INTERRUPTED in statuses:
        print(f"Continue with: jaxode train --resume {out}")
        return 130
    summary = summarise([metrics for _, _, metrics in outcomes])
    cohort.write_summary(summary)
    print(f"mean +- sample std over {len(seeds)} seeds:")
    print(summary_table(summary, _SUMMARY_METRICS))
    trained = all("test_global" in metrics for _, _, metrics in outcomes)
    series = is_time_series(cohort.members()[0].config().data)
    if trained and len(seeds) > 1 and not series:
        _, metrics = calibrate_cohort(out)
        print(f"the {len(seeds)} members as an ensemble (calibrated on val):")
        print_ensemble(metrics)
    print(f"written to {out}")
    track_finished(args, [(m.path, {"cohort": str(out)}) for m in cohort.members()])
    return 0 if all(s.succeeded for s in statuses) else 1


def _load_run(run_dir: pathlib.Path):
    if not RunDir(run_dir).holds_run():
        raise FileNotFoundError(
            f"{str(run_dir)!r} is not a run directory (no {CONFIG}); pass a directory "
            "written by `jaxode train`."
        )
    set_precision(RunDir(run_dir).config().train.precision)
    return load_run(run_dir)


def _refuse_overwrite(target: pathlib.Path, force: bool) -> None:
    if target.exists() and not force:
        raise FileExistsError(
            f"{str(target)!r} exists; pass --force to overwrite it or choose another --output."
        )


def _evaluate(args) -> int:
    if CohortDir(args.run_dir).holds_cohort():
        return evaluate_ensemble_folder(args)
    trained = _load_run(args.run_dir)

    name = args.data or trained.config.data.dataset
    data = evaluation_data(trained.config.data, args.data, args.num_outputs)
    if isinstance(data, TrajectoryData):
        # A time series is evaluated region by region, each integrated from its first state.
        metrics = evaluate_model(trained.model, data)
    elif (data.in_size, data.out_size) != (trained.model.in_size, trained.model.out_size):
        raise ValueError(
            f"--data {name!r} has {data.in_size} inputs/{data.out_size} outputs; "
            f"the model needs {trained.model.in_size}/{trained.model.out_size}."
        )
    else:
        metrics = {}
    for split in () if isinstance(data, TrajectoryData) else SPLITS:
        x, y = data.arrays(split, normalised=False)
        if len(x):
            p = trained.predict(x)
            metrics.update(
                error_metrics(trained.y_norm.apply(p), trained.y_norm.apply(y), f"{split}_")
            )
            metrics.update(error_metrics(p, y, f"{split}_physical_"))
    target = args.output or args.run_dir / EVALUATION
    atomic_write_text(target, json.dumps({"data": str(name), **metrics}, indent=2))
    _print_metrics(metrics)
    if "test_global" in metrics:
        print(_summary(metrics))
    print(f"written to {target}")
    return 0


def _input_names(path: pathlib.Path, count: int) -> list[str] | None:
    """The `count` column names of the header of an input CSV that `load_inputs` has read (a
    first row of names, or a '#' first line of names, as `numpy.savetxt` writes it), else
    `None`."""
    import csv

    if path.suffix.lower() != ".csv":
        return None
    hashed = None
    for number, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), 1):
        if line.lstrip().startswith("#"):
            if number == 1:
                hashed = [cell.strip() for cell in next(csv.reader([line.lstrip()[1:]]))]
            continue
        if line.strip():
            cells = [cell.strip() for cell in next(csv.reader([line]))]
            try:  # a first row of numbers is data: the names, if any, are the '#' line's
                [float(cell) for cell in cells]
                names = hashed
            except ValueError:
                names = cells
            return names if names is not None and len(names) == count else None
    return None


def _domain_check(trained, x, args):
    """Where the inputs `x` lie relative to the run's training domain (a `DomainCheck`), or
    `None` when the run stores none (a note says so, except for a time series).

    **Raises:** `ValueError` for `--strict` with rows outside, and for `--strict` or
    `--mark-outside` without a stored domain."""
    from ._trajectories import TrajectoryModel

    flag = "--strict" if args.strict else "--mark-outside" if args.mark_outside else None
    if trained.domain is None:
        if flag is not None:
            try:
                trained.outside_domain(x)
            except ValueError as error:
                raise ValueError(f"{flag} needs the run's training domain: {error}") from None
        if not isinstance(trained.model, TrajectoryModel):
            print(
                f"jaxode predict: note: {str(args.run_dir)!r} stores no training domain (trained "
                "before jaxode stored one), so the inputs were not checked for extrapolation; "
                "retrain the run to get the check.",
                file=sys.stderr,
            )
        return None
    check = trained.outside_domain(x)
    if args.strict and check.count:
        names = _input_names(args.input, x.shape[1])
        raise ValueError(
            f"{check.describe(names)}; --strict refuses to extrapolate: remove those rows, or "
            "drop --strict to predict them with a warning."
        )
    return check


def _predict(args) -> int:
    if CohortDir(args.run_dir).holds_cohort():
        set_precision(CohortDir(args.run_dir).members()[0].config().train.precision)
        trained = load(args.run_dir)
    else:
        trained = _load_run(args.run_dir)

    x = load_inputs(args.input, trained.model.in_size)
    target = args.output or args.input.with_name(args.input.stem + "_predictions.csv")
    _refuse_overwrite(target, args.force)
    check = _domain_check(trained, x, args)
    predictions = trained.predict(x)
    names, spread = predictive_columns(trained, x, args)
    if spread is not None:
        predictions = np.concatenate([predictions, spread], axis=1)
    header = ",".join([f"y{i}" for i in range(trained.model.out_size)] + names)
    lines = [header] + [",".join(f"{v:.17g}" for v in row) for row in predictions]
    if args.mark_outside and check is not None:
        lines[0] += ",outside_domain"
        lines[1:] = [f"{line},{int(out)}" for line, out in zip(lines[1:], check.outside)]
    atomic_write_text(target, "\n".join(lines) + "\n")
    print(f"{len(predictions)} predictions (physical units) written to {target}")
    if check is not None and check.count:
        names = _input_names(args.input, x.shape[1])
        hint = (
            "marked 1 in the column outside_domain"
            if args.mark_outside
            else "--mark-outside flags them in the output, --strict refuses them"
        )
        print(
            f"jaxode predict: warning: {check.describe(names)}; their predictions extrapolate "
            f"({hint})",
            file=sys.stderr,
        )
    return 0


def _add_probe(sub) -> None:
    """`jaxode probe RUN_DIR`: the probes' report (owned by jaxode.probes)."""
    p = sub.add_parser("probe", help="diagnostic probes of a trained run")
    p.add_argument("run_dir", type=pathlib.Path, metavar="RUN_DIR")
    p.add_argument("--out", type=pathlib.Path, help="report directory (default RUN_DIR/probes)")
    p.add_argument(
        "--precision",
        choices=("float32", "float64"),
        default="float64",
        help="precision of the probes (default float64: float32 rounds tanh to +-1 near |z| = 9 "
        "and cannot resolve exponential tails far out)",
    )
    p.set_defaults(handler=_probe)


def _probe(args) -> int:
    trained = _load_run(args.run_dir)
    import equinox as eqx
    import jax
    import jax.numpy as jnp

    from ._surrogate import Surrogate
    from .probes import probe_report

    set_precision(args.precision)
    dtype = jnp.dtype(args.precision)
    model = jax.tree_util.tree_map(
        lambda leaf: leaf.astype(dtype) if eqx.is_inexact_array(leaf) else leaf, trained.model
    )
    stored = trained.config.data
    if not isinstance(trained.model, Surrogate):
        raise ValueError(
            f"{str(args.run_dir)!r} fits the time series {stored.dataset!r}; the probes examine "
            "input -> output surrogates. Its extrapolation error is test_global in metrics.json."
        )
    data = load_dataset(
        stored.dataset,
        seed=stored.split_seed,
        protocol=stored.protocol,
        num_outputs=stored.num_outputs,
        folds=stored.folds,
        fold=stored.fold,
    )
    x, y = data.arrays("train")
    out = args.out or args.run_dir / "probes"
    report = probe_report(model, out, inputs_train=x, targets_train=y)
    if report["plots_skipped"]:
        print(
            f"plots skipped ({', '.join(report['plots_skipped'])}): matplotlib is not installed; "
            "pip install matplotlib to get them."
        )
    print(f"probe report written to {out}: {', '.join(['report.json', *report['plots']])}")
    return 0


def _add_runs(sub) -> None:
    """`jaxode runs [DIR]` and `jaxode compare RUN RUN ...` (logic in jaxode/_runs_table.py)."""

    r = sub.add_parser(
        "runs",
        help="a table of the run directories under a folder",
        description="Lists the run directories under DIR, recursively (single runs, cohort "
        f"members, sweep cells: every folder holding one of {', '.join(RUN_FILES)}), with "
        "their data, model, basis, degree, status, test errors (relative, normalised units), "
        "optimisation steps, training wall time and path. Runs with missing or damaged files "
        "are listed with what is known and a note.",
    )
    r.add_argument(
        "dir",
        type=pathlib.Path,
        nargs="?",
        default=pathlib.Path("runs"),
        metavar="DIR",
        help="folder to search (default runs)",
    )
    r.add_argument(
        "--sort",
        choices=COLUMNS,
        metavar="COLUMN",
        help=f"sort by a column: {', '.join(COLUMNS)} (runs without a value come last)",
    )
    r.add_argument("--reverse", action="store_true", help="reverse the order")
    r.add_argument("--json", action="store_true", help="print the rows as JSON")
    r.set_defaults(handler=_runs)
    c = sub.add_parser(
        "compare",
        help="configuration differences and metrics of two or more runs",
        description="The configuration fields in which the runs differ (dotted names, one "
        "column per run) and every metric of metrics.json side by side ('-': not recorded).",
    )
    c.add_argument("run_dirs", type=pathlib.Path, nargs="+", metavar="RUN_DIR")
    c.add_argument("--json", action="store_true", help="print the comparison as JSON")
    c.set_defaults(handler=_compare)


def _runs(args) -> int:

    rows, warnings = runs_table(args.dir, sort=args.sort, reverse=args.reverse)
    for warning in warnings:
        print(f"jaxode runs: warning: {warning}", file=sys.stderr)
    if args.json:
        print(json_rows(rows))
    elif not rows:
        print(f"no run directories under {str(args.dir)!r}.")
    else:
        print(format_runs(rows))
        print(
            "test errors: relative (global, mean per sample), normalised units; time: "
            "training wall time, compilation excluded."
        )
    return 0


def _compare(args) -> int:

    comparison = compare_runs(args.run_dirs)
    print(json_comparison(comparison) if args.json else format_comparison(comparison))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="jaxode", description="Continuous-time surrogates with time-parameterized weights."
    )
    sub = parser.add_subparsers(dest="command", parser_class=_Parser, metavar="COMMAND")
    _train_parser(sub)
    sub.choices["train"].set_defaults(handler=_train)
    e = sub.add_parser(
        "evaluate",
        help="metrics of a trained run, or of an ensemble's folder, on its data or --data",
    )
    e.add_argument("run_dir", type=pathlib.Path, metavar="RUN_DIR")
    e.add_argument("--data", help="data set name or file (default: the run's)")
    e.add_argument("--num-outputs", type=int, help="output columns at the end of a --data CSV")
    e.add_argument(
        "--output", type=pathlib.Path, help="metrics JSON (default RUN_DIR/evaluation.json)"
    )
    e.set_defaults(handler=_evaluate)
    p = sub.add_parser(
        "predict",
        help="predictions in physical units for the inputs of a file",
        description="Predictions in physical units for the inputs of a file. Inputs are "
        "checked against the run's training domain (per input column, the range of the "
        "training split): rows outside it get a warning on stderr naming how many rows, which "
        "columns and how far outside, in units of the column's training range; the output "
        "keeps its format (columns y0, y1, ...) unless --mark-outside. A run trained before "
        "jaxode stored its domain is not checked (a note says so); a time series has none.",
    )
    p.add_argument("run_dir", type=pathlib.Path, metavar="RUN_DIR")
    p.add_argument(
        "input", type=pathlib.Path, metavar="INPUT", help=".npz with array 'x' or .csv of inputs"
    )
    p.add_argument(
        "--output", type=pathlib.Path, help="CSV of predictions (default INPUT_predictions.csv)"
    )
    p.add_argument("--force", action="store_true", help="overwrite an existing --output")
    p.add_argument(
        "--mark-outside",
        action="store_true",
        help="add a last column outside_domain to the output: 1 for a row outside the training "
        "domain, 0 inside (every row, also when all lie inside)",
    )
    p.add_argument(
        "--strict",
        action="store_true",
        help="refuse (exit 2, nothing written) when any row lies outside the training domain",
    )
    p.add_argument(
        "--std",
        action="store_true",
        help="an ensemble's folder: add its calibrated predictive standard deviation per output "
        "(columns std0, std1, ...)",
    )
    p.add_argument(
        "--level",
        type=float,
        metavar="P",
        help="an ensemble's folder: add the central interval of nominal level P, e.g. 0.9 "
        "(columns lower0, ..., upper0, ...)",
    )
    p.set_defaults(handler=_predict)
    _add_probe(sub)
    _add_runs(sub)
    from ._sensitivity_cli import add_parser as add_sensitivity

    add_sensitivity(sub)
    from ._sweeps import add_parser

    add_parser(sub)
    sub.choices["sweep"].epilog = "jaxode sweep report DIR --help: the tables and plots of a sweep."
    return parser


def _is_users_error(error: BaseException) -> bool:
    """Whether jaxode raised `error` itself (a check of the user's input, configuration or
    files), as opposed to a failure deeper down, which is a bug and keeps its traceback."""
    if not isinstance(error, (ValueError, OSError)):
        return False
    frame = error.__traceback__
    while frame is not None and frame.tb_next is not None:
        frame = frame.tb_next
    if frame is None:
        return False
    return pathlib.Path(frame.tb_frame.f_code.co_filename).resolve().is_relative_to(PACKAGE)


def main(argv=None) -> int:
    """Entry point of the `jaxode` command; returns the exit status."""
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:2] == ["sweep", "report"]:
        from ._sweeps import report_parser

        args = report_parser(_Parser).parse_args(argv[2:])
    else:
        args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    use_compilation_cache()
    try:
        with _sigterm_as_interrupt(), command_line():
            return args.handler(args)
    except KeyboardInterrupt as interrupt:
        print("jaxode: interrupted", file=sys.stderr)
        return 143 if isinstance(interrupt, _Terminated) else 130
    except BrokenPipeError:
        # The reader went away (`jaxode runs | head`): stop quietly, as Unix tools do.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except (ValueError, OSError) as error:
        if not _is_users_error(error):
            raise
        print(f"jaxode {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
