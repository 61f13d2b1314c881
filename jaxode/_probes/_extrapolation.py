"""Trajectory extrapolation: run a neural ODE past its training horizon against a ground truth.

**References:** Zhang and Gilpin, "Zero-shot forecasting of chaotic systems" (ICLR 2025) for the
valid prediction time; Dakhmouche and Gorji, arXiv 2510.04102 (2025) for the bounded-field check.
"""

import dataclasses
from collections.abc import Callable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from .._fields import AntisymmetricField, HamiltonianField, LayerField, MLPField
from .._models import NeuralODE, window_warnings_off
from ._common import ProbeResult, as_float_array, check_count, check_positive
from ._laws import AbstractLaw

SATURATION_LEVEL = 0.99  # |tanh(u)| > 0.99, i.e. |u| > 2.65: the unit's slope is below 2 %.


def relative_error(prediction: Float[Array, " n"], truth: Float[Array, " n"]) -> Float[Array, ""]:
    """$\\|h - y\\|_2 / \\|y\\|_2$ (with a floor of $10^{-12}$ on $\\|y\\|$)."""
    return jnp.linalg.norm(prediction - truth) / jnp.maximum(jnp.linalg.norm(truth), 1e-12)


def symmetric_mape(prediction: Float[Array, " n"], truth: Float[Array, " n"]) -> Float[Array, ""]:
    """Symmetric mean absolute percentage error as a fraction: mean of $2|h - y| / (|h| + |y|)$."""
    denominator = jnp.maximum(jnp.abs(prediction) + jnp.abs(truth), 1e-12)
    return jnp.mean(2.0 * jnp.abs(prediction - truth) / denominator)


def _is_tanh(activation) -> bool:
    return activation is jnp.tanh or activation is jax.nn.tanh or activation is np.tanh


def speed_bound(field, t) -> Float[Array, ""]:
    """$M(t)$ with $\\|f(t, z)\\|_\\infty \\le M(t)$ for every $z$, for tanh-output fields; `nan`
    when the field's output is not bounded by construction."""
    if isinstance(field, (LayerField, AntisymmetricField, HamiltonianField)) and _is_tanh(
        field.activation
    ):
        return jnp.asarray(1.0)
    if isinstance(field, MLPField) and _is_tanh(field.activation):
        outer = field.outer
        row_sums = jnp.sum(jnp.abs(outer.weight_at(t)), axis=1)
        return jnp.max(row_sums) + jnp.max(jnp.abs(outer.bias_at(t)))
    return jnp.asarray(jnp.nan)


def saturated_fraction(field, t, state) -> Float[Array, ""]:
    """Fraction of tanh units with $|\\tanh(u)| > 0.99$ at `(t, state)`; `nan` if unknown."""
    if isinstance(field, LayerField) and _is_tanh(field.activation):
        pre = field.layer(t, state)
    elif isinstance(field, MLPField) and _is_tanh(field.activation):
        pre = field.inner(t, state)
    else:
        return jnp.asarray(jnp.nan)
    return jnp.mean(jnp.abs(jnp.tanh(pre)) > SATURATION_LEVEL)


@eqx.filter_jit
def _extrapolate_core(long_ode, initial_states, truth, error_metric):
    field = long_ode.field
    trajectories = jax.vmap(long_ode.solve)(initial_states)
    features = jax.vmap(jax.vmap(field.unlift))(trajectories.states)
    # The save grid itself: Diffrax reports inf for save times a failed solve never reached.
    ts = jnp.asarray(long_ode.ts, initial_states.dtype)
    errors = jax.vmap(jax.vmap(error_metric))(features, truth)
    errors = jnp.where(jnp.isfinite(errors), errors, jnp.inf)

    def jacobian_norm(t, state):
        jac = jax.jacfwd(lambda z: field(t, z))(state)
        return jnp.linalg.norm(jac, ord=2)

    safe_states = jnp.where(jnp.isfinite(trajectories.states), trajectories.states, 0.0)
    per_time = jax.vmap(jax.vmap(jacobian_norm, in_axes=(0, 0)), in_axes=(None, 0))
    jacobians = per_time(ts, safe_states)
    saturation = jax.vmap(
        jax.vmap(lambda t, s: saturated_fraction(field, t, s), in_axes=(0, 0)), in_axes=(None, 0)
    )(ts, safe_states)
    finite_rows = jnp.all(jnp.isfinite(trajectories.states), axis=-1)
    jacobians = jnp.where(finite_rows, jacobians, jnp.nan)
    saturation = jnp.where(finite_rows, saturation, jnp.nan)
    speeds = jax.vmap(lambda t: speed_bound(field, t))(ts)
    return dict(
        ts=ts,
        model=features,
        errors=errors,
        jacobian_norm=jacobians,
        saturated_fraction=saturation,
        speeds=speeds,
        result=trajectories.result._value
        if hasattr(trajectories.result, "_value")
        else trajectories.result,
        num_steps=trajectories.num_steps,
    )


def _growth(ts: np.ndarray, values: np.ndarray, start: float) -> tuple[float, float]:
    """Exponential rate (slope of $\\log\\|y\\|$ in $t$) and power (slope in $\\log t$) past
    `start`."""
    with np.errstate(over="ignore", invalid="ignore"):
        norms = np.linalg.norm(values, axis=-1)
    # Near a blow-up the norms overflow the fit; such points carry no growth information.
    keep = norms < 1e100
    keep = keep & (ts >= start) & (ts > 0) & np.isfinite(norms) & (norms > 0)
    if keep.sum() < 3:
        return float("nan"), float("nan")
    log_norm = np.log(norms[keep])
    rate = np.polyfit(ts[keep], log_norm, 1)[0]
    power = np.polyfit(np.log(ts[keep]), log_norm, 1)[0]
    return float(rate), float(power)


@dataclasses.dataclass(frozen=True)
class ExtrapolationResult(ProbeResult):
    """A neural ODE run past its training horizon; first axis: one row per initial state.

    **Fields:**

    - `ts`: save times; `model_states`: (num_states, num_times, width) the model's features
      (`inf` after a failed solve); `errors`: (num_states, num_times) error against the truth
      (`inf` after a failed solve).
    - `valid_prediction_time`: time from `t_train` until the error first exceeds `threshold`
      ($t_{ext} - t_{train}$ if it never does); `in_lyapunov_times`: the same times the largest
      Lyapunov exponent (`nan` for non-chaotic truths).
    - `model_rate`, `model_power`, `truth_rate`, `truth_power`: growth of $\\|h(t)\\|$ and
      $\\|y(t)\\|$ past `t_train` as an exponential rate and as a power of $t$.
    - `displacement`: (num_states, num_times) $\\|h(t) - h(t_0)\\|_\\infty$; `displacement_bound`:
      (num_times,) $\\int_{t_0}^t M$ for tanh-output fields (`nan` otherwise); `bound_holds`.
    - `saturated_fraction`, `jacobian_norm`: (num_states, num_times) along the trajectory.
    - `solver_result`: Diffrax result codes (0 = success); `succeeded`; `num_steps`.
    - `t_train`, `t_ext`, `threshold`, `notes`.
    """

    ts: np.ndarray
    model_states: np.ndarray
    errors: np.ndarray
    valid_prediction_time: np.ndarray
    in_lyapunov_times: np.ndarray
    model_rate: np.ndarray
    model_power: np.ndarray
    truth_rate: np.ndarray
    truth_power: np.ndarray
    displacement: np.ndarray
    displacement_bound: np.ndarray
    bound_holds: np.ndarray
    saturated_fraction: np.ndarray
    jacobian_norm: np.ndarray
    solver_result: np.ndarray
    succeeded: np.ndarray
    num_steps: np.ndarray
    t_train: float
    t_ext: float
    threshold: float
    notes: tuple[str, ...] = ()

    def _table(self):
        header = [
            "state",
            "solve",
            "VPT",
            "VPT (Lyap.)",
            "model rate",
            "truth rate",
            "model power",
            "truth power",
            "bound holds",
            "max saturated",
            "max |J|",
        ]
        rows = []
        for i in range(self.errors.shape[0]):
            rows.append(
                [
                    i,
                    "ok" if self.succeeded[i] else f"failed ({self.solver_result[i]})",
                    self.valid_prediction_time[i],
                    self.in_lyapunov_times[i],
                    self.model_rate[i],
                    self.truth_rate[i],
                    self.model_power[i],
                    self.truth_power[i],
                    self.bound_holds[i],
                    float(np.nanmax(self.saturated_fraction[i], initial=-np.inf)),
                    float(np.nanmax(self.jacobian_norm[i], initial=-np.inf)),
                ]
            )
        return header, rows


def _checked_initial_states(dynamics, initial_states, t_train, t_ext) -> np.ndarray:
    """`initial_states` as a (num_states, width) array, after checking `dynamics` and the times."""
    if not isinstance(dynamics, NeuralODE):
        raise ValueError(f"`dynamics` must be a NeuralODE, got {type(dynamics).__name__}.")
    width = dynamics.field.width
    initial_states = as_float_array("initial_states", initial_states, (1, 2))
    if initial_states.ndim == 1:
        initial_states = initial_states[None]
    if initial_states.shape[1] != width:
        raise ValueError(
            f"`initial_states` must have {width} columns (the field's width), got "
            f"{initial_states.shape}."
        )
    if not (dynamics.t0 < t_train < t_ext):
        raise ValueError(
            f"need t0 < t_train < t_ext, got t0={dynamics.t0}, t_train={t_train}, t_ext={t_ext}."
        )
    return initial_states


def _truth_states(truth, initial_states, grid, width, num_times, dtype):
    """True states on the save grid, (num_states, num_times, width): solved or checked."""
    if isinstance(truth, AbstractLaw):
        if truth.state_size != width:
            raise ValueError(
                f"`truth` has state size {truth.state_size} but the field's width is {width}."
            )
        truth_states = jax.vmap(lambda y0: truth.trajectory(y0, jnp.asarray(grid, dtype)))(
            jnp.asarray(initial_states, dtype)
        )
    else:
        truth_states = as_float_array("truth", truth, (3,))
        if truth_states.shape != (initial_states.shape[0], num_times, width):
            raise ValueError(
                f"`truth` must have shape (num_states, num_times, width) = "
                f"{(initial_states.shape[0], num_times, width)}, got {truth_states.shape}."
            )
    return truth_states


def _long_ode(dynamics, t_ext, grid, max_steps) -> NeuralODE:
    """`dynamics` run to `t_ext`, saving on `grid`, reporting a failed solve instead of raising
    (past the basis window on purpose: no `BasisWindowWarning`)."""
    with window_warnings_off():
        return NeuralODE(
            dynamics.field,
            t1=float(t_ext),
            t0=dynamics.t0,
            solver=dynamics.solver,
            stepsize_controller=dynamics.stepsize_controller,
            dt0=dynamics.dt0,
            max_steps=max_steps,
            paradigm=dynamics.paradigm,
            ts=tuple(grid),
            throw=False,
        )


def _valid_prediction_time(ts, errors, threshold, t_train, t_ext, truth):
    """Valid prediction time past `t_train`, and the same in Lyapunov times (`nan` if unknown)."""
    after = ts >= t_train
    exceeded = (errors > threshold) & after[None, :]
    first = np.where(exceeded.any(axis=1), ts[np.argmax(exceeded, axis=1)], t_ext)
    vpt = first - t_train
    lyapunov = truth.lyapunov_exponent if isinstance(truth, AbstractLaw) else None
    in_lyapunov = vpt * lyapunov if lyapunov is not None else np.full_like(vpt, np.nan)
    return vpt, in_lyapunov


def _bounded_field_check(ts, model, speeds):
    """Displacement from the first state, its bound $\\int M$, and whether the bound holds."""
    displacement = np.max(np.abs(model - model[:, :1]), axis=-1)
    # Upper Riemann sum of the speed bound M(t) (M is monotone between close grid points).
    pieces = np.maximum(speeds[1:], speeds[:-1]) * np.diff(ts)
    bound = np.concatenate([[0.0], np.cumsum(pieces)])
    with np.errstate(invalid="ignore"):
        holds = np.all(
            (displacement <= bound * (1 + 1e-6) + 1e-9) | ~np.isfinite(displacement), axis=1
        )
    holds = np.where(np.isfinite(bound[-1]), holds, False)
    return displacement, bound, holds


def _extrapolation_notes(bound, succeeded) -> tuple[str, ...]:
    """Notes on a bounded-field check that does not apply and on failed solves."""
    notes = []
    if not np.isfinite(bound[-1]):
        notes.append("bounded-field check not applicable: the field's output is not a tanh layer.")
    if not succeeded.all():
        notes.append(
            f"{int((~succeeded).sum())} solve(s) failed; their errors are inf after the failure."
        )
    return tuple(notes)


def trajectory_extrapolation(
    dynamics: NeuralODE,
    initial_states: Float[ArrayLike, "num_states width"]
    | Float[ArrayLike, " width"]
    | Sequence[Sequence[float]]
    | Sequence[float],
    truth: AbstractLaw | Float[ArrayLike, "num_states num_times width"],
    *,
    t_train: float,
    t_ext: float,
    num_times: int = 201,
    threshold: float = 0.3,
    error_metric: Callable[[Array, Array], Array] = relative_error,
    max_steps: int = 65536,
) -> ExtrapolationResult:
    """Runs `dynamics` from each initial state to `t_ext` (past its training horizon `t_train`)
    and measures how it departs from the truth. A failing solve is reported in the result, not
    raised, so a long probe never dies halfway.

    **Arguments:**

    - `dynamics`: a `NeuralODE` whose field acts on the physical state (width = state size).
    - `initial_states`: (num_states, width) states at `dynamics.t0`.
    - `truth`: an `AbstractLaw` from the zoo, or true states on the save grid,
      (num_states, num_times, width).
    - `t_train`: end of the training window; `t_ext`: end of the probe ($> t_{train}$).
    - `num_times`: points of the save grid `linspace(t0, t_ext, num_times)`.
    - `threshold`: error level that ends the valid prediction time (default 30 %).
    - `error_metric`: `relative_error` (default) or `symmetric_mape`, or any
      `(prediction, truth) -> scalar`.
    - `max_steps`: step budget of the long solve.

    **Returns:**

    An `ExtrapolationResult`.

    **Raises:**

    `ValueError` for a non-`NeuralODE` dynamics, mismatched shapes, non-finite inputs or
    $t_{ext} \\le t_{train} \\le t_0$.
    """
    initial_states = _checked_initial_states(dynamics, initial_states, t_train, t_ext)
    width = dynamics.field.width
    num_times = check_count("num_times", num_times, 8)
    threshold = check_positive("threshold", threshold)
    max_steps = check_count("max_steps", max_steps)
    grid = np.linspace(dynamics.t0, t_ext, num_times)
    dtype = jnp.zeros(()).dtype
    truth_states = _truth_states(truth, initial_states, grid, width, num_times, dtype)
    long_ode = _long_ode(dynamics, t_ext, grid, max_steps)
    out = _extrapolate_core(
        long_ode, jnp.asarray(initial_states, dtype), jnp.asarray(truth_states, dtype), error_metric
    )
    out = {k: np.asarray(v) for k, v in out.items()}
    ts, errors, model = out["ts"], out["errors"], out["model"]
    truth_states = np.asarray(truth_states)

    vpt, in_lyapunov = _valid_prediction_time(ts, errors, threshold, t_train, t_ext, truth)
    growth_model = np.array([_growth(ts, m, t_train) for m in model])
    growth_truth = np.array([_growth(ts, y, t_train) for y in truth_states])
    displacement, bound, holds = _bounded_field_check(ts, model, out["speeds"])
    succeeded = out["result"] == 0
    return ExtrapolationResult(
        ts=ts,
        model_states=model,
        errors=errors,
        valid_prediction_time=vpt,
        in_lyapunov_times=in_lyapunov,
        model_rate=growth_model[:, 0],
        model_power=growth_model[:, 1],
        truth_rate=growth_truth[:, 0],
        truth_power=growth_truth[:, 1],
        displacement=displacement,
        displacement_bound=bound,
        bound_holds=holds,
        saturated_fraction=out["saturated_fraction"],
        jacobian_norm=out["jacobian_norm"],
        solver_result=np.asarray(out["result"]).astype(int),
        succeeded=succeeded,
        num_steps=out["num_steps"],
        t_train=float(t_train),
        t_ext=float(t_ext),
        threshold=threshold,
        notes=_extrapolation_notes(bound, succeeded),
    )
