"""Data-misfit losses of a batch of predictions."""

import abc

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float


class AbstractLoss(eqx.Module):
    """A scalar misfit between predictions and targets of shape `(batch, out_size)`."""

    @abc.abstractmethod
    def __call__(
        self, predictions: Float[Array, "batch out"], targets: Float[Array, "batch out"]
    ) -> Float[Array, ""]:
        """The loss of one batch."""


class MSELoss(AbstractLoss):
    """Mean over samples and outputs of $(p - y)^2$."""

    def __call__(self, predictions, targets):
        return jnp.mean((predictions - targets) ** 2)


class L1Loss(AbstractLoss):
    """Mean over samples and outputs of $|p - y|$ (the study's neural-ODE loss)."""

    def __call__(self, predictions, targets):
        return jnp.mean(jnp.abs(predictions - targets))


class RelativeL2Loss(AbstractLoss):
    """Mean over samples of $\\|p_i - y_i\\|^2 / (\\|y_i\\|^2 + \\epsilon)$.

    **Arguments:**

    - `eps`: guards samples with $y_i = 0$.
    """

    eps: float = 1e-12

    def __call__(self, predictions, targets):
        num = jnp.sum((predictions - targets) ** 2, axis=-1)
        den = jnp.sum(targets**2, axis=-1) + self.eps
        return jnp.mean(num / den)
