"""Training the cells of one cohort into their run directories: the unit of work an executor
runs, in this process or on a Ray worker. Resumes whatever a killed attempt left behind."""

import json
import pathlib
import traceback

from .._training._checkpoint import atomic_write_text
from .._training._config import RunConfig
from .._training._fit import CHECKPOINT
from .._training._run import CONFIG, METRICS, _dataset, _stored_config, _write_start, train_cohort
from ._table import METRICS as METRIC_COLUMNS

INTERRUPTED, ERROR = "interrupted", "error.txt"


def result_row(config: RunConfig, key: str, cohort: str, run_dir: str, metrics: dict) -> dict:
    """The results-table row of a cell: identity, status, configuration and metrics."""
    row = dict(
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


def finished_metrics(run_dir: pathlib.Path) -> dict | None:
    """The metrics of a run that has stopped for good (not interrupted), else `None`."""
    path = run_dir / METRICS
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def _prepare(config: RunConfig, run_dir: pathlib.Path) -> None:
    """Makes `run_dir` resumable: its start files written when a killed attempt left none."""
    if (run_dir / CONFIG).is_file():
        _stored_config(config, run_dir)  # raises if it holds another configuration
        return
    if run_dir.is_dir() and (run_dir / CHECKPOINT).exists():
        raise ValueError(f"{str(run_dir)!r} has a checkpoint but no {CONFIG}; remove it.")
    _write_start(config, _dataset(config), run_dir)


def train_cells(
    configs: list, keys: list, cohort: str, directory: str, *, set_precision: bool = False
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
        run_dir = directory / "cells" / key
        metrics = finished_metrics(run_dir)
        if metrics is not None:
            rows[key] = result_row(config, key, cohort, f"cells/{key}", metrics)
        else:
            pending.append((config, key, run_dir))
    if pending:
        if set_precision:
            import jax

            jax.config.update("jax_enable_x64", pending[0][0].train.precision == "float64")
        try:
            for config, _, run_dir in pending:
                _prepare(config, run_dir)
            outcomes = train_cohort(
                [c for c, _, _ in pending], [d for _, _, d in pending], resume=True, progress=False
            )
            trained = [metrics or {"status": r.status, "message": r.message}
                       for _, r, metrics in outcomes]
        except Exception as error:
            detail = traceback.format_exc()
            for _, _, run_dir in pending:
                atomic_write_text(run_dir / ERROR, detail)
            failure = {"status": "error", "message": f"{type(error).__name__}: {error}"}
            trained = [failure] * len(pending)
        for (config, key, _), metrics in zip(pending, trained):
            rows[key] = result_row(config, key, cohort, f"cells/{key}", metrics)
    return [rows[key] for key in keys]
