"""The command line's side of ensembles: `jaxode evaluate` of a cohort folder, the ensemble's
table, and the spread and interval columns of `jaxode predict`."""

import json
import pathlib
import sys

import numpy as np

from ._datasets import TrajectoryData
from ._files import atomic_write_text
from ._process import set_precision
from ._training import (
    CohortDir,
    calibrate_cohort,
    calibration_record,
    evaluate_ensemble,
    evaluation_data,
    load_ensemble,
)
from ._uncertainty import LEVELS

EVALUATION = "evaluation.json"
SPLITS = ("train", "val", "test")


def print_ensemble(metrics: dict) -> None:
    """The ensemble mean's errors and its predictive scores, a row per split."""
    coverages = "".join(f"{f'cover {round(100 * p)}%':>11}" for p in LEVELS)
    print(
        f"{'split':<6} {'global':>10} {'global':>10} {'members':>17} {'NLL':>8}{coverages}\n"
        f"{'':<6} {'(normalised)':>10} {'(physical)':>10} {'(physical)':>17} {'(norm.)':>8}"
    )
    for split in SPLITS:
        if f"{split}_global" not in metrics:
            continue
        row = f"{split:<6} {metrics[f'{split}_global']:>10.4f} "
        row += f"{metrics[f'{split}_physical_global']:>10.4f}"
        members = (
            f"{metrics[f'{split}_members_physical_global_mean']:.4f} ± "
            f"{metrics[f'{split}_members_physical_global_std']:.4f}"
        )
        row += f" {members:>17}"
        if f"{split}_nll" in metrics:
            row += f" {metrics[f'{split}_nll']:>8.3f}"
            row += "".join(
                f"{metrics[f'{split}_coverage_{round(100 * p)}']:>11.3f}" for p in LEVELS
            )
        print(row)


def evaluate_ensemble_folder(args) -> int:
    """`jaxode evaluate COHORT_FOLDER`: recalibrates the ensemble on its validation split and
    evaluates it (`calibrate_cohort`), or, with `--data`, evaluates it as calibrated on other
    data; writes the metrics to `--output` (default `COHORT_FOLDER/evaluation.json`)."""
    folder = pathlib.Path(args.run_dir)
    set_precision(CohortDir(folder).members()[0].config().train.precision)
    if args.data is None:
        ensemble, metrics = calibrate_cohort(folder)
        name = ensemble.config.data.dataset
    else:
        ensemble = load_ensemble(folder)
        name = args.data
        data = evaluation_data(ensemble.config.data, args.data, args.num_outputs)
        if isinstance(data, TrajectoryData):
            raise ValueError(f"--data {name!r} is a time series; an ensemble evaluates a table.")
        if (data.in_size, data.out_size) != (ensemble.model.in_size, ensemble.model.out_size):
            raise ValueError(
                f"--data {name!r} has {data.in_size} inputs/{data.out_size} outputs; the "
                f"ensemble needs {ensemble.model.in_size}/{ensemble.model.out_size}."
            )
        if ensemble.scales is None:
            print(
                "jaxode evaluate: note: the ensemble is not calibrated yet (no ensemble.json); "
                "its spread is the members' alone. Evaluate the folder without --data first.",
                file=sys.stderr,
            )
        metrics = evaluate_ensemble(ensemble, data)
    target = args.output or folder / EVALUATION
    record = {"data": str(name), "members": len(ensemble.members), **metrics}
    if ensemble.scales is not None:
        record.update(calibration_record(ensemble))
    atomic_write_text(target, json.dumps(record, indent=2))
    print(f"ensemble of {len(ensemble.members)} members:")
    print_ensemble(metrics)
    print(f"written to {target}")
    return 0


def predictive_columns(model, x: np.ndarray, args) -> tuple[list[str], np.ndarray | None]:
    """The names and values of the columns `--std` (std0, std1, ...) and `--level P`
    (lower0, upper0, ...) add to `jaxode predict`'s output; none without them.

    **Raises:** `ValueError` when they are asked of a single run (only an ensemble has a
    spread)."""
    if not args.std and args.level is None:
        return [], None
    if not hasattr(model, "interval"):
        flag = "--std" if args.std else "--level"
        raise ValueError(
            f"{flag}: a single run has no predictive spread; train an ensemble "
            "(jaxode train --ensemble K) and predict with its folder."
        )
    if args.level is not None and not 0 < args.level < 1:
        raise ValueError(f"--level must lie between 0 and 1 (e.g. 0.9), got {args.level}.")
    if model.scales is None:
        print(
            "jaxode predict: warning: the ensemble is not calibrated (no ensemble.json): the "
            "spread is the members' alone; run jaxode evaluate on its folder to calibrate it.",
            file=sys.stderr,
        )
    mean, std = model.predict(x, return_std=True)
    outputs = range(mean.shape[1])
    names, columns = [], []
    if args.std:
        names += [f"std{i}" for i in outputs]
        columns.append(std)
    if args.level is not None:
        lower, upper = model.interval(x, args.level)
        names += [f"lower{i}" for i in outputs] + [f"upper{i}" for i in outputs]
        columns += [lower, upper]
    return names, np.concatenate(columns, axis=1)
