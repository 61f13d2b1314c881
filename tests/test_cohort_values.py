"""Cells that differ in values, not structure, train as one cohort (issue 27): a member's seed,
learning rate, regulariser weights and initial scale are its data. Each member equals the
single run of its own configuration to rounding (float64), and a sweep over those settings
plans one compilation."""

import hashlib
import json

import jax
import numpy as np
import pytest

import jaxode
from jaxode._training import CohortLayout, RunConfig, cohort_key, cohort_layout, train, train_cohort
from jaxode._training._build import build_cohort_trainers, load_data
from jaxode._training._memory import estimate_memory, members_within_limit
from jaxode._training._minibatch_run import MinibatchRun

BASE = {
    "data": {"dataset": "elm"},
    "model": {
        "model": "resnet",
        "field": "layer",
        "width": 4,
        "steps": 2,
        "basis": "legendre",
        "degree": 2,
        "field_init": "normal",
    },
    "train": {"iterations": 6, "batch_size": 16, "eval_every_iterations": 3},
}
# Member 2 shares member 0's seed and learning rate: only its regularisers and scale differ.
MEMBERS = [
    ({"seed": 0, "learning_rate": 3e-3}, {}),
    ({"seed": 1, "learning_rate": 2e-2, "tikhonov": 1e-3}, {}),
    (
        {"seed": 0, "learning_rate": 3e-3, "gram": 1e-2, "readout_tikhonov": 1e-4},
        {"field_init_std": 0.3},
    ),
]


def _configs(schedule: str) -> list[RunConfig]:
    base = RunConfig.from_dict(BASE).replace("train", precision="float64", schedule=schedule)
    return [base.replace("train", **t).replace("model", **m) for t, m in MEMBERS]


def _leaves(model) -> list[np.ndarray]:
    params = jax.tree_util.tree_leaves(model, is_leaf=lambda x: x is None)
    return [np.asarray(a) for a in params if hasattr(a, "dtype")]


@pytest.mark.parametrize("schedule", ["cosine", "step"])
def test_each_member_of_a_cohort_of_values_equals_its_single_run(tmp_path, schedule):
    configs = _configs(schedule)
    cohort = train_cohort(configs, [tmp_path / f"member{k}" for k in range(3)], progress=False)
    assert {result.num_traces for _, result, _ in cohort} == {1}  # one compiled program
    singles = [train(c, tmp_path / f"single{k}", progress=False) for k, c in enumerate(configs)]
    for (member, m_result, m_metrics), (single, s_result, s_metrics) in zip(cohort, singles):
        for a, b in zip(_leaves(member.model), _leaves(single.model), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-13)
        assert [row["step"] for row in m_result.history] == [3, 6]
        np.testing.assert_allclose(
            [row["val_global"] for row in m_result.history],
            [row["val_global"] for row in s_result.history],
            rtol=1e-10,
        )
        assert m_metrics["test_global"] == pytest.approx(s_metrics["test_global"], rel=1e-10)
    # The values really differ between members: the same seed and rate with other
    # regularisers and scale train another model.
    first, third = (_leaves(cohort[k][0].model) for k in (0, 2))
    assert not all(np.allclose(a, b) for a, b in zip(first, third))
    # Each run directory holds its member's own configuration.
    for k, config in enumerate(configs):
        stored = jaxode.load(tmp_path / f"member{k}").config
        assert stored == config


def test_adamw_members_with_their_own_weight_decay_equal_their_single_runs(tmp_path):
    base = RunConfig.from_dict(BASE).replace("train", precision="float64", optimiser="adamw")
    configs = [
        base.replace("train", weight_decay=1e-4),
        base.replace("train", weight_decay=0.3, learning_rate=2e-2),
        base.replace("train", weight_decay=0.0, seed=1),
    ]
    [(_, trainer)] = build_cohort_trainers(configs, load_data(base))
    assert trainer.hyperparameters == {
        "learning_rate": [3e-3, 2e-2, 3e-3],
        "weight_decay": [1e-4, 0.3, 0.0],
    }
    cohort = train_cohort(configs, [tmp_path / f"member{k}" for k in range(3)], progress=False)
    for k, config in enumerate(configs):
        single, _, _ = train(config, tmp_path / f"single{k}", progress=False)
        for a, b in zip(_leaves(cohort[k][0].model), _leaves(single.model), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-13)
    # The decay acts: the strongest one shrinks the weights the most.
    norms = [sum(float(np.sum(a**2)) for a in _leaves(member.model)) for member, _, _ in cohort]
    assert norms[1] < norms[0]


def test_part_of_a_cohort_resumes_in_the_whole_cohorts_layout(tmp_path, monkeypatch):
    """Members 0 and 2 (one learning rate, one padded basis) stopped at step 3 with the whole
    cohort (three rates, bases padded to degree 3) resume without member 1: in the whole
    cohort's layout their checkpoints load, and they end as their single runs do. The pause
    queues no chunk past its evaluation (one chunk of 3 steps, not two)."""
    configs = _configs("cosine")
    configs[2] = configs[2].replace("model", basis="chebyshev", degree=3)
    dirs = [tmp_path / f"member{k}" for k in range(3)]
    dispatched = []
    dispatch = MinibatchRun._dispatch
    monkeypatch.setattr(
        MinibatchRun, "_dispatch", lambda run, state: dispatched.append(1) or dispatch(run, state)
    )
    paused = train_cohort(configs, dirs, progress=False, stop_at=3)
    assert len(dispatched) == 1
    assert [result.steps for _, result, _ in paused] == [3, 3, 3]
    assert [str(result.status) for _, result, _ in paused] == ["interrupted"] * 3
    layout = cohort_layout(configs)
    assert layout == CohortLayout(pad_to=3, member_rates=True)
    part = [configs[0], configs[2]]
    with pytest.raises(ValueError, match="does not match"):  # in the part's own layout
        train_cohort(part, [dirs[0], dirs[2]], resume=True, progress=False)
    resumed = train_cohort(part, [dirs[0], dirs[2]], resume=True, progress=False, layout=layout)
    for (member, result, _), config, k in zip(resumed, part, (0, 2)):
        assert result.steps == 6
        single, _, _ = train(config, tmp_path / f"single{k}", progress=False)
        for a, b in zip(_leaves(member.model), _leaves(single.model), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-13)


def test_the_cohort_trainer_sets_rates_and_weights_per_member():
    configs = _configs("cosine")
    [(members, trainer)] = build_cohort_trainers(configs, load_data(configs[0]))
    assert members == [0, 1, 2]
    assert trainer.hyperparameters == {"learning_rate": [3e-3, 2e-2, 3e-3]}
    weights = [[(type(r).__name__, vars(r)) for r in regs] for regs in trainer.regularisers]
    assert weights[0] == [
        ("TikhonovRegulariser", {"weights": 0.0, "readout": 0.0}),
        ("GramRegulariser", {"alpha": 0.0}),
    ]
    assert weights[2] == [
        ("TikhonovRegulariser", {"weights": 0.0, "readout": 1e-4}),
        ("GramRegulariser", {"alpha": 1e-2}),
    ]
    # Members that agree keep the plain trainer: no injected state, no zero penalties.
    same = [configs[0], configs[0].replace("train", seed=5)]
    [(_, plain)] = build_cohort_trainers(same, load_data(same[0]))
    assert plain.hyperparameters is None and plain.regularisers == ()


def test_gnvpro_trains_one_group_per_tikhonov_weight():
    base = RunConfig.from_dict(
        {
            "data": {"dataset": "cdr"},
            "model": {"model": "resnet", "field": "layer", "width": 3, "steps": 2},
            "train": {"optimiser": "gnvpro", "iterations": 2, "precision": "float64"},
        }
    )
    configs = [
        base.replace("train", tikhonov=1e-5),
        base.replace("train", tikhonov=1e-3),
        base.replace("train", tikhonov=1e-5, seed=4),
    ]
    groups = build_cohort_trainers(configs, load_data(base))
    assert [(members, trainer.tikhonov) for members, trainer in groups] == [
        ([0, 2], 1e-5),
        ([1], 1e-3),
    ]


SWEEP = """
name = "rates"
[base.data]
dataset = "elm"
[base.model]
model = "resnet"
field = "layer"
width = 4
steps = 2
[base.train]
epochs = 1
[grid]
train.learning_rate = [1e-3, 3e-3]
train.tikhonov = [0.0, 1e-4]
train.seed = [0, 1]
model.width = [4, 6]
"""


def test_a_sweep_over_values_plans_one_compilation_per_structure():
    plan = jaxode.make_plan(jaxode.SweepSpec.from_toml(SWEEP))
    assert len(plan.cells) == 16
    assert [len(cohort.cells) for cohort in plan.cohorts] == [8, 8]
    assert [cohort.config.model.width for cohort in plan.cohorts] == [4, 6]
    text = plan.describe()
    assert "16 cells in 2 cohorts (8 members each), 2 compilations" in text
    assert (
        "model.width=4; 8 members (seeds 0, 1; train.learning_rate 0.001, "
        "0.003; train.tikhonov 0.0, 0.0001), 54 steps"
    ) in text
    # A limit on members splits each cohort into near-equal parts: two sizes, two programs each.
    parts = jaxode.make_plan(jaxode.SweepSpec.from_toml(SWEEP), max_members=3)
    assert [(c.key.rsplit("-", 1)[-1], len(c.cells)) for c in parts.cohorts] == [
        ("1", 3),
        ("2", 3),
        ("3", 2),
    ] * 2
    assert [c.cells for c in parts.cohorts[:3]] == [
        plan.cohorts[0].cells[:3],
        plan.cohorts[0].cells[3:6],
        plan.cohorts[0].cells[6:],
    ]
    assert "16 cells in 6 cohorts (2-3 members each), 4 compilations" in parts.describe()
    with pytest.raises(ValueError, match="--max-members must be an integer >= 1, got 0"):
        jaxode.make_plan(jaxode.SweepSpec.from_toml(SWEEP), max_members=0)


def test_the_memory_limit_caps_a_cohort(monkeypatch):
    config = RunConfig.from_dict(BASE)
    data = load_data(config)
    one = estimate_memory([config], data).total
    two = estimate_memory([config, config], data).total
    # Room for exactly five members: the fixed part and five times the part per member.
    monkeypatch.setenv("JAXODE_MEMORY_LIMIT", str(one + 4 * (two - one)))
    assert members_within_limit([config] * 9, data) == 5
    monkeypatch.setenv("JAXODE_MEMORY_LIMIT", str(one + 4 * (two - one) - 1))
    assert members_within_limit([config] * 9, data) == 4
    monkeypatch.setenv("JAXODE_MEMORY_LIMIT", str(one - 1))
    assert members_within_limit([config], data) == 0


def test_a_cohort_key_hashes_only_settings_away_from_their_defaults():
    empty = json.dumps({"data": {}, "model": {}, "train": {}}, sort_keys=True)
    assert cohort_key(RunConfig()) == hashlib.sha256(empty.encode()).hexdigest()[:12]
    wide = json.dumps({"data": {}, "model": {"width": 7}, "train": {}}, sort_keys=True)
    config = RunConfig().replace("model", width=7)
    assert cohort_key(config) == hashlib.sha256(wide.encode()).hexdigest()[:12]
    # Values of a member leave it unchanged.
    member = config.replace("train", seed=3, learning_rate=0.1, gram=1.0)
    assert cohort_key(member.replace("model", field_init_std=0.5)) == cohort_key(config)
