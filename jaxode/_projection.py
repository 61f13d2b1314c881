"""Conditioning, change of basis and the L2-in-time penalty of time bases."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from ._bases import AbstractTimeBasis

_NODES_PER_PIECE = 48


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
    singular = np.linalg.svd(np.asarray(basis_matrix(basis, times), dtype=np.float64), compute_uv=False)
    return float(singular[0] / singular[-1])


def _quadrature(source: AbstractTimeBasis, target: AbstractTimeBasis):
    """Composite Gauss-Legendre nodes and weights on the target window (float64, NumPy).

    Sub-intervals split at both bases' breakpoints, so piecewise bases are integrated exactly
    and polynomials up to degree 95 are too.
    """
    t0, t1 = target.t0, target.t1
    cuts = {0.0, 1.0} | set(target.breakpoints())
    for b in source.breakpoints():
        t = source.t0 + b * (source.t1 - source.t0)
        tau = (t - t0) / (t1 - t0)
        if 0.0 < tau < 1.0:
            cuts.add(tau)
    cuts = np.array(sorted(cuts))
    x, w = np.polynomial.legendre.leggauss(_NODES_PER_PIECE)
    lo, hi = cuts[:-1, None], cuts[1:, None]
    taus = (lo + (hi - lo) * (x[None] + 1.0) / 2.0).ravel()
    weights = ((hi - lo) * w[None] / 2.0).ravel()
    return t0 + (t1 - t0) * taus, (t1 - t0) * weights


def _values64(basis: AbstractTimeBasis, times: np.ndarray) -> np.ndarray:
    with jax.enable_x64(True):
        return np.asarray(jax.vmap(basis)(jnp.asarray(times, dtype=jnp.float64)))


def projection_matrix(source: AbstractTimeBasis, target: AbstractTimeBasis) -> np.ndarray:
    """Matrix $P$ (target x source) of the L2 projection on the target window.

    Coefficients `c` of `source` become `P @ c` in `target`; exact (up to rounding) whenever the
    span of `target` on its window contains the functions of `source`.
    """
    times, weights = _quadrature(source, target)
    phi_target = _values64(target, times)
    phi_source = _values64(source, times)
    cross = phi_target.T @ (weights[:, None] * phi_source)
    gram = (target.t1 - target.t0) * target.unit_gram()
    return np.linalg.solve(gram, cross)


def project_coefficients(
    coefficients: Float[ArrayLike, "num_basis *shape"],
    source: AbstractTimeBasis,
    target: AbstractTimeBasis,
) -> Float[Array, "num_target *shape"]:
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
    coefficients: Float[ArrayLike, "num_basis *shape"], basis: AbstractTimeBasis
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
