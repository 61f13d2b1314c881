"""The training loop: minibatch optimisation with evaluation, early stopping, divergence and
solver-failure handling, and atomic checkpoints that resume exactly."""

import dataclasses
import pathlib
from collections.abc import Sequence

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Float, PRNGKeyArray

from .._counting import EvaluationCounter, stepped_counts
from .._models import NeuralODE
from .._paradigms import as_adjoint
from .._surrogate import Surrogate
from .._trajectories import TrajectoryModel
from ._checkpoint import load_checkpoint
from ._engine import SAMPLINGS, Plan, Programs, batch_index
from ._loop import (
    CHECKPOINT,
    PREDICT_ROWS,
    Options,
    check_layout,
    member,
    member_counters,
    predict_members,
    run,
    stack,
    start,
    status_name,
    to_host,
)
from ._losses import AbstractLoss, MSELoss
from ._metrics import dtype_of_model, error_metrics, ridge_warm_start
from ._regularisers import AbstractRegulariser


@dataclasses.dataclass
class FitResult:
    """What `fit` returns.

    **Fields:**

    - `model`: the trained `Surrogate` (best validation parameters when validation data were
      given, else the last good ones).
    - `history`: one dict per evaluation: `step`, `epoch`, `train_loss` (mean batch loss since
      the last evaluation), `val_loss`, `val_global`, `val_per_sample`, `forward_evaluations`,
      `backward_evaluations` (per solve, measured on one batch), `solver_failures`, `wall_time`
      (seconds of training, compilation excluded).
    - `status`: `"completed"`, `"early_stopped"`, `"diverged"` (NaN/inf, or the monitored error
      grew past `divergence_factor` times its best), `"solver_failed"` (`max_failed_batches`
      consecutive batches whose solve failed) or `"interrupted"`.
    - `message`: a sentence about how training ended and, when it did not complete, what to
      change.
    - `steps`: optimisation steps done; `best_step`: step of the returned parameters.
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

    model: Surrogate | TrajectoryModel
    history: list
    status: str
    message: str
    steps: int
    best_step: int
    solver_failures: int
    failed_batches: int
    compile_time: float
    num_traces: int
    checkpoint_step: int | None = None
    training_started: float | None = None


def _no_throw(model: Surrogate | TrajectoryModel) -> Surrogate | TrajectoryModel:
    """The model with `throw=False` solves, so failures come back as data."""
    dynamics = model.dynamics
    if isinstance(dynamics, NeuralODE) and dynamics.throw:
        return eqx.tree_at(lambda m: m.dynamics, model, dataclasses.replace(dynamics, throw=False))
    return model


def _restore_throw(
    trained: Surrogate | TrajectoryModel, original: Surrogate | TrajectoryModel
) -> Surrogate | TrajectoryModel:
    if isinstance(original.dynamics, NeuralODE) and original.dynamics.throw:
        dynamics = dataclasses.replace(trained.dynamics, throw=True)
        return eqx.tree_at(lambda m: m.dynamics, trained, dynamics)
    return trained


def epoch_order(key: PRNGKeyArray, epoch: int, num_samples: int) -> np.ndarray:
    """The sample order of `epoch`: a pure function of `(key, epoch)`, so a resumed run replays
    the same minibatches."""
    return np.asarray(jax.random.permutation(jax.random.fold_in(key, epoch), num_samples))


def batch_order(
    key: PRNGKeyArray, step: int, num_samples: int, batch_size: int, sampling: str
) -> np.ndarray:
    """Row indices of the minibatch of `step`, as the engine draws them on the device (see
    `sampling` of `fit`)."""
    return np.asarray(batch_index(key, step, num_samples, batch_size, sampling))


def read_best(path, params_skeleton) -> tuple[dict, object]:
    """`(meta, best parameters)` of a checkpoint written by `fit`, without the optimiser
    state (best parameters are the first tree of the file).

    **Raises:** `ValueError` for a checkpoint of another layout or model.
    """
    meta, best = load_checkpoint(path, params_skeleton)
    check_layout(path, meta)
    return meta, best


def _for_outputs(model, width: int):
    try:
        return model.for_outputs(width)
    except ValueError as error:
        raise ValueError(f"`val`: {error}") from None


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


def _checked_int(name: str, value, allow_none: bool = True) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be an integer >= 1, got {value!r}.")


def _is_weight(leaf) -> bool:
    return isinstance(leaf, float) or eqx.is_inexact_array(leaf)


def _regulariser_parts(regularisers: Sequence[tuple], dtype):
    """Stacked numeric weights of every member's regularisers, and their shared rest."""
    values, statics = [], []
    for chosen in regularisers:
        dynamic, static = eqx.partition(tuple(chosen), _is_weight)
        values.append(jax.tree_util.tree_map(lambda v: jnp.asarray(v, dtype), dynamic))
        statics.append(static)
    if any(
        jax.tree_util.tree_structure(v) != jax.tree_util.tree_structure(values[0]) for v in values
    ) or not all(eqx.tree_equal(s, statics[0]) for s in statics):
        raise ValueError(
            "`regularisers`: every member needs the same kinds of regularisers in the same "
            "order (only their weights may differ)."
        )
    return stack(values), statics[0]


def _set_hyperparameters(opt_state, values: dict):
    """`opt_state` with the named hyperparameters of its `optax.inject_hyperparams` part set."""
    is_injected = lambda node: isinstance(node, optax.InjectStatefulHyperparamsState)
    found = [n for n in jax.tree_util.tree_leaves(opt_state, is_leaf=is_injected) if is_injected(n)]
    for name in values:
        if not any(name in n.hyperparams for n in found):
            raise ValueError(
                f"`hyperparameters`: the optimiser has no injected hyperparameter {name!r}; "
                "build it with optax.inject_hyperparams, e.g. "
                "optax.inject_hyperparams(optax.adam)(learning_rate=1e-3)."
            )

    def replace(node):
        if not is_injected(node):
            return node
        hyper = dict(node.hyperparams)
        for name, value in values.items():
            if name in hyper:
                hyper[name] = jnp.asarray(value, jnp.asarray(hyper[name]).dtype)
        return node._replace(hyperparams=hyper)

    return jax.tree_util.tree_map(replace, opt_state, is_leaf=is_injected)


def _mesh(devices, size: int):
    if devices is None:
        return None
    from jax.sharding import AxisType

    if isinstance(devices, int):
        if not 1 <= devices <= len(jax.devices()):
            raise ValueError(
                f"`devices`={devices}, but {len(jax.devices())} devices are available "
                f"({jax.default_backend()}); choose 1 to {len(jax.devices())}."
            )
        chosen = jax.devices()[:devices]
    else:
        chosen = list(devices)
    if size % len(chosen):
        raise ValueError(
            f"`devices`: {size} members cannot be split evenly over {len(chosen)} devices; "
            "choose a cohort size that is a multiple of the device count."
        )
    return jax.make_mesh((len(chosen),), ("members",), axis_types=(AxisType.Auto,), devices=chosen)


def _place(mesh, tree, sharded: bool):
    """`tree` on `mesh`: split along its member axis, or replicated. Every process passes the
    whole tree and contributes the shards of its own devices (so this also works across
    processes under `jax.distributed`)."""
    if mesh is None:
        return tree
    from jax.sharding import NamedSharding, PartitionSpec

    sharding = NamedSharding(mesh, PartitionSpec("members") if sharded else PartitionSpec())

    def put(leaf):
        values = np.asarray(leaf)
        return jax.make_array_from_callback(values.shape, sharding, lambda index: values[index])

    return jax.tree_util.tree_map(put, tree)


def _checkpointed_solve(model: Surrogate | TrajectoryModel) -> bool:
    dynamics = model.dynamics
    return isinstance(dynamics, NeuralODE) and isinstance(
        as_adjoint(dynamics.paradigm), diffrax.RecursiveCheckpointAdjoint
    )


def _one_loop_per_device(
    model: Surrogate | TrajectoryModel, shard_map: bool | None, mesh
) -> bool:
    """Whether a sharded cohort runs under `shard_map`: by default yes, except for neural ODEs
    differentiated through their steps, whose checkpointed solver loop does not trace under
    `shard_map` in Equinox 0.13 (Diffrax issue 765)."""
    if shard_map is None:
        return not _checkpointed_solve(model)
    if shard_map and mesh is not None and _checkpointed_solve(model):
        raise ValueError(
            "`shard_map=True` cannot differentiate a neural ODE through its solver steps "
            "(discretize-then-optimize): Equinox's checkpointed loop fails under shard_map "
            "(Diffrax issue 765). Leave `shard_map` unset (the compiler partitions the cohort) "
            "or train with OptimizeThenDiscretize()."
        )
    return shard_map


def _fit_members(
    models: list,
    train,
    optimiser,
    *,
    keys: list,
    val,
    epochs,
    steps,
    batch_size,
    sampling,
    loss,
    regularisers: list,
    hyperparameters,
    clip_norm,
    patience,
    eval_every,
    ridge,
    max_failed_batches,
    divergence_factor,
    checkpoint_dirs: list,
    resume,
    count_evaluations,
    count_every,
    progress,
    callback,
    cohort: bool,
    devices,
    shard_map: bool | None,
    shared_solve: bool = False,
) -> list["FitResult"]:
    first = models[0]
    for model in models:
        if not isinstance(model, (Surrogate, TrajectoryModel)):
            raise TypeError(
                "`model` must be a jaxode.Surrogate or jaxode.TrajectoryModel, got "
                f"{type(model).__name__}."
            )
    x, y = _check_arrays("train", train, first.in_size, first.out_size)
    validation_model = None
    if val is not None:
        # A trajectory model validates over the whole validation region, a window of its own
        # length: the same parameters with another structure.
        width = np.shape(val[1])[-1] if isinstance(val, tuple) and len(val) == 2 else None
        val_model = first if width is None else _for_outputs(first, width)
        xv, yv = _check_arrays("val", val, val_model.in_size, val_model.out_size)
        if val_model is not first:
            validation_model = lambda model: model.for_outputs(width)  # noqa: E731
    if isinstance(first, TrajectoryModel) and ridge is not None:
        raise ValueError("`ridge`: a TrajectoryModel has no readout to warm-start; drop it.")
    if (epochs is None) == (steps is None):
        raise ValueError("pass exactly one of `epochs` and `steps`.")
    for name, value in (
        ("epochs", epochs),
        ("steps", steps),
        ("batch_size", batch_size),
        ("patience", patience),
        ("eval_every", eval_every),
        ("max_failed_batches", max_failed_batches),
        ("count_every", count_every),
    ):
        _checked_int(name, value)
    if sampling not in SAMPLINGS:
        raise ValueError(f"`sampling` must be one of {SAMPLINGS}, got {sampling!r}.")
    if divergence_factor is not None and not divergence_factor > 1:
        raise ValueError(f"`divergence_factor` must be > 1 or None, got {divergence_factor!r}.")
    if batch_size > len(x):
        raise ValueError(
            f"`batch_size`={batch_size} exceeds the {len(x)} training samples; lower `batch_size`."
        )
    if resume and any(d is None for d in checkpoint_dirs):
        raise ValueError("`resume=True` needs `checkpoint_dir`.")
    per_epoch = len(x) // batch_size
    total = steps if steps is not None else epochs * per_epoch
    interval = min(eval_every or per_epoch, total)
    if clip_norm is not None:
        optimiser = optax.chain(optax.clip_by_global_norm(clip_norm), optimiser)
    loss = MSELoss() if loss is None else loss
    dtype = dtype_of_model(first)

    params, static = [], None
    for k, model in enumerate(models):
        model = _no_throw(model)
        path = None if checkpoint_dirs[k] is None else pathlib.Path(checkpoint_dirs[k]) / CHECKPOINT
        if ridge is not None and not (resume and path.is_file()):
            model = ridge_warm_start(model, x, y, ridge)
        p, s = eqx.partition(model, eqx.is_inexact_array)
        if static is None:
            static = s
        elif jax.tree_util.tree_structure(p) != jax.tree_util.tree_structure(
            params[0]
        ) or not eqx.tree_equal(s, static):
            raise ValueError(
                f"`models`: member {k} differs from member 0 in structure or settings; a cohort's "
                "members may differ only in the values of their parameters."
            )
        params.append(p)
    opt_states = [optimiser.init(p) for p in params]
    if hyperparameters:
        for name, values in hyperparameters.items():
            if len(values) != len(models):
                raise ValueError(
                    f"`hyperparameters[{name!r}]` has {len(values)} values for {len(models)} members."
                )
        opt_states = [
            _set_hyperparameters(o, {n: v[k] for n, v in hyperparameters.items()})
            for k, o in enumerate(opt_states)
        ]
    regulariser_values, regulariser_static = _regulariser_parts(regularisers, dtype)
    plan = Plan(
        static=static,
        regulariser_static=regulariser_static,
        optimiser=optimiser,
        loss=loss,
        num_samples=len(x),
        batch_size=batch_size,
        sampling=sampling,
        interval=interval,
        total=total,
        validated=val is not None,
        patience=patience,
        max_failed_batches=max_failed_batches,
        divergence_factor=divergence_factor,
        validation_model=validation_model,
    )
    mesh = _mesh(devices, len(models)) if cohort else None
    if shared_solve and not (
        isinstance(first, Surrogate) and isinstance(first.dynamics, NeuralODE)
    ):
        raise ValueError(
            "`shared_solve=True` needs neural ODE members of a Surrogate (their adaptive "
            f"solves are shared); a {type(first).__name__} cohort over a "
            f"{type(first.dynamics).__name__} is exact and fast as it is: drop it."
        )
    shard_map = _one_loop_per_device(first, shard_map, mesh)
    programs = Programs(plan, len(models) if cohort else None, mesh, shard_map, shared_solve)

    state, members = start(params, opt_states, checkpoint_dirs, resume)
    state = _place(mesh, state, True)
    arrays = dict(
        xs=_place(mesh, jnp.asarray(x, dtype), False),
        ys=_place(mesh, jnp.asarray(y, dtype), False),
        keys=_place(mesh, stack([jnp.asarray(k) for k in keys]), True),
        regularisers=_place(mesh, regulariser_values, True),
        place=lambda tree: _place(mesh, tree, True),
        count_x=jnp.asarray(x[:batch_size], dtype),
        count_y=jnp.asarray(y[:batch_size], dtype),
    )
    if val is not None:
        # A trajectory's validation region is one sample: predicted alone, not padded.
        rows = 1 if validation_model is not None else PREDICT_ROWS
        arrays.update(val=(xv, yv), val_targets=jnp.asarray(yv, dtype), val_rows=rows)
        fresh = [k for k, record in enumerate(members) if not record.resumed]
        if fresh:
            # The initial model's error is the first reference of the divergence test.
            predicted = predict_members(programs, state.params, xv, dtype, arrays["val_rows"])
            lowest = to_host(state.lowest).copy()
            for k in fresh:
                initial = error_metrics(predicted[k], yv)["global"]
                lowest[k] = initial if np.isfinite(initial) else np.inf
            lowest = _place(mesh, jnp.asarray(lowest, dtype), True)
            state = dataclasses.replace(state, lowest=lowest)
    options = Options(
        per_epoch=per_epoch,
        clip_norm=clip_norm,
        count_every=count_every,
        progress=progress,
        callback=callback,
    )
    counter = None
    if count_evaluations:
        counter = EvaluationCounter(lambda m, xb, yb: loss(m.predict(xb), yb))
        known = stepped_counts(models[0].dynamics, batch_size)
        if known is not None:
            # Fixed by the structure: measuring would compile a program per run for nothing.
            counter = lambda model, xb, yb: known  # noqa: E731
    state, counters = run(plan, programs, state, members, arrays, options, counter)
    host = to_host(state)
    results = []
    for k, (record, original) in enumerate(zip(members, models)):
        values = member_counters(counters, k)
        chosen = member(host.best if val is not None else host.last_good, k)
        trained = _restore_throw(
            eqx.combine(jax.tree_util.tree_map(jnp.asarray, chosen), static), original
        )
        results.append(
            FitResult(
                model=trained,
                history=record.history,
                status=status_name(counters, k, record),
                message=record.message or f"finished {values['step']} steps.",
                steps=values["step"],
                best_step=values["best_step"],
                solver_failures=values["failures"],
                failed_batches=values["failed_batches"],
                compile_time=record.compile_time,
                num_traces=programs.traces,
                checkpoint_step=record.checkpoint_step,
                training_started=record.training_started,
            )
        )
    return results


def fit(
    model: Surrogate | TrajectoryModel,
    train: tuple[Float[np.ndarray, "n in"], Float[np.ndarray, "n out"]],
    optimiser: optax.GradientTransformation,
    *,
    key: PRNGKeyArray,
    val: tuple[Float[np.ndarray, "m in"], Float[np.ndarray, "m val_out"]] | None = None,
    epochs: int | None = None,
    steps: int | None = None,
    batch_size: int = 32,
    sampling: str = "epochs",
    loss: AbstractLoss | None = None,
    regularisers: tuple = (),
    clip_norm: float | None = None,
    patience: int | None = None,
    eval_every: int | None = None,
    ridge: float | None = None,
    max_failed_batches: int | None = 10,
    divergence_factor: float | None = 100.0,
    checkpoint_dir=None,
    resume: bool = False,
    count_evaluations: bool = True,
    count_every: int = 10,
    progress: bool = False,
    callback=None,
) -> FitResult:
    """Trains a `Surrogate` on `(x, y)` arrays (already normalised) by minibatch optimisation.

    The steps between two evaluations run as one compiled program (a `jax.lax.scan` whose
    minibatches are drawn on the device); the host reads the state only at evaluations.

    **Arguments:**

    - `model`: the initial `Surrogate`.
    - `train`, `val`: `(x, y)` arrays; `val` (optional) drives early stopping and the choice
      of the returned parameters.
    - `optimiser`: any Optax optimiser (schedules included).
    - `key`: seeds the minibatches (see `sampling`).
    - `epochs` or `steps`: training length (exactly one of them); an epoch is
      `len(x) // batch_size` steps.
    - `batch_size`: samples per step; every step has one shape, so training compiles once.
    - `sampling`: `"epochs"` (default): epoch $e$ visits the samples in the order
      `permutation(fold_in(key, e))`, its last partial batch dropped; `"replacement"`: the
      batch of step $s$ is drawn uniformly with replacement with `fold_in(key, s)`.
    - `loss`: an `AbstractLoss` (default `MSELoss()`); `regularisers`: `AbstractRegulariser`s
      added to it.
    - `clip_norm`: clip gradients to this global norm first (`None`: no clipping).
    - `patience`: stop after this many evaluations without a better validation error.
    - `eval_every`: steps between evaluations (default: one epoch).
    - `ridge`: if given, first replace the readout by the ridge solution on the training data.
    - `max_failed_batches`: stop (status `"solver_failed"`) after this many consecutive
      batches whose ODE solve failed (`None`: never). A failed batch is skipped: the
      parameters stay as they were.
    - `divergence_factor`: stop (status `"diverged"`) at an evaluation whose monitored error
      (validation global relative error, or the training loss without `val`) exceeds this
      multiple of the lowest seen, the initial model's included (`None`: never).
    - `checkpoint_dir`: write `checkpoint.eqx` and `history.csv` there (atomically) at every
      evaluation; `resume`: continue from that checkpoint when present.
    - `count_evaluations`: measure field evaluations per solve on one batch (forward and
      backward, through host callbacks in a program of their own) at the first, every
      `count_every`-th and the last evaluation; other history rows leave them out.
    - `progress`: show a progress bar (tqdm if installed).
    - `callback`: called with each history row after its checkpoint is written; an exception
      it raises stops training (the checkpoint stays).

    **Returns:** a `FitResult`. Its model holds the best validation parameters (the last
    checkpointed ones without `val`); after a divergence before the first evaluation, the
    initial parameters.

    **Raises:** `ValueError` for inconsistent arguments (named in the message).
    """
    [result] = _fit_members(
        [model],
        train,
        optimiser,
        keys=[key],
        val=val,
        epochs=epochs,
        steps=steps,
        batch_size=batch_size,
        sampling=sampling,
        loss=loss,
        regularisers=[regularisers],
        hyperparameters=None,
        clip_norm=clip_norm,
        patience=patience,
        eval_every=eval_every,
        ridge=ridge,
        max_failed_batches=max_failed_batches,
        divergence_factor=divergence_factor,
        checkpoint_dirs=[checkpoint_dir],
        resume=resume,
        count_evaluations=count_evaluations,
        count_every=count_every,
        progress=progress,
        callback=None if callback is None else lambda k, row: callback(row),
        cohort=False,
        devices=None,
        shard_map=True,
    )
    return result


def fit_cohort(
    models: Sequence[Surrogate | TrajectoryModel],
    train: tuple[Float[np.ndarray, "n in"], Float[np.ndarray, "n out"]],
    optimiser: optax.GradientTransformation,
    *,
    keys: Sequence[PRNGKeyArray],
    val: tuple[Float[np.ndarray, "m in"], Float[np.ndarray, "m val_out"]] | None = None,
    epochs: int | None = None,
    steps: int | None = None,
    batch_size: int = 32,
    sampling: str = "epochs",
    loss: AbstractLoss | None = None,
    regularisers: tuple | Sequence[tuple] = (),
    hyperparameters: dict | None = None,
    clip_norm: float | None = None,
    patience: int | None = None,
    eval_every: int | None = None,
    ridge: float | None = None,
    max_failed_batches: int | None = 10,
    divergence_factor: float | None = 100.0,
    checkpoint_dirs: Sequence | None = None,
    resume: bool = False,
    count_evaluations: bool = True,
    count_every: int = 10,
    progress: bool = False,
    callback=None,
    devices: int | Sequence | None = None,
    shard_map: bool | None = None,
    shared_solve: bool = False,
) -> list[FitResult]:
    """Trains a cohort: K models of one structure, differing in their values (initialisation,
    minibatch seed, hyperparameters, regularisation weights), as one compiled program
    (`jax.vmap` over the members). Member k ends as `fit` would end it alone with the same
    values, to rounding: each member keeps its own early stopping, best parameters,
    divergence and failure state; a member that stops is frozen while the others go on.

    **Arguments:** as for `fit`, and:

    - `models`: the K initial `Surrogate`s (same structure and settings).
    - `keys`: K minibatch keys.
    - `regularisers`: shared `AbstractRegulariser`s, or a sequence of K tuples of the same
      kinds whose weights differ.
    - `hyperparameters`: `{name: K values}` for hyperparameters of an optimiser built with
      `optax.inject_hyperparams` (constant ones: an injected schedule overrides them).
    - `checkpoint_dirs`: K directories (each gets a checkpoint and history that a single
      `fit` can also resume).
    - `callback`: called as `callback(k, row)` for each history row of member k.
    - `devices`: shard the members over this many local devices (or these devices); the
      cohort size must be a multiple of their number. `shard_map=True` runs one loop per
      device, so that adaptive solves of different lengths need no collective per step;
      `False` leaves the partitioning of the vmapped program to the compiler, which puts an
      all-reduce into every iteration of an adaptive loop (Diffrax issue 407). The default
      (`None`) is `True`, except for neural ODEs differentiated through their steps, which
      do not trace under `shard_map` in Equinox 0.13 (Diffrax issue 765).
    - `shared_solve`: for neural ODE members, one adaptive solve over all members' batches
      (on each device) instead of one per member. The error norm of the step-size
      controller then runs over every member's states, so the members share one step
      sequence and each member's result depends on the others at the level of the solver
      tolerance (as a sample's does on its batch with `shared_steps`); a failed solve fails
      the batch of every member.

    Adaptive solves of vmapped members step in lock-step until the slowest member finishes:
    a cohort of adaptive neural ODEs pays for its slowest member at every step.

    **Returns:** one `FitResult` per member.

    **Raises:** `ValueError` for inconsistent arguments (named in the message).
    """
    models = list(models)
    size = len(models)
    if size < 1:
        raise ValueError("`models` must hold at least one model.")
    keys = list(keys)
    if len(keys) != size:
        raise ValueError(f"`keys` has {len(keys)} keys for {size} members.")
    if all(isinstance(r, AbstractRegulariser) for r in regularisers):
        regularisers = [tuple(regularisers)] * size
    elif len(regularisers) != size:
        raise ValueError(
            f"`regularisers` must be shared regularisers or one tuple per member ({size}), "
            f"got {len(regularisers)} entries."
        )
    checkpoint_dirs = [None] * size if checkpoint_dirs is None else list(checkpoint_dirs)
    if len(checkpoint_dirs) != size:
        raise ValueError(
            f"`checkpoint_dirs` has {len(checkpoint_dirs)} entries for {size} members."
        )
    return _fit_members(
        models,
        train,
        optimiser,
        keys=keys,
        val=val,
        epochs=epochs,
        steps=steps,
        batch_size=batch_size,
        sampling=sampling,
        loss=loss,
        regularisers=regularisers,
        hyperparameters=hyperparameters,
        clip_norm=clip_norm,
        patience=patience,
        eval_every=eval_every,
        ridge=ridge,
        max_failed_batches=max_failed_batches,
        divergence_factor=divergence_factor,
        checkpoint_dirs=checkpoint_dirs,
        resume=resume,
        count_evaluations=count_evaluations,
        count_every=count_every,
        progress=progress,
        callback=callback,
        cohort=True,
        devices=devices,
        shard_map=shard_map,
        shared_solve=shared_solve,
    )
