"""Reading `.npz` and `.csv` files into float64 tables, with one-line errors that name the
file, the 1-based line (CSV) or 0-based row index (`.npz`), and say what to change.

The CSV parser is the standard `csv` module plus our own checks (never `np.loadtxt`, whose
messages do not say where or why)."""

import csv
import dataclasses
import io
import math
import pathlib
import zipfile

import numpy as np

from .._memory_limit import format_bytes, memory_limit, raise_the_limit
from ._core import check_finite_values

NUMERIC_KINDS = "biuf"


def is_number(cell: str) -> bool:
    """Whether a CSV cell parses as a float (`nan` and `inf` included)."""
    try:
        float(cell)
    except ValueError:
        return False
    return True


def check_file(path, what: str) -> pathlib.Path:
    """`path` as a `pathlib.Path`, after checking that it names an existing regular file.

    **Raises:** `FileNotFoundError` for a missing file; `ValueError` for a directory or
    anything else that is not a regular file (a FIFO, a socket, a device).
    """
    path = pathlib.Path(path)
    if path.is_dir():
        raise ValueError(f"{what} {str(path)!r} is a directory; pass the path of a file in it.")
    if not path.exists():
        raise FileNotFoundError(f"{what} {str(path)!r} does not exist; check the path.")
    if not path.is_file():
        raise ValueError(
            f"{what} {str(path)!r} is not a regular file (a pipe, socket or device); pass the "
            "path of a .npz or .csv file on disk."
        )
    return path


def read_bytes(path, what: str) -> tuple[pathlib.Path, bytes]:
    """The whole file, after `check_file`.

    **Raises:** as `check_file`; `ValueError` for a file that cannot be read.
    """
    path = check_file(path, what)
    try:
        return path, path.read_bytes()
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise ValueError(
            f"{what} {str(path)!r} cannot be read ({reason}); check its permissions."
        ) from None


def read_npz(path, what: str) -> dict:
    """The arrays of a `.npz` archive, loaded into memory (no pickled objects).

    **Raises:** as `read_bytes`; `ValueError` when the file is not a `.npz` archive, holds no
    arrays, or holds an array that cannot be read without pickle.
    """
    path, content = read_bytes(path, what)
    label = f"{what} {str(path)!r}"
    how = "write it with numpy.savez(path, x=..., y=...)"
    if content.startswith(b"\x93NUMPY"):
        raise ValueError(f"{label} holds a single .npy array, not a .npz archive; {how}.")
    if not content.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        raise ValueError(f"{label} is not a valid .npz archive (not a zip file); {how}.")
    check_npz_sizes(content, label)
    try:
        archive = np.load(io.BytesIO(content), allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
        raise ValueError(
            f"{label} is not a valid .npz archive ({_one_line(error)}); {how}."
        ) from None
    arrays = {}
    with archive:
        for key in archive.files:
            try:
                arrays[key] = archive[key]
            except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
                raise ValueError(
                    f"{label}: array {key!r} cannot be read ({_one_line(error)}); store plain "
                    "numeric arrays (no Python objects)."
                ) from None
    if not arrays:
        raise ValueError(
            f"{label} holds no arrays; store the inputs as 'x' (and outputs as 'y') with "
            "numpy.savez(path, x=..., y=...)."
        )
    return arrays


def _npy_header(archive: zipfile.ZipFile, name: str) -> tuple[tuple, np.dtype] | None:
    """`(shape, dtype)` from the header of the `.npy` member `name`, read without loading the
    array (a few hundred bytes decompressed), or `None` when it has no readable header (then
    `np.load` reports the archive's problem)."""
    try:
        with archive.open(name) as member:
            version = np.lib.format.read_magic(member)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(member)
            else:
                shape, _, dtype = np.lib.format.read_array_header_2_0(member)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, SyntaxError, TypeError):
        return None
    return tuple(int(n) for n in shape), np.dtype(dtype)


def check_npz_sizes(content: bytes, label: str) -> None:
    """Checks, before any array is loaded, that every array of the `.npz` archive
    `content` fits in the memory limit (`memory_limit`) once read as float64, from the shape
    and dtype in its `.npy` header: a small compressed file can hold an array of gigabytes.

    **Arguments:**

    - `content`: the archive's bytes; `label`: the file, for the message.

    **Raises:** `ValueError` naming the file, the array, its shape, dtype and size, the limit
    and how to raise it; or naming $JAXODE_MEMORY_LIMIT when its text is not a size.
    """
    limit, source = memory_limit()
    if limit is None:
        return
    try:
        archive = zipfile.ZipFile(io.BytesIO(content))
    except (zipfile.BadZipFile, OSError, ValueError):
        return  # np.load says what is wrong with the archive
    with archive:
        for name in archive.namelist():
            header = _npy_header(archive, name) if name.endswith(".npy") else None
            if header is None:
                continue
            shape, dtype = header
            size = math.prod(shape) * max(dtype.itemsize, 8)
            if size > limit:
                raise ValueError(
                    f"{label}: array {name[:-4]!r} of shape {shape} and dtype {dtype} takes "
                    f"{format_bytes(size)} once read as float64, more than the memory limit of "
                    f"{format_bytes(limit)} ({source}); store a smaller array, or "
                    f"{raise_the_limit(size)}."
                )


def numeric_array(label: str, key: str, value) -> np.ndarray:
    """`value` as float64, after checking that it is numeric and not a scalar."""
    value = np.asarray(value)
    if value.dtype.kind not in NUMERIC_KINDS:
        raise ValueError(
            f"{label}: array {key!r} has dtype {value.dtype}; store real numbers (float or int)."
        )
    if value.ndim == 0:
        raise ValueError(f"{label}: array {key!r} is a scalar; store one row per sample.")
    return value.astype(np.float64)


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text or type(error).__name__


@dataclasses.dataclass(frozen=True)
class CsvTable:
    """A parsed CSV file.

    **Fields:**

    - `path`, `label`: the file, and the `"data file 'name.csv'"` prefix of messages.
    - `names`: the header's column names, or `None` without a header.
    - `values`: `(num_rows, num_columns)` float64 (NaN/inf kept; see `check_finite`).
    - `lines`: the 1-based line number of every row (the header counted).
    """

    path: pathlib.Path
    label: str
    names: list | None
    values: np.ndarray
    lines: np.ndarray

    @property
    def num_columns(self) -> int:
        return self.values.shape[1]

    def column(self, j: int) -> str:
        """`"column 3"` or `"column 3 ('y1')"` (1-based)."""
        if self.names is None:
            return f"column {j + 1}"
        return f"column {j + 1} ({self.names[j]!r})"

    def check_finite(self) -> None:
        """**Raises:** `ValueError` naming the line and column of the first NaN/inf value."""
        bad = ~np.isfinite(self.values)
        if np.any(bad):
            i, j = (int(k) for k in np.argwhere(bad)[0])
            count = int(bad.sum())
            raise ValueError(
                f"{self.label}, line {self.lines[i]}, {self.column(j)}: value "
                f"{float(self.values[i, j])!r} is NaN/inf ({count} NaN/inf "
                f"value{'s' if count > 1 else ''} in the file); remove or impute them."
            )


def _cell_hint(cell: str, j: int, num_cells: int) -> str:
    if not cell and j == num_cells - 1 and num_cells > 1:
        return " (a trailing comma?)"
    if ";" in cell or "\t" in cell:
        return " (values must be separated by commas)"
    return ""


def _rows(content: bytes, label: str):
    """(line number, stripped cells) of every row that is not blank or a '#' comment, and the
    cells of a '#' first line (numpy.savetxt writes its header there), or None."""
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValueError(
            f"{label} is not a UTF-8 text file; save the table as comma-separated text."
        ) from None
    rows, hashed_header = [], None
    for number, line in enumerate(io.StringIO(text, newline=""), start=1):
        line = line.rstrip("\r\n")
        if not line.strip():
            continue
        comment = line.lstrip().startswith("#")
        if comment and number > 1:
            continue
        try:
            cells = next(csv.reader([line.lstrip()[1:] if comment else line]))
        except csv.Error as error:
            raise ValueError(
                f"{label}, line {number} is not valid CSV ({_one_line(error)}); fix the line."
            ) from None
        if comment:
            hashed_header = cells
        else:
            rows.append((number, [cell.strip() for cell in cells]))
    return rows, hashed_header


def read_csv(path, what: str) -> CsvTable:
    """A comma-separated table, with an optional header row (a first row of names, or a '#'
    first line with one name per column as `numpy.savetxt` writes it).

    **Raises:** as `read_bytes`; `ValueError` naming the file and the 1-based line (and
    column) for an empty file, a header without data rows, rows of different lengths, or a
    cell that is not a number.
    """
    path, content = read_bytes(path, what)
    label = f"{what} {str(path)!r}"
    rows, hashed_header = _rows(content, label)
    if not rows:
        raise ValueError(
            f"{label} is empty (no data rows); write one comma-separated row of numbers per sample."
        )
    names, header_line = None, None
    first_line, first = rows[0]
    numbers = [is_number(cell) for cell in first]
    if not any(numbers):
        names, header_line = first, first_line
        rows = rows[1:]
        if not rows:
            raise ValueError(
                f"{label} has a header (line {first_line}) but no data rows; add one row of "
                "numbers per sample."
            )
    elif not all(numbers):
        j = numbers.index(False)
        raise ValueError(
            f"{label}, line {first_line} mixes numbers and names (column {j + 1}: "
            f"{first[j]!r}); a header row must name every column and a data row must hold "
            "only numbers."
        )
    elif hashed_header is not None and len(hashed_header) == len(first):
        names, header_line = [cell.strip() for cell in hashed_header], 1
    width = len(names) if names is not None else len(rows[0][1])
    reference = (
        f"the header (line {header_line}) names {width}"
        if names is not None
        else f"line {rows[0][0]} (the first row) has {width}"
    )
    values = np.empty((len(rows), width), dtype=np.float64)
    for i, (number, cells) in enumerate(rows):
        if len(cells) != width:
            hint = " (a trailing comma?)" if len(cells) == width + 1 and not cells[-1] else ""
            raise ValueError(
                f"{label}, line {number}: {len(cells)} value{'s' if len(cells) > 1 else ''}"
                f"{hint}, but {reference}; every "
                f"row needs the same number of comma-separated values: fix or remove line "
                f"{number}."
            )
        for j, cell in enumerate(cells):
            try:
                values[i, j] = float(cell)
            except ValueError:
                where = f"column {j + 1}" if names is None else f"column {j + 1} ({names[j]!r})"
                problem = "is empty" if not cell else f"holds {cell!r}, which is not a number"
                raise ValueError(
                    f"{label}, line {number}, {where} {problem}"
                    f"{_cell_hint(cell, j, len(cells))}; write a number there or remove the row."
                ) from None
    lines = np.asarray([number for number, _ in rows], dtype=np.int64)
    return CsvTable(path, label, names, values, lines)


def _check_in_size(in_size) -> int:
    if isinstance(in_size, bool) or not isinstance(in_size, (int, np.integer)) or in_size < 1:
        raise ValueError(f"`in_size` must be an integer >= 1, got {in_size!r}.")
    return int(in_size)


def load_inputs(path, in_size: int) -> np.ndarray:
    """Inputs to predict at, from `.npz` (array `x`) or `.csv` (one row per sample, with or
    without a header row), in physical units.

    **Arguments:**

    - `path`: the file.
    - `in_size`: the number of inputs the model takes (columns expected).

    **Returns:** a float64 array of shape `(num_samples, in_size)`.

    **Raises:** `FileNotFoundError` for a missing file; `ValueError` for a wrong suffix, an
    unreadable file, a `.npz` without `x`, no samples, a wrong number of columns, rows of
    different lengths or non-numbers (CSV: with the 1-based line and column), or NaN/inf
    values (CSV: the line; `.npz`: the 0-based row index).
    """
    in_size = _check_in_size(in_size)
    what = "input file"
    path = check_file(path, what)
    label = f"{what} {str(path)!r}"
    suffix = path.suffix.lower()
    if suffix == ".npz":
        arrays = read_npz(path, what)
        if "x" not in arrays:
            raise ValueError(
                f"{label} has no array 'x' (it holds {sorted(arrays)}); store the inputs under 'x'."
            )
        x = numeric_array(label, "x", arrays["x"])
        if x.ndim == 1 and in_size == 1:
            x = x[:, None]
        if x.ndim != 2:
            raise ValueError(
                f"{label}: 'x' must be 2-D (samples, {in_size} inputs), got shape {x.shape}."
            )
        if x.shape[0] == 0:
            raise ValueError(f"{label}: 'x' has no rows (shape {x.shape}); store one per sample.")
        if x.shape[1] != in_size:
            raise ValueError(
                f"{label}: 'x' has {x.shape[1]} columns but the model takes {in_size} inputs; "
                f"store {in_size} columns, in the order used for training."
            )
        check_finite_values(f"{label}: 'x' contains", x)
        return x
    if suffix == ".csv":
        table = read_csv(path, what)
        if table.num_columns != in_size:
            hint = ""
            if table.names is not None and any(n.lower().startswith("y") for n in table.names):
                hint = " (columns named y... look like outputs: remove them)"
            raise ValueError(
                f"{label} has {table.num_columns} columns but the model takes {in_size} "
                f"inputs{hint}; write {in_size} values per row, in the order used for training."
            )
        table.check_finite()
        return table.values
    raise ValueError(
        f"{label} must end in .npz (array 'x') or .csv, got {path.name!r}; convert the file."
    )
