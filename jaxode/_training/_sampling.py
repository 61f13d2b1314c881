"""Minibatch samplers: which rows of the training set each optimisation step sees, drawn on the
device as a pure function of the key and the step, so that a resumed run replays the same
batches."""

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Int, PRNGKeyArray, PyTree


class AbstractSampler(eqx.Module):
    """Draws the row indices of the minibatch of a step.

    A sampler may precompute, once for several steps, what `indices_from` reads (`table`):
    with short chunks between evaluations this keeps a per-step cost out of every step.
    """

    @abc.abstractmethod
    def indices(
        self, key: PRNGKeyArray, step: Int[Array, ""], num_samples: int, batch_size: int
    ) -> Int[Array, " batch_size"]:
        """Row indices of the minibatch of `step`."""

    @abc.abstractmethod
    def table(
        self, key: PRNGKeyArray, step: Int[Array, ""], num_samples: int, batch_size: int, steps: int
    ) -> PyTree:
        """What `indices_from` needs for the `steps` steps from `step` on (`None`: nothing)."""

    @abc.abstractmethod
    def indices_from(
        self,
        table: PyTree,
        key: PRNGKeyArray,
        step: Int[Array, ""],
        num_samples: int,
        batch_size: int,
    ) -> Int[Array, " batch_size"]:
        """`indices(key, step, ...)`, read from a `table` that covers `step`."""


class EpochSampler(AbstractSampler):
    """Epoch $e$ visits the samples in the order `permutation(fold_in(key, e))`, cut into
    consecutive batches; the last partial batch of an epoch is dropped."""

    def indices(self, key, step, num_samples, batch_size):
        epoch, offset = jnp.divmod(step, num_samples // batch_size)
        order = jax.random.permutation(jax.random.fold_in(key, epoch), num_samples)
        return jax.lax.dynamic_slice(order, (offset * batch_size,), (batch_size,))

    def table(self, key, step, num_samples, batch_size, steps):
        per_epoch = num_samples // batch_size
        first = step // per_epoch
        # `steps` consecutive steps reach at most (steps - 2) // per_epoch + 2 epochs.
        reach = (steps - 2) // per_epoch + 2
        epochs = first + jnp.arange(reach)
        permute = lambda e: jax.random.permutation(jax.random.fold_in(key, e), num_samples)
        return first, jax.vmap(permute)(epochs)

    def indices_from(self, table, key, step, num_samples, batch_size):
        first, orders = table
        epoch, offset = jnp.divmod(step, num_samples // batch_size)
        order = orders[jnp.clip(epoch - first, 0, orders.shape[0] - 1)]
        return jax.lax.dynamic_slice(order, (offset * batch_size,), (batch_size,))


class ReplacementSampler(AbstractSampler):
    """The batch of step $s$ is drawn uniformly with replacement with `fold_in(key, s)`."""

    def indices(self, key, step, num_samples, batch_size):
        return jax.random.randint(jax.random.fold_in(key, step), (batch_size,), 0, num_samples)

    def table(self, key, step, num_samples, batch_size, steps):
        return None

    def indices_from(self, table, key, step, num_samples, batch_size):
        return self.indices(key, step, num_samples, batch_size)
