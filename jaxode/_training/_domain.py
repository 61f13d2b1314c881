"""The training domain of a run: the box its training inputs span, stored in the run so that
predictions far outside it (extrapolation) can be told apart from those inside."""

import dataclasses

import numpy as np
from jaxtyping import Bool, Float

from .._datasets import Dataset, TrajectoryData


@dataclasses.dataclass(frozen=True)
class TrainingDomain:
    """The box the training inputs span: per input column, the smallest and largest value of
    the training split, in physical units.

    **Fields:**

    - `low`, `high`: one value per input column (float64 NumPy arrays, `low <= high`).

    Use `check(xs)` to see which rows of `xs` lie outside and by how much.
    """

    low: np.ndarray
    high: np.ndarray

    def __post_init__(self):
        low = np.asarray(self.low, dtype=np.float64)
        high = np.asarray(self.high, dtype=np.float64)
        if low.shape != high.shape or low.ndim != 1 or low.size == 0:
            raise ValueError(
                f"`low` and `high` must be 1-D of one non-zero length, got {low.shape}, "
                f"{high.shape}."
            )
        if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high)) and np.all(low <= high)):
            raise ValueError("`low` and `high` must be finite with `low <= high` in every column.")
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)

    @classmethod
    def of(cls, data: Dataset | TrajectoryData) -> "TrainingDomain | None":
        """The domain of `data`'s training split; `None` for a time series (a trajectory has
        no box of inputs: it is predicted from its own states)."""
        if isinstance(data, TrajectoryData):
            return None
        x, _ = data.arrays("train", normalised=False)
        return cls(x.min(axis=0), x.max(axis=0))

    @property
    def size(self) -> int:
        """The number of input columns."""
        return self.low.shape[0]

    def to_dict(self) -> dict:
        return {"min": self.low.tolist(), "max": self.high.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> "TrainingDomain":
        return cls(np.asarray(d["min"]), np.asarray(d["max"]))

    def check(self, xs: Float[np.ndarray, "batch in_size"]) -> "DomainCheck":
        """Where the rows of `xs` (physical inputs, `(batch, in_size)`) lie relative to the
        domain: see `DomainCheck`.

        **Raises:** `ValueError` if `xs` is not 2-D with `size` columns."""
        xs = np.asarray(xs, dtype=np.float64)
        if xs.ndim != 2 or xs.shape[1] != self.size:
            raise ValueError(f"inputs must have shape (batch, {self.size}), got {xs.shape}.")
        width = self.high - self.low
        beyond = np.maximum(xs - self.high, 0.0) + np.maximum(self.low - xs, 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            distance = np.where(beyond > 0, beyond / width, 0.0)
        return DomainCheck(distance)


@dataclasses.dataclass(frozen=True)
class DomainCheck:
    """Where inputs lie relative to a run's `TrainingDomain` (`TrainedSurrogate.outside_domain`).

    **Fields:**

    - `distance`: `(batch, in_size)` float64: how far each value lies outside its column's
      training range, in units of that range: $(x - \\max)/(\\max - \\min)$ above it,
      $(\\min - x)/(\\max - \\min)$ below it, 0 inside. A column that was constant in training
      (`max == min`) gives `inf` for any other value.

    **Properties:** `outside` (per row: whether any column lies outside), `count` (rows
    outside), `columns` (indices of the columns some row leaves), `largest` (per column: the
    largest distance over the rows).
    """

    distance: np.ndarray

    @property
    def outside(self) -> Bool[np.ndarray, " batch"]:
        return np.any(self.distance > 0, axis=1)

    @property
    def count(self) -> int:
        return int(np.sum(self.outside))

    @property
    def columns(self) -> list[int]:
        return [int(j) for j in np.flatnonzero(np.any(self.distance > 0, axis=0))]

    @property
    def largest(self) -> Float[np.ndarray, " in_size"]:
        return self.distance.max(axis=0, initial=0.0)

    def describe(self, names: list[str] | None = None, limit: int = 8) -> str:
        """One line: how many rows lie outside, and the columns they leave, furthest first,
        each with its largest distance (at most `limit` columns, then how many more).

        **Arguments:**

        - `names`: the columns' names (e.g. a CSV header), shown beside their 0-based index.
        - `limit`: the most columns listed.

        **Returns:** e.g. `"2 of 5 rows lie outside the training domain; largest distance
        per column, in training ranges: column 0 ('a') 0.5, column 3 0.02"`, or
        `"all 5 rows lie inside the training domain"`.
        """
        rows = len(self.distance)
        if self.count == 0:
            return f"{'all ' if rows > 1 else ''}{rows} row{'s' if rows > 1 else ''} " + (
                f"{'lie' if rows > 1 else 'lies'} inside the training domain"
            )
        largest = self.largest
        columns = sorted(self.columns, key=lambda j: (-largest[j], j))
        shown = [
            f"column {j}" + (f" ({names[j]!r})" if names is not None else "") + f" {largest[j]:.3g}"
            for j in columns[:limit]
        ]
        more = len(columns) - limit
        return (
            f"{self.count} of {rows} row{'s' if rows > 1 else ''} "
            f"{'lies' if self.count == 1 else 'lie'} outside the training domain; largest "
            f"distance per column, in training ranges: {', '.join(shown)}"
            + (f" and {more} more column{'s' if more > 1 else ''}" if more > 0 else "")
        )
