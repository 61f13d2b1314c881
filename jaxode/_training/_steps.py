"""The device side of minibatch training, for one member: the objective, one optimisation step,
the steps between two evaluations as one scan, and an evaluation's bookkeeping (divergence
test, best parameters, early stopping, end of training). A `Task` holds what these functions
close over; a placement turns them into the programs of a cohort."""

import dataclasses
from collections.abc import Callable

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, PyTree

from .._models import skip_value_checks
from ._losses import AbstractLoss
from ._metrics import forward
from ._sampling import AbstractSampler
from ._settings import Stopping
from ._state import TrainState, all_finite, like, packed_counters, select
from ._status import Code, SolveFailure

RUNNING = int(Code.RUNNING)


@dataclasses.dataclass(frozen=True)
class Task:
    """What every program of one training closes over (nothing here is an array).

    `total` steps in all, evaluations every `interval` steps; `regulariser_static` is the
    non-numeric part of the regularisers (their weights are arguments); `validation_model`
    maps the trained model to the one validation predicts with, when it differs (a
    `TrajectoryModel` over a whole region instead of short windows).
    """

    static: PyTree
    regulariser_static: PyTree
    optimiser: optax.GradientTransformation
    loss: AbstractLoss
    sampler: AbstractSampler
    num_samples: int
    batch_size: int
    interval: int
    total: int
    validated: bool
    stopping: Stopping
    validation_model: Callable | None = None

    @property
    def per_epoch(self) -> int:
        return self.num_samples // self.batch_size

    def model(self, params, constants):
        """One member's model from its parameters and constants."""
        return eqx.combine(params, constants, self.static)

    def objective(self, params, constants, regulariser_values, xb, yb):
        """Loss plus penalties of one member on a batch, and `(misfit, failed samples,
        SolveFailure code)`."""
        model = self.model(params, constants)
        predicted, succeeded, result = forward(model, xb)
        misfit = self.loss(predicted, yb)
        regularisers = eqx.combine(regulariser_values, self.regulariser_static)
        penalty = sum((r(model) for r in regularisers), jnp.zeros((), misfit.dtype))
        reason = jnp.max(SolveFailure.of(result))
        return misfit + penalty, (misfit, jnp.sum(~succeeded), reason)

    def predict(self, params, constants, xs):
        model = self.model(params, constants)
        if self.validation_model is not None:
            model = self.validation_model(model)
        with skip_value_checks():
            return forward(model, xs)[:2]


def active(state: TrainState, boundary) -> Array:
    return (state.status == RUNNING) & (state.step < boundary)


def frozen_zero(state: TrainState, boundary) -> PyTree:
    """The parameters a step differentiates: a frozen member of a cohort still runs the step
    (vmap turns `cond` into a select), and zero parameters make its solve trivial, so that
    it does not hold the others' adaptive loops back."""
    running = active(state, boundary)
    return jax.tree_util.tree_map(lambda p: jnp.where(running, p, 0), state.params)


def batch(task: Task, state: TrainState, key, table) -> Array:
    """Row indices of the minibatch of `state.step`, read from the chunk's sampler `table`."""
    return task.sampler.indices_from(table, key, state.step, task.num_samples, task.batch_size)


def table(task: Task, step, key, chunks: int) -> PyTree:
    """The sampler's table for the steps of the next `chunks` chunks from `step`."""
    steps = chunks * task.interval
    return task.sampler.table(key, step, task.num_samples, task.batch_size, steps)


def apply(task: Task, state: TrainState, params, grads, misfit, failed, reason) -> TrainState:
    """One member's update from its gradient: skipped (parameters kept) when the batch's
    solve failed or anything became NaN/inf, which also stops the member when it persists
    (`max_failed_batches`) or is NaN/inf (`Code.NOT_FINITE`)."""
    updates, opt_state = task.optimiser.update(grads, state.opt_state, params)
    new_params = eqx.apply_updates(params, updates)
    finite = jnp.isfinite(misfit) & all_finite(new_params)
    has_failed = failed > 0
    good = finite & ~has_failed
    consecutive = jnp.where(has_failed, state.consecutive_failures + 1, 0)
    status = jnp.where(finite | has_failed, RUNNING, int(Code.NOT_FINITE))
    limit = task.stopping.max_failed_batches
    if limit is not None:
        status = jnp.where(consecutive >= limit, int(Code.SOLVER_FAILED), status)
    lowest = state.lowest
    if not task.validated:
        # Without validation data the reference of the divergence test is the initial
        # model's loss on the first batch.
        lowest = jnp.where((state.step == 0) & jnp.isfinite(misfit), misfit, lowest)
    updated = dataclasses.replace(
        state,
        params=select(good, new_params, state.params),
        opt_state=select(good, opt_state, state.opt_state),
        step=state.step + 1,
        status=status,
        lowest=lowest,
        failures=state.failures + failed,
        failed_batches=state.failed_batches + has_failed,
        consecutive_failures=consecutive,
        failure_reason=jnp.where(has_failed, reason, state.failure_reason),
        loss_sum=state.loss_sum + jnp.where(good, misfit, 0),
        loss_count=state.loss_count + good,
    )
    return like(updated, state)


def step(task: Task, state, xs, ys, key, regulariser_values, boundary, table) -> TrainState:
    """One optimisation step of one member (none past `boundary` or once it stopped)."""
    params = frozen_zero(state, boundary)
    index = batch(task, state, key, table)
    gradient = jax.value_and_grad(task.objective, has_aux=True)
    (_, (misfit, failed, reason)), grads = gradient(
        params, state.constants, regulariser_values, xs[index], ys[index]
    )
    stepped = apply(task, state, params, grads, misfit, failed, reason)
    return select(active(state, boundary), stepped, state)


def record(task: Task, state: TrainState, monitored, evaluated) -> TrainState:
    """The bookkeeping of an evaluation: divergence test, best parameters, early stopping,
    end of training. `monitored` is the validation error (ignored without validation data:
    the mean training loss since the last evaluation is monitored); members with
    `evaluated` false are left as they are."""
    dtype = state.lowest.dtype
    if task.validated:
        value = monitored.astype(dtype)
    else:
        value = (state.loss_sum / state.loss_count).astype(dtype)
    value = jnp.where(jnp.isfinite(value), value, jnp.inf)
    exploded = jnp.zeros((), bool)
    factor, patience = task.stopping.divergence_factor, task.stopping.patience
    if factor is not None:
        exploded = (value > factor * state.lowest) & jnp.isfinite(state.lowest)
    kept = evaluated & ~exploded
    improved = kept & (value < state.best_val) if task.validated else kept
    bad = jnp.where(kept, jnp.where(improved, 0, state.bad + 1), state.bad)
    stopping = kept & (patience is not None) & (bad >= (patience or 0))
    status = jnp.where(evaluated & exploded, int(Code.EXPLODED), state.status)
    status = jnp.where(kept & (state.step >= task.total), int(Code.COMPLETED), status)
    status = jnp.where(stopping, int(Code.EARLY_STOPPED), status)
    # A member none of whose batches solved has trained nothing: it failed, whether it ran
    # out of steps or of patience.
    ended = (status == int(Code.COMPLETED)) | (status == int(Code.EARLY_STOPPED))
    never = ended & (state.failed_batches >= state.step)
    status = jnp.where(never, int(Code.SOLVER_FAILED), status)
    updated = dataclasses.replace(
        state,
        best=select(improved, state.params, state.best),
        last_good=select(kept, state.params, state.last_good),
        status=status,
        best_step=jnp.where(improved, state.step, state.best_step),
        best_val=jnp.where(improved, value, state.best_val),
        lowest=jnp.where(kept, jnp.minimum(state.lowest, value), state.lowest),
        bad=bad if task.validated else state.bad,
        loss_sum=jnp.where(evaluated, 0, state.loss_sum).astype(state.loss_sum.dtype),
        loss_count=jnp.where(evaluated, 0, state.loss_count),
    )
    return like(updated, state)


def chunk(task: Task, state, xs, ys, key, regulariser_values, table, *, cohort_step=None):
    """The steps up to the next evaluation (a multiple of `task.interval`, or the end) as
    one scan; steps of a stopped member leave its state as it is. Without validation data
    the evaluation's bookkeeping needs nothing from the host and follows in the same
    program. Returns the state and the packed counters (`packed_counters`) before and after
    that bookkeeping.

    `cohort_step`: a step of the whole cohort (its arguments with a member axis) in place of
    one member's `step`; the state then carries a member axis.
    """
    boundary = jnp.minimum((state.step // task.interval + 1) * task.interval, task.total)

    def body(carry, _):
        if cohort_step is None:
            stepped = step(task, carry, xs, ys, key, regulariser_values, boundary, table)
        else:
            stepped = cohort_step(carry, xs, ys, key, regulariser_values, boundary, table)
        return stepped, None

    with skip_value_checks():
        state, _ = jax.lax.scan(body, state, length=task.interval)
    before = packed_counters(state)
    if not task.validated:
        bookkeeping = lambda s, m, e: record(task, s, m, e)
        if cohort_step is not None:
            bookkeeping = jax.vmap(bookkeeping)
        state = bookkeeping(state, state.lowest, state.status == RUNNING)
    return state, before, packed_counters(state)


def when_running(chunk_program: Callable) -> Callable:
    """`chunk_program`, skipped when no member is running: the host dispatches the next
    chunk before it has read whether training ended, so that its bookkeeping overlaps the
    device's work."""

    def guarded(state, *args):
        def idle(state, *args):
            return state, packed_counters(state), packed_counters(state)

        running = jnp.any(state.status == RUNNING)
        return jax.lax.cond(running, chunk_program, idle, state, *args)

    return guarded


# --- One adaptive solve for the batches of all members (placement `SharedSolve`) ----------


class _CohortField(eqx.Module):
    """The batches of all members of a cohort as one ODE: member k's field (leading axis of
    every array) applied to member k's states."""

    field: eqx.Module

    def __call__(self, t, states, args=None):
        each = lambda field, batch: jax.vmap(field, in_axes=(None, 0))(t, batch)
        return eqx.filter_vmap(each)(self.field, states)


def shared_predictions(models, xs):
    """Predictions `(members, batch, out)` of stacked neural-ODE surrogates `models` on
    their batches `xs` `(members, batch, in)`, with one adaptive solve for all, and its
    `diffrax.RESULTS`."""
    dynamics = models.dynamics
    over_members = lambda function: eqx.filter_vmap(lambda m, a: jax.vmap(function(m))(a))
    features = over_members(lambda m: m.features)(models, xs)
    states = over_members(lambda f: f.lift)(dynamics.field, features)
    solution, ys = dynamics.integrate(_CohortField(dynamics.field), states)
    final = over_members(lambda f: f.unlift)(dynamics.field, ys[-1])
    return over_members(lambda m: m.readout)(models, final), solution.result


def shared_objective(task: Task, params, constants, regulariser_values, xb, yb):
    """The summed losses of all members (leading axis of every argument), their batches
    solved as one ODE; a failed solve fails every member's batch."""
    models = task.model(params, constants)
    predicted, result = shared_predictions(models, xb)
    misfit = jax.vmap(task.loss)(predicted, yb)
    regularisers = eqx.combine(regulariser_values, task.regulariser_static)

    def penalty(model, chosen):
        return sum((r(model) for r in chosen), jnp.zeros((), misfit.dtype))

    penalties = eqx.filter_vmap(penalty)(models, regularisers)
    failed = jnp.where(result == diffrax.RESULTS.successful, 0, xb.shape[1])
    reason = jnp.broadcast_to(SolveFailure.of(result), misfit.shape)
    return jnp.sum(misfit + penalties), (misfit, jnp.broadcast_to(failed, misfit.shape), reason)


def shared_step(task: Task, state, xs, ys, keys, regulariser_values, boundary, tables):
    """One step of every member with one adaptive solve over all their batches."""
    params = jax.vmap(frozen_zero)(state, boundary)
    index = jax.vmap(lambda s, k, t: batch(task, s, k, t))(state, keys, tables)
    objective = lambda *args: shared_objective(task, *args)
    gradient = jax.value_and_grad(objective, has_aux=True)
    (_, (misfit, failed, reason)), grads = gradient(
        params, state.constants, regulariser_values, xs[index], ys[index]
    )
    update = lambda *args: apply(task, *args)
    stepped = jax.vmap(update)(state, params, grads, misfit, failed, reason)
    return jax.vmap(select)(jax.vmap(active)(state, boundary), stepped, state)
