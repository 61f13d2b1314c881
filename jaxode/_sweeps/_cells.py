"""Training the cells of one cohort into their run directories: the unit of work an executor
runs, in this process or on a Ray worker. Resumes whatever a killed attempt left behind."""

import os
import pathlib
import traceback

from .._files import atomic_write_text
from .._process import set_precision as use_precision
from .._training import CHECKPOINT, CONFIG, ERROR, RunConfig, RunDir, load_data, train_cohort
from ._table import METRICS as METRIC_COLUMNS

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
    *,
    set_precision: bool = False,
) -> list[dict]:
    """Trains the cells `configs` (one cohort) in `directory/cells/<key>` and returns their
    results-table rows. Cells with a `metrics.json` are not trained again; cells with a
    checkpoint resume from it; the rest start. An exception becomes status `"error"` for
    every cell trained, with its message (the traceback in the cell's `error.txt`); an
    interrupt leaves status `"interrupted"`.

    **Arguments:**

    - `configs`, `keys`: the cells' configurations and their hashes.
    - `cohort`: the cohort's key, recorded in each row.
    - `directory`: the sweep's folder.
    - `set_precision`: switch JAX's 64-bit mode to the cohort's precision first (for a
      process jaxode owns: the CLI, a Ray worker; a library caller sets it themselves).
    """
    directory = pathlib.Path(directory)
    rows, pending = {}, []
    for config, key in zip(configs, keys):
        run_dir = RunDir(directory / "cells" / key)
        metrics = run_dir.metrics()
        if metrics is not None:
            rows[key] = result_row(config, key, cohort, f"cells/{key}", metrics)
        else:
            pending.append((config, key, run_dir))
    if pending:
        if set_precision:
            use_precision(pending[0][0].train.precision)
        try:
            for config, _, run_dir in pending:
                _prepare(config, run_dir)
            outcomes = train_cohort(
                [c for c, _, _ in pending],
                [d.path for _, _, d in pending],
                resume=True,
                progress=False,
            )
            trained = [
                metrics or {"status": str(r.status), "message": r.message}
                for _, r, metrics in outcomes
            ]
        except Exception as error:
            detail = traceback.format_exc()
            for _, _, run_dir in pending:
                atomic_write_text(run_dir / ERROR, detail)
            failure = {"status": "error", "message": f"{type(error).__name__}: {error}"}
            trained = [failure] * len(pending)
        for (config, key, _), metrics in zip(pending, trained):
            rows[key] = result_row(config, key, cohort, f"cells/{key}", metrics)
    return [rows[key] for key in keys]
