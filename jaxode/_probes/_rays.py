"""Ray limit and rate: how a model's output behaves along rays $x(r) = x_0 + r d$, $r \\to \\infty$.

**References:** Dakhmouche and Gorji, "Why Cannot Neural Networks Master Extrapolation?
Insights from Physical Laws", arXiv 2510.04102 (2025).
"""

import dataclasses
from collections.abc import Callable, Sequence
from typing import NamedTuple

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

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
    verdict_names,
)

Model = Callable[[Float[Array, " in_size"]], Float[Array, "..."]]
# What the ray probes take: one point (direction) or a batch of them, arrays or nested lists.
BasePoints = (
    Float[ArrayLike, "num_base in_size"]
    | Float[ArrayLike, " in_size"]
    | Sequence[Sequence[float]]
    | Sequence[float]
)
Directions = (
    Float[ArrayLike, "num_directions in_size"]
    | Float[ArrayLike, " in_size"]
    | Sequence[Sequence[float]]
    | Sequence[float]
)
Radii = Float[ArrayLike, " num_radii"] | Sequence[float]

# A local exponent is judged (settled or not) only where its rounding uncertainty is at most this
# fraction of `settle_rtol`.
JUDGED_FRACTION = 0.25
# tau in the fit weights 1/(sigma^2 + tau^2) of the rate fit, sigma a point's relative rounding
# error: points known to 5 digits or better weigh alike, those near the floor (sigma up to 1e-3)
# much less, however finely the grid samples them.
FIT_NOISE_FLOOR = 1e-5


def forward_mode(model):
    """`model` with every `NeuralODE` inside differentiated in forward mode.

    Derivatives along a ray are forward-mode (`jax.jvp`); Diffrax's default reverse-mode adjoint
    (checkpointed, with a custom VJP) does not support that, `diffrax.ForwardMode()` does.
    """
    from .._models import NeuralODE

    is_ode = lambda x: isinstance(x, NeuralODE)  # noqa: E731

    def convert(leaf):
        return (
            eqx.tree_at(lambda m: m.paradigm, leaf, diffrax.ForwardMode()) if is_ode(leaf) else leaf
        )

    return jax.tree_util.tree_map(convert, model, is_leaf=is_ode)


def _hidden_reverse_mode(error: TypeError) -> TypeError:
    """The fix for a reverse-mode neural ODE that `forward_mode` could not see (inside a
    function), where JAX only says it cannot take a JVP of a custom VJP."""
    if "custom_vjp" not in str(error):
        return error
    return TypeError(
        "the probed model holds a neural ODE differentiated in reverse mode, which forward-mode "
        "ray derivatives cannot go through: pass the model itself (an eqx.Module, whose neural "
        "ODEs the probes switch to forward mode), not a function that calls it, or build its "
        "NeuralODE with paradigm=diffrax.ForwardMode()."
    )


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


class _TailPoints(NamedTuple):
    """The points of one output along one ray that the tail analysis works on."""

    index: Array
    finite: Array
    scale: Array
    resolvable: Array
    noise: Array
    oscillations: Array
    oscillating: Array
    settled_sign: Array
    tail: Array
    last_quarter: Array
    log_size: Array
    positive: Array
    log_radii: Array


def _select_tail(radii, g, g1, min_oscillations) -> _TailPoints:
    """Resolvable points, their rounding noise, sign changes, and the tail after the last one."""
    dtype = g.dtype
    eps = jnp.finfo(dtype).eps
    num = radii.shape[0]
    index = jnp.arange(num)
    # Overflowed points (inf or nan) carry no information: the ray is analysed on its finite part.
    finite = jnp.isfinite(g) & jnp.isfinite(g1)
    size = jnp.where(finite, jnp.abs(g1), 0.0)
    scale = jnp.max(size)
    # Rounding error of g' at a radius comes from the terms that were large before it (a
    # saturating unit's 1 - tanh^2), so the floor follows the running maximum of |g'|: a growing
    # tail (largest at its end, up to overflow) is resolvable all along, a decaying one as before.
    running = jax.lax.cummax(size)
    resolvable = finite & (size > RESOLUTION_FACTOR * eps * running)
    # Relative rounding error of |g'| (the uncertainty of log|g'|), measured: eps max|g'| / |g'|.
    noise = jnp.where(resolvable, eps * running / jnp.where(resolvable, size, 1.0), jnp.inf)
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
    return _TailPoints(
        index,
        finite,
        scale,
        resolvable,
        noise,
        oscillations,
        oscillating,
        settled_sign,
        tail,
        last_quarter,
        log_size,
        positive,
        log_radii,
    )


def _classify_tail(radii, points: _TailPoints, min_points):
    """Verdict code, whether g' converged to rounding, and the index of the last finite point."""
    # Classify on the second half of the resolvable points after the last sign change of g'.
    exp_slope, _, exp_residual = masked_line_fit(radii, points.log_size, points.tail)
    pow_slope, _, pow_residual = masked_line_fit(
        points.log_radii, points.log_size, points.tail & points.positive
    )
    log_range = jnp.max(jnp.where(points.tail, points.log_size, -jnp.inf)) - jnp.min(
        jnp.where(points.tail, points.log_size, jnp.inf)
    )
    is_linear = log_range < 1e-3
    exp_wins = exp_residual <= pow_residual
    verdict = jnp.where(
        points.oscillating,
        OSCILLATORY,
        jnp.where(
            jnp.sum(points.tail) < min_points,
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
    last_finite = jnp.maximum(_last_true_index(points.finite), 0)
    converged = (points.scale > 0) & points.finite[last_finite] & ~points.resolvable[last_finite]
    verdict = jnp.where(converged & (verdict != OSCILLATORY), CONSTANT_EXP, verdict)
    return verdict, converged, last_finite


def _settled_onset(radii, g1, points: _TailPoints, verdict, last_finite, settle_rtol, min_points):
    """Onset radius of the settled local exponent, the window from it, and if that has enough."""
    is_exponential = (verdict == CONSTANT_EXP) | (verdict == EXP_GROWTH)
    # The local exponent settles to its asymptotic value: the onset is where it stays within
    # `settle_rtol` of its median over the last quarter of the tail. A secant between close
    # radii near the rounding floor is noise (its uncertainty is the two points' rounding errors
    # over the step): such points neither delay nor make the onset, on any grid.
    local_rate, local_power, rate_defined, power_defined = secant_exponents(
        radii, g1, points.settled_sign
    )
    local = jnp.where(is_exponential, local_rate, local_power)
    defined = jnp.where(is_exponential, rate_defined, power_defined)
    pair_noise = points.noise + _previous(points.noise, jnp.inf)
    step = jnp.where(
        is_exponential,
        radii - _previous(radii, 0.0),
        points.log_radii - _previous(points.log_radii, 0.0),
    )
    uncertainty = pair_noise / jnp.where(defined & (step > 0), step, 1.0)
    first_reference = jnp.nanmedian(jnp.where(points.last_quarter & defined, local, jnp.nan))

    def size_of(reference):
        floor = jnp.where(is_exponential, 1e-12, 1.0)
        return jnp.maximum(jnp.where(jnp.isfinite(reference), jnp.abs(reference), floor), floor)

    judged = defined & (uncertainty <= JUDGED_FRACTION * settle_rtol * size_of(first_reference))
    judged_reference = jnp.nanmedian(jnp.where(points.last_quarter & judged, local, jnp.nan))
    reference = jnp.where(jnp.isfinite(judged_reference), judged_reference, first_reference)
    settled = jnp.abs(local - reference) <= settle_rtol * size_of(reference)
    slope_settled = jnp.abs(g1 - g1[last_finite]) <= settle_rtol * jnp.abs(g1[last_finite])
    settled = jnp.where(verdict == LINEAR, slope_settled, settled)
    candidates = jnp.where(verdict == LINEAR, points.resolvable, judged)
    onset_index = _onset_index(candidates, settled)
    window = defined & (points.index >= onset_index)
    window = jnp.where(verdict == LINEAR, points.resolvable & (points.index >= onset_index), window)
    enough = jnp.sum(window) >= min_points
    window = jnp.where(enough, window, points.tail)
    onset_index = jnp.where(enough, onset_index, jnp.argmax(points.tail))
    onset = radii[jnp.clip(onset_index, 0, radii.shape[0] - 1)]
    return onset, window, enough


def _check_settled_window(radii, points: _TailPoints, verdict, converged, onset, window, enough):
    """The verdict, `UNRESOLVED` where the settled window is too short, and whether g' = 0."""
    # An exponential or power verdict needs a settled local exponent over enough points, and a
    # window over which it shows: one e-fold of |g'| for an exponential, a factor 2 in radius for
    # a power law. A slowly drifting exponent (a tanh unit with a tiny slope, far from
    # saturation) would otherwise pass as settled: the tail is pre-asymptotic, say so.
    last_radius = radii[jnp.maximum(_last_true_index(window), 0)]
    spans_radius = last_radius >= 2.0 * jnp.maximum(onset, 1e-12)
    window_log_range = jnp.max(jnp.where(window, points.log_size, -jnp.inf)) - jnp.min(
        jnp.where(window, points.log_size, jnp.inf)
    )
    spans = jnp.where(verdict == POLY, spans_radius, window_log_range >= 1.0)
    growth = (verdict == POLY) | (verdict == EXP_GROWTH)
    unsettled = growth & ~(enough & spans)
    unsettled = unsettled | ((verdict == CONSTANT_EXP) & ~(enough & spans) & ~converged)
    verdict = jnp.where(unsettled, UNRESOLVED, verdict)
    # g' = 0 at every radius: the output is constant along the ray (a unit saturated to rounding
    # before the first radius, or an input it ignores); its limit is known, its rate is not.
    flat = points.scale == 0
    verdict = jnp.where(flat, CONSTANT_EXP, verdict)
    return verdict, flat


def _fit_exponent(radii, points: _TailPoints, verdict, flat, window):
    """Rate, power, fit residual, intercept of the log|g'| line, and the mask of fitted points."""
    is_exponential = (verdict == CONSTANT_EXP) | (verdict == EXP_GROWTH)
    # The exponent is the weighted least-squares slope of log|g'| against r (exponential) or
    # log r (power) over the later half of the settled window, where faster terms have died
    # out: weights 1/(sigma^2 + tau^2), sigma the point's rounding error, so points near the
    # floor count little however finely the grid samples them.
    abscissa = jnp.where(is_exponential, radii, points.log_radii)
    usable = window & jnp.where(is_exponential, True, points.positive)
    start = jnp.min(jnp.where(usable, abscissa, jnp.inf))
    end = jnp.max(jnp.where(usable, abscissa, -jnp.inf))
    later = usable & (abscissa >= 0.5 * (start + end))
    fit_mask = jnp.where(jnp.sum(later) >= 2, later, usable)
    weight = 1.0 / (jnp.where(fit_mask, points.noise, 1.0) ** 2 + FIT_NOISE_FLOOR**2)
    slope, intercept, residual = masked_line_fit(abscissa, points.log_size, fit_mask, weight)
    fitted = jnp.sum(fit_mask) >= 2
    rate = jnp.where(is_exponential & ~flat & fitted, -slope, jnp.nan)
    power = jnp.where(
        (verdict == POLY) | (verdict == LINEAR),
        jnp.where(verdict == LINEAR, 1.0, slope + 1.0),
        jnp.nan,
    )
    residual = jnp.where(
        (verdict == OSCILLATORY) | (verdict == UNRESOLVED) | flat, jnp.nan, residual
    )
    return rate, power, residual, intercept, fit_mask


def _limit_and_float32_radius(g, g1, points: _TailPoints, verdict, last_finite, rate, intercept):
    """Limit with tail correction, radius where float32 stops resolving g', and the last g'."""
    # Limit with tail correction: g - g_inf ~ C e^{-kappa r} gives g_inf = g + g'/kappa.
    g_last, g1_last = g[last_finite], g1[last_finite]
    corrected = g_last + jnp.where(points.resolvable[last_finite], g1_last, 0.0) / jnp.where(
        rate > 0, rate, 1.0
    )
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
    log_floor32 = jnp.log(
        RESOLUTION_FACTOR * FLOAT32_EPS * jnp.where(points.scale > 0, points.scale, 1.0)
    )
    float32_radius = jnp.where(
        (verdict == CONSTANT_EXP) & (rate > 0),
        (log_floor32 - intercept) / jnp.where(rate > 0, -rate, -1.0),
        jnp.inf,
    )
    return limit, float32_radius, g1_last


def analyse_tail(radii, g, g1, settle_rtol, min_points, min_oscillations):
    """Verdict, limit, rate, power, onset and fit quality of one output along one ray.

    All arrays have the fixed shape (num_radii,); points are selected with masks so the function
    runs under `jit` and `vmap`.
    """
    points = _select_tail(radii, g, g1, min_oscillations)
    verdict, converged, last_finite = _classify_tail(radii, points, min_points)
    onset, window, enough = _settled_onset(
        radii, g1, points, verdict, last_finite, settle_rtol, min_points
    )
    verdict, flat = _check_settled_window(radii, points, verdict, converged, onset, window, enough)
    rate, power, residual, intercept, fit_mask = _fit_exponent(radii, points, verdict, flat, window)
    limit, float32_radius, final_slope = _limit_and_float32_radius(
        g, g1, points, verdict, last_finite, rate, intercept
    )
    return dict(
        verdict_code=verdict.astype(jnp.int32),
        limit=limit,
        rate=rate,
        power=power,
        onset=onset,
        fit_residual=residual,
        num_fit_points=jnp.sum(fit_mask).astype(jnp.int32),
        float32_radius=float32_radius,
        tail_sign_changes=points.oscillations.astype(jnp.int32),
        final_slope=final_slope,
    )


def _neural_odes(model) -> list:
    """Every `NeuralODE` inside `model`."""
    from .._models import NeuralODE

    is_ode = lambda x: isinstance(x, NeuralODE)  # noqa: E731
    return [leaf for leaf in jax.tree_util.tree_leaves(model, is_leaf=is_ode) if is_ode(leaf)]


def _is_adaptive(ode) -> bool:
    return not isinstance(ode.stepsize_controller, (diffrax.ConstantStepSize, diffrax.StepTo))


def batch_function(model):
    """`model` mapped over a batch of inputs, every point solved on its own.

    A `Surrogate` whose dynamics takes fixed steps uses its own `predict`: the batch is one ODE
    on the same time grid, so every point gets exactly its own solve while the weights
    $\\theta(t)$ are computed once per stage, not once per ray point. With an adaptive step-size
    controller one shared solve would give the whole batch one step sequence (its error norm
    runs over every point), so a point's value would depend on the chunk it is solved with:
    there every point is solved on its own (a `vmap` of single-point solves).
    """
    from .._models import NeuralODE
    from .._surrogate import Surrogate

    if isinstance(model, Surrogate) and not (
        isinstance(model.dynamics, NeuralODE) and _is_adaptive(model.dynamics)
    ):
        return model.predict
    return jax.vmap(model)


def _tolerance(controller) -> str:
    try:
        return f"rtol={float(controller.rtol):g}, atol={float(controller.atol):g}"
    except (AttributeError, TypeError, ValueError):
        return type(controller).__name__


def solver_notes(model) -> tuple[str, ...]:
    """A note when the model's outputs come from adaptive ODE solves: the probes measure those
    outputs exactly (each point solved on its own), but they follow the exact flow of the ODE
    only to the solver's tolerance."""
    tolerances = sorted(
        {_tolerance(ode.stepsize_controller) for ode in _neural_odes(model) if _is_adaptive(ode)}
    )
    if not tolerances:
        return ()
    return (
        f"outputs come from adaptive ODE solves ({'; '.join(tolerances)}), every ray point solved "
        "on its own: limits and rates are those of the solver's output and follow the exact flow "
        "only to that tolerance; tighten the NeuralODE's stepsize_controller for more digits.",
    )


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
def _ray_limit_core(
    model, base_points, directions, radii, settle_rtol, min_points, min_oscillations, chunk_size
):
    batch = batch_function(model)
    per_output = jax.vmap(analyse_tail, in_axes=(None, 1, 1, None, None, None))
    per_ray = jax.vmap(
        jax.vmap(per_output, in_axes=(None, 0, 0, None, None, None)),
        in_axes=(None, 0, 0, None, None, None),
    )

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
        padded = jnp.concatenate(
            [directions, jnp.broadcast_to(directions[:1], (padding, directions.shape[1]))]
        )
        out = jax.lax.map(chunk, padded.reshape(num_chunks, chunk_size, -1))
        out = jax.tree_util.tree_map(lambda a: a.reshape((-1,) + a.shape[2:])[:num_directions], out)
    # (num_directions, num_base, out) -> (num_base, num_directions, out)
    return jax.tree_util.tree_map(lambda a: jnp.swapaxes(a, 0, 1), out)


@dataclasses.dataclass(frozen=True)
class RayLimitResult(ProbeResult):
    """Asymptotics of every output along every ray; arrays of shape
    (num_base, num_directions, out_size).

    **Fields:**

    - `verdict_code`: integer verdicts (see `verdicts` for names: `CONSTANT_EXP`, `LINEAR`,
      `POLY(p)`, `EXP_GROWTH`, `OSCILLATORY`, `UNRESOLVED`).
    - `limit`: $g_\\infty$ for `CONSTANT_EXP` (with tail correction $g + g'/\\kappa$), $\\pm\\infty$
      for growing outputs, `nan` otherwise.
    - `rate`: $\\kappa$ in $|g'(r)| \\sim e^{-\\kappa r}$ ($> 0$ converging, $< 0$ exponential
      growth), `nan` when the tail is not exponential or $g' = 0$ at every radius (a constant
      output).
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
        header = [
            "base",
            "direction",
            "output",
            "verdict",
            "limit",
            "rate",
            "power",
            "onset",
            "residual",
        ]
        names = self.verdicts
        rows = []
        for b, d, o in np.ndindex(self.verdict_code.shape):
            if len(rows) >= 40:
                break
            rows.append(
                [
                    b,
                    d,
                    o,
                    names[b, d, o],
                    self.limit[b, d, o],
                    self.rate[b, d, o],
                    self.power[b, d, o],
                    self.onset[b, d, o],
                    self.fit_residual[b, d, o],
                ]
            )
        return header, rows

    def __str__(self):
        text = super().__str__()
        shown = min(40, self.verdict_code.size)
        if shown < self.verdict_code.size:
            text += f"\n({shown} of {self.verdict_code.size} rays shown)"
        return text


def model_dtype(model, in_size):
    probe = jax.eval_shape(model, jax.ShapeDtypeStruct((in_size,), jnp.zeros(()).dtype))
    return probe.dtype


def ray_limit(
    model: Model,
    base_points: BasePoints,
    directions: Directions,
    radii: Radii,
    *,
    settle_rtol: float = 0.05,
    min_points: int = 4,
    min_oscillations: int = 3,
    chunk_size: int | None = None,
) -> RayLimitResult:
    """Limit value, exponential rate, onset radius, fit quality and verdict of every output
    of `model` along the rays $x_0 + r d$, for every base point and direction at once.

    The rate is fitted to $\\log|g'(r)|$ (not to $g - g_\\infty$) on the resolvable tail,
    $|g'| > 10^3 \\varepsilon \\max|g'|$, from the onset radius where the local rate
    $-d\\log|g'|/dr$ has settled. Any increasing radii work; a geometric grid (`numpy.geomspace`)
    reaching $10^4$ to $10^5$ times the data radius resolves slow and fast tails alike.
    Directions are normalised to unit length, so radii are distances.

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
    dtype = model_dtype(model, in_size)
    try:
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
    except TypeError as error:
        raise _hidden_reverse_mode(error) from None
    out = {k: np.asarray(v) for k, v in out.items()}
    notes = precision_notes(dtype, out["float32_radius"]) + solver_notes(model)
    unresolved = int(np.sum(out["verdict_code"] == UNRESOLVED))
    if unresolved:
        notes += (
            f"{unresolved} of {out['verdict_code'].size} ray outputs are UNRESOLVED: their tail "
            f"had not settled by the last radius {radii[-1]:.3g}; extend the radii (a geometric "
            "grid, numpy.geomspace, to 1e4-1e5 data radii).",
        )
    return RayLimitResult(**out, precision=np.dtype(dtype).name, notes=notes)
