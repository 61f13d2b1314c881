"""The bundled ELM and CDR data sets, and a loader for a user's own .npz or .csv file."""

import pathlib

import numpy as np

from ._core import Affine, Dataset, fraction_split, minmax, random_split, validate_arrays, zscore

DATA_DIR = pathlib.Path(__file__).resolve().parent.parent / "data"
BUNDLED = ("elm", "cdr")


def load_elm() -> Dataset:
    """The E3SM Land Model surrogate data (15 inputs, 10 outputs) with the study's fixed
    1740/497/249 split. Inputs map to $[-1, 1]$ through `param_range`; outputs are min-max
    scaled with training statistics.

    **References:** Rosso, Ruthotto, Sargsyan, arXiv 2507.22045 (data: MIT, see
    `jaxode/data/NOTICE`).
    """
    with np.load(DATA_DIR / "elm.npz") as f:
        x, y, prange = f["x"], f["y"], f["param_range"]
        splits = {"train": f["idx_train"], "val": f["idx_val"], "test": f["idx_test"]}
    x_norm = Affine(prange.mean(axis=1), (prange[:, 1] - prange[:, 0]) / 2.0)
    return Dataset("elm", x, y, splits, x_norm, minmax(y[splits["train"]]))


def load_cdr(seed: int = 0) -> Dataset:
    """The convection-diffusion-reaction data (55 inputs, 72 outputs) with a seeded
    400/200/200 split (`numpy.random.default_rng(seed).permutation`); inputs and outputs
    z-scored with training statistics (outputs range over 11 to 67 with a common offset of about
    22: z-scoring them lets the network learn the variations; report errors in physical units,
    which are comparable to the study's).

    **References:** Newman, Ruthotto, Hart, van Bloemen Waanders, arXiv 2007.13171; Rosso,
    Ruthotto, Sargsyan, arXiv 2507.22045 (data: MIT, see `jaxode/data/NOTICE`).
    """
    with np.load(DATA_DIR / "cdr.npz") as f:
        x, y = f["x"], f["y"]
    splits = random_split(len(x), (400, 200, 200), seed)
    train = splits["train"]
    return Dataset("cdr", x, y, splits, zscore(x[train]), zscore(y[train]))


def _read_csv(path: pathlib.Path, num_outputs: int | None):
    with open(path) as f:
        header = f.readline().strip().split(",")
    named = any(not _is_number(cell) for cell in header)
    table = np.loadtxt(path, delimiter=",", skiprows=1 if named else 0, ndmin=2)
    if named and num_outputs is None:
        outputs = [i for i, h in enumerate(header) if h.strip().lower().startswith("y")]
        if not outputs:
            raise ValueError(
                f"{path}: cannot tell inputs from outputs; name output columns y..., "
                "or pass `num_outputs` (the last columns are the outputs)."
            )
        inputs = [i for i in range(len(header)) if i not in outputs]
        return table[:, inputs], table[:, outputs]
    if num_outputs is None:
        raise ValueError(
            f"{path}: a CSV without a header needs `num_outputs` (the last columns are outputs)."
        )
    if not 1 <= num_outputs < table.shape[1]:
        raise ValueError(f"`num_outputs` must be in [1, {table.shape[1] - 1}], got {num_outputs}.")
    return table[:, :-num_outputs], table[:, -num_outputs:]


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


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
    - `num_outputs`: for CSV files without `y...` column names.
    - `normalise`: `"zscore"` (inputs and outputs z-scored with training statistics) or
      `"none"`.

    **Raises:** `FileNotFoundError` for a missing file; `ValueError` for an unknown suffix,
    missing arrays, mismatched sample counts, NaN/inf values or too few samples.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"data file {str(path)!r} does not exist; check the path.")
    if normalise not in ("zscore", "none"):
        raise ValueError(f"`normalise` must be 'zscore' or 'none', got {normalise!r}.")
    splits = None
    if path.suffix == ".npz":
        with np.load(path) as f:
            missing = [k for k in ("x", "y") if k not in f]
            if missing:
                raise ValueError(
                    f"{path}: missing array(s) {missing}; store inputs as 'x' and outputs as 'y'."
                )
            x, y = f["x"], f["y"]
            if all(f"idx_{s}" in f for s in ("train", "val", "test")):
                splits = {s: f[f"idx_{s}"] for s in ("train", "val", "test")}
    elif path.suffix == ".csv":
        x, y = _read_csv(path, num_outputs)
    else:
        raise ValueError(f"data file must end in .npz or .csv, got {path.name!r}.")
    x, y = validate_arrays(x, y, name=str(path))
    if splits is None:
        splits = fraction_split(len(x), fractions, seed)
        if min(len(s) for s in splits.values()) < 1:
            raise ValueError(f"{path}: too few samples ({len(x)}) for a train/val/test split.")
    train = np.asarray(splits["train"], dtype=np.int64)
    if normalise == "zscore":
        x_norm, y_norm = zscore(x[train]), zscore(y[train])
    else:
        x_norm, y_norm = Affine.identity(x.shape[1]), Affine.identity(y.shape[1])
    return Dataset(path.stem, x, y, splits, x_norm, y_norm)


def load_dataset(name_or_path: str, *, seed: int = 0) -> Dataset:
    """A bundled data set by name (`"elm"`, `"cdr"`) or a user file by path (see `load_file`).

    **Raises:** `ValueError` naming the valid names when `name_or_path` is neither.
    """
    key = str(name_or_path).lower()
    if key == "elm":
        return load_elm()
    if key == "cdr":
        return load_cdr(seed)
    if key.endswith((".npz", ".csv")):
        return load_file(name_or_path, seed=seed)
    raise ValueError(
        f"unknown data set {name_or_path!r}; use one of {BUNDLED} or a path to a .npz/.csv file."
    )
