"""Polynomial bases of different kinds and degrees as data of a cohort's members, so that one
compiled program trains them all.

A member whose layers use a polynomial basis $\\phi$ of degree $d \\le D$ (static, monomial,
Legendre, Chebyshev) trains in a `MappedBasis`: the shifted Legendre polynomials $\\psi$ of
degree $D$ on the same window, shared by every member, times the member's own matrix $M$,
$\\phi_j = \\sum_i M_{ji} \\psi_i$ for $j \\le d$ and rows of zeros above. The member keeps its
own coefficients in its own basis, padded with zeros that no gradient reaches, so it follows
the optimisation path of its single run to rounding. After training, `unpad` gives back the
model of its own basis.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PyTree

from .._bases import (
    AbstractPolynomialBasis,
    AbstractTimeBasis,
    ChebyshevBasis,
    ConstantBasis,
    LegendreBasis,
    MonomialBasis,
)
from .._layers import TimeVaryingLinear
from .._projection import projection_matrix

# The bases a padded cohort can hold (`jaxode.RunConfig`'s names).
PADDABLE = ("static", "monomial", "legendre", "chebyshev")
_PADDABLE_TYPES = (ConstantBasis, MonomialBasis, LegendreBasis, ChebyshevBasis)


class Constant(eqx.Module):
    """An array of one member that training reads and never changes: training passes it
    beside the parameters (no gradient, no optimiser state, no regulariser sees it)."""

    value: Array


def is_constant(node) -> bool:
    return isinstance(node, Constant)


def split_constants(model: PyTree) -> tuple[PyTree, PyTree]:
    """`(constants, rest)`: the `Constant`s of `model` and everything else
    (`eqx.combine(constants, rest)` is `model`)."""
    return eqx.partition(model, is_constant, is_leaf=is_constant)


class MappedBasis(AbstractTimeBasis):
    """$\\phi_j(\\tau) = \\sum_i M_{ji} \\psi_i(\\tau)$: a member's basis as the shared
    `reference` basis times its own `matrix` $M$ (a `Constant`, rows of zeros past the
    member's own functions). Its Gram matrix is $M G M^T$, computed by JAX from the matrix."""

    t0: float
    t1: float
    clamp: bool
    reference: AbstractPolynomialBasis
    matrix: Constant

    @property
    def num_basis(self) -> int:
        return self.reference.num_basis

    def evaluate_tau(self, tau):
        psi = self.reference.evaluate_tau(tau)
        return self.matrix.value.astype(psi.dtype) @ psi

    def unit_gram(self) -> Float[Array, "num_basis num_basis"]:  # pyright: ignore[reportIncompatibleMethodOverride]
        m = self.matrix.value
        return m @ jnp.asarray(self.reference.unit_gram(), m.dtype) @ m.T

    def breakpoints(self):
        return self.reference.breakpoints()


def _layers(model) -> list[TimeVaryingLinear]:
    is_layer = lambda node: isinstance(node, TimeVaryingLinear)
    return [n for n in jax.tree_util.tree_leaves(model, is_leaf=is_layer) if is_layer(n)]


def paddable(model) -> bool:
    """Whether every time-varying layer of `model` uses a basis a padded cohort can hold."""
    layers = _layers(model)
    return bool(layers) and all(isinstance(layer.basis, _PADDABLE_TYPES) for layer in layers)


def padded_degree(model) -> int:
    """The degree of the largest basis of `model`'s layers."""
    return max(layer.basis.num_basis for layer in _layers(model)) - 1


def _matrix(basis: AbstractTimeBasis, reference: LegendreBasis, dtype) -> np.ndarray:
    """$M$ (reference size, reference size): row $j$ holds $\\phi_j$ in the reference basis."""
    own = projection_matrix(basis, reference).T  # (own, reference)
    matrix = np.zeros((reference.num_basis, reference.num_basis))
    matrix[: basis.num_basis] = own
    return matrix.astype(dtype)


def _pad_rows(array: Array, rows: int) -> Array:
    zeros = jnp.zeros((rows - array.shape[0], *array.shape[1:]), array.dtype)
    return jnp.concatenate([array, zeros])


def pad(model, degree: int):
    """`model` with every time-varying layer in a `MappedBasis` of reference degree
    `degree` (at least the layers' own), its coefficients padded with zeros.

    **Raises:** `ValueError` for a basis that is not polynomial or a degree below the
    model's."""
    if not paddable(model):
        raise ValueError(
            "only static, monomial, Legendre and Chebyshev bases can share a padded cohort."
        )
    if degree < padded_degree(model):
        raise ValueError(f"`degree`={degree} is below the model's {padded_degree(model)}.")
    rows = degree + 1

    def padded(layer: TimeVaryingLinear) -> TimeVaryingLinear:
        basis = layer.basis
        t0, t1, clamp = float(basis.t0), float(basis.t1), bool(basis.clamp)
        reference = LegendreBasis(degree=degree, t0=t0, t1=t1, clamp=clamp)
        matrix = Constant(jnp.asarray(_matrix(basis, reference, np.dtype(layer.weight.dtype))))
        mapped = MappedBasis(t0=t0, t1=t1, clamp=clamp, reference=reference, matrix=matrix)
        bias = None if layer.bias is None else _pad_rows(layer.bias, rows)
        return eqx.tree_at(
            lambda m: (m.weight, m.bias, m.basis),
            layer,
            (_pad_rows(layer.weight, rows), bias, mapped),
            is_leaf=lambda x: x is None,
        )

    return _replace_layers(model, padded)


def unpad(trained, original):
    """The padded model `trained` back in the bases of `original` (the member's model before
    `pad`): its own coefficients, its own basis objects."""
    own = iter(_layers(original))

    def restored(layer: TimeVaryingLinear) -> TimeVaryingLinear:
        mine = next(own)
        rows = mine.basis.num_basis
        bias = None if layer.bias is None else layer.bias[:rows]
        return eqx.tree_at(
            lambda m: (m.weight, m.bias, m.basis),
            layer,
            (layer.weight[:rows], bias, mine.basis),
            is_leaf=lambda x: x is None,
        )

    return _replace_layers(trained, restored)


def _replace_layers(model, change):
    layers = _layers(model)
    if not layers:
        return model
    is_layer = lambda node: isinstance(node, TimeVaryingLinear)
    return eqx.tree_at(
        lambda m: [n for n in jax.tree_util.tree_leaves(m, is_leaf=is_layer) if is_layer(n)],
        model,
        [change(layer) for layer in layers],
    )
