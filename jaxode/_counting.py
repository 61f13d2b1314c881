"""Measured counts of right-hand-side evaluations and solver steps."""

import dataclasses
import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._fields import AbstractField
from ._models import AbstractDynamics


class _Tally:
    """Host-side counters, incremented by callbacks from compiled code."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.evaluations = 0
        self.solves = 0
        self.accepted = 0
        self.rejected = 0

    def add_evaluations(self, lanes, marker):
        # `marker` is empty: it is there for `vmap` to batch (see `_count_evaluations`).
        del marker
        self.evaluations += int(lanes)

    def add_solve(self, lanes, accepted, rejected):
        # One solve per entry: the lanes are in the arrays' shapes already.
        del lanes
        self.solves += int(np.size(accepted))
        self.accepted += int(np.sum(accepted))
        self.rejected += int(np.sum(rejected))


def _call_back(callback, *values, lanes=1):
    """Calls `callback(lanes, *values)` on the host from compiled code, as one callback
    however many samples a `vmap` batches together.

    `jax.debug.callback` unrolls under `vmap` into one callback per lane: a batch of 4096
    samples would put 4096 callbacks into every stage of the solver, each compiled, which
    costs minutes and gigabytes. Here the `vmap` rule calls back once instead, with `lanes`
    multiplied by the batch size and the values stacked (broadcast where unbatched), so
    `callback` must read the entries of `values` as separate calls. The rule emits a plain
    `jax.debug.callback`: under differentiation, partial evaluation and checkpointing it
    behaves as before, which the counts rely on. A second, enclosing `vmap` unrolls that
    callback once per outer lane, as before: slow to compile but exact.

    **Arguments:**

    - `callback`: a host function `callback(lanes, *values)`.
    - `values`: arrays for it, whose batching (as with `jax.debug.callback`) is what a `vmap`
      acts on. Their gradients are stopped: a count is no part of the derivative.
    - `lanes`: how many calls one call stands for.
    """
    values = jax.lax.stop_gradient(values)

    @jax.custom_batching.custom_vmap
    def call(*xs):
        jax.debug.callback(functools.partial(callback, lanes), *xs)

    @call.def_vmap
    def rule(axis_size, in_batched, *xs):
        xs = [
            x if batched else jnp.broadcast_to(x, (axis_size, *jnp.shape(x)))
            for x, batched in zip(xs, in_batched)
        ]
        jax.debug.callback(functools.partial(callback, lanes * axis_size), *xs)
        return None, None

    call(*values)


def _count_evaluations(tally, state, *, size):
    # One evaluation per state of `size` in the argument (known from its shape). The host
    # needs no values: an empty slice of the state only carries its batching, at no transfer.
    _call_back(tally.add_evaluations, jnp.ravel(state)[:0], lanes=jnp.size(state) // size)


class _CountedField(AbstractField):
    inner: AbstractField
    tally: _Tally = eqx.field(static=True)

    @property
    def width(self):
        return self.inner.width

    @property
    def state_size(self):
        return self.inner.state_size

    def lift(self, features):
        return self.inner.lift(features)

    def unlift(self, state):
        return self.inner.unlift(state)

    def bases(self):
        return self.inner.bases()

    def __call__(self, t, z, args=None):
        _count_evaluations(self.tally, z, size=self.state_size)
        return self.inner(t, z, args)

    def __getattr__(self, name):
        # HamiltonianNet calls rate_z then rate_y once per step: together one field evaluation.
        attr = getattr(self.inner, name)
        if name == "rate_z":

            def counted(t, x):
                _count_evaluations(self.tally, x, size=self.width)
                return attr(t, x)

            return counted
        return attr


def _instrument(model, tally: _Tally):
    def is_part(node):
        return isinstance(node, (AbstractField, AbstractDynamics))

    def wrap(node):
        # The pyright ignores: eqx.AbstractVar fields confuse its synthesised __init__.
        if isinstance(node, AbstractField):
            return _CountedField(node, tally)  # pyright: ignore[reportCallIssue]
        if isinstance(node, AbstractDynamics):
            counted = eqx.tree_at(
                lambda d: d.field,
                node,
                _CountedField(node.field, tally),  # pyright: ignore[reportCallIssue]
            )
            return _CountedDynamics(counted, tally)  # pyright: ignore[reportCallIssue]
        return node

    return jax.tree_util.tree_map(wrap, model, is_leaf=is_part)


class _CountedDynamics(AbstractDynamics):
    inner: AbstractDynamics
    tally: _Tally = eqx.field(static=True)

    @property
    def field(self):
        return self.inner.field

    @property
    def t0(self):
        return self.inner.t0

    @property
    def t1(self):
        return self.inner.t1

    def _report(self, trajectory):
        _call_back(
            self.tally.add_solve, trajectory.num_accepted_steps, trajectory.num_rejected_steps
        )
        return trajectory

    def solve(self, features):
        return self._report(self.inner.solve(features))

    def solve_batch(self, features):
        # Shared steps give scalar counts for the whole batch: one solve per sample all the same.
        trajectory = self.inner.solve_batch(features)
        lanes = (features.shape[0],)
        _call_back(
            self.tally.add_solve,
            jnp.broadcast_to(trajectory.num_accepted_steps, lanes),
            jnp.broadcast_to(trajectory.num_rejected_steps, lanes),
        )
        return trajectory


@dataclasses.dataclass(frozen=True)
class EvaluationCounts:
    """Counts per solve, that is per sample (averaged over the samples of one call).

    `forward_evaluations` are right-hand-side evaluations of the loss alone;
    `backward_evaluations` are the extra ones the gradient costs (recomputation and the
    vector-Jacobian products of the adjoint). Under `vmap`, every lane runs as many steps as
    the slowest one, and the counts say so; with shared steps every sample takes the batch's
    steps.
    """

    forward_evaluations: float
    backward_evaluations: float
    accepted_steps: float
    rejected_steps: float
    solves: int


class EvaluationCounter:
    """Measures the cost of `loss(model, *args)` and its gradient in field evaluations.

    The model's fields and dynamics are wrapped by counters that report to the host from
    compiled code, so the numbers are what actually ran (Diffrax reports steps only). A batch
    reports once per evaluation, not once per sample, so the compiled program and its cost do
    not grow with the batch size. Compiles once per model structure; reuse one counter
    across calls.

    **Arguments:**

    - `loss`: a scalar function `loss(model, *args)`, differentiated in its first argument.
    """

    def __init__(self, loss):
        self._tally = _Tally()
        self._loss = loss
        self._forward = eqx.filter_jit(lambda m, *a: loss(_instrument(m, self._tally), *a))
        self._gradient = eqx.filter_jit(
            eqx.filter_grad(lambda m, *a: loss(_instrument(m, self._tally), *a))
        )

    def __call__(self, model, *args) -> EvaluationCounts:
        tally = self._tally
        tally.reset()
        jax.block_until_ready(self._forward(model, *args))
        jax.effects_barrier()
        forward, solves = tally.evaluations, max(tally.solves, 1)
        accepted, rejected = tally.accepted, tally.rejected
        tally.reset()
        jax.block_until_ready(self._gradient(model, *args))
        jax.effects_barrier()
        backward = tally.evaluations - forward
        return EvaluationCounts(
            forward_evaluations=forward / solves,
            backward_evaluations=backward / solves,
            accepted_steps=accepted / solves,
            rejected_steps=rejected / solves,
            solves=solves,
        )


def stepped_counts(dynamics, solves: int) -> EvaluationCounts | None:
    """The counts of a fixed-step discrete model (`ResNet`, `HamiltonianNet`), which its
    structure fixes: one field evaluation per step, and none more for the gradient (reverse
    mode differentiates through the recorded steps without calling the field again); the
    same as `EvaluationCounter` measures, without compiling a program with host callbacks.
    `None` for other dynamics, whose counts depend on values.

    **Arguments:** `dynamics`: the model's dynamics; `solves`: the samples of the batch.
    """
    from ._models import HamiltonianNet, ResNet

    if not isinstance(dynamics, (ResNet, HamiltonianNet)):
        return None
    steps = float(dynamics.steps)
    return EvaluationCounts(
        forward_evaluations=steps,
        backward_evaluations=0.0,
        accepted_steps=steps,
        rejected_steps=0.0,
        solves=solves,
    )
