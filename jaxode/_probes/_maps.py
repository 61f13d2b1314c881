"""Limit map: the limit along every direction, how many distinct limits, and their range."""

import dataclasses
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import ArrayLike, Float

from ._common import CONSTANT_EXP, ProbeResult, as_float_array, check_positive, verdict_names
from ._rays import Model, ray_limit


def count_distinct(values: np.ndarray, atol: float) -> int:
    """Number of clusters of rows of `values` (num, dim) at max-norm distance <= `atol`.

    Rows are merged greedily: a row joins the first cluster whose representative is within
    `atol`. Non-finite rows are ignored.
    """
    values = np.asarray(values, dtype=float)
    if len(values) == 0:
        return 0
    values = values.reshape(len(values), -1)
    values = values[np.all(np.isfinite(values), axis=1)]
    representatives: list[np.ndarray] = []
    for row in values:
        if not any(np.max(np.abs(row - rep)) <= atol for rep in representatives):
            representatives.append(row)
    return len(representatives)


@dataclasses.dataclass(frozen=True)
class LimitMapResult(ProbeResult):
    """Limits over many directions from one base point.

    **Fields:**

    - `directions`: the unit directions, (num_directions, in_size).
    - `limit`, `rate`, `verdict_code`: per direction and output, (num_directions, out_size).
    - `num_distinct`: distinct limit vectors (all outputs together) over the converging directions.
    - `num_distinct_per_output`: distinct limits of each output, (out_size,).
    - `fraction_converging`: fraction of directions whose every output is `CONSTANT_EXP`.
    - `asymptotic_range`: (out_size, 2) min and max limit over directions.
    - `target_range`: (out_size, 2) min and max of the training targets (`nan` if not given).
    - `range_ratio`: width of the asymptotic range over the width of the target range.
    - `fraction_outside_targets`: fraction of (direction, output) limits outside the target range.
    - `precision`, `notes`.
    """

    directions: np.ndarray
    limit: np.ndarray
    rate: np.ndarray
    verdict_code: np.ndarray
    num_distinct: int
    num_distinct_per_output: np.ndarray
    fraction_converging: float
    asymptotic_range: np.ndarray
    target_range: np.ndarray
    range_ratio: np.ndarray
    fraction_outside_targets: float
    precision: str
    notes: tuple[str, ...] = ()

    @property
    def verdicts(self) -> np.ndarray:
        return verdict_names(self.verdict_code, np.nan)

    def _table(self):
        header = ["output", "distinct", "asym min", "asym max", "target min", "target max", "ratio"]
        rows = [
            [
                o,
                self.num_distinct_per_output[o],
                *self.asymptotic_range[o],
                *self.target_range[o],
                self.range_ratio[o],
            ]
            for o in range(self.limit.shape[1])
        ]
        return header, rows

    def __str__(self):
        return (
            super().__str__()
            + f"\ndistinct limit vectors: {self.num_distinct}; converging directions: "
            f"{self.fraction_converging:.1%}; limits outside the target range: "
            f"{self.fraction_outside_targets:.1%}"
        )


def limit_map(
    model: Model,
    directions: Float[ArrayLike, "num_directions in_size"] | Sequence[Sequence[float]],
    radii: Float[ArrayLike, " num_radii"] | Sequence[float],
    *,
    base_point: Float[ArrayLike, " in_size"] | Sequence[float] | None = None,
    targets_train: Float[ArrayLike, "num_samples out_size"]
    | Float[ArrayLike, " num_samples"]
    | Sequence[float]
    | None = None,
    distinct_atol: float = 1e-6,
    chunk_size: int | None = None,
) -> LimitMapResult:
    """Limits of `model` along many directions from `base_point`, the number of distinct limits
    and the asymptotic output range compared with the training targets' range.

    For a saturating network $d \\mapsto g_\\infty(d)$ is piecewise constant on the sphere, so a
    small number of distinct limits and an asymptotic range inside the target range mean the
    model forgets its input far from the data.

    **Arguments:**

    - `model`: a function of one input vector.
    - `directions`: directions, one per row (normalised to unit length).
    - `radii`: increasing radii, as for `ray_limit`.
    - `base_point`: origin of the rays; default the zero vector (pass the training inputs' mean).
    - `targets_train`: training targets, (num_samples, out_size) or (num_samples,), for the
      range comparison.
    - `distinct_atol`: limits closer than this (max-norm) count as one.
    - `chunk_size`: directions evaluated together.

    **Returns:**

    A `LimitMapResult`.

    **Raises:**

    `ValueError` for bad shapes or values (see `ray_limit`), or targets with the wrong number of
    columns.
    """
    directions = as_float_array("directions", directions, (2,))
    if base_point is None:
        base_point = np.zeros(directions.shape[1])
    base_point = as_float_array("base_point", base_point, (1,))
    distinct_atol = check_positive("distinct_atol", distinct_atol)
    # Check the targets before the (expensive) rays.
    probe = jax.eval_shape(model, jax.ShapeDtypeStruct((directions.shape[1],), jnp.zeros(()).dtype))
    out_size = int(np.prod(probe.shape)) if probe.shape else 1
    if targets_train is None:
        target_range = np.full((out_size, 2), np.nan)
    else:
        targets = as_float_array("targets_train", targets_train, (1, 2))
        targets = targets.reshape(len(targets), -1)
        if targets.shape[1] != out_size:
            raise ValueError(
                f"`targets_train` must have {out_size} columns (the model's outputs), got shape "
                f"{targets.shape}."
            )
        target_range = np.stack([targets.min(axis=0), targets.max(axis=0)], axis=1)
    rays = ray_limit(model, base_point, directions, radii, chunk_size=chunk_size)
    limit = rays.limit[0]
    converging = rays.verdict_code[0] == CONSTANT_EXP
    finite = np.where(converging, limit, np.nan)
    with np.errstate(all="ignore"):
        asymptotic_range = np.stack([np.nanmin(finite, axis=0), np.nanmax(finite, axis=0)], axis=1)
    all_converging = np.all(converging, axis=1)
    per_output = np.array(
        [count_distinct(finite[:, o : o + 1], distinct_atol) for o in range(out_size)]
    )
    width_targets = target_range[:, 1] - target_range[:, 0]
    width_limits = asymptotic_range[:, 1] - asymptotic_range[:, 0]
    with np.errstate(all="ignore"):
        ratio = width_limits / width_targets
        outside = (limit < target_range[:, 0]) | (limit > target_range[:, 1])
    fraction_outside = float(np.mean(outside)) if targets_train is not None else float("nan")
    return LimitMapResult(
        directions=rays_directions(directions),
        limit=limit,
        rate=rays.rate[0],
        verdict_code=rays.verdict_code[0],
        num_distinct=count_distinct(limit[all_converging], distinct_atol),
        num_distinct_per_output=per_output,
        fraction_converging=float(np.mean(all_converging)),
        asymptotic_range=asymptotic_range,
        target_range=target_range,
        range_ratio=ratio,
        fraction_outside_targets=fraction_outside,
        precision=rays.precision,
        notes=rays.notes,
    )


def rays_directions(directions: np.ndarray) -> np.ndarray:
    """Unit directions, as `ray_limit` uses them."""
    return directions / np.linalg.norm(directions, axis=1, keepdims=True)
