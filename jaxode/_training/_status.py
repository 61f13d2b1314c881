"""How training ends: the status a member reports, the codes the device holds for it, and why a
solve failed. Each carries its meaning, so that no table of names lives beside the numbers."""

import enum

import diffrax
import jax.numpy as jnp
from jaxtyping import Array, Int


class Status(enum.StrEnum):
    """How a member's training ended, as `FitResult.status`, `metrics.json` and a sweep's
    results table record it (a `str`: `status == "completed"` holds)."""

    RUNNING = "running"
    COMPLETED = "completed"
    EARLY_STOPPED = "early_stopped"
    DIVERGED = "diverged"
    SOLVER_FAILED = "solver_failed"
    INTERRUPTED = "interrupted"

    @property
    def meaning(self) -> str:
        """One sentence on what the status means."""
        return _MEANINGS[self]

    @property
    def succeeded(self) -> bool:
        """Whether the member trained to the end it was meant to reach."""
        return self in (Status.COMPLETED, Status.EARLY_STOPPED)


_MEANINGS = {
    Status.RUNNING: "training goes on",
    Status.COMPLETED: "the planned work was done (or the optimiser converged)",
    Status.EARLY_STOPPED: "the validation error stopped improving for `patience` evaluations",
    Status.DIVERGED: "the loss or the parameters became NaN/inf, or the monitored error grew "
    "past `divergence_factor` times its lowest",
    Status.SOLVER_FAILED: "the ODE solve failed in `max_failed_batches` consecutive batches",
    Status.INTERRUPTED: "Ctrl-C or SIGTERM stopped training; a resume continues it",
}


class Code(enum.IntEnum):
    """A member's state as the device holds it, one small integer per member (stored in
    checkpoints). Two codes report `Status.DIVERGED`, since their endings say different
    things."""

    RUNNING = 0
    COMPLETED = 1
    EARLY_STOPPED = 2
    NOT_FINITE = 3
    EXPLODED = 4
    SOLVER_FAILED = 5

    @property
    def status(self) -> Status:
        return _STATUSES[self]


_STATUSES = {
    Code.RUNNING: Status.RUNNING,
    Code.COMPLETED: Status.COMPLETED,
    Code.EARLY_STOPPED: Status.EARLY_STOPPED,
    Code.NOT_FINITE: Status.DIVERGED,
    Code.EXPLODED: Status.DIVERGED,
    Code.SOLVER_FAILED: Status.SOLVER_FAILED,
}


class SolveFailure(enum.IntEnum):
    """Why the latest failed solve of a member failed, as the device holds it."""

    NONE = 0
    MAX_STEPS = 1
    DT_MIN = 2
    OTHER = 3

    @property
    def reason(self) -> str:
        return _REASONS[self]

    @staticmethod
    def of(result: diffrax.RESULTS) -> Int[Array, "..."]:
        """The code of a `diffrax.RESULTS` value (or array of them), on the device."""
        # Plain ints: the program is the same as with literal codes (no enum in the trace).
        none, max_steps, dt_min, other = (int(code) for code in SolveFailure)
        return jnp.where(
            result == diffrax.RESULTS.successful,
            none,
            jnp.where(
                result == diffrax.RESULTS.max_steps_reached,
                max_steps,
                jnp.where(result == diffrax.RESULTS.dt_min_reached, dt_min, other),
            ),
        )


_REASONS = {
    SolveFailure.NONE: "",
    SolveFailure.MAX_STEPS: "the solver reached `max_steps`",
    SolveFailure.DT_MIN: "the step size fell below its minimum",
    SolveFailure.OTHER: "the solve failed",
}
