"""A sweep's seeds as ensembles (issue 28): `jaxode sweep report --ensembles` groups the cells
that differ only in their seed, and each group's ensemble is its cells' mean, calibrated on
validation."""

import csv

import numpy as np
import pytest

import jaxode

SPEC = """
name = "ensembles"
[base.data]
dataset = "elm"
[base.model]
model = "resnet"
field = "layer"
width = 3
steps = 2
[base.train]
iterations = 20
eval_every_iterations = 10
batch_size = 32
[grid]
train.learning_rate = [1e-3, 1e-2]
train.seed = [0, 1, 2]
"""


def test_each_configurations_seeds_are_scored_as_one_ensemble(tmp_path):
    out = tmp_path / "sweep"
    jaxode.sweep(jaxode.SweepSpec.from_toml(SPEC), out, progress=False)
    written = jaxode.sweep_report(out, rows=("learning_rate",), cols=("seed",), ensembles=True)
    assert out / "report" / "ensembles.md" in written["files"]
    with open(out / "report" / "ensembles.csv", newline="") as f:
        groups = list(csv.DictReader(f))
    with open(out / "results.csv", newline="") as f:
        cells = list(csv.DictReader(f))
    assert sorted(float(g["train.learning_rate"]) for g in groups) == [1e-3, 1e-2]
    x, y = jaxode.load_dataset("elm").arrays("test", normalised=False)
    for group in groups:
        rate = float(group["train.learning_rate"])
        mine = [c for c in cells if float(c["train.learning_rate"]) == rate]
        assert int(group["members"]) == 3 == len(mine)
        mean = np.mean([jaxode.load(out / c["run_dir"]).predict(x) for c in mine], axis=0)
        error = np.linalg.norm(mean - y) / np.linalg.norm(y)
        assert float(group["test_physical_global"]) == pytest.approx(error, rel=1e-9)
        alone = [float(c["test_physical_global"]) for c in mine]
        assert float(group["test_members_physical_global_mean"]) == pytest.approx(np.mean(alone))
