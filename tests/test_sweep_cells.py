"""Sweep cells that differ only in settings their configuration ignores are one cell: the
static x degree example, a ResNet x solver grid, true duplicates still refused, keys of the
other cells unchanged, and every rule of `ignored_settings` checked against the objects
jaxode builds (model, trainer, training settings, data) on both sides: the setting changes
nothing where the rule applies and changes something where it does not."""

import dataclasses
import hashlib
import json

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxode
from jaxode._cli import main
from jaxode._sweeps._spec import config_hash
from jaxode._training import (
    GNvproTrainer,
    MinibatchTrainer,
    RunConfig,
    build_model,
    build_settings,
    build_trainer,
    ignored_settings,
    load_data,
    normalised,
)
from jaxode._training._choices import SOLVERS
from jaxode._training._ignored import ADAPTIVE_SOLVERS, FIXED_STEP_SOLVERS, RULES

BASES = """
name = "bases"
[base.model]
model = "resnet"
field = "layer"
width = 3
steps = 2
[base.train]
iterations = 4
[grid]
model.basis = ["static", "legendre"]
model.degree = [1, 2]
"""


def test_static_times_degree_is_three_cells_and_the_dry_run_says_why(tmp_path, capsys):
    spec = jaxode.SweepSpec.from_toml(BASES)
    cells = spec.cells()
    assert [c.values for c in cells] == [
        {"model.basis": "static", "model.degree": 1},  # the first cell's values are kept
        {"model.basis": "legendre", "model.degree": 1},
        {"model.basis": "legendre", "model.degree": 2},
    ]
    # The static cell trains the configuration its first combination wrote.
    assert [c.config.model.degree for c in cells] == [1, 1, 2]
    assert all(c.key == config_hash(c.config) for c in cells)
    plan = jaxode.make_plan(spec)
    [merge] = plan.merged
    assert merge.values == {"model.basis": "static", "model.degree": 2}
    assert merge.into is plan.cells[0]
    assert list(merge.reasons) == ["model.degree"]
    path = tmp_path / "bases.toml"
    path.write_text(BASES)
    assert main(["sweep", str(path), "--dry-run", "--no-estimate", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "sweep 'bases': 3 cells in 1 cohort (3 members each), 1 compilation" in out
    assert (
        "2 cells merged into 1: model.degree is ignored (model.basis 'static' has one constant "
        "basis function); model.basis='static', model.degree=2 trains as model.basis='static', "
        "model.degree=1\n"
    ) in out


def test_a_resnet_times_solver_grid_merges_and_a_neural_ode_keeps_its_solvers():
    spec = jaxode.SweepSpec.from_toml(
        """
        [base.model]
        field = "layer"
        width = 3
        [grid]
        train.seed = [0, 1]
        model.model = ["resnet", "node"]
        model.solver = ["dopri5", "euler", "tsit5"]
        model.rtol = [1e-3, 1e-6]
        """
    )
    plan = jaxode.make_plan(spec)
    labels = [
        (c.config.model.model, c.config.model.solver, c.config.model.rtol) for c in plan.cells
    ]
    # ResNet: one cell per seed. Neural ODE: both tolerances of each adaptive solver, one cell
    # for Euler (fixed steps: no tolerances).
    assert sorted(set(labels)) == [
        ("node", "dopri5", 1e-6),
        ("node", "dopri5", 1e-3),
        ("node", "euler", 1e-3),
        ("node", "tsit5", 1e-6),
        ("node", "tsit5", 1e-3),
        ("resnet", "dopri5", 1e-3),
    ]
    assert len(plan.cells) == 2 * 6 and len(plan.cohorts) == 6
    assert len(plan.merged) == 2 * 12 - len(plan.cells)
    text = plan.describe()
    assert (
        "12 cells merged into 2: model.solver, model.rtol are ignored (model.model 'resnet'" in text
    )
    assert "4 cells merged into 2: model.rtol is ignored (model.solver 'euler' takes" in text


@pytest.mark.parametrize(
    "grid, message",
    [
        (
            "model.degree = [2, 2]",
            "sweep cells 0 and 1 (model.degree=2) have the same configuration",
        ),
        (
            "model.basis = ['static']\nmodel.degree = [1, 1]",
            "sweep cells 0 and 1 (model.basis='static', model.degree=1) have the same",
        ),
        # A repeat of a combination that was merged is a repeat too.
        (
            "model.basis = ['static']\nmodel.degree = [1, 2, 2]",
            "(model.basis='static', model.degree=2) have the same configuration",
        ),
        # 1e-3 is the default: the second value is the first as written.
        ("model.model = ['resnet']\nmodel.rtol = [1e-3, 0.001]", "have the same configuration"),
    ],
)
def test_repeated_values_are_still_refused(grid, message):
    with pytest.raises(ValueError, match="same configuration") as error:
        jaxode.SweepSpec.from_toml(f"[grid]\n{grid}\n").cells()
    assert message in str(error.value)


def _written_hash(config: RunConfig) -> str:
    """A cell's key before settings a configuration ignores were normalised."""
    defaults = RunConfig().to_dict()
    changed = {
        section: {k: v for k, v in values.items() if defaults[section][k] != v}
        for section, values in config.to_dict().items()
    }
    return hashlib.sha256(json.dumps(changed, sort_keys=True).encode()).hexdigest()[:16]


def test_keys_change_only_for_cells_that_set_what_they_ignore():
    written = RunConfig.from_dict(
        {"model": {"model": "resnet", "solver": "euler", "degree": 2}, "train": {"seed": 3}}
    )
    plain = RunConfig.from_dict({"model": {"model": "resnet", "degree": 2}, "train": {"seed": 3}})
    assert normalised(written) == plain and normalised(plain) is plain
    [cell] = jaxode.SweepSpec(base=written.to_dict()).cells()
    assert cell.config == written  # trained as written
    assert cell.key == config_hash(written) == _written_hash(plain) != _written_hash(written)
    # Settings at their defaults, or used: the key as before.
    for base in (plain, RunConfig(), RunConfig.from_dict({"model": {"solver": "euler"}})):
        [cell] = jaxode.SweepSpec(base=base.to_dict()).cells()
        assert cell.config == base and cell.key == config_hash(base) == _written_hash(base)


def test_the_cells_of_a_cohort_share_the_configuration_written_first():
    spec = jaxode.SweepSpec.from_toml(
        """
        [base.model]
        model = "resnet"
        basis = "static"
        [[blocks]]
        model.degree = [1]
        train.seed = [0]
        [[blocks]]
        model.degree = [2]
        train.seed = [1, 0]
        """
    )
    plan = jaxode.make_plan(spec)
    [cohort] = plan.cohorts
    assert [c.values for c in cohort.cells] == [
        {"model.degree": 1, "train.seed": 0},
        {"model.degree": 2, "train.seed": 1},
    ]
    assert [c.config for c in cohort.cells] == [
        plan.cells[0].config.replace("train", seed=seed) for seed in (0, 1)
    ]
    [merge] = plan.merged
    assert merge.values == {"model.degree": 2, "train.seed": 0} and merge.into is plan.cells[0]


def test_solvers_are_adaptive_or_take_fixed_steps_as_the_solver_table_builds_them():
    model = RunConfig().model
    for name, build in SOLVERS.items():
        _, controller, dt0 = build(model)
        assert (name in ADAPTIVE_SOLVERS) == (dt0 is None) != (name in FIXED_STEP_SOLVERS)
        assert (name in FIXED_STEP_SOLVERS) == (type(controller).__name__ == "ConstantStepSize")


# A small ResNet and a small neural ODE, as the base of the examples below.
RESNET = {"model": {"model": "resnet", "field": "layer", "width": 3, "steps": 2, "degree": 1}}
NODE = {"model": {"field": "layer", "width": 3, "degree": 1, "max_steps": 64}}
GNVPRO = {**RESNET, "train": {"optimiser": "gnvpro", "iterations": 2}}
SPIRAL = {"data": {"dataset": "spiral"}, "model": {"hidden": 4, "degree": 1}}


@dataclasses.dataclass(frozen=True)
class Example:
    """`field` set to `value`: nothing changes in `ignoring` (a configuration where a rule says
    it is ignored), something does in `using` (`None`: no such configuration is built here)."""

    field: str
    value: object
    ignoring: dict
    using: dict | None


def _with(base: dict, **sections) -> dict:
    return {
        name: {**base.get(name, {}), **sections.get(name, {})}
        for name in ("data", "model", "train")
    }


EXAMPLES = [
    Example("model.degree", 4, _with(RESNET, model={"basis": "static"}), RESNET),
    Example("model.hidden", 5, RESNET, _with(RESNET, model={"field": "mlp"})),
    Example("model.hidden", 5, _with(RESNET, model={"field": "antisymmetric"}), None),
    Example(
        "model.hidden",
        5,
        _with(RESNET, model={"model": "hamiltonian", "field": "hamiltonian"}),
        None,
    ),
    Example("model.clamp", True, _with(RESNET, model={"basis": "piecewise"}), RESNET),
    *(
        Example(f"model.{name}", value, RESNET, NODE)
        for name, value in [
            ("solver", "tsit5"),
            ("rtol", 1e-6),
            ("atol", 1e-9),
            ("max_steps", 32),
            ("paradigm", "optimize"),
        ]
    ),
    Example("model.steps", 5, NODE, _with(NODE, model={"solver": "euler"})),
    Example("model.rtol", 1e-6, _with(NODE, model={"solver": "heun"}), NODE),
    Example("model.atol", 1e-9, _with(NODE, model={"solver": "euler"}), NODE),
    # A time series' model is a neural ODE too.
    Example("model.steps", 5, SPIRAL, _with(SPIRAL, model={"solver": "euler"})),
    Example("model.rtol", 1e-6, _with(SPIRAL, model={"solver": "euler"}), SPIRAL),
    Example("model.field_init_std", 0.5, RESNET, _with(RESNET, model={"field_init": "normal"})),
    Example("model.width", 5, SPIRAL, RESNET),
    Example("model.opening_activation", "none", SPIRAL, RESNET),
    *(
        Example(f"train.{name}", value, GNVPRO, _with(RESNET, train=using))
        for name, value, using in [
            ("learning_rate", 1e-2, {}),
            ("schedule", "constant", {}),
            ("decay_every", 3, {"schedule": "step"}),
            ("decay_factor", 0.1, {"schedule": "step", "decay_every": 3}),
            ("batch_size", 16, {}),
            ("sampling", "replacement", {}),
            ("clip_norm", None, {}),
            ("eval_every", 3, {}),
            ("eval_every_iterations", 7, {}),
            ("max_failed_batches", 3, {}),
            ("divergence_factor", None, {}),
        ]
    ),
    Example("train.weight_decay", 0.3, RESNET, _with(RESNET, train={"optimiser": "adamw"})),
    Example("train.weight_decay", 0.3, GNVPRO, None),
    Example("train.decay_every", 3, RESNET, _with(RESNET, train={"schedule": "step"})),
    Example(
        "train.decay_factor",
        0.1,
        _with(RESNET, train={"schedule": "constant", "decay_every": 3}),
        _with(RESNET, train={"schedule": "step", "decay_every": 3}),
    ),
    Example("train.epochs", 5, _with(RESNET, train={"iterations": 20}), RESNET),
    Example("train.eval_every", 3, _with(RESNET, train={"eval_every_iterations": 20}), RESNET),
    Example("data.split_seed", 7, RESNET, _with(RESNET, data={"dataset": "cdr"})),
    Example("data.protocol", "study", RESNET, _with(RESNET, data={"dataset": "cdr"})),
    Example("data.split_seed", 7, SPIRAL, None),
    Example("data.protocol", "study", SPIRAL, None),
    # Bundled data sets check num_outputs (a wrong one is an error): only files read it.
    Example("data.num_outputs", 3, SPIRAL, None),
    Example("data.window", 5, RESNET, SPIRAL),
]


_DEFAULT = object()


def _config(values: dict, field: str, value=_DEFAULT) -> RunConfig:
    """`RunConfig.from_dict(values)` with `field` set to `value` (default: its default)."""
    config = RunConfig.from_dict(values)
    section, name = field.split(".")
    if value is _DEFAULT:
        value = getattr(getattr(RunConfig(), section), name)
    return config.replace(section, **{name: value})


def test_every_rule_has_an_example():
    covered = {
        (k, e.field)
        for e in EXAMPLES
        for k, rule in enumerate(RULES)
        if e.field in rule.fields and rule.applies(RunConfig.from_dict(e.ignoring))
    }
    assert covered == {(k, field) for k, rule in enumerate(RULES) for field in rule.fields}


def _same_data(a, b) -> bool:
    """Whether two data sets give training the same: name, sizes, spacing, normalisation and
    every split's arrays, normalised and physical."""
    if type(a) is not type(b) or a.name != b.name or a.sizes() != b.sizes():
        return False
    if getattr(a, "dt", None) != getattr(b, "dt", None):
        return False
    norms = lambda d: json.dumps(
        [d.x_norm.to_dict(), d.y_norm.to_dict()], default=lambda v: np.asarray(v).tolist()
    )
    if norms(a) != norms(b):
        return False
    for split in ("train", "val", "test"):
        for normalise in (True, False):
            x, y = a.arrays(split, normalised=normalise), b.arrays(split, normalised=normalise)
            if not all(np.array_equal(p, q) for p, q in zip(x, y)):
                return False
    return True


def _optimiser_updates(optimiser, steps: int = 12):
    """What an Optax optimiser does: its updates of a fixed vector over `steps` fixed
    gradients (its functions are new closures at every build)."""
    params = jnp.linspace(-1.0, 1.0, 5)
    state = optimiser.init(params)
    updates = []
    for k in range(steps):
        grads = jnp.sin(params * (k + 1)) * (k + 1)
        step, state = optimiser.update(grads, state, params)
        updates.append(step)
    return jnp.stack(updates)


def _comparable(trainer):
    if isinstance(trainer, MinibatchTrainer):
        return eqx.tree_at(lambda t: t.optimiser, trainer, _optimiser_updates(trainer.optimiser))
    return trainer


def _built(config: RunConfig) -> dict:
    data = load_data(config)
    return dict(
        data=data,
        model=build_model(config, data.in_size, data.out_size, key=jax.random.PRNGKey(0)),
        trainer=build_trainer(config, data),
        settings=build_settings(config, data),
    )


def _differences(a: dict, b: dict) -> set:
    """The parts of two `_built` results that differ (by value; an optimiser by what it does)."""
    differ = set()
    if not _same_data(a["data"], b["data"]):
        differ.add("data")
    for part in ("model", "settings"):
        if not bool(eqx.tree_equal(a[part], b[part])):
            differ.add(part)
    if not bool(eqx.tree_equal(_comparable(a["trainer"]), _comparable(b["trainer"]))):
        differ.add("trainer")
    return differ


_RUNS: dict = {}


def _gnvpro_run(config: RunConfig):
    """The history (without times) and parameters of a short GNvpro training of `config`."""
    key = config_hash(config)
    if key not in _RUNS:
        built = _built(config)
        data = built["data"]
        result = jaxode.fit(
            built["model"],
            data.arrays("train"),
            built["trainer"],
            val=data.arrays("val"),
            key=jax.random.PRNGKey(1),
            **built["settings"],
        )
        history = [{k: v for k, v in row.items() if k != "wall_time"} for row in result.history]
        params = eqx.filter(result.model, eqx.is_inexact_array)
        _RUNS[key] = (str(result.status), result.steps, history, params)
    return _RUNS[key]


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: f"{e.field}={e.value!r}")
def test_an_ignored_setting_changes_nothing_and_a_used_one_does(example):
    field, value = example.field, example.value
    plain = _config(example.ignoring, field)
    changed = _config(example.ignoring, field, value)
    assert field in ignored_settings(changed) and field in ignored_settings(plain)
    assert normalised(changed) == normalised(plain)
    built = _built(plain)
    differ = _differences(built, _built(changed))
    if differ == {"settings"} and isinstance(built["trainer"], GNvproTrainer):
        # GNvpro reads none of the settings but `patience`: trained, the two are the same.
        a, b = _gnvpro_run(plain), _gnvpro_run(changed)
        assert a[:3] == b[:3] and bool(eqx.tree_equal(a[3], b[3]))
    else:
        assert differ == set()
    if example.using is not None:
        plain, changed = _config(example.using, field), _config(example.using, field, value)
        assert field not in ignored_settings(plain)
        assert _differences(_built(plain), _built(changed))


def test_normalising_is_idempotent_and_keeps_what_is_used():
    for example in EXAMPLES:
        config = _config(example.ignoring, example.field, example.value)
        once = normalised(config)
        assert normalised(once) is once
        assert ignored_settings(once) == ignored_settings(config)
        kept = set(ignored_settings(config))
        for section, values in once.to_dict().items():
            for name, value in values.items():
                if f"{section}.{name}" not in kept:
                    assert getattr(getattr(config, section), name) == value
