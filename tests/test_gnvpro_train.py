"""GNvpro selected by configuration: run directories whose files agree with the loaded model,
the budget of passes, refused settings, resumes from checkpoints, and sweeps over the
optimiser. Every run trains the tiny ResNet of tests/test_runs.py on CDR with the same
settings, so that the GNvpro step compiles once and the sweep's Adam cell reuses the programs
of those tests (through the persistent compilation cache)."""

import csv
import json

import equinox as eqx
import jax
import numpy as np
import pytest

import jaxode
import jaxode._training._gnvpro_trainer as gnvpro_trainer
from jaxode._files import load_checkpoint
from jaxode._sweeps._plan import make_plan
from jaxode._training import RunConfig, load, train
from jaxode._training._gnvpro_trainer import iteration_cost
from jaxode._training._members import MemberRecord

TINY = {
    "data": {"dataset": "cdr"},
    "model": {"model": "resnet", "field": "layer", "width": 3, "steps": 2, "degree": 1},
    "train": {"optimiser": "gnvpro", "epochs": 30, "precision": "float64"},
}


def _config(**train_changes) -> RunConfig:
    return RunConfig.from_dict(TINY).replace("train", **train_changes)


def _leaves(tree) -> list:
    return [
        np.asarray(a) for a in jax.tree_util.tree_leaves(eqx.filter(tree, eqx.is_inexact_array))
    ]


def test_a_run_directory_within_the_budget_of_its_epochs(tmp_path):
    out = tmp_path / "run"
    config = _config(count_evaluations=True)
    _, result, metrics = train(config, out, progress=False)
    assert result.status == "completed" and "passes of the budget of 60" in result.message
    names = {p.name for p in out.iterdir()}
    assert {"model.eqx", "metrics.json", "history.csv", "checkpoint.eqx", "loss.png"} <= names

    # The budget: 2 passes per epoch, never exceeded; `epoch` is passes / 2.
    with open(out / "history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    passes = [int(row["passes"]) for row in rows]
    assert passes[-1] <= 2 * config.train.epochs < passes[-1] + iteration_cost(10)
    assert [float(row["epoch"]) for row in rows] == [p / 2 for p in passes]
    assert [int(row["step"]) for row in rows] == list(range(len(rows)))

    # metrics.json against an independent recomputation from the loaded run.
    stored = json.loads((out / "metrics.json").read_text())
    data = jaxode.load_dataset("cdr")
    x, y = data.arrays("test", normalised=False)
    predicted = load(out).predict(x)
    expected = np.linalg.norm(predicted - y) / np.linalg.norm(y)
    assert stored["test_physical_global"] == pytest.approx(expected, rel=1e-10)
    # The returned model is the best validated iterate, and its readout the ridge solution.
    best = [row for row in rows if int(row["step"]) == stored["best_step"]][0]
    assert float(best["val_global"]) == min(float(row["val_global"]) for row in rows)
    assert stored["val_global"] == pytest.approx(float(best["val_global"]), rel=1e-10)
    model = load(out).model
    xt, yt = data.arrays("train")
    features = jax.vmap(model.features)(xt)
    z = np.asarray(model.dynamics.solve_batch(features).final)
    a = np.concatenate([z, np.ones((len(z), 1))], axis=1)
    ridge = len(z) * 1e-3  # the study's ridge on the per-sample misfit, bias included
    full = np.linalg.solve(a.T @ a + ridge * np.eye(a.shape[1]), a.T @ yt).T
    np.testing.assert_allclose(model.readout.weight, full[:, :-1], rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(model.readout.bias, full[:, -1], rtol=1e-8, atol=1e-10)
    # `train_loss` is MSELoss, read off GNvpro's objective.
    weight, bias = np.asarray(model.readout.weight), np.asarray(model.readout.bias)
    misfit = float(np.mean((z @ weight.T + bias - yt) ** 2))
    assert float(best["train_loss"]) == pytest.approx(misfit, rel=1e-9)
    assert stored["forward_evaluations"] == 2  # forward Euler, 2 steps


def test_settings_gnvpro_cannot_honour_are_refused_by_name(tmp_path):
    out = tmp_path / "run"
    for changes, name in [
        (dict(loss="l1"), "train.loss"),
        (dict(gram=1e-3), "train.gram"),
        (dict(readout_tikhonov=1e-3), "train.readout_tikhonov"),
        (dict(patience=3), "train.patience"),
        (dict(epochs=5), "train.epochs"),
    ]:
        with pytest.raises(ValueError, match=name):
            train(_config(**changes), out, progress=False)
        assert not out.exists()
    with pytest.raises(ValueError, match="train.loss .*; train.patience"):
        train(_config(loss="relative", patience=2), out, progress=False)


def test_an_interrupted_run_resumes_from_its_checkpoint(tmp_path, monkeypatch):
    out = tmp_path / "run"
    monkeypatch.setattr(gnvpro_trainer, "CHECKPOINT_SECONDS", 0.0)
    save = MemberRecord.save
    saved = []

    def interrupt_after_two(record, *args):
        save(record, *args)
        saved.append(record.checkpoint_step)
        if len(saved) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(MemberRecord, "save", interrupt_after_two)
    _, result, metrics = train(_config(iterations=4), out, progress=False)
    assert result.status == "interrupted" and metrics == {}
    assert result.checkpoint_step == 1 and "restarts from the checkpoint at iteration 1" in (
        result.message
    )
    assert not (out / "metrics.json").exists()
    interrupted = load(out).model  # the checkpoint's best parameters
    skeleton = eqx.partition(interrupted, eqx.is_inexact_array)[0]
    meta, (_, current) = load_checkpoint(out / "checkpoint.eqx", (skeleton, skeleton))

    starts = []
    reduced_problem = gnvpro_trainer.reduced_problem

    def recording(model, *args, **kwargs):
        starts.append(model)
        return reduced_problem(model, *args, **kwargs)

    monkeypatch.setattr(gnvpro_trainer, "reduced_problem", recording)
    monkeypatch.setattr(MemberRecord, "save", save)
    _, resumed, metrics = train(None, out, resume=True, progress=False)
    assert resumed.status == "completed" and resumed.steps == 4
    assert len(starts) == 1 and len(_leaves(starts[0])) == len(_leaves(current))
    for a, b in zip(_leaves(starts[0]), _leaves(current)):
        np.testing.assert_array_equal(a, b)
    steps = [row["step"] for row in resumed.history]
    assert steps == [0, 1, 2, 3, 4]
    assert resumed.history[:2] == result.history == meta["history"]
    passes = [row["passes"] for row in resumed.history]
    assert all(b > a for a, b in zip(passes, passes[1:]))
    assert metrics["status"] == "completed" and (out / "model.eqx").is_file()


SWEEP = """
name = "optimisers"
[base.data]
dataset = "cdr"
[base.model]
model = "resnet"
field = "layer"
width = 3
steps = 2
degree = 1
[base.train]
iterations = 12
eval_every_iterations = 4
batch_size = 100
precision = "float64"
[grid]
"train.optimiser" = ["adam", "gnvpro"]
"""


def test_a_sweep_over_the_optimiser(tmp_path):
    path = tmp_path / "spec.toml"
    path.write_text(SWEEP)
    plan = make_plan(jaxode.SweepSpec.from_toml(SWEEP))
    assert len(plan.cohorts) == 2 and [c.steps for c in plan.cohorts] == [12, 12]
    rows = jaxode.sweep(path, tmp_path / "out", progress=False)
    assert [row["train.optimiser"] for row in rows] == ["adam", "gnvpro"]
    assert [row["status"] for row in rows] == ["completed", "completed"]
    assert all(np.isfinite(float(row["test_global"])) for row in rows)
