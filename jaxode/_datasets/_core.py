"""Data sets as arrays with a split and the affine normalisation that maps them to the model."""

import dataclasses
from collections.abc import Callable

import numpy as np
from jaxtyping import Float

SPLITS = ("train", "val", "test")
PROTOCOLS = ("jaxode", "study")


def check_protocol(protocol) -> str:
    """**Raises:** `ValueError` naming the valid protocols when `protocol` is not one."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"`protocol` must be one of {PROTOCOLS}, got {protocol!r}.")
    return protocol


@dataclasses.dataclass(frozen=True)
class Affine:
    """The per-column map $u \\mapsto (u - \\text{shift}) / \\text{scale}$ and its inverse.

    **Fields:**

    - `shift`, `scale`: one value per column (float64 NumPy arrays, `scale > 0`).
    """

    shift: np.ndarray
    scale: np.ndarray

    def __post_init__(self):
        shift = np.asarray(self.shift, dtype=np.float64)
        scale = np.asarray(self.scale, dtype=np.float64)
        if shift.shape != scale.shape or shift.ndim != 1:
            raise ValueError(
                f"`shift` and `scale` must be 1-D of one length, got {shift.shape}, {scale.shape}."
            )
        if not (np.all(np.isfinite(scale)) and np.all(scale > 0)):
            raise ValueError("`scale` must be finite and > 0 in every column.")
        object.__setattr__(self, "shift", shift)
        object.__setattr__(self, "scale", scale)

    @classmethod
    def identity(cls, size: int) -> "Affine":
        return cls(np.zeros(size), np.ones(size))

    def apply(self, u: Float[np.ndarray, "n d"]) -> Float[np.ndarray, "n d"]:
        """Physical -> normalised."""
        return (np.asarray(u, dtype=np.float64) - self.shift) / self.scale

    def invert(self, v: Float[np.ndarray, "n d"]) -> Float[np.ndarray, "n d"]:
        """Normalised -> physical."""
        return np.asarray(v, dtype=np.float64) * self.scale + self.shift

    def to_dict(self) -> dict:
        return {"shift": self.shift.tolist(), "scale": self.scale.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> "Affine":
        return cls(np.asarray(d["shift"]), np.asarray(d["scale"]))


def safe_scale(values: np.ndarray) -> np.ndarray:
    """A scale vector with constant columns (zero spread) mapped to 1."""
    return np.where(values > 0, values, 1.0)


def zscore(x_train: np.ndarray) -> Affine:
    """Z-scoring with the training mean and standard deviation."""
    return Affine(x_train.mean(axis=0), safe_scale(x_train.std(axis=0)))


def minmax(y_train: np.ndarray) -> Affine:
    """Min-max scaling to $[0, 1]$ with training statistics."""
    low = y_train.min(axis=0)
    return Affine(low, safe_scale((y_train - low).max(axis=0)))


@dataclasses.dataclass(frozen=True)
class Dataset:
    """Inputs and outputs of a surrogate problem in physical units, with a split.

    **Fields:**

    - `name`: a label.
    - `x`: inputs, shape `(num_samples, in_size)`; `y`: outputs, `(num_samples, out_size)`.
    - `splits`: row indices of `"train"`, `"val"` and `"test"` (disjoint).
    - `x_norm`, `y_norm`: the `Affine` normalisations the model is trained in.
    - `normaliser`: how the data set derives `(x_norm, y_norm)` from training inputs and
      outputs (its loader's rule; `refolded` applies it to the new training rows). `None`:
      the normalisations are fixed, and `refolded` refuses.

    Use `arrays(split, normalised=True)` for training arrays; `y_norm.invert` to return to
    physical units.
    """

    name: str
    x: np.ndarray
    y: np.ndarray
    splits: dict
    x_norm: Affine
    y_norm: Affine
    normaliser: Callable | None = dataclasses.field(default=None, compare=False, repr=False)

    def __post_init__(self):
        x, y = validate_arrays(self.x, self.y, name=self.name)
        object.__setattr__(self, "x", x)
        object.__setattr__(self, "y", y)
        splits = {}
        seen = np.zeros(len(x), dtype=bool)
        for split in SPLITS:
            if split not in self.splits:
                raise ValueError(f"`splits` must contain {SPLITS}, missing {split!r}.")
            index = np.asarray(self.splits[split], dtype=np.int64)
            if index.ndim != 1 or (index.size and (index.min() < 0 or index.max() >= len(x))):
                raise ValueError(
                    f"split {split!r} must hold row indices in [0, {len(x)}), got out-of-range "
                    "values."
                )
            if np.any(seen[index]) or len(np.unique(index)) != len(index):
                raise ValueError(f"split {split!r} overlaps another split or repeats rows.")
            seen[index] = True
            splits[split] = index
        if len(splits["train"]) < 2:
            raise ValueError(f"data set {self.name!r} needs at least 2 training samples.")
        object.__setattr__(self, "splits", splits)

    @property
    def in_size(self) -> int:
        return self.x.shape[1]

    @property
    def out_size(self) -> int:
        return self.y.shape[1]

    def arrays(self, split: str, normalised: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """`(x, y)` of one split, normalised (default) or in physical units."""
        if split not in SPLITS:
            raise ValueError(f"`split` must be one of {SPLITS}, got {split!r}.")
        index = self.splits[split]
        x, y = self.x[index], self.y[index]
        if normalised:
            return self.x_norm.apply(x), self.y_norm.apply(y)
        return x, y

    def sizes(self) -> dict:
        return {split: len(self.splits[split]) for split in SPLITS}

    def refolded(self, folds: int, fold: int, seed: int = 0) -> "Dataset":
        """This data set with its training and validation rows pooled, permuted by
        `numpy.random.default_rng(seed)` and cut into `folds` near-equal folds: fold `fold`
        validates, the others train (k-fold cross-validation; the test rows stay). The
        normalisations are derived again from the new training rows.

        **Raises:** `ValueError` naming `folds` or `fold` for values out of range, or for a
        data set without a `normaliser`."""
        if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
            raise ValueError(f"`folds` must be an integer >= 2, got {folds!r}.")
        if isinstance(fold, bool) or not isinstance(fold, int) or not 0 <= fold < folds:
            raise ValueError(f"`fold` must be an integer in [0, {folds}), got {fold!r}.")
        if self.normaliser is None:
            raise ValueError(
                f"data set {self.name!r} has no rule for its normalisation, so it cannot be "
                "refolded; build it with a `normaliser`."
            )
        pool = np.sort(np.concatenate([self.splits["train"], self.splits["val"]]))
        if len(pool) < 2 * folds:
            raise ValueError(
                f"`folds`={folds} leaves fewer than 2 rows per fold of the {len(pool)} "
                "training and validation rows; use fewer folds."
            )
        parts = np.array_split(np.random.default_rng(seed).permutation(pool), folds)
        val = np.sort(parts[fold])
        train = np.sort(np.concatenate([p for k, p in enumerate(parts) if k != fold]))
        x_norm, y_norm = self.normaliser(self.x[train], self.y[train])
        splits = {"train": train, "val": val, "test": self.splits["test"]}
        return dataclasses.replace(self, splits=splits, x_norm=x_norm, y_norm=y_norm)


def validate_arrays(x, y, *, name: str = "data", min_samples: int = 4):
    """Float64 copies of `x`, `y` after checking types, shapes and values.

    Positions in messages are 0-based row indices of the arrays ("row index 3"); readers of
    CSV files check values first and report 1-based line numbers instead.

    **Raises:** `ValueError` for non-numeric arrays, arrays that are not 1-D or 2-D, different
    sample counts, fewer than `min_samples` samples, or NaN/inf values.
    """
    x, y = np.asarray(x), np.asarray(y)
    for label, values in (("inputs", x), ("outputs", y)):
        if values.dtype.kind not in "biuf":
            raise ValueError(
                f"{name}: {label} have dtype {values.dtype}; they must be real numbers."
            )
    x = x.astype(np.float64)
    y = y.astype(np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if y.ndim == 1:
        y = y[:, None]
    if x.ndim != 2 or y.ndim != 2:
        raise ValueError(
            f"{name}: inputs and outputs must be 2-D (samples, features), got {x.shape} and "
            f"{y.shape}."
        )
    if x.shape[0] != y.shape[0]:
        raise ValueError(
            f"{name}: inputs have {x.shape[0]} samples but outputs have {y.shape[0]}; "
            "they must have one row per sample."
        )
    if x.shape[0] == 0:
        raise ValueError(f"{name}: holds no samples (zero rows); store one row per sample.")
    if x.shape[0] < min_samples:
        raise ValueError(
            f"{name}: too few samples ({x.shape[0]}); at least {min_samples} are needed."
        )
    for label, values in (("inputs", x), ("outputs", y)):
        check_finite_values(f"{name}: {label} contain", values)
    return x, y


def check_finite_values(what: str, values: np.ndarray) -> None:
    """Raises a `ValueError` starting with `what` that counts the NaN/inf values of a 2-D
    array and names the first by its 0-based row and column index."""
    bad = ~np.isfinite(values)
    if np.any(bad):
        row, column = (int(k) for k in np.argwhere(bad)[0])
        raise ValueError(
            f"{what} {int(bad.sum())} NaN/inf values (first in row index {row}, column index "
            f"{column}); remove or impute them."
        )


def split_order(order: np.ndarray, sizes: tuple[int, int, int]) -> dict:
    """Cuts a permutation into consecutive train, val and test blocks of the given sizes."""
    a, b, c = sizes
    if a + b + c > len(order):
        raise ValueError(f"split sizes {sizes} exceed the {len(order)} samples.")
    return {"train": order[:a], "val": order[a : a + b], "test": order[a + b : a + b + c]}


def random_split(num_samples: int, sizes: tuple[int, int, int], seed: int) -> dict:
    """A seeded permutation (`numpy.random.default_rng(seed)`) cut into train/val/test of the
    given sizes."""
    if sum(sizes) > num_samples:
        raise ValueError(f"split sizes {sizes} exceed the {num_samples} samples.")
    return split_order(np.random.default_rng(seed).permutation(num_samples), sizes)


def fraction_split(num_samples: int, fractions: tuple[float, float], seed: int) -> dict:
    """A seeded split with `fractions` = (val, test) of the samples, the rest for training."""
    val = round(fractions[0] * num_samples)
    test = round(fractions[1] * num_samples)
    return random_split(num_samples, (num_samples - val - test, val, test), seed)
