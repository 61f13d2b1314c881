"""Ray limit and rate: how a model's output behaves along rays $x(r) = x_0 + r d$, $r \\to \\infty$.

**References:** Dakhmouche and Gorji, "Why Cannot Neural Networks Master Extrapolation?
Insights from Physical Laws", arXiv 2510.04102 (2025).
"""

import dataclasses
from collections.abc import Callable

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ._common import (
    CONSTANT_EXP,
    EXP_GROWTH,
    FLOAT32_EPS,
    LINEAR,
    OSCILLATORY,
    POLY,
    RESOLUTION_FACTOR,
    UNRESOLVED,
    ProbeResult,
    check_base_points,
    check_count,
    check_directions,
    check_positive,
    check_radii,
    masked_line_fit,
    precision_notes,
    sign_change_flags,
    sign_changes,
    verdict_names,
)

Model = Callable[[Float[Array, " in_size"]], Float[Array, "..."]]


def forward_mode(model):
    """`model` with every `NeuralODE` inside differentiated in forward mode.

    Derivatives along a ray are forward-mode (`jax.jvp`); Diffrax's default reverse-mode adjoint
    (checkpointed, with a custom VJP) does not support that, `diffrax.ForwardMode()` does.
    """
    from .._models import NeuralODE

    is_ode = lambda x: isinstance(x, NeuralODE)  # noqa: E731

    def convert(leaf):
        return eqx.tree_at(lambda m: m.paradigm, leaf, diffrax.ForwardMode()) if is_ode(leaf) else leaf

    return jax.tree_util.tree_map(convert, model, is_leaf=is_ode)


def ray_derivatives(model: Model, x0, direction, radii):
    """$g(r)$ and $g'(r)$ at every radius, each of shape (num_radii, out_size).

    The derivative along the ray is forward-mode (`jax.jvp`), exact up to rounding.
    """

    def value(r):
        return jnp.atleast_1d(model(x0 + r * direction)).reshape(-1)

    def both(r):
        return jax.jvp(value, (r,), (jnp.ones_like(r),))

    return jax.vmap(both)(radii)


def _last_true_index(mask):
    index = jnp.arange(mask.shape[0])
    return jnp.max(jnp.where(mask, index, -1))


def _previous(values, fill):
    """`values` shifted one place to the right, `fill` in front."""
    return jnp.concatenate([jnp.full((1,), fill, values.dtype), values[:-1]])


def secant_exponents(radii, g1, resolvable):
    """Local exponents of $|g'|$ between neighbouring radii, and where they are defined.

    Point $i$ gets the slope of $\\log|g'|$ over $[r_{i-1}, r_i]$: the local rate
    $\\kappa_i = -\\Delta \\log|g'| / \\Delta r$ ($|g'| \\sim e^{-\\kappa r}$) and the local power
    $p_i = 1 + \\Delta \\log|g'| / \\Delta \\log r$ ($g \\sim r^p$). Both are exact on a pure
    exponential or power law, whatever the spacing (a geometric grid is fine), and they
    settle to the asymptotic exponent on mixtures. This needs $g'$ only: a second derivative
    would cost another forward-mode pass through the model.
    """
    log_size = jnp.log(jnp.where(resolvable, jnp.abs(g1), 1.0))
    step = log_size - _previous(log_size, 0.0)
    same_sign = jnp.sign(g1) == jnp.sign(_previous(g1, 0.0))
    defined = resolvable & _previous(resolvable, False) & same_sign
    rate = -step / jnp.where(defined, radii - _previous(radii, 0.0), 1.0)
    log_radii = jnp.log(jnp.where(radii > 0, radii, 1.0))
    log_step = log_radii - _previous(log_radii, 0.0)
    defined_power = defined & (_previous(radii, 0.0) > 0)
    power = 1.0 + step / jnp.where(defined_power, log_step, 1.0)
    return rate, power, defined, defined_power


def _onset_index(candidates, settled):
    """First index after which every candidate point has settled."""
    unsettled = candidates & ~settled
    return _last_true_index(unsettled) + 1


def _persistent_sign_changes(radii, g1, resolvable, min_oscillations):
    """Sign changes of $g'$ over the second half of the resolvable points, and whether they
    make an oscillation.

    A sum of exponentials of both signs (a deep saturating net) changes sign a few times, at
    crossovers whose gaps grow, then keeps one sign for good; an oscillation keeps changing sign
    at gaps that do not grow. The tail counts as oscillating when the last gap between changes
    is at most twice the first, and the stretch after the last change at most twice the last gap.
    """
    num_resolvable = jnp.sum(resolvable)
    rank = jnp.cumsum(resolvable) - 1
    second_half = resolvable & (rank >= num_resolvable // 2)
    flags = sign_change_flags(g1, second_half)
    count = jnp.sum(flags)
    index = jnp.arange(radii.shape[0])
    previous_flag = _previous(jax.lax.cummax(jnp.where(flags, index, -1)), -1)
    first = jnp.argmax(flags)
    second = jnp.argmax(flags & (index > first))
    last = jnp.maximum(_last_true_index(flags), 0)
    first_gap = radii[second] - radii[first]
    last_gap = radii[last] - radii[jnp.maximum(previous_flag[last], 0)]
    stretch = radii[jnp.maximum(_last_true_index(resolvable), 0)] - radii[last]
    regular = (last_gap <= 2.0 * first_gap) & (stretch <= 2.0 * last_gap)
    return count, (count >= min_oscillations) & regular


def analyse_tail(radii, g, g1, settle_rtol, min_points, min_oscillations):
    """Verdict, limit, rate, power, onset and fit quality of one output along one ray.

    All arrays have the fixed shape (num_radii,); points are selected with masks so the function
    runs under `jit` and `vmap`.
    """
    dtype = g.dtype
    eps = jnp.finfo(dtype).eps
    num = radii.shape[0]
    index = jnp.arange(num)
    finite = jnp.isfinite(g) & jnp.isfinite(g1)
    size = jnp.where(finite, jnp.abs(g1), 0.0)
    scale = jnp.max(size)
    floor = RESOLUTION_FACTOR * eps * scale
    resolvable = finite & (size > floor) & (scale > 0)
    oscillations, oscillating = _persistent_sign_changes(radii, g1, resolvable, min_oscillations)
    # Sign changes of g' before the last one belong to the pre-asymptotic part: classify after it.
    last_change = _last_true_index(sign_change_flags(g1, resolvable))
    settled_sign = resolvable & (index >= last_change)
    num_settled_sign = jnp.sum(settled_sign)
    rank = jnp.cumsum(settled_sign) - 1
    tail = settled_sign & (rank >= num_settled_sign // 2)
    last_quarter = settled_sign & (rank >= (3 * num_settled_sign) // 4)
    log_size = jnp.log(jnp.where(resolvable, size, 1.0))
    positive = radii > 0
    log_radii = jnp.log(jnp.where(positive, radii, 1.0))

    # Classify on the second half of the resolvable points after the last sign change of g'.
    exp_slope, _, exp_residual = masked_line_fit(radii, log_size, tail)
    pow_slope, _, pow_residual = masked_line_fit(log_radii, log_size, tail & positive)
    log_range = jnp.max(jnp.where(tail, log_size, -jnp.inf)) - jnp.min(jnp.where(tail, log_size, jnp.inf))
    is_linear = log_range < 1e-3
    exp_wins = exp_residual <= pow_residual
    verdict = jnp.where(
        oscillating,
        OSCILLATORY,
        jnp.where(
            jnp.sum(tail) < min_points,
            UNRESOLVED,
            jnp.where(
                is_linear,
                LINEAR,
                jnp.where(
                    exp_wins,
                    jnp.where(exp_slope < 0, CONSTANT_EXP, EXP_GROWTH),
                    jnp.where(jnp.abs(pow_slope) < 0.05, LINEAR, POLY),
                ),
            ),
        ),
    )
    # When g' has sunk below the resolution floor by the last radius, the output has converged
    # to rounding: the limit is known even if too few tail points pin down the rate, and growth
    # is ruled out whatever the fits said about a tail that was still pre-asymptotic.
    last_finite = jnp.maximum(_last_true_index(finite), 0)
    converged = (scale > 0) & finite[last_finite] & ~resolvable[last_finite]
    verdict = jnp.where(converged & (verdict != OSCILLATORY), CONSTANT_EXP, verdict)
    is_exponential = (verdict == CONSTANT_EXP) | (verdict == EXP_GROWTH)

    # The local exponent settles to its asymptotic value: the onset is where it stays within
    # `settle_rtol` of its median over the last quarter of the tail.
    local_rate, local_power, rate_defined, power_defined = secant_exponents(radii, g1, settled_sign)
    local = jnp.where(is_exponential, local_rate, local_power)
    defined = jnp.where(is_exponential, rate_defined, power_defined)
    reference = jnp.nanmedian(jnp.where(last_quarter & defined, local, jnp.nan))
    magnitude = jnp.where(is_exponential, jnp.maximum(jnp.abs(reference), 1e-12), jnp.maximum(jnp.abs(reference), 1.0))
    settled = jnp.abs(local - reference) <= settle_rtol * magnitude
    slope_settled = jnp.abs(g1 - g1[last_finite]) <= settle_rtol * jnp.abs(g1[last_finite])
    settled = jnp.where(verdict == LINEAR, slope_settled, settled)
    candidates = jnp.where(verdict == LINEAR, resolvable, defined)
    onset_index = _onset_index(candidates, settled)
    window = candidates & (index >= onset_index)
    enough = jnp.sum(window) >= min_points
    window = jnp.where(enough, window, tail)
    onset_index = jnp.where(enough, onset_index, jnp.argmax(tail))
    onset = radii[jnp.clip(onset_index, 0, num - 1)]

    # An exponential or power verdict needs a settled local exponent over enough points, and a
    # window over which it shows: one e-fold of |g'| for an exponential, a factor 2 in radius for
    # a power law. A slowly drifting exponent (a tanh unit with a tiny slope, far from
    # saturation) would otherwise pass as settled: the tail is pre-asymptotic, say so.
    last_radius = radii[jnp.maximum(_last_true_index(window), 0)]
    spans_radius = last_radius >= 2.0 * jnp.maximum(onset, 1e-12)
    window_log_range = jnp.max(jnp.where(window, log_size, -jnp.inf)) - jnp.min(jnp.where(window, log_size, jnp.inf))
    spans = jnp.where(verdict == POLY, spans_radius, window_log_range >= 1.0)
    growth = (verdict == POLY) | (verdict == EXP_GROWTH)
    unsettled = growth & ~(enough & spans)
    unsettled = unsettled | ((verdict == CONSTANT_EXP) & ~(enough & spans) & ~converged)
    verdict = jnp.where(unsettled, UNRESOLVED, verdict)
    # g' = 0 at every radius: the output is constant along the ray (a unit saturated to rounding
    # before the first radius, or an input it ignores); its limit is known, its rate is not.
    flat = scale == 0
    verdict = jnp.where(flat, CONSTANT_EXP, verdict)
    is_exponential = (verdict == CONSTANT_EXP) | (verdict == EXP_GROWTH)

    # Final fits on the settled window; the rate is the median local rate over its settled part,
    # sharper than the slope of the line fit when a faster exponential still lingers early on.
    exp_slope, exp_intercept, exp_residual = masked_line_fit(radii, log_size, window)
    pow_slope, _, pow_residual = masked_line_fit(log_radii, log_size, window & positive)
    in_window = jnp.where(enough, window, tail) & rate_defined
    settled_rate = jnp.nanmedian(jnp.where(in_window & last_quarter, local_rate, jnp.nan))
    settled_rate = jnp.where(
        jnp.isfinite(settled_rate), settled_rate, jnp.nanmedian(jnp.where(in_window, local_rate, jnp.nan))
    )
    settled_rate = jnp.where(
        jnp.isfinite(settled_rate), settled_rate, jnp.where(jnp.sum(window) >= 2, -exp_slope, jnp.nan)
    )
    rate = jnp.where(is_exponential & ~flat, settled_rate, jnp.nan)
    power = jnp.where(
        (verdict == POLY) | (verdict == LINEAR), jnp.where(verdict == LINEAR, 1.0, pow_slope + 1.0), jnp.nan
    )
    residual = jnp.where(is_exponential, exp_residual, pow_residual)
    residual = jnp.where((verdict == OSCILLATORY) | (verdict == UNRESOLVED) | flat, jnp.nan, residual)

    # Limit with tail correction: g - g_inf ~ C e^{-kappa r} gives g_inf = g + g'/kappa.
    g_last, g1_last = g[last_finite], g1[last_finite]
    corrected = g_last + jnp.where(resolvable[last_finite], g1_last, 0.0) / jnp.where(rate > 0, rate, 1.0)
    unbounded = jnp.sign(g1_last) * jnp.inf
    limit = jnp.where(
        verdict == CONSTANT_EXP,
        corrected,
        jnp.where(
            (verdict == LINEAR) | (verdict == POLY) | (verdict == EXP_GROWTH),
            unbounded,
            jnp.nan,
        ),
    )
    # Radius where |g'| ~ e^{a - kappa r} sinks below what float32 (and the run's dtype) resolve.
    log_floor32 = jnp.log(RESOLUTION_FACTOR * FLOAT32_EPS * jnp.where(scale > 0, scale, 1.0))
    float32_radius = jnp.where(
        (verdict == CONSTANT_EXP) & ~flat, (log_floor32 - exp_intercept) / jnp.where(exp_slope < 0, exp_slope, -1.0), jnp.inf
    )
    return dict(
        verdict_code=verdict.astype(jnp.int32),
        limit=limit,
        rate=rate,
        power=power,
        onset=onset,
        fit_residual=residual,
        num_fit_points=jnp.sum(window).astype(jnp.int32),
        float32_radius=float32_radius,
        tail_sign_changes=oscillations.astype(jnp.int32),
        final_slope=g1_last,
    )


def batch_function(model):
    """`model` mapped over a batch of inputs. A `Surrogate` uses its own `predict`, which
    solves the whole batch as one ODE (its weights $\\theta(t)$ are computed once per stage,
    not once per ray point)."""
    from .._surrogate import Surrogate

    if isinstance(model, Surrogate):
        return model.predict
    return jax.vmap(model)


def rays_derivatives(batch, base_points, directions, radii):
    """$g$ and $g'$ on every ray, each (num_directions, num_base, num_radii, out_size).

    All ray points go through `batch` at once; since output $i$ depends only on radius $i$,
    one `jvp` with an all-ones tangent gives every $g'(r_i)$.
    """
    num_directions, num_base, num_radii = directions.shape[0], base_points.shape[0], radii.shape[0]
    grid = jnp.broadcast_to(radii, (num_directions, num_base, num_radii))

    def values(r):
        points = base_points[None, :, None, :] + r[..., None] * directions[:, None, None, :]
        out = batch(points.reshape(-1, points.shape[-1]))
        return out.reshape(num_directions, num_base, num_radii, -1)

    return jax.jvp(values, (grid,), (jnp.ones_like(grid),))


@eqx.filter_jit
def _ray_limit_core(model, base_points, directions, radii, settle_rtol, min_points, min_oscillations, chunk_size):
    batch = batch_function(model)
    per_output = jax.vmap(analyse_tail, in_axes=(None, 1, 1, None, None, None))
    per_ray = jax.vmap(jax.vmap(per_output, in_axes=(None, 0, 0, None, None, None)), in_axes=(None, 0, 0, None, None, None))

    def chunk(chunk_directions):
        g, g1 = rays_derivatives(batch, base_points, chunk_directions, radii)
        return per_ray(radii, g, g1, settle_rtol, min_points, min_oscillations)

    num_directions = directions.shape[0]
    if chunk_size is None or chunk_size >= num_directions:
        out = chunk(directions)
    else:
        # Chunks bound memory: every ray point of a chunk is one batch element. Pad the last
        # chunk with copies of the first direction and drop them afterwards.
        num_chunks = -(-num_directions // chunk_size)
        padding = num_chunks * chunk_size - num_directions
        padded = jnp.concatenate([directions, jnp.broadcast_to(directions[:1], (padding, directions.shape[1]))])
        out = jax.lax.map(chunk, padded.reshape(num_chunks, chunk_size, -1))
        out = jax.tree_util.tree_map(lambda a: a.reshape((-1,) + a.shape[2:])[:num_directions], out)
    # (num_directions, num_base, out) -> (num_base, num_directions, out)
    return jax.tree_util.tree_map(lambda a: jnp.swapaxes(a, 0, 1), out)


@dataclasses.dataclass(frozen=True)
class RayLimitResult(ProbeResult):
    """Asymptotics of every output along every ray; arrays of shape (num_base, num_directions, out_size).

    **Fields:**

    - `verdict_code`: integer verdicts (see `verdicts` for names: `CONSTANT_EXP`, `LINEAR`,
      `POLY(p)`, `EXP_GROWTH`, `OSCILLATORY`, `UNRESOLVED`).
    - `limit`: $g_\\infty$ for `CONSTANT_EXP` (with tail correction $g + g'/\\kappa$), $\\pm\\infty$
      for growing outputs, `nan` otherwise.
    - `rate`: $\\kappa$ in $|g'(r)| \\sim e^{-\\kappa r}$ ($> 0$ converging, $< 0$ exponential growth),
      `nan` when the tail is not exponential or $g' = 0$ at every radius (a constant output).
    - `power`: $p$ in $g \\sim r^p$ for `POLY(p)` and `LINEAR`, `nan` otherwise.
    - `onset`: radius from which the local exponent of $|g'|$ (rate $-d\\log|g'|/dr$ or power
      $1 + d\\log|g'|/d\\log r$, secants between neighbouring radii) stays within
      `settle_rtol` of its asymptotic value.
    - `fit_residual`: RMS residual of the tail fit, in units of $\\log|g'|$.
    - `num_fit_points`: points in the fit window.
    - `float32_radius`: radius beyond which float32 cannot resolve $g'$ (inf if not exponential).
    - `tail_sign_changes`: sign changes of $g'$ over the second half of the resolvable radii.
    - `final_slope`: $g'$ at the last radius.
    - `precision`: dtype the probe ran in; `notes`: warnings (float32 runs).
    """

    verdict_code: np.ndarray
    limit: np.ndarray
    rate: np.ndarray
    power: np.ndarray
    onset: np.ndarray
    fit_residual: np.ndarray
    num_fit_points: np.ndarray
    float32_radius: np.ndarray
    tail_sign_changes: np.ndarray
    final_slope: np.ndarray
    precision: str
    notes: tuple[str, ...] = ()

    @property
    def verdicts(self) -> np.ndarray:
        """Verdict names, same shape as `verdict_code`."""
        return verdict_names(self.verdict_code, self.power)

    def _table(self):
        header = ["base", "direction", "output", "verdict", "limit", "rate", "power", "onset", "residual"]
        names = self.verdicts
        rows = []
        for b, d, o in np.ndindex(self.verdict_code.shape):
            if len(rows) >= 40:
                break
            rows.append([b, d, o, names[b, d, o], self.limit[b, d, o], self.rate[b, d, o],
                         self.power[b, d, o], self.onset[b, d, o], self.fit_residual[b, d, o]])
        return header, rows

    def __str__(self):
        text = super().__str__()
        shown = min(40, self.verdict_code.size)
        if shown < self.verdict_code.size:
            text += f"\n({shown} of {self.verdict_code.size} rays shown)"
        return text


def _model_dtype(model, in_size):
    probe = jax.eval_shape(model, jax.ShapeDtypeStruct((in_size,), jnp.zeros(()).dtype))
    return probe.dtype


def ray_limit(
    model: Model,
    base_points: Float[Array, "num_base in_size"] | Float[Array, " in_size"],
    directions: Float[Array, "num_directions in_size"] | Float[Array, " in_size"],
    radii: Float[Array, " num_radii"],
    *,
    settle_rtol: float = 0.05,
    min_points: int = 4,
    min_oscillations: int = 3,
    chunk_size: int | None = None,
) -> RayLimitResult:
    """Limit value, exponential rate, onset radius, fit quality and verdict of every output
    of `model` along the rays $x_0 + r d$, for every base point and direction at once.

    The rate is fitted to $\\log|g'(r)|$ (not to $g - g_\\infty$) on the resolvable tail,
    $|g'| > 10^3 \\varepsilon \\max|g'|$, from the onset radius where the local rate $-d\\log|g'|/dr$
    has settled. Any increasing radii work; a geometric grid (`numpy.geomspace`) reaching
    $10^4$ to $10^5$ times the data radius resolves slow and fast tails alike. Directions are normalised to unit length, so radii are distances.

    **Arguments:**

    - `model`: a function of one input vector, returning a scalar or a vector (a `Surrogate`,
      an `eqx.nn.MLP`, any jittable callable).
    - `base_points`: ray origins $x_0$, one per row (or a single vector).
    - `directions`: ray directions $d$, one per row (or a single vector).
    - `radii`: increasing radii $r \\ge 0$ (at least 8), reaching far past the training data.
    - `settle_rtol`: relative tolerance on the local exponent that defines the onset.
    - `min_points`: fewest resolvable tail points for a verdict other than `UNRESOLVED`.
    - `min_oscillations`: sign changes of $g'$ in the tail that make a ray `OSCILLATORY`.
    - `chunk_size`: directions evaluated together (bounds memory); `None` does all at once.

    **Returns:**

    A `RayLimitResult` with arrays of shape (num_base, num_directions, out_size).

    **Raises:**

    `ValueError` for mismatched shapes, NaN or infinite inputs, zero directions, or radii that
    are negative, too few or not strictly increasing.
    """
    directions = check_directions(directions)
    in_size = directions.shape[1]
    base_points = check_base_points(base_points, in_size)
    radii = check_radii(radii)
    settle_rtol = check_positive("settle_rtol", settle_rtol)
    min_points = check_count("min_points", min_points, 2)
    min_oscillations = check_count("min_oscillations", min_oscillations, 1)
    if chunk_size is not None:
        chunk_size = check_count("chunk_size", chunk_size)
    model = forward_mode(model)
    dtype = _model_dtype(model, in_size)
    out = _ray_limit_core(
        model,
        jnp.asarray(base_points, dtype),
        jnp.asarray(directions, dtype),
        jnp.asarray(radii, dtype),
        settle_rtol,
        min_points,
        min_oscillations,
        chunk_size,
    )
    out = {k: np.asarray(v) for k, v in out.items()}
    notes = precision_notes(dtype, out["float32_radius"])
    unresolved = int(np.sum(out["verdict_code"] == UNRESOLVED))
    if unresolved:
        notes += (
            f"{unresolved} of {out['verdict_code'].size} ray outputs are UNRESOLVED: their tail had "
            f"not settled by the last radius {radii[-1]:.3g}; extend the radii (a geometric grid, "
            "numpy.geomspace, to 1e4-1e5 data radii).",
        )
    return RayLimitResult(**out, precision=np.dtype(dtype).name, notes=notes)
