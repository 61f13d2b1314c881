"""The state a minibatch trainer carries from one step to the next, and the tree helpers that
stack members, pick one out and bring arrays to the host."""

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int, PyTree


class TrainState(eqx.Module):
    """Everything training carries from one step to the next, for one model (or, with a
    leading member axis on every leaf, for a cohort).

    **Fields:**

    - `best`, `params`, `last_good`: the model's floating-point arrays (an
      `eqx.partition` of it): best by validation error, current, and as of the last
      evaluation. `best` comes first so that it can be read from a checkpoint alone.
    - `opt_state`: the optimiser's state.
    - `step`: optimisation steps done; `status`: a `Code`.
    - `best_step`, `best_val`: step and monitored error of `best`; `lowest`: the lowest
      monitored error (the divergence test's reference); `bad`: evaluations since the last
      improvement.
    - `failures`: samples whose solve failed; `failed_batches`, `consecutive_failures`:
      batches skipped because of them; `failure_reason`: the `SolveFailure` of the latest.
    - `loss_sum`, `loss_count`: the training loss summed since the last evaluation.
    - `constants`: the model's arrays that training reads and never changes (a padded
      cohort's basis matrices, see `split_constants`); no arrays for other models.
    """

    best: PyTree
    params: PyTree
    last_good: PyTree
    opt_state: PyTree
    step: Int[Array, "*members"]
    status: Int[Array, "*members"]
    best_step: Int[Array, "*members"]
    best_val: Float[Array, "*members"]
    lowest: Float[Array, "*members"]
    bad: Int[Array, "*members"]
    failures: Int[Array, "*members"]
    failed_batches: Int[Array, "*members"]
    consecutive_failures: Int[Array, "*members"]
    failure_reason: Int[Array, "*members"]
    loss_sum: Float[Array, "*members"]
    loss_count: Int[Array, "*members"]
    constants: PyTree = None


def initial_state(
    params: PyTree, opt_state: PyTree, lowest: float, dtype, constants: PyTree = None
) -> TrainState:
    """The state before the first step; `lowest` is the initial model's monitored error."""
    zero = jnp.zeros((), jnp.int32)
    # Copies, so that no two fields share a buffer.
    copy = lambda tree: jax.tree_util.tree_map(jnp.array, tree)
    return TrainState(
        best=copy(params),
        params=copy(params),
        last_good=copy(params),
        opt_state=opt_state,
        step=zero,
        status=zero,
        best_step=zero,
        best_val=jnp.asarray(jnp.inf, dtype),
        lowest=jnp.asarray(lowest, dtype),
        bad=zero,
        failures=zero,
        failed_batches=zero,
        consecutive_failures=zero,
        failure_reason=zero,
        loss_sum=jnp.zeros((), dtype),
        loss_count=zero,
        constants=constants,
    )


# The scalar fields the host reads after every chunk, packed into two arrays.
COUNTER_INTEGERS = (
    "step",
    "status",
    "best_step",
    "bad",
    "failures",
    "failed_batches",
    "consecutive_failures",
    "failure_reason",
    "loss_count",
)
COUNTER_FLOATS = ("lowest", "loss_sum")


def packed_counters(state: TrainState) -> tuple[Array, Array]:
    """`COUNTER_INTEGERS` and `COUNTER_FLOATS` of `state`, stacked along a last axis."""
    integers = jnp.stack([getattr(state, name) for name in COUNTER_INTEGERS], axis=-1)
    return integers, jnp.stack([getattr(state, name) for name in COUNTER_FLOATS], axis=-1)


@dataclasses.dataclass(frozen=True)
class Counters:
    """The scalar fields of every member on the host, as NumPy arrays (see `TrainState`)."""

    step: np.ndarray
    status: np.ndarray
    best_step: np.ndarray
    bad: np.ndarray
    failures: np.ndarray
    failed_batches: np.ndarray
    consecutive_failures: np.ndarray
    failure_reason: np.ndarray
    loss_count: np.ndarray
    lowest: np.ndarray
    loss_sum: np.ndarray

    @classmethod
    def unpack(cls, packed: tuple[Array, Array]) -> "Counters":
        """From `packed_counters` (brought to the host)."""
        integers, floats = to_host(packed)
        values = {name: integers[..., i] for i, name in enumerate(COUNTER_INTEGERS)}
        values.update({name: floats[..., i] for i, name in enumerate(COUNTER_FLOATS)})
        return cls(**values)

    @classmethod
    def of(cls, state: TrainState) -> "Counters":
        return cls.unpack(_packed(state))


_packed = jax.jit(packed_counters)


def select(flag, new: PyTree, old: PyTree) -> PyTree:
    return jax.tree_util.tree_map(lambda a, b: jnp.where(flag, a, b), new, old)


def like(new: TrainState, old: TrainState) -> TrainState:
    """`new` with the dtypes of `old`, so that every program maps a state to the same type."""
    return jax.tree_util.tree_map(lambda a, b: jnp.asarray(a, b.dtype), new, old)


def all_finite(tree: PyTree) -> Array:
    leaves = jax.tree_util.tree_leaves(eqx.filter(tree, eqx.is_inexact_array))
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in leaves]))


def stack(trees: list) -> PyTree:
    """One tree whose leaves stack the leaves of `trees` along a new leading axis."""
    return jax.tree_util.tree_map(_stacked, *trees)


def _stacked(*leaves) -> Array:
    # Stacked on the host and moved once: `jnp.stack` (and `jnp.asarray` of a NumPy array)
    # compiles a program per count and shape of leaves, dozens per cohort of small models,
    # each slower than the copy.
    if any(jnp.issubdtype(jnp.result_type(leaf), jax.dtypes.prng_key) for leaf in leaves):
        return jnp.stack(leaves)
    return jax.device_put(np.stack([np.asarray(leaf) for leaf in leaves]))


def member(tree: PyTree, k: int | np.integer) -> PyTree:
    """Member `k` of a stacked tree."""
    return jax.tree_util.tree_map(lambda leaf: leaf[k], tree)


def to_host(tree: PyTree) -> PyTree:
    """NumPy copies of the arrays of `tree`; an array spread over several processes
    (`jax.distributed`) is gathered from all of them."""

    def fetch(leaf):
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
            from jax.experimental import multihost_utils

            return np.asarray(multihost_utils.process_allgather(leaf, tiled=True))
        return np.asarray(leaf)

    return jax.tree_util.tree_map(fetch, tree)
