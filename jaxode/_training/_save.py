"""Saving a trained `Surrogate` built or trained outside `jaxode train` as a run directory that
`load`, `jaxode evaluate`, `predict`, `probe` and `runs` accept. A run directory stores its
parameters and, in `config.toml`, how to rebuild the model around them; so the model's
structure is described as a run configuration and the description checked by rebuilding."""

import dataclasses

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp

from .._bases import (
    AbstractTimeBasis,
    ChebyshevBasis,
    ConstantBasis,
    FourierBasis,
    LegendreBasis,
    MonomialBasis,
    PiecewiseConstantBasis,
)
from .._datasets import Affine
from .._fields import AntisymmetricField, HamiltonianField, LayerField, MLPField
from .._files import save_checkpoint
from .._models import HamiltonianNet, NeuralODE, ResNet
from .._paradigms import DiscretizeThenOptimize, OptimizeThenDiscretize
from .._surrogate import Surrogate, count_dynamics_parameters, count_parameters
from ._build import build_model, load_data
from ._config import DataConfig, RunConfig
from ._run import evaluate_model
from ._rundir import MODEL, RunDir

_BASES = {
    ConstantBasis: "static",
    MonomialBasis: "monomial",
    LegendreBasis: "legendre",
    ChebyshevBasis: "chebyshev",
    FourierBasis: "fourier",
    PiecewiseConstantBasis: "piecewise",
}
_FIELDS = {
    MLPField: "mlp",
    LayerField: "layer",
    AntisymmetricField: "antisymmetric",
    HamiltonianField: "hamiltonian",
}
_MODELS = {NeuralODE: "node", ResNet: "resnet", HamiltonianNet: "hamiltonian"}
_PARADIGMS = {DiscretizeThenOptimize: "discretize", OptimizeThenDiscretize: "optimize"}
# The solvers of `_choices.SOLVERS` by type (`_check_rebuilt` confirms the pairing).
_SOLVERS = {
    diffrax.Dopri5: "dopri5",
    diffrax.Tsit5: "tsit5",
    diffrax.Bosh3: "bosh3",
    diffrax.Heun: "heun",
    diffrax.Euler: "euler",
    diffrax.Dopri8: "dopri8",
}


def _degree(basis) -> int:
    if isinstance(basis, ConstantBasis):
        return 0
    if isinstance(basis, FourierBasis):
        return basis.num_frequencies
    if isinstance(basis, PiecewiseConstantBasis):
        return basis.pieces
    return basis.degree


def _named(table: dict, value, what: str) -> str:
    name = table.get(type(value))
    if name is None:
        raise ValueError(
            f"the model's {what} is a {type(value).__name__}; a run directory describes "
            f"{', '.join(t.__name__ for t in table)} only."
        )
    return name


def _solver(dynamics: NeuralODE) -> dict:
    values: dict = dict(solver=_named(_SOLVERS, dynamics.solver, "solver"))
    values["max_steps"] = dynamics.max_steps
    values["paradigm"] = _named(_PARADIGMS, dynamics.paradigm, "paradigm")
    controller = dynamics.stepsize_controller
    if isinstance(controller, diffrax.PIDController):
        values.update(rtol=float(controller.rtol), atol=float(controller.atol))
    elif dynamics.dt0 is not None:
        values["steps"] = round(float(dynamics.t1) / float(dynamics.dt0))
    return values


def describe(model: Surrogate, data: DataConfig) -> RunConfig:
    """The run configuration whose model has `model`'s structure, trained on `data`.

    **Raises:** `ValueError` naming the part of `model` a run configuration cannot describe."""
    if not isinstance(model, Surrogate):
        raise TypeError(f"`model` must be a jaxode.Surrogate, got {type(model).__name__}.")
    dynamics, activation = model.dynamics, model.opening_activation
    field = dynamics.field
    is_basis = lambda x: isinstance(x, AbstractTimeBasis)
    basis = next(b for b in jax.tree_util.tree_leaves(field, is_leaf=is_basis) if is_basis(b))
    t1 = float(dynamics.t1)
    values = dict(
        model=_named(_MODELS, dynamics, "dynamics"),
        field=_named(_FIELDS, field, "field"),
        basis=_named(_BASES, basis, "time basis"),
        degree=_degree(basis),
        width=field.width,
        t1=t1,
        clamp=bool(basis.clamp),
        opening_activation="tanh" if activation is jnp.tanh else "none",
        basis_window=None if float(basis.t1) == t1 else float(basis.t1),
    )
    if isinstance(field, MLPField):
        values["hidden"] = field.inner.out_size
    if isinstance(dynamics, NeuralODE):
        values.update(_solver(dynamics))
    elif isinstance(dynamics, (ResNet, HamiltonianNet)):
        values["steps"] = dynamics.steps
    dtype = jnp.dtype(model.opening.weight.dtype)
    precision = "float64" if dtype == jnp.float64 else "float32"
    return RunConfig(
        data=data,
        model=dataclasses.replace(RunConfig().model, **values),
        train=dataclasses.replace(RunConfig().train, precision=precision),
    )


def _check_rebuilt(model: Surrogate, config: RunConfig) -> None:
    """**Raises:** `ValueError` unless `config` rebuilds a model of `model`'s structure."""
    rebuilt = build_model(
        config, model.in_size, model.out_size, key=jax.random.PRNGKey(0), warn_window=False
    )
    shapes = lambda m: jax.tree_util.tree_map(
        lambda a: (a.shape, jnp.dtype(a.dtype)), eqx.filter(m, eqx.is_array)
    )
    static = lambda m: eqx.filter(m, eqx.is_array, inverse=True)
    same = jax.tree_util.tree_structure(model) == jax.tree_util.tree_structure(rebuilt)
    same = same and shapes(model) == shapes(rebuilt)
    if not (same and eqx.tree_equal(static(model), static(rebuilt))):
        raise ValueError(
            "the model differs from every model a run configuration builds (for example in "
            "an activation, a field's gamma, a basis window that does not start at 0, an "
            "orthonormal Legendre basis or a readout without bias); jaxode's tools rebuild a "
            "run's model from its config.toml, so save it with eqx.tree_serialise_leaves "
            "instead, or build it with jaxode.build_model."
        )


def save_run(
    model: Surrogate,
    run_dir,
    *,
    data: DataConfig | str,
    x_norm: Affine | None = None,
    y_norm: Affine | None = None,
) -> dict:
    """Writes `model` as a run directory: `config.toml` (its structure, described and checked
    by rebuilding it), `normalisation.json`, `model.eqx` and `metrics.json` (its errors on
    every split of `data`), so that `load`, `jaxode evaluate`, `predict`, `probe`, `runs`
    and `compare` take it as they take a run of `jaxode train`.

    **Arguments:**

    - `model`: a trained `Surrogate` (working in normalised units).
    - `run_dir`: a new or empty directory.
    - `data`: the data set it was trained on: a `DataConfig`, or a name or file path.
    - `x_norm`, `y_norm`: the `Affine` maps from physical to normalised units it was
      trained with (default: those `jaxode` computes for `data`).

    **Returns:** the metrics written.

    **Raises:** `ValueError` when a run configuration cannot describe the model, or its sizes
    do not match the data; `FileExistsError` when `run_dir` holds files.
    """
    data_config = DataConfig(dataset=data) if isinstance(data, str) else data
    config = describe(model, data_config)
    _check_rebuilt(model, config)
    loaded = load_data(config)
    if (loaded.in_size, loaded.out_size) != (model.in_size, model.out_size):
        raise ValueError(
            f"`data` has {loaded.in_size} inputs and {loaded.out_size} outputs; the model has "
            f"{model.in_size} and {model.out_size}."
        )
    norms = dict(
        x_norm=loaded.x_norm if x_norm is None else x_norm,
        y_norm=loaded.y_norm if y_norm is None else y_norm,
    )
    loaded = dataclasses.replace(loaded, **norms)
    run = RunDir(run_dir)
    with run.lock():
        run.check_new()
        run.start(config, loaded)
        save_checkpoint(run / MODEL, {"best_step": None}, model)
        metrics: dict = dict(status="completed", message="saved with jaxode.save_run.")
        metrics.update(evaluate_model(model, loaded))
        metrics.update(
            parameters=count_parameters(model),
            dynamics_parameters=count_dynamics_parameters(model),
        )
        run.write_metrics(metrics)
    return metrics
