"""The sweep driver: plans, skips what is done, trains the rest through an executor and keeps
the results table."""

import dataclasses
import json
import math
import pathlib
import sys

from .._files import atomic_write_text
from .._locks import FolderInUse, folder_lock, without_lock
from .._process import x64_enabled
from .._training import CONFIG, METRICS, RunConfig
from .._wording import setting
from ._cells import INTERRUPTED
from ._executors import AbstractExecutor, LocalExecutor
from ._plan import Cohort, SweepPlan, make_plan, varying_fields
from ._pruning import PRUNED
from ._spec import SweepSpec, config_hash
from ._table import BRIEF, BUSY, FAILED, RESULTS, SUCCEEDED, ResultsTable

PLAN = "plan.json"


def _load(spec) -> SweepSpec:
    if isinstance(spec, SweepSpec):
        return spec
    if isinstance(spec, (str, pathlib.Path)):
        return SweepSpec.from_file(spec)
    raise TypeError(f"`spec` must be a SweepSpec or a path, got {type(spec).__name__}.")


def _write_plan(plan: SweepPlan, out: pathlib.Path) -> None:
    cohort_of = {c.key: cohort.key for cohort in plan.cohorts for c in cohort.cells}
    cells = [
        dict(cell=c.key, cohort=cohort_of[c.key], values=c.values, config=c.config.to_dict())
        for c in plan.cells
    ]
    text = json.dumps(dict(name=plan.spec.name, cells=cells), indent=1, default=str)
    atomic_write_text(out / PLAN, text)


def _set_aside(out: pathlib.Path, key: str) -> None:
    """Moves a failed cell's run directory out of the way of its retry (kept, never deleted),
    holding its lock: a cell that another process is retrying already is not touched.

    **Raises:** `FolderInUse` when another process holds the cell."""
    run_dir = out / "cells" / key
    if not run_dir.exists():
        return
    with folder_lock(run_dir, "sweep cell"):
        attempt = 1
        while (target := run_dir.with_name(f"{key}.attempt-{attempt}")).exists():
            attempt += 1
        run_dir.rename(target)


def _adopt_renamed(plan: SweepPlan, out: pathlib.Path, table: ResultsTable) -> None:
    """Gives the cells of a sweep made under an earlier identity their present keys: run
    directory and results row, so that resuming keeps them. Earlier identities: before
    `config_hash` left out the settings at their defaults (every setting jaxode added changed
    every key), and before it normalised the settings a configuration ignores (combinations
    that differ only there were cells of their own). Of several earlier cells with one present
    key the first is adopted, an unfinished one only when it holds the configuration the cell
    trains (its resume needs it); the rows of the others go (their directories stay)."""
    cells = out / "cells"
    if not cells.is_dir():
        return
    trains = {c.key: c.config for c in plan.cells}
    moved, dropped = [], []
    for run_dir in sorted(cells.iterdir()):
        if run_dir.name in trains or "." in run_dir.name or not (run_dir / CONFIG).is_file():
            continue
        try:
            stored = RunConfig.from_toml((run_dir / CONFIG).read_text())
        except ValueError:
            continue
        key = config_hash(stored)
        if key not in trains:
            continue
        if (cells / key).exists() or not ((run_dir / METRICS).is_file() or stored == trains[key]):
            dropped.append(run_dir.name)
            continue
        run_dir.rename(cells / key)
        row = table.rows.get(run_dir.name)
        if row is not None:
            moved.append(({**row, "cell": key, "run_dir": f"cells/{key}"}, run_dir.name))
    gone = tuple(old for _, old in moved) + tuple(d for d in dropped if d in table.rows)
    if gone:
        table.put([row for row, _ in moved], remove=gone)


def _remaining(
    plan: SweepPlan, table: ResultsTable, retry_failed: bool, out
) -> tuple[list[Cohort], dict]:
    """The cohorts still to train, each reduced to its cells without a final row, and the rows
    of failed cells another process is retrying (status `"busy"`)."""
    todo, busy = [], {}
    for cohort in plan.cohorts:
        cells = []
        for cell in cohort.cells:
            row = table.rows.get(cell.key, {})
            status = row.get("status")
            if status in SUCCEEDED or status == PRUNED or (status in FAILED and not retry_failed):
                continue
            if status in FAILED:
                try:
                    _set_aside(out, cell.key)
                except FolderInUse as error:
                    busy[cell.key] = {**row, "status": BUSY, "message": str(error)}
                    continue
            cells.append(cell)
        if cells:
            todo.append(dataclasses.replace(cohort, cells=tuple(cells)))
    return todo, busy


def _line(cell, row: dict, varying: set) -> str:
    label = ", ".join(f"{n}={v!r}" for n, v in cell.values.items() if n in varying) or cell.key
    error = row.get("test_global")
    figure = "" if error is None or not math.isfinite(error) else f", test_global {error:.4f}"
    seconds = row.get("train_time")
    took = "" if seconds is None else f" ({seconds:.1f} s)"
    text = f"{label}: {row['status']}{figure}{took}"
    return text if row["status"] in SUCCEEDED else f"{text}: {row['message']}"


def sweep(
    spec,
    out,
    *,
    executor: AbstractExecutor | None = None,
    retry_failed: bool = False,
    progress: bool = True,
) -> list[dict]:
    """Trains every cell of a sweep, grouped into cohorts (cells that differ only in
    `COHORT_FIELDS`: seed, learning rate, regulariser weights, initial scale, train as one
    compiled program), and keeps `out/results.csv`: one row per cell,
    keyed by its configuration hash, rewritten atomically after every cohort. Each cell's run
    directory `out/cells/<key>` is an ordinary run (evaluate, probe or resume it alone).

    Several processes may run sweeps into one folder at once: each cell's run directory is
    locked while it trains (a cell another process holds is returned with status `"busy"`,
    untouched, and not recorded), and rows are merged into `results.csv` under the folder's
    lock. Running the same sweep again skips the cells with a row, resumes unfinished cells
    from their checkpoints and, with `retry_failed`, trains failed cells (diverged, solver failed,
    error) again, their previous directory kept as `<key>.attempt-<n>`. A cell that fails is
    recorded with its status and message, and the sweep goes on.

    **Arguments:**

    - `spec`: a `SweepSpec`, the path of its TOML file, or its `SweepPlan` (`make_plan`).
    - `out`: the sweep's folder (created).
    - `executor`: `LocalExecutor()` (default) or `RayExecutor(...)`.
    - `retry_failed`: train failed cells again.
    - `progress`: a progress bar over cells and a line per finished cell.

    **Returns:** the rows of the spec's cells (in spec order), as in `results.csv`.

    **Raises:** `ValueError` for an invalid spec (naming the cell and field) or float64 cells
    without 64-bit JAX; `FileExistsError` when `out` is a file or a folder of other files;
    `KeyboardInterrupt` after an interrupt, with the finished cells
    recorded and the cells in flight checkpointed.
    """
    if not isinstance(spec, SweepPlan):
        spec = _load(spec)
        if spec.search is not None:
            raise ValueError("the spec declares a [search]: train it with `run_search`.")
    plan = spec if isinstance(spec, SweepPlan) else make_plan(spec, progress=progress)
    executor = LocalExecutor() if executor is None else executor
    if isinstance(executor, LocalExecutor) and not executor.set_precision:
        _check_precision(plan)
    out = pathlib.Path(out)
    _check_folder(out)
    with folder_lock(out, "sweep", wait=BRIEF):
        _write_plan(plan, out)
        table = ResultsTable(out)
        _adopt_renamed(plan, out, table)
        todo, busy = _remaining(plan, table, retry_failed, out)
    cell_of = {c.key: c for c in plan.cells}
    varying = varying_fields(plan.cells)
    from tqdm.auto import tqdm

    bar = tqdm(
        total=len(plan.cells),
        initial=len(plan.cells) - sum(len(c.cells) for c in todo),
        unit="cell",
        disable=not progress,
        file=sys.stderr,
        dynamic_ncols=True,
    )
    try:
        for _, rows in executor.map(todo, out):
            finished = [r for r in rows if r["status"] not in (INTERRUPTED, BUSY)]
            table.put(finished)
            busy.update({r["cell"]: r for r in rows if r["status"] == BUSY})
            for row in rows:
                if progress:
                    bar.write(_line(cell_of[row["cell"]], row, varying), file=sys.stderr)
            bar.update(len(finished))
            if any(r["status"] == INTERRUPTED for r in rows):
                raise KeyboardInterrupt
    finally:
        bar.close()
    return [busy.get(c.key) or table.rows[c.key] for c in plan.cells]


def _check_folder(out: pathlib.Path) -> None:
    """**Raises:** `FileExistsError` when `out` is a file, or a folder that holds files but
    no sweep (a sweep never writes into a folder it did not make)."""
    if out.exists() and not out.is_dir():
        raise FileExistsError(
            f"{str(out)!r} is a file; choose a folder for the sweep ({setting('out', '--out')})."
        )
    marks = (PLAN, RESULTS, "cells", "search.db", "search.csv")  # a search's own files too
    if out.is_dir() and without_lock(out) and not any((out / m).exists() for m in marks):
        raise FileExistsError(
            f"{str(out)!r} holds files but no sweep (no {', '.join(marks)}); choose a new or "
            f"empty folder for the sweep ({setting('out', '--out')})."
        )


def _check_precision(plan: SweepPlan) -> None:
    wide = [c for c in plan.cells if c.config.train.precision == "float64"]
    if wide and not x64_enabled():
        raise ValueError(
            f"{len(wide)} sweep cells use train.precision 'float64' (e.g. {wide[0].label()}): "
            "call jax.config.update('jax_enable_x64', True) first, or pass "
            "LocalExecutor(set_precision=True) (the CLI does)."
        )
