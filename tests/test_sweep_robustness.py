"""Sweeps under awkward inputs: a spec name that would leave the sweeps folder, a dry run whose
timing diverges, plans of thousands of cells (the same cells and cohorts as a plain expansion,
and a progress bar), and Ray addresses that do not answer or a local cluster open to the
network."""

import hashlib
import itertools
import json
import socket
import sys
import time
import types

import pytest

import jaxode
from jaxode._cli import main
from jaxode._sweeps._plan import estimate
from jaxode._training import RunConfig, build_settings, build_trainer, cohort_key, load_data

# A small ResNet on the ELM data: it compiles in seconds.
SMALL = """
[base.model]
model = "resnet"
field = "layer"
width = 4
steps = 2
basis = "static"
degree = 0
[base.train]
batch_size = 32
precision = "float64"
"""
# A learning rate that blows the first step up, and a divergence test that stops at once.
DIVERGING = dict(learning_rate=1e4, clip_norm=None, divergence_factor=1.001)


@pytest.mark.parametrize("name", ["../../x", "/tmp/x", "a/b", "a\\b", ".hidden", "..", ""])
def test_a_sweep_name_must_be_one_folder_name(name):
    for make in (
        lambda: jaxode.SweepSpec.from_toml(f"name = {json.dumps(name)}\n"),
        lambda: jaxode.SweepSpec(name=name),
    ):
        with pytest.raises(ValueError) as error:
            make()
        message = str(error.value)
        assert f"name {name!r} is not one folder name" in message
        assert "letters, digits, '.', '_' and '-'" in message
        assert "not starting with a dot" in message


def test_folder_names_are_accepted():
    assert jaxode.SweepSpec.from_toml('name = "elm-bases_v1.2"\n').name == "elm-bases_v1.2"
    assert jaxode.SweepSpec(name="x").name == "x"


def _spec_text(train: dict, extra: str = "") -> str:
    lines = [SMALL.strip(), *(f"{k} = {json.dumps(v)}" for k, v in train.items())]
    return "\n".join(lines).replace("null", '"none"') + "\n" + extra


def test_a_dry_run_whose_timing_diverges_prints_the_plan_and_says_why_no_estimate(tmp_path, capsys):
    train = dict(DIVERGING, iterations=3, eval_every_iterations=1)
    spec = tmp_path / "diverges.toml"
    spec.write_text(_spec_text(train, "[grid]\ntrain.seed = [0, 1]\n"))
    assert main(["sweep", str(spec), "--dry-run", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "2 cells in 1 cohort (2 members each)" in out
    assert "no cost estimate: none of the 1 kinds of cohort timed could be timed" in out
    assert "its timing run diverged after" in out


def test_the_estimate_falls_back_to_the_kinds_that_could_be_timed():
    train = dict(DIVERGING, iterations=3, eval_every_iterations=1)
    spec = jaxode.SweepSpec.from_toml(
        _spec_text(
            train,
            "[[blocks]]\nmodel.width = [4]\n"
            "[[blocks]]\nmodel.width = [5]\ntrain.learning_rate = [1e-3]\n"
            "train.divergence_factor = [100.0]\n",
        )
    )
    plan = jaxode.make_plan(spec)
    diverging, healthy = plan.cohorts
    cost = estimate(plan)
    assert (cost["kinds"], cost["kinds_timed"]) == (2, 1)
    assert list(cost["not_timed"]) == [diverging.key]
    assert "diverged" in cost["not_timed"][diverging.key]
    # The diverging kind is given the timed kind's figures.
    assert 0 < cost["fixed_seconds"] < cost["seconds"] < float("inf")
    assert healthy.key not in cost["not_timed"]


# A spec of 2400 combinations over blocks, grid, zip and an exclusion, with values that
# coerce to one another (1 and 2.0 for a float field) and seeds varying fastest and slowest.
LARGE = """
[base.model]
model = "resnet"
field = "layer"
width = 4
steps = 2
[grid]
train.seed = [0, 1, 2, 3, 4]
model.degree = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
train.batch_size = [16, 32, 64]
[[blocks]]
model.basis = ["legendre", "chebyshev"]
[[blocks]]
model.basis = ["monomial"]
model.t1 = [1, 2.0]
[[zip]]
train.learning_rate = [1e-3, 2e-3, 3e-3, 4e-3]
train.epochs = [1, 2, 3, 4]
[[exclude]]
model.basis = "chebyshev"
model.degree = [3, 4]
"""


# Seeds an axis of one block and the base's in another of the same structure.
MIXED = """
[base.train]
seed = 7
[[blocks]]
train.seed = [0, 1]
model.degree = [1, 2]
[[blocks]]
model.degree = [1, 2]
[[blocks]]
model.degree = [2]
train.seed = [3]
"""


def _reference_hash(config: RunConfig) -> str:
    """`config_hash` as first written: through `to_dict` and a fresh default configuration."""
    defaults = RunConfig().to_dict()
    changed = {
        section: {k: v for k, v in values.items() if defaults[section][k] != v}
        for section, values in config.to_dict().items()
    }
    return hashlib.sha256(json.dumps(changed, sort_keys=True).encode()).hexdigest()[:16]


def _reference_cells(spec) -> list:
    """`(key, cohort, values, config)` of every cell, expanded the plain way: every
    combination merged into the base and built by `RunConfig.from_dict`."""
    base = jaxode.SweepSpec(base=spec.base).cells()[0].config.to_dict()
    zipped = [[dict(zip(z, row)) for row in zip(*z.values())] for z in spec.zip]
    cells = []
    for block in spec.blocks or ({},):
        axes = {**block, **spec.grid}
        singles = [[{name: v} for v in values] for name, values in axes.items()]
        for parts in itertools.product(*singles, *zipped):
            values = {name: value for part in parts for name, value in part.items()}
            merged = {section: dict(fields) for section, fields in base.items()}
            for name, value in values.items():
                section, field = name.split(".")
                merged[section][field] = value
            if any(
                all(merged[n.split(".")[0]][n.split(".")[1]] in allowed for n, allowed in c.items())
                for c in spec.exclude
            ):
                continue
            config = RunConfig.from_dict(merged)
            cells.append((_reference_hash(config), cohort_key(config), values, config))
    return cells


@pytest.mark.parametrize("text, size, cells", [(LARGE, 2400, 2400 - 5 * 2 * 3 * 4), (MIXED, 7, 7)])
def test_a_plan_has_the_cells_and_cohorts_of_a_plain_expansion(capsys, text, size, cells):
    spec = jaxode.SweepSpec.from_toml(text)
    reference = _reference_cells(spec)
    assert spec.size() == size and len(reference) == cells
    plan = jaxode.make_plan(spec)
    assert capsys.readouterr().err == ""  # no progress unless asked
    assert [(c.key, c.values, c.config) for c in plan.cells] == [
        (key, values, config) for key, _, values, config in reference
    ]
    groups = {}
    for key, cohort, _, _ in reference:
        groups.setdefault(cohort, []).append(key)
    assert [(c.key, [m.key for m in c.cells]) for c in plan.cohorts] == list(groups.items())
    data = load_data(plan.cells[0].config)
    for cohort in plan.cohorts[::7]:
        last = cohort.cells[-1].config  # the work of any member is the cohort's
        trainer = build_trainer(last, data)
        every = build_settings(last, data)["evaluation"]
        size = data.sizes()["train"]
        assert (cohort.steps, cohort.interval) == (
            trainer.planned(size),
            trainer.interval(size, every),
        )


def test_a_large_plan_shows_progress_when_asked(capsys):
    spec = jaxode.SweepSpec.from_toml(LARGE)
    jaxode.make_plan(spec, progress=True)
    err = capsys.readouterr().err
    assert "planning" in err and "2400/2400" in err
    small = jaxode.SweepSpec.from_toml("[grid]\ntrain.seed = [0, 1]\n")
    jaxode.make_plan(small, progress=True)
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    "text, message",
    [
        # Repeated seeds (coerced to one value) and repeated values of other fields.
        ("[grid]\ntrain.seed = [1, 1.0]\n", "sweep cells 0 and 1"),
        ("[grid]\nmodel.degree = [1, 2]\ntrain.seed = [0, 3, 3.0]\n", "sweep cells 1 and 2"),
        # An invalid seed after valid cells of the same structure.
        (
            "[grid]\nmodel.degree = [1, 2]\ntrain.seed = [0, -0.5]\n",
            "sweep cell 1 (model.degree=1, train.seed=-0.5): train.seed must be an integer",
        ),
        # An impossible combination of values each seen in a valid cell before.
        (
            "[[blocks]]\nmodel.field = ['hamiltonian']\nmodel.model = ['hamiltonian']\n"
            "[[blocks]]\nmodel.field = ['mlp']\nmodel.model = ['node']\n"
            "[[blocks]]\nmodel.field = ['mlp']\nmodel.model = ['hamiltonian']\n",
            "sweep cell 2 (model.field='mlp', model.model='hamiltonian'): model.model "
            "'hamiltonian' needs model.field 'hamiltonian'",
        ),
    ],
)
def test_cells_built_from_known_values_are_still_checked(text, message):
    with pytest.raises(ValueError) as error:
        jaxode.SweepSpec.from_toml(text).cells()
    assert message in str(error.value)


class _FakeRay(types.ModuleType):
    """Enough of `ray` for `RayExecutor.map` over no cohorts: records `init`'s arguments and
    the single-machine setting in force when it was called; starts nothing."""

    def __init__(self):
        super().__init__("ray")
        self.calls = []
        self.exceptions = types.SimpleNamespace(RayError=RuntimeError)
        self._private = types.SimpleNamespace(
            ray_constants=types.SimpleNamespace(ENABLE_RAY_CLUSTER=True)
        )

    def is_initialized(self):
        return False

    def init(self, **kwargs):
        self.calls.append((kwargs, self._private.ray_constants.ENABLE_RAY_CLUSTER))

    def cluster_resources(self):
        return {}

    def remote(self, **_):
        return lambda function: function


@pytest.fixture
def fake_ray(monkeypatch):
    ray = _FakeRay()
    monkeypatch.setitem(sys.modules, "ray", ray)
    monkeypatch.setitem(sys.modules, "ray.exceptions", ray.exceptions)
    return ray


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("scheme, where", [("", "argument"), ("ray://", "argument"), ("", "env")])
def test_an_unreachable_ray_address_fails_at_once_and_says_what_to_check(
    fake_ray, tmp_path, monkeypatch, scheme, where
):
    address = f"{scheme}127.0.0.1:{_closed_port()}"
    if where == "env":
        monkeypatch.setenv("RAY_ADDRESS", address)
        executor = jaxode.RayExecutor(connect_timeout=2.0)
    else:
        executor = jaxode.RayExecutor(address=address, connect_timeout=2.0)
    tic = time.perf_counter()
    with pytest.raises(ConnectionError) as error:
        list(executor.map([], tmp_path))
    assert time.perf_counter() - tic < 5
    message = str(error.value)
    assert f"address {address!r}" in message and "connect_timeout=2 s" in message
    assert "ray start --head" in message and "firewall" in message
    assert fake_ray.calls == []


def test_a_local_ray_cluster_listens_on_loopback_unless_asked(fake_ray, tmp_path, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    list(jaxode.RayExecutor(num_cpus=2).map([], tmp_path))
    [(kwargs, cluster_mode)] = fake_ray.calls
    assert kwargs["_node_ip_address"] == "127.0.0.1" and kwargs["include_dashboard"] is False
    assert kwargs["num_cpus"] == 2 and kwargs["address"] == "local"
    assert cluster_mode is False  # Ray keeps a loopback node address only so
    assert fake_ray._private.ray_constants.ENABLE_RAY_CLUSTER is True  # restored
    fake_ray.calls.clear()
    list(jaxode.RayExecutor(bind_all=True).map([], tmp_path))
    list(jaxode.RayExecutor(address="auto").map([], tmp_path))
    assert [kwargs for kwargs, _ in fake_ray.calls] == [
        dict(address="local", num_cpus=None, log_to_driver=False),
        dict(address="auto", num_cpus=None, log_to_driver=False),
    ]
