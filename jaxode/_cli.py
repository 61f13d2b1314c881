"""The `jaxode` command: train, evaluate and predict with time-parameterized surrogates."""

import argparse
import json
import pathlib
import sys
import time

from ._training._config import DataConfig, ModelConfig, RunConfig, TrainConfig

# (flag, section, field, type, choices, help). Defaults come from the config dataclasses.
OPTIONS = [
    ("--data", "data", "dataset", str, None, "data set: elm, cdr, or a path to a .npz/.csv file"),
    ("--split-seed", "data", "split_seed", int, None, "seed of random splits (cdr, user files)"),
    ("--model", "model", "model", str, ("node", "resnet", "hamiltonian"), "dynamics"),
    (
        "--field",
        "model",
        "field",
        str,
        ("mlp", "layer", "antisymmetric", "hamiltonian"),
        "vector field",
    ),
    (
        "--basis",
        "model",
        "basis",
        str,
        ("static", "monomial", "legendre", "chebyshev", "fourier", "piecewise"),
        "time basis of the weights",
    ),
    (
        "--degree",
        "model",
        "degree",
        int,
        None,
        "polynomial degree (frequencies / pieces for fourier / piecewise)",
    ),
    ("--width", "model", "width", int, None, "feature width of the dynamics"),
    ("--hidden", "model", "hidden", int, None, "hidden size of the mlp field"),
    ("--t1", "model", "t1", float, None, "final time of the dynamics"),
    (
        "--solver",
        "model",
        "solver",
        str,
        ("dopri5", "tsit5", "bosh3", "heun", "euler", "dopri8"),
        "ODE solver (heun/euler use --steps fixed steps)",
    ),
    ("--rtol", "model", "rtol", float, None, "relative tolerance of the adaptive solver"),
    ("--atol", "model", "atol", float, None, "absolute tolerance of the adaptive solver"),
    ("--max-steps", "model", "max_steps", int, None, "step budget of one ODE solve"),
    (
        "--paradigm",
        "model",
        "paradigm",
        str,
        ("discretize", "optimize"),
        "gradients: discretize-then-optimize or optimize-then-discretize (adjoint)",
    ),
    (
        "--steps",
        "model",
        "steps",
        int,
        None,
        "time steps of resnet/hamiltonian models and fixed-step solvers",
    ),
    (
        "--opening-activation",
        "model",
        "opening_activation",
        str,
        ("tanh", "none"),
        "activation of the opening layer",
    ),
    ("--optimiser", "train", "optimiser", str, ("adam", "adamw", "rmsprop", "sgd"), "optimiser"),
    ("--lr", "train", "learning_rate", float, None, "learning rate"),
    (
        "--schedule",
        "train",
        "schedule",
        str,
        ("cosine", "step", "constant"),
        "learning-rate schedule",
    ),
    (
        "--decay-every",
        "train",
        "decay_every",
        int,
        None,
        "steps between decays of the step schedule",
    ),
    ("--decay-factor", "train", "decay_factor", float, None, "factor of the step schedule"),
    ("--epochs", "train", "epochs", int, None, "passes over the training data"),
    ("--batch-size", "train", "batch_size", int, None, "samples per step"),
    ("--clip-norm", "train", "clip_norm", str, None, "gradient clipping norm, or 'none'"),
    ("--loss", "train", "loss", str, ("mse", "l1", "relative"), "training loss"),
    (
        "--tikhonov",
        "train",
        "tikhonov",
        float,
        None,
        "Tikhonov weight on opening and dynamics parameters",
    ),
    (
        "--readout-tikhonov",
        "train",
        "readout_tikhonov",
        float,
        None,
        "Tikhonov weight on the readout",
    ),
    ("--gram", "train", "gram", float, None, "weight of the L2-in-time Gram regulariser"),
    (
        "--patience",
        "train",
        "patience",
        str,
        None,
        "early-stopping patience in evaluations, or 'none'",
    ),
    ("--eval-every", "train", "eval_every", int, None, "epochs between evaluations/checkpoints"),
    (
        "--ridge",
        "train",
        "ridge",
        str,
        None,
        "ridge parameter of the readout warm start, or 'none'",
    ),
    ("--seed", "train", "seed", int, None, "seed of initialisation and minibatches"),
    ("--precision", "train", "precision", str, ("float32", "float64"), "floating-point precision"),
]
DEFAULTS = {"data": DataConfig(), "model": ModelConfig(), "train": TrainConfig()}


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _train_parser(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a surrogate and write a run directory",
        description="Train a time-parameterized surrogate. Options override the "
        "values of --config, which override the defaults shown.",
    )
    p.add_argument(
        "--config", type=pathlib.Path, help="TOML file with [data], [model], [train] sections"
    )
    p.add_argument(
        "--out", type=pathlib.Path, help="run directory (default runs/<data>-<basis>-<time>)"
    )
    p.add_argument(
        "--resume", type=pathlib.Path, metavar="RUN_DIR", help="continue an interrupted run"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    for flag, section, name, kind, choices, text in OPTIONS:
        default = getattr(DEFAULTS[section], name)
        p.add_argument(
            flag,
            dest=f"{section}.{name}",
            metavar=None if choices else name.upper(),
            type=kind,
            choices=choices,
            default=None,
            help=f"{text} (default {default})",
        )


def _config_from_args(args) -> RunConfig:
    base = {}
    if args.config is not None:
        if not args.config.is_file():
            raise FileNotFoundError(f"--config file {str(args.config)!r} does not exist.")
        base = RunConfig.from_toml(args.config.read_text()).to_dict()
    for _, section, name, *_ in OPTIONS:
        value = getattr(args, f"{section}.{name}")
        if value is not None:
            base.setdefault(section, {})[name] = value
    return RunConfig.from_dict(base)


def _set_precision(precision: str) -> None:
    import jax

    jax.config.update("jax_enable_x64", precision == "float64")


def _print_metrics(metrics: dict) -> None:
    print(
        f"{'split':<6} {'global':>10} {'per-sample':>11} {'global (phys)':>14} {'per-sample (phys)':>18}"
    )
    for split in ("train", "val", "test"):
        if f"{split}_global" in metrics:
            print(
                f"{split:<6} {metrics[f'{split}_global']:>10.4f} {metrics[f'{split}_per_sample']:>11.4f} "
                f"{metrics[f'{split}_physical_global']:>14.4f} {metrics[f'{split}_physical_per_sample']:>18.4f}"
            )


def _train(args) -> int:
    if args.resume is not None:
        changed = [
            flag
            for flag, section, name, *_ in OPTIONS
            if getattr(args, f"{section}.{name}") is not None
        ]
        if changed or args.config is not None or args.out is not None:
            raise ValueError(
                f"--resume continues a run with its stored configuration; drop "
                f"{', '.join(changed + (['--config'] if args.config else []) + (['--out'] if args.out else []))}."
            )
        stored = args.resume / "config.toml"
        if not stored.is_file():
            raise FileNotFoundError(f"--resume {str(args.resume)!r} holds no run (no config.toml).")
        config = RunConfig.from_toml(stored.read_text())
        out = args.resume
    else:
        config = _config_from_args(args)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        label = pathlib.Path(config.data.dataset).stem
        out = args.out or pathlib.Path("runs") / f"{label}-{config.model.basis}-{stamp}"
    _set_precision(config.train.precision)
    from ._training._run import train

    _, result, metrics = train(
        config, out, resume=args.resume is not None, progress=not args.no_progress
    )
    if result.status == "interrupted":
        print(f"interrupted at step {result.steps}; continue with: jaxode train --resume {out}")
        return 130
    print(result.message)
    _print_metrics(metrics)
    print(f"test relative error (global): {metrics['test_global']:.4f}; written to {out}")
    return 1 if result.status == "diverged" else 0


def _load_run(run_dir: pathlib.Path):
    stored = run_dir / "config.toml"
    if not stored.is_file():
        raise FileNotFoundError(
            f"{str(run_dir)!r} is not a run directory (no config.toml); pass a directory written by `jaxode train`."
        )
    _set_precision(RunConfig.from_toml(stored.read_text()).train.precision)
    from ._training._run import load

    return load(run_dir)


def _evaluate(args) -> int:
    trained = _load_run(args.run_dir)
    from ._datasets import load_dataset
    from ._training._metrics import error_metrics

    name = args.data or trained.config.data.dataset
    data = load_dataset(name, seed=trained.config.data.split_seed)
    if (data.in_size, data.out_size) != (trained.model.in_size, trained.model.out_size):
        raise ValueError(
            f"--data {name!r} has {data.in_size} inputs/{data.out_size} outputs; "
            f"the model needs {trained.model.in_size}/{trained.model.out_size}."
        )
    metrics = {}
    for split in ("train", "val", "test"):
        x, y = data.arrays(split, normalised=False)
        if len(x):
            p = trained.predict(x)
            metrics.update(
                error_metrics(trained.y_norm.apply(p), trained.y_norm.apply(y), f"{split}_")
            )
            metrics.update(error_metrics(p, y, f"{split}_physical_"))
    from ._training._checkpoint import atomic_write_text

    target = args.output or args.run_dir / "evaluation.json"
    atomic_write_text(target, json.dumps({"data": str(name), **metrics}, indent=2))
    _print_metrics(metrics)
    print(f"written to {target}")
    return 0


def _predict(args) -> int:
    import numpy as np

    trained = _load_run(args.run_dir)
    path = args.input
    if not path.is_file():
        raise FileNotFoundError(f"INPUT {str(path)!r} does not exist.")
    if path.suffix == ".npz":
        with np.load(path) as f:
            if "x" not in f:
                raise ValueError(
                    f"INPUT {str(path)!r} has no array 'x'; store the inputs under 'x'."
                )
            x = f["x"]
    elif path.suffix == ".csv":
        from ._datasets._bundled import _is_number

        with open(path) as f:
            header = not all(_is_number(c) for c in f.readline().strip().split(","))
        x = np.loadtxt(path, delimiter=",", ndmin=2, skiprows=int(header))
    else:
        raise ValueError(f"INPUT must be a .npz (array 'x') or .csv file, got {path.name!r}.")
    predictions = trained.predict(x)
    target = args.output or path.with_name(path.stem + "_predictions.csv")
    from ._training._checkpoint import atomic_write_text

    lines = [",".join(f"{v:.17g}" for v in row) for row in predictions]
    atomic_write_text(target, "\n".join(lines) + "\n")
    print(f"{len(predictions)} predictions (physical units) written to {target}")
    return 0


def _add_probe(sub) -> None:
    """`jaxode probe RUN_DIR`: the probes' report (owned by jaxode.probes), when installed."""
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
    try:
        from .probes import probe_report
    except ImportError:
        raise ValueError("the probes are not available in this version of jaxode.") from None
    from ._datasets import load_dataset

    import equinox as eqx
    import jax
    import jax.numpy as jnp

    _set_precision(args.precision)
    dtype = jnp.dtype(args.precision)
    model = jax.tree_util.tree_map(
        lambda leaf: leaf.astype(dtype) if eqx.is_inexact_array(leaf) else leaf, trained.model
    )
    config = trained.config.data
    x, y = load_dataset(config.dataset, seed=config.split_seed).arrays("train")
    out = args.out or args.run_dir / "probes"
    probe_report(model, out, inputs_train=x, targets_train=y)
    print(f"probe report written to {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="jaxode", description="Continuous-time surrogates with time-parameterized weights."
    )
    sub = parser.add_subparsers(dest="command", parser_class=_Parser, metavar="COMMAND")
    _train_parser(sub)
    sub.choices["train"].set_defaults(handler=_train)
    e = sub.add_parser("evaluate", help="metrics of a trained run on its data or --data")
    e.add_argument("run_dir", type=pathlib.Path, metavar="RUN_DIR")
    e.add_argument("--data", help="data set name or file (default: the run's)")
    e.add_argument(
        "--output", type=pathlib.Path, help="metrics JSON (default RUN_DIR/evaluation.json)"
    )
    e.set_defaults(handler=_evaluate)
    p = sub.add_parser("predict", help="predictions in physical units for the inputs of a file")
    p.add_argument("run_dir", type=pathlib.Path, metavar="RUN_DIR")
    p.add_argument(
        "input", type=pathlib.Path, metavar="INPUT", help=".npz with array 'x' or .csv of inputs"
    )
    p.add_argument(
        "--output", type=pathlib.Path, help="CSV of predictions (default INPUT_predictions.csv)"
    )
    p.set_defaults(handler=_predict)
    _add_probe(sub)
    return parser


def main(argv=None) -> int:
    """Entry point of the `jaxode` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return args.handler(args)
    except (ValueError, TypeError, FileNotFoundError, FileExistsError) as error:
        print(f"jaxode {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("jaxode: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
