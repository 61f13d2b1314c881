"""The GNvpro trainer: variable projection with trust-region Gauss-Newton-Krylov on the full
training set (`fit_gnvpro`), one member after another, an evaluation per outer iteration."""

import math
import time
from typing import cast

import jax
import jax.numpy as jnp
import numpy as np

from .._counting import EvaluationCounter, stepped_counts
from .._surrogate import Surrogate
from ._gnvpro import (
    GaussNewtonKrylovIterations,
    check_int,
    check_number,
    reduced_problem,
    split_readout,
)
from ._gnvpro_member import GNvproMember, as_configured, forward_mode, params_of
from ._losses import MSELoss
from ._members import MemberRecord
from ._metrics import error_metrics, predict_in_chunks
from ._placement import SingleDevice, Vmapped
from ._settings import Evaluation
from ._signals import interrupts_held
from ._status import Status
from ._trainer import AbstractRun, AbstractTrainer, Evaluated, Outcome, Problem

# CG iterations per accepted step: the study-size benchmark's setting
# (benchmarks/gnvpro_vs_adam.py), where an accepted iteration costs 3 + 2 * 10 = 23 passes.
MAX_INNER = 10
INNER_RTOL = 1e-2
# The study's readout ridge and Tikhonov weight.
STUDY_RIDGE, STUDY_TIKHONOV = 1e-3, 1e-5
# Samples of the batch on which a neural ODE's field evaluations per solve are measured (as
# minibatch runs measure them on their first batch).
_COUNT_SAMPLES = 32
# Seconds between two checkpoints at least (the first and the last are always written): a
# checkpoint of the study's ResNet took 17 ms against 80 to 290 ms per iteration (ELM,
# 2 CPU cores), so one per accepted iteration would cost up to a fifth of the training.
CHECKPOINT_SECONDS = 2.0


def iteration_cost(max_inner: int) -> int:
    """Passes over the training set of one accepted GNvpro iteration at most: a forward
    pass and a Jacobian-vector product at the trial point, the gradient (a vector-Jacobian
    product) and `max_inner` CG iterations (one of each); a rejected one costs 2."""
    return 3 + 2 * max_inner


class GNvproTrainer(AbstractTrainer):
    """GNvpro (`fit_gnvpro`): the readout is eliminated by a ridge solve inside the objective
    and the remaining parameters are optimised by trust-region Gauss-Newton-Krylov on the
    full training set. Members are trained one after another; every outer iteration is an
    evaluation (a history row), and at accepted iterations at least `CHECKPOINT_SECONDS`
    (2 s) apart, and at the end, the checkpoint (best parameters first, then the current
    ones) is written.

    Neural ODE members are trained with `paradigm=diffrax.DirectAdjoint()` and `throw=False`
    swapped in (GNvpro needs Jacobian-vector products through the solve); the returned
    models and checkpoints have their configured adjoint again. The returned model is the
    accepted iterate with the lowest validation error (without validation data: the last
    accepted one). A resume continues from the checkpointed parameters with a fresh trust
    region (the radius and the CG path are not stored), so it is not bit-identical to an
    uninterrupted run; its iterations and passes continue from the checkpoint's.

    History rows, one per outer iteration: `step` (the iteration), `epoch` (passes / 2: the
    Adam epochs of the same work), `train_loss` (`MSELoss` at the current point), `val_loss`,
    `val_global`, `val_per_sample`, GNvpro's `objective`, `gradient_norm`, `trust_radius`,
    `accepted`, `cg_iterations`, the running `passes` and their `forward_passes`,
    `jvp_passes`, `vjp_passes`, `wall_time` (seconds since the first iteration, which
    compiles, validation and checkpoints included) and the field evaluations per solve.

    **Arguments:**

    - `iterations` or `passes` (exactly one): outer iterations, or a budget of passes over
      the training set that is never exceeded (a member stops before an iteration that could
      cross it).
    - `ridge`, `tikhonov`: $\\beta$ and $\\alpha$ of `fit_gnvpro`.
    - `max_inner`, `inner_rtol`: CG iterations per accepted step and their tolerance.

    Of the settings of `fit`, GNvpro uses none of `Evaluation` (every iteration is an
    evaluation; field evaluations are counted once, at the end) and none of `Stopping` but
    `patience`, which it refuses (it has no early stopping); keys are not used.
    """

    iterations: int | None = None
    passes: int | None = None
    ridge: float = STUDY_RIDGE
    tikhonov: float = STUDY_TIKHONOV
    max_inner: int = MAX_INNER
    inner_rtol: float = INNER_RTOL

    def __check_init__(self):
        check_number("ridge", self.ridge, strict=True)
        check_number("tikhonov", self.tikhonov, strict=False)
        check_int("max_inner", self.max_inner)
        check_number("inner_rtol", self.inner_rtol, strict=False)
        if (self.iterations is None) == (self.passes is None):
            raise ValueError("pass exactly one of `iterations` and `passes`.")
        for name in ("iterations", "passes"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise ValueError(f"`{name}` must be an integer, got {value!r}.")
        if self.iterations is not None and self.iterations < 1:
            raise ValueError(f"`iterations` must be >= 1, got {self.iterations}.")
        cost = iteration_cost(self.max_inner)
        if self.passes is not None and self.passes < cost:
            raise ValueError(
                f"`passes`={self.passes} is less than one iteration ({cost} passes with "
                f"max_inner={self.max_inner}); raise it."
            )

    def planned(self, num_samples: int) -> int:
        """Outer iterations: `iterations`, or the pass budget over the cost of an accepted
        iteration (most are accepted: see docs/gnvpro.md)."""
        if self.iterations is not None:
            return self.iterations
        return max(1, self._budget() // iteration_cost(self.max_inner))

    def _budget(self) -> int:
        """`iterations`, or else `passes`: the one set (`__check_init__` makes sure)."""
        budget = self.iterations if self.iterations is not None else self.passes
        assert budget is not None
        return budget

    def interval(self, num_samples: int, evaluation: Evaluation) -> int:
        """One: every outer iteration is an evaluation."""
        return 1

    def start(self, problem: Problem, members: list[MemberRecord], resume: bool) -> "GNvproRun":
        for model in problem.models:
            if not isinstance(model, Surrogate):
                raise TypeError(
                    f"GNvproTrainer trains Surrogates (it projects out their readout), got "
                    f"{type(model).__name__}."
                )
        if problem.stopping.patience is not None:
            raise ValueError(
                "GNvproTrainer has no early stopping: leave `patience` unset (the returned "
                "model is the best validated iterate anyway)."
            )
        if not isinstance(problem.placement, (SingleDevice, Vmapped)):
            raise ValueError(
                "GNvproTrainer trains its members one after another on one device; use "
                "SingleDevice() or Vmapped()."
            )
        return GNvproRun(self, problem, members, resume)


def _sum_squares(tree) -> float:
    return float(sum(np.sum(np.asarray(leaf) ** 2) for leaf in jax.tree_util.tree_leaves(tree)))


def _mse_from_objective(objective: float, model: Surrogate, ridge: float, tikhonov: float):
    """The training loss `MSELoss` (mean over samples and outputs) at the current point,
    read off GNvpro's objective $\\phi = \\frac{1}{2n}\\sum\\|e_i\\|^2 + \\frac\\beta2\\|W\\|^2
    + \\frac\\alpha2\\|\\theta\\|^2$ without another pass over the data."""
    theta, _ = split_readout(model)
    readout = _sum_squares((model.readout.weight, model.readout.bias))
    misfit = 2.0 * objective - ridge * readout - tikhonov * _sum_squares(theta)
    return max(misfit, 0.0) / model.out_size


def _stepped_counts(model: Surrogate, solves: int) -> dict:
    """Field evaluations per solve of a discrete net, which its structure fixes, in the
    columns of minibatch runs; empty for neural ODEs (see `_measured_counts`)."""
    known = stepped_counts(model.dynamics, solves)
    if known is None:
        return {}
    return dict(
        forward_evaluations=known.forward_evaluations,
        backward_evaluations=known.backward_evaluations,
    )


def _measured_counts(model: Surrogate, x, y) -> dict:
    """A neural ODE's field evaluations per solve, measured on a batch as minibatch runs
    measure them; forward only: the backward count would be that of the configured adjoint,
    which GNvpro does not use."""
    from ._minibatch import without_throw

    dtype = model.readout.weight.dtype
    counter = EvaluationCounter(lambda m, xb, yb: MSELoss()(m.predict(xb), yb))
    xb, yb = (jnp.asarray(a[:_COUNT_SAMPLES], dtype) for a in (x, y))
    with interrupts_held():
        counts = counter(without_throw(model), xb, yb)
    return dict(forward_evaluations=counts.forward_evaluations)


class GNvproRun(AbstractRun):
    """Trains the members of a `GNvproTrainer` one after another, an outer iteration per
    `advance`."""

    def __init__(self, trainer: GNvproTrainer, problem: Problem, members, resume: bool):
        self.trainer, self.problem, self.members = trainer, problem, members
        # Surrogates: `GNvproTrainer.start` refused anything else.
        self.models = cast(tuple[Surrogate, ...], problem.models)
        self.states = [
            GNvproMember.resumed(record, model)
            if resume and record.can_resume()
            else GNvproMember.fresh(model)
            for record, model in zip(members, self.models)
        ]
        self.current = -1
        # The next member starts when the loop next asks whether any runs: after the last
        # row of the one before is written and its callback has run.
        self.between_members = True
        self.traces = [0] * len(members)

    # --- AbstractRun ------------------------------------------------------------------

    def compile(self) -> None:
        """Nothing ahead: each member's first iteration compiles its step, timed as its
        compilation."""

    def running(self) -> bool:
        if self.between_members:
            self._next_member()
        return self.current < len(self.members)

    def advance(self) -> dict[int, Evaluated]:
        k = self.current
        record, state, iterations = self.members[k], self.states[k], self.iterations
        row = iterations.next()
        now = time.perf_counter()
        if row["iteration"] == 0:
            if not np.isfinite(row["objective"]):
                return self._diverged(k)
            # The first iteration traces and compiles the step (and, on a resume, evaluates
            # the checkpointed point again): timed as compilation, as for minibatch runs.
            self.clock = now
            record.compile_time = record.compile_time or now - self.started
            record.training_started = time.time()
        state.step = int(self.offsets["step"] + row["iteration"])
        state.passes = int(self.offsets["passes"] + row["evaluations"])
        record.wall = self.offsets["wall"] + (now - self.clock)
        if row["iteration"] == 0 and record.resumed:
            # The resumed start is the checkpoint's last row again: its work is counted in
            # the next row's passes, its parameters are those of the checkpoint.
            return self._after(k, None, row)
        out = self._row(k, row)
        return self._after(k, out, row)

    def progress(self) -> tuple[int, int, str]:
        budget = self.trainer._budget()
        done = sum(s.step if self.trainer.iterations else s.passes for s in self.states)
        if not (0 <= self.current < len(self.members)) or not self.members[self.current].history:
            return done, budget * len(self.members), ""
        k = self.current
        history = self.members[k].history
        row = history[-1]
        text = f"iteration {self.states[k].step}, loss {row.get('train_loss', math.nan):.3g}"
        if self.problem.val is not None and "val_global" in row:
            text += f" val {row['val_global']:.4f}"
        return done, budget * len(self.members), text

    def interrupt(self) -> None:
        for k in range(max(self.current, 0), len(self.members)):
            record, state = self.members[k], self.states[k]
            if record.status != Status.RUNNING:
                continue  # it ended; the interrupt came while its last row was written
            if k == self.current and not self.between_members:
                record.stop(Status.INTERRUPTED, state.interrupted_message(record))
                self.traces[k] = 1
            else:
                message = "interrupted before this member started; a resume starts it."
                record.stop(Status.INTERRUPTED, message)
        self.current, self.between_members = len(self.members), False

    def outcome(self, k: int) -> Outcome:
        state, original = self.states[k], self.models[k]
        status = self.members[k].status
        return Outcome(
            model=state.model(original),
            status=Status.COMPLETED if status == Status.RUNNING else status,
            steps=state.step,
            best_step=state.best_step,
            num_traces=self.traces[k],
        )

    # --- One member's iterations ------------------------------------------------------

    def _next_member(self) -> None:
        """Starts the next member that has work left; members whose work is done (a resume
        of a finished run, or a budget used up) are completed on the way."""
        t = self.trainer
        self.between_members = False
        while True:
            self.current += 1
            if not self.running():
                return
            k = self.current
            record, state = self.members[k], self.states[k]
            if state.ended is not None:
                record.stop(Status.COMPLETED, state.message(state.ended, record.history, t.passes))
                continue
            left = None if t.iterations is None else t.iterations - state.step
            passes_left = None if t.passes is None else t.passes - state.passes
            cost = iteration_cost(t.max_inner)
            if (left is not None and left < 1) or (passes_left is not None and passes_left < cost):
                state.ended = "budget"
                record.save(state.checkpoint_step(record), state.snapshot)
                record.stop(Status.COMPLETED, state.message("budget", record.history, t.passes))
                continue
            self._begin(k, left, passes_left, cost)
            return

    def _begin(self, k: int, left, passes_left, cost) -> None:
        t, record, state = self.trainer, self.members[k], self.states[k]
        original = self.models[k]
        start = forward_mode(state.model(original, current=True))
        objective, theta, args = reduced_problem(
            start, *self.problem.train, ridge=t.ridge, tikhonov=t.tikhonov
        )
        self.objective = objective
        self.iterations = GaussNewtonKrylovIterations(
            objective.residual, theta, args, max_inner=t.max_inner, inner_rtol=t.inner_rtol
        )
        self.max_iterations = left if t.iterations is not None else passes_left // 2 + 1
        # Stops before an iteration that could cross the budget: at most the passes given.
        self.max_evaluations = None if t.passes is None else passes_left - cost + 1
        counting = self.problem.evaluation.count_evaluations
        self.counts = _stepped_counts(original, len(self.problem.train[0])) if counting else {}
        last = record.history[-1] if record.history else {}
        self.offsets = dict(step=state.step, passes=state.passes, wall=record.wall)
        self.offsets.update({f: last.get(f"{f}_passes", 0) for f in ("forward", "jvp", "vjp")})
        self.started = time.perf_counter()

    def _row(self, k: int, row: dict) -> dict:
        """The history row of an iteration, its validation errors when it was accepted."""
        t, record, state = self.trainer, self.members[k], self.states[k]
        original = self.models[k]
        previous = record.history[-1] if record.history else {}
        out = dict(step=state.step, epoch=state.passes / 2)
        if row["accepted"]:
            model = self.objective.model(self.iterations.y, self.iterations.aux)
            state.current = params_of(as_configured(model, original))
            out["train_loss"] = _mse_from_objective(row["objective"], model, t.ridge, t.tikhonov)
            better = True
            if self.problem.val is not None:
                xv, yv = self.problem.val
                predicted = predict_in_chunks(model, xv)
                out["val_loss"] = float(np.mean((predicted - yv) ** 2))
                out.update(error_metrics(predicted, yv, prefix="val_"))
                better = out["val_global"] < state.best_val  # False for NaN
            if better:
                state.best, state.best_step = state.current, state.step
                state.best_val = out.get("val_global", math.inf)
        else:
            kept = ("train_loss", "val_loss", "val_global", "val_per_sample")
            out.update({name: previous[name] for name in kept if name in previous})
        out.update(
            objective=row["objective"],
            gradient_norm=row["gradient_norm"],
            trust_radius=row["trust_radius"],
            accepted=bool(row["accepted"]),
            cg_iterations=row["cg_iterations"],
            passes=state.passes,
            **{f"{f}_passes": self.offsets[f] + row[f] for f in ("forward", "jvp", "vjp")},
            wall_time=record.wall,
            **self.counts,
        )
        return out

    def _after(self, k: int, out: dict | None, row: dict) -> dict[int, Evaluated]:
        """The evaluation of `out` (`None`: a resumed start, which records nothing), and the
        end of the member when its iterations are over: the last row gets the measured field
        evaluations of a neural ODE, and the checkpoint is written with it."""
        state, record = self.states[k], self.members[k]
        reason = self.iterations.stop_reason(row, gtol=0.0, max_evaluations=self.max_evaluations)
        if reason is None and row["iteration"] >= self.max_iterations:
            reason = "max_iterations"
        if reason is None:
            if out is None:
                return {}
            due = row["accepted"] and time.perf_counter() - state.saved >= CHECKPOINT_SECONDS
            if due:
                state.saved = time.perf_counter()
            return {k: Evaluated(out, write=due, checkpoint=state.snapshot if due else None)}
        state.ended, self.traces[k] = reason, self.iterations.traces
        rows = record.history + ([] if out is None else [out])
        if not self.counts and rows and self.problem.evaluation.count_evaluations:
            rows[-1].update(_measured_counts(state.model(self.models[k]), *self.problem.train))
        record.stop(Status.COMPLETED, state.message(reason, rows, self.trainer.passes))
        self.between_members = True
        if out is None:
            record.save(state.checkpoint_step(record), state.snapshot)
            return {}
        return {k: Evaluated(out, checkpoint=state.snapshot)}

    def _diverged(self, k: int) -> dict[int, Evaluated]:
        record, state = self.members[k], self.states[k]
        record.stop(
            Status.DIVERGED,
            f"the objective is not finite at iteration {state.step} (the start); check the "
            "data, the initialisation (model.field_init_std) or the time horizon (model.t1).",
        )
        self.traces[k] = 1
        self.between_members = True
        return {}
