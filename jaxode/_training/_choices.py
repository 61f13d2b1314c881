"""Every named choice of the configuration, once: the name -> builder tables that turn the
strings of the CLI and TOML files into objects, and `CHOICES`, the names each field accepts.

A table's order is the order the CLI's `--help` and the config's error messages list."""

import functools

import diffrax
import jax.numpy as jnp
import optax

from .._bases import (
    ChebyshevBasis,
    ConstantBasis,
    FourierBasis,
    LegendreBasis,
    MonomialBasis,
    PiecewiseConstantBasis,
)
from .._fields import AntisymmetricField, HamiltonianField, LayerField, MLPField
from .._models import HamiltonianNet, NeuralODE, ResNet
from .._paradigms import DiscretizeThenOptimize, OptimizeThenDiscretize
from .._trajectories import cube
from ._losses import L1Loss, MSELoss, RelativeL2Loss

# name -> (degree, *, t0, t1) -> basis
BASES = {
    "static": lambda degree, **window: ConstantBasis(**window),
    "monomial": MonomialBasis,
    "legendre": LegendreBasis,
    "chebyshev": ChebyshevBasis,
    "fourier": FourierBasis,
    # Degree 0 still needs one piece.
    "piecewise": lambda degree, **window: PiecewiseConstantBasis(max(degree, 1), **window),
}

# name -> (model config, basis, *, key, dtype) -> field
FIELDS = {
    "mlp": lambda m, basis, **kwargs: MLPField(m.width, m.hidden, basis, **kwargs),
    "layer": lambda m, basis, **kwargs: LayerField(m.width, basis, **kwargs),
    "antisymmetric": lambda m, basis, **kwargs: AntisymmetricField(m.width, basis, **kwargs),
    "hamiltonian": lambda m, basis, **kwargs: HamiltonianField(m.width, basis, **kwargs),
}


def _adaptive(solver):
    return lambda m: (solver(), diffrax.PIDController(rtol=m.rtol, atol=m.atol), None)


def _fixed_steps(solver):
    return lambda m: (solver(), diffrax.ConstantStepSize(), m.t1 / m.steps)


# name -> model config -> (solver, step-size controller, dt0)
SOLVERS = {
    "dopri5": _adaptive(diffrax.Dopri5),
    "tsit5": _adaptive(diffrax.Tsit5),
    "bosh3": _adaptive(diffrax.Bosh3),
    "heun": _fixed_steps(diffrax.Heun),
    "euler": _fixed_steps(diffrax.Euler),
    "dopri8": _adaptive(diffrax.Dopri8),
}

PARADIGMS = {"discretize": DiscretizeThenOptimize, "optimize": OptimizeThenDiscretize}


def _neural_ode(m, field):
    solver, controller, dt0 = SOLVERS[m.solver](m)
    return NeuralODE(
        field,
        m.t1,
        solver=solver,
        stepsize_controller=controller,
        dt0=dt0,
        max_steps=m.max_steps,
        paradigm=PARADIGMS[m.paradigm](),
    )


# name -> (model config, field) -> dynamics
MODELS = {
    "node": _neural_ode,
    "resnet": lambda m, field: ResNet(field, m.t1, m.steps),
    "hamiltonian": lambda m, field: HamiltonianNet(field, m.t1, m.steps),
}

OPENING_ACTIVATIONS = {"tanh": jnp.tanh, "none": None}

# What a time-series model's field sees of the state.
INPUT_MAPS = {"state": None, "cube": cube}

PRECISIONS = {"float32": jnp.float32, "float64": jnp.float64}

# name -> learning-rate schedule -> optimiser
OPTIMISERS = {
    "adam": optax.adam,
    "adamw": optax.adamw,
    # PyTorch's defaults (decay 0.99, eps outside the square root), which the study's
    # spiral ran with; Optax's own are decay 0.9, eps inside.
    "rmsprop": functools.partial(optax.rmsprop, decay=0.99, eps=1e-8, eps_in_sqrt=False),
    "sgd": functools.partial(optax.sgd, momentum=0.9),
}

# name -> (train config, total steps) -> learning-rate schedule
SCHEDULES = {
    "cosine": lambda t, total_steps: optax.cosine_decay_schedule(
        t.learning_rate, max(total_steps, 1), alpha=0.01
    ),
    "step": lambda t, total_steps: optax.exponential_decay(
        t.learning_rate, t.decay_every, t.decay_factor, staircase=True
    ),
    "constant": lambda t, total_steps: optax.constant_schedule(t.learning_rate),
}

LOSSES = {"mse": MSELoss, "l1": L1Loss, "relative": RelativeL2Loss}

# The named choices of every string field: the CLI offers exactly these.
CHOICES = {
    ("data", "protocol"): ("jaxode", "study"),
    ("model", "model"): tuple(MODELS),
    ("model", "field"): tuple(FIELDS),
    ("model", "basis"): tuple(BASES),
    ("model", "solver"): tuple(SOLVERS),
    ("model", "paradigm"): tuple(PARADIGMS),
    ("model", "opening_activation"): tuple(OPENING_ACTIVATIONS),
    ("model", "field_init"): ("default", "normal"),
    ("model", "field_input"): tuple(INPUT_MAPS),
    # "gnvpro" is no Optax optimiser: `train_cohort` trains it by `fit_gnvpro_members`.
    ("train", "optimiser"): (*OPTIMISERS, "gnvpro"),
    ("train", "schedule"): tuple(SCHEDULES),
    ("train", "sampling"): ("epochs", "replacement"),
    ("train", "loss"): tuple(LOSSES),
    ("train", "precision"): tuple(PRECISIONS),
}
