"""The one place where configuration strings become objects."""

import diffrax
import equinox as eqx
import jax
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
from .._layers import TimeVaryingLinear
from .._models import HamiltonianNet, NeuralODE, ResNet
from .._paradigms import DiscretizeThenOptimize, OptimizeThenDiscretize
from .._surrogate import Surrogate
from ._config import ModelConfig, RunConfig, TrainConfig
from ._losses import L1Loss, MSELoss, RelativeL2Loss
from ._regularisers import GramRegulariser, TikhonovRegulariser

SOLVERS = {
    "dopri5": diffrax.Dopri5,
    "dopri8": diffrax.Dopri8,
    "tsit5": diffrax.Tsit5,
    "bosh3": diffrax.Bosh3,
    "heun": diffrax.Heun,
    "euler": diffrax.Euler,
}


def build_basis(config: ModelConfig, t0: float = 0.0):
    t1, degree = config.t1, config.degree
    if config.basis == "static":
        return ConstantBasis(t0=t0, t1=t1)
    if config.basis == "monomial":
        return MonomialBasis(degree, t0=t0, t1=t1)
    if config.basis == "legendre":
        return LegendreBasis(degree, t0=t0, t1=t1)
    if config.basis == "chebyshev":
        return ChebyshevBasis(degree, t0=t0, t1=t1)
    if config.basis == "fourier":
        return FourierBasis(degree, t0=t0, t1=t1)
    return PiecewiseConstantBasis(max(degree, 1), t0=t0, t1=t1)


def dtype_of(precision: str):
    """The JAX dtype of `precision`; float64 needs x64 enabled by the caller."""
    if precision == "float64":
        if not jax.config.jax_enable_x64:
            raise ValueError(
                "precision 'float64' needs 64-bit JAX: call "
                "jax.config.update('jax_enable_x64', True) first (the CLI does this for you)."
            )
        return jnp.float64
    return jnp.float32


def normal_init(field, std: float, *, key):
    """`field` with every weight coefficient of its time-varying layers drawn from
    $N(0, \text{std}^2)$ and every bias zero (the study's neural-ODE initialisation)."""
    is_layer = lambda node: isinstance(node, TimeVaryingLinear)
    layers = [n for n in jax.tree_util.tree_leaves(field, is_leaf=is_layer) if is_layer(n)]
    keys = iter(jax.random.split(key, max(len(layers), 1)))

    def redraw(node):
        if not is_layer(node):
            return node
        weight = std * jax.random.normal(next(keys), node.weight.shape, node.weight.dtype)
        bias = None if node.bias is None else jnp.zeros_like(node.bias)
        return eqx.tree_at(
            lambda n: (n.weight, n.bias), node, (weight, bias), is_leaf=lambda x: x is None
        )

    return jax.tree_util.tree_map(redraw, field, is_leaf=is_layer)


def build_model(config: RunConfig, in_size: int, out_size: int, *, key) -> Surrogate:
    """The `Surrogate` described by `config.model`, in `config.train.precision`."""
    m = config.model
    dtype = dtype_of(config.train.precision)
    basis = build_basis(m)
    fkey, skey = jax.random.split(key)
    if m.field == "mlp":
        field = MLPField(m.width, m.hidden, basis, key=fkey, dtype=dtype)
    elif m.field == "layer":
        field = LayerField(m.width, basis, key=fkey, dtype=dtype)
    elif m.field == "antisymmetric":
        field = AntisymmetricField(m.width, basis, key=fkey, dtype=dtype)
    else:
        field = HamiltonianField(m.width, basis, key=fkey, dtype=dtype)
    if m.field_init == "normal":
        field = normal_init(field, m.field_init_std, key=jax.random.fold_in(fkey, 1))
    if m.model == "node":
        solver = SOLVERS[m.solver]()
        if m.solver in ("euler", "heun"):
            controller, dt0 = diffrax.ConstantStepSize(), m.t1 / m.steps
        else:
            controller, dt0 = diffrax.PIDController(rtol=m.rtol, atol=m.atol), None
        paradigm = (
            DiscretizeThenOptimize() if m.paradigm == "discretize" else OptimizeThenDiscretize()
        )
        dynamics = NeuralODE(
            field,
            m.t1,
            solver=solver,
            stepsize_controller=controller,
            dt0=dt0,
            max_steps=m.max_steps,
            paradigm=paradigm,
        )
    elif m.model == "resnet":
        dynamics = ResNet(field, m.t1, m.steps)
    else:
        dynamics = HamiltonianNet(field, m.t1, m.steps)
    activation = jnp.tanh if m.opening_activation == "tanh" else None
    return Surrogate(in_size, out_size, dynamics, activation, key=skey, dtype=dtype)


def build_schedule(t: TrainConfig, total_steps: int):
    if t.schedule == "cosine":
        return optax.cosine_decay_schedule(t.learning_rate, max(total_steps, 1), alpha=0.01)
    if t.schedule == "step":
        return optax.exponential_decay(
            t.learning_rate, t.decay_every, t.decay_factor, staircase=True
        )
    return optax.constant_schedule(t.learning_rate)


def build_optimiser(t: TrainConfig, total_steps: int) -> optax.GradientTransformation:
    """The Optax optimiser of `t` (without clipping: `fit` adds it from `clip_norm`)."""
    schedule = build_schedule(t, total_steps)
    if t.optimiser == "adam":
        return optax.adam(schedule)
    if t.optimiser == "adamw":
        return optax.adamw(schedule)
    if t.optimiser == "rmsprop":
        return optax.rmsprop(schedule)
    return optax.sgd(schedule, momentum=0.9)


def build_loss(t: TrainConfig):
    return {"mse": MSELoss, "l1": L1Loss, "relative": RelativeL2Loss}[t.loss]()


def build_regularisers(t: TrainConfig) -> tuple:
    out = []
    if t.tikhonov or t.readout_tikhonov:
        out.append(TikhonovRegulariser(weights=t.tikhonov, readout=t.readout_tikhonov))
    if t.gram:
        out.append(GramRegulariser(t.gram))
    return tuple(out)
