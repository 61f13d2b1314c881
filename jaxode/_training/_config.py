"""Run configuration as frozen dataclasses, with dictionary/TOML round trips and checks."""

import dataclasses
import json
import math
import pathlib
import tomllib
import typing

from .._datasets import TIME_SERIES
from ._choices import CHOICES

PRESETS = pathlib.Path(__file__).resolve().parent.parent / "presets"


def _check_choice(section: str, name: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(
            f"unknown {section}.{name} {value!r}; valid values: {', '.join(map(str, choices))}."
        )


# A seed is an integer in [0, 2**32): there `jax.random.PRNGKey(seed)` is the key
# [0, seed] in both precisions, so every seed gives its own key. Outside it, 32-bit JAX
# keeps the low 32 bits (2**32 gives the key of 0, -1 that of 2**32 - 1), 64-bit JAX
# raises OverflowError from 2**63 on, and numpy.random.RandomState (the study protocol's
# splits) refuses the seed.
SEED_LIMIT = 2**32


def _check_seed(section: str, name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < SEED_LIMIT:
        raise ValueError(
            f"{section}.{name} must be an integer in [0, {SEED_LIMIT - 1}] (0 to 2**32 - 1), "
            f"got {value!r}."
        )


def _is_number(value, integer: bool = False) -> typing.TypeGuard[int | float]:
    """Whether `value` is an int (or, unless `integer`, a finite float), not a bool."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return not integer and isinstance(value, float) and math.isfinite(value)


def _positive(section: str, name: str, value, allow_none=False, integer=False) -> None:
    if value is None and allow_none:
        return
    if not _is_number(value, integer) or not value > 0:
        what = "an integer" if integer else "a finite number"
        raise ValueError(f"{section}.{name} must be {what} > 0, got {value!r}.")


def _non_negative(section: str, name: str, value) -> None:
    if not _is_number(value) or not value >= 0:
        raise ValueError(f"{section}.{name} must be a finite number >= 0, got {value!r}.")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Which data set: `dataset` is `"elm"`, `"cdr"`, `"dcr"` (generated on first use, see
    `load_dcr`) or a path to a `.npz`/`.csv` file; `split_seed` (an integer in
    $[0, 2^{32})$) seeds random splits (CDR, DCR, user files without a stored split);
    `protocol` is `"jaxode"` or `"study"` (the study's preprocessing of the bundled sets: for
    CDR a `numpy.random.RandomState(split_seed)` permutation and unscaled outputs);
    `num_outputs` tells a CSV file without `y...` column names how many of its last columns
    are outputs. `folds` (`None` or an integer >= 2) and `fold` (in $[0, \text{folds})$)
    make the split k-fold cross-validation: the training and validation rows pooled,
    permuted by `split_seed` and cut into `folds` folds, fold `fold` validating, the test rows
    kept (`Dataset.refolded`); with `split_seed` as an axis too, repeated k-fold.

    `"spiral"` is a time series (see `TrajectoryData`): the model fits windows of `window`
    consecutive states of the study's spiral on $[0, 16]$ and is validated and tested by
    integrating $[16, 20]$ and $[20, 25]$ from their first true state."""

    dataset: str = "elm"
    split_seed: int = 0
    protocol: str = "jaxode"
    num_outputs: int | None = None
    window: int = 10
    folds: int | None = None
    fold: int = 0


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The surrogate: opening -> `model` over `field` with time `basis` of `degree` -> readout.

    `model` is `"node"` (neural ODE), `"resnet"` or `"hamiltonian"`; `field` is `"mlp"`,
    `"layer"`, `"antisymmetric"` or `"hamiltonian"`; `basis` is `"static"`, `"monomial"`,
    `"legendre"`, `"chebyshev"`, `"fourier"` or `"piecewise"` (`degree` is the polynomial
    degree, the number of frequencies, or the number of pieces). `solver`, `rtol`, `atol`,
    `max_steps`, `paradigm` apply to the neural ODE; `steps` to the discrete models.
    `field_init` is `"default"` (the layers' own initialisation of the constant coefficient,
    higher coefficients zero) or `"normal"` (every weight coefficient of the field drawn from
    $N(0, \\sigma^2)$ with $\\sigma$ = `field_init_std`, biases zero, as the study's neural ODEs).
    `clamp` freezes the weights outside the basis window $[0, t_1]$ at their values at its ends.
    `basis_window` ends the basis window somewhere other than `t1` (`None`: at `t1`): with
    `basis_window = 1` and `t1 = T` a monomial basis is $t^k$ in raw time, the study's
    parameterisation, whose conditioning worsens with $T$ (jaxode's default scales time to
    the window).

    For a time series (`data.dataset = "spiral"`) the model is a `TrajectoryModel`: the field
    acts on the state itself (its size, not `width`, is the field's width), `field_input` is
    what it sees (`"state"`, or `"cube"`: $y^3$ as in the study's spiral model), `t1` is the end
    of the basis window (16: the training region; 25: the whole trajectory), and a fixed-step
    solver takes `steps` steps per sample spacing.
    """

    model: str = "node"
    field: str = "mlp"
    basis: str = "legendre"
    degree: int = 3
    width: int = 32
    hidden: int = 64
    t1: float = 1.0
    solver: str = "dopri5"
    rtol: float = 1e-3
    atol: float = 1e-5
    max_steps: int = 4096
    paradigm: str = "discretize"
    steps: int = 12
    opening_activation: str = "tanh"
    field_init: str = "default"
    field_init_std: float = 0.1
    clamp: bool = False
    field_input: str = "state"
    basis_window: float | None = None


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optimisation: `optimiser` (`"adam"`, `"adamw"`, `"rmsprop"`, `"sgd"`, or `"gnvpro"`:
    variable projection with trust-region Gauss-Newton on the full batch, see `fit_gnvpro`;
    its budget is `iterations` outer iterations, else `2 * epochs` passes over the data) with
    `learning_rate` and `schedule` (`"cosine"`, `"step"`: times `decay_factor` every
    `decay_every` steps, `"constant"`); `weight_decay` (the decoupled weight decay of `"adamw"`,
    Loshchilov and Hutter; Optax's default 1e-4; other optimisers ignore it); `epochs` over
    minibatches of `batch_size`, or
    `iterations` optimisation steps when set; `sampling` (`"epochs"`: a permutation per epoch,
    `"replacement"`: every batch drawn with replacement); `clip_norm` (global-norm gradient
    clipping, `None` for off); `loss` (`"mse"`, `"l1"`, `"relative"`); regularisers
    `tikhonov` (dynamics and opening weights), `readout_tikhonov`, `gram` (the L2-in-time Gram
    penalty); `patience` (evaluations without validation improvement before stopping, `None`
    for off); evaluations (and checkpoints) every `eval_every` epochs, or every
    `eval_every_iterations` steps when set; `ridge` (ridge parameter of the closed-form readout
    warm start, `None` for off); `max_failed_batches` (stop after this many consecutive batches
    whose solve failed, `None` for never); `divergence_factor` (stop when the validation
    error exceeds this multiple of its lowest value, `None` for never); `count_evaluations`
    (record the field evaluations per solve at the first, every tenth and the last
    evaluation; for an adaptive neural ODE they are measured by a program with host
    callbacks, which no compilation cache keeps: a few seconds more per run); `seed` (an
    integer in $[0, 2^{32})$); `precision` (`"float32"` or `"float64"`)."""

    optimiser: str = "adam"
    learning_rate: float = 3e-3
    schedule: str = "cosine"
    decay_every: int = 500
    decay_factor: float = 0.5
    weight_decay: float = 1e-4
    epochs: int = 80
    iterations: int | None = None
    batch_size: int = 32
    sampling: str = "epochs"
    clip_norm: float | None = 1.0
    loss: str = "mse"
    tikhonov: float = 0.0
    readout_tikhonov: float = 0.0
    gram: float = 0.0
    patience: int | None = None
    eval_every: int = 1
    eval_every_iterations: int | None = None
    ridge: float | None = None
    max_failed_batches: int | None = 10
    divergence_factor: float | None = 100.0
    count_evaluations: bool = False
    seed: int = 0
    precision: str = "float32"


# Settings that change what a run records beside its model, never the model: no part of a
# sweep cell's identity or of what a resume must match.
RECORDING_ONLY = ("train.count_evaluations",)


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything a run needs: `data`, `model`, `train` sections."""

    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()

    def __post_init__(self):
        check_config(self)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "RunConfig":
        """Builds a config from nested dictionaries; unknown sections or keys are errors."""
        sections = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}
        unknown = set(d) - set(sections)
        if unknown:
            raise ValueError(
                f"unknown config section(s) {sorted(unknown)}; valid sections: {sorted(sections)}."
            )
        built = {}
        for name, klass in sections.items():
            values = dict(d.get(name, {}))
            fields = {f.name: f for f in dataclasses.fields(klass)}
            bad = set(values) - set(fields)
            if bad:
                raise ValueError(
                    f"unknown key(s) {sorted(bad)} in [{name}]; valid keys: {', '.join(fields)}."
                )
            hints = typing.get_type_hints(klass)
            for key, value in values.items():
                values[key] = _coerce(name, key, value, hints[key])
            built[name] = klass(**values)
        return cls(**built)

    def to_toml(self) -> str:
        """TOML text readable by `from_toml` (`None` is written as `"none"`, which reads back
        as `None`)."""
        lines = []
        for section, values in self.to_dict().items():
            lines.append(f"[{section}]")
            for key, value in values.items():
                lines.append(f"{key} = {json.dumps('none' if value is None else value)}")
            lines.append("")
        return "\n".join(lines)

    @classmethod
    def from_toml(cls, text: str) -> "RunConfig":
        """Reads `to_toml`'s format (or any subset of its sections and keys).

        **Raises:** `ValueError` for invalid TOML, unknown names or invalid values."""
        try:
            values = tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            raise ValueError(f"invalid TOML configuration: {error}.") from None
        return cls.from_dict(values)

    def replace(self, section: str, **changes) -> "RunConfig":
        """A copy with `changes` applied to one section."""
        return dataclasses.replace(
            self, **{section: dataclasses.replace(getattr(self, section), **changes)}
        )


_BOOLEANS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}


def _coerce(section: str, key: str, value: typing.Any, hint) -> typing.Any:
    """Numbers from TOML/CLI into the field's type (int -> float, "none" -> None)."""
    optional = type(None) in typing.get_args(hint)
    base = next((a for a in typing.get_args(hint) if a is not type(None)), hint)
    if isinstance(value, str) and value.lower() in ("none", "off") and optional:
        return None
    if value is None and optional:
        return None
    if base is bool and isinstance(value, str) and value.lower() in _BOOLEANS:
        return _BOOLEANS[value.lower()]
    try:
        # Any value is tried: a TypeError or ValueError becomes the message below.
        if base is float and not isinstance(value, bool):
            return float(value)  # pyright: ignore[reportArgumentType]
        if base is int and not isinstance(value, bool):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)  # pyright: ignore[reportArgumentType]
    except (TypeError, ValueError):
        raise ValueError(
            f"{section}.{key} must be {'an integer' if base is int else 'a number'}, got {value!r}."
        ) from None
    return value


def _optional_positive_int(section: str, name: str, value) -> None:
    _positive(section, name, value, allow_none=True, integer=True)


def check_config(config: RunConfig) -> None:
    """Raises a `ValueError` naming the first invalid field and what is allowed."""
    for (section, name), choices in CHOICES.items():
        _check_choice(section, name, getattr(getattr(config, section), name), choices)
    d, m, t = config.data, config.model, config.train
    if not isinstance(d.dataset, str) or not d.dataset:
        raise ValueError(f"data.dataset must be a name or a file path, got {d.dataset!r}.")
    _check_seed("data", "split_seed", d.split_seed)
    _optional_positive_int("data", "num_outputs", d.num_outputs)
    if isinstance(d.window, bool) or not isinstance(d.window, int) or d.window < 2:
        raise ValueError(f"data.window must be an integer >= 2, got {d.window!r}.")
    if d.folds is not None and (
        isinstance(d.folds, bool) or not isinstance(d.folds, int) or d.folds < 2
    ):
        raise ValueError(f"data.folds must be none or an integer >= 2, got {d.folds!r}.")
    folds = 1 if d.folds is None else d.folds
    if isinstance(d.fold, bool) or not isinstance(d.fold, int) or not 0 <= d.fold < folds:
        raise ValueError(
            f"data.fold must be an integer in [0, data.folds) = [0, {folds}), got {d.fold!r}"
            + ("; set data.folds for k-fold cross-validation." if d.folds is None else ".")
        )
    if not isinstance(m.clamp, bool):
        raise ValueError(f"model.clamp must be true or false, got {m.clamp!r}.")
    if not isinstance(t.count_evaluations, bool):
        raise ValueError(
            f"train.count_evaluations must be true or false, got {t.count_evaluations!r}."
        )
    _check_time_series(config)
    if isinstance(m.degree, bool) or not isinstance(m.degree, int) or m.degree < 0:
        raise ValueError(f"model.degree must be an integer >= 0, got {m.degree!r}.")
    for name in ("width", "hidden", "max_steps", "steps"):
        _positive("model", name, getattr(m, name), integer=True)
    for name in ("t1", "rtol", "atol", "field_init_std"):
        _positive("model", name, getattr(m, name))
    if m.model == "hamiltonian" and m.field != "hamiltonian":
        raise ValueError(
            "model.model 'hamiltonian' needs model.field 'hamiltonian'; set --field hamiltonian."
        )
    _positive("model", "basis_window", m.basis_window, allow_none=True)
    _positive("train", "learning_rate", t.learning_rate)
    for name in ("epochs", "batch_size", "decay_every", "eval_every"):
        _positive("train", name, getattr(t, name), integer=True)
    for name in ("iterations", "eval_every_iterations", "patience", "max_failed_batches"):
        _optional_positive_int("train", name, getattr(t, name))
    _positive("train", "decay_factor", t.decay_factor)
    _positive("train", "clip_norm", t.clip_norm, allow_none=True)
    _positive("train", "ridge", t.ridge, allow_none=True)
    if t.divergence_factor is not None and (
        not _is_number(t.divergence_factor) or not t.divergence_factor > 1
    ):
        raise ValueError(
            "train.divergence_factor must be a finite number > 1 or none, got "
            f"{t.divergence_factor!r}."
        )
    for name in ("tikhonov", "readout_tikhonov", "gram", "weight_decay"):
        _non_negative("train", name, getattr(t, name))
    _check_seed("train", "seed", t.seed)


def is_time_series(data: DataConfig) -> bool:
    """Whether `data` names a trajectory to fit (time-series training)."""
    return isinstance(data.dataset, str) and data.dataset.lower() in TIME_SERIES


def _check_time_series(config: RunConfig) -> None:
    m, t = config.model, config.train
    if not is_time_series(config.data):
        if m.field_input != "state":
            raise ValueError(
                f"model.field_input {m.field_input!r} applies to time-series data "
                f"({', '.join(TIME_SERIES)}) only; leave it 'state'."
            )
        return
    if m.model != "node" or m.field == "hamiltonian":
        raise ValueError(
            f"data.dataset {config.data.dataset!r} is a time series, fitted by a neural ODE on "
            "the state: set model.model 'node' and a field other than 'hamiltonian', got "
            f"model.model {m.model!r}, model.field {m.field!r}."
        )
    if m.basis_window is not None:
        raise ValueError(
            "model.basis_window applies to surrogates; for a time series model.t1 is the end "
            f"of the basis window: set model.t1 = {m.basis_window!r} and basis_window none."
        )
    if t.ridge is not None or t.readout_tikhonov:
        raise ValueError(
            "train.ridge and train.readout_tikhonov need a readout, which a time-series model "
            "has not; set them to none and 0."
        )


def presets() -> tuple[str, ...]:
    """Names of the bundled presets (`jaxode train --preset NAME`)."""
    return tuple(sorted(path.stem for path in PRESETS.glob("*.toml")))


def preset(name: str) -> RunConfig:
    """The `RunConfig` of a bundled preset: the defaults with the preset's settings applied.

    `"study-node"` is the neural-ODE protocol of Rosso, Ruthotto and Sargsyan (arXiv
    2507.22045): width 15, hidden 50, 3 basis functions, Dopri5 at rtol 1e-7 / atol 1e-9,
    Adam 1e-2 halved every 500 of 2000 iterations, batches of 20 drawn with replacement, L1
    loss, clipping at 1, validation every 20 iterations with patience 5, and the study's data
    protocol. `"study-spiral"` is the study's spiral task (see `DataConfig`): the field
    $f(y^3; \\theta(t))$ with 50 hidden units, Legendre degree 3 on the training window,
    RMSprop 1e-3 for 2000 iterations of 20 random windows, L1 loss.

    **Raises:** `ValueError` naming the presets for an unknown `name`.
    """
    if name not in presets():
        raise ValueError(f"unknown preset {name!r}; available: {', '.join(presets())}.")
    return RunConfig.from_toml((PRESETS / f"{name}.toml").read_text())
