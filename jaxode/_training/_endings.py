"""The sentence that says how a member of a minibatch training ended and, when it did not
complete, what to change."""

from ._members import MemberRecord
from ._state import Counters
from ._status import Code, SolveFailure
from ._steps import Task


def _advice(clip_norm: float | None) -> str:
    clipping = "" if clip_norm is not None else ", or enable gradient clipping (clip_norm)"
    return (
        "loosen the solver tolerances (rtol/atol), raise max_steps or lower the learning "
        f"rate{clipping}"
    )


def _checkpoint_phrase(record: MemberRecord, interval: int) -> str:
    if record.checkpoint_step is None:
        return f"no checkpoint had been written yet (the first evaluation is at step {interval})"
    return f"kept the last good checkpoint (step {record.checkpoint_step})"


def _not_finite(task: Task, step: int, phrase: str, clip_norm: float | None) -> str:
    advice = (
        "lower the learning rate or enable gradient clipping (clip_norm)"
        if clip_norm is None
        else f"lower the learning rate (gradients are already clipped at norm {clip_norm:g})"
    )
    return (
        f"loss or parameters became NaN/inf at step {step} (epoch "
        f"{(step - 1) // task.per_epoch + 1}); {phrase}; {advice}."
    )


def _kept(task: Task, record: MemberRecord, c: Counters, k: int, latest: dict | None) -> str:
    """Which parameters a member that ended well returns, and why."""
    if not task.validated:
        return "kept the parameters of the last step (no validation data to select on)"
    best = int(c.best_step[k])
    rows = record.history + ([latest] if latest is not None else [])
    row = next((r for r in reversed(rows) if r.get("step") == best), None)
    if row is None:
        return f"kept the parameters of step {best}, the lowest validation error"
    return (
        f"kept the parameters of step {best}, the lowest validation error "
        f"({row['val_global']:.4g}, relative, normalised units)"
    )


def ending(
    task: Task,
    record: MemberRecord,
    c: Counters,
    k: int,
    code: Code,
    clip_norm: float | None,
    latest: dict | None = None,
) -> str:
    """How member `k` (its record, the counters of every member) ended with `code`;
    `latest`: its history row of this evaluation, not yet in its record."""
    step = int(c.step[k])
    phrase = _checkpoint_phrase(record, task.interval)
    limit = task.stopping.max_failed_batches
    # Every batch failed, and the run ended for another reason than a run of failures.
    every = int(c.failed_batches[k]) >= step
    every = every and (limit is None or int(c.consecutive_failures[k]) < limit)
    if code == Code.SOLVER_FAILED and every:
        reason = SolveFailure(int(c.failure_reason[k])).reason
        message = (
            f"the ODE solve failed in every one of the {step} batches ({reason}), so no step "
            f"changed the parameters; {_advice(clip_norm)}."
        )
    elif code == Code.SOLVER_FAILED:
        run = int(c.consecutive_failures[k])
        reason = SolveFailure(int(c.failure_reason[k])).reason
        message = (
            f"the ODE solve failed in {run} consecutive batches (steps {step - run + 1} to "
            f"{step}; {reason}); stopped at step {step} and {phrase}; {_advice(clip_norm)}."
        )
    elif code == Code.NOT_FINITE:
        message = _not_finite(task, step, phrase, clip_norm)
    elif code == Code.EXPLODED:
        what = "validation error" if task.validated else "training loss"
        message = (
            f"the {what} exploded: {record.monitored:.3g} at step {step} is more than "
            f"{task.stopping.divergence_factor:g} times its lowest value "
            f"({float(c.lowest[k]):.3g}); stopped and {phrase}; {_advice(clip_norm)}."
        )
    elif code == Code.EARLY_STOPPED:
        message = (
            f"no validation improvement in {task.stopping.patience} evaluations; stopped "
            f"at step {step}; {_kept(task, record, c, k, latest)}."
        )
    else:
        message = f"finished {step} steps; {_kept(task, record, c, k, latest)}."
    if c.failures[k] and code != Code.SOLVER_FAILED:
        message += (
            f" {int(c.failures[k])} solver failures in {int(c.failed_batches[k])} batches "
            "were skipped; loosen tolerances or raise max_steps."
        )
    return message
