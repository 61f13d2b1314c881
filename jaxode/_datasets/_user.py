"""A user's own data set from a `.npz` or `.csv` file."""

import operator
import pathlib

import numpy as np

from ._core import SPLITS, Affine, Dataset, fraction_split, validate_arrays, zscore
from ._readers import CsvTable, check_file, numeric_array, read_csv, read_npz

WHAT = "data file"


def check_seed(seed) -> int:
    """**Raises:** `ValueError` unless `seed` is an integer in $[0, 2^{32})$."""
    try:
        value = operator.index(seed)
    except TypeError:
        value = None
    if isinstance(seed, bool) or value is None or not 0 <= value < 2**32:
        raise ValueError(f"`seed` must be an integer in [0, 2**32), got {seed!r}.")
    return value


def _check_num_outputs(num_outputs, num_columns: int, label: str) -> int:
    try:
        value = operator.index(num_outputs)
    except TypeError:
        value = None
    if isinstance(num_outputs, bool) or value is None or not 1 <= value < num_columns:
        raise ValueError(
            f"`num_outputs` must be an integer in [1, {num_columns - 1}] for {label} "
            f"({num_columns} columns, the last `num_outputs` are the outputs), got "
            f"{num_outputs!r}."
        )
    return value


def _names(names: list, limit: int = 6) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (", ..." if len(names) > limit else "")


def csv_columns(table: CsvTable, num_outputs) -> tuple[np.ndarray, np.ndarray]:
    """`(x, y)` of a CSV table: the last `num_outputs` columns, or else the columns the
    header names `y...`, are the outputs.

    **Raises:** `ValueError` saying how to pass `num_outputs` (Python and CLI) when the table
    does not tell inputs from outputs.
    """
    inputs, outputs = csv_column_indices(table, num_outputs)
    return table.values[:, inputs], table.values[:, outputs]


def csv_column_indices(table: CsvTable, num_outputs) -> tuple[list[int], list[int]]:
    """The 0-based indices of the input and of the output columns of a CSV table (see
    `csv_columns`).

    **Raises:** as `csv_columns`.
    """
    label = table.label
    if num_outputs is not None:
        k = _check_num_outputs(num_outputs, table.num_columns, label)
        first = table.num_columns - k
        return list(range(first)), list(range(first, table.num_columns))
    how = (
        "pass the number of output columns (the last ones) as `num_outputs=N` in Python or "
        "`--num-outputs N` on the command line"
    )
    if table.names is None:
        raise ValueError(
            f"{label} has no header row, so inputs cannot be told from outputs; {how}, or add "
            "a header row naming the output columns y1, y2, ..."
        )
    outputs = [j for j, name in enumerate(table.names) if name.lower().startswith("y")]
    if not outputs:
        raise ValueError(
            f"{label}: no header column is named y... (header: {_names(table.names)}); name "
            f"the output columns y1, y2, ... or {how}."
        )
    if len(outputs) == table.num_columns:
        raise ValueError(
            f"{label}: every header column is named y..., which leaves no inputs; rename the "
            f"input columns or {how}."
        )
    inputs = [j for j in range(table.num_columns) if j not in outputs]
    return inputs, outputs


_SPLIT_NAMES = {"train": "training", "val": "validation", "test": "test"}
_SPLIT_USES = {
    "val": "pick the best parameters and stop early",
    "test": "measure the error reported at the end",
}


def _npz_arrays(path: pathlib.Path, label: str, num_outputs):
    arrays = read_npz(path, WHAT)
    missing = [k for k in ("x", "y") if k not in arrays]
    if missing:
        raise ValueError(
            f"{label}: missing array(s) {missing} (it holds {sorted(arrays)}); store inputs "
            "as 'x' and outputs as 'y'."
        )
    x, y = numeric_array(label, "x", arrays["x"]), numeric_array(label, "y", arrays["y"])
    if num_outputs is not None:
        width = y.shape[1] if y.ndim == 2 else 1
        if num_outputs != width:
            raise ValueError(
                f"`num_outputs`={num_outputs!r} but {label} stores {width} outputs in 'y'; "
                "leave `num_outputs` unset (it is for CSV files)."
            )
    stored = [s for s in SPLITS if f"idx_{s}" in arrays]
    if not stored:
        return x, y, None
    if len(stored) != len(SPLITS):
        absent = [f"idx_{s}" for s in SPLITS if s not in stored]
        raise ValueError(
            f"{label} stores {[f'idx_{s}' for s in stored]} but not {absent}; store all three "
            "split index arrays or none (then a seeded split is drawn)."
        )
    splits = {}
    for split in SPLITS:
        index = np.asarray(arrays[f"idx_{split}"])
        if index.ndim != 1 or (index.size and index.dtype.kind not in "iu"):
            raise ValueError(
                f"{label}: 'idx_{split}' must be a 1-D array of integer row indices (0-based), "
                f"got dtype {index.dtype} and shape {index.shape}."
            )
        rows = len(x)
        outside = index[(index < 0) | (index >= rows)] if index.size else index
        if outside.size:
            raise ValueError(
                f"{label}: 'idx_{split}' holds row index {int(outside[0])}, outside [0, {rows}) "
                f"(the file has {rows} rows); store 0-based row indices below {rows}."
            )
        if split != "train" and not index.size:
            raise ValueError(
                f"{label}: the stored {_SPLIT_NAMES[split]} split 'idx_{split}' is empty; store "
                f"at least one row index in 'idx_{split}' (the {_SPLIT_NAMES[split]} rows "
                f"{_SPLIT_USES[split]}), or store no idx_* arrays to draw a seeded split."
            )
        splits[split] = index.astype(np.int64)
    return x, y, splits


def check_standardisable(label: str, key: str, values: np.ndarray, columns=None) -> None:
    """Checks that z-scoring the training rows `values` of inputs (`key` `"x"`) or outputs
    (`"y"`) stays finite in float64: values beyond about 1e154 overflow the square in the
    standard deviation (1e308 overflows the mean).

    **Arguments:**

    - `label`: the file, for the message; `values`: `(rows, columns)` float64.
    - `columns`: the columns' names in the file (CSV: `"column 3 ('y1')"`), or `None` for a
      `.npz` file's array `key` (then: `"array 'x', column index 2"`).

    **Raises:** `ValueError` naming the file, the column and its largest magnitude, and
    saying to rescale the column.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        finite = np.isfinite(values.mean(axis=0)) & np.isfinite(values.std(axis=0))
    if np.all(finite):
        return
    j = int(np.flatnonzero(~finite)[0])
    magnitude = float(np.max(np.abs(values[:, j])))
    where = f"array {key!r}, column index {j}" if columns is None else columns[j]
    kind = "input" if key == "x" else "output"
    power = int(np.floor(np.log10(magnitude)))
    raise ValueError(
        f"{label}, {where} ({kind}): its training values reach {magnitude:.3g} in magnitude, "
        "too large to standardise (their mean or standard deviation overflows float64); "
        f"rescale the column, e.g. divide it by 1e{power}, and scale predictions back."
    )


def _check_fractions(fractions) -> tuple[float, float]:
    try:
        val, test = (float(f) for f in fractions)
    except (TypeError, ValueError):
        val = test = -1.0
    if not (0 <= val < 1 and 0 <= test < 1 and val + test < 1):
        raise ValueError(
            "`fractions` must be two numbers (validation, test), each in [0, 1) with a sum "
            f"below 1, got {fractions!r}."
        )
    return val, test


def load_file(
    path,
    *,
    seed: int = 0,
    fractions: tuple[float, float] = (0.2, 0.2),
    num_outputs: int | None = None,
    normalise: str = "zscore",
) -> Dataset:
    """A user's data set from `.npz` (arrays `x` and `y`, optional `idx_train`, `idx_val`,
    `idx_test`) or `.csv` (output columns named `y...` in a header, or the last `num_outputs`
    columns).

    **Arguments:**

    - `path`: the file.
    - `seed`, `fractions`: seeded split with (validation, test) fractions when the file stores
      none.
    - `num_outputs`: for CSV files without `y...` column names (a `.npz` file stores its
      outputs as `y`: then `num_outputs` must be unset or match).
    - `normalise`: `"zscore"` (inputs and outputs z-scored with training statistics) or
      `"none"`.

    **Returns:** a `Dataset` named after the file's stem.

    **Raises:** `FileNotFoundError` for a missing file; `ValueError`, in one line that names
    the file, for an unknown suffix, something other than a regular file, an unreadable file
    or archive, an array larger than the memory limit ($JAXODE_MEMORY_LIMIT), missing or empty
    arrays, mismatched sample counts, a ragged or non-numeric CSV (with the 1-based line and
    column), NaN/inf values (CSV: the line; `.npz`: the 0-based row index), too few samples,
    a CSV that does not tell inputs from outputs, stored split indices outside the rows or an
    empty stored validation or test split, or a column too large to standardise (named, with
    its magnitude).
    """
    label = f"{WHAT} {str(path)!r}"
    path = check_file(path, WHAT)
    if normalise not in ("zscore", "none"):
        raise ValueError(f"`normalise` must be 'zscore' or 'none', got {normalise!r}.")
    seed = check_seed(seed)
    fractions = _check_fractions(fractions)
    suffix = path.suffix.lower()
    if suffix == ".npz":
        x, y, splits = _npz_arrays(path, label, num_outputs)
        columns = None
    elif suffix == ".csv":
        table = read_csv(path, WHAT)
        inputs, outputs = csv_column_indices(table, num_outputs)
        x, y = table.values[:, inputs], table.values[:, outputs]
        table.check_finite()
        splits, columns = None, [[table.column(j) for j in c] for c in (inputs, outputs)]
    else:
        raise ValueError(f"data file must end in .npz or .csv, got {path.name!r}.")
    x, y = validate_arrays(x, y, name=label)
    if splits is None:
        splits = fraction_split(len(x), fractions, seed)
        if min(len(s) for s in splits.values()) < 1:
            raise ValueError(
                f"{label}: too few samples ({len(x)}) for a train/val/test split with "
                f"`fractions`={fractions}; add samples or store idx_train/idx_val/idx_test."
            )
    train = np.asarray(splits["train"], dtype=np.int64)

    def rule(x_train, y_train):
        if normalise == "none":
            return Affine.identity(x.shape[1]), Affine.identity(y.shape[1])
        for key, values in (("x", x_train), ("y", y_train)):
            where = None if columns is None else columns[key == "y"]
            check_standardisable(label, key, values, where)
        return zscore(x_train), zscore(y_train)

    return Dataset(path.stem, x, y, splits, *rule(x[train], y[train]), normaliser=rule)
