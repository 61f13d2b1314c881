"""The horizon T of a discrete net as data of a cohort's member, so that nets of several horizons
train as one compiled program.

A ResNet or Hamiltonian net of horizon T takes `steps` steps of size T / steps at the times
t_j = j T / steps, where its basis, on the window [0, T], is evaluated at tau_j = j / steps.
The same net with horizon 1, the window [0, 1] and its field multiplied by T takes the same
steps at the same tau_j: it equals the original to rounding. `rescale` makes that net, with T
a `Constant` of the member; `unrescale` gives back the net of the member's own horizon.
"""

import equinox as eqx
import jax
import jax.numpy as jnp

from .._bases import AbstractTimeBasis
from .._fields import AbstractField
from .._models import HamiltonianNet, ResNet
from ._padding import Constant, MappedBasis

# The models whose horizon can be member data: fixed steps of size T / steps. An adaptive
# neural ODE's first step depends on T beyond that scaling, so its horizon stays structure.
RESCALABLE = ("resnet", "hamiltonian")


class ScaledField(AbstractField):
    """`scale` times `field` (and its two rates, for a Hamiltonian field)."""

    field: AbstractField
    scale: Constant
    width: int = eqx.field(static=True)

    def __call__(self, t, z, args=None):
        return self.scale.value.astype(z.dtype) * self.field(t, z)

    @property
    def state_size(self) -> int:
        return self.field.state_size

    def lift(self, features):
        return self.field.lift(features)

    def unlift(self, state):
        return self.field.unlift(state)

    def rate_y(self, t, z):
        rate = self.field.rate_y(t, z)  # pyright: ignore[reportAttributeAccessIssue]
        return self.scale.value.astype(rate.dtype) * rate

    def rate_z(self, t, y):
        rate = self.field.rate_z(t, y)  # pyright: ignore[reportAttributeAccessIssue]
        return self.scale.value.astype(rate.dtype) * rate

    def bases(self):
        return self.field.bases()


def _is_basis(node) -> bool:
    return isinstance(node, AbstractTimeBasis)


def _windows_to(tree, t1: float):
    """`tree` with every time basis on the window [0, `t1`] (a `MappedBasis` and its
    reference both)."""

    def moved(basis):
        if not _is_basis(basis):
            return basis
        if isinstance(basis, MappedBasis):
            reference = eqx.tree_at(lambda b: b.t1, basis.reference, t1)
            return eqx.tree_at(lambda b: (b.t1, b.reference), basis, (t1, reference))
        return eqx.tree_at(lambda b: b.t1, basis, t1)

    return jax.tree_util.tree_map(moved, tree, is_leaf=_is_basis)


def with_horizon(model, t1: float):
    """`model` (a `Surrogate` over a `ResNet` or `HamiltonianNet` whose bases' windows are its
    own [0, t1]) with the horizon `t1`, its windows following: the same parameters."""
    field = _windows_to(model.dynamics.field, t1)
    return eqx.tree_at(lambda m: (m.dynamics.field, m.dynamics.t1), model, (field, t1))


def rescale(model, horizon: float):
    """`model` (a `Surrogate` over a `ResNet` or `HamiltonianNet` from t0 = 0, its bases on
    [0, `horizon`]) as the equal net of horizon 1 with its field times `horizon`.

    **Raises:** `ValueError` for other dynamics, or bases whose window is not [0, horizon]."""
    dynamics = model.dynamics
    if not isinstance(dynamics, (ResNet, HamiltonianNet)) or dynamics.t0 != 0.0:
        raise ValueError("only a ResNet or Hamiltonian net from t0 = 0 takes its horizon as data.")
    bases = [b for b in jax.tree_util.tree_leaves(dynamics.field, is_leaf=_is_basis)]
    if any(_is_basis(b) and (b.t0 != 0.0 or b.t1 != horizon) for b in bases):
        raise ValueError(
            f"the bases' windows must be [0, {horizon}] (the horizon) to take it as data."
        )
    field = _windows_to(dynamics.field, 1.0)
    dtype = jax.tree_util.tree_leaves(eqx.filter(field, eqx.is_inexact_array))[0].dtype
    factor = Constant(jnp.asarray(horizon, dtype))
    scaled = ScaledField(field=field, scale=factor, width=field.width)
    return eqx.tree_at(lambda m: (m.dynamics.field, m.dynamics.t1), model, (scaled, 1.0))


def unrescale(trained, original):
    """The rescaled `trained` net back in the horizon and windows of `original` (the member's
    model before `rescale`): its trained arrays with everything else of `original`'s."""
    field = trained.dynamics.field
    assert isinstance(field, ScaledField)
    inner = eqx.tree_at(lambda m: m.dynamics.field, trained, field.field)
    arrays = eqx.filter(inner, eqx.is_array)
    return eqx.combine(arrays, eqx.filter(original, eqx.is_array, inverse=True))
