"""The host side of minibatch training: one compiled chunk of steps per evaluation interval,
then the evaluation (validation predictions, the device's bookkeeping, evaluation counts) and
the sentences that say how each member ended."""

import dataclasses
import math
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from .._counting import EvaluationCounts
from ._endings import ending
from ._members import MemberRecord, restart_phrase
from ._metrics import error_metrics
from ._placement import place
from ._signals import interrupts_held
from ._state import Counters, TrainState, member, to_host
from ._status import Code, Status
from ._steps import Task
from ._trainer import AbstractRun, Evaluated, Outcome

RUNNING = int(Code.RUNNING)
PREDICT_ROWS = 256


@dataclasses.dataclass(frozen=True)
class Programs:
    """The compiled programs of a minibatch training (see `MinibatchTrainer.start`): the
    chunk of steps between evaluations (`traces` counts its tracings), the sampler's table,
    predictions of every member, an evaluation's bookkeeping and the loss of predictions."""

    chunk: Callable
    table: Callable
    predict: Callable
    record: Callable
    loss_of: Callable
    traces: list
    # Chunks one sampler table serves: with short chunks (eval_every=1) a permutation of the
    # whole training set for every step is a sizeable part of the step, and a table spanning
    # an epoch's steps holds only two epochs.
    table_serves: int


@dataclasses.dataclass
class Arrays:
    """The arrays training reads, placed for the cohort: training data (shared), the
    members' minibatch keys and regulariser weights (one row per member), the batch the
    evaluation counter runs on, and the validation data (host and device copies)."""

    xs: jax.Array
    ys: jax.Array
    keys: jax.Array
    regularisers: object
    count_x: jax.Array
    count_y: jax.Array
    val: tuple[np.ndarray, np.ndarray] | None = None
    val_targets: jax.Array | None = None
    val_rows: int = PREDICT_ROWS


def predict_members(
    programs: Programs, state: TrainState, xs: np.ndarray, dtype, rows: int = PREDICT_ROWS
) -> np.ndarray:
    """Predictions of every member on `xs`, `(members, n, out)` float64, in fixed-size
    chunks (one compilation for any number of samples). A failed solve predicts nothing: its
    rows are infinite, so that its error is never a number to select on."""
    out = []
    for begin in range(0, len(xs), rows):
        part = xs[begin : begin + rows]
        pad = rows - len(part)
        padded = np.concatenate([part, np.repeat(part[-1:], pad, axis=0)]) if pad else part
        chunk = jnp.asarray(padded, dtype)
        predicted, succeeded = to_host(programs.predict(state.params, state.constants, chunk))
        succeeded = succeeded.reshape(succeeded.shape + (1,) * (predicted.ndim - succeeded.ndim))
        out.append(np.where(succeeded, predicted, np.inf)[:, : len(part)])
    return np.concatenate(out, axis=1).astype(np.float64)


def _indices(mask: np.ndarray) -> list[int]:
    """The members where `mask` holds, as Python integers."""
    return [int(k) for k in np.flatnonzero(mask)]


class MinibatchRun(AbstractRun):
    """Trains the members of a `MinibatchTrainer` until every one has stopped.

    The next chunk is dispatched as soon as an evaluation's device bookkeeping is (without
    validation data, at once: the chunk did it), before the host has read its outcome:
    history, checkpoints and progress are written while the device trains. A chunk
    dispatched after the last evaluation finds no member running and does nothing.
    """

    def __init__(
        self,
        task: Task,
        programs: Programs,
        state: TrainState,
        arrays: Arrays,
        members: list[MemberRecord],
        *,
        mesh,
        restore: list[Callable],
        counter: Callable[..., EvaluationCounts] | None,
        clip_norm: float | None,
        count_every: int | None,
        pause_at: int | None = None,
    ):
        self.task, self.programs, self.state, self.arrays = task, programs, state, arrays
        self.members, self.mesh, self.restore, self.counter = members, mesh, restore, counter
        self.clip_norm, self.count_every, self.pause_at = clip_norm, count_every, pause_at
        self.counters = Counters.of(state)
        self._host = None
        self.resumed_wall = [record.wall for record in members]
        running = self.counters.status == RUNNING
        self.done = int(np.max(self.counters.step[running], initial=0))
        self.last_running = running
        for k in _indices(~running):
            self._ended_before(k)
        self.chunk: Callable | None = None
        self.pending: tuple | None = None

    def _ended_before(self, k: int) -> None:
        """The status and message of member `k`, which a resume found stopped."""
        record = self.members[k]
        if record.history:
            key = "val_global" if self.task.validated else "train_loss"
            record.monitored = record.history[-1].get(key, math.nan)
        code = Code(int(self.counters.status[k]))
        message = ending(self.task, record, self.counters, k, code, self.clip_norm)
        record.stop(code.status, message)

    def _model(self, params, k: int):
        """Member `k`'s model with `params`, stacked host arrays of the cohort."""
        chosen = jax.tree_util.tree_map(jnp.asarray, member(params, k))
        constants = jax.tree_util.tree_map(jnp.asarray, member(self.host_state().constants, k))
        return self.task.model(chosen, constants)

    # --- AbstractRun ------------------------------------------------------------------

    def running(self) -> bool:
        return bool(np.any(self.counters.status == RUNNING))

    def compile(self) -> None:
        if not self.running():
            return
        a, programs = self.arrays, self.programs
        tic = time.perf_counter()
        # Compiled ahead of time: the compilation is timed on its own, and a call that would
        # need another compilation fails instead of recompiling.
        self.table = programs.table(self.state.step, a.keys)
        self.chunk = programs.chunk.lower(
            self.state, a.xs, a.ys, a.keys, a.regularisers, self.table
        ).compile()
        if self.task.validated:
            # The evaluation's bookkeeping too (a call that changes nothing), so that
            # training wall times exclude compilation.
            size = len(self.members)
            nothing = place(self.mesh, jnp.zeros(size, bool), True)
            inf = place(self.mesh, jnp.full(size, jnp.inf, a.xs.dtype), True)
            jax.block_until_ready(programs.record(self.state, inf, nothing))
        if self.counter is not None:
            # Counting compiles programs of its own: at the first count it would stall training.
            self.counter(self._model(self.host_state().params, 0), a.count_x, a.count_y)
        compile_time = time.perf_counter() - tic
        self.start, started = time.perf_counter(), time.time()
        for record in self.members:
            record.compile_time = record.compile_time or compile_time
            record.training_started = started
        self.served = 0
        self.pending = self._dispatch(self.state)

    def advance(self) -> dict[int, Evaluated]:
        running, steps = self.counters.status == RUNNING, self.counters.step
        assert self.chunk is not None, "advance() before compile()"
        pending = self.pending
        if pending is None:  # held at `pause_at`, which this run then went past
            pending = self._dispatch(self.state)
        stepped, before, recorded = pending
        # The evaluation that reaches `pause_at` pauses the run: no chunk is queued after it.
        pausing = self.pause_at is not None and (
            int(np.max(steps[running])) + self.task.interval >= self.pause_at
        )
        queue = lambda state: None if pausing else self._dispatch(state)
        if not self.task.validated:
            # The chunk did its evaluation's bookkeeping: queue the next one at once.
            self.state, self.pending = stepped, queue(stepped)
        after = Counters.unpack(before)
        self.done += int(np.max(after.step[running])) - int(np.max(steps[running]))
        evaluated = running & (after.status == RUNNING)
        elapsed = time.perf_counter() - self.start
        for k in _indices(evaluated):
            self.members[k].wall = self.resumed_wall[k] + elapsed
        rows, monitored = self._rows(stepped, after, evaluated)
        if self.task.validated:
            flags = place(self.mesh, jnp.asarray(evaluated), True)
            monitored = place(self.mesh, jnp.asarray(monitored, self.arrays.xs.dtype), True)
            stepped, recorded = self.programs.record(stepped, monitored, flags)
            self.state, self.pending = stepped, queue(stepped)
        self.counters = Counters.unpack(recorded)
        self.last_running = running
        for k, row in rows.items():
            self.members[k].monitored = row["val_global" if self.task.validated else "train_loss"]
        evaluations = self._evaluations(rows)
        for k in _indices(running & (self.counters.status != RUNNING)):
            code = Code(int(self.counters.status[k]))
            message = ending(
                self.task, self.members[k], self.counters, k, code, self.clip_norm, rows.get(k)
            )
            self.members[k].stop(code.status, message)
        return evaluations

    def progress(self) -> tuple[int, int, str]:
        members, running = self.members, self.last_running
        latest = [members[k].history[-1] for k in _indices(running) if members[k].history]
        if not latest:
            return self.done, self.task.total, ""
        validated = self.task.validated
        if len(members) == 1:
            row = latest[0]
            text = f"loss {row['train_loss']:.3g}" + (
                f" val {row['val_global']:.4f}" if validated else ""
            )
        else:
            key = "val_global" if validated else "train_loss"
            values = [row[key] for row in latest if math.isfinite(row[key])]
            active = int(np.sum(self.counters.status == RUNNING))
            text = f"{active}/{len(members)} running" + (
                f", best {key} {min(values):.4g}" if values else ""
            )
        return self.done, self.task.total, text

    def interrupt(self) -> None:
        self.counters = Counters.of(self.state)
        for k in _indices(self.counters.status == RUNNING):
            record = self.members[k]
            step = int(self.counters.step[k])
            restart = restart_phrase(record, "step")
            record.stop(Status.INTERRUPTED, f"interrupted at step {step}; {restart}.")

    def outcome(self, k: int) -> Outcome:
        host = self.host_state()
        chosen = host.best if self.task.validated else host.last_good
        c = self.counters
        return Outcome(
            model=self.restore[k](self._model(chosen, k)),
            status=self.members[k].status,
            steps=int(c.step[k]),
            best_step=int(c.best_step[k]),
            solver_failures=int(c.failures[k]),
            failed_batches=int(c.failed_batches[k]),
            num_traces=self.programs.traces[0],
        )

    # --- One evaluation ---------------------------------------------------------------

    def host_state(self) -> TrainState:
        """The state on the host, fetched once per evaluation."""
        if self._host is None or self._host[0] is not self.state:
            self._host = (self.state, to_host(self.state))
        return self._host[1]

    def _dispatch(self, state: TrainState):
        # Batches depend on (key, step) only: a table reused for the chunks it covers gives
        # the same batches as a fresh one.
        a = self.arrays
        if self.served == self.programs.table_serves:
            self.table, self.served = self.programs.table(state.step, a.keys), 0
        self.served += 1
        assert self.chunk is not None, "dispatch before compile()"
        return self.chunk(state, a.xs, a.ys, a.keys, a.regularisers, self.table)

    def _rows(self, state, after: Counters, evaluated: np.ndarray):
        """The history rows of the members in `evaluated` after a chunk (validation error
        and losses), and the monitored value of every member (`inf` where none)."""
        monitored = np.full(len(evaluated), np.inf)
        rows = {}
        if not np.any(evaluated):
            return rows, monitored
        task, a = self.task, self.arrays
        if task.validated:
            assert a.val is not None and a.val_targets is not None
            xv, yv = a.val
            predicted = predict_members(self.programs, state, xv, a.xs.dtype, a.val_rows)
            as_device = jnp.asarray(predicted, a.xs.dtype)
            val_losses = np.asarray(self.programs.loss_of(as_device, a.val_targets))
        for k in _indices(evaluated):
            count = after.loss_count[k]
            row = {
                "step": int(after.step[k]),
                "epoch": int(after.step[k]) / task.per_epoch,
                "train_loss": float(after.loss_sum[k] / count) if count else math.nan,
            }
            if task.validated:
                row["val_loss"] = float(val_losses[k])
                row.update(error_metrics(predicted[k], yv, prefix="val_"))
                value = row["val_global"]
            else:
                value = row["train_loss"]
            monitored[k] = value if np.isfinite(value) else np.inf
            row["solver_failures"] = int(after.failures[k])
            rows[k] = row
        return rows, monitored

    def _evaluations(self, rows: dict) -> dict[int, Evaluated]:
        """Evaluation counts and checkpoints of the evaluated members, once the device
        bookkeeping has decided how each goes on."""
        out = {}
        for k, row in rows.items():
            record = self.members[k]
            code = int(self.counters.status[k])
            row["wall_time"] = record.wall
            kept = code != Code.EXPLODED
            counter = self.counter
            if counter is not None and self._counted(record, code, kept):
                with interrupts_held():
                    model = self._model(self.host_state().params, k)
                    counts = counter(model, self.arrays.count_x, self.arrays.count_y)
                row["forward_evaluations"] = counts.forward_evaluations
                row["backward_evaluations"] = counts.backward_evaluations
            snapshot = None
            if kept:
                snapshot = lambda k=k: ({}, member(self.host_state(), k))
            out[k] = Evaluated(row, checkpoint=snapshot)
        return out

    def _counted(self, record: MemberRecord, code: int, kept: bool) -> bool:
        if not kept:
            return False
        last = code in (Code.COMPLETED, Code.EARLY_STOPPED)
        every = self.count_every
        return last or (every is not None and len(record.history) % every == 0)
