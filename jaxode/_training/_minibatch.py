"""The minibatch trainer: an Optax optimiser over minibatches drawn on the device, the steps
between two evaluations compiled as one program for the whole cohort."""

import dataclasses
import math
from collections.abc import Sequence
from typing import cast

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from .._counting import EvaluationCounter, stepped_counts
from .._models import NeuralODE
from .._surrogate import Surrogate
from .._trajectories import TrajectoryModel
from . import _steps
from ._losses import AbstractLoss, MSELoss
from ._members import MemberRecord
from ._metrics import dtype_of_model, error_metrics, evaluation_predictions, ridge_warm_start
from ._minibatch_run import PREDICT_ROWS, Arrays, MinibatchRun, Programs, predict_members
from ._padding import split_constants
from ._placement import SingleDevice, place
from ._regularisers import AbstractRegulariser
from ._sampling import AbstractSampler, EpochSampler
from ._settings import Evaluation, check_count
from ._state import initial_state, packed_counters, stack, to_host
from ._steps import Task, shared_step, when_running
from ._trainer import AbstractTrainer, Problem


def without_throw(model):
    """`model` with `throw=False` solves, so that failures come back as data."""
    dynamics = model.dynamics
    if isinstance(dynamics, NeuralODE) and dynamics.throw:
        return eqx.tree_at(lambda m: m.dynamics, model, dataclasses.replace(dynamics, throw=False))
    return model


def _with_throw_of(original):
    """A function giving a trained model `original`'s `throw` again."""
    if not (isinstance(original.dynamics, NeuralODE) and original.dynamics.throw):
        return lambda trained: trained

    def restore(trained):
        dynamics = dataclasses.replace(trained.dynamics, throw=True)
        return eqx.tree_at(lambda m: m.dynamics, trained, dynamics)

    return restore


def _is_weight(leaf) -> bool:
    return isinstance(leaf, float) or eqx.is_inexact_array(leaf)


def _regulariser_parts(chosen: list[tuple], dtype):
    """Stacked numeric weights of every member's regularisers, and their shared rest."""
    values, statics = [], []
    for regularisers in chosen:
        dynamic, static = eqx.partition(tuple(regularisers), _is_weight)
        values.append(jax.tree_util.tree_map(lambda v: jnp.asarray(v, dtype), dynamic))
        statics.append(static)
    structure = jax.tree_util.tree_structure
    if any(structure(v) != structure(values[0]) for v in values) or not all(
        eqx.tree_equal(s, statics[0]) for s in statics
    ):
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


class MinibatchTrainer(AbstractTrainer):
    """Minibatch optimisation with any Optax optimiser. The steps between two evaluations run
    as one compiled program (a `jax.lax.scan` whose minibatches the `sampler` draws on the
    device); the host reads the state only at evaluations.

    **Arguments:**

    - `optimiser`: any Optax optimiser (schedules included).
    - `steps` or `epochs`: training length (exactly one of them); an epoch is
      `len(x) // batch_size` steps.
    - `batch_size`: samples per step; every step has one shape, so training compiles once.
    - `sampler`: `EpochSampler()` (default) or `ReplacementSampler()`.
    - `loss`: an `AbstractLoss` (default `MSELoss()`).
    - `regularisers`: `AbstractRegulariser`s added to the loss, shared by the members, or a
      sequence of one tuple per member of the same kinds whose weights differ.
    - `hyperparameters`: `{name: one value per member}` for hyperparameters of an optimiser
      built with `optax.inject_hyperparams` (constant ones: an injected schedule overrides
      them).
    - `clip_norm`: clip gradients to this global norm first (`None`: no clipping).
    - `ridge`: if given, first replace each member's readout by the ridge solution on the
      training data (not when it resumes).
    """

    optimiser: optax.GradientTransformation
    steps: int | None = None
    epochs: int | None = None
    batch_size: int = 32
    sampler: AbstractSampler = EpochSampler()
    loss: AbstractLoss = MSELoss()
    regularisers: tuple | Sequence[tuple] = ()
    hyperparameters: dict | None = None
    clip_norm: float | None = None
    ridge: float | None = None

    def __check_init__(self):
        if (self.epochs is None) == (self.steps is None):
            raise ValueError("pass exactly one of `epochs` and `steps`.")
        for name in ("epochs", "steps", "batch_size"):
            check_count(name, getattr(self, name))
        if not isinstance(self.sampler, AbstractSampler):
            raise TypeError(f"`sampler` must be an AbstractSampler, got {self.sampler!r}.")
        if not isinstance(self.loss, AbstractLoss):
            raise TypeError(f"`loss` must be an AbstractLoss (e.g. MSELoss()), got {self.loss!r}.")

    def planned(self, num_samples: int) -> int:
        if self.steps is not None:
            return self.steps
        assert self.epochs is not None  # exactly one of them: `__check_init__`
        return self.epochs * (num_samples // self.batch_size)

    def interval(self, num_samples: int, evaluation: Evaluation) -> int:
        """`evaluation.every` steps, by default an epoch (at most the whole training)."""
        return min(evaluation.every or num_samples // self.batch_size, self.planned(num_samples))

    def start(self, problem: Problem, members: list[MemberRecord], resume: bool) -> MinibatchRun:
        x, y = problem.train
        first = problem.models[0]
        if isinstance(first, TrajectoryModel) and self.ridge is not None:
            raise ValueError("`ridge`: a TrajectoryModel has no readout to warm-start; drop it.")
        if problem.keys is None:
            raise ValueError(
                "`key` (one model) or `keys` (a cohort) is required: they seed the minibatches."
            )
        if self.batch_size > len(x):
            raise ValueError(
                f"`batch_size`={self.batch_size} exceeds the {len(x)} training samples; lower "
                "`batch_size`."
            )
        size, dtype = problem.size, dtype_of_model(first)
        optimiser = self.optimiser
        if self.clip_norm is not None:
            optimiser = optax.chain(optax.clip_by_global_norm(self.clip_norm), optimiser)
        for name, values in (self.hyperparameters or {}).items():
            if len(values) != size:
                raise ValueError(
                    f"`hyperparameters[{name!r}]` has {len(values)} values for {size} members."
                )
        params, constants, static = self._parameters(problem, members, resume)
        regulariser_values, regulariser_static = _regulariser_parts(self._regularisers(size), dtype)
        total = self.planned(len(x))
        task = Task(
            static=static,
            regulariser_static=regulariser_static,
            optimiser=optimiser,
            loss=self.loss,
            sampler=self.sampler,
            num_samples=len(x),
            batch_size=self.batch_size,
            interval=self.interval(len(x), problem.evaluation),
            total=total,
            validated=problem.val is not None,
            stopping=problem.stopping,
            validation_model=problem.validation_model,
        )
        placement = problem.placement
        placement.check(first, size)
        mesh = placement.mesh(size)
        programs = _programs(task, problem, mesh)
        states = []
        for p, c, record in zip(params, constants, members):
            opt_state = self._opt_state(optimiser, p, len(states))
            fresh = initial_state(p, opt_state, math.inf, dtype, c)
            states.append(record.load(fresh)[1] if resume and record.can_resume() else fresh)
        state = place(mesh, stack(states), True)
        arrays = Arrays(
            xs=place(mesh, jnp.asarray(x, dtype), False),
            ys=place(mesh, jnp.asarray(y, dtype), False),
            keys=place(mesh, stack([jnp.asarray(k) for k in problem.keys]), True),
            regularisers=place(mesh, regulariser_values, True),
            count_x=jnp.asarray(x[: self.batch_size], dtype),
            count_y=jnp.asarray(y[: self.batch_size], dtype),
        )
        if problem.val is not None:
            state = self._validation(problem, programs, state, arrays, members, mesh, dtype)
        return MinibatchRun(
            task,
            programs,
            state,
            arrays,
            members,
            mesh=mesh,
            restore=[_with_throw_of(model) for model in problem.models],
            counter=self._counter(problem),
            clip_norm=self.clip_norm,
            count_every=problem.evaluation.count_every,
            pause_at=problem.evaluation.pause_at,
        )

    def _regularisers(self, size: int) -> list[tuple]:
        chosen = self.regularisers
        if all(isinstance(r, AbstractRegulariser) for r in chosen):
            return [tuple(chosen)] * size
        if len(chosen) != size:
            raise ValueError(
                f"`regularisers` must be shared regularisers or one tuple per member ({size}), "
                f"got {len(chosen)} entries."
            )
        return [tuple(r) for r in chosen]

    def _parameters(self, problem: Problem, members: list[MemberRecord], resume: bool):
        """The members' floating-point arrays (after the ridge warm start of the fresh ones),
        their constants (`split_constants`) and their shared rest."""
        params, constants, static = [], [], None
        for k, (model, record) in enumerate(zip(problem.models, members)):
            model = without_throw(model)
            if self.ridge is not None and not (resume and record.can_resume()):
                # A Surrogate: `start` refused a ridge for a TrajectoryModel.
                model = ridge_warm_start(cast(Surrogate, model), *problem.train, self.ridge)
            c, rest = split_constants(model)
            p, s = eqx.partition(rest, eqx.is_inexact_array)
            if static is None:
                static = s
            elif jax.tree_util.tree_structure(p) != jax.tree_util.tree_structure(
                params[0]
            ) or not eqx.tree_equal(s, static):
                raise ValueError(
                    f"`models`: member {k} differs from member 0 in structure or settings; a "
                    "cohort's members may differ only in the values of their parameters."
                )
            params.append(p)
            constants.append(c)
        return params, constants, static

    def _opt_state(self, optimiser, params, k: int):
        opt_state = optimiser.init(params)
        if not self.hyperparameters:
            return opt_state
        return _set_hyperparameters(
            opt_state, {name: values[k] for name, values in self.hyperparameters.items()}
        )

    def _validation(self, problem, programs, state, arrays, members, mesh, dtype):
        """Validation arrays, and the initial models' errors as the first reference of the
        divergence test of the members that start afresh."""
        xv, yv = problem.val
        # A trajectory's validation region is one sample: predicted alone, not padded.
        rows = 1 if problem.validation_model is not None else PREDICT_ROWS
        arrays.val, arrays.val_targets, arrays.val_rows = (xv, yv), jnp.asarray(yv, dtype), rows
        fresh = [k for k, record in enumerate(members) if not record.resumed]
        if not fresh:
            return state
        predicted = predict_members(programs, state, xv, dtype, rows)
        lowest = to_host(state.lowest).copy()
        for k in fresh:
            initial = error_metrics(predicted[k], yv)["global"]
            lowest[k] = initial if np.isfinite(initial) else np.inf
        return dataclasses.replace(state, lowest=place(mesh, jnp.asarray(lowest, dtype), True))

    def _counter(self, problem: Problem):
        if not problem.evaluation.count_evaluations:
            return None
        known = stepped_counts(problem.models[0].dynamics, self.batch_size)
        if known is not None:
            # Fixed by the structure: measuring would compile a program per run for nothing.
            return lambda model, xb, yb: known
        loss = self.loss
        return EvaluationCounter(lambda m, xb, yb: loss(m.predict(xb), yb))


def _programs(task: Task, problem: Problem, mesh) -> Programs:
    """The programs of `task` for the cohort, as `problem.placement` builds them."""
    placement, model, traces = problem.placement, problem.models[0], [0]

    def program(function, in_axes):
        return placement.program(function, in_axes, mesh, model)

    def counted(cohort_step):
        def steps(*args):
            traces[0] += 1
            return _steps.chunk(task, *args, cohort_step=cohort_step)

        return steps

    cohort_step = lambda *args: shared_step(task, *args)
    member_chunk, cohort_chunk = counted(None), counted(cohort_step)
    chunk_program = placement.chunk(
        member_chunk, cohort_chunk, (0, None, None, 0, 0, 0), mesh, model
    )
    # A program of its own: it depends on no model, so every structure with the same
    # sample, batch and interval sizes shares its compilation through the persistent cache
    # (inside the chunk it cost about a fifth of a small model's compile time).
    serves = max(1, task.per_epoch // task.interval)
    tables = lambda step, key: _steps.table(task, step, key, serves)
    with_counters = lambda *args: _recorded(task, *args)
    if isinstance(placement, SingleDevice) and task.validation_model is None:
        predict = _predicted_alone(task)
    else:
        predict = jax.jit(program(task.predict, (0, 0, None)))
    return Programs(
        chunk=jax.jit(when_running(chunk_program)),
        table=jax.jit(program(tables, (0, 0))),
        predict=predict,
        record=jax.jit(program(with_counters, (0, 0, 0))),
        loss_of=jax.jit(jax.vmap(lambda p, y: task.loss(p, y), in_axes=(0, None))),
        traces=traces,
        table_serves=serves,
    )


def _predicted_alone(task: Task):
    """One model's validation predictions through the program that evaluates the finished
    run (`evaluation_predictions`): a run compiles one prediction program, not two."""

    def predict(params, constants, xs):
        alone = lambda tree: jax.tree_util.tree_map(lambda a: a[0], tree)
        model = task.model(alone(params), alone(constants))
        return tuple(a[None] for a in to_host(evaluation_predictions(model, xs)))

    return predict


def _recorded(task: Task, state, monitored, evaluated):
    state = _steps.record(task, state, monitored, evaluated)
    return state, packed_counters(state)
