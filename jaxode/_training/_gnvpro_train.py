"""GNvpro in run directories: the members of a `train.optimiser = "gnvpro"` run or cohort
trained one after another by `fit_gnvpro`, with histories, checkpoints and resumes in the
layout of minibatch runs, so that `train`, `load` and sweeps treat them alike."""

import dataclasses
import math
import pathlib
import time

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Float

from .._counting import EvaluationCounter, stepped_counts
from .._datasets import Dataset, TrajectoryData
from .._models import NeuralODE
from .._surrogate import Surrogate
from ._checkpoint import load_checkpoint, save_checkpoint, write_history
from ._config import RunConfig
from ._fit import FitResult, _no_throw
from ._gnvpro import fit_gnvpro, split_readout
from ._loop import CHECKPOINT, HISTORY, LAYOUT, check_layout, writes_files
from ._losses import MSELoss
from ._metrics import error_metrics, predict_in_chunks
from ._progress import progress_bar
from ._signals import interrupts_held

# CG iterations per accepted step: the study-size benchmark's setting
# (benchmarks/gnvpro_vs_adam.py), where an accepted iteration costs 3 + 2 * 10 = 23 passes.
MAX_INNER = 10
INNER_RTOL = 1e-2
# The study's readout ridge, used when `train.ridge` is unset.
STUDY_RIDGE = 1e-3
# Samples of the batch on which a neural ODE's field evaluations per solve are measured (as
# minibatch runs measure them on their first batch).
_COUNT_SAMPLES = 32
# Seconds between two checkpoints at least (the first and the last are always written): a
# checkpoint of the study's ResNet took 17 ms against 80 to 290 ms per iteration (ELM,
# 2 CPU cores), so one per accepted iteration would cost up to a fifth of the training.
CHECKPOINT_SECONDS = 2.0
# `fit_gnvpro` raises this when the objective at its start is not finite.
_NOT_FINITE = "the residual at the start is not finite"


def iteration_cost(max_inner: int) -> int:
    """Passes over the training set of one accepted GNvpro iteration at most: a forward
    pass and a Jacobian-vector product at the trial point, the gradient (a vector-Jacobian
    product) and `max_inner` CG iterations (one of each); a rejected one costs 2."""
    return 3 + 2 * max_inner


def gnvpro_arguments(config: RunConfig, data: Dataset | TrajectoryData) -> dict:
    """The keyword arguments of `fit_gnvpro_members` that `config.train` describes.

    The budget: `train.iterations`, when set, is the number of outer (trust-region)
    iterations; otherwise the run may use `2 * train.epochs` passes over the training set,
    the work of `train.epochs` epochs of minibatch Adam (one forward and one backward pass
    of every sample), so that the two optimisers compare at equal work. `train.ridge` is the
    study's readout weight $\\beta$ (default 1e-3) and `train.tikhonov` its $\\alpha$ on the
    opening and dynamics parameters (the study: 1e-5). Fields of minibatch training
    (learning rate and schedule, batches, clipping, evaluation cadence, the divergence and
    failed-batch stops) have no counterpart in a full-batch trust-region method and are not
    used.

    **Raises:** `ValueError` naming every setting that GNvpro cannot honour (`train.loss`
    other than `"mse"`, `train.gram`, `train.readout_tikhonov`, `train.patience`, a
    time-series data set) and a pass budget smaller than one iteration.
    """
    t = config.train
    refused = []
    if not isinstance(data, Dataset):
        refused.append(
            f"data.dataset = {config.data.dataset!r} (a time series: its model has no "
            "readout to project out; use another optimiser)"
        )
    if t.loss != "mse":
        refused.append(f'train.loss = {t.loss!r} (it minimises a least-squares misfit: use "mse")')
    if t.gram:
        refused.append(
            f"train.gram = {t.gram!r} (the L2-in-time Gram penalty is not part of its "
            "residual: use 0)"
        )
    if t.readout_tikhonov:
        refused.append(
            f"train.readout_tikhonov = {t.readout_tikhonov!r} (its readout is the ridge "
            "solution: weigh it with train.ridge and use 0 here)"
        )
    if t.patience is not None:
        refused.append(
            f"train.patience = {t.patience!r} (it has no early stopping: use none; "
            "model.eqx holds the best validated iterate anyway)"
        )
    if refused:
        raise ValueError('train.optimiser = "gnvpro" cannot honour ' + "; ".join(refused) + ".")
    passes = None if t.iterations is not None else 2 * t.epochs
    cost = iteration_cost(MAX_INNER)
    if passes is not None and passes < cost:
        raise ValueError(
            f"train.epochs = {t.epochs} gives GNvpro a budget of {passes} passes (2 per "
            f"epoch), less than one iteration ({cost} passes); raise train.epochs to at "
            f"least {math.ceil(cost / 2)} or set train.iterations."
        )
    val = data.arrays("val")
    return dict(
        val=val if len(val[0]) else None,
        ridge=STUDY_RIDGE if t.ridge is None else t.ridge,
        tikhonov=t.tikhonov,
        iterations=t.iterations,
        passes=passes,
    )


def planned_iterations(config: RunConfig) -> int:
    """Outer iterations a gnvpro run of `config` is expected to take (for sweep plans and
    their cost estimates): `train.iterations`, or the pass budget over the cost of an
    accepted iteration (most are accepted: see docs/gnvpro.md)."""
    t = config.train
    if t.iterations is not None:
        return t.iterations
    return max(1, (2 * t.epochs) // iteration_cost(MAX_INNER))


def _forward_mode(model: Surrogate) -> Surrogate:
    """`model` as GNvpro needs it: a neural ODE differentiated by `diffrax.DirectAdjoint`
    (Jacobian-vector products through the solve), and failed solves returned as values
    (a non-finite trial point is then a rejected step, not an exception)."""
    dynamics = model.dynamics
    if not isinstance(dynamics, NeuralODE):
        return model
    changed = dataclasses.replace(dynamics, paradigm=diffrax.DirectAdjoint(), throw=False)
    return eqx.tree_at(lambda m: m.dynamics, model, changed)


def _as_configured(trained: Surrogate, original: Surrogate) -> Surrogate:
    """`trained` with `original`'s adjoint and `throw` again: the model `load` rebuilds."""
    if not isinstance(original.dynamics, NeuralODE):
        return trained
    dynamics = dataclasses.replace(
        trained.dynamics, paradigm=original.dynamics.paradigm, throw=original.dynamics.throw
    )
    return eqx.tree_at(lambda m: m.dynamics, trained, dynamics)


def _params(model: Surrogate):
    return eqx.partition(model, eqx.is_inexact_array)[0]


def _sum_squares(tree) -> float:
    return float(sum(np.sum(np.asarray(leaf) ** 2) for leaf in jax.tree_util.tree_leaves(tree)))


@dataclasses.dataclass
class _Member:
    """What the host keeps of one member: where it is, its history and its best point.
    `best` and `current` are parameter trees (`eqx.partition`) of the configured model."""

    directory: pathlib.Path | None
    history: list = dataclasses.field(default_factory=list)
    best: object = None
    current: object = None
    best_step: int = 0
    best_val: float = math.inf
    step: int = 0
    passes: int = 0
    wall: float = 0.0
    compile_time: float = 0.0
    checkpoint_step: int | None = None
    checkpoint_time: float = -math.inf
    ended: str | None = None
    resumed: bool = False
    training_started: float | None = None

    def meta(self) -> dict:
        fields = ("history", "best_step", "step", "passes", "wall")
        return dict(
            layout=LAYOUT,
            optimiser="gnvpro",
            compile_time=self.compile_time,
            checkpoint_step=self.checkpoint_step,
            ended=self.ended,
            # Strict JSON: no infinity before the first validation.
            best_val=self.best_val if math.isfinite(self.best_val) else None,
            **{name: getattr(self, name) for name in fields},
        )

    def save(self) -> None:
        """`checkpoint.eqx` (best parameters first, as `read_best` reads them, then the
        current ones a resume starts from) and `history.csv`, atomically, history first."""
        if self.directory is None:
            return
        # Held, so that an interrupt cannot leave the record naming a checkpoint that is not
        # on disk (the stop message quotes `checkpoint_step`).
        with interrupts_held():
            self.checkpoint_step = self.history[-1]["step"] if self.history else self.step
            self.checkpoint_time = time.perf_counter()
            if writes_files():
                write_history(self.directory / HISTORY, self.history)
                save_checkpoint(self.directory / CHECKPOINT, self.meta(), (self.best, self.current))


def _resumed(directory: pathlib.Path, original: Surrogate) -> _Member:
    path = directory / CHECKPOINT
    skeleton = _params(original)
    meta, (best, current) = load_checkpoint(path, (skeleton, skeleton))
    check_layout(path, meta)
    if meta.get("optimiser") != "gnvpro":
        raise ValueError(f"{path} is not the checkpoint of a gnvpro run; start a new run.")
    record = _Member(directory, best=best, current=current, resumed=True)
    for name in ("history", "best_step", "best_val", "step", "passes", "wall", "compile_time"):
        setattr(record, name, meta[name])
    record.best_val = math.inf if record.best_val is None else record.best_val
    record.checkpoint_step, record.ended = meta["checkpoint_step"], meta["ended"]
    return record


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
    dtype = model.readout.weight.dtype
    counter = EvaluationCounter(lambda m, xb, yb: MSELoss()(m.predict(xb), yb))
    xb, yb = (jnp.asarray(a[:_COUNT_SAMPLES], dtype) for a in (x, y))
    with interrupts_held():
        counts = counter(_no_throw(model), xb, yb)
    return dict(forward_evaluations=counts.forward_evaluations)


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


def _message(ended: str, record: _Member, passes_budget: int | None) -> str:
    accepted = sum(1 for row in record.history if row["accepted"] and row["step"] > 0)
    text = _ENDINGS[ended].format(
        iterations=record.step,
        passes=record.passes,
        budget=passes_budget,
        epochs=None if passes_budget is None else passes_budget // 2,
    )
    return f"GNvpro {text}; {accepted} steps accepted."


def _interrupted_message(record: _Member) -> str:
    if record.directory is None:
        restart = "nothing to resume from (no checkpoint_dir)"
    elif record.checkpoint_step is None:
        restart = "no checkpoint was written yet, so a resume starts from iteration 0"
    else:
        restart = (
            f"a resume restarts from the checkpoint at iteration {record.checkpoint_step} "
            "with a fresh trust region"
        )
    return f"interrupted at iteration {record.step}; {restart}."


def _model(params, original: Surrogate) -> Surrogate:
    """The configured model with the parameters `params` (a tree of `_params`)."""
    static = eqx.partition(original, eqx.is_inexact_array)[1]
    return eqx.combine(jax.tree_util.tree_map(jnp.asarray, params), static)


def _result(record: _Member, original: Surrogate, status: str, message: str, traces: int):
    return FitResult(
        model=_model(_params(original) if record.best is None else record.best, original),
        history=record.history,
        status=status,
        message=message,
        steps=record.step,
        best_step=record.best_step,
        solver_failures=0,
        failed_batches=0,
        compile_time=record.compile_time,
        num_traces=traces,
        checkpoint_step=record.checkpoint_step,
        training_started=record.training_started,
    )


def _fit_member(original: Surrogate, train, val, settings: dict, directory, resume, progress):
    iterations, passes = settings["iterations"], settings["passes"]
    ridge, tikhonov = settings["ridge"], settings["tikhonov"]
    directory = None if directory is None else pathlib.Path(directory)
    if resume and directory is not None and (directory / CHECKPOINT).is_file():
        record = _resumed(directory, original)
    else:
        record = _Member(directory, best=_params(original), current=_params(original))
    if record.ended is not None:
        return _result(record, original, "completed", _message(record.ended, record, passes), 0)
    iterations_left = None if iterations is None else iterations - record.step
    passes_left = None if passes is None else passes - record.passes
    cost = iteration_cost(settings["max_inner"])
    if (iterations_left is not None and iterations_left < 1) or (
        passes_left is not None and passes_left < cost
    ):
        record.ended = "budget"
        record.save()
        return _result(record, original, "completed", _message("budget", record, passes), 0)
    start_model = _model(record.current, original)
    validated = val is not None
    total = iterations if iterations is not None else passes
    done = record.step if iterations is not None else record.passes
    bar = progress_bar(total, done, progress and writes_files(), elapsed=record.wall)
    counts = _stepped_counts(original, len(train[0]))
    last = record.history[-1] if record.history else {}
    offsets = dict(step=record.step, passes=record.passes, wall=record.wall)
    offsets.update({kind: last.get(f"{kind}_passes", 0) for kind in ("forward", "jvp", "vjp")})
    clock = dict(start=time.perf_counter(), trained=None)

    def on_row(row: dict, model: Surrogate) -> None:
        now = time.perf_counter()
        if row["iteration"] == 0:
            # The first iteration traces and compiles the step (and, on a resume, evaluates
            # the checkpointed point again): timed as compilation, as for minibatch runs.
            clock["trained"] = now
            record.compile_time = record.compile_time or now - clock["start"]
            record.training_started = time.time()
        record.step = offsets["step"] + row["iteration"]
        record.passes = offsets["passes"] + row["evaluations"]
        record.wall = offsets["wall"] + (now - clock["trained"])
        bar.update((record.step if iterations is not None else record.passes) - bar.n)
        if row["iteration"] == 0 and record.resumed:
            # The resumed start is the checkpoint's last row again: its work is counted in
            # the next row's passes, its parameters are those of the checkpoint.
            return
        previous = record.history[-1] if record.history else {}
        out = dict(step=record.step, epoch=record.passes / 2)
        if row["accepted"]:
            configured = _as_configured(model, original)
            record.current = _params(configured)
            out["train_loss"] = _mse_from_objective(row["objective"], model, ridge, tikhonov)
            if validated:
                predicted = predict_in_chunks(model, val[0])
                out["val_loss"] = float(np.mean((predicted - val[1]) ** 2))
                out.update(error_metrics(predicted, val[1], prefix="val_"))
                better = out["val_global"] < record.best_val  # False for NaN
            if not validated or better:
                record.best, record.best_step = record.current, record.step
                record.best_val = out.get("val_global", math.inf)
        else:
            kept = ("train_loss", "val_loss", "val_global", "val_per_sample")
            out.update({k: previous[k] for k in kept if k in previous})
        out.update(
            objective=row["objective"],
            gradient_norm=row["gradient_norm"],
            trust_radius=row["trust_radius"],
            accepted=bool(row["accepted"]),
            cg_iterations=row["cg_iterations"],
            passes=record.passes,
            **{f"{kind}_passes": offsets[kind] + row[kind] for kind in ("forward", "jvp", "vjp")},
            wall_time=record.wall,
            **counts,
        )
        record.history.append(out)
        text = f"iteration {record.step}, loss {out.get('train_loss', math.nan):.3g}"
        bar.set_postfix_str(text + (f" val {out['val_global']:.4f}" if validated else ""))
        if row["accepted"] and now - record.checkpoint_time >= CHECKPOINT_SECONDS:
            record.save()

    try:
        result = fit_gnvpro(
            _forward_mode(start_model),
            train,
            ridge=ridge,
            tikhonov=tikhonov,
            penalise_bias=True,
            max_iterations=iterations_left if iterations is not None else passes_left // 2 + 1,
            max_inner=settings["max_inner"],
            inner_rtol=settings["inner_rtol"],
            # Stops before an iteration that could cross the budget: at most the passes given.
            max_evaluations=None if passes is None else passes_left - cost + 1,
            callback=on_row,
        )
    except KeyboardInterrupt:
        return _result(record, original, "interrupted", _interrupted_message(record), 1)
    except ValueError as error:
        if not str(error).startswith(_NOT_FINITE):
            raise
        message = (
            f"the objective is not finite at iteration {record.step} (the start); check the "
            "data, the initialisation (model.field_init_std) or the time horizon (model.t1)."
        )
        return _result(record, original, "diverged", message, 1)
    finally:
        bar.close()
    if not counts and record.history:
        record.history[-1].update(_measured_counts(_model(record.best, original), *train))
    record.ended = result.status
    record.save()
    return _result(
        record, original, "completed", _message(result.status, record, passes), result.num_traces
    )


def fit_gnvpro_members(
    models: list[Surrogate],
    train: tuple[Float[np.ndarray, "n in"], Float[np.ndarray, "n out"]],
    *,
    val: tuple[Float[np.ndarray, "m in"], Float[np.ndarray, "m out"]] | None = None,
    ridge: float = STUDY_RIDGE,
    tikhonov: float = 1e-5,
    iterations: int | None = None,
    passes: int | None = None,
    max_inner: int = MAX_INNER,
    inner_rtol: float = INNER_RTOL,
    checkpoint_dirs: list | None = None,
    resume: bool = False,
    progress: bool = False,
) -> list[FitResult]:
    """Trains each of `models` (the members of a run or cohort) by `fit_gnvpro`, one after
    another, into `FitResult`s that `train` turns into run directories as it does those of
    `fit`.

    Neural ODE members are trained with `paradigm=diffrax.DirectAdjoint()` and
    `throw=False` swapped in (GNvpro needs Jacobian-vector products through the solve); the
    returned models and checkpoints have their configured adjoint again. After every
    accepted iteration the member's validation errors are recorded; at accepted iterations
    at least `CHECKPOINT_SECONDS` (2 s) apart, and at the end, `checkpoint.eqx` (best
    parameters first, see `read_best`, then the current ones) and `history.csv` are written
    atomically. The returned model is the accepted iterate with the lowest
    validation error (without `val`: the last accepted one), as `fit` returns its best.

    History rows, one per outer iteration: `step` (the iteration), `epoch` (passes / 2: the
    Adam epochs of the same work), `train_loss` (`MSELoss` at the current point), `val_loss`
    (`MSELoss`), `val_global`, `val_per_sample`, GNvpro's `objective`, `gradient_norm`,
    `trust_radius`, `accepted`, `cg_iterations`, the running `passes` and their
    `forward_passes`, `jvp_passes`, `vjp_passes`, `wall_time` (seconds since the first
    iteration, which compiles, validation and checkpoints included) and the field
    evaluations per solve.

    A resume continues from the checkpointed parameters with a fresh trust region (the
    radius and the CG path are not stored), so a resumed run is not bit-identical to an
    uninterrupted one; its iterations and passes continue from the checkpoint's. A
    `KeyboardInterrupt` stops the member being trained (status `"interrupted"`, its last
    checkpoint kept) and leaves the later ones unstarted.

    **Arguments:**

    - `models`: the initial `Surrogate`s.
    - `train`, `val`: `(x, y)` arrays (normalised).
    - `ridge`, `tikhonov`: $\\beta$ and $\\alpha$ of `fit_gnvpro`.
    - `iterations` or `passes` (exactly one): outer iterations, or a budget of passes over
      the training set that is never exceeded (the run stops before an iteration that could
      cross it).
    - `max_inner`, `inner_rtol`: see `fit_gnvpro`.
    - `checkpoint_dirs`: one directory (or `None`) per member; `resume`: continue from the
      checkpoints there.
    - `progress`: show a progress bar.

    **Returns:** one `FitResult` per member, status `"completed"` (the budget used, or
    GNvpro converged or stalled: `message` says which), `"diverged"` (the objective at the
    start is not finite) or `"interrupted"`.

    **Raises:** `ValueError` for inconsistent arguments (named in the message) and those of
    `fit_gnvpro`.
    """
    models = list(models)
    checkpoint_dirs = [None] * len(models) if checkpoint_dirs is None else list(checkpoint_dirs)
    if len(checkpoint_dirs) != len(models):
        raise ValueError(
            f"`checkpoint_dirs` has {len(checkpoint_dirs)} entries for {len(models)} members."
        )
    if (iterations is None) == (passes is None):
        raise ValueError("pass exactly one of `iterations` and `passes`.")
    for name, value in (("iterations", iterations), ("passes", passes)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise ValueError(f"`{name}` must be an integer, got {value!r}.")
    if iterations is not None and iterations < 1:
        raise ValueError(f"`iterations` must be >= 1, got {iterations}.")
    if passes is not None and passes < iteration_cost(max_inner):
        raise ValueError(
            f"`passes`={passes} is less than one iteration ({iteration_cost(max_inner)} "
            f"passes with max_inner={max_inner}); raise it."
        )
    if resume and any(d is None for d in checkpoint_dirs):
        raise ValueError("`resume=True` needs a checkpoint directory for every member.")
    settings = dict(
        iterations=iterations,
        passes=passes,
        ridge=ridge,
        tikhonov=tikhonov,
        max_inner=max_inner,
        inner_rtol=inner_rtol,
    )
    results = []
    for model, directory in zip(models, checkpoint_dirs):
        if results and results[-1].status == "interrupted":
            record = _Member(None if directory is None else pathlib.Path(directory))
            message = "interrupted before this member started; a resume starts it."
            results.append(_result(record, model, "interrupted", message, 0))
            continue
        results.append(_fit_member(model, train, val, settings, directory, resume, progress))
    return results
