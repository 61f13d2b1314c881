"""Dynamics on $[t_0, t_1]$: the neural ODE and its discrete cousins, over one shared field."""

import abc
import contextlib
import contextvars
import sys
import warnings
from typing import cast

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from ._bases import AbstractTimeBasis, ConstantBasis, PiecewiseConstantBasis
from ._fields import AbstractField, HamiltonianField
from ._layers import check_vector
from ._paradigms import AbstractParadigm, DiscretizeThenOptimize, as_adjoint


class Trajectory(eqx.Module):
    """Result of one solve.

    **Fields:**

    - `ts`: save times; `states`: the full state at those times (`-inf`/`inf` after a failure).
    - `final`: the features (the field's `unlift` of the state) at the last save time.
    - `result`: a `diffrax.RESULTS` value; `succeeded` tells whether it is successful.
    - `num_steps`, `num_accepted_steps`, `num_rejected_steps`: step counts of the solve.
    """

    ts: Float[Array, " num_times"]
    states: Float[Array, "*batch num_times state_size"]
    final: Float[Array, "*batch width"]
    result: diffrax.RESULTS
    num_steps: Int[Array, ""]
    num_accepted_steps: Int[Array, ""]
    num_rejected_steps: Int[Array, ""]

    @property
    def succeeded(self):
        return self.result == diffrax.RESULTS.successful


def _check_horizon(t0: float, t1: float) -> None:
    if not t1 > t0:
        raise ValueError(f"`t1` must be greater than `t0`, got t0={t0}, t1={t1}.")


class BasisWindowWarning(UserWarning):
    """Warned when a model integrates over times outside the window $[t_0, t_1]$ of a time basis
    of its field that is not clamped: there the weights $\\theta(t)$ follow the basis' formula,
    and a polynomial keeps growing (a Legendre basis of degree 3 on $[0, 1]$ reaches 1809 at
    $t = 5$). A clamped basis (`clamp=True`: the weights frozen outside the window) and a basis
    constant outside its window (`ConstantBasis`, `PiecewiseConstantBasis`) are not warned about.

    Extrapolating on purpose is allowed (the asymptotic probes do); silence the warning with
    `warnings.filterwarnings("ignore", category=jaxode.BasisWindowWarning)`.
    """


# Bases whose values outside the window are those at its ends, whatever `clamp` says.
_CONSTANT_OUTSIDE = (ConstantBasis, PiecewiseConstantBasis)


def uncovered_window(field, t0: float, t1: float) -> tuple[AbstractTimeBasis, str, float] | None:
    """The first basis of `field` that changes outside its window and whose window misses part
    of $[t_0, t_1]$.

    **Returns:** `(basis, end, time)`: `end` is `"t0"` or `"t1"`, the end of $[t_0, t_1]$
    farther outside the window, and `time` its value; `None` when every basis covers
    $[t_0, t_1]$ (to a relative $10^{-9}$ of its window), is clamped, or is constant outside
    its window.
    """
    for basis in field.bases():
        if not isinstance(basis, AbstractTimeBasis) or isinstance(basis, _CONSTANT_OUTSIDE):
            continue
        try:
            if bool(basis.clamp):
                continue
            b0, b1, lo, hi = (float(v) for v in (basis.t0, basis.t1, t0, t1))
        except TypeError:  # values traced by jax.jit (jax.errors.JAXTypeError): unknown yet
            continue
        below, above = b0 - lo, hi - b1
        if max(below, above) > 1e-9 * (b1 - b0):
            return (basis, "t0", lo) if below >= above else (basis, "t1", hi)
    return None


def basis_growth(basis: AbstractTimeBasis, time: float) -> str:
    """How far `basis` strays at `time` outside its window: its largest value there against
    its largest value at the ends of the window (where a polynomial basis is largest on it)."""
    largest = lambda t: float(np.max(np.abs(np.asarray(basis(t)))))
    try:
        with jax.ensure_compile_time_eval():  # a model may be built while a program is traced
            outside, ends = largest(time), max(largest(basis.t0), largest(basis.t1))
    except TypeError:  # traced values (jax.errors.JAXTypeError): no numbers to give
        return "its functions change there"
    return (
        f"the largest of its functions reaches {outside:.4g} at t = {time:g} ({ends:.4g} at "
        "the ends of the window)"
    )


def _caller_stacklevel() -> int:
    """The `stacklevel` of `warnings.warn` that points at the first caller outside jaxode,
    Equinox and dataclasses (who built the model), counted from the function calling this."""
    frame, level = sys._getframe(2), 2
    while frame is not None and frame.f_globals.get("__name__", "").split(".")[0] in (
        "jaxode",
        "equinox",
        "dataclasses",
    ):
        frame, level = frame.f_back, level + 1
    return level


_WINDOW_WARNINGS = contextvars.ContextVar("jaxode_window_warnings", default=True)


@contextlib.contextmanager
def window_warnings_off():
    """A context in which models built do not warn about their basis windows
    (`BasisWindowWarning`): for a caller that extrapolates on purpose (the asymptotic probes),
    or that has warned already in its own terms (the run configuration's)."""
    token = _WINDOW_WARNINGS.set(False)
    try:
        yield
    finally:
        _WINDOW_WARNINGS.reset(token)


def _warn_uncovered_window(dynamics: "AbstractDynamics") -> None:
    """Warns (`BasisWindowWarning`) when `dynamics` integrates outside the window of a basis
    of its field that is not clamped."""
    if not _WINDOW_WARNINGS.get() or not isinstance(dynamics.field, AbstractField):
        return  # warned by the caller, or a field refused by the model's own checks
    found = uncovered_window(dynamics.field, dynamics.t0, dynamics.t1)
    if found is None:
        return
    basis, end, time = found
    name, t0, t1 = type(basis).__name__, float(dynamics.t0), float(dynamics.t1)
    warnings.warn(
        f"`{end}` = {time:g} lies outside the window [{float(basis.t0):g}, {float(basis.t1):g}]"
        f" of the field's {name}, which has clamp=False: outside its window a basis keeps "
        f"evaluating its formula, and {basis_growth(basis, time)}. Set `{end}` inside the "
        f"window, give the basis a window that covers [{t0:g}, {t1:g}] ({name}(..., t0={t0:g}, "
        f"t1={t1:g})), or pass clamp=True to the basis to freeze the weights outside its "
        "window; if extrapolating is meant, silence this warning with warnings.filterwarnings("
        "'ignore', category=jaxode.BasisWindowWarning).",
        BasisWindowWarning,
        stacklevel=_caller_stacklevel(),
    )


_VALUE_CHECKS = contextvars.ContextVar("jaxode_value_checks", default=True)


@contextlib.contextmanager
def skip_value_checks():
    """A context in which jaxode's models leave their runtime NaN/inf checks of inputs
    (`Surrogate.predict`'s `x`, a dynamics' features) out of the programs traced inside it.

    Each check is a host callback (`eqx.error_if`): in a hot compiled program, such as a
    training step you write yourself, it stalls the device (docs/benchmarks.md measures it)
    and keeps the program out of JAX's persistent compilation cache. Check the
    data once on the host instead, and trace the step inside this context: the first call
    (or `.lower`) of a `jax.jit` function traces it. `fit` and `fit_cohort` do this
    themselves.

    **Example:**

    ```python
    step = jax.jit(train_step)
    with jaxode.skip_value_checks():
        params, opt_state = step(params, opt_state, xb, yb)   # traced here, without checks
    ```
    """
    token = _VALUE_CHECKS.set(False)
    try:
        yield
    finally:
        _VALUE_CHECKS.reset(token)


def check_finite(name: str, x: Array) -> Array:
    """`x`, with a runtime error (also under jit) if it holds NaN or infinite values (left
    out of programs traced under `skip_value_checks`)."""
    if not _VALUE_CHECKS.get():
        return x
    return eqx.error_if(
        x, ~jnp.all(jnp.isfinite(x)), f"`{name}` contains NaN or infinite values; clean the data."
    )


class AbstractDynamics(eqx.Module):
    """Maps features $z(t_0)$ to $z(t_1)$ by the flow, or a discretisation, of `field`.

    **Warns:** `BasisWindowWarning` when built over $[t_0, t_1]$ reaching outside the window of
    a basis of `field` that is not clamped.
    """

    field: eqx.AbstractVar[AbstractField]
    t0: eqx.AbstractVar[float]
    t1: eqx.AbstractVar[float]

    @abc.abstractmethod
    def solve(self, features: Float[Array, " width"]) -> Trajectory:
        """Integrates from the features at $t_0$; see `Trajectory`."""

    def __call__(self, features: Float[Array, " width"]) -> Float[Array, " width"]:
        """Features at $t_1$."""
        return self.solve(features).final

    def solve_batch(self, features: Float[Array, "batch width"]) -> Trajectory:
        """Solves a batch; `states` and `final` get a leading batch axis. By default every
        sample is solved on its own (vmapped); step counts then have a batch axis too."""
        return jax.vmap(self.solve)(features)

    def _initial_state(self, features):
        check_vector("features", features, self.field.width)
        return self.field.lift(check_finite("features", features))


def _save_times(ts):
    if ts is None:
        return None
    values = np.asarray(ts, dtype=np.float64)
    if values.ndim != 1 or values.size == 0 or np.any(np.diff(values) < 0):
        raise ValueError(
            f"`ts` must be a non-empty increasing 1-D sequence of save times, got {ts!r}."
        )
    return tuple(float(v) for v in values)


class NeuralODE(AbstractDynamics):
    """$dz/dt = f(t, z)$ on $[t_0, t_1]$, solved by Diffrax.

    **Arguments:**

    - `field`: the vector field.
    - `t1`: final time; `t0`: initial time (default 0).
    - `solver`: a Diffrax solver, default `diffrax.Dopri5()`.
    - `stepsize_controller`: default `diffrax.PIDController(rtol=1e-6, atol=1e-8)`; with
      `diffrax.ConstantStepSize()` pass `dt0`.
    - `dt0`: initial step; `None` lets an adaptive controller choose.
    - `max_steps`: step budget of one solve.
    - `paradigm`: `DiscretizeThenOptimize()` (default), `OptimizeThenDiscretize()`, or any
      `diffrax.AbstractAdjoint`.
    - `ts`: save times inside $[t_0, t_1]$ for `solve`; `None` saves $t_1$ only.
    - `throw`: raise when the solve fails (default). With `throw=False` a failed solve returns
      non-finite states and a `Trajectory.result` the caller can read.
    - `shared_steps`: how `solve_batch` (and so `Surrogate.predict`) solves a batch. `True`
      (default): as one ODE with shared adaptive steps, as torchdiffeq does; the weights are
      evaluated once per stage for the whole batch, which is an order of magnitude faster, and
      the error norm (the controller's, RMS by default) runs over the whole batch, so a
      sample's prediction depends on its batch at the level of the tolerance. `False`: every
      sample takes its own steps (vmapped solves), independent of the batch.
    """

    field: AbstractField
    t1: float
    t0: float = 0.0
    solver: diffrax.AbstractSolver = diffrax.Dopri5()
    stepsize_controller: diffrax.AbstractStepSizeController = diffrax.PIDController(
        rtol=1e-6, atol=1e-8
    )
    dt0: float | None = None
    max_steps: int = eqx.field(static=True, default=4096)
    paradigm: AbstractParadigm | diffrax.AbstractAdjoint = DiscretizeThenOptimize()
    ts: tuple[float, ...] | None = eqx.field(static=True, default=None, converter=_save_times)
    throw: bool = eqx.field(static=True, default=True)
    shared_steps: bool = eqx.field(static=True, default=True)

    def __check_init__(self):
        _check_horizon(self.t0, self.t1)
        if self.ts is not None and not (self.t0 <= self.ts[0] and self.ts[-1] <= self.t1):
            raise ValueError(f"`ts` must lie in [t0, t1] = [{self.t0}, {self.t1}].")
        if not isinstance(self.field, AbstractField):
            raise TypeError(f"`field` must be an AbstractField, got {type(self.field).__name__}.")
        as_adjoint(self.paradigm)
        if self.dt0 is None and isinstance(self.stepsize_controller, diffrax.ConstantStepSize):
            raise ValueError("`dt0` is required with diffrax.ConstantStepSize(); pass dt0=h.")
        if isinstance(self.max_steps, bool) or not (
            isinstance(self.max_steps, int) and self.max_steps >= 1
        ):
            raise ValueError(f"`max_steps` must be an integer >= 1, got {self.max_steps!r}.")
        _warn_uncovered_window(self)

    def integrate(self, vector_field, y0):
        """Solves $dy/dt = $ `vector_field(t, y)` from `y0` with this model's solver, window,
        step-size controller, adjoint and save times, and returns `(solution, ys)`: for fields
        built on this one, such as a batch or a cohort of them (`ys` checked when `throw`)."""
        saveat = (
            diffrax.SaveAt(t1=True)
            if self.ts is None
            else diffrax.SaveAt(ts=jnp.asarray(self.ts, dtype=y0.dtype))
        )
        solution = diffrax.diffeqsolve(
            diffrax.ODETerm(vector_field),
            self.solver,
            self.t0,
            self.t1,
            self.dt0,
            y0,
            saveat=saveat,
            stepsize_controller=self.stepsize_controller,
            adjoint=as_adjoint(self.paradigm),
            max_steps=self.max_steps,
            throw=False,
        )
        # SaveAt always saves (t1 or ts): Diffrax types `ys` and `ts` as optional PyTrees.
        ys = cast(Array, solution.ys)
        if self.throw:
            # Diffrax's own message says what failed; add what to change here.
            ys = eqx.error_if(
                ys,
                solution.result != diffrax.RESULTS.successful,
                "NeuralODE solve failed (max_steps reached or step size too small): increase "
                "`max_steps`, loosen `stepsize_controller` tolerances, or use throw=False to get "
                "the status back.",
            )
        return solution, ys

    def solve(self, features):
        solution, ys = self.integrate(self.field, self._initial_state(features))
        return Trajectory(
            ts=cast(Array, solution.ts),
            states=ys,
            final=self.field.unlift(ys[-1]),
            result=solution.result,
            num_steps=solution.stats["num_steps"],
            num_accepted_steps=solution.stats["num_accepted_steps"],
            num_rejected_steps=solution.stats["num_rejected_steps"],
        )

    def solve_batch(self, features):
        if not self.shared_steps:
            return super().solve_batch(features)
        y0 = jax.vmap(self._initial_state)(features)
        solution, ys = self.integrate(_BatchedField(self.field), y0)
        states = jnp.moveaxis(ys, 0, 1)
        return Trajectory(
            ts=cast(Array, solution.ts),
            states=states,
            final=jax.vmap(self.field.unlift)(states[:, -1]),
            result=solution.result,
            num_steps=solution.stats["num_steps"],
            num_accepted_steps=solution.stats["num_accepted_steps"],
            num_rejected_steps=solution.stats["num_rejected_steps"],
        )


class _BatchedField(eqx.Module):
    """A batch of states as one ODE: the weights $\\theta(t)$ are computed once per stage."""

    field: AbstractField

    def __call__(self, t, states, args=None):
        return jax.vmap(self.field, in_axes=(None, 0))(t, states)


def _check_steps(steps) -> None:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"`steps` must be an integer >= 1, got {steps!r}.")


def _discrete_trajectory(dynamics, states, steps):
    states = jnp.concatenate([states[0][None], states[1]])
    count = jnp.asarray(steps)
    return Trajectory(
        ts=dynamics.t0 + dynamics.step_size * jnp.arange(steps + 1, dtype=states.dtype),
        states=states,
        final=dynamics.field.unlift(states[-1]),
        result=diffrax.RESULTS.successful,
        num_steps=count,
        num_accepted_steps=count,
        num_rejected_steps=jnp.asarray(0),
    )


class _AbstractSteppedDynamics(AbstractDynamics):
    """A fixed-step scheme with `steps` steps of size $h = (t_1 - t_0)/\\text{steps}$."""

    steps: eqx.AbstractVar[int]

    def __check_init__(self):
        _check_horizon(self.t0, self.t1)
        _check_steps(self.steps)
        _warn_uncovered_window(self)

    @property
    def step_size(self) -> float:
        return (self.t1 - self.t0) / self.steps


class ResNet(_AbstractSteppedDynamics):
    """Forward Euler, $z_{j+1} = z_j + h f(t_j, z_j)$, $h = (t_1 - t_0)/n$, $t_j = t_0 + jh$.

    Gradients go through the steps (discretize-then-optimize). Equal to Diffrax `Euler` with
    constant step $h$; converges to the `NeuralODE` of the same field at first order in $h$.
    """

    field: AbstractField
    t1: float
    steps: int = eqx.field(static=True)
    t0: float = 0.0

    def solve(self, features):
        state = self._initial_state(features)
        h = self.step_size

        def step(z, j):
            z = z + h * self.field(self.t0 + j * h, z)
            return z, z

        states = jax.lax.scan(step, state, jnp.arange(self.steps, dtype=state.dtype))
        return _discrete_trajectory(self, (state, states[1]), self.steps)


class HamiltonianNet(_AbstractSteppedDynamics):
    """The symplectic two-state scheme of Chang et al. (2018) for a `HamiltonianField`:

    $Z_{j+1} = Z_j - h\\,\\sigma(K(t_j)^T Y_j + b(t_j))$,
    $Y_{j+1} = Y_j + h\\,\\sigma(K(t_j) Z_{j+1} + b(t_j))$, with $Z_0 = 0$.
    """

    field: HamiltonianField
    t1: float
    steps: int = eqx.field(static=True)
    t0: float = 0.0

    def __check_init__(self):
        if not isinstance(self.field, HamiltonianField):
            raise TypeError(
                "`field` of HamiltonianNet must be a HamiltonianField, got "
                f"{type(self.field).__name__}."
            )

    def solve(self, features):
        state = self._initial_state(features)
        h, w = self.step_size, self.field.width

        def step(s, j):
            t = self.t0 + j * h
            y, z = s[:w], s[w:]
            z = z + h * self.field.rate_z(t, y)
            y = y + h * self.field.rate_y(t, z)
            s = jnp.concatenate([y, z])
            return s, s

        states = jax.lax.scan(step, state, jnp.arange(self.steps, dtype=state.dtype))
        return _discrete_trajectory(self, (state, states[1]), self.steps)
