"""Conditioning, change of basis and the L2-in-time penalty of time bases."""

import functools
import math
from fractions import Fraction

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from ._bases import AbstractTimeBasis, LegendreBasis

_NODES_PER_PIECE = 48
_RATIONAL_MAX = 32  # bases up to this size move in exact rational arithmetic


def basis_matrix(
    basis: AbstractTimeBasis, times: Float[ArrayLike, " num_times"]
) -> Float[Array, "num_times num_basis"]:
    """Matrix $A_{jk} = \\phi_k(t_j)$ of the basis on a time grid."""
    times = jnp.asarray(times)
    if times.ndim != 1:
        raise ValueError(f"`times` must be a 1-D array, got shape {times.shape}.")
    return jax.vmap(basis)(times)


def condition_number(basis: AbstractTimeBasis, times: Float[ArrayLike, " num_times"]) -> float:
    """2-norm condition number of the basis matrix on `times` (ratio of singular values).

    Monomials on raw time are badly conditioned: `MonomialBasis(6, t0=0, t1=1)` evaluated on
    `linspace(0, 10, 12)` (that is, $\\tau = t$) has condition number about 6e6, while
    `LegendreBasis(6, t0=0, t1=10)` on the same grid stays below 4.
    """
    singular = np.linalg.svd(
        np.asarray(basis_matrix(basis, times), dtype=np.float64), compute_uv=False
    )
    return float(singular[0] / singular[-1])


def _quadrature(source: AbstractTimeBasis, target: AbstractTimeBasis):
    """Composite Gauss-Legendre nodes and weights on the target window (float64, NumPy).

    Sub-intervals split at both bases' breakpoints, so piecewise bases are integrated exactly,
    and each has enough nodes to integrate products of the two bases' polynomials exactly
    (at least 48 nodes: degree 95).
    """
    t0, t1 = target.t0, target.t1
    cuts = {0.0, 1.0} | set(target.breakpoints())
    for b in source.breakpoints():
        t = source.t0 + b * (source.t1 - source.t0)
        tau = (t - t0) / (t1 - t0)
        if 0.0 < tau < 1.0:
            cuts.add(tau)
    cuts = np.array(sorted(cuts))
    nodes = max(_NODES_PER_PIECE, source.num_basis + target.num_basis)
    x, w = np.polynomial.legendre.leggauss(nodes)
    lo, hi = cuts[:-1, None], cuts[1:, None]
    taus = (lo + (hi - lo) * (x[None] + 1.0) / 2.0).ravel()
    weights = ((hi - lo) * w[None] / 2.0).ravel()
    return t0 + (t1 - t0) * taus, (t1 - t0) * weights


def _values64(basis: AbstractTimeBasis, times: np.ndarray) -> np.ndarray:
    with jax.enable_x64(True):
        return np.asarray(jax.vmap(basis)(jnp.asarray(times, dtype=jnp.float64)))


def _solve_exactly(matrix, rhs) -> list[list[Fraction]]:
    """`matrix^{-1} rhs` in rational arithmetic (Gauss-Jordan on `Fraction`s)."""
    n = len(matrix)
    rows = [[Fraction(a) for a in matrix[i]] + [Fraction(b) for b in rhs[i]] for i in range(n)]
    for col in range(n):
        pivot = next((i for i in range(col, n) if rows[i][col] != 0), None)
        if pivot is None:
            raise ValueError("the power form of the target basis is singular.")
        rows[col], rows[pivot] = rows[pivot], rows[col]
        head = rows[col][col]
        rows[col] = [a / head for a in rows[col]]
        for i in range(n):
            if i != col and rows[i][col] != 0:
                factor = rows[i][col]
                rows[i] = [a - factor * b for a, b in zip(rows[i], rows[col])]
    return [row[n:] for row in rows]


def _product(a, b) -> list[list[Fraction]]:
    return [[sum((x * y for x, y in zip(row, col)), Fraction(0)) for col in zip(*b)] for row in a]


def _legendre_powers(n: int) -> list[list[int]]:
    # eqx.AbstractVar fields confuse pyright's synthesised __init__.
    return LegendreBasis(n - 1)._power_form()[0]  # pyright: ignore[reportCallIssue]


@functools.lru_cache(maxsize=32)
def _to_legendre(n: int) -> tuple:
    """Exact matrix taking power coefficients (degree < n) to shifted Legendre coefficients:
    $\\tau^j = \\sum_k (2k + 1) (j!)^2 / ((j + k + 1)! (j - k)!) P_k(2\\tau - 1)$."""
    f = math.factorial
    return tuple(
        tuple(
            Fraction((2 * k + 1) * f(j) ** 2, f(j + k + 1) * f(j - k)) if k <= j else Fraction(0)
            for j in range(n)
        )
        for k in range(n)
    )


@functools.lru_cache(maxsize=32)
def _from_legendre(powers: tuple) -> tuple:
    """Exact matrix $X$ with $P_m = \\sum_k X_{km} \\psi_k$ for the shifted Legendre $P_m$
    and the polynomials $\\psi_k = \\sum_j c_{jk} \\tau^j$ with integer `powers` $c$."""
    return tuple(map(tuple, _solve_exactly(powers, _legendre_powers(len(powers)))))


def _window_change(source: AbstractTimeBasis, target: AbstractTimeBasis, n: int):
    """Exact matrix taking power coefficients in the source's $\\tau$ to those in the
    target's: $\\tau_s = \\alpha + \\beta \\tau_t$, with the float window ends taken exactly."""
    s0, s1, t0, t1 = (Fraction(float(v)) for v in (source.t0, source.t1, target.t0, target.t1))
    alpha, beta = (t0 - s0) / (s1 - s0), (t1 - t0) / (s1 - s0)
    return [
        [math.comb(j, i) * alpha ** (j - i) * beta**i if i <= j else 0 for j in range(n)]
        for i in range(n)
    ]


def _key(powers) -> tuple:
    return tuple(tuple(int(a) for a in row) for row in powers)


def _rational_projection(source, target) -> np.ndarray:
    """Projection between polynomial bases in rational arithmetic, rounded once: the source
    in powers of the target's $\\tau$, then in the shifted Legendre polynomials of the target
    window (orthogonal there, so the projection truncates them), then in the target basis."""
    (source_powers, source_scale), (target_powers, target_scale) = (
        source._power_form(),
        target._power_form(),
    )
    n, m = max(source.num_basis, target.num_basis), target.num_basis
    # Rows are powers of tau (padded with zero rows up to degree n - 1), columns functions.
    powers = [list(row) for row in source_powers]
    powers += [[0] * source.num_basis for _ in range(n - len(powers))]
    if (source.t0, source.t1) != (target.t0, target.t1):
        powers = _product(_window_change(source, target, n), powers)
    legendre = _product(_to_legendre(n), powers)[:m]
    exact = _product(_from_legendre(_key(target_powers)), legendre)
    matrix = np.array([[float(a) for a in row] for row in exact])
    return matrix * np.asarray(source_scale)[None, :] / np.asarray(target_scale)[:, None]


def _from_legendre_float(target: AbstractTimeBasis) -> np.ndarray:
    """$X$ of `_from_legendre` for the target's own functions, in float64."""
    form = target._power_form()
    assert form is not None  # called for polynomial targets only
    powers, scale = form
    n = target.num_basis
    if n <= _RATIONAL_MAX:
        conversion = np.array([[float(a) for a in row] for row in _from_legendre(_key(powers))])
    else:
        matrix = np.array([[float(a) for a in row] for row in powers])
        conversion = np.linalg.solve(matrix, np.array(_legendre_powers(n), dtype=np.float64))
    return conversion / np.asarray(scale)[:, None]


def _projection(source: AbstractTimeBasis, target: AbstractTimeBasis) -> np.ndarray:
    if eqx.tree_equal(source, target) is True:  # the same functions on the same window
        return np.eye(source.num_basis)
    polynomial_target = target._power_form() is not None
    inside = source.t0 <= target.t0 and target.t1 <= source.t1
    if (
        polynomial_target
        and source._power_form() is not None
        and (not source.clamp or inside)
        and max(source.num_basis, target.num_basis) <= _RATIONAL_MAX
    ):
        return _rational_projection(source, target)
    times, weights = _quadrature(source, target)
    phi_source = _values64(source, times)
    if not polynomial_target:
        root = np.sqrt(weights)[:, None]
        q, r = np.linalg.qr(root * _values64(target, times))
        return np.linalg.solve(r, q.T @ (root * phi_source))
    degree = target.num_basis - 1
    # eqx.AbstractVar fields confuse pyright's synthesised __init__.
    legendre = _values64(
        LegendreBasis(degree, t0=target.t0, t1=target.t1),  # pyright: ignore[reportCallIssue]
        times,
    )
    norms = (2.0 * np.arange(degree + 1) + 1.0) / (target.t1 - target.t0)
    coefficients = norms[:, None] * (legendre.T @ (weights[:, None] * phi_source))
    return _from_legendre_float(target) @ coefficients


@functools.lru_cache(maxsize=64)
def _cached_projection(source: AbstractTimeBasis, target: AbstractTimeBasis) -> np.ndarray:
    matrix = _projection(source, target)
    matrix.setflags(write=False)
    return matrix


def projection_matrix(source: AbstractTimeBasis, target: AbstractTimeBasis) -> np.ndarray:
    """Matrix $P$ (target x source) of the L2 projection on the target window.

    Coefficients `c` of `source` become `P @ c` in `target`; exact (up to rounding) whenever the
    span of `target` on its window contains the functions of `source`.

    The route is well conditioned for every pair of bases. Between polynomial bases of at most
    32 functions (when the source is a polynomial on the whole target window: not clamped, or
    clamped on a window that holds the target's) the matrix is computed in exact rational
    arithmetic through the shifted Legendre polynomials of the target window, and rounded
    once. Onto any other polynomial target the source is projected on those Legendre
    polynomials by quadrature and then converted. Onto other targets the projection is a
    least-squares fit at the quadrature nodes, solved by QR. Monomials of degree 12 thus move
    at the rounding level of float64, where the Gram (Hilbert) system would lose every digit.

    **Arguments:**

    - `source`, `target`: time bases; the projection is taken on the window of `target`.

    **Returns:** a float64 NumPy array of shape `(target.num_basis, source.num_basis)`.
    """
    try:
        return np.array(_cached_projection(source, target))
    except TypeError:  # a basis that cannot be hashed
        return _projection(source, target)


def project_coefficients(
    coefficients: Float[ArrayLike, " num_basis *shape"],
    source: AbstractTimeBasis,
    target: AbstractTimeBasis,
) -> Float[Array, " num_target *shape"]:
    """L2 projection of $\\theta(t) = \\sum_k c_k \\phi_k(t)$ from `source` onto `target`.

    **Arguments:**

    - `coefficients`: leading axis indexes the functions of `source`.
    - `source`, `target`: time bases; the projection is taken on the window of `target`.

    **Returns:** coefficients with leading axis of length `target.num_basis`.
    """
    coefficients = jnp.asarray(coefficients)
    if coefficients.ndim < 1 or coefficients.shape[0] != source.num_basis:
        raise ValueError(
            f"`coefficients` must have leading axis of length source.num_basis="
            f"{source.num_basis}, got shape {coefficients.shape}."
        )
    matrix = jnp.asarray(projection_matrix(source, target), dtype=coefficients.dtype)
    return jnp.tensordot(matrix, coefficients, axes=1)


def l2_in_time(
    coefficients: Float[ArrayLike, " num_basis *shape"], basis: AbstractTimeBasis
) -> Float[Array, ""]:
    """Mean square of $\\theta$ over the window, $\\frac{1}{t_1 - t_0}\\int \\|\\theta(t)\\|^2 dt
    = \\sum_{ij} M_{ij} \\langle \\theta_i, \\theta_j \\rangle$ with the unit Gram matrix $M$."""
    coefficients = jnp.asarray(coefficients)
    flat = coefficients.reshape(coefficients.shape[0], -1)
    gram = jnp.asarray(basis.unit_gram(), dtype=flat.dtype)
    return jnp.sum(gram * (flat @ flat.T))


def change_basis(model, target: AbstractTimeBasis):
    """`model` with every `TimeVaryingLinear` moved to the time basis `target` by L2 projection
    of its weight and bias on the target's window: change basis or degree without retraining.

    Exact (the model computes the same function on the window) when the target space contains
    each layer's current basis; otherwise the closest weights in $L^2([t_0, t_1])$.

    **Arguments:**

    - `model`: any Equinox model holding `TimeVaryingLinear` layers (a field, dynamics,
      `Surrogate`).
    - `target`: the new time basis.
    """
    from ._layers import TimeVaryingLinear

    if not isinstance(target, AbstractTimeBasis):
        raise TypeError(f"`target` must be an AbstractTimeBasis, got {type(target).__name__}.")

    def move(node):
        if not isinstance(node, TimeVaryingLinear):
            return node
        weight = project_coefficients(node.weight, node.basis, target)
        bias = None if node.bias is None else project_coefficients(node.bias, node.basis, target)
        return eqx.tree_at(
            lambda layer: (layer.weight, layer.bias, layer.basis),
            node,
            (weight, bias, target),
            is_leaf=lambda x: x is None,
        )

    return jax.tree_util.tree_map(move, model, is_leaf=lambda n: isinstance(n, TimeVaryingLinear))
