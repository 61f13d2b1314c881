"""Asymptotic slope of piecewise-linear (ReLU-type) models and the tail oscillation count."""

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._common import (
    RESOLUTION_FACTOR,
    ProbeResult,
    check_base_points,
    check_directions,
    check_radii,
    sign_changes,
)
from ._rays import BasePoints, Directions, Model, Radii, forward_mode, model_dtype, ray_derivatives


def _slope_of_ray(radii, g, g1):
    """Slope, last-kink radius and linearity residual of one output along one ray."""
    eps = jnp.finfo(g.dtype).eps
    num = radii.shape[0]
    scale = jnp.max(jnp.abs(g1))
    jump = jnp.abs(jnp.diff(g1)) > RESOLUTION_FACTOR * eps * jnp.maximum(scale, 1.0)
    index = jnp.arange(1, num)
    last = jnp.max(jnp.where(jump, index, 0))  # the kink lies in (r[last-1], r[last]]
    before, after = jnp.maximum(last - 1, 0), last
    # Two straight pieces meet at the kink: intersect them (exact when one kink lies between).
    denominator = g1[before] - g1[after]
    crossing = (
        g[after] - g[before] - g1[after] * radii[after] + g1[before] * radii[before]
    ) / jnp.where(denominator != 0, denominator, 1.0)
    crossing = jnp.clip(crossing, radii[before], radii[after])
    kink = jnp.where(last > 0, crossing, radii[0])
    slope = g1[-1]
    line = g[-1] + slope * (radii - radii[-1])
    window = jnp.arange(num) >= last
    residual = jnp.max(jnp.where(window, jnp.abs(g - line), 0.0)) / jnp.maximum(
        jnp.max(jnp.where(window, jnp.abs(g), 0.0)), 1.0
    )
    return slope, kink, residual


@eqx.filter_jit
def _slope_core(model, base_points, directions, radii):
    per_output = jax.vmap(_slope_of_ray, in_axes=(None, 1, 1))

    def one_ray(x0, direction):
        g, g1 = ray_derivatives(model, x0, direction, radii)
        return per_output(radii, g, g1)

    return jax.vmap(jax.vmap(one_ray, in_axes=(None, 0)), in_axes=(0, None))(
        base_points, directions
    )


@dataclasses.dataclass(frozen=True)
class SlopeResult(ProbeResult):
    """Asymptotic slopes; arrays of shape (num_base, num_directions, out_size).

    **Fields:**

    - `slope`: $g'(r)$ at the last radius (the asymptotic slope once past the last kink).
    - `last_kink`: radius of the last change of $g'$ on the grid, located by intersecting the
      straight pieces on both sides; the first radius when no kink is seen.
    - `linearity_residual`: max deviation of $g$ from the final straight line beyond the last
      kink, relative to $\\max(1, \\max|g|)$ there.
    """

    slope: np.ndarray
    last_kink: np.ndarray
    linearity_residual: np.ndarray
    precision: str

    def _table(self):
        header = ["base", "direction", "output", "slope", "last kink", "residual"]
        rows = [
            [
                b,
                d,
                o,
                self.slope[b, d, o],
                self.last_kink[b, d, o],
                self.linearity_residual[b, d, o],
            ]
            for b, d, o in list(np.ndindex(self.slope.shape))[:40]
        ]
        return header, rows


def asymptotic_slope(
    model: Model,
    base_points: BasePoints,
    directions: Directions,
    radii: Radii,
) -> SlopeResult:
    """Asymptotic slope, last-kink radius and linearity residual of a ReLU-type model along rays.

    A network with ReLU (or leaky ReLU) activations is piecewise linear: along a ray it is
    linear past its last kink, with slope $\\sum_{\\alpha_i > 0} a_i \\alpha_i$ for one hidden
    layer (kinks at $r_i = -\\beta_i/\\alpha_i$). Directions are normalised to unit length.

    **Arguments:**

    - `model`: a function of one input vector.
    - `base_points`, `directions`, `radii`: as for `ray_limit`.

    **Returns:**

    A `SlopeResult`.

    **Raises:**

    `ValueError` for bad shapes or values, as `ray_limit`.
    """
    directions = check_directions(directions)
    base_points = check_base_points(base_points, directions.shape[1])
    radii = check_radii(radii)
    model = forward_mode(model)
    dtype = model_dtype(model, directions.shape[1])
    slope, kink, residual = _slope_core(
        model,
        jnp.asarray(base_points, dtype),
        jnp.asarray(directions, dtype),
        jnp.asarray(radii, dtype),
    )
    return SlopeResult(
        slope=np.asarray(slope),
        last_kink=np.asarray(kink),
        linearity_residual=np.asarray(residual),
        precision=np.dtype(dtype).name,
    )


@eqx.filter_jit
def _oscillation_core(model, base_points, directions, radii, start_radius):
    def per_output(g1):
        mask = radii >= start_radius
        count = sign_changes(g1, mask)
        span = radii[-1] - jnp.maximum(start_radius, radii[0])
        return count, jnp.where(count > 0, span / jnp.maximum(count, 1), jnp.inf)

    def one_ray(x0, direction):
        _, g1 = ray_derivatives(model, x0, direction, radii)
        return jax.vmap(per_output, in_axes=1)(g1)

    return jax.vmap(jax.vmap(one_ray, in_axes=(None, 0)), in_axes=(0, None))(
        base_points, directions
    )


@dataclasses.dataclass(frozen=True)
class OscillationResult(ProbeResult):
    """Sign changes of $g'$ beyond `start_radius`; arrays of shape
    (num_base, num_directions, out_size).

    **Fields:**

    - `sign_changes`: number of sign changes of $g'$ on the grid for $r \\ge$ `start_radius`.
    - `mean_spacing`: tail length divided by that count (half a period for a sinusoid), inf if 0.
    - `start_radius`: where counting starts (the training radius).
    """

    sign_changes: np.ndarray
    mean_spacing: np.ndarray
    start_radius: float

    def _table(self):
        header = ["base", "direction", "output", "sign changes", "mean spacing"]
        rows = [
            [b, d, o, self.sign_changes[b, d, o], self.mean_spacing[b, d, o]]
            for b, d, o in list(np.ndindex(self.sign_changes.shape))[:40]
        ]
        return header, rows


def tail_oscillations(
    model: Model,
    base_points: BasePoints,
    directions: Directions,
    radii: Radii,
    *,
    start_radius: float = 0.0,
) -> OscillationResult:
    """Counts the oscillations of the tail: sign changes of $g'$ along each ray beyond
    `start_radius` (the training radius). A saturating network changes direction at most a few
    times; a physical oscillator does so every half period. The grid must be fine enough to see
    each half period.

    **Arguments:**

    - `model`, `base_points`, `directions`, `radii`: as for `ray_limit`.
    - `start_radius`: count only for $r \\ge$ `start_radius`.

    **Returns:**

    An `OscillationResult`.

    **Raises:**

    `ValueError` for bad shapes or values, or a `start_radius` beyond the last radius.
    """
    directions = check_directions(directions)
    base_points = check_base_points(base_points, directions.shape[1])
    radii = check_radii(radii)
    if not (np.isfinite(start_radius) and start_radius < radii[-1]):
        raise ValueError(
            f"`start_radius` must be finite and below the last radius {radii[-1]}, got "
            f"{start_radius}."
        )
    model = forward_mode(model)
    dtype = model_dtype(model, directions.shape[1])
    count, spacing = _oscillation_core(
        model,
        jnp.asarray(base_points, dtype),
        jnp.asarray(directions, dtype),
        jnp.asarray(radii, dtype),
        jnp.asarray(start_radius, dtype),
    )
    return OscillationResult(
        sign_changes=np.asarray(count),
        mean_spacing=np.asarray(spacing),
        start_radius=float(start_radius),
    )
