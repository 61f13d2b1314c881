"""The results table of a sweep: one row per cell, keyed by its configuration hash, rewritten
atomically after every finished cohort (and as Parquet when pandas and pyarrow are there)."""

import csv
import io
import pathlib

from .._files import atomic_write_bytes, atomic_write_text
from ._spec import FIELDS

RESULTS, PARQUET = "results.csv", "results.parquet"
LEADING = ("cell", "cohort", "status", "message", "run_dir")
METRICS = tuple(
    f"{split}_{units}{metric}"
    for split in ("train", "val", "test")
    for units in ("", "physical_")
    for metric in ("global", "per_sample")
) + (
    "steps",
    "best_step",
    "solver_failures",
    "forward_evaluations",
    "backward_evaluations",
    "parameters",
    "dynamics_parameters",
    "train_time",
    "compile_time",
)
COLUMNS = LEADING + FIELDS + METRICS
# Statuses of cells that need no more training; "failed" ones are retried on request.
SUCCEEDED = ("completed", "early_stopped")
FAILED = ("diverged", "solver_failed", "error")


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


def read_csv(path) -> tuple[list[str], list[dict]]:
    """`(columns, rows)` of a CSV file of results or history, numbers parsed, empty as `None`."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        rows = [{k: _parse(v, k) for k, v in row.items() if k is not None} for row in reader]
        return list(reader.fieldnames or []), rows


class ResultsTable:
    """The rows of `DIR/results.csv` by cell key; `put` replaces a row and rewrites the file
    (a crash mid-write leaves the previous file)."""

    def __init__(self, directory):
        self.path = pathlib.Path(directory) / RESULTS
        rows = read_csv(self.path)[1] if self.path.is_file() else []
        self.rows = {row["cell"]: row for row in rows}

    def put(self, rows: list[dict]) -> None:
        for row in rows:
            self.rows[row["cell"]] = row
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
