"""Every named choice of the configuration, once: the name -> builder tables that turn the
strings of the CLI and TOML files into objects (`TRAINERS` among them: which trainer an
optimiser name means), and `CHOICES`, the names each field accepts.

A table's order is the order the CLI's `--help` and the config's error messages list."""

import dataclasses
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
from .._datasets import TrajectoryData
from .._fields import AntisymmetricField, HamiltonianField, LayerField, MLPField
from .._models import HamiltonianNet, NeuralODE, ResNet
from .._paradigms import DiscretizeThenOptimize, OptimizeThenDiscretize
from .._trajectories import cube
from ._gnvpro_trainer import MAX_INNER, STUDY_RIDGE, GNvproTrainer, iteration_cost
from ._losses import L1Loss, MSELoss, RelativeL2Loss
from ._minibatch import MinibatchTrainer
from ._regularisers import GramRegulariser, TikhonovRegulariser
from ._sampling import EpochSampler, ReplacementSampler

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


# The solvers that take `steps` steps of size t1 / steps.
FIXED_STEP_SOLVERS = ("heun", "euler")

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


# The dynamics' constructors take their fields positionally, as Equinox defines them; pyright
# reads the eqx.AbstractVar fields of their abstract base as fields of their own and synthesises
# another __init__, hence the ignore comments of the three builders.


def _neural_ode(m, field) -> NeuralODE:
    solver, controller, dt0 = SOLVERS[m.solver](m)
    return NeuralODE(  # pyright: ignore[reportCallIssue]
        field,
        m.t1,
        solver=solver,
        stepsize_controller=controller,
        dt0=dt0,
        max_steps=m.max_steps,
        paradigm=PARADIGMS[m.paradigm](),
    )


def _resnet(m, field) -> ResNet:
    return ResNet(field, m.t1, m.steps)  # pyright: ignore[reportCallIssue]


def _hamiltonian(m, field) -> HamiltonianNet:
    return HamiltonianNet(field, m.t1, m.steps)  # pyright: ignore[reportCallIssue]


# name -> (model config, field) -> dynamics
MODELS = {"node": _neural_ode, "resnet": _resnet, "hamiltonian": _hamiltonian}

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

SAMPLERS = {"epochs": EpochSampler, "replacement": ReplacementSampler}


def regulariser_kinds(t) -> tuple[bool, bool]:
    """Whether a train config has a Tikhonov and a Gram regulariser."""
    return bool(t.tikhonov or t.readout_tikhonov), bool(t.gram)


def regularisers(t, kinds: tuple[bool, bool] | None = None) -> tuple:
    """The regularisers of a train config; with `kinds` (`regulariser_kinds` of a cohort),
    those kinds, at zero weight where the config has none (a zero-weight penalty adds exact
    zeros to the loss and its gradient)."""
    tikhonov, gram = regulariser_kinds(t) if kinds is None else kinds
    out = []
    if tikhonov:
        out.append(TikhonovRegulariser(weights=t.tikhonov, readout=t.readout_tikhonov))
    if gram:
        out.append(GramRegulariser(t.gram))
    return tuple(out)


def member_hyperparameters(t) -> tuple[str, ...]:
    """The optimiser settings of a train config that a cohort sets per member."""
    return ("learning_rate", "weight_decay") if t.optimiser == "adamw" else ("learning_rate",)


def optimiser(t, total_steps: int, member_rates_dtype=None) -> optax.GradientTransformation:
    """The Optax optimiser of a train config over `total_steps`. With `member_rates_dtype`,
    its learning rate (and the weight decay of `adamw`) are hyperparameters of the state
    (`optax.inject_hyperparams`, in that dtype) that a cohort sets per member, the schedule
    rebuilt around the rate at every step: the same arithmetic as a constant rate."""

    def schedule(learning_rate):
        config = dataclasses.replace(t, learning_rate=learning_rate)
        return SCHEDULES[t.schedule](config, total_steps)

    decay = {"weight_decay": t.weight_decay} if t.optimiser == "adamw" else {}
    if member_rates_dtype is None:
        return OPTIMISERS[t.optimiser](schedule(t.learning_rate), **decay)
    # The rate keeps the dtype a constant rate's schedule gives it: Optax's step schedule
    # computes in float32 even in float64 (from its int32 count).
    dtype = jnp.result_type(schedule(t.learning_rate)(jnp.zeros((), jnp.int32)))

    def build(learning_rate):
        member = schedule(learning_rate)
        return OPTIMISERS[t.optimiser](lambda count: jnp.asarray(member(count), dtype))

    def build_decayed(learning_rate, weight_decay):
        member = schedule(learning_rate)
        rate = lambda count: jnp.asarray(member(count), dtype)
        return OPTIMISERS[t.optimiser](rate, weight_decay=weight_decay)

    chosen = build_decayed if decay else build
    injected = optax.inject_hyperparams(chosen, hyperparam_dtype=member_rates_dtype)
    return injected(learning_rate=t.learning_rate, **decay)


def _minibatch(name: str):
    """The builder of a `MinibatchTrainer` with the Optax optimiser `OPTIMISERS[name]`."""

    def build(config, data) -> MinibatchTrainer:
        t, train_size = config.train, data.sizes()["train"]
        if t.batch_size > train_size:
            raise ValueError(
                f"train.batch_size={t.batch_size} exceeds the {train_size} training samples of "
                f"{data.name!r}; lower train.batch_size (--batch-size) to {train_size} or less."
            )
        per_epoch = train_size // t.batch_size
        total = t.iterations if t.iterations is not None else t.epochs * per_epoch
        return MinibatchTrainer(
            optimiser(t, total),
            steps=total,
            batch_size=t.batch_size,
            sampler=SAMPLERS[t.sampling](),
            loss=LOSSES[t.loss](),
            regularisers=regularisers(t),
            clip_norm=t.clip_norm,
            ridge=t.ridge,
        )

    return build


def _gnvpro(config, data) -> GNvproTrainer:
    """GNvpro's budget: `train.iterations`, when set, is the number of outer (trust-region)
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
    time-series data set) and a pass budget smaller than one iteration."""
    t = config.train
    refused = []
    if isinstance(data, TrajectoryData):
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
            f"least {-(-cost // 2)} or set train.iterations."
        )
    ridge = STUDY_RIDGE if t.ridge is None else t.ridge
    return GNvproTrainer(t.iterations, passes, ridge=ridge, tikhonov=t.tikhonov)


# name -> (run config, data set) -> trainer
TRAINERS = {
    **{name: _minibatch(name) for name in OPTIMISERS},
    "gnvpro": _gnvpro,
}

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
    ("train", "optimiser"): tuple(TRAINERS),
    ("train", "schedule"): tuple(SCHEDULES),
    ("train", "sampling"): tuple(SAMPLERS),
    ("train", "loss"): tuple(LOSSES),
    ("train", "precision"): tuple(PRECISIONS),
}
