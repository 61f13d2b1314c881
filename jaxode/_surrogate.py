"""Surrogate models: opening layer -> dynamics -> affine readout."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from ._layers import Activation, check_size, check_vector
from ._models import AbstractDynamics, Trajectory, check_finite


class Surrogate(eqx.Module):
    """Maps parameters $y \\in \\mathbb{R}^{n_\\text{in}}$ to observations
    $c \\in \\mathbb{R}^{n_\\text{out}}$ by $z_0 = \\sigma_0(K_0 y + b_0)$, $z_T$ = dynamics($z_0$),
    $c = W z_T + w$.

    **Arguments:**

    - `in_size`, `out_size`: sizes of one input and one output.
    - `dynamics`: a `NeuralODE`, `ResNet` or `HamiltonianNet`; its field's `width` is the
      feature size.
    - `opening_activation`: $\\sigma_0$, default `jnp.tanh`; `None` makes the opening linear.
    - `key`: a `jax.random` key.

    Call on one sample; `predict` maps a batch through the dynamics' `solve_batch` (for a
    `NeuralODE` with `shared_steps=True`, one solve with shared steps).
    """

    opening: eqx.nn.Linear
    dynamics: AbstractDynamics
    readout: eqx.nn.Linear
    opening_activation: Activation | None = eqx.field(static=True)
    in_size: int = eqx.field(static=True)
    out_size: int = eqx.field(static=True)

    def __init__(
        self,
        in_size: int,
        out_size: int,
        dynamics: AbstractDynamics,
        opening_activation: Activation | None = jnp.tanh,
        *,
        key: PRNGKeyArray,
        dtype=None,
    ):
        check_size("in_size", in_size)
        check_size("out_size", out_size)
        if not isinstance(dynamics, AbstractDynamics):
            raise TypeError(
                "`dynamics` must be a NeuralODE, ResNet or HamiltonianNet, got "
                f"{type(dynamics).__name__}."
            )
        width = dynamics.field.width
        k1, k2 = jax.random.split(key)
        self.opening = eqx.nn.Linear(in_size, width, key=k1, dtype=dtype)
        self.readout = eqx.nn.Linear(width, out_size, key=k2, dtype=dtype)
        self.dynamics = dynamics
        self.opening_activation = opening_activation
        self.in_size = in_size
        self.out_size = out_size

    def features(self, x: Float[Array, " in_size"]) -> Float[Array, " width"]:
        """The opening layer's output $z_0$."""
        check_vector("x", x, self.in_size)
        z = self.opening(check_finite("x", x))
        return z if self.opening_activation is None else self.opening_activation(z)

    def __call__(self, x: Float[Array, " in_size"]) -> Float[Array, " out_size"]:
        return self.readout(self.dynamics(self.features(x)))

    def forward(self, xs: Float[Array, "batch in_size"]) -> tuple[Array, Trajectory]:
        """Outputs of a batch and the dynamics' `Trajectory` (through `solve_batch`)."""
        trajectory = self.dynamics.solve_batch(jax.vmap(self.features)(xs))
        return jax.vmap(self.readout)(trajectory.final), trajectory

    def predict(self, xs: Float[Array, "batch in_size"]) -> Float[Array, "batch out_size"]:
        """Outputs for a batch of inputs."""
        if jnp.ndim(xs) != 2 or jnp.shape(xs)[1] != self.in_size:
            raise ValueError(f"`xs` must have shape (batch, {self.in_size}), got {jnp.shape(xs)}.")
        return self.forward(xs)[0]

    def for_outputs(self, out_size: int) -> "Surrogate":
        """The model itself (a surrogate has one output size).

        **Raises:** `ValueError` if `out_size` is not `self.out_size`."""
        if out_size != self.out_size:
            raise ValueError(f"targets have {out_size} outputs; the model has {self.out_size}.")
        return self


def count_parameters(model) -> int:
    """Number of trainable (floating-point array) parameters of any Equinox model."""
    leaves = jax.tree_util.tree_leaves(eqx.filter(model, eqx.is_inexact_array))
    return int(sum(np.size(leaf) for leaf in leaves))


def count_dynamics_parameters(model) -> int:
    """Parameters of the vector field only (of a `Surrogate`, a dynamics model or a field)."""
    if isinstance(model, Surrogate):
        model = model.dynamics
    if isinstance(model, AbstractDynamics):
        model = model.field
    return count_parameters(model)
