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

    def add_evaluations(self, state, *, size):
        # One evaluation per state in the (possibly batched) argument.
        self.evaluations += int(np.size(state)) // size

    def add_solve(self, accepted, rejected):
        self.solves += int(np.size(accepted))
        self.accepted += int(np.sum(accepted))
        self.rejected += int(np.sum(rejected))


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
        jax.debug.callback(functools.partial(self.tally.add_evaluations, size=self.state_size), z)
        return self.inner(t, z, args)

    def __getattr__(self, name):
        # HamiltonianNet calls rate_z then rate_y once per step: together one field evaluation.
        attr = getattr(self.inner, name)
        if name == "rate_z":
            def counted(t, x):
                jax.debug.callback(functools.partial(self.tally.add_evaluations, size=self.width), x)
                return attr(t, x)
            return counted
        return attr


def _instrument(model, tally: _Tally):
    def is_part(node):
        return isinstance(node, (AbstractField, AbstractDynamics))

    def wrap(node):
        if isinstance(node, AbstractField):
            return _CountedField(node, tally)
        if isinstance(node, AbstractDynamics):
            counted = eqx.tree_at(lambda d: d.field, node, _CountedField(node.field, tally))
            return _CountedDynamics(counted, tally)
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
        jax.debug.callback(
            self.tally.add_solve, trajectory.num_accepted_steps, trajectory.num_rejected_steps
        )
        return trajectory

    def solve(self, features):
        return self._report(self.inner.solve(features))

    def solve_batch(self, features):
        # Shared steps give scalar counts for the whole batch: one solve per sample all the same.
        trajectory = self.inner.solve_batch(features)
        lanes = (features.shape[0],)
        jax.debug.callback(
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
    compiled code, so the numbers are what actually ran (Diffrax reports steps only).
    Compiles once per model structure; reuse one counter across calls.

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
