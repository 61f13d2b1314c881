"""Models fitted to trajectories: a neural ODE that maps the start of a window, $(t, y(t))$, to
the states at the window's equispaced times, with weights $\\theta(t)$ in absolute time."""

import dataclasses
from collections.abc import Callable
from typing import cast

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ._fields import AbstractField
from ._layers import check_vector
from ._models import NeuralODE, Trajectory, check_finite


def cube(y: Float[Array, " state"]) -> Float[Array, " state"]:
    """$y^3$ componentwise: the study's spiral model sees $y^3$, as its true field does."""
    return y**3


class ClockField(AbstractField):
    """`field` on a state that carries its own clock: $d/ds\\,[y, t] = [f(t, g(y)), 1]$, so
    that windows starting at different times $t$ can be solved as one batch over the local
    time $s$ while the weights $\\theta(t)$ see absolute time.

    **Arguments:**

    - `field`: the vector field $f$ on the physical state.
    - `input_map`: $g$ (default: the identity); for example `cube`.

    The clock's rate is exactly 1, so every Runge-Kutta method integrates it without error
    and it adds nothing to the local error estimate, but it is one more component of the
    controller's error norm (an RMS norm over $n + 1$ instead of $n$ components).
    """

    field: AbstractField
    input_map: Callable | None = eqx.field(static=True)
    width: int = eqx.field(static=True)

    def __init__(self, field: AbstractField, input_map: Callable | None = None):
        if not isinstance(field, AbstractField):
            raise TypeError(f"`field` must be an AbstractField, got {type(field).__name__}.")
        if field.state_size != field.width:
            raise ValueError("`field` must act on its features directly (state_size == width).")
        self.field = field
        self.input_map = input_map
        self.width = field.width + 1

    def __call__(self, s, z, args=None):
        y, t = z[:-1], z[-1]
        u = y if self.input_map is None else self.input_map(y)
        return jnp.concatenate([self.field(t, u), jnp.ones((1,), z.dtype)])

    def bases(self):
        return self.field.bases()


def _offsets(dt: float, num_points: int) -> tuple[float, ...]:
    return tuple(float(v) for v in dt * np.arange(num_points))


class TrajectoryModel(eqx.Module):
    """$dy/dt = f(t, g(y); \\theta(t))$ fitted to a trajectory sampled every `dt`: one sample's
    input is a window's start $[t, y(t)]$ and its output the states at $t, t + dt, \\ldots,
    t + (\\text{num\\_points} - 1)\\,dt$, flattened point by point (the first is $y(t)$ itself).

    **Arguments:**

    - `field`: the vector field on the state (`MLPField(2, 50, basis)` for the spiral); its
      basis window and `clamp` decide what $\\theta(t)$ does outside the training region.
    - `dt`: the sample spacing; `num_points`: points per window.
    - `input_map`: $g$ (default identity; `cube` for the study's spiral model).
    - `**solve`: keyword arguments of `NeuralODE` (`solver`, `stepsize_controller`, `dt0`,
      `max_steps`, `paradigm`, `throw`, `shared_steps`).

    `with_points(n)` gives the same parameters over windows of `n` points: training fits
    short windows, validation and test integrate whole regions from their first state.
    """

    dynamics: NeuralODE
    dt: float = eqx.field(static=True)

    def __init__(
        self,
        field: AbstractField,
        dt: float,
        num_points: int,
        input_map: Callable | None = None,
        **solve,
    ):
        if not (isinstance(dt, (int, float)) and not isinstance(dt, bool) and dt > 0):
            raise ValueError(f"`dt` must be a number > 0, got {dt!r}.")
        _check_points(num_points)
        clock = ClockField(field, input_map)
        horizon = dt * (num_points - 1)
        self.dynamics = NeuralODE(clock, horizon, ts=_offsets(dt, num_points), **solve)
        self.dt = float(dt)

    @property
    def state_size(self) -> int:
        return cast(ClockField, self.dynamics.field).field.width  # built in __init__

    @property
    def num_points(self) -> int:
        ts = self.dynamics.ts
        assert ts is not None  # always given in __init__
        return len(ts)

    @property
    def in_size(self) -> int:
        return self.state_size + 1

    @property
    def out_size(self) -> int:
        return self.num_points * self.state_size

    def with_points(self, num_points: int) -> "TrajectoryModel":
        """The same model over windows of `num_points` points."""
        _check_points(num_points)
        dynamics = dataclasses.replace(
            self.dynamics, t1=self.dt * (num_points - 1), ts=_offsets(self.dt, num_points)
        )
        return eqx.tree_at(lambda m: m.dynamics, self, dynamics)

    def for_outputs(self, out_size: int) -> "TrajectoryModel":
        """The model whose samples have `out_size` outputs.

        **Raises:** `ValueError` if `out_size` is not a multiple of the state size."""
        if out_size % self.state_size or out_size // self.state_size < 2:
            raise ValueError(
                f"a target of {out_size} values is not a window of at least 2 states of size "
                f"{self.state_size}."
            )
        return self.with_points(out_size // self.state_size)

    def features(self, x: Float[Array, " in_size"]) -> Float[Array, " width"]:
        """The solver's initial state $[y, t]$ of an input $[t, y]$."""
        check_vector("x", x, self.in_size)
        x = check_finite("x", x)
        return jnp.concatenate([x[1:], x[:1]])

    def forward(self, xs: Float[Array, "batch in_size"]) -> tuple[Array, Trajectory]:
        """Outputs of a batch and the dynamics' `Trajectory` (`states` with the clock)."""
        trajectory = self.dynamics.solve_batch(jax.vmap(self.features)(xs))
        states = trajectory.states[..., :-1]
        return states.reshape(states.shape[0], -1), trajectory

    def predict(self, xs: Float[Array, "batch in_size"]) -> Float[Array, "batch out_size"]:
        """Outputs for a batch of window starts."""
        if jnp.ndim(xs) != 2 or jnp.shape(xs)[1] != self.in_size:
            raise ValueError(f"`xs` must have shape (batch, {self.in_size}), got {jnp.shape(xs)}.")
        return self.forward(xs)[0]

    def __call__(self, x: Float[Array, " in_size"]) -> Float[Array, " out_size"]:
        return self.predict(x[None])[0]


def _check_points(num_points) -> None:
    if isinstance(num_points, bool) or not isinstance(num_points, int) or num_points < 2:
        raise ValueError(f"`num_points` must be an integer >= 2, got {num_points!r}.")
