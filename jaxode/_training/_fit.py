"""`fit`: the one entry point of training. A trainer, stopping, evaluation, checkpointing and a
placement are objects; a single model is a cohort of one."""

import dataclasses
import typing
from collections.abc import Callable, Sequence
from typing import cast

import numpy as np
import optax
from jaxtyping import Float, PRNGKeyArray

from .._surrogate import Surrogate
from .._trajectories import TrajectoryModel
from ._keywords import from_keywords
from ._loop import drive
from ._members import MemberRecord
from ._placement import AbstractPlacement, SingleDevice, Vmapped
from ._settings import Checkpointing, Evaluation, Stopping
from ._status import Status
from ._trainer import AbstractTrainer, Problem

Model = Surrogate | TrajectoryModel
Data = tuple[Float[np.ndarray, "n in"], Float[np.ndarray, "n out"]]
# A trajectory model validates over a whole region: its outputs are wider than a window's.
Validation = tuple[Float[np.ndarray, "m in"], Float[np.ndarray, "m val_out"]]


@dataclasses.dataclass
class FitResult:
    """What `fit` returns for each member.

    **Fields:**

    - `model`: the trained model (best validation parameters when validation data were
      given, else the last good ones).
    - `history`: one dict per evaluation. Minibatch training: `step`, `epoch`, `train_loss`
      (mean batch loss since the last evaluation), `val_loss`, `val_global`,
      `val_per_sample`, `forward_evaluations`, `backward_evaluations` (per solve, on one
      batch, where `count_evaluations` asked for them), `solver_failures`, `wall_time`
      (seconds of training, compilation excluded). GNvpro: see `GNvproTrainer`.
    - `status`: a `Status` (a string): `"completed"`, `"early_stopped"`, `"diverged"`
      (NaN/inf, or the monitored error grew past `divergence_factor` times its best),
      `"solver_failed"` (`max_failed_batches` consecutive batches whose solve failed) or
      `"interrupted"`.
    - `message`: a sentence about how training ended and, when it did not complete, what to
      change.
    - `steps`: optimisation steps (or outer iterations) done; `best_step`: step of the
      returned parameters.
    - `solver_failures`: samples whose solve failed (their batches were skipped);
      `failed_batches`: the number of such batches.
    - `compile_time`: seconds to trace and compile the training program (one chunk of steps
      between two evaluations) and the evaluation's bookkeeping.
    - `num_traces`: how often the training program was traced (1: compiled once).
    - `checkpoint_step`: step of the last checkpoint written (`None`: none was written); a
      resume restarts from it.
    - `training_started`: Unix time at which the first step of this call started, after
      compilation (`None`: no step ran).
    """

    model: Model
    history: list
    status: Status
    message: str
    steps: int
    best_step: int
    solver_failures: int
    failed_batches: int
    compile_time: float
    num_traces: int
    checkpoint_step: int | None = None
    training_started: float | None = None


def _check_arrays(name: str, data, in_size: int, out_size: int):
    if not (isinstance(data, tuple) and len(data) == 2):
        raise TypeError(f"`{name}` must be a tuple (x, y) of arrays.")
    x, y = np.asarray(data[0]), np.asarray(data[1])
    if x.ndim != 2 or x.shape[1] != in_size or y.ndim != 2 or y.shape[1] != out_size:
        raise ValueError(
            f"`{name}` must be (x, y) with shapes (n, {in_size}) and (n, {out_size}), "
            f"got {x.shape} and {y.shape}."
        )
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"`{name}`: x has {x.shape[0]} rows but y has {y.shape[0]}.")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError(f"`{name}` contains NaN or infinite values; clean the data.")
    return x, y


def _validation(first: Model, val):
    """`(val, validation_model)`: checked validation arrays, and the map to the model they are
    predicted with when it differs (a `TrajectoryModel` validates over the whole validation
    region, a window of its own length: the same parameters with another structure)."""
    if val is None:
        return None, None
    width = np.shape(val[1])[-1] if isinstance(val, tuple) and len(val) == 2 else None
    try:
        model = first if width is None else first.for_outputs(width)
    except ValueError as error:
        raise ValueError(f"`val`: {error}") from None
    checked = _check_arrays("val", val, model.in_size, model.out_size)
    if model is first:
        return checked, None
    return checked, lambda m: m.for_outputs(width)


def _keys(keys, size: int):
    if keys is None:
        return None
    keys = tuple(keys)
    if len(keys) != size:
        raise ValueError(f"`keys` has {len(keys)} keys for {size} members.")
    return keys


def _train(models: list, train, trainer, val, keys, settings: dict, progress, callback):
    """Trains `models` as one cohort; `settings`: stopping, evaluation, checkpointing and
    placement. Returns one `FitResult` per member."""
    if not models:
        raise ValueError("`models` must hold at least one model.")
    for model in models:
        if not isinstance(model, (Surrogate, TrajectoryModel)):
            raise TypeError(
                "`model` must be a jaxode.Surrogate or jaxode.TrajectoryModel, got "
                f"{type(model).__name__}."
            )
    first = models[0]
    train = _check_arrays("train", train, first.in_size, first.out_size)
    val, validation_model = _validation(first, val)
    checkpointing = settings["checkpointing"]
    problem = Problem(
        models=tuple(models),
        keys=_keys(keys, len(models)),
        train=train,
        val=val,
        stopping=settings["stopping"],
        evaluation=settings["evaluation"],
        placement=settings["placement"],
        validation_model=validation_model,
    )
    members = [
        MemberRecord(directory, identity=identity)
        for directory, identity in zip(
            checkpointing.of(len(models)), checkpointing.identities(len(models))
        )
    ]
    run = trainer.start(problem, members, checkpointing.resume)
    drive(run, progress=progress, callback=callback, pause_at=problem.evaluation.pause_at)
    results = []
    for k, record in enumerate(members):
        outcome = run.outcome(k)
        results.append(
            FitResult(
                model=outcome.model,
                history=record.history,
                status=outcome.status,
                message=record.message or f"finished {outcome.steps} steps.",
                steps=outcome.steps,
                best_step=outcome.best_step,
                solver_failures=outcome.solver_failures,
                failed_batches=outcome.failed_batches,
                compile_time=record.compile_time,
                num_traces=outcome.num_traces,
                checkpoint_step=record.checkpoint_step,
                training_started=record.training_started,
            )
        )
    return results


@typing.overload
def fit(
    models: Model,
    train: Data,
    trainer: AbstractTrainer | optax.GradientTransformation,
    **arguments,
) -> FitResult: ...


@typing.overload
def fit(
    models: Sequence[Model],
    train: Data,
    trainer: AbstractTrainer | optax.GradientTransformation,
    **arguments,
) -> list[FitResult]: ...


def fit(
    models: Model | Sequence[Model],
    train: Data,
    trainer: AbstractTrainer | optax.GradientTransformation,
    *,
    val: Validation | None = None,
    key: PRNGKeyArray | None = None,
    keys: Sequence[PRNGKeyArray] | None = None,
    stopping: Stopping | None = None,
    evaluation: Evaluation | None = None,
    checkpointing: Checkpointing | None = None,
    placement: AbstractPlacement | None = None,
    progress: bool = False,
    callback: Callable | None = None,
    **keywords,
) -> FitResult | list[FitResult]:
    """Trains a model, or a cohort of models of one structure that differ in their values
    (initialisation, minibatch key, hyperparameters, regularisation weights), as one
    compiled program. Member k ends as it would alone with the same values, to rounding:
    each member keeps its own early stopping, best parameters, divergence and failure state;
    a member that stops is frozen while the others go on.

    **Arguments:**

    - `models`: the initial `Surrogate` or `TrajectoryModel`, or a sequence of them (a
      cohort; same structure and settings).
    - `train`, `val`: `(x, y)` arrays, normalised; `val` (optional) drives early stopping
      and the choice of the returned parameters.
    - `trainer`: `MinibatchTrainer(optimiser, ...)` or `GNvproTrainer(...)`.
    - `key` (one model) or `keys` (one per member): the minibatch keys of a
      `MinibatchTrainer`.
    - `stopping`: a `Stopping`; `evaluation`: an `Evaluation`; `checkpointing`: a
      `Checkpointing` (where checkpoints and histories go, and whether to resume); `None`:
      their defaults.
    - `placement`: `SingleDevice()` (the default for one model), `Vmapped()` (the default
      for a sequence), `Sharded(devices)` or `SharedSolve()`.
    - `progress`: show a progress bar (tqdm if installed).
    - `callback`: called with each history row after its checkpoint is written, as
      `callback(row)` for one model and `callback(k, row)` for a cohort; an exception it
      raises stops training (the checkpoints stay).

    **Keyword form:** `fit(model, train, optimiser, *, key, epochs=... | steps=...,
    batch_size, sampling ("epochs" or "replacement"), loss, regularisers, clip_norm,
    patience, eval_every, ridge, max_failed_batches, divergence_factor, checkpoint_dir,
    resume, count_evaluations, count_every)`, with an Optax optimiser in place of the
    trainer, builds these objects from the keywords (the arguments of `MinibatchTrainer`,
    `Stopping`, `Evaluation` and `Checkpointing` of those names).

    **Returns:** a `FitResult` for one model, a list of them for a sequence. Each model
    holds the best validation parameters (the last checkpointed ones without `val`); after
    a divergence before the first evaluation, the initial parameters.

    **Raises:** `ValueError` for inconsistent arguments (named in the message).
    """
    # A sequence of models is a cohort; anything else is one model (checked below).
    single = not isinstance(models, Sequence) or isinstance(models, str)
    cohort = [models] if single else list(cast(Sequence[Model], models))
    if single:
        if keys is not None:
            raise TypeError("pass `key` for one model (`keys` is for a cohort).")
        keys = None if key is None else [key]
    elif key is not None:
        raise TypeError("pass `keys` (one per member) for a cohort, not `key`.")
    settings = dict(
        stopping=stopping, evaluation=evaluation, checkpointing=checkpointing, placement=placement
    )
    if isinstance(trainer, AbstractTrainer):
        if keywords:
            raise TypeError(
                f"fit() got keyword arguments {sorted(keywords)} of the keyword form, which "
                "takes an Optax optimiser; with a trainer, set them on the trainer and the "
                "Stopping, Evaluation and Checkpointing objects."
            )
    else:
        trainer, settings = from_keywords(trainer, keywords, settings, cohort=not single)
    defaults = dict(
        stopping=Stopping(),
        evaluation=Evaluation(),
        checkpointing=Checkpointing(),
        placement=SingleDevice() if single else Vmapped(),
    )
    settings = {
        name: defaults[name] if value is None else value for name, value in settings.items()
    }
    if single and callback is not None:
        row_callback = callback
        callback = lambda k, row: row_callback(row)
    results = _train(cohort, train, trainer, val, keys, settings, progress, callback)
    return results[0] if single else results


def fit_cohort(
    models: Sequence[Model],
    train: Data,
    optimiser: optax.GradientTransformation,
    *,
    keys: Sequence[PRNGKeyArray],
    val: Validation | None = None,
    progress: bool = False,
    callback: Callable | None = None,
    **keywords,
) -> list[FitResult]:
    """`fit` of a cohort in the keyword form: K models of one structure trained as one
    compiled program (`jax.vmap` over the members).

    **Arguments:** those of `fit`'s keyword form, and:

    - `models`: the K initial models; `keys`: K minibatch keys.
    - `regularisers`: shared `AbstractRegulariser`s, or K tuples of the same kinds whose
      weights differ.
    - `hyperparameters`: `{name: K values}` for hyperparameters of an optimiser built with
      `optax.inject_hyperparams`.
    - `checkpoint_dirs`: K directories (each gets a checkpoint and history that a single
      `fit` can also resume).
    - `callback`: called as `callback(k, row)` for each history row of member k.
    - `devices`, `shard_map`: shard the members over devices (`Sharded(devices,
      one_loop_per_device=shard_map)`); `shared_solve=True`: `SharedSolve(devices,
      shard_map)`.

    **Returns:** one `FitResult` per member.
    """
    return fit(
        list(models),
        train,
        optimiser,
        keys=keys,
        val=val,
        progress=progress,
        callback=callback,
        **keywords,
    )
