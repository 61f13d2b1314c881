"""A zoo of physical laws to extrapolate against: closed forms where they exist, otherwise a
Diffrax reference solve at tight tolerance.

Each law is a final Module with a `vector_field`, a `trajectory(y0, ts)` and what an
extrapolation study needs to know about it (characteristic roots, largest Lyapunov exponent).
"""

import abc
import math
from typing import cast

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float


class AbstractLaw(eqx.Module):
    """An autonomous ODE $y' = F(y)$ with a reference solution.

    Subclasses give `vector_field`, `state_size` and `default_initial_state`; a closed-form
    `trajectory` overrides the reference solve (Dopri8, rtol $10^{-11}$, atol $10^{-12}$).
    """

    @property
    @abc.abstractmethod
    def state_size(self) -> int:
        """Size of the state."""

    @abc.abstractmethod
    def vector_field(
        self, t, y: Float[Array, " state_size"], args=None
    ) -> Float[Array, " state_size"]:
        """$F(y)$ (the time argument is there for Diffrax)."""

    @abc.abstractmethod
    def default_initial_state(self) -> Float[Array, " state_size"]:
        """A standard initial state for this law."""

    @property
    def lyapunov_exponent(self) -> float | None:
        """Largest Lyapunov exponent of a chaotic law, else `None`."""
        return None

    @property
    def characteristic_roots(self) -> tuple[complex, ...] | None:
        """Roots of the characteristic polynomial of a linear law, else `None`."""
        return None

    def trajectory(
        self, y0: Float[ArrayLike, " state_size"], ts: Float[ArrayLike, " num_times"]
    ) -> Float[Array, "num_times state_size"]:
        """States at the increasing times `ts`, starting from `y0` at `ts[0]`."""
        return reference_solve(self, jnp.asarray(y0), jnp.asarray(ts))


@eqx.filter_jit
def reference_solve(law: AbstractLaw, y0, ts, rtol: float = 1e-11, atol: float = 1e-12):
    """Tight-tolerance Dopri8 solve of `law` from `y0` at `ts[0]`, saved at `ts`."""
    solution = diffrax.diffeqsolve(
        diffrax.ODETerm(law.vector_field),
        diffrax.Dopri8(),
        ts[0],
        ts[-1],
        None,
        y0,
        saveat=diffrax.SaveAt(ts=ts),
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
        max_steps=1_000_000,
    )
    return cast(Array, solution.ys)  # saved at `ts`: never None


class ExponentialGrowth(AbstractLaw):
    """$y' = \\lambda y$, $\\lambda > 0$: $y = y_0 e^{\\lambda t}$."""

    rate: float = 0.5

    @property
    def state_size(self):
        return 1

    def vector_field(self, t, y, args=None):
        return self.rate * y

    def default_initial_state(self):
        return jnp.array([1.0])

    @property
    def characteristic_roots(self):
        return (complex(self.rate),)

    def trajectory(self, y0, ts):
        ts = jnp.asarray(ts)
        return jnp.asarray(y0)[None, :] * jnp.exp(self.rate * (ts - ts[0]))[:, None]


class ExponentialDecay(AbstractLaw):
    """$y' = -\\lambda y$: $y = y_0 e^{-\\lambda t}$."""

    rate: float = 0.5

    @property
    def state_size(self):
        return 1

    def vector_field(self, t, y, args=None):
        return -self.rate * y

    def default_initial_state(self):
        return jnp.array([1.0])

    @property
    def characteristic_roots(self):
        return (complex(-self.rate),)

    def trajectory(self, y0, ts):
        ts = jnp.asarray(ts)
        return jnp.asarray(y0)[None, :] * jnp.exp(-self.rate * (ts - ts[0]))[:, None]


class DampedOscillator(AbstractLaw):
    """$x'' + 2\\gamma x' + (\\gamma^2 + \\omega^2) x = 0$, state $(x, x')$, roots
    $-\\gamma \\pm i\\omega$.

    `gamma=0` is the harmonic oscillator (see `HarmonicOscillator`).
    """

    omega: float = 1.0
    gamma: float = 0.1

    @property
    def state_size(self):
        return 2

    def vector_field(self, t, y, args=None):
        x, v = y[0], y[1]
        return jnp.stack([v, -2 * self.gamma * v - (self.gamma**2 + self.omega**2) * x])

    def default_initial_state(self):
        return jnp.array([1.0, 0.0])

    @property
    def characteristic_roots(self):
        return (complex(-self.gamma, self.omega), complex(-self.gamma, -self.omega))

    def trajectory(self, y0, ts):
        ts = jnp.asarray(ts)
        s = ts - ts[0]
        # Float[ArrayLike, ...] (from AbstractLaw) reads as a scalar union to pyright when indexed.
        x0, v0 = y0[0], y0[1]  # pyright: ignore[reportIndexIssue]
        a, b = x0, (v0 + self.gamma * x0) / self.omega
        decay = jnp.exp(-self.gamma * s)
        cos, sin = jnp.cos(self.omega * s), jnp.sin(self.omega * s)
        x = decay * (a * cos + b * sin)
        v = decay * (
            (b * self.omega - self.gamma * a) * cos - (a * self.omega + self.gamma * b) * sin
        )
        return jnp.stack([x, v], axis=1)


def HarmonicOscillator(omega: float = 1.0) -> DampedOscillator:
    """$x'' + \\omega^2 x = 0$: the undamped `DampedOscillator`, roots $\\pm i\\omega$."""
    return DampedOscillator(omega=omega, gamma=0.0)


class FreeFall(AbstractLaw):
    """$h'' = -g$, state $(h, h')$: $h = h_0 + v_0 t - g t^2 / 2$ (triple root 0 of $h''' = 0$)."""

    gravity: float = 9.81

    @property
    def state_size(self):
        return 2

    def vector_field(self, t, y, args=None):
        return jnp.stack([y[1], -self.gravity * jnp.ones_like(y[1])])

    def default_initial_state(self):
        return jnp.array([0.0, 20.0])

    @property
    def characteristic_roots(self):
        return (0j, 0j, 0j)

    def trajectory(self, y0, ts):
        ts = jnp.asarray(ts)
        s = ts - ts[0]
        # Float[ArrayLike, ...] (from AbstractLaw) reads as a scalar union to pyright when indexed.
        return jnp.stack(
            [
                y0[0] + y0[1] * s - 0.5 * self.gravity * s**2,  # pyright: ignore[reportIndexIssue]
                y0[1] - self.gravity * s,  # pyright: ignore[reportIndexIssue]
            ],
            axis=1,
        )


class LogisticGrowth(AbstractLaw):
    """$y' = r y (1 - y/K)$: $y = K / (1 + (K/y_0 - 1) e^{-rt})$.

    A Riccati equation, like a one-neuron sigmoid net: the positive control where a saturating
    network can extrapolate.
    """

    rate: float = 1.0
    capacity: float = 1.0

    @property
    def state_size(self):
        return 1

    def vector_field(self, t, y, args=None):
        return self.rate * y * (1.0 - y / self.capacity)

    def default_initial_state(self):
        return jnp.array([0.05])

    def trajectory(self, y0, ts):
        ts = jnp.asarray(ts)
        s = ts - ts[0]
        y0 = jnp.asarray(y0)
        return self.capacity / (
            1.0 + (self.capacity / y0[None, :] - 1.0) * jnp.exp(-self.rate * s)[:, None]
        )


class LotkaVolterra(AbstractLaw):
    """$x' = \\alpha x - \\beta x y$, $y' = \\delta x y - \\gamma y$; periodic orbits on which
    $V = \\delta x - \\gamma \\ln x + \\beta y - \\alpha \\ln y$ is conserved."""

    alpha: float = 2.0 / 3.0
    beta: float = 4.0 / 3.0
    gamma: float = 1.0
    delta: float = 1.0

    @property
    def state_size(self):
        return 2

    def vector_field(self, t, y, args=None):
        x, p = y[0], y[1]
        return jnp.stack([self.alpha * x - self.beta * x * p, self.delta * x * p - self.gamma * p])

    def default_initial_state(self):
        return jnp.array([1.0, 1.0])

    def invariant(self, y: Float[ArrayLike, "*batch 2"]) -> Float[Array, "*batch"]:
        """The conserved quantity $V$."""
        # Float[ArrayLike, ...] reads as a scalar union to pyright when indexed.
        x, p = y[..., 0], y[..., 1]  # pyright: ignore[reportIndexIssue]
        # A NumPy `y` gives an Array all the same: NumPy defers to jax.Array in arithmetic.
        value = self.delta * x - self.gamma * jnp.log(x) + self.beta * p - self.alpha * jnp.log(p)
        return value  # pyright: ignore[reportReturnType]


class Lorenz63(AbstractLaw):
    """$x' = \\sigma(y - x)$, $y' = x(\\rho - z) - y$, $z' = xy - \\beta z$; chaotic at the classic
    parameters with largest Lyapunov exponent about 0.906."""

    sigma: float = 10.0
    rho: float = 28.0
    beta: float = 8.0 / 3.0

    @property
    def state_size(self):
        return 3

    def vector_field(self, t, y, args=None):
        x, p, z = y[0], y[1], y[2]
        return jnp.stack([self.sigma * (p - x), x * (self.rho - z) - p, x * p - self.beta * z])

    def default_initial_state(self):
        return jnp.array([-8.0, 7.0, 27.0])

    @property
    def lyapunov_exponent(self):
        # Classic parameters only (Sprott 2003: 0.9056).
        return 0.9056 if (self.sigma, self.rho, self.beta) == (10.0, 28.0, 8.0 / 3.0) else None


class Roessler(AbstractLaw):
    """$x' = -y - z$, $y' = x + a y$, $z' = b + z(x - c)$; chaotic at $a = b = 0.2$, $c = 5.7$
    with largest Lyapunov exponent about 0.0714."""

    a: float = 0.2
    b: float = 0.2
    c: float = 5.7

    @property
    def state_size(self):
        return 3

    def vector_field(self, t, y, args=None):
        x, p, z = y[0], y[1], y[2]
        return jnp.stack([-p - z, x + self.a * p, self.b + z * (x - self.c)])

    def default_initial_state(self):
        return jnp.array([1.0, 1.0, 0.0])

    @property
    def lyapunov_exponent(self):
        return 0.0714 if (self.a, self.b, self.c) == (0.2, 0.2, 5.7) else None


@eqx.filter_jit
def largest_lyapunov_exponent(
    law: AbstractLaw,
    y0: Float[Array, " state_size"],
    *,
    duration: float,
    renormalise_every: float = 1.0,
    transient: float = 10.0,
) -> Float[Array, ""]:
    """Benettin estimate of the largest Lyapunov exponent: the tangent linear flow is solved
    alongside the state and renormalised every `renormalise_every` time units."""
    y = reference_solve(law, y0, jnp.array([0.0, transient]), 1e-9, 1e-10)[-1]
    num = int(math.ceil(duration / renormalise_every))

    def augmented(t, state, args):
        y, v = state
        value, tangent = jax.jvp(lambda z: law.vector_field(t, z), (y,), (v,))
        return value, tangent

    def step(carry, _):
        y, v = carry
        solution = diffrax.diffeqsolve(
            diffrax.ODETerm(augmented),
            diffrax.Dopri8(),
            0.0,
            renormalise_every,
            None,
            (y, v),
            stepsize_controller=diffrax.PIDController(rtol=1e-9, atol=1e-10),
            max_steps=100_000,
        )
        ys = cast(tuple[Array, Array], solution.ys)  # saved at t1: never None
        y, v = ys[0][-1], ys[1][-1]
        growth = jnp.linalg.norm(v)
        return (y, v / growth), jnp.log(growth)

    v0 = jnp.ones_like(y) / jnp.sqrt(y.shape[0])
    _, logs = jax.lax.scan(step, (y, v0), None, length=num)
    return jnp.sum(logs) / (num * renormalise_every)
