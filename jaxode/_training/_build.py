"""The objects a `RunConfig` describes: model, optimiser, loss and regularisers (from the
name -> builder tables of `_choices`)."""

import dataclasses
import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.core import Tracer

from .._bases import AbstractTimeBasis
from .._datasets import BUNDLED, Dataset, TrajectoryData, load_dataset
from .._layers import TimeVaryingLinear
from .._models import (
    BasisWindowWarning,
    basis_growth,
    uncovered_window,
    window_warnings_off,
)
from .._process import x64_enabled
from .._surrogate import Surrogate
from .._trajectories import TrajectoryModel
from ._choices import (
    BASES,
    FIELDS,
    INPUT_MAPS,
    MODELS,
    OPENING_ACTIVATIONS,
    PARADIGMS,
    PRECISIONS,
    SOLVERS,
    TRAINERS,
    member_hyperparameters,
    optimiser,
    regulariser_kinds,
    regularisers,
)
from ._config import DataConfig, ModelConfig, RunConfig, is_time_series
from ._horizons import horizon_is_data, with_horizon
from ._minibatch import MinibatchTrainer
from ._padding import PADDABLE
from ._settings import Evaluation, Stopping
from ._trainer import AbstractTrainer


def dtype_of(precision: str):
    """The JAX dtype of `precision`; float64 needs x64 enabled by the caller."""
    if precision == "float64" and not x64_enabled():
        raise ValueError(
            "precision 'float64' needs 64-bit JAX: call "
            "jax.config.update('jax_enable_x64', True) first (the CLI does this for you)."
        )
    return PRECISIONS[precision]


def _is_layer(node) -> bool:
    return isinstance(node, TimeVaryingLinear)


def _standard_normal_weights(field, *, key):
    """`field` with every weight coefficient of its time-varying layers drawn from $N(0, 1)$
    and every bias zero."""
    layers = [n for n in jax.tree_util.tree_leaves(field, is_leaf=_is_layer) if _is_layer(n)]
    keys = iter(jax.random.split(key, max(len(layers), 1)))

    def redraw(node):
        if not _is_layer(node):
            return node
        weight = jax.random.normal(next(keys), node.weight.shape, node.weight.dtype)
        bias = None if node.bias is None else jnp.zeros_like(node.bias)
        return eqx.tree_at(
            lambda n: (n.weight, n.bias), node, (weight, bias), is_leaf=lambda x: x is None
        )

    return jax.tree_util.tree_map(redraw, field, is_leaf=_is_layer)


def _scaled_weights(tree, std: float):
    """`tree` with the weights of its time-varying layers times `std`, rounded once in their
    dtype (NumPy, outside any compiled program: a multiplication fused into the draw would
    round differently and change every `field_init = "normal"` model by an ulp)."""

    def scale(node):
        if not _is_layer(node):
            return node
        if isinstance(node.weight, Tracer):  # shapes only (`eval_shape`)
            return eqx.tree_at(lambda n: n.weight, node, std * node.weight)
        weight = np.asarray(node.weight)
        scaled = jnp.asarray(weight * np.asarray(std, weight.dtype))
        return eqx.tree_at(lambda n: n.weight, node, scaled)

    return jax.tree_util.tree_map(scale, tree, is_leaf=_is_layer)


def normal_init(field, std: float, *, key):
    """`field` with every weight coefficient of its time-varying layers drawn from
    $N(0, \text{std}^2)$ and every bias zero (the study's neural-ODE initialisation)."""
    return _scaled_weights(_standard_normal_weights(field, key=key), std)


def _field(m, dtype, *, key):
    """The field of `m`; with `field_init = "normal"`, its weights standard normal draws
    still to be scaled by `m.field_init_std` (`_scaled_weights`)."""
    field = FIELDS[m.field](m, _basis(m), key=key, dtype=dtype)
    if m.field_init == "normal":
        field = _standard_normal_weights(field, key=jax.random.fold_in(key, 1))
    return field


def _functions(m) -> int:
    return 1 if m.basis == "static" else m.degree + 1


def _basis(m):
    t1 = m.t1 if m.basis_window is None else m.basis_window
    return BASES[m.basis](m.degree, t1=t1, **({"clamp": True} if m.clamp else {}))


def _with_basis(model, basis):
    """`model` with `basis` in place of each of its bases (of as many functions)."""
    is_basis = lambda node: isinstance(node, AbstractTimeBasis)
    swap = lambda node: basis if is_basis(node) else node
    return jax.tree_util.tree_map(swap, model, is_leaf=is_basis)


def _warn_basis_window(m, field) -> None:
    """Warns (`BasisWindowWarning`, in the names of the run configuration) when `field`'s basis
    window, which `m.basis_window` ends before `m.t1`, leaves part of $[0, t_1]$ unclamped."""
    found = None if m.basis_window is None else uncovered_window(field, 0.0, m.t1)
    if found is None:
        return
    basis, _, time = found
    warnings.warn(
        f"model.t1 = {m.t1:g} integrates past the basis window [0, {m.basis_window:g}] that "
        f"model.basis_window = {m.basis_window:g} sets, with model.clamp = false: outside its "
        f"window the {m.basis} basis keeps evaluating its formula, and "
        f"{basis_growth(basis, time)}. The study's raw-time monomials do this on purpose; "
        "if that is not meant, set model.basis_window = none (the window then ends at model.t1) or "
        "model.clamp = true (the weights frozen past the window).",
        BasisWindowWarning,
        stacklevel=3,
    )


def build_model(
    config: RunConfig,
    in_size: int,
    out_size: int,
    *,
    key,
    dt: float | None = None,
    warn_window: bool = True,
) -> Surrogate | TrajectoryModel:
    """The model described by `config.model`, in `config.train.precision`: a `Surrogate`, or
    for a time series a `TrajectoryModel` over windows of `out_size / (in_size - 1)` states
    sampled every `dt` (default: the data set's spacing). `warn_window`: warn when `model.t1`
    integrates past the basis window (off where the model is rebuilt, not chosen: loading a
    run, sizing one). Its parameters are drawn by one compiled program per model structure,
    the same numbers as drawing them one by one."""
    m = config.model
    dtype = dtype_of(config.train.precision)
    series = is_time_series(config.data)
    if series and dt is None:
        trajectory = load_dataset(config.data.dataset, window=config.data.window)
        assert isinstance(trajectory, TrajectoryData)  # `is_time_series` named one
        dt = trajectory.dt
    # The scale is applied below, outside the program, and so is the horizon of a net of fixed steps
    # whose window follows it (no draw depends on it): configurations that differ only in
    # them (a cohort's members, a search's trials) share one compiled draw.
    horizon = horizon_is_data(m, series)
    unscaled = dataclasses.replace(
        m,
        field_init_std=ModelConfig.field_init_std,
        t1=ModelConfig.t1 if horizon else m.t1,
    )
    # A draw reads a basis's number of functions only: polynomial bases of one size share a
    # compiled draw in the Legendre basis, which their own replaces.
    polynomial = m.basis in PADDABLE
    drawn = dataclasses.replace(unscaled, basis="legendre", degree=_functions(m) - 1)
    model = _drawn(drawn if polynomial else unscaled, series, dtype, in_size, out_size, dt, key)
    if polynomial:
        model = _with_basis(model, _basis(unscaled))
    if horizon and m.t1 != ModelConfig.t1:
        model = with_horizon(model, m.t1)
    if m.field_init == "normal":
        model = _scaled_weights(model, m.field_init_std)
    if warn_window and not series:
        _warn_basis_window(m, model.dynamics.field)
    return model


def _draw(m, series: bool, dtype, in_size: int, out_size: int, dt, key):
    fkey, skey = jax.random.split(key)
    if series:
        state_size = in_size - 1
        field = _field(dataclasses.replace(m, width=state_size), dtype, key=fkey)
        solver, controller, dt0 = SOLVERS[m.solver](m)
        return TrajectoryModel(
            field,
            dt,
            out_size // state_size,
            INPUT_MAPS[m.field_input],
            solver=solver,
            stepsize_controller=controller,
            dt0=None if dt0 is None else dt / m.steps,
            max_steps=m.max_steps,
            paradigm=PARADIGMS[m.paradigm](),
        )
    field = _field(m, dtype, key=fkey)
    with window_warnings_off():  # said by `build_model`, in the configuration's names
        dynamics = MODELS[m.model](m, field)
    activation = OPENING_ACTIVATIONS[m.opening_activation]
    return Surrogate(in_size, out_size, dynamics, activation, key=skey, dtype=dtype)


# Eagerly, every parameter shape compiled a program of its own (seconds on a first run).
_drawn = eqx.filter_jit(_draw)


def build_trainer(config: RunConfig, data: Dataset | TrajectoryData):
    """The trainer `config.train.optimiser` names, for training on `data`.

    **Raises:** `ValueError` for settings the trainer or the data cannot satisfy."""
    return TRAINERS[config.train.optimiser](config, data)


def build_cohort_trainers(
    configs: list[RunConfig], data: Dataset | TrajectoryData, member_rates: bool | None = None
) -> list[tuple[list[int], AbstractTrainer]]:
    """`(members, trainer)` pairs that train a cohort whose configurations differ only in
    `COHORT_FIELDS`: one minibatch trainer for all, with per-member learning rates (injected,
    see `optimiser`) and regulariser weights where they differ; for GNvpro, which trains its
    members one after another and reads one Tikhonov weight, one trainer per weight.
    `member_rates`: learning rates as member data even when they agree (the layout of a
    larger cohort whose checkpoints the members resume); default: where they differ.

    **Raises:** `ValueError` as `build_trainer`, for any member."""
    trainers = [build_trainer(config, data) for config in configs]
    first = trainers[0]
    if not isinstance(first, MinibatchTrainer):
        groups: dict[float, list[int]] = {}
        for k, config in enumerate(configs):
            groups.setdefault(config.train.tikhonov, []).append(k)
        return [(members, trainers[members[0]]) for members in groups.values()]
    ts = [config.train for config in configs]
    changes: dict = {}
    names = member_hyperparameters(ts[0])
    if member_rates is None:
        member_rates = len({tuple(getattr(t, n) for n in names) for t in ts}) > 1
    if member_rates:
        dtype = dtype_of(ts[0].precision)
        changes["optimiser"] = optimiser(ts[0], first.planned(data.sizes()["train"]), dtype)
        changes["hyperparameters"] = {n: [getattr(t, n) for t in ts] for n in names}
    if len({(t.tikhonov, t.readout_tikhonov, t.gram) for t in ts}) > 1:
        tikhonov, gram = zip(*map(regulariser_kinds, ts))
        kinds = (any(tikhonov), any(gram))
        changes["regularisers"] = [regularisers(t, kinds) for t in ts]
    return [(list(range(len(configs))), dataclasses.replace(first, **changes))]


def build_settings(config: RunConfig, data: Dataset | TrajectoryData) -> dict:
    """The `Stopping` and `Evaluation` of `config.train` for training on `data`."""
    t = config.train
    per_epoch = max(data.sizes()["train"] // t.batch_size, 1)
    return dict(
        stopping=Stopping(t.patience, t.divergence_factor, t.max_failed_batches),
        evaluation=Evaluation(
            every=t.eval_every_iterations or t.eval_every * per_epoch,
            count_evaluations=t.count_evaluations,
        ),
    )


def evaluation_data(
    stored: DataConfig, data: str | None = None, num_outputs: int | None = None
) -> Dataset | TrajectoryData:
    """The data a trained run is evaluated on: its own (`stored`: split, protocol, fold), or
    the data set or file `data` (`jaxode evaluate --data`) split as `stored` says, with the
    study's protocol only for bundled data and no folds."""
    name = data or stored.dataset
    return load_dataset(
        name,
        seed=stored.split_seed,
        protocol=stored.protocol if str(name).lower() in BUNDLED else "jaxode",
        num_outputs=stored.num_outputs if data is None else num_outputs,
        window=stored.window,
        folds=stored.folds if data is None else None,
        fold=stored.fold,
    )


def load_data(config: RunConfig) -> Dataset | TrajectoryData:
    """The data set `config.data` names, split and normalised as it says."""
    d = config.data
    return load_dataset(
        d.dataset,
        seed=d.split_seed,
        protocol=d.protocol,
        num_outputs=d.num_outputs,
        window=d.window,
        folds=d.folds,
        fold=d.fold,
    )
