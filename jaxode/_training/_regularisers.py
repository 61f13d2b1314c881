"""Penalties added to the training loss."""

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from .._layers import TimeVaryingLinear
from .._projection import l2_in_time
from .._surrogate import Surrogate
from ._padding import split_constants


def _check_alpha(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ValueError(f"`{name}` must be a number >= 0, got {value!r}.")


class AbstractRegulariser(eqx.Module):
    """A scalar penalty of a `Surrogate`'s parameters."""

    @abc.abstractmethod
    def __call__(self, model: Surrogate) -> Float[Array, ""]:
        """The penalty."""


def _sum_squares(tree) -> Float[Array, ""]:
    # Not a padded cohort's basis matrices: they are data, not parameters.
    leaves = jax.tree_util.tree_leaves(eqx.filter(split_constants(tree)[1], eqx.is_inexact_array))
    return sum((jnp.sum(leaf**2) for leaf in leaves), jnp.zeros(()))


class TikhonovRegulariser(AbstractRegulariser):
    """$\\frac{\\alpha}{2}\\|\\theta\\|^2 + \\frac{\\beta}{2}\\|W\\|^2$ with $\\theta$ the
    opening and dynamics parameters (all basis coefficients; all parameters of a model without
    a readout) and $W$ the readout (weight and bias), as in the study's discrete nets
    ($\\alpha = 10^{-5}$, $\\beta = 10^{-3}$).

    **Arguments:**

    - `weights`: $\\alpha$; `readout`: $\\beta$.
    """

    weights: float = 0.0
    readout: float = 0.0

    def __check_init__(self):
        _check_alpha("weights", self.weights)
        _check_alpha("readout", self.readout)

    def __call__(self, model):
        if not isinstance(model, Surrogate):
            # A model without a readout (a `TrajectoryModel`): every parameter is theta.
            return 0.5 * self.weights * _sum_squares(model)
        inner = _sum_squares((model.opening, model.dynamics))
        return 0.5 * self.weights * inner + 0.5 * self.readout * _sum_squares(model.readout)


def time_varying_layers(model) -> list[TimeVaryingLinear]:
    """Every `TimeVaryingLinear` inside `model`."""
    is_layer = lambda node: isinstance(node, TimeVaryingLinear)
    return [n for n in jax.tree_util.tree_leaves(model, is_leaf=is_layer) if is_layer(n)]


class GramRegulariser(AbstractRegulariser):
    """The L2-in-time penalty $\\frac{\\alpha}{2}\\int_0^1 \\|\\theta(\\tau)\\|^2 d\\tau =
    \\frac{\\alpha}{2}\\sum_{ij} M_{ij}\\langle\\theta_i, \\theta_j\\rangle$ over the weights and
    biases of every time-varying layer, with the basis's unit Gram matrix $M$.

    **Arguments:**

    - `alpha`: $\\alpha$.

    **References:** Rosso, Ruthotto, Sargsyan, arXiv 2507.22045.
    """

    alpha: float

    def __check_init__(self):
        _check_alpha("alpha", self.alpha)

    def __call__(self, model):
        total = jnp.zeros(())
        for layer in time_varying_layers(model):
            total = total + l2_in_time(layer.weight, layer.basis)
            if layer.bias is not None:
                total = total + l2_in_time(layer.bias, layer.basis)
        return 0.5 * self.alpha * total
