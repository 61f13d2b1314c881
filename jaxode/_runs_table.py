"""What run directories hold, as rows and differences: `jaxode runs` and `jaxode compare`.

Everything here reads files and returns plain data (dicts, lists, text); nothing trains or
loads a model. A run directory is any folder holding one of the files `jaxode train` writes
(`RUN_FILES`): single runs, cohort members (`seed-<s>/`) and sweep cells (`cells/<key>/`)
alike. A damaged run (a file missing, unreadable or invalid) is reported with what is known and
a note saying what is wrong; it never stops the listing.
"""

import csv
import dataclasses
import json
import math
import os
import pathlib
import tomllib

from ._files import checkpoint_problem
from ._training import CONFIG, ERROR, HISTORY, METRICS, MODEL, NORMALISATION, RUN_FILES, RunConfig

COLUMNS = (
    "data",
    "model",
    "basis",
    "degree",
    "status",
    "test_global",
    "test_per_sample",
    "steps",
    "time",
    "path",
)
NUMERIC = ("degree", "test_global", "test_per_sample", "steps", "time")
RUNNING = "running/interrupted"
# metrics.json's `status` (see `FitResult`), and the sweep's "error", as the table shows them.
STATUSES = {
    "completed": "completed",
    "early_stopped": "early stopped",
    "diverged": "diverged",
    "solver_failed": "failed",
    "error": "failed",
}
# metrics.json entries that are not metrics: the sentence of how training ended, whether
# loss.png was drawn, and when training started (a Unix time, which differs between any runs).
_NOT_METRICS = ("status", "message", "plot", "training_started")


@dataclasses.dataclass
class RunFiles:
    """What one run directory records, as read from its files.

    **Fields:** `path`; `config` (dotted name -> value, `None` when unreadable or missing);
    `metrics` (metrics.json, `None` when absent or unreadable); `last` (the last row of
    history.csv, `None` when absent or unreadable); `error` (the last line of a sweep cell's
    error.txt, `None` without one); `notes` (what is missing or damaged).
    """

    path: pathlib.Path
    config: dict | None
    metrics: dict | None
    last: dict | None
    error: str | None
    notes: list


def is_run_dir(path: pathlib.Path) -> bool:
    """Whether `path` is a folder holding one of the files `jaxode train` writes."""
    return path.is_dir() and any((path / name).is_file() for name in RUN_FILES)


def find_runs(root) -> tuple[list[pathlib.Path], list[str]]:
    """The run directories under `root` (itself included), in path order, and warnings about
    folders that could not be read. Hidden folders (`.venv`, `.git`) and the folders inside a
    run directory are not searched.

    **Raises:** `FileNotFoundError` if `root` does not exist; `NotADirectoryError` if it is a
    file.
    """
    root = pathlib.Path(root)
    if not root.exists():
        raise FileNotFoundError(
            f"{str(root)!r} does not exist; pass the folder of your runs (`jaxode train` "
            "writes them under runs/ by default)."
        )
    if not root.is_dir():
        raise NotADirectoryError(f"{str(root)!r} is a file; pass a folder of run directories.")
    found, warnings = [], []

    def unreadable(error: OSError) -> None:
        warnings.append(f"could not read folder {error.filename!r}: {error.strerror}")

    for folder, subfolders, files in os.walk(root, onerror=unreadable):
        if any(name in files for name in RUN_FILES):
            found.append(pathlib.Path(folder))
            subfolders[:] = []
        else:
            subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
    return sorted(found, key=lambda p: p.parts), warnings


def _flatten(sections: dict) -> dict:
    """`{"section.key": value}`, with `None` as config.toml writes it: `"none"` (`None` is
    left to mean unknown)."""
    return {
        f"{section}.{key}": "none" if value is None else value
        for section, values in sections.items()
        if isinstance(values, dict)
        for key, value in values.items()
    }


def _read_config(path: pathlib.Path, notes: list) -> dict | None:
    if not path.is_file():
        notes.append(f"{CONFIG} missing")
        return None
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        notes.append(f"{CONFIG} unreadable ({error})")
        return None
    try:
        return _flatten(RunConfig.from_toml(text).to_dict())
    except ValueError as invalid:
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError:
            notes.append(f"{CONFIG} unreadable ({invalid})")
            return None
        notes.append(f"{CONFIG} invalid ({invalid})")
        return _flatten(raw)


def _read_json(path: pathlib.Path, notes: list) -> dict | None:
    if not path.is_file():
        return None
    try:
        values = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as error:
        notes.append(f"{path.name} unreadable ({error})")
        return None
    if not isinstance(values, dict):
        notes.append(f"{path.name} unreadable (not a JSON object)")
        return None
    return values


def _read_last_row(path: pathlib.Path, notes: list) -> dict | None:
    if not path.is_file():
        return None
    try:
        rows = list(csv.DictReader(path.read_text().splitlines()))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        notes.append(f"{HISTORY} unreadable ({error})")
        return None
    return rows[-1] if rows else None


def _read_error(path: pathlib.Path) -> str | None:
    if not path.is_file():
        return None
    try:
        lines = path.read_text().strip().splitlines()
    except (OSError, UnicodeDecodeError):
        return "unreadable"
    return lines[-1] if lines else ""


def read_run(run_dir) -> RunFiles:
    """Reads what the files of `run_dir` record; never raises for a missing or damaged file
    (its `notes` say what was wrong)."""
    run_dir = pathlib.Path(run_dir)
    notes = []
    config = _read_config(run_dir / CONFIG, notes)
    metrics = _read_json(run_dir / METRICS, notes)
    last = _read_last_row(run_dir / HISTORY, notes)
    error = _read_error(run_dir / ERROR)
    if config is not None and not (run_dir / NORMALISATION).is_file():
        notes.append(f"{NORMALISATION} missing")
    if metrics is not None and "best_step" in metrics and not (run_dir / MODEL).is_file():
        notes.append(f"{MODEL} missing")  # metrics of trained parameters, but none stored
    damaged = checkpoint_problem(run_dir / MODEL) if (run_dir / MODEL).is_file() else None
    if damaged is not None:
        notes.append(f"{MODEL} {damaged.removeprefix(repr(str(run_dir / MODEL))).strip()}")
    return RunFiles(run_dir, config, metrics, last, error, notes)


def status_of(run: RunFiles) -> str:
    """`completed`, `early stopped`, `diverged`, `failed` (failing solves, or a sweep cell
    whose training raised), `running/interrupted` (no metrics.json yet: a run in progress and
    one stopped by Ctrl-C or SIGTERM look alike on disk) or `unknown` (metrics.json unreadable
    or without a status)."""
    if run.metrics is not None:
        recorded = run.metrics.get("status")
        if not isinstance(recorded, str):
            return "unknown"
        return STATUSES.get(recorded, recorded)
    if run.error is not None:
        return STATUSES["error"]
    if any(note.startswith(METRICS) for note in run.notes):
        return "unknown"
    return RUNNING


def metric(metrics: dict | None, name: str):
    """`metrics[name]`, `None` when absent. metrics.json stores non-finite numbers as `null`
    (strict JSON): a null relative error reads back as `inf` when the split counted failed
    solves (their predictions are infinite) and `nan` otherwise."""
    if metrics is None or name not in metrics:
        return None
    value = metrics[name]
    if value is None and name.endswith(("_global", "_per_sample")):
        split = name.split("_")[0]
        return math.inf if f"{split}_failed_solves" in metrics else math.nan
    return value


def _number(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def run_row(run: RunFiles, path: str | None = None) -> dict:
    """The row of `run` in `jaxode runs`: `COLUMNS` (`time` in seconds: the training wall
    time, compilation excluded, of metrics.json, or of history.csv's last evaluation while
    running), `recorded_status` (metrics.json's own word) and `notes`."""
    config = run.config or {}
    metrics = run.metrics or {}
    last = run.last or {}
    steps = metrics.get("steps")
    if steps is None and "step" in last:
        steps = _number(last["step"])
        steps = int(steps) if steps is not None and steps.is_integer() else steps
    time = metrics.get("train_time")
    if time is None:
        time = _number(last.get("wall_time"))
    notes = list(run.notes)
    if run.error is not None and run.metrics is None:
        notes.append(f"{ERROR}: {run.error}")
    return dict(
        data=config.get("data.dataset"),
        model=config.get("model.model"),
        basis=config.get("model.basis"),
        degree=config.get("model.degree"),
        status=status_of(run),
        test_global=metric(run.metrics, "test_global"),
        test_per_sample=metric(run.metrics, "test_per_sample"),
        steps=steps,
        time=time,
        path=str(run.path) if path is None else path,
        recorded_status=metrics.get("status"),
        notes=notes,
    )


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def sort_rows(rows: list[dict], column: str, reverse: bool = False) -> list[dict]:
    """`rows` ordered by `column` (numbers numerically, text alphabetically); rows without a
    value come last either way.

    **Raises:** `ValueError` naming the columns for an unknown `column`.
    """
    if column not in COLUMNS:
        raise ValueError(
            f"unknown column {column!r} to sort by; choose one of {', '.join(COLUMNS)}."
        )

    def key(row):
        value = row[column]
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        return (0, value, "") if number else (1, 0, str(value))

    present = [row for row in rows if not _missing(row[column])]
    absent = [row for row in rows if _missing(row[column])]
    return sorted(present, key=key, reverse=reverse) + absent


def runs_table(root, sort: str | None = None, reverse: bool = False) -> tuple[list, list]:
    """`(rows, warnings)`: one `run_row` per run directory under `root` (paths as `root`
    joined with the run's folder), in path order or sorted by `sort`; warnings about folders
    that could not be read.

    **Raises:** as `find_runs`, and `ValueError` for an unknown `sort` column (checked first).
    """
    if sort is not None:
        sort_rows([], sort)
    run_dirs, warnings = find_runs(root)
    rows = [run_row(read_run(d)) for d in run_dirs]
    if sort is not None:
        rows = sort_rows(rows, sort, reverse)
    elif reverse:
        rows = rows[::-1]
    return rows, warnings


def duration(seconds) -> str:
    """`39.4s`, `12m05s`, `3h07m`; `-` for none."""
    if _missing(seconds):
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def show(value, digits: int = 4) -> str:
    """A value for a table cell: `-` for none, floats to `digits` significant digits."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return f"{value:.{digits}g}"
    return str(value)


def table(
    header: list[str], rows: list[list[str]], right: set[int] | frozenset[int] = frozenset()
) -> str:
    """Text columns two spaces apart; the columns whose index is in `right` right-aligned."""
    widths = [max(len(text) for text in column) for column in zip(header, *rows)]

    def line(cells):
        parts = [
            text.rjust(width) if k in right else text.ljust(width)
            for k, (text, width) in enumerate(zip(cells, widths))
        ]
        return "  ".join(parts).rstrip()

    return "\n".join([line(header), *(line(cells) for cells in rows)])


def format_runs(rows: list[dict]) -> str:
    """The text table of `jaxode runs`; a `note` column when a run has notes."""
    columns = list(COLUMNS) + (["note"] if any(row["notes"] for row in rows) else [])
    cells = []
    for row in rows:
        texts = []
        for name in columns:
            if name == "time":
                texts.append(duration(row["time"]))
            elif name == "note":
                texts.append("; ".join(row["notes"]))
            else:
                texts.append(show(row[name]))
        cells.append(texts)
    right = {columns.index(name) for name in NUMERIC}
    return table(columns, cells, right)


def json_rows(rows: list[dict]) -> str:
    """`rows` as strict JSON (non-finite errors as `null`, as metrics.json stores them)."""
    clean = [
        {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in row.items()}
        for row in rows
    ]
    return json.dumps(clean, indent=2, allow_nan=False)


# ------------------------------------------------------------------------------------------
# compare


@dataclasses.dataclass
class Comparison:
    """What `compare_runs` returns.

    **Fields:** `labels` (a short distinct name per run: the shortest distinct tails of their
    paths); `paths`; `config` (`(dotted name, values)` for the configuration fields whose
    values differ, one value per run, `None` where unknown); `metrics` (`(name, values)` for
    `status` and every metric any run has, `None` where a run has none); `notes` (`(label,
    note)` for missing or damaged files).
    """

    labels: list
    paths: list
    config: list
    metrics: list
    notes: list


def labels_of(paths: list[pathlib.Path]) -> list[str]:
    """The shortest tails of `paths` (same number of parts for all) that tell them apart;
    the whole paths, numbered, when even those coincide."""
    parts = [p.resolve().parts for p in paths]
    for n in range(1, max(len(p) for p in parts) + 1):
        tails = ["/".join(p[-n:]) for p in parts]
        if len(set(tails)) == len(tails):
            return tails
    return [f"{k + 1}:{p}" for k, p in enumerate(paths)]


def _not_a_run(path: pathlib.Path) -> str:
    if not path.exists():
        return f"{str(path)!r} does not exist."
    if not path.is_dir():
        return f"{str(path)!r} is a file, not a run directory."
    if (path / "cohort.json").is_file():
        return (
            f"{str(path)!r} is a cohort folder, not a run; compare its members (e.g. "
            f"{str(path / 'seed-0')!r}), or list them with `jaxode runs {path}`."
        )
    hint = "; `jaxode runs DIR` lists the run directories under a folder."
    if (path / "cells").is_dir():
        hint = f"; its runs are under {str(path / 'cells')!r} (`jaxode runs {path}` lists them)."
    return f"{str(path)!r} is not a run directory (it holds none of {', '.join(RUN_FILES)}){hint}"


def compare_runs(run_dirs) -> Comparison:
    """The configuration fields in which the runs `run_dirs` differ and their metrics side by
    side.

    **Raises:** `ValueError` for fewer than two runs; `FileNotFoundError` naming each path
    that is not a run directory.
    """
    paths = [pathlib.Path(d) for d in run_dirs]
    if len(paths) < 2:
        raise ValueError(f"compare needs two or more run directories, got {len(paths)}.")
    bad = [_not_a_run(p) for p in paths if not is_run_dir(p)]
    if bad:
        raise FileNotFoundError(" ".join(bad))
    runs = [read_run(p) for p in paths]
    labels = labels_of(paths)
    names = []
    for run in runs:
        names += [name for name in run.config or {} if name not in names]
    config = []
    for name in names:
        values = [None if run.config is None else run.config.get(name) for run in runs]
        if any(v != values[0] for v in values[1:]):
            config.append((name, values))
    metric_names = []
    for run in runs:
        metric_names += [
            name for name in run.metrics or {} if name not in metric_names + list(_NOT_METRICS)
        ]
    metrics = [("status", [status_of(run) for run in runs])]
    metrics += [(name, [metric(run.metrics, name) for run in runs]) for name in metric_names]
    notes = [(label, note) for label, run in zip(labels, runs) for note in run.notes]
    notes += [
        (label, f"{ERROR}: {run.error}")
        for label, run in zip(labels, runs)
        if run.error is not None and run.metrics is None
    ]
    return Comparison(labels, [str(p) for p in paths], config, metrics, notes)


def json_comparison(comparison: Comparison) -> str:
    """`comparison` as strict JSON: `runs` (label, path), `config` and `metrics` (name ->
    one value per run), `notes`; non-finite numbers as `null`."""

    def clean(value):
        return None if isinstance(value, float) and not math.isfinite(value) else value

    out = dict(
        runs=[dict(label=k, path=p) for k, p in zip(comparison.labels, comparison.paths)],
        config={name: [clean(v) for v in values] for name, values in comparison.config},
        metrics={name: [clean(v) for v in values] for name, values in comparison.metrics},
        notes=[dict(run=label, note=note) for label, note in comparison.notes],
    )
    return json.dumps(out, indent=2, allow_nan=False)


def format_comparison(comparison: Comparison) -> str:
    """The text of `jaxode compare`: the runs, the differing configuration fields, the
    metrics, and notes about damaged runs."""
    labels = comparison.labels
    lines = [f"{label}: {path}" for label, path in zip(labels, comparison.paths)]
    right = set(range(1, len(labels) + 1))

    lines.append("")
    if comparison.config:
        lines.append("configuration (the fields that differ):")
        rows = [[name] + [show(v, 6) for v in values] for name, values in comparison.config]
        lines.append(table(["field", *labels], rows))
    else:
        lines.append("configuration: identical.")
    lines.append("")
    lines.append("metrics (errors relative; normalised units unless named physical):")
    rows = [[name] + [show(v, 6) for v in values] for name, values in comparison.metrics]
    lines.append(table(["metric", *labels], rows, right))
    if comparison.notes:
        lines.append("")
        lines += [f"note: {label}: {note}" for label, note in comparison.notes]
    return "\n".join(lines)
