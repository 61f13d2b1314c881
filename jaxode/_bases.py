r"""Time bases: the functions $\phi_k(t)$ of the expansion
$\theta(t) = \sum_k \theta_k \phi_k(t)$."""

import abc
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float


def _check_window(t0: float, t1: float) -> None:
    if not (math.isfinite(t0) and math.isfinite(t1)):
        raise ValueError(f"`t0` and `t1` must be finite, got t0={t0}, t1={t1}.")
    if t1 <= t0:
        raise ValueError(
            f"`t1` must be greater than `t0`, got t0={t0}, t1={t1}; pass a window with t0 < t1."
        )


class AbstractTimeBasis(eqx.Module):
    """A finite family of functions of time on the window $[t_0, t_1]$.

    Every basis works on the rescaled time $\\tau = (t - t_0) / (t_1 - t_0) \\in [0, 1]$.
    Outside the window the basis either keeps evaluating its formula (`clamp=False`, the
    default: a polynomial keeps growing) or holds the value at the nearest end of the window
    (`clamp=True`: the weights are frozen outside the training window). With `clamp=True` the
    time derivative is the formula's on the closed window $[t_0, t_1]$ (one-sided at its ends)
    and zero outside it.
    """

    t0: eqx.AbstractVar[float]
    t1: eqx.AbstractVar[float]
    clamp: eqx.AbstractVar[bool]

    @property
    @abc.abstractmethod
    def num_basis(self) -> int:
        """Number of basis functions."""

    @abc.abstractmethod
    def evaluate_tau(self, tau: Float[ArrayLike, ""]) -> Float[Array, " num_basis"]:
        """Values of the basis functions at rescaled time `tau` (not clamped)."""

    @abc.abstractmethod
    def unit_gram(self) -> np.ndarray:
        """Exact Gram matrix $\\int_0^1 \\phi_i \\phi_j \\, d\\tau$ in float64 (NumPy)."""

    def breakpoints(self) -> tuple[float, ...]:
        """Points of $[0, 1]$ where a basis function may be non-smooth (for quadrature)."""
        return (0.0, 1.0)

    def _power_form(self) -> tuple[list[list[int]], np.ndarray] | None:
        """Exact coefficients in powers of $\\tau$, or `None` for a basis that is not polynomial.

        **Returns:** `(coefficients, scale)` with integer `coefficients[j][k]` and a float64
        vector `scale` such that $\\phi_k(\\tau) = s_k \\sum_j c_{jk} \\tau^j$; used for exact
        changes of basis (`projection_matrix`). `None` by default.
        """
        return None

    def tau(self, t: Float[ArrayLike, "*times"]) -> Float[Array, "*times"]:
        """Rescaled time, clamped to $[0, 1]$ when `clamp` is set."""
        tau = (jnp.asarray(t) - self.t0) / (self.t1 - self.t0)
        if not self.clamp:
            return tau
        # Not jnp.clip: its derivative is 1/2 at the ends of the window; this keeps the
        # formula's derivative on the closed window and zero outside it.
        return jnp.where(tau < 0.0, 0.0, jnp.where(tau > 1.0, 1.0, tau)).astype(tau.dtype)

    def __call__(self, t: Float[ArrayLike, ""]) -> Float[Array, " num_basis"]:
        """Values $\\phi_k(t)$ of all basis functions at the scalar time `t`."""
        return self.evaluate_tau(self.tau(t))

    def gram(self) -> Float[Array, "num_basis num_basis"]:
        """Exact Gram matrix $M_{ij} = \\int_{t_0}^{t_1} \\phi_i(t) \\phi_j(t) \\, dt$."""
        return jnp.asarray((self.t1 - self.t0) * self.unit_gram())


class ConstantBasis(AbstractTimeBasis):
    """One constant function: time-invariant (static) weights."""

    t0: float = 0.0
    t1: float = 1.0
    clamp: bool = False

    def __check_init__(self):
        _check_window(self.t0, self.t1)

    @property
    def num_basis(self) -> int:
        return 1

    def evaluate_tau(self, tau):
        return jnp.ones((1,), dtype=jnp.result_type(tau, float))

    def unit_gram(self):
        return np.ones((1, 1))

    def _power_form(self):
        return [[1]], np.ones(1)


def _check_degree(degree: int) -> None:
    if isinstance(degree, bool) or not isinstance(degree, (int, np.integer)) or degree < 0:
        raise ValueError(f"`degree` must be an integer >= 0, got {degree!r}.")


class AbstractPolynomialBasis(AbstractTimeBasis):
    """Polynomials of degree at most `degree` in $\\tau$: `degree + 1` functions."""

    degree: eqx.AbstractVar[int]

    def __check_init__(self):
        _check_degree(self.degree)
        _check_window(self.t0, self.t1)

    @property
    def num_basis(self) -> int:
        return self.degree + 1


class MonomialBasis(AbstractPolynomialBasis):
    """Monomials $\\phi_k = \\tau^k$, $k = 0, \\dots, d$: `degree + 1` functions."""

    degree: int
    t0: float = 0.0
    t1: float = 1.0
    clamp: bool = False

    def evaluate_tau(self, tau):
        tau = jnp.asarray(tau, dtype=jnp.result_type(tau, float))
        # Repeated products, not `tau ** k`: the derivative of `tau ** 0` is NaN at tau = 0.
        return _three_term(tau, self.num_basis, tau, lambda k, p, q: tau * p)

    def unit_gram(self):
        k = np.arange(self.num_basis)
        return 1.0 / (k[:, None] + k[None, :] + 1.0)

    def _power_form(self):
        n = self.num_basis
        return [[int(j == k) for k in range(n)] for j in range(n)], np.ones(n)


# Above this many basis functions a recurrence runs as a loop in the compiled program instead
# of unrolled: an unrolled recurrence makes the program (and its compile time and memory) grow
# with the degree, which at degree 10^5 exhausts a machine's memory before training starts.
UNROLLED_BASIS = 64


def _three_term(tau, num: int, first, step):
    """Runs a three-term recurrence and stacks its first `num` values."""
    values = [jnp.ones_like(tau)]
    if num > 1:
        values.append(first)
    if num <= UNROLLED_BASIS:
        for k in range(1, num - 1):
            values.append(step(k, values[-1], values[-2]))
        return jnp.stack(values[:num])

    def advance(pair, k):
        p, q = pair
        following = step(k, p, q)
        return (following, p), following

    _, rest = jax.lax.scan(advance, (values[1], values[0]), jnp.arange(1, num - 1))
    return jnp.concatenate([jnp.stack(values), rest])


class LegendreBasis(AbstractPolynomialBasis):
    """Shifted Legendre polynomials $\\phi_k = P_k(2\\tau - 1)$, $k = 0, \\dots, d$.

    Classical normalisation $P_k(1) = 1$ by default; with `orthonormal=True` each is scaled by
    $\\sqrt{2k + 1}$ so that $\\int_0^1 \\phi_i \\phi_j \\, d\\tau = \\delta_{ij}$.
    """

    degree: int
    t0: float = 0.0
    t1: float = 1.0
    clamp: bool = False
    orthonormal: bool = False

    def evaluate_tau(self, tau):
        tau = jnp.asarray(tau, dtype=jnp.result_type(tau, float))
        x = 2.0 * tau - 1.0
        # Bonnet: (k + 1) P_{k+1} = (2k + 1) x P_k - k P_{k-1}.
        values = _three_term(
            x, self.num_basis, x, lambda k, p, q: ((2 * k + 1) * x * p - k * q) / (k + 1)
        )
        if self.orthonormal:
            values = values * jnp.sqrt(2.0 * jnp.arange(self.num_basis) + 1.0).astype(x.dtype)
        return values

    def unit_gram(self):
        if self.orthonormal:
            return np.eye(self.num_basis)
        return np.diag(1.0 / (2.0 * np.arange(self.num_basis) + 1.0))

    def _power_form(self):
        # P_k(2 tau - 1) = sum_j (-1)^(k + j) C(k, j) C(k + j, j) tau^j.
        n = self.num_basis
        coefficients = [
            [(-1) ** (k + j) * math.comb(k, j) * math.comb(k + j, j) for k in range(n)]
            for j in range(n)
        ]
        k = np.arange(n)
        return coefficients, np.sqrt(2.0 * k + 1.0) if self.orthonormal else np.ones(n)


class ChebyshevBasis(AbstractPolynomialBasis):
    """Shifted Chebyshev polynomials of the first kind $\\phi_k = T_k(2\\tau - 1)$."""

    degree: int
    t0: float = 0.0
    t1: float = 1.0
    clamp: bool = False

    def evaluate_tau(self, tau):
        tau = jnp.asarray(tau, dtype=jnp.result_type(tau, float))
        x = 2.0 * tau - 1.0
        return _three_term(x, self.num_basis, x, lambda k, p, q: 2.0 * x * p - q)

    def unit_gram(self):
        # (1/2) int_{-1}^{1} T_m T_n dx = (1/2)[1/(1-(m+n)^2) + 1/(1-(m-n)^2)] for m + n even.
        k = np.arange(self.num_basis)
        m, n = k[:, None], k[None, :]
        even = (m + n) % 2 == 0
        # Odd m + n would divide by zero at |m - n| = 1; those entries are zero anyway.
        safe = lambda s: np.where(even, 1.0 - s**2, 1.0)
        value = 0.5 * (1.0 / safe(m + n) + 1.0 / safe(m - n))
        return np.where(even, value, 0.0)

    def _power_form(self):
        # T_{k+1} = 2 x T_k - T_{k-1} with x = 2 tau - 1, on integer coefficient lists.
        n = self.num_basis
        polys = [[1], [-1, 2]][:n]
        for _ in range(n - 2):
            p, q = polys[-1], polys[-2]
            two_x_p = [-2 * a for a in p] + [0]
            for i, a in enumerate(p):
                two_x_p[i + 1] += 4 * a
            polys.append([a - (q[i] if i < len(q) else 0) for i, a in enumerate(two_x_p)])
        coefficients = [[p[j] if j < len(p) else 0 for p in polys] for j in range(n)]
        return coefficients, np.ones(n)


class FourierBasis(AbstractTimeBasis):
    """Trigonometric basis $1, \\cos(2\\pi j\\tau), \\sin(2\\pi j\\tau)$, $j = 1..J$.

    `num_frequencies` $J$ gives $2J + 1$ functions, periodic with period $t_1 - t_0$.
    """

    num_frequencies: int
    t0: float = 0.0
    t1: float = 1.0
    clamp: bool = False

    def __check_init__(self):
        n = self.num_frequencies
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"`num_frequencies` must be an integer >= 0, got {n!r}.")
        _check_window(self.t0, self.t1)

    @property
    def num_basis(self) -> int:
        return 2 * self.num_frequencies + 1

    def evaluate_tau(self, tau):
        tau = jnp.asarray(tau, dtype=jnp.result_type(tau, float))
        angle = 2.0 * jnp.pi * jnp.arange(1, self.num_frequencies + 1, dtype=tau.dtype) * tau
        return jnp.concatenate([jnp.ones((1,), tau.dtype), jnp.cos(angle), jnp.sin(angle)])

    def unit_gram(self):
        return np.diag([1.0] + [0.5] * (2 * self.num_frequencies))


def _piece_index(tau: Array, pieces, t0, t1) -> Array:
    """Index (as a float of the dtype of `tau`) of the piece of $[0, 1]$ holding `tau`, one
    of `pieces` equal pieces of the window $[t_0, t_1]$, clipped to the first and last piece.

    Step times $t_j = t_0 + j h$ of a fixed-step model, computed in floating point, land a few
    ulps of the window's magnitude $\\max(|t_0|, |t_1|)$ below the boundary of piece $j$.
    A tolerance of that size in the dtype of `tau` puts them into piece $j$ (a fixed shift
    such as 1e-6 is below float32 resolution for a few hundred pieces).
    """
    magnitude = 1.0 + jnp.maximum(abs(t0), abs(t1)) / (t1 - t0)
    tolerance = (4.0 * jnp.finfo(tau.dtype).eps * pieces * magnitude).astype(tau.dtype)
    return jnp.clip(jnp.floor(tau * pieces + tolerance), 0, pieces - 1).astype(tau.dtype)


class PiecewiseConstantBasis(AbstractTimeBasis):
    """Indicators of `pieces` equal sub-intervals: one independent weight set per interval.

    This is the "unconstrained" per-step baseline of discrete networks: with `pieces` equal to
    the number of steps, step $j$ uses weight set $j$. Outside the window the first or last
    weight set applies (the basis is always clamped).
    """

    pieces: int
    t0: float = 0.0
    t1: float = 1.0
    clamp: bool = True

    def __check_init__(self):
        p = self.pieces
        if isinstance(p, bool) or not isinstance(p, (int, np.integer)) or p < 1:
            raise ValueError(f"`pieces` must be an integer >= 1, got {p!r}.")
        _check_window(self.t0, self.t1)

    @property
    def num_basis(self) -> int:
        return self.pieces

    def evaluate_tau(self, tau):
        tau = jnp.asarray(tau, dtype=jnp.result_type(tau, float))
        index = _piece_index(tau, self.pieces, self.t0, self.t1)
        return (jnp.arange(self.pieces) == index).astype(tau.dtype)

    def unit_gram(self):
        return np.eye(self.pieces) / self.pieces

    def breakpoints(self):
        return tuple(float(x) for x in np.linspace(0.0, 1.0, self.pieces + 1))
