"""The host side of training: one compiled chunk per evaluation interval, then the evaluation,
history, checkpoints, progress and the messages that say how each member ended."""

import dataclasses
import math
import pathlib
import time
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._counting import EvaluationCounts
from ._checkpoint import load_checkpoint, save_checkpoint, write_history
from ._engine import (
    COMPLETED,
    COUNTER_FLOATS,
    COUNTER_INTEGERS,
    DIVERGED,
    EARLY_STOPPED,
    EXPLODED,
    FAILURE_REASONS,
    RUNNING,
    SOLVER_FAILED,
    STATUS_NAMES,
    Plan,
    Programs,
    TrainState,
    initial_state,
    packed_counters,
)
from ._metrics import error_metrics
from ._progress import progress_bar
from ._signals import interrupts_held

CHECKPOINT, HISTORY = "checkpoint.eqx", "history.csv"
# Checkpoints hold a JSON header and a `TrainState` (best parameters first, see `read_best`).
LAYOUT = 3
PREDICT_ROWS = 256


def stack(trees):
    """One tree whose leaves stack the leaves of `trees` along a new leading axis."""
    return jax.tree_util.tree_map(lambda *leaves: jnp.stack(leaves), *trees)


def member(tree, k: int | np.integer):
    """Member `k` of a stacked tree."""
    return jax.tree_util.tree_map(lambda leaf: leaf[k], tree)


def to_host(tree):
    """NumPy copies of the arrays of `tree`; an array spread over several processes
    (`jax.distributed`) is gathered from all of them."""

    def fetch(leaf):
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
            from jax.experimental import multihost_utils

            return np.asarray(multihost_utils.process_allgather(leaf, tiled=True))
        return np.asarray(leaf)

    return jax.tree_util.tree_map(fetch, tree)


def writes_files() -> bool:
    """Whether this process writes checkpoints and history (one process of several does)."""
    return jax.process_index() == 0


def check_layout(path, meta: dict) -> None:
    if meta.get("layout") != LAYOUT:
        raise ValueError(f"{path} was written by an older version of jaxode; start a new run.")


@dataclasses.dataclass
class Member:
    """What the host keeps of one member: its directory, history and timing."""

    directory: pathlib.Path | None
    history: list
    wall: float = 0.0
    compile_time: float = 0.0
    checkpoint_step: int | None = None
    monitored: float = math.nan
    message: str = ""
    interrupted: bool = False
    resumed: bool = False
    training_started: float | None = None

    def meta(self) -> dict:
        return dict(
            layout=LAYOUT,
            history=self.history,
            wall=self.wall,
            compile_time=self.compile_time,
            checkpoint_step=self.checkpoint_step,
        )


@dataclasses.dataclass(frozen=True)
class Options:
    """Host-side settings of a run (see `fit` for their meaning)."""

    per_epoch: int
    clip_norm: float | None
    count_every: int
    progress: bool
    callback: object


def start(params: list, opt_states: list, directories: list, resume: bool):
    """The stacked initial state of every member (resumed from its checkpoint when `resume`
    and one exists) and their host records."""
    states, members = [], []
    dtype = jax.tree_util.tree_leaves(params[0])[0].dtype
    for p, o, directory in zip(params, opt_states, directories):
        directory = None if directory is None else pathlib.Path(directory)
        path = None if directory is None else directory / CHECKPOINT
        if resume and path.is_file():
            skeleton = initial_state(p, o, math.inf, dtype)
            meta, state = load_checkpoint(path, skeleton)
            check_layout(path, meta)
            record = Member(
                directory,
                meta["history"],
                meta["wall"],
                meta["compile_time"],
                meta["checkpoint_step"],
                resumed=True,
            )
        else:
            state, record = initial_state(p, o, math.inf, dtype), Member(directory, [])
        states.append(state)
        members.append(record)
    return stack(states), members


def _failure_advice(clip_norm) -> str:
    return (
        "loosen the solver tolerances (rtol/atol), raise max_steps or lower the learning rate"
        + ("" if clip_norm is not None else ", or enable gradient clipping (clip_norm)")
    )


def _checkpoint_phrase(record: Member, interval: int) -> str:
    if record.checkpoint_step is None:
        return f"no checkpoint had been written yet (the first evaluation is at step {interval})"
    return f"kept the last good checkpoint (step {record.checkpoint_step})"


def ending(plan: Plan, options: Options, record: Member, counters: dict) -> str:
    """The sentence that says how a member ended and, when it did not complete, what to
    change."""
    status, step = counters["status"], counters["step"]
    phrase = _checkpoint_phrase(record, plan.interval)
    if record.interrupted:
        if record.directory is None:
            restart = "nothing to resume from (no checkpoint_dir)"
        elif record.checkpoint_step is None:
            restart = "no checkpoint was written yet, so a resume starts from step 0"
        else:
            restart = f"a resume restarts from the checkpoint at step {record.checkpoint_step}"
        message = f"interrupted at step {step}; {restart}."
    elif status == SOLVER_FAILED:
        run = counters["consecutive_failures"]
        message = (
            f"the ODE solve failed in {run} consecutive batches (steps {step - run + 1} to "
            f"{step}; {FAILURE_REASONS[counters['failure_reason']]}); stopped at step {step} "
            f"and {phrase}; {_failure_advice(options.clip_norm)}."
        )
    elif status == DIVERGED:
        advice = (
            "lower the learning rate or enable gradient clipping (clip_norm)"
            if options.clip_norm is None
            else "lower the learning rate (gradients are already clipped at norm "
            f"{options.clip_norm:g})"
        )
        message = (
            f"loss or parameters became NaN/inf at step {step} (epoch "
            f"{(step - 1) // options.per_epoch + 1}); {phrase}; {advice}."
        )
    elif status == EXPLODED:
        what = "validation error" if plan.validated else "training loss"
        message = (
            f"the {what} exploded: {record.monitored:.3g} at step {step} is more than "
            f"{plan.divergence_factor:g} times its lowest value ({counters['lowest']:.3g}); "
            f"stopped and {phrase}; {_failure_advice(options.clip_norm)}."
        )
    elif status == EARLY_STOPPED:
        message = (
            f"no validation improvement in {plan.patience} evaluations; stopped at step {step}."
        )
    else:
        message = f"finished {step} steps."
    if counters["failures"] and status != SOLVER_FAILED:
        message += (
            f" {counters['failures']} solver failures in {counters['failed_batches']} batches "
            "were skipped; loosen tolerances or raise max_steps."
        )
    return message


def unpack(packed) -> dict:
    """The scalar fields of every member, as NumPy arrays, from `packed_counters`."""
    integers, floats = to_host(packed)
    out = {name: integers[..., i] for i, name in enumerate(COUNTER_INTEGERS)}
    out.update({name: floats[..., i] for i, name in enumerate(COUNTER_FLOATS)})
    return out


def counters_of(state: TrainState) -> dict:
    """The scalar fields of every member, as NumPy arrays."""
    return unpack(_packed(state))


_packed = jax.jit(packed_counters)


def member_counters(counters: dict, k: int | np.integer) -> dict:
    return {
        name: float(value[k]) if value.dtype.kind == "f" else int(value[k])
        for name, value in counters.items()
    }


def predict_members(
    programs: Programs, params, xs: np.ndarray, dtype, rows: int = PREDICT_ROWS
) -> np.ndarray:
    """Predictions of every member on `xs`, `(members, n, out)` float64, in fixed-size
    chunks (one compilation for any number of samples)."""
    out = []
    for begin in range(0, len(xs), rows):
        part = xs[begin : begin + rows]
        pad = rows - len(part)
        padded = np.concatenate([part, np.repeat(part[-1:], pad, axis=0)]) if pad else part
        predicted = programs.predict(params, jnp.asarray(padded, dtype))
        out.append(to_host(predicted)[:, : len(part)])
    return np.concatenate(out, axis=1).astype(np.float64)


def run(
    plan: Plan,
    programs: Programs,
    state: TrainState,
    members: list[Member],
    arrays: dict,
    options: Options,
    counter: Callable[..., EvaluationCounts] | None,
):
    """Trains until every member has stopped; returns the final state and counters. A
    `KeyboardInterrupt` marks the members still running as interrupted.

    The next chunk is dispatched as soon as an evaluation's device bookkeeping is (without
    validation data, at once: the chunk did it), before the host has read its outcome:
    history, checkpoints and progress are written while the device trains. A chunk
    dispatched after the last evaluation finds no member running and does nothing."""
    xs, ys, keys, regularisers = arrays["xs"], arrays["ys"], arrays["keys"], arrays["regularisers"]
    counters = counters_of(state)
    resumed_wall = [record.wall for record in members]
    done = int(np.max(counters["step"][counters["status"] == RUNNING], initial=0))
    shown = options.progress and writes_files()
    bar = progress_bar(plan.total, done, shown, elapsed=max(resumed_wall))
    try:
        if not np.any(counters["status"] == RUNNING):
            return state, counters
        tic = time.perf_counter()
        # Compiled ahead of time: the compilation is timed on its own, and a call that would
        # need another compilation fails instead of recompiling.
        orders = programs.orders(state.step, keys)
        chunk = programs.chunk.lower(state, xs, ys, keys, regularisers, orders).compile()
        if plan.validated:
            # The evaluation's bookkeeping too (a call that changes nothing), so that
            # training wall times exclude compilation.
            nothing = arrays["place"](jnp.zeros(len(members), bool))
            inf = arrays["place"](jnp.full(len(members), jnp.inf, xs.dtype))
            jax.block_until_ready(programs.record(state, inf, nothing))
        compile_time = time.perf_counter() - tic
        start, started = time.perf_counter(), time.time()
        for record in members:
            record.compile_time = record.compile_time or compile_time
            record.training_started = started

        table, served = orders, 0

        def advance(state):
            # Batches depend on (key, step) only: a table reused for the chunks it covers
            # gives the same batches as a fresh one.
            nonlocal table, served
            if served == programs.orders_serve:
                table, served = programs.orders(state.step, keys), 0
            served += 1
            return chunk(state, xs, ys, keys, regularisers, table)

        pending = advance(state)
        while np.any(counters["status"] == RUNNING):
            running, steps = counters["status"] == RUNNING, counters["step"]
            stepped, before, recorded = pending
            if not plan.validated:
                # The chunk did its evaluation's bookkeeping: queue the next one at once.
                state, pending = stepped, advance(stepped)
            after = unpack(before)
            bar.update(int(np.max(after["step"][running])) - int(np.max(steps[running])))
            evaluated = running & (after["status"] == RUNNING)
            elapsed = time.perf_counter() - start
            for k in np.flatnonzero(evaluated):
                members[k].wall = resumed_wall[k] + elapsed
            rows, monitored = evaluation_rows(
                plan, programs, stepped, after, evaluated, arrays, options
            )
            if plan.validated:
                flags = arrays["place"](jnp.asarray(evaluated))
                monitored = arrays["place"](jnp.asarray(monitored, xs.dtype))
                stepped, recorded = programs.record(stepped, monitored, flags)
                state, pending = stepped, advance(stepped)
            counters = unpack(recorded)
            for k in rows:
                members[k].monitored = rows[k]["val_global" if plan.validated else "train_loss"]
            finish_evaluation(plan, state, counters, members, rows, arrays, options, counter)
            for k in np.flatnonzero(running & (counters["status"] != RUNNING)):
                members[k].message = ending(plan, options, members[k], member_counters(counters, k))
            _postfix(bar, members, counters, running, plan.validated)
            if options.callback is not None:
                for k in np.flatnonzero(evaluated):
                    options.callback(int(k), members[k].history[-1])
    except KeyboardInterrupt:
        counters = counters_of(state)
        for k in np.flatnonzero(counters["status"] == RUNNING):
            members[k].interrupted = True
            members[k].message = ending(plan, options, members[k], member_counters(counters, k))
    finally:
        bar.close()
    return state, counters


def evaluation_rows(plan, programs, state, after, evaluated, arrays, options):
    """The history rows of the members in `evaluated` after a chunk (validation error and
    losses), and the monitored value of every member (`inf` where none)."""
    monitored = np.full(len(evaluated), np.inf)
    rows = {}
    if not np.any(evaluated):
        return rows, monitored
    if plan.validated:
        xv, yv = arrays["val"]
        predicted = predict_members(
            programs, state.params, xv, arrays["xs"].dtype, arrays["val_rows"]
        )
        as_device = jnp.asarray(predicted, arrays["xs"].dtype)
        val_losses = np.asarray(programs.loss_of(as_device, arrays["val_targets"]))
    for k in np.flatnonzero(evaluated):
        row = {
            "step": int(after["step"][k]),
            "epoch": int(after["step"][k]) / options.per_epoch,
            "train_loss": float(after["loss_sum"][k] / after["loss_count"][k])
            if after["loss_count"][k]
            else math.nan,
        }
        if plan.validated:
            row["val_loss"] = float(val_losses[k])
            row.update(error_metrics(predicted[k], yv, prefix="val_"))
            value = row["val_global"]
        else:
            value = row["train_loss"]
        monitored[k] = value if np.isfinite(value) else np.inf
        row["solver_failures"] = int(after["failures"][k])
        rows[k] = row
    return rows, monitored


def finish_evaluation(plan, state, counters, members, rows, arrays, options, counter):
    """History rows, evaluation counts and checkpoints of the evaluated members, once the
    device bookkeeping (`counters`, after it) has decided how each goes on."""
    fetched = []

    def host_state():
        if not fetched:
            fetched.append(to_host(state))
        return fetched[0]

    for k, row in rows.items():
        record = members[k]
        status = counters["status"][k]
        row["wall_time"] = record.wall
        last = status in (COMPLETED, EARLY_STOPPED)
        kept = status != EXPLODED
        if (
            counter is not None
            and kept
            and (len(record.history) % options.count_every == 0 or last)
        ):
            params = jax.tree_util.tree_map(jnp.asarray, member(host_state().params, k))
            with interrupts_held():
                model = eqx.combine(params, plan.static)
                counts = counter(model, arrays["count_x"], arrays["count_y"])
            row["forward_evaluations"] = counts.forward_evaluations
            row["backward_evaluations"] = counts.backward_evaluations
        record.history.append(row)
        if record.directory is None:
            continue
        # Held, so that an interrupt cannot leave the record naming a checkpoint that is not
        # on disk (the stop message quotes `checkpoint_step`).
        with interrupts_held():
            if kept:
                record.checkpoint_step = row["step"]
            if writes_files():
                # History first: the rows on disk always reach the checkpoint a resume uses.
                write_history(record.directory / HISTORY, record.history)
                if kept:
                    path = record.directory / CHECKPOINT
                    save_checkpoint(path, record.meta(), member(host_state(), k))


def _postfix(bar, members, counters, running, validated) -> None:
    latest = [members[k].history[-1] for k in np.flatnonzero(running) if members[k].history]
    if not latest:
        return
    if len(members) == 1:
        row = latest[0]
        text = f"loss {row['train_loss']:.3g}" + (
            f" val {row['val_global']:.4f}" if validated else ""
        )
    else:
        key = "val_global" if validated else "train_loss"
        values = [row[key] for row in latest if math.isfinite(row[key])]
        active = int(np.sum(counters["status"] == RUNNING))
        text = f"{active}/{len(members)} running" + (
            f", best {key} {min(values):.4g}" if values else ""
        )
    bar.set_postfix_str(text)


def status_name(counters: dict, k: int, record: Member) -> str:
    return "interrupted" if record.interrupted else STATUS_NAMES[int(counters["status"][k])]
