"""Training the cells of one cohort into their run directories: the unit of work an executor
runs, in this process or on a Ray worker. Resumes whatever a killed attempt left behind."""

import contextlib
import os
import pathlib
import traceback

from .._files import atomic_write_text
from .._locks import FolderInUse
from .._process import set_precision as use_precision
from .._training import (
    CHECKPOINT,
    CONFIG,
    ERROR,
    CohortLayout,
    RunConfig,
    RunDir,
    load_data,
)
from ._pruning import AbstractPruning, resume_cohort, train_with_pruning
from ._table import BUSY, METRICS as METRIC_COLUMNS

INTERRUPTED = "interrupted"


def result_row(config: RunConfig, key: str, cohort: str, run_dir: str, metrics: dict) -> dict:
    """The results-table row of a cell: identity, status, configuration and metrics."""
    row: dict[str, object] = dict(
        cell=key,
        cohort=cohort,
        status=metrics.get("status", INTERRUPTED),
        message=metrics.get("message", ""),
        run_dir=run_dir,
    )
    for section, values in config.to_dict().items():
        row.update({f"{section}.{name}": value for name, value in values.items()})
    row.update({name: metrics.get(name) for name in METRIC_COLUMNS})
    return row


def _prepare(config: RunConfig, run_dir: RunDir) -> None:
    """Makes `run_dir` resumable: its start files written when a killed attempt left none."""
    if run_dir.holds_run():
        run_dir.stored_config(config)  # raises if it holds another configuration
        return
    if run_dir.path.is_dir() and (run_dir / CHECKPOINT).exists():
        raise ValueError(f"{str(run_dir.path)!r} has a checkpoint but no {CONFIG}; remove it.")
    run_dir.start(config, load_data(config))


def train_cells(
    configs: list,
    keys: list,
    cohort: str,
    directory: str | os.PathLike[str],
    layout: CohortLayout | None = None,
    pruning: AbstractPruning | None = None,
    steps: int = 0,
    *,
    set_precision: bool = False,
) -> list[dict]:
    """Trains the cells `configs` (one cohort) in `directory/cells/<key>` and returns their
    results-table rows. Cells with a `metrics.json` are not trained again (a damaged one is
    status `"error"`); cells with a checkpoint resume from it; cells whose run directory
    another process holds are status `"busy"`, untouched; the rest start. An exception
    becomes status `"error"` for every cell trained, with its message (the traceback in the
    cell's `error.txt`); an interrupt leaves status `"interrupted"`.

    **Arguments:**

    - `configs`, `keys`: the cells' configurations and their hashes.
    - `cohort`: the cohort's key, recorded in each row.
    - `directory`: the sweep's folder.
    - `layout`: the layout of the cohort as planned (`train_cohort`).
    - `pruning`: successive halving over the cells (`train_with_pruning`), whose runs plan
      `steps` steps each; `None`: every cell trains to its end.
    - `set_precision`: switch JAX's 64-bit mode to the cohort's precision first (for a
      process jaxode owns: the CLI, a Ray worker; a library caller sets it themselves).
    """
    directory = pathlib.Path(directory)
    rows, pending, finished = {}, [], []
    for config, key in zip(configs, keys):
        run_dir = RunDir(directory / "cells" / key)
        metrics = _finished(run_dir)
        if metrics is not None:
            rows[key] = result_row(config, key, cohort, f"cells/{key}", metrics)
            finished.append((key, run_dir))
        else:
            pending.append((config, key, run_dir))
    with contextlib.ExitStack() as locks:
        free = []
        for config, key, run_dir in pending:
            try:
                locks.enter_context(run_dir.lock())
            except FolderInUse as error:
                metrics = {"status": BUSY, "message": str(error)}
            except OSError as error:
                metrics = {"status": "error", "message": str(error)}
            else:
                # Another process may have finished the cell between the look and the lock.
                metrics = _finished(run_dir)
            if metrics is None:
                free.append((config, key, run_dir))
            else:
                rows[key] = result_row(config, key, cohort, f"cells/{key}", metrics)
        if free:
            if set_precision:
                use_precision(free[0][0].train.precision)
            trained = _train(free, finished, layout, pruning, steps)
            for (config, key, _), metrics in zip(free, trained):
                rows[key] = result_row(config, key, cohort, f"cells/{key}", metrics)
    return [rows[key] for key in keys]


def _finished(run_dir: RunDir) -> dict | None:
    """The metrics of a cell that has stopped for good (a damaged record is an error row);
    `None` for a cell still to train."""
    try:
        return run_dir.metrics()
    except (OSError, ValueError) as error:
        return {"status": "error", "message": f"{error} (--retry-failed trains the cell anew)"}


def _train(pending: list, finished: list, layout, pruning, steps: int) -> list[dict]:
    """The metrics of each cell of `pending` (`(config, key, run_dir)`), trained as one
    cohort (with `pruning`, rung by rung: `train_with_pruning`); an exception is recorded as
    every cell's error."""
    try:
        for config, _, run_dir in pending:
            _prepare(config, run_dir)
        if pruning is not None:
            results = train_with_pruning(pending, finished, pruning, steps, layout)
            interrupted = {"status": INTERRUPTED, "message": "interrupted"}
            return [results.get(key, interrupted) for _, key, _ in pending]
        outcomes = resume_cohort(pending, layout)
        return [
            metrics or {"status": str(r.status), "message": r.message} for _, r, metrics in outcomes
        ]
    except Exception as error:
        detail = traceback.format_exc()
        for _, _, run_dir in pending:
            atomic_write_text(run_dir / ERROR, detail)
        return [{"status": "error", "message": f"{type(error).__name__}: {error}"}] * len(pending)
