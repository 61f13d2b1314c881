"""The compiled programs of training, for one model or a cohort of models: a step, a chunk of
steps between two evaluations, the predictions of an evaluation and its bookkeeping.

Everything here runs on the device; the host calls one chunk per evaluation interval and
reads the training state only at evaluations. Every program takes arrays only (the model's
structure, the optimiser and the loss are closed over), so a call is dispatched without
re-inspecting Python objects and compiles once.
"""

import dataclasses
from collections.abc import Callable

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, Float, Int, PRNGKeyArray, PyTree

from .._models import skip_value_checks
from ._losses import AbstractLoss
from ._metrics import forward

# Member statuses, as small integers the device can hold.
RUNNING, COMPLETED, EARLY_STOPPED, DIVERGED, EXPLODED, SOLVER_FAILED = range(6)
STATUS_NAMES = {
    RUNNING: "running",
    COMPLETED: "completed",
    EARLY_STOPPED: "early_stopped",
    DIVERGED: "diverged",
    EXPLODED: "diverged",
    SOLVER_FAILED: "solver_failed",
}
SAMPLINGS = ("epochs", "replacement")
# Why a solve failed, as a small integer the host can read: 0 is success.
FAILURE_REASONS = (
    "",
    "the solver reached `max_steps`",
    "the step size fell below its minimum",
    "the solve failed",
)


class TrainState(eqx.Module):
    """Everything training carries from one step to the next, for one model (or, with a
    leading member axis on every leaf, for a cohort).

    **Fields:**

    - `best`, `params`, `last_good`: the model's floating-point arrays (an
      `eqx.partition` of it): best by validation error, current, and as of the last
      evaluation. `best` comes first so that it can be read from a checkpoint alone.
    - `opt_state`: the optimiser's state.
    - `step`: optimisation steps done; `status`: `RUNNING`, `COMPLETED`, `EARLY_STOPPED`,
      `DIVERGED` (NaN/inf), `EXPLODED` (monitored error past the divergence factor) or
      `SOLVER_FAILED`.
    - `best_step`, `best_val`: step and monitored error of `best`; `lowest`: the lowest
      monitored error (the divergence test's reference); `bad`: evaluations since the last
      improvement.
    - `failures`: samples whose solve failed; `failed_batches`, `consecutive_failures`:
      batches skipped because of them; `failure_reason`: code of the latest failure.
    - `loss_sum`, `loss_count`: the training loss summed since the last evaluation.
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


def initial_state(params, opt_state, lowest: float, dtype) -> TrainState:
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
    )


def batch_index(
    key: PRNGKeyArray, step, num_samples: int, batch_size: int, sampling: str
) -> Int[Array, " batch"]:
    """Row indices of the minibatch of `step`, a pure function of `(key, step)` so that a
    resumed run replays the same batches. `"epochs"`: epoch $e$ visits the samples in the
    order `permutation(fold_in(key, e))`, cut into consecutive batches (the last partial one
    dropped); `"replacement"`: the batch is drawn uniformly with replacement with
    `fold_in(key, step)`."""
    if sampling == "replacement":
        return jax.random.randint(jax.random.fold_in(key, step), (batch_size,), 0, num_samples)
    epoch, offset = jnp.divmod(step, num_samples // batch_size)
    order = jax.random.permutation(jax.random.fold_in(key, epoch), num_samples)
    return jax.lax.dynamic_slice(order, (offset * batch_size,), (batch_size,))


def failure_code(result) -> Array:
    """`FAILURE_REASONS` index of a `diffrax.RESULTS` value."""
    return jnp.where(
        result == diffrax.RESULTS.successful,
        0,
        jnp.where(
            result == diffrax.RESULTS.max_steps_reached,
            1,
            jnp.where(result == diffrax.RESULTS.dt_min_reached, 2, 3),
        ),
    )


def _select(flag, new, old):
    return jax.tree_util.tree_map(lambda a, b: jnp.where(flag, a, b), new, old)


def _like(new: TrainState, old: TrainState) -> TrainState:
    """`new` with the dtypes of `old`, so that every program maps a state to the same type."""
    return jax.tree_util.tree_map(lambda a, b: jnp.asarray(a, b.dtype), new, old)


def _all_finite(tree) -> Array:
    leaves = jax.tree_util.tree_leaves(eqx.filter(tree, eqx.is_inexact_array))
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in leaves]))


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
    solution, ys = dynamics._integrate(_CohortField(dynamics.field), states)
    final = over_members(lambda f: f.unlift)(dynamics.field, ys[-1])
    return over_members(lambda m: m.readout)(models, final), solution.result


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


def _with_counters(state: TrainState):
    return state, packed_counters(state)


def _when_running(chunk: Callable) -> Callable:
    """`chunk`, skipped when no member is running: the host dispatches the next chunk before
    it has read whether training ended, so that its bookkeeping overlaps the device's work."""

    def guarded(state, *args):
        def idle(state, *args):
            return state, packed_counters(state), packed_counters(state)

        running = jnp.any(state.status == RUNNING)
        return jax.lax.cond(running, chunk, idle, state, *args)

    return guarded


@dataclasses.dataclass(frozen=True)
class Plan:
    """What every program of one training run closes over (nothing here is an array).

    `total` steps in all, evaluations every `interval` steps, `regulariser_static` the
    non-numeric part of the regularisers (their weights are arguments); `validation_model`
    maps the trained model to the one validation predicts with, when it differs (a
    `TrajectoryModel` over a whole region instead of short windows).
    """

    static: PyTree
    regulariser_static: PyTree
    optimiser: optax.GradientTransformation
    loss: AbstractLoss
    num_samples: int
    batch_size: int
    sampling: str
    interval: int
    total: int
    validated: bool
    patience: int | None
    max_failed_batches: int | None
    divergence_factor: float | None
    validation_model: Callable | None = None


class Programs:
    """The compiled programs of a `Plan`, for `members` models trained together (`None`: a
    single model, run without `vmap`; its state still carries a member axis of length 1 on
    the host, removed inside the programs).

    **Arguments:**

    - `plan`: the `Plan`.
    - `members`: cohort size, or `None`.
    - `mesh`: a `jax.sharding.Mesh` with one axis `"members"` to shard the cohort over;
      `shard_map=True` runs one loop per device (no collective inside adaptive solves),
      `False` leaves the partitioning to the compiler.
    - `shared_solve`: step a cohort of neural ODEs with one adaptive solve over all members'
      batches (per device) instead of one vmapped solve per member.
    """

    def __init__(
        self,
        plan: Plan,
        members: int | None,
        mesh=None,
        shard_map: bool = True,
        shared_solve: bool = False,
    ):
        self.plan, self.members, self.traces = plan, members, 0
        self.shared_solve = shared_solve
        chunk_axes = (0, None, None, 0, 0, 0)
        chunk = self._compile(self._chunk, chunk_axes, mesh, shard_map, not shared_solve, False)
        self.chunk = jax.jit(_when_running(chunk))
        # A program of its own: it depends on no model, so every structure with the same
        # sample, batch and interval sizes shares its compilation through the persistent cache
        # (inside the chunk it cost about a fifth of a small model's compile time).
        self.orders = self._compile(self._orders, (0, 0), mesh, shard_map)
        # Chunks one `orders` table serves: with short chunks (eval_every=1) a permutation of
        # the whole training set for every step is a sizeable part of the step, and a table
        # spanning an epoch's steps holds only two epochs.
        per_epoch = plan.num_samples // plan.batch_size
        self.orders_serve = max(1, per_epoch // plan.interval)
        self.predict = self._compile(self._predict, (0, None), mesh, shard_map)
        self.record = self._compile(
            lambda *args: _with_counters(self._record(*args)), (0, 0, 0), mesh, shard_map
        )
        self.loss_of = jax.jit(jax.vmap(lambda p, y: plan.loss(p, y), in_axes=(0, None)))

    def _compile(
        self, function, in_axes, mesh, shard_map, vectorise: bool = True, jit: bool = True
    ):
        """`function` of one member as a program of the cohort (`vectorise=False`: it
        already takes the whole cohort; `jit=False`: the function to compile, not the
        program)."""
        if self.members is None:
            squeeze = lambda tree: jax.tree_util.tree_map(lambda a: a[0], tree)
            expand = lambda tree: jax.tree_util.tree_map(lambda a: a[None], tree)

            def single(*args):
                args = [a if axis is None else squeeze(a) for a, axis in zip(args, in_axes)]
                return expand(function(*args))

            return jax.jit(single) if jit else single
        batched = jax.vmap(function, in_axes=in_axes) if vectorise else function
        if mesh is not None and shard_map:
            from jax.sharding import PartitionSpec as P

            specs = tuple(P() if axis is None else P("members") for axis in in_axes)
            batched = jax.shard_map(
                batched, mesh=mesh, in_specs=specs, out_specs=P("members"), check_vma=False
            )
        return jax.jit(batched) if jit else batched

    def objective(self, params, regulariser_values, xb, yb):
        plan = self.plan
        model = eqx.combine(params, plan.static)
        predicted, succeeded, result = forward(model, xb)
        misfit = plan.loss(predicted, yb)
        regularisers = eqx.combine(regulariser_values, plan.regulariser_static)
        penalty = sum((r(model) for r in regularisers), jnp.zeros((), misfit.dtype))
        reason = jnp.max(failure_code(result))
        return misfit + penalty, (misfit, jnp.sum(~succeeded), reason)

    def _active(self, state: TrainState, boundary):
        return (state.status == RUNNING) & (state.step < boundary)

    def _frozen_zero(self, state: TrainState, boundary):
        """The parameters a step differentiates: a frozen member of a cohort still runs the
        step (vmap turns `cond` into a select), and zero parameters make its solve trivial,
        so that it does not hold the others' adaptive loops back."""
        active = self._active(state, boundary)
        return jax.tree_util.tree_map(lambda p: jnp.where(active, p, 0), state.params)

    def _orders(self, step, key):
        """The sample orders of every epoch that the next `orders_serve` chunks can reach
        from `step` (as `batch_index` draws them), computed once for those chunks instead of
        once per step; `None` when batches are drawn with replacement."""
        plan = self.plan
        if plan.sampling == "replacement":
            return None
        per_epoch = plan.num_samples // plan.batch_size
        first = step // per_epoch
        # Each chunk advances a member by at most `interval` steps, and L consecutive steps
        # reach at most (L - 2) // per_epoch + 2 epochs.
        reach = (self.orders_serve * plan.interval - 2) // per_epoch + 2
        epochs = first + jnp.arange(reach)
        permute = lambda e: jax.random.permutation(jax.random.fold_in(key, e), plan.num_samples)
        return first, jax.vmap(permute)(epochs)

    def _index(self, state: TrainState, key, orders):
        """`batch_index` of `state.step`, read from the chunk's `orders`."""
        plan = self.plan
        if orders is None:
            return batch_index(key, state.step, plan.num_samples, plan.batch_size, plan.sampling)
        first, table = orders
        epoch, offset = jnp.divmod(state.step, plan.num_samples // plan.batch_size)
        order = table[jnp.clip(epoch - first, 0, table.shape[0] - 1)]
        return jax.lax.dynamic_slice(order, (offset * plan.batch_size,), (plan.batch_size,))

    def _apply(self, state: TrainState, params, grads, misfit, failed, reason) -> TrainState:
        """One member's update from its gradient: skipped (parameters kept) when the batch's
        solve failed or anything became NaN/inf, which also stops the member when it
        persists (`max_failed_batches`) or is NaN/inf (`DIVERGED`)."""
        plan = self.plan
        updates, opt_state = plan.optimiser.update(grads, state.opt_state, params)
        new_params = eqx.apply_updates(params, updates)
        finite = jnp.isfinite(misfit) & _all_finite(new_params)
        has_failed = failed > 0
        good = finite & ~has_failed
        consecutive = jnp.where(has_failed, state.consecutive_failures + 1, 0)
        status = jnp.where(finite | has_failed, RUNNING, DIVERGED)
        if plan.max_failed_batches is not None:
            status = jnp.where(consecutive >= plan.max_failed_batches, SOLVER_FAILED, status)
        lowest = state.lowest
        if not plan.validated:
            # Without validation data the reference of the divergence test is the initial
            # model's loss on the first batch.
            lowest = jnp.where((state.step == 0) & jnp.isfinite(misfit), misfit, lowest)
        updated = dataclasses.replace(
            state,
            params=_select(good, new_params, state.params),
            opt_state=_select(good, opt_state, state.opt_state),
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
        return _like(updated, state)

    def _step(self, state, xs, ys, key, regulariser_values, boundary, orders) -> TrainState:
        params = self._frozen_zero(state, boundary)
        index = self._index(state, key, orders)
        gradient = jax.value_and_grad(self.objective, has_aux=True)
        (_, (misfit, failed, reason)), grads = gradient(
            params, regulariser_values, xs[index], ys[index]
        )
        stepped = self._apply(state, params, grads, misfit, failed, reason)
        return _select(self._active(state, boundary), stepped, state)

    def _shared_step(self, state, xs, ys, keys, regulariser_values, boundary, orders):
        """One step of every member with one adaptive solve over all their batches."""
        params = jax.vmap(self._frozen_zero)(state, boundary)
        index = jax.vmap(self._index)(state, keys, orders)
        gradient = jax.value_and_grad(self.shared_objective, has_aux=True)
        (_, (misfit, failed, reason)), grads = gradient(
            params, regulariser_values, xs[index], ys[index]
        )
        stepped = jax.vmap(self._apply)(state, params, grads, misfit, failed, reason)
        return jax.vmap(_select)(jax.vmap(self._active)(state, boundary), stepped, state)

    def shared_objective(self, params, regulariser_values, xb, yb):
        """The summed losses of all members (leading axis of every argument), their batches
        solved as one ODE; a failed solve fails every member's batch."""
        plan = self.plan
        models = eqx.combine(params, plan.static)
        predicted, result = shared_predictions(models, xb)
        misfit = jax.vmap(plan.loss)(predicted, yb)
        regularisers = eqx.combine(regulariser_values, plan.regulariser_static)

        def penalty(model, chosen):
            return sum((r(model) for r in chosen), jnp.zeros((), misfit.dtype))

        penalties = eqx.filter_vmap(penalty)(models, regularisers)
        failed = jnp.where(result == diffrax.RESULTS.successful, 0, xb.shape[1])
        reason = jnp.broadcast_to(failure_code(result), misfit.shape)
        return jnp.sum(misfit + penalties), (misfit, jnp.broadcast_to(failed, misfit.shape), reason)

    def _chunk(self, state, xs, ys, key, regulariser_values, orders):
        """The steps up to the next evaluation (a multiple of `plan.interval`, or the end) as
        one scan; steps of a stopped member leave its state as it is. `orders` are
        `self.orders(state.step, key)`. Without validation data the evaluation's bookkeeping
        needs nothing from the host and follows in the same program. Returns the state and
        the packed counters (`packed_counters`) before and after that bookkeeping."""
        self.traces += 1
        plan = self.plan
        step = self._shared_step if self.shared_solve else self._step
        boundary = jnp.minimum((state.step // plan.interval + 1) * plan.interval, plan.total)

        def body(carry, _):
            return step(carry, xs, ys, key, regulariser_values, boundary, orders), None

        with skip_value_checks():
            state, _ = jax.lax.scan(body, state, length=plan.interval)
        before = packed_counters(state)
        if not plan.validated:
            record = jax.vmap(self._record) if self.shared_solve else self._record
            state = record(state, state.lowest, state.status == RUNNING)
        return state, before, packed_counters(state)

    def _predict(self, params, xs):
        model = eqx.combine(params, self.plan.static)
        if self.plan.validation_model is not None:
            model = self.plan.validation_model(model)
        with skip_value_checks():
            return forward(model, xs)[0]

    def _record(self, state: TrainState, monitored, evaluated) -> TrainState:
        """The bookkeeping of an evaluation: divergence test, best parameters, early
        stopping, end of training. `monitored` is the validation error (ignored without
        validation data: the mean training loss since the last evaluation is monitored);
        members with `evaluated` false are left as they are."""
        plan = self.plan
        dtype = state.lowest.dtype
        if plan.validated:
            value = monitored.astype(dtype)
        else:
            value = (state.loss_sum / state.loss_count).astype(dtype)
        value = jnp.where(jnp.isfinite(value), value, jnp.inf)
        exploded = jnp.zeros((), bool)
        if plan.divergence_factor is not None:
            exploded = (value > plan.divergence_factor * state.lowest) & jnp.isfinite(state.lowest)
        kept = evaluated & ~exploded
        improved = kept & (value < state.best_val) if plan.validated else kept
        bad = jnp.where(kept, jnp.where(improved, 0, state.bad + 1), state.bad)
        stopping = kept & (plan.patience is not None) & (bad >= (plan.patience or 0))
        status = jnp.where(evaluated & exploded, EXPLODED, state.status)
        status = jnp.where(kept & (state.step >= plan.total), COMPLETED, status)
        status = jnp.where(stopping, EARLY_STOPPED, status)
        updated = dataclasses.replace(
            state,
            best=_select(improved, state.params, state.best),
            last_good=_select(kept, state.params, state.last_good),
            status=status,
            best_step=jnp.where(improved, state.step, state.best_step),
            best_val=jnp.where(improved, value, state.best_val),
            lowest=jnp.where(kept, jnp.minimum(state.lowest, value), state.lowest),
            bad=bad if plan.validated else state.bad,
            loss_sum=jnp.where(evaluated, 0, state.loss_sum).astype(state.loss_sum.dtype),
            loss_count=jnp.where(evaluated, 0, state.loss_count),
        )
        return _like(updated, state)
