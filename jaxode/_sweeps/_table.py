"""The results table of a sweep: one row per cell, keyed by its configuration hash, rewritten
atomically after every finished cohort (and as Parquet when pandas and pyarrow are there)."""

import csv
import io
import pathlib

from .._files import atomic_write_bytes, atomic_write_text, read_text
from .._locks import folder_lock
from .._provenance import PROVENANCE_FIELDS
from ._spec import FIELDS

RESULTS, PARQUET = "results.csv", "results.parquet"
LEADING = ("cell", "cohort", "status", "message", "run_dir")
METRICS = (
    tuple(
        f"{split}_{units}{metric}"
        for split in ("train", "val", "test")
        for units in ("", "physical_")
        for metric in ("global", "per_sample")
    )
    + (
        "steps",
        "best_step",
        "solver_failures",
        "forward_evaluations",
        "backward_evaluations",
        "parameters",
        "dynamics_parameters",
        "train_time",
        "compile_time",
        "rung",
    )
    + PROVENANCE_FIELDS
)
COLUMNS = LEADING + FIELDS + METRICS
# Statuses of cells that need no more training; "failed" ones are retried on request.
SUCCEEDED = ("completed", "early_stopped")
FAILED = ("diverged", "solver_failed", "error")
# A cell whose run directory another process holds: not trained here, and not recorded.
BUSY = "busy"


# Seconds a sweep waits for the folder's lock another process holds briefly (merging its rows,
# writing its plan) before it gives up.
BRIEF = 60.0

# Identifiers and free text stay strings: a hash made only of digits is not a number.
TEXT_COLUMNS = ("cell", "cohort", "status", "message", "run_dir", "data.dataset")


def _parse(text: str | None, column: str):
    if not text or column in TEXT_COLUMNS:
        return text or None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"True": True, "False": False}.get(text, text)


def read_csv(path, what: str = "results table") -> tuple[list[str], list[dict]]:
    """`(columns, rows)` of a CSV file of results or history (`what` names it in messages),
    numbers parsed, empty as `None`.

    **Raises:** `FileNotFoundError`, or `ValueError` naming the file when it is not UTF-8 CSV."""
    text = read_text(path, what, "restore it, or move it away and run the sweep again.")
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        rows = [{k: _parse(v, k) for k, v in row.items() if k is not None} for row in reader]
    except csv.Error as error:
        raise ValueError(f"{what} {str(path)!r} is not valid CSV: {error}.") from None
    return list(reader.fieldnames or []), rows


class ResultsTable:
    """The rows of `DIR/results.csv` by cell key. `put` merges rows into the file under the
    sweep folder's lock, reading it first, so that processes training disjoint cells of one
    sweep keep each other's rows (a crash mid-write leaves the previous file)."""

    def __init__(self, directory):
        self.directory = pathlib.Path(directory)
        self.path = self.directory / RESULTS
        self.rows = self._read()

    def _read(self) -> dict:
        if not self.path.exists():
            return {}
        columns, rows = read_csv(self.path)
        if "cell" not in columns:
            raise ValueError(
                f"{str(self.path)!r} is not a sweep's results table (no 'cell' column); move "
                "it away, and the sweep rebuilds its rows from the cells' run directories."
            )
        return {row["cell"]: row for row in rows if row["cell"]}

    def put(self, rows: list[dict], remove: tuple = ()) -> None:
        """Records `rows` (replacing the rows of their cells) and drops the rows of the cells
        `remove`."""
        with folder_lock(self.directory, "sweep", wait=BRIEF):
            self.rows = self._read()
            for key in remove:
                self.rows.pop(key, None)
            for row in rows:
                self.rows[row["cell"]] = row
            self._write()

    def _write(self) -> None:
        buffer = io.StringIO()
        extra = sorted({k for r in self.rows.values() for k in r} - set(COLUMNS))
        writer = csv.DictWriter(buffer, fieldnames=COLUMNS + tuple(extra), lineterminator="\n")
        writer.writeheader()
        for row in self.rows.values():
            writer.writerow({k: "" if v is None else v for k, v in row.items()})
        atomic_write_text(self.path, buffer.getvalue())
        self._parquet()

    def _parquet(self) -> None:
        try:
            import pandas
            import pyarrow  # noqa: F401
        except ImportError:
            return
        frame = pandas.read_csv(self.path, keep_default_na=True)
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        atomic_write_bytes(self.path.with_name(PARQUET), buffer.getvalue())
