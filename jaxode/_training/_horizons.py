"""The horizon T of a net of fixed steps as data of a cohort's member, so that nets of several
horizons train as one compiled program.

A ResNet, Hamiltonian net or neural ODE of a fixed-step solver with horizon T takes `steps`
steps of size T / steps at the times t_j = j T / steps, where its basis, on the window [0, T],
is evaluated at tau_j = j / steps. The same net with horizon 1, the window [0, 1] and its field
multiplied by T takes the same steps at the same tau_j: it equals the original to rounding.
`rescale` makes that net, with T a `Constant` of the member; `unrescale` gives back the net of
the member's own horizon.
"""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp

from .._bases import AbstractTimeBasis
from .._fields import AbstractField
from .._models import HamiltonianNet, NeuralODE, ResNet
from ._choices import FIXED_STEP_SOLVERS
from ._padding import Constant, MappedBasis

# The discrete nets, whose steps are T / steps. An adaptive neural ODE's first step depends on
# T beyond that scaling (Diffrax's initial-step heuristic), so its horizon stays structure.
RESCALABLE = ("resnet", "hamiltonian")


def horizon_is_data(m, series: bool) -> bool:
    """Whether a model of the model configuration `m` takes its horizon as member data: a
    discrete net or a neural ODE of a fixed-step solver, whose bases' window follows the
    horizon, not of a time series (whose windows fix the steps)."""
    fixed = m.model in RESCALABLE or (m.model == "node" and m.solver in FIXED_STEP_SOLVERS)
    return fixed and m.basis_window is None and not series


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


def _fixed_steps(dynamics) -> bool:
    if isinstance(dynamics, NeuralODE):
        return isinstance(dynamics.stepsize_controller, diffrax.ConstantStepSize)
    return isinstance(dynamics, (ResNet, HamiltonianNet))


def _moved(model, field, t1: float):
    """`model` with `field` and the horizon `t1`; a neural ODE keeps its number of steps."""
    dynamics = model.dynamics
    if isinstance(dynamics, NeuralODE):
        assert dynamics.dt0 is not None  # fixed steps (`_fixed_steps`)
        # t1 / steps, as the configuration's solver computes it (`SOLVERS`).
        dt0 = t1 / round(dynamics.t1 / dynamics.dt0)
        return eqx.tree_at(
            lambda m: (m.dynamics.field, m.dynamics.t1, m.dynamics.dt0), model, (field, t1, dt0)
        )
    return eqx.tree_at(lambda m: (m.dynamics.field, m.dynamics.t1), model, (field, t1))


def with_horizon(model, t1: float):
    """`model` (a `Surrogate` over a net of fixed steps whose bases' windows are its own
    [0, t1]) with the horizon `t1`, its windows and steps following: the same parameters."""
    return _moved(model, _windows_to(model.dynamics.field, t1), t1)


def rescale(model, horizon: float):
    """`model` (a `Surrogate` over a `ResNet`, `HamiltonianNet` or fixed-step `NeuralODE`
    from t0 = 0, its bases on [0, `horizon`]) as the equal net of horizon 1 with its field
    times `horizon`.

    **Raises:** `ValueError` for other dynamics, or bases whose window is not [0, horizon]."""
    dynamics = model.dynamics
    if not _fixed_steps(dynamics) or dynamics.t0 != 0.0:
        raise ValueError(
            "only a ResNet, Hamiltonian net or neural ODE of fixed steps from t0 = 0 takes its "
            "horizon as data."
        )
    bases = [b for b in jax.tree_util.tree_leaves(dynamics.field, is_leaf=_is_basis)]
    if any(_is_basis(b) and (b.t0 != 0.0 or b.t1 != horizon) for b in bases):
        raise ValueError(
            f"the bases' windows must be [0, {horizon}] (the horizon) to take it as data."
        )
    field = _windows_to(dynamics.field, 1.0)
    dtype = jax.tree_util.tree_leaves(eqx.filter(field, eqx.is_inexact_array))[0].dtype
    factor = Constant(jnp.asarray(horizon, dtype))
    scaled = ScaledField(field=field, scale=factor, width=field.width)
    return _moved(model, scaled, 1.0)


def unrescale(trained, original):
    """The rescaled `trained` net back in the horizon and windows of `original` (the member's
    model before `rescale`): its trained arrays with everything else of `original`'s."""
    field = trained.dynamics.field
    assert isinstance(field, ScaledField)
    inner = eqx.tree_at(lambda m: m.dynamics.field, trained, field.field)
    arrays = eqx.filter(inner, eqx.is_array)
    return eqx.combine(arrays, eqx.filter(original, eqx.is_array, inverse=True))
