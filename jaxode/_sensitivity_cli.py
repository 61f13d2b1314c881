"""`jaxode sensitivity RUN`: Sobol' indices and derivative measures of a trained run or an
ensemble's folder, written as JSON, a Markdown table and a bar plot."""

import pathlib

import numpy as np

from ._files import atomic_write_text, json_text
from ._process import set_precision
from ._sensitivity import sensitivity_table, surrogate_sensitivities, write_sensitivity_plot
from ._training import CohortDir, RunDir, load


def add_parser(sub) -> None:
    p = sub.add_parser(
        "sensitivity",
        help="Sobol' indices and derivative measures of a trained run or ensemble",
        description="First-order and total Sobol' indices of every output (and of the output "
        "norm) with respect to every input, with bootstrap intervals (SALib's Saltelli "
        "sampling and estimators: pip install 'jaxode[sensitivity]'), and the mean absolute "
        "and squared partial derivatives, over the training domain or --box.",
    )
    p.add_argument("run_dir", type=pathlib.Path, metavar="RUN_DIR")
    p.add_argument(
        "--samples",
        type=int,
        default=4096,
        help="base samples N, a power of two; the model is evaluated N (inputs + 2) times "
        "(default 4096)",
    )
    p.add_argument(
        "--box",
        metavar="LOW:HIGH,...",
        help="the input box, one LOW:HIGH per input column (default: the training domain)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the samples and bootstrap")
    p.add_argument("--out", type=pathlib.Path, help="report folder (default RUN_DIR/sensitivity)")
    p.set_defaults(handler=run)


def _box(text: str, inputs: int) -> tuple[np.ndarray, np.ndarray]:
    pairs = [part.split(":") for part in text.split(",")]
    if len(pairs) != inputs or any(len(pair) != 2 for pair in pairs):
        raise ValueError(
            f"--box needs {inputs} LOW:HIGH pairs separated by commas (one per input), "
            f"got {text!r}."
        )
    try:
        values = np.array([[float(low), float(high)] for low, high in pairs])
    except ValueError:
        raise ValueError(f"--box holds a value that is not a number: {text!r}.") from None
    return values[:, 0], values[:, 1]


def run(args) -> int:
    folder = pathlib.Path(args.run_dir)
    cohort = CohortDir(folder)
    first = cohort.members()[0] if cohort.holds_cohort() else RunDir(folder)
    if not first.holds_run():
        raise FileNotFoundError(
            f"{str(folder)!r} holds no run or ensemble; pass a folder written by jaxode train."
        )
    set_precision(first.config().train.precision)
    trained = load(folder)
    box = None if args.box is None else _box(args.box, trained.model.in_size)
    result = surrogate_sensitivities(trained, box, samples=args.samples, seed=args.seed)
    out = args.out or folder / "sensitivity"
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "sensitivity.json", json_text(result.as_dict()))
    table = sensitivity_table(result)
    atomic_write_text(out / "sensitivity.md", table)
    write_sensitivity_plot(result, out / "sensitivity.png")
    ranking = np.argsort(-result.total[-1])
    print(f"{result.samples} evaluations; total Sobol' index of the output norm per input:")
    for i in ranking:
        print(
            f"  {result.names[i]:>8}  ST {result.total[-1, i]:.3f} ± {result.total_conf[-1, i]:.3f}"
            f"  S1 {result.first[-1, i]:.3f} ± {result.first_conf[-1, i]:.3f}"
        )
    print(f"written to {out} (sensitivity.json, sensitivity.md, sensitivity.png)")
    return 0
