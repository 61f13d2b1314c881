"""Minimal polynomial ODE: the smallest order $k$ and degree $D$ of a relation
$Q(g, g', \\dots, g^{(k)}) = 0$ shared by a family of curves.

**References:** Dakhmouche and Gorji, "Why Cannot Neural Networks Master Extrapolation?
Insights from Physical Laws", arXiv 2510.04102 (2025): the order and degree of this ODE measure
the "structural variability" a model can express.
"""

import dataclasses
import itertools
import operator
from collections.abc import Callable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PyTree

from ._common import (
    ProbeResult,
    as_float_array,
    check_count,
    check_positive,
    check_radii,
    format_table,
)
from ._rays import forward_mode


def monomial_exponents(
    num_variables: int | np.integer, degree: int | np.integer
) -> list[tuple[int, ...]]:
    """Exponent tuples of all monomials of total degree <= `degree`, by degree, then
    lexicographically."""
    out = []
    for total in range(degree + 1):
        for combo in itertools.product(range(total + 1), repeat=operator.index(num_variables)):
            if sum(combo) == total:
                out.append(combo)
    return out


def derivatives(curve: Callable, r, order: int):
    """$(g, g', \\dots, g^{(order)})$ at scalar `r`, by nested forward-mode differentiation."""

    def stack(k):
        if k == 0:
            return lambda s: jnp.atleast_1d(curve(s))
        lower = stack(k - 1)

        def f(s):
            values, tangents = jax.jvp(lower, (s,), (jnp.ones_like(s),))
            return jnp.concatenate([values[:1], tangents])

        return f

    return stack(order)(r)


@eqx.filter_jit
def _relation_scan(family, members, radii, max_order, max_degree):
    def one(member, r):
        return derivatives(lambda s: family(member, s), r, max_order)

    values = jax.vmap(lambda m: jax.vmap(lambda r: one(m, r))(radii))(members)
    values = values.reshape(-1, max_order + 1)
    finite = jnp.all(jnp.isfinite(values), axis=1, keepdims=True)
    values = jnp.where(finite, values, 0.0)
    # Scale each variable to unit RMS so that monomials of different degrees are comparable.
    scales = jnp.sqrt(jnp.mean(values**2, axis=0))
    scales = jnp.where(scales > 0, scales, 1.0)
    scaled = values / scales
    results = []
    for order in range(1, max_order + 1):
        for degree in range(1, max_degree + 1):
            exponents = np.array(monomial_exponents(order + 1, degree))
            columns = jnp.prod(scaled[:, None, : order + 1] ** exponents[None], axis=-1)
            columns = jnp.where(finite, columns, 0.0)
            norms = jnp.linalg.norm(columns, axis=0)
            norms = jnp.where(norms > 0, norms, 1.0)
            _, singular, vh = jnp.linalg.svd(columns / norms, full_matrices=False)
            ratio = singular[-1] / singular[0]
            # Back to coefficients of monomials in the unscaled variables.
            scale_of_monomial = jnp.prod(scales[: order + 1] ** exponents, axis=-1)
            coefficients = vh[-1] / norms / scale_of_monomial
            results.append((ratio, coefficients))
    return results


@dataclasses.dataclass(frozen=True)
class MinimalODEResult(ProbeResult):
    """Smallest polynomial relation $Q(g, \\dots, g^{(k)}) = 0$ found.

    **Fields:**

    - `found`: whether any (order, degree) in the searched range fits within `rtol`.
    - `order`, `degree`: the smallest order, then the smallest degree at that order (0 if none).
    - `exponents`: exponent tuples $(e_0, \\dots, e_k)$ of the monomials $\\prod_j (g^{(j)})^{e_j}$.
    - `coefficients`: the relation's coefficients, scaled so that the largest is 1 in modulus
      (entries below $10^{-8}$ set to 0).
    - `residual_table`: (max_order, max_degree) relative smallest singular values
      $\\sigma_{min}/\\sigma_{max}$ of the scaled monomial matrix.
    - `num_samples`: rows of the monomial matrix (members x radii).
    """

    found: bool
    order: int
    degree: int
    exponents: tuple[tuple[int, ...], ...]
    coefficients: np.ndarray
    residual_table: np.ndarray
    num_samples: int

    def relation(self) -> str:
        """The relation as text, with $y_j = g^{(j)}$."""
        if not self.found:
            return "none found"
        terms = []
        for exponent, c in zip(self.exponents, self.coefficients):
            if c == 0:
                continue
            factors = [
                f"y{j}" + (f"^{e}" if e > 1 else "") for j, e in enumerate(exponent) if e > 0
            ]
            terms.append(f"{c:+.6g}" + ("*" + "*".join(factors) if factors else ""))
        return " ".join(terms) + " = 0"

    def as_dict(self) -> dict:
        out = super().as_dict()
        out["relation"] = self.relation()
        return out

    def _table(self):
        max_degree = self.residual_table.shape[1]
        header = ["order"] + [f"D={d}" for d in range(1, max_degree + 1)]
        rows = [[k + 1, *self.residual_table[k]] for k in range(self.residual_table.shape[0])]
        return header, rows

    def __str__(self):
        found = (
            f"order {self.order}, degree {self.degree}: {self.relation()}" if self.found else "none"
        )
        return (
            f"MinimalODEResult (sigma_min / sigma_max per order and degree)\n"
            f"{format_table(*self._table())}\nminimal relation: {found}"
        )


def minimal_ode(
    family: Callable[[PyTree, Float[Array, ""]], Float[Array, ""]],
    members: PyTree,
    radii: Float[ArrayLike, " num_radii"] | Sequence[float],
    *,
    max_order: int = 3,
    max_degree: int = 4,
    rtol: float = 1e-9,
) -> MinimalODEResult:
    """Smallest order and degree of a polynomial (implicit) relation among $g, g', \\dots, g^{(k)}$
    shared by every curve $r \\mapsto$ `family(member, r)`, with its coefficients.

    Pool curves: one monotone curve satisfies spurious low-order relations ($g' = \\varphi(g)$
    for some smooth $\\varphi$). Use parallel rays (`minimal_ode_along_rays`) or copies of the
    model with perturbed hidden biases; the true relation is shared by all of them. Implicit
    relations are searched: $\\sin$ satisfies $g'^2 + \\omega^2 g^2 - \\omega^2 = 0$ at order 1.

    **Arguments:**

    - `family`: `family(member, r)` returns the scalar curve value at radius `r`.
    - `members`: a PyTree of arrays with a leading axis (one curve per entry).
    - `radii`: sample radii (at least 8).
    - `max_order`, `max_degree`: search range (order first, then degree).
    - `rtol`: a relation holds when $\\sigma_{min}/\\sigma_{max}$ of the scaled monomial matrix is
      below this.

    **Returns:**

    A `MinimalODEResult`.

    **Raises:**

    `ValueError` for bad radii, non-positive `rtol`, or search bounds below 1.
    """
    radii = check_radii(radii)
    max_order = check_count("max_order", max_order)
    max_degree = check_count("max_degree", max_degree)
    rtol = check_positive("rtol", rtol)
    leaves = jax.tree_util.tree_leaves(members)
    if not leaves or any(jnp.ndim(x) == 0 for x in leaves):
        raise ValueError(
            "`members` must be a PyTree of arrays with a leading axis (one row per curve)."
        )
    num_members = jnp.shape(leaves[0])[0]
    dtype = jnp.zeros(()).dtype
    results = _relation_scan(family, members, jnp.asarray(radii, dtype), max_order, max_degree)
    ratios = np.array([float(r) for r, _ in results]).reshape(max_order, max_degree)
    hits = np.argwhere(ratios < rtol)
    if len(hits) == 0:
        return MinimalODEResult(False, 0, 0, (), np.zeros(0), ratios, int(num_members * radii.size))
    order_index, degree_index = hits[0]
    coefficients = np.asarray(results[order_index * max_degree + degree_index][1], dtype=float)
    coefficients = coefficients / coefficients[np.argmax(np.abs(coefficients))]
    coefficients = np.where(np.abs(coefficients) < 1e-8, 0.0, coefficients)
    return MinimalODEResult(
        found=True,
        order=int(order_index + 1),
        degree=int(degree_index + 1),
        exponents=tuple(monomial_exponents(order_index + 2, degree_index + 1)),
        coefficients=coefficients,
        residual_table=ratios,
        num_samples=int(num_members * radii.size),
    )


def minimal_ode_along_rays(
    model: Callable,
    base_points: Float[ArrayLike, "num_base in_size"] | Sequence[Sequence[float]],
    direction: Float[ArrayLike, " in_size"] | Sequence[float],
    radii: Float[ArrayLike, " num_radii"] | Sequence[float],
    *,
    output: int = 0,
    max_order: int = 3,
    max_degree: int = 4,
    rtol: float = 1e-9,
) -> MinimalODEResult:
    """`minimal_ode` pooled over the parallel rays $x_0 + r d$, one per base point, of one
    output of `model` (input dimension >= 2; for scalar inputs pool over bias-perturbed copies
    with `minimal_ode`).

    **Arguments:**

    - `model`: a function of one input vector.
    - `base_points`: ray origins, (num_base, in_size), at least 2 of them.
    - `direction`: the common direction (normalised to unit length).
    - `radii`, `max_order`, `max_degree`, `rtol`: as for `minimal_ode`.
    - `output`: which output to study.

    **Returns / Raises:** as `minimal_ode`; also `ValueError` for mismatched shapes.
    """
    base_points = as_float_array("base_points", base_points, (2,))
    direction = as_float_array("direction", direction, (1,))
    if direction.shape[0] != base_points.shape[1]:
        raise ValueError(
            f"`direction` must have {base_points.shape[1]} entries like the base points, got "
            f"{direction.shape}."
        )
    if base_points.shape[0] < 2:
        raise ValueError(
            "`base_points` needs at least 2 rows: pooling over rays avoids spurious relations."
        )
    norm = np.linalg.norm(direction)
    if norm == 0:
        raise ValueError("`direction` must be non-zero.")
    unit = jnp.asarray(direction / norm)
    model = forward_mode(model)

    def family(x0, r):
        return jnp.atleast_1d(model(x0 + r * unit))[output]

    return minimal_ode(
        family,
        jnp.asarray(base_points),
        radii,
        max_order=max_order,
        max_degree=max_degree,
        rtol=rtol,
    )
