"""What a GNvpro training keeps of each member on the host: its best and current parameters,
iterations and passes, and how it ended; the checkpoint entries of its own; its messages."""

import dataclasses
import math

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp

from .._models import NeuralODE
from .._surrogate import Surrogate
from ._members import MemberRecord, restart_phrase

_ENDINGS = {
    "max_iterations": "finished {iterations} iterations",
    "max_evaluations": "used {passes} passes of the budget of {budget} (the work of {epochs} "
    "Adam epochs) in {iterations} iterations",
    "converged": "converged after {iterations} iterations (reduced gradient at its floor)",
    "stalled": "stopped after {iterations} iterations: the trust radius fell below float32's "
    "smallest normal number, too short a step to change the objective",
    "budget": "the budget was used up before this resume ({passes} passes, {iterations} "
    "iterations)",
}


def forward_mode(model: Surrogate) -> Surrogate:
    """`model` as GNvpro needs it: a neural ODE differentiated by `diffrax.DirectAdjoint`
    (Jacobian-vector products through the solve), and failed solves returned as values
    (a non-finite trial point is then a rejected step, not an exception)."""
    dynamics = model.dynamics
    if not isinstance(dynamics, NeuralODE):
        return model
    changed = dataclasses.replace(dynamics, paradigm=diffrax.DirectAdjoint(), throw=False)
    return eqx.tree_at(lambda m: m.dynamics, model, changed)


def as_configured(trained: Surrogate, original: Surrogate) -> Surrogate:
    """`trained` with `original`'s adjoint and `throw` again: the model `load` rebuilds."""
    if not isinstance(original.dynamics, NeuralODE):
        return trained
    dynamics = dataclasses.replace(
        trained.dynamics, paradigm=original.dynamics.paradigm, throw=original.dynamics.throw
    )
    return eqx.tree_at(lambda m: m.dynamics, trained, dynamics)


def params_of(model: Surrogate):
    return eqx.partition(model, eqx.is_inexact_array)[0]


@dataclasses.dataclass
class GNvproMember:
    """One member's GNvpro state: `best` and `current` are parameter trees (`eqx.partition`)
    of the configured model; `ended` names how its iterations ended (`None`: not yet);
    `saved` is when its last checkpoint was written (`time.perf_counter`)."""

    best: object
    current: object
    best_step: int = 0
    best_val: float = math.inf
    step: int = 0
    passes: int = 0
    ended: str | None = None
    saved: float = -math.inf

    @classmethod
    def fresh(cls, model: Surrogate) -> "GNvproMember":
        return cls(best=params_of(model), current=params_of(model))

    @classmethod
    def resumed(cls, record: MemberRecord, model: Surrogate) -> "GNvproMember":
        """From `record`'s checkpoint (best parameters, then the current ones).

        **Raises:** `ValueError` for the checkpoint of another trainer."""
        skeleton = params_of(model)
        meta, (best, current) = record.load((skeleton, skeleton))
        if meta.get("optimiser") != "gnvpro":
            raise ValueError(
                f"{record.checkpoint} is not the checkpoint of a gnvpro run; start a new run."
            )
        best_val = math.inf if meta["best_val"] is None else meta["best_val"]
        return cls(
            best=best,
            current=current,
            best_step=meta["best_step"],
            best_val=best_val,
            step=meta["step"],
            passes=meta["passes"],
            ended=meta["ended"],
        )

    def model(self, original: Surrogate, current: bool = False) -> Surrogate:
        """The configured model with the best (or the current) parameters."""
        static = eqx.partition(original, eqx.is_inexact_array)[1]
        params = self.current if current else self.best
        return eqx.combine(jax.tree_util.tree_map(jnp.asarray, params), static)

    def snapshot(self) -> tuple[dict, tuple]:
        """The checkpoint's entries of its own and its tree `(best, current)` (best first,
        as `read_best` reads it)."""
        extra = dict(
            optimiser="gnvpro",
            ended=self.ended,
            # Strict JSON: no infinity before the first validation.
            best_val=self.best_val if math.isfinite(self.best_val) else None,
            best_step=self.best_step,
            step=self.step,
            passes=self.passes,
        )
        return extra, (self.best, self.current)

    def checkpoint_step(self, record: MemberRecord) -> int:
        return record.history[-1]["step"] if record.history else self.step

    def message(self, ended: str, history: list, budget: int | None) -> str:
        accepted = sum(1 for row in history if row["accepted"] and row["step"] > 0)
        text = _ENDINGS[ended].format(
            iterations=self.step,
            passes=self.passes,
            budget=budget,
            epochs=None if budget is None else budget // 2,
        )
        return f"GNvpro {text}; {accepted} steps accepted."

    def interrupted_message(self, record: MemberRecord) -> str:
        restart = restart_phrase(record, "iteration", " with a fresh trust region")
        return f"interrupted at iteration {self.step}; {restart}."
