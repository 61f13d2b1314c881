"""How much memory training a cohort needs, estimated before anything is allocated, and the
check that refuses a cohort whose estimate exceeds the memory limit ($JAXODE_MEMORY_LIMIT)."""

import dataclasses
import math

import equinox as eqx
import jax
import jax.numpy as jnp

from .._datasets import Dataset, TrajectoryData
from .._memory_limit import format_bytes, memory_limit, raise_the_limit
from ._build import build_model
from ._config import RunConfig
from ._regularisers import time_varying_layers

# Copies of the parameters training holds per member at once: its state keeps five (the
# current parameters, the best ones, those of the last evaluation: `TrainState.params`,
# `best`, `last_good`; and Adam's two moments; SGD and RMSprop keep one), and a compiled
# step donates no buffers, so the state it reads and the state it returns live together
# (10); the gradient and the update Optax makes of it (12); the model built before training
# (13); the host copies a checkpoint writes of params, best and last_good (16). Activations
# of the solver are left out, and SGD or RMSprop keep fewer moments, so the estimate is a
# guide: measured on a CPU (peak resident memory above a width-32 run's), a width-20000
# ResNet (10.8 million parameters, float32) took 22 copies and a neural ODE of that width 30.
COPIES_PER_MEMBER = 16
_ITEMSIZE = {"float32": 4, "float64": 8}


@dataclasses.dataclass(frozen=True)
class MemoryEstimate:
    """What training a cohort needs, in bytes, and what drives it.

    **Fields:**

    - `parameters`: parameters of one member; `members`: members of the cohort.
    - `itemsize`: bytes of one number in the run's precision.
    - `model_bytes`: `parameters * COPIES_PER_MEMBER * members * itemsize`.
    - `data_bytes`: the data set's arrays (see `data_bytes`).
    - `gram_bytes`: the Gram penalty's matrices, quadratic in the number of basis functions
      (zero without `train.gram`).
    """

    parameters: int
    members: int
    itemsize: int
    model_bytes: int
    data_bytes: int
    gram_bytes: int

    @property
    def total(self) -> int:
        return self.model_bytes + self.data_bytes + self.gram_bytes


def _shapes(config: RunConfig, data: Dataset | TrajectoryData):
    """The model of `config` with a `jax.ShapeDtypeStruct` for every array: built abstractly
    (`eqx.filter_eval_shape`), which allocates nothing. The shapes do not depend on the
    precision, so they are evaluated in float32 (float64 would need 64-bit JAX already)."""
    config = config.replace("train", precision="float32")
    dt = data.dt if isinstance(data, TrajectoryData) else None
    key = jax.random.PRNGKey(0)
    return eqx.filter_eval_shape(
        build_model, config, data.in_size, data.out_size, key=key, dt=dt, warn_window=False
    )


def parameter_count(config: RunConfig, data: Dataset | TrajectoryData) -> int:
    """The number of parameters of the model of `config` on `data` (what `count_parameters`
    gives of the built model), counted from shapes alone: nothing is allocated, so this is
    cheap even for a model that would not fit in memory."""
    leaves = jax.tree_util.tree_leaves(_shapes(config, data))
    return sum(
        math.prod(leaf.shape)
        for leaf in leaves
        if isinstance(leaf, jax.ShapeDtypeStruct) and jnp.issubdtype(leaf.dtype, jnp.inexact)
    )


def data_bytes(data: Dataset | TrajectoryData, itemsize: int) -> int:
    """Bytes of the data set's arrays during training: the float64 arrays as loaded, the
    normalised float64 copies of the splits (at most as large), and their copies on the
    device in the run's precision (`itemsize` bytes a number)."""
    if isinstance(data, TrajectoryData):
        loaded = data.ts.nbytes + data.ys.nbytes
        pairs = [data.arrays(split) for split in ("train", "val", "test")]
        split = sum(x.nbytes + y.nbytes for x, y in pairs)
    else:
        loaded = split = data.x.nbytes + data.y.nbytes
    return loaded + split + split * itemsize // 8


def gram_bytes(shapes, members: int, itemsize: int) -> int:
    """Bytes of the Gram penalty's matrices, quadratic in the number of basis functions $n$
    (`degree + 1` for a polynomial basis): the float64 unit Gram matrix $M$ on the host
    (`AbstractTimeBasis.unit_gram`) and its device copy, and per member, for the weight and
    the bias of every time-varying layer, the $n \\times n$ product `flat @ flat.T` of
    `l2_in_time` and its cotangent."""
    per_member = 0
    largest = 0
    for layer in time_varying_layers(shapes):
        n = layer.basis.num_basis
        arrays = 1 if layer.bias is None else 2
        per_member += arrays * 2 * n * n * itemsize
        largest = max(largest, n)
    return largest * largest * (8 + itemsize) + members * per_member


def estimate_memory(configs: list[RunConfig], data: Dataset | TrajectoryData) -> MemoryEstimate:
    """The memory training the cohort `configs` (one structure, differing in their seeds) on
    `data` needs, estimated before anything is allocated (see `MemoryEstimate`).

    **Arguments:**

    - `configs`: the members' configurations (the first one's structure is used).
    - `data`: the data set `load_data(configs[0])` returned.

    **Returns:** a `MemoryEstimate`.
    """
    config = configs[0]
    itemsize = _ITEMSIZE[config.train.precision]
    members = len(configs)
    parameters = parameter_count(config, data)
    gram = 0
    if any(c.train.gram for c in configs):  # per member: the cohort's largest need
        gram = gram_bytes(_shapes(config, data), members, itemsize)
    return MemoryEstimate(
        parameters=parameters,
        members=members,
        itemsize=itemsize,
        model_bytes=parameters * COPIES_PER_MEMBER * members * itemsize,
        data_bytes=data_bytes(data, itemsize),
        gram_bytes=gram,
    )


def members_within_limit(configs: list[RunConfig], data: Dataset | TrajectoryData) -> int | None:
    """How many members of the cohort `configs` the memory limit holds (`estimate_memory`
    grows linearly in the members): `None` without a limit, 0 when not even one fits."""
    limit, _ = memory_limit()
    if limit is None:
        return None
    member = [next((c for c in configs if c.train.gram), configs[0])]  # the largest need
    one, two = (estimate_memory(member * n, data).total for n in (1, 2))
    per_member = two - one
    return max(0, (limit - (one - per_member)) // per_member)


def check_memory(configs: list[RunConfig], data: Dataset | TrajectoryData) -> None:
    """Refuses, before anything is allocated, a cohort whose estimated memory
    (`estimate_memory`) exceeds the memory limit ($JAXODE_MEMORY_LIMIT, by default 80 % of
    the machine's physical memory).

    **Arguments:**

    - `configs`: the members' configurations; `data`: the data set loaded for them.

    **Raises:** `ValueError` naming the estimate, the limit, the settings that drive the
    estimate (`model.width`, `model.hidden`, `model.degree`, members) and how to raise the
    limit; or naming $JAXODE_MEMORY_LIMIT when its text is not a memory size.
    """
    limit, source = memory_limit()
    if limit is None:
        return
    estimate = estimate_memory(configs, data)
    if estimate.total <= limit:
        return
    m, t = configs[0].model, configs[0].train
    gram = f", {format_bytes(estimate.gram_bytes)} of Gram matrices" if estimate.gram_bytes else ""
    raise ValueError(
        f"training needs about {format_bytes(estimate.total)}, more than the memory limit of "
        f"{format_bytes(limit)} ({source}): {estimate.parameters:,} parameters per member x "
        f"{COPIES_PER_MEMBER} copies (the training state, two at a step, gradient, update, "
        f"initial model, checkpoint) x {estimate.members} member"
        f"{'s' if estimate.members > 1 else ''} x {estimate.itemsize} bytes ({t.precision}), "
        f"plus {format_bytes(estimate.data_bytes)} of data{gram}. The size grows with "
        f"model.width ({m.width}), model.hidden ({m.hidden}), model.degree ({m.degree}) and "
        f"the number of members ({estimate.members}): lower them, or "
        f"{raise_the_limit(estimate.total)}."
    )
