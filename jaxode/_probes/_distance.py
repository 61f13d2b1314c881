"""Error versus distance outside the training domain, against a ground-truth law."""

import dataclasses
from collections.abc import Callable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from ._common import (
    CONSTANT_EXP,
    EXP_GROWTH,
    LINEAR,
    POLY,
    UNRESOLVED,
    ProbeResult,
    as_float_array,
    check_count,
    verdict_name,
)


def shell_points(key, lower, upper, distance, num_points):
    """Points at max-norm distance `distance` from the box $[lower, upper]$: uniform in the
    inflated box, then one random coordinate pushed onto a face of it."""
    k1, k2, k3 = jax.random.split(key, 3)
    dim = lower.shape[0]
    low, high = lower - distance, upper + distance
    points = jax.random.uniform(k1, (num_points, dim), dtype=lower.dtype, minval=low, maxval=high)
    axis = jax.random.randint(k2, (num_points,), 0, dim)
    upper_face = jax.random.bernoulli(k3, 0.5, (num_points,))
    face = jnp.where(upper_face, high[axis], low[axis])
    return points.at[jnp.arange(num_points), axis].set(face)


@eqx.filter_jit
def _errors_core(model, truth, lower, upper, distances, num_points, key):
    def rms_error(points):
        difference = jax.vmap(lambda x: jnp.atleast_1d(model(x)) - jnp.atleast_1d(truth(x)))(points)
        return jnp.sqrt(jnp.mean(difference**2))

    inner_key, shell_key = jax.random.split(key)
    inside = jax.random.uniform(
        inner_key, (num_points, lower.shape[0]), dtype=lower.dtype, minval=lower, maxval=upper
    )
    keys = jax.random.split(shell_key, distances.shape[0])
    shells = jax.vmap(lambda k, d: shell_points(k, lower, upper, d, num_points))(keys, distances)
    return rms_error(inside), jax.vmap(rms_error)(shells)


def _growth_class(distances: np.ndarray, errors: np.ndarray) -> tuple[int, float, float]:
    """Verdict, power and exponential rate of the error over the outer half of the distances."""
    half = len(distances) // 2
    d, e = distances[half:], errors[half:]
    keep = np.isfinite(e) & (e > 0) & (d > 0)
    if keep.sum() < 3:
        return UNRESOLVED, np.nan, np.nan
    log_e = np.log(e[keep])
    power_fit = np.polyfit(np.log(d[keep]), log_e, 1, full=True)
    exp_fit = np.polyfit(d[keep], log_e, 1, full=True)
    power, rate = float(power_fit[0][0]), float(exp_fit[0][0])
    power_residual = power_fit[1][0] if len(power_fit[1]) else 0.0
    exp_residual = exp_fit[1][0] if len(exp_fit[1]) else 0.0
    if abs(power) < 0.05:
        return CONSTANT_EXP, 0.0, 0.0
    if exp_residual < power_residual and rate > 0:
        return EXP_GROWTH, power, rate
    if abs(power - 1.0) < 0.05:
        return LINEAR, 1.0, rate
    return POLY, power, rate


@dataclasses.dataclass(frozen=True)
class ErrorDistanceResult(ProbeResult):
    """RMS error on shells at increasing max-norm distance from the training box.

    **Fields:**

    - `distances`, `shell_error`: (num_distances,) RMS error over each shell.
    - `in_domain_error`: RMS error inside the box; `gap_ratio`: shell error over it.
    - `verdict_code`: growth class of the error with distance (`CONSTANT_EXP`: it levels off,
      `LINEAR`, `POLY(p)`, `EXP_GROWTH`), from the outer half of the distances.
    - `power`, `rate`: slopes of $\\log$ error against $\\log d$ and against $d$.
    """

    distances: np.ndarray
    shell_error: np.ndarray
    in_domain_error: float
    gap_ratio: np.ndarray
    verdict_code: int
    power: float
    rate: float

    @property
    def verdict(self) -> str:
        return verdict_name(self.verdict_code, self.power)

    def _table(self):
        header = ["distance", "RMS error", "gap ratio"]
        rows = [[d, e, g] for d, e, g in zip(self.distances, self.shell_error, self.gap_ratio)]
        return header, rows

    def __str__(self):
        return (
            super().__str__()
            + f"\nin-domain RMS error: {self.in_domain_error:.4g}; growth: {self.verdict}"
        )


def error_vs_distance(
    model: Callable[[Float[Array, " in_size"]], Float[Array, "..."]],
    truth: Callable[[Float[Array, " in_size"]], Float[Array, "..."]],
    lower: Float[ArrayLike, " in_size"] | Sequence[float],
    upper: Float[ArrayLike, " in_size"] | Sequence[float],
    distances: Float[ArrayLike, " num_distances"] | Sequence[float],
    *,
    num_points: int = 256,
    key: PRNGKeyArray,
) -> ErrorDistanceResult:
    """RMS error of `model` against the ground truth on shells at max-norm distance $d$ outside
    the training box $[lower, upper]$, the gap ratio to the in-domain error, and the growth
    class of the error with $d$.

    **Arguments:**

    - `model`, `truth`: functions of one input vector with outputs of the same shape.
    - `lower`, `upper`: corners of the training box.
    - `distances`: increasing positive distances (at least 4).
    - `num_points`: sample points per shell and inside the box.
    - `key`: a `jax.random` key for the sample points.

    **Returns:**

    An `ErrorDistanceResult`.

    **Raises:**

    `ValueError` for mismatched or empty boxes, or distances that are not positive and
    increasing.
    """
    lower = as_float_array("lower", lower, (1,))
    upper = as_float_array("upper", upper, (1,))
    if lower.shape != upper.shape or np.any(upper <= lower):
        raise ValueError(
            "`lower` and `upper` must have the same shape with lower < upper, got "
            f"{lower} and {upper}."
        )
    distances = as_float_array("distances", distances, (1,))
    if distances.size < 4 or distances[0] <= 0 or np.any(np.diff(distances) <= 0):
        raise ValueError("`distances` must be at least 4 positive, strictly increasing values.")
    num_points = check_count("num_points", num_points)
    dtype = jnp.zeros(()).dtype
    inside, shells = _errors_core(
        model,
        truth,
        jnp.asarray(lower, dtype),
        jnp.asarray(upper, dtype),
        jnp.asarray(distances, dtype),
        num_points,
        key,
    )
    inside, shells = float(inside), np.asarray(shells)
    verdict, power, rate = _growth_class(distances, shells)
    with np.errstate(divide="ignore", invalid="ignore"):
        gap = shells / inside
    return ErrorDistanceResult(
        distances=distances,
        shell_error=shells,
        in_domain_error=inside,
        gap_ratio=gap,
        verdict_code=int(verdict),
        power=power,
        rate=rate,
    )
