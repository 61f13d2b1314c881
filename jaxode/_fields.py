"""Time-parameterized vector fields $dz/dt = f(t, z; \\theta(t))$ shared by every model."""

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from ._bases import AbstractTimeBasis
from ._layers import Activation, TimeVaryingLinear, check_size


class AbstractField(eqx.Module):
    """A vector field on a state of size `state_size`, fed features of size `width`.

    Most fields act on the features directly (`state_size == width`); a field with an auxiliary
    state (the Hamiltonian field) lifts the features into its state with `lift` and reads them
    back with `unlift`.
    """

    width: eqx.AbstractVar[int]

    @abc.abstractmethod
    def __call__(
        self, t: Float[ArrayLike, ""], z: Float[Array, " state_size"], args=None
    ) -> Float[Array, " state_size"]:
        """The rate $dz/dt$ at time `t`; `args` is accepted for Diffrax and ignored."""

    @property
    def state_size(self) -> int:
        return self.width

    def lift(self, features: Float[Array, " width"]) -> Float[Array, " state_size"]:
        return features

    def unlift(self, state: Float[Array, " state_size"]) -> Float[Array, " width"]:
        return state

    @abc.abstractmethod
    def bases(self) -> tuple[AbstractTimeBasis, ...]:
        """The time bases the field's layers use."""


class LayerField(AbstractField):
    """$dz/dt = \\sigma(K(t) z + b(t))$, one time-varying layer (the study's ResNet layer).

    **Arguments:**

    - `width`: state size.
    - `basis`: time basis of $K$ and $b$.
    - `activation`: $\\sigma$, default `jnp.tanh`.
    - `key`: a `jax.random` key.
    """

    layer: TimeVaryingLinear
    activation: Activation = eqx.field(static=True)
    width: int = eqx.field(static=True)

    def __init__(
        self, width: int, basis: AbstractTimeBasis, activation=jnp.tanh, *, key, dtype=None
    ):
        check_size("width", width)
        self.layer = TimeVaryingLinear(width, width, basis, key=key, dtype=dtype)
        self.activation = activation
        self.width = width

    def __call__(self, t, z, args=None):
        return self.activation(self.layer(t, z))

    def bases(self):
        return (self.layer.basis,)


class MLPField(AbstractField):
    """$dz/dt = W_2(t)\\,\\sigma(W_1(t) z + b_1(t)) + b_2(t)$, the study's neural-ODE field.

    **Arguments:**

    - `width`: state size; `hidden`: hidden size (the study uses 15 and 50).
    - `basis`: time basis of every weight and bias.
    - `activation`: $\\sigma$, default `jnp.tanh`.
    - `key`: a `jax.random` key.
    """

    inner: TimeVaryingLinear
    outer: TimeVaryingLinear
    activation: Activation = eqx.field(static=True)
    width: int = eqx.field(static=True)

    def __init__(
        self,
        width: int,
        hidden: int,
        basis: AbstractTimeBasis,
        activation=jnp.tanh,
        *,
        key: PRNGKeyArray,
        dtype=None,
    ):
        check_size("width", width)
        check_size("hidden", hidden)
        k1, k2 = jax.random.split(key)
        self.inner = TimeVaryingLinear(width, hidden, basis, key=k1, dtype=dtype)
        self.outer = TimeVaryingLinear(hidden, width, basis, key=k2, dtype=dtype)
        self.activation = activation
        self.width = width

    def __call__(self, t, z, args=None):
        return self.outer(t, self.activation(self.inner(t, z)))

    def bases(self):
        return (self.inner.basis,)


class AntisymmetricField(AbstractField):
    """$dz/dt = \\sigma((K(t) - K(t)^T - \\gamma I) z + b(t))$, stable by construction.

    The Jacobian of the linear part has eigenvalues with real part $-\\gamma$, so the forward
    dynamics neither explode nor vanish for small $\\gamma > 0$ (Haber and Ruthotto 2017).
    """

    layer: TimeVaryingLinear
    gamma: float
    activation: Activation = eqx.field(static=True)
    width: int = eqx.field(static=True)

    def __init__(
        self,
        width: int,
        basis: AbstractTimeBasis,
        gamma: float = 1e-4,
        activation=jnp.tanh,
        *,
        key,
        dtype=None,
    ):
        check_size("width", width)
        if not gamma >= 0:
            raise ValueError(f"`gamma` must be >= 0, got {gamma}.")
        self.layer = TimeVaryingLinear(width, width, basis, key=key, dtype=dtype)
        self.gamma = gamma
        self.activation = activation
        self.width = width

    def __call__(self, t, z, args=None):
        k = self.layer.weight_at(t)
        a = k - k.T - self.gamma * jnp.eye(self.width, dtype=k.dtype)
        return self.activation(a @ z + self.layer.bias_at(t))

    def bases(self):
        return (self.layer.basis,)


class HamiltonianField(AbstractField):
    """Two-state field of Chang et al. (2018) with one $K(t), b(t)$ in both halves:

    $dY/dt = \\sigma(K(t) Z + b(t))$, $dZ/dt = -\\sigma(K(t)^T Y + b(t))$.

    The state is $[Y; Z]$ of size `2 * width`; features enter as $Y$ with $Z = 0$ and are read
    back from $Y$.

    **References:** B. Chang, L. Meng, E. Haber et al., "Reversible architectures for arbitrarily
    deep residual neural networks", AAAI 2018.
    """

    layer: TimeVaryingLinear
    activation: Activation = eqx.field(static=True)
    width: int = eqx.field(static=True)

    def __init__(
        self, width: int, basis: AbstractTimeBasis, activation=jnp.tanh, *, key, dtype=None
    ):
        check_size("width", width)
        self.layer = TimeVaryingLinear(width, width, basis, key=key, dtype=dtype)
        self.activation = activation
        self.width = width

    @property
    def state_size(self) -> int:
        return 2 * self.width

    def lift(self, features):
        return jnp.concatenate([features, jnp.zeros_like(features)])

    def unlift(self, state):
        return state[: self.width]

    def rate_y(self, t, z: Float[ArrayLike, " width"]) -> Float[Array, " width"]:
        """$dY/dt$ as a function of $Z$."""
        return self.activation(self.layer.weight_at(t) @ z + self.layer.bias_at(t))

    def rate_z(self, t, y: Float[ArrayLike, " width"]) -> Float[Array, " width"]:
        """$dZ/dt$ as a function of $Y$."""
        return -self.activation(self.layer.weight_at(t).T @ y + self.layer.bias_at(t))

    def __call__(self, t, z, args=None):
        y, aux = z[: self.width], z[self.width :]
        return jnp.concatenate([self.rate_y(t, aux), self.rate_z(t, y)])

    def bases(self):
        return (self.layer.basis,)
