"""Settings a run configuration ignores: for each, the configurations whose model, trainer,
training settings and data (what `build_model`, `build_trainer`, `build_settings` and
`load_data` make of them) do not depend on it. One table, `RULES`, read by
`ignored_settings` and `normalised`; a sweep merges the cells that differ only in such
settings. tests/test_sweep_cells.py builds both sides of every rule.

A rule lists names of the choice tables (`_choices`) explicitly: a name added to a table later
is covered by no rule until one says so, so that nothing is merged that should not be."""

import dataclasses
from collections.abc import Callable

from ._config import RunConfig, is_time_series

# The solvers of `SOLVERS` whose step-size controller adapts the steps (`dt0` None) and those
# that take `model.steps` fixed steps (`diffrax.ConstantStepSize`).
ADAPTIVE_SOLVERS = ("dopri5", "tsit5", "bosh3", "dopri8")
FIXED_STEP_SOLVERS = ("heun", "euler")
# The settings of minibatch training that GNvpro's trainer (`_gnvpro`) and run
# (`GNvproRun`: one evaluation per outer iteration, none of `Stopping` but `patience`) never
# read. `batch_size` enters only `Evaluation.every` through the epoch's length.
_GNVPRO_UNUSED = tuple(
    f"train.{name}"
    for name in (
        "learning_rate",
        "schedule",
        "decay_every",
        "decay_factor",
        "batch_size",
        "sampling",
        "clip_norm",
        "eval_every",
        "eval_every_iterations",
        "max_failed_batches",
        "divergence_factor",
    )
)


@dataclasses.dataclass(frozen=True)
class Rule:
    """Settings `fields` (`"section.name"`) that a configuration for which `applies(config)`
    holds does not use; `reason` says why, as a clause with the configuration's `data`, `model`
    and `train` sections to format in (`"model.field {model.field!r} has no hidden layer"`)."""

    fields: tuple[str, ...]
    applies: Callable[[RunConfig], bool]
    reason: str

    def reason_for(self, config: RunConfig) -> str:
        """`reason` with `config`'s values."""
        return self.reason.format(data=config.data, model=config.model, train=config.train)


def _dataset(config: RunConfig) -> str:
    return config.data.dataset.lower()


# In the order their reasons are preferred where two rules name one field.
RULES = (
    Rule(
        ("model.degree",),
        lambda c: c.model.basis == "static",
        "model.basis 'static' has one constant basis function",
    ),
    Rule(
        ("model.hidden",),
        lambda c: c.model.field in ("layer", "antisymmetric", "hamiltonian"),
        "model.field {model.field!r} has no hidden layer (only 'mlp' has)",
    ),
    Rule(
        ("model.clamp",),
        lambda c: c.model.basis == "piecewise",
        "model.basis 'piecewise' is always clamped",
    ),
    Rule(
        ("model.solver", "model.rtol", "model.atol", "model.max_steps", "model.paradigm"),
        lambda c: c.model.model in ("resnet", "hamiltonian"),
        "model.model {model.model!r} takes model.steps steps of its own scheme, without an "
        "ODE solver",
    ),
    Rule(
        ("model.steps",),
        lambda c: c.model.model == "node" and c.model.solver in ADAPTIVE_SOLVERS,
        "model.solver {model.solver!r} chooses its own steps",
    ),
    Rule(
        ("model.rtol", "model.atol"),
        lambda c: c.model.model == "node" and c.model.solver in FIXED_STEP_SOLVERS,
        "model.solver {model.solver!r} takes model.steps fixed steps, without error control",
    ),
    Rule(
        ("model.field_init_std",),
        lambda c: c.model.field_init == "default",
        "model.field_init 'default' keeps the layers' own initialisation",
    ),
    Rule(
        ("model.width", "model.opening_activation"),
        lambda c: is_time_series(c.data),
        "data.dataset {data.dataset!r} is a time series: the field acts on its state, without "
        "an opening layer",
    ),
    Rule(
        _GNVPRO_UNUSED,
        lambda c: c.train.optimiser == "gnvpro",
        "train.optimiser 'gnvpro' takes trust-region steps on the full batch, an evaluation "
        "each, without a learning rate, batches, clipping or minibatch stops",
    ),
    Rule(
        ("train.weight_decay",),
        lambda c: c.train.optimiser in ("adam", "rmsprop", "sgd", "gnvpro"),
        "train.optimiser {train.optimiser!r} has no decoupled weight decay (only 'adamw' has)",
    ),
    Rule(
        ("train.decay_every", "train.decay_factor"),
        lambda c: c.train.schedule in ("cosine", "constant"),
        "train.schedule {train.schedule!r} does not decay in steps",
    ),
    Rule(
        ("train.epochs",),
        lambda c: c.train.iterations is not None,
        "train.iterations = {train.iterations} sets the length of training",
    ),
    Rule(
        ("train.eval_every",),
        lambda c: c.train.eval_every_iterations is not None,
        "train.eval_every_iterations = {train.eval_every_iterations} sets when evaluations happen",
    ),
    Rule(
        ("data.split_seed", "data.protocol"),
        lambda c: _dataset(c) in ("elm", "spiral"),
        "data.dataset {data.dataset!r} has a fixed split and one preprocessing",
    ),
    Rule(
        ("data.num_outputs",),
        lambda c: _dataset(c) == "spiral",
        "data.dataset {data.dataset!r} has the outputs its data.window gives",
    ),
    Rule(
        ("data.window",),
        lambda c: not is_time_series(c.data),
        "data.dataset {data.dataset!r} is not a time series",
    ),
)

_DEFAULTS = RunConfig().to_dict()


def ignored_settings(config: RunConfig) -> dict[str, str]:
    """The settings `config` does not use, whatever their values: the model, trainer,
    training settings and data built from it are the same for any value of each.

    **Arguments:** `config`: a run configuration.

    **Returns:** `{"section.field": reason}`, the reason a clause that says why (e.g.
    `{"model.degree": "model.basis 'static' has one constant basis function"}`), in the
    order of `RULES`."""
    ignored: dict[str, str] = {}
    for rule in RULES:
        if rule.applies(config):
            for name in rule.fields:
                ignored.setdefault(name, rule.reason_for(config))
    return ignored


def normalised(config: RunConfig) -> RunConfig:
    """`config` with every setting it ignores (`ignored_settings`) at its default: the one
    configuration of all those that train the same run. Settings at their defaults, and every
    setting that is used, are left as they are; `config` itself is returned when nothing
    changes.

    **Arguments:** `config`: a run configuration.

    **Returns:** the normalised `RunConfig`."""
    changes: dict[str, dict] = {}
    for name in ignored_settings(config):
        section, field = name.split(".")
        default = _DEFAULTS[section][field]
        if getattr(getattr(config, section), field) != default:
            changes.setdefault(section, {})[field] = default
    if not changes:
        return config
    return dataclasses.replace(
        config,
        **{
            section: dataclasses.replace(getattr(config, section), **fields)
            for section, fields in changes.items()
        },
    )
