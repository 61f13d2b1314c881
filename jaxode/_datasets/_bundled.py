"""The bundled ELM and CDR data sets under two preprocessing protocols, and `load_dataset`,
which opens a bundled data set by name or a user's file by path."""

import pathlib

import numpy as np

from ._core import Affine, Dataset, minmax, random_split, split_order, zscore
from ._user import check_seed, load_file

DATA_DIR = pathlib.Path(__file__).resolve().parent.parent / "data"
BUNDLED = ("elm", "cdr")
PROTOCOLS = ("jaxode", "study")


def check_protocol(protocol) -> str:
    """**Raises:** `ValueError` naming the valid protocols when `protocol` is not one."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"`protocol` must be one of {PROTOCOLS}, got {protocol!r}.")
    return protocol


def load_elm(*, protocol: str = "jaxode") -> Dataset:
    """The E3SM Land Model surrogate data (15 inputs, 10 outputs) with the study's fixed
    1740/497/249 split. Inputs map to $[-1, 1]$ through `param_range`; outputs are min-max
    scaled with training statistics.

    **Arguments:**

    - `protocol`: `"jaxode"` or `"study"`; for ELM the two are the same (the study's own
      preprocessing).

    **Returns:** a `Dataset` named `"elm"`.

    **Raises:** `ValueError` for an unknown `protocol`.

    **References:** Rosso, Ruthotto, Sargsyan, arXiv 2507.22045 (data: MIT, see
    `jaxode/data/NOTICE`).
    """
    check_protocol(protocol)
    with np.load(DATA_DIR / "elm.npz") as f:
        x, y, prange = f["x"], f["y"], f["param_range"]
        splits = {"train": f["idx_train"], "val": f["idx_val"], "test": f["idx_test"]}
    x_norm = Affine(prange.mean(axis=1), (prange[:, 1] - prange[:, 0]) / 2.0)
    return Dataset("elm", x, y, splits, x_norm, minmax(y[splits["train"]]))


def load_cdr(seed: int = 0, *, protocol: str = "jaxode") -> Dataset:
    """The convection-diffusion-reaction data (55 inputs, 72 outputs) with a seeded
    400/200/200 train/val/test split and inputs z-scored with training statistics.

    **Arguments:**

    - `seed`: seeds the split (an integer in $[0, 2^{32})$).
    - `protocol`: `"jaxode"` draws the split with `numpy.random.default_rng(seed).permutation`
      and also z-scores the outputs with training statistics (they range over 11 to 67 with a
      common offset of about 22: z-scoring lets the network learn the variations; errors are
      reported in physical units, comparable to the study's). `"study"` reproduces the
      study's preprocessing: `numpy.random.RandomState(seed).permutation(800)` cut into
      400/200/200 in that order, and outputs not scaled (the model trains on raw physical
      outputs).

    **Returns:** a `Dataset` named `"cdr"`.

    **Raises:** `ValueError` for an unknown `protocol` or an invalid `seed`.

    **References:** Newman, Ruthotto, Hart, van Bloemen Waanders, arXiv 2007.13171; Rosso,
    Ruthotto, Sargsyan, arXiv 2507.22045 (data: MIT, see `jaxode/data/NOTICE`).
    """
    check_protocol(protocol)
    seed = check_seed(seed)
    with np.load(DATA_DIR / "cdr.npz") as f:
        x, y = f["x"], f["y"]
    sizes = (400, 200, 200)
    if protocol == "study":
        splits = split_order(np.random.RandomState(seed).permutation(len(x)), sizes)
        y_norm = Affine.identity(y.shape[1])
    else:
        splits = random_split(len(x), sizes, seed)
        y_norm = zscore(y[splits["train"]])
    return Dataset("cdr", x, y, splits, zscore(x[splits["train"]]), y_norm)


def _check_bundled_outputs(data: Dataset, num_outputs) -> Dataset:
    if num_outputs is not None and num_outputs != data.out_size:
        raise ValueError(
            f"`num_outputs`={num_outputs!r} but the bundled data set {data.name!r} has "
            f"{data.out_size} outputs; leave `num_outputs` unset (it is for CSV files)."
        )
    return data


def load_dataset(
    name_or_path,
    *,
    seed: int = 0,
    protocol: str = "jaxode",
    num_outputs: int | None = None,
) -> Dataset:
    """A bundled data set by name (`"elm"`, `"cdr"`) or a user file by path (see `load_file`).

    **Arguments:**

    - `name_or_path`: `"elm"`, `"cdr"` (any case), or the path of a `.npz`/`.csv` file.
    - `seed`: seeds random splits (CDR, user files without a stored split).
    - `protocol`: `"jaxode"` (default) or `"study"` (the study's preprocessing of the bundled
      data; see `load_elm`, `load_cdr`).
    - `num_outputs`: for CSV files without `y...` column names: the last `num_outputs` columns
      are the outputs. For other data it must be unset or equal the number of outputs.

    **Returns:** a `Dataset`.

    **Raises:** `ValueError` naming the valid names when `name_or_path` is neither a bundled
    name nor a file path, naming the valid protocols for an unknown `protocol`, for
    `protocol="study"` with a user file, and as `load_file`; `FileNotFoundError` for a missing
    file.
    """
    check_protocol(protocol)
    key = str(name_or_path).lower()
    if key == "elm":
        return _check_bundled_outputs(load_elm(protocol=protocol), num_outputs)
    if key == "cdr":
        return _check_bundled_outputs(load_cdr(seed, protocol=protocol), num_outputs)
    path = pathlib.Path(name_or_path)
    if path.suffix or path.exists() or len(path.parts) > 1:
        if protocol == "study":
            raise ValueError(
                f"`protocol='study'` reproduces the study's preprocessing of the bundled data "
                f"sets {BUNDLED} only; use protocol='jaxode' for the file {str(path)!r}."
            )
        return load_file(path, seed=seed, num_outputs=num_outputs)
    raise ValueError(
        f"unknown data set {str(name_or_path)!r}; use one of {BUNDLED} or a path to a "
        ".npz/.csv file."
    )
