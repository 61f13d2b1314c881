"""Placements: where the members of a cohort run and how a function of one member becomes a
program of all of them (one device without `vmap`, `vmap` on one device, the member axis split
over several devices, or one adaptive solve shared by all members)."""

import abc
from collections.abc import Callable, Sequence

import diffrax
import equinox as eqx
import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec
from jaxtyping import PyTree

from .._models import NeuralODE
from .._paradigms import as_adjoint
from .._surrogate import Surrogate

AXIS = "members"


class AbstractPlacement(eqx.Module):
    """Where the members of a cohort run, and how per-member functions become its programs.

    Every program takes and returns trees with a leading member axis. `program` turns a
    function of one member into one (not yet compiled); `chunk` picks between a trainer's two
    forms of the steps between evaluations: one member's (vectorised like every program), or
    the whole cohort's (for placements that couple the members).
    """

    @abc.abstractmethod
    def check(self, model, size: int) -> None:
        """**Raises:** `ValueError` when the cohort (`size` members like `model`) cannot be
        placed so."""

    @abc.abstractmethod
    def mesh(self, size: int) -> Mesh | None:
        """The device mesh with one axis `"members"` (`None`: one device)."""

    @abc.abstractmethod
    def program(self, function: Callable, in_axes: tuple, mesh: Mesh | None, model) -> Callable:
        """`function` of one member as a function of the cohort (arguments with
        `in_axes[i] = None` are shared, the others have a leading member axis)."""

    @abc.abstractmethod
    def chunk(
        self, member: Callable, cohort: Callable, in_axes: tuple, mesh: Mesh | None, model
    ) -> Callable:
        """The program of the steps between two evaluations, from `member` (one member's
        steps) or `cohort` (all members' steps at once)."""


def place(mesh: Mesh | None, tree: PyTree, split: bool) -> PyTree:
    """`tree` on `mesh`: split along its member axis, or replicated. Every process passes the
    whole tree and contributes the shards of its own devices (so this also works across
    processes under `jax.distributed`)."""
    if mesh is None:
        return tree
    sharding = NamedSharding(mesh, PartitionSpec(AXIS) if split else PartitionSpec())

    def put(leaf):
        values = np.asarray(leaf)
        return jax.make_array_from_callback(values.shape, sharding, lambda index: values[index])

    return jax.tree_util.tree_map(put, tree)


def _device_mesh(devices, size: int) -> Mesh:
    if isinstance(devices, int):
        available = len(jax.devices())
        if not 1 <= devices <= available:
            raise ValueError(
                f"`devices`={devices}, but {available} devices are available "
                f"({jax.default_backend()}); choose 1 to {available}."
            )
        chosen = jax.devices()[:devices]
    else:
        chosen = list(devices)
    if size % len(chosen):
        raise ValueError(
            f"`devices`: {size} members cannot be split evenly over {len(chosen)} devices; "
            "choose a cohort size that is a multiple of the device count."
        )
    return jax.make_mesh((len(chosen),), (AXIS,), axis_types=(AxisType.Auto,), devices=chosen)


def _checkpointed_solve(model) -> bool:
    dynamics = model.dynamics
    return isinstance(dynamics, NeuralODE) and isinstance(
        as_adjoint(dynamics.paradigm), diffrax.RecursiveCheckpointAdjoint
    )


def _one_loop_per_device(model, one_loop: bool | None) -> bool:
    """Whether a sharded cohort runs under `shard_map`: by default yes, except for neural
    ODEs differentiated through their steps, whose checkpointed solver loop does not trace
    under `shard_map` in Equinox 0.13 (Diffrax issue 765)."""
    if one_loop is None:
        return not _checkpointed_solve(model)
    if one_loop and _checkpointed_solve(model):
        raise ValueError(
            "`shard_map=True` cannot differentiate a neural ODE through its solver steps "
            "(discretize-then-optimize): Equinox's checkpointed loop fails under shard_map "
            "(Diffrax issue 765). Leave `shard_map` unset (the compiler partitions the cohort) "
            "or train with OptimizeThenDiscretize()."
        )
    return one_loop


def _vectorised(function, in_axes, mesh, one_loop: bool, vectorise: bool = True) -> Callable:
    batched = jax.vmap(function, in_axes=in_axes) if vectorise else function
    if mesh is None or not one_loop:
        return batched
    specs = tuple(PartitionSpec() if axis is None else PartitionSpec(AXIS) for axis in in_axes)
    return jax.shard_map(
        batched, mesh=mesh, in_specs=specs, out_specs=PartitionSpec(AXIS), check_vma=False
    )


class SingleDevice(AbstractPlacement):
    """One model on the default device, compiled without `vmap` (the programs remove the
    member axis of length 1 and put it back)."""

    def check(self, model, size):
        if size != 1:
            raise ValueError(
                f"SingleDevice() trains one model, got {size}; use Vmapped() for a cohort."
            )

    def mesh(self, size):
        return None

    def program(self, function, in_axes, mesh, model):
        squeeze = lambda tree: jax.tree_util.tree_map(lambda a: a[0], tree)
        expand = lambda tree: jax.tree_util.tree_map(lambda a: a[None], tree)

        def single(*args):
            args = [a if axis is None else squeeze(a) for a, axis in zip(args, in_axes)]
            return expand(function(*args))

        return single

    def chunk(self, member, cohort, in_axes, mesh, model):
        return self.program(member, in_axes, mesh, model)


class Vmapped(AbstractPlacement):
    """The members as one `jax.vmap`-ed program on the default device. Each member's result
    equals its single run to rounding. Adaptive solves of vmapped members step in lock-step
    until the slowest member finishes."""

    def check(self, model, size):
        pass

    def mesh(self, size):
        return None

    def program(self, function, in_axes, mesh, model):
        return jax.vmap(function, in_axes=in_axes)

    def chunk(self, member, cohort, in_axes, mesh, model):
        return self.program(member, in_axes, mesh, model)


class Sharded(AbstractPlacement):
    """The member axis split over several devices (of one process, or of several processes
    joined by `jax.distributed`); the cohort size must be a multiple of the device count.

    **Arguments:**

    - `devices`: how many of `jax.devices()` (the first ones), or the devices themselves.
    - `one_loop_per_device`: run one loop per device under `jax.shard_map`, so that adaptive
      solves of different lengths need no collective per step; `False` leaves the
      partitioning of the vmapped program to the compiler, which puts an all-reduce into
      every iteration of an adaptive loop (Diffrax issue 407). `None` (default): `True`,
      except for neural ODEs differentiated through their steps, which do not trace under
      `shard_map` in Equinox 0.13 (Diffrax issue 765).
    """

    devices: int | Sequence
    one_loop_per_device: bool | None = None

    def check(self, model, size):
        _device_mesh(self.devices, size)
        _one_loop_per_device(model, self.one_loop_per_device)

    def mesh(self, size):
        return _device_mesh(self.devices, size)

    def program(self, function, in_axes, mesh, model):
        one_loop = _one_loop_per_device(model, self.one_loop_per_device)
        return _vectorised(function, in_axes, mesh, one_loop)

    def chunk(self, member, cohort, in_axes, mesh, model):
        return self.program(member, in_axes, mesh, model)


class SharedSolve(AbstractPlacement):
    """Neural-ODE members of a `Surrogate` stepped with one adaptive solve over all members'
    batches (on each device) instead of one solve per member.

    The error norm of the step-size controller then runs over every member's states, so the
    members share one step sequence and each member's result depends on the others at the
    level of the solver tolerance (as a sample's does on its batch with `shared_steps`); a
    failed solve fails the batch of every member.

    **Arguments:** `devices` (`None`: one device) and `one_loop_per_device`, as for
    `Sharded`.
    """

    devices: int | Sequence | None = None
    one_loop_per_device: bool | None = None

    def check(self, model, size):
        if not (isinstance(model, Surrogate) and isinstance(model.dynamics, NeuralODE)):
            raise ValueError(
                "`shared_solve=True` needs neural ODE members of a Surrogate (their adaptive "
                f"solves are shared); a {type(model).__name__} cohort over a "
                f"{type(model.dynamics).__name__} is exact and fast as it is: drop it."
            )
        if self.devices is not None:
            _device_mesh(self.devices, size)
            _one_loop_per_device(model, self.one_loop_per_device)

    def mesh(self, size):
        return None if self.devices is None else _device_mesh(self.devices, size)

    def program(self, function, in_axes, mesh, model):
        one_loop = mesh is not None and _one_loop_per_device(model, self.one_loop_per_device)
        return _vectorised(function, in_axes, mesh, one_loop)

    def chunk(self, member, cohort, in_axes, mesh, model):
        one_loop = mesh is not None and _one_loop_per_device(model, self.one_loop_per_device)
        return _vectorised(cohort, in_axes, mesh, one_loop, vectorise=False)
