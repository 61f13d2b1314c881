"""Run directories: nothing left half-made, nothing claimed that is not on disk, every file
loadable, configurations and presets that mean what they say."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxode
import jaxode._training._run as run_module
from jaxode._cli import main
from jaxode._training import RunConfig, load, train
from jaxode._training._choices import OPTIMISERS

TINY = {
    "data": {"dataset": "cdr"},
    "model": {"model": "resnet", "field": "layer", "width": 3, "steps": 2, "degree": 1},
    "train": {"epochs": 3, "batch_size": 100, "precision": "float64"},
}


def _config(**train_changes) -> RunConfig:
    return RunConfig.from_dict(TINY).replace("train", **train_changes)


def _leaves(model):
    return [
        np.asarray(a) for a in jax.tree_util.tree_leaves(eqx.filter(model, eqx.is_inexact_array))
    ]


def _strict_json(path: pathlib.Path) -> dict:
    def refuse(name):
        raise AssertionError(f"{path.name} holds the non-JSON constant {name}")

    return json.loads(path.read_text(), parse_constant=refuse)


def test_a_failed_start_leaves_nothing_behind(tmp_path, monkeypatch):
    out = tmp_path / "run"
    with pytest.raises(ValueError, match=r"train.batch_size=500 exceeds the 400 training samples"):
        train(_config(batch_size=500), out, progress=False)
    assert not out.exists()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        train(RunConfig.from_dict({**TINY, "data": {"dataset": str(tmp_path / "no.npz")}}), out)
    assert not out.exists()

    def broken_fit(*args, **kwargs):
        raise RuntimeError("the machine fell over")

    monkeypatch.setattr(run_module, "fit", broken_fit)
    out.mkdir()
    with pytest.raises(RuntimeError, match="fell over"):
        train(_config(), out, progress=False)
    assert out.is_dir() and not any(out.iterdir())  # the user's empty folder stays, empty
    monkeypatch.undo()
    _, result, metrics = train(_config(), out, progress=False)  # the same command works now
    assert result.status == "completed" and metrics["steps"] == 12


def test_out_must_be_new_empty_or_a_run(tmp_path):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="holds files but no run; choose an empty or new"):
        train(_config(), busy, progress=False)
    assert [p.name for p in busy.iterdir()] == ["notes.txt"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError, match="is a file"):
        train(_config(), tmp_path / "file", progress=False)


def test_resume_with_another_configuration_raises(tmp_path, monkeypatch):
    original_fit = run_module.fit

    def interrupted_fit(*args, **kwargs):
        def stop(row):
            raise KeyboardInterrupt

        return original_fit(*args, **kwargs, callback=stop)

    monkeypatch.setattr(run_module, "fit", interrupted_fit)
    trained, result, metrics = train(_config(), tmp_path / "r", progress=False)
    assert result.status == "interrupted" and metrics == {}
    assert "a resume restarts from the checkpoint at step 4" in result.message
    monkeypatch.undo()
    with pytest.raises(ValueError, match=r"train.learning_rate: 0.003 stored, 0.1 given"):
        train(_config(learning_rate=0.1), tmp_path / "r", resume=True, progress=False)
    # the interrupted run loads: the best parameters of its last checkpoint
    loaded = load(tmp_path / "r")
    for a, b in zip(_leaves(trained.model), _leaves(loaded.model)):
        np.testing.assert_array_equal(a, b)
    history = (tmp_path / "r" / "history.csv").read_text().splitlines()
    data = jaxode.load_dataset("cdr")
    xv, yv = data.arrays("val", normalised=False)
    p = loaded.predict(xv)
    val = jaxode.global_relative_error(data.y_norm.apply(p), data.y_norm.apply(yv))
    columns = history[0].split(",")
    assert val == pytest.approx(float(history[1].split(",")[columns.index("val_global")]), rel=1e-9)
    _, result, _ = train(_config(), tmp_path / "r", resume=True, progress=False)
    assert result.status == "completed" and result.steps == 12


def test_an_early_divergence_writes_no_model_and_strict_metrics(tmp_path, monkeypatch, capsys):
    explode = optax.scale_by_schedule(lambda step: jnp.where(step < 1, -1e-2, -jnp.inf))
    monkeypatch.setitem(OPTIMISERS, "adam", lambda schedule: explode)
    out = tmp_path / "run"
    code = main(["train", *_flags(TINY), "--out", str(out), "--no-progress"])
    printed = capsys.readouterr().out
    assert code == 1
    assert "NaN/inf at step 2" in printed and "no checkpoint had been written yet" in printed
    assert "already clipped at norm 1" in printed and "enable gradient clipping" not in printed
    assert sorted(p.name for p in out.iterdir()) == [
        "config.toml",
        "metrics.json",
        "normalisation.json",
        "provenance.json",
    ]
    metrics = _strict_json(out / "metrics.json")
    assert metrics["status"] == "diverged" and metrics["steps"] == 2
    with pytest.raises(FileNotFoundError, match="no trained parameters"):
        load(out)


def test_finished_run_files(tmp_path):
    out = tmp_path / "run"
    old = os.umask(0o027)
    try:
        _, result, metrics = train(_config(count_evaluations=True), out, progress=False)
    finally:
        os.umask(old)
    assert {p.name: oct(p.stat().st_mode & 0o777) for p in out.iterdir()} == {
        name: "0o640"
        for name in (
            "config.toml",
            "normalisation.json",
            "provenance.json",
            "checkpoint.eqx",
            "history.csv",
            "model.eqx",
            "metrics.json",
            "loss.png",
        )
    }
    stored = _strict_json(out / "metrics.json")
    assert stored["test_physical_global"] == pytest.approx(metrics["test_physical_global"])
    assert stored["forward_evaluations"] == 2  # forward Euler, 2 steps: 2 evaluations per solve
    assert b"\r" not in (out / "history.csv").read_bytes()


def test_none_values_survive_the_toml_round_trip():
    config = _config(clip_norm=None, patience=None, max_failed_batches=None, iterations=7)
    again = RunConfig.from_toml(config.to_toml())
    assert again == config and again.train.clip_norm is None and again.train.iterations == 7
    with pytest.raises(ValueError, match="invalid TOML configuration"):
        RunConfig.from_toml("[train\nlr = 1")


def test_the_study_preset_is_the_study_protocol():
    config = jaxode.preset("study-node")
    m, t, d = config.model, config.train, config.data
    assert (m.width, m.hidden, m.degree, m.rtol, m.atol) == (15, 50, 2, 1e-7, 1e-9)
    assert (m.opening_activation, m.field_init, m.field_init_std) == ("none", "normal", 0.1)
    assert (t.optimiser, t.learning_rate, t.schedule, t.decay_every, t.decay_factor) == (
        "adam",
        1e-2,
        "step",
        500,
        0.5,
    )
    assert (t.iterations, t.batch_size, t.sampling, t.loss, t.clip_norm) == (
        2000,
        20,
        "replacement",
        "l1",
        1.0,
    )
    assert (t.patience, t.eval_every_iterations, d.protocol) == (5, 20, "study")
    model = jaxode.build_model(config, 15, 10, key=jax.random.PRNGKey(0))
    # 3 basis functions of Linear(15 -> 50) -> tanh -> Linear(50 -> 15)
    assert jaxode.count_dynamics_parameters(model) == 3 * 1565
    with pytest.raises(
        ValueError, match="unknown preset 'nope'; available: dcr-resnet, study-node"
    ):
        jaxode.preset("nope")


def test_the_dcr_preset_is_the_committed_recipe_that_met_the_target():
    """`dcr-resnet` is the configuration of the ResNet cell of experiments/results/study/best
    (0.0831 +- 0.0063 on DCR) in every field but the seed."""
    import csv

    results = pathlib.Path(__file__).resolve().parent.parent / "experiments/results/study/best"
    with open(results / "results.csv", newline="") as f:
        cells = [
            r
            for r in csv.DictReader(f)
            if r["data.dataset"] == "dcr" and r["model.model"] == "resnet"
        ]
    assert len(cells) == 5  # the five seeds of the recipe
    for cell in cells:
        text = (results / cell["run_dir"] / "config.toml").read_text()
        stored = jaxode.RunConfig.from_toml(text)
        assert jaxode.preset("dcr-resnet") == stored.replace("train", seed=0)


def test_normal_field_init_draws_every_coefficient_and_zeroes_biases():
    config = jaxode.preset("study-node").replace("train", precision="float64")
    model = jaxode.build_model(config, 15, 10, key=jax.random.PRNGKey(1))
    field = model.dynamics.field
    weights = np.concatenate([np.ravel(field.inner.weight), np.ravel(field.outer.weight)])
    assert weights.size == 3 * 2 * 15 * 50
    # the sample std of 4500 N(0, 0.01) draws is within 5 % of 0.1 with overwhelming probability
    assert np.std(weights) == pytest.approx(0.1, rel=0.05) and abs(np.mean(weights)) < 0.01
    assert np.all(np.asarray(field.inner.bias) == 0) and np.all(np.asarray(field.outer.bias) == 0)
    default = jaxode.build_model(
        config.replace("model", field_init="default"), 15, 10, key=jax.random.PRNGKey(1)
    )
    # the opening and readout keep their default initialisation
    for a, b in zip(_leaves(default.opening), _leaves(model.opening)):
        np.testing.assert_array_equal(a, b)
    assert np.all(np.asarray(default.dynamics.field.inner.weight)[1:] == 0)


def test_iterations_and_evaluation_cadence_in_steps(tmp_path):
    config = _config(iterations=10, eval_every_iterations=3, patience=None)
    _, result, metrics = train(config, tmp_path / "r", progress=False)
    assert result.steps == 10 and [row["step"] for row in result.history] == [3, 6, 9, 10]


def _flags(config: dict) -> list[str]:
    names = {"dataset": "--data", "learning_rate": "--lr"}
    out = []
    for values in config.values():
        for key, value in values.items():
            out += [names.get(key, "--" + key.replace("_", "-")), str(value)]
    return out


def test_cli_preset_then_config_then_flags(tmp_path):
    from jaxode._cli import _config_from_args, build_parser

    path = tmp_path / "mine.toml"
    path.write_text("[train]\nbatch_size = 32\n[model]\nrtol = 1e-5\n")
    args = build_parser().parse_args(
        ["train", "--preset", "study-node", "--config", str(path), "--rtol", "1e-6"]
    )
    config = _config_from_args(args)
    assert config.train.batch_size == 32  # the config file's value beats the preset's 20
    assert config.model.rtol == 1e-6  # the flag beats both
    assert config.model.width == 15 and config.train.iterations == 2000  # the preset's


def test_cli_summary_names_both_units(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *_flags(TINY), "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out.splitlines()
    metrics = json.loads((out / "metrics.json").read_text())
    assert printed[-1] == (
        f"test relative error (global): {metrics['test_physical_global']:.4f} in physical units, "
        f"{metrics['test_global']:.4f} in normalised units; written to {out}"
    )
    assert "(normalised units)" in printed[2] and "(physical units)" in printed[2]


def test_sigterm_stops_like_ctrl_c_and_the_run_resumes(tmp_path):
    out = tmp_path / "run"
    argv = [sys.executable, "-m", "jaxode._cli", "train", *_flags(TINY), "--out", str(out)]
    argv[argv.index("--epochs") + 1] = "400"
    argv += ["--no-progress"]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not (out / "checkpoint.eqx").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    step = int(stdout.split("restarts from the checkpoint at step ")[1].split(".")[0])
    assert step % 4 == 0 and step >= 4
    assert f"Continue with: jaxode train --resume {out}" in stdout
    assert not (out / "model.eqx").exists()
    lines = (out / "history.csv").read_text().splitlines()
    assert int(lines[-1].split(",")[0]) >= step  # history reaches the checkpoint


def test_only_jaxodes_own_errors_become_one_line_exits(monkeypatch, capsys):
    import jaxode._cli as cli

    def bug(args):
        raise TypeError("unsupported operand type(s) for +: 'int' and 'str'")

    monkeypatch.setitem(cli.__dict__, "_train", bug)
    parser_handler = cli.build_parser().parse_args(["train"]).handler
    assert parser_handler is bug
    with pytest.raises(TypeError, match="unsupported operand"):
        main(["train"])

    def numpy_failure(args):
        return np.zeros(3) + np.zeros(4)  # ValueError raised inside NumPy: a bug, not the user

    monkeypatch.setitem(cli.__dict__, "_train", numpy_failure)
    with pytest.raises(ValueError, match="could not be broadcast"):
        main(["train"])


def test_a_read_only_output_is_one_line_and_leaves_nothing(tmp_path, monkeypatch, capsys):
    import tempfile

    def read_only(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    out = tmp_path / "run"
    assert main(["train", *_flags(TINY), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert f"cannot write {str(out / 'config.toml')!r}: permission denied" in err
    assert not out.exists() or not any(out.iterdir())


def test_loss_figure_has_labelled_panels_and_marks_the_best_step():
    from jaxode._training._plots import loss_figure

    rows = [
        {"step": 10, "train_loss": 1.0, "val_global": 0.5},
        {"step": 20, "train_loss": 0.5, "val_global": 0.3},
        {"step": 30, "train_loss": 0.2, "val_global": 0.4},
    ]
    fig = loss_figure(rows, 20, "mse")
    top, bottom = fig.axes
    assert top.get_ylabel() == "training loss (mse,\nnormalised units)"
    assert bottom.get_ylabel() == "validation relative error\n(global, normalised units)"
    assert bottom.get_xlabel() == "optimisation step"
    assert list(top.lines[0].get_ydata()) == [1.0, 0.5, 0.2]
    assert list(bottom.lines[0].get_ydata()) == [0.5, 0.3, 0.4]
    for ax in (top, bottom):  # the returned step, marked on both panels and in their legends
        assert list(ax.lines[1].get_xdata()) == [20, 20]
        assert "returned parameters (step 20)" in [
            t.get_text() for t in ax.get_legend().get_texts()
        ]
    (only,) = loss_figure([{"step": 5, "train_loss": 2.0}], 5, "l1").axes
    assert only.get_xlabel() == "optimisation step"


def test_seeds_train_one_cohort_with_a_run_per_seed_and_a_summary(tmp_path, monkeypatch, capsys):
    out = tmp_path / "cohort"
    flags = [*_flags(TINY), "--no-progress"]
    original = run_module.fit

    def interrupted(*args, **kwargs):
        def stop(k, row):
            if row["step"] == 8:
                raise KeyboardInterrupt

        return original(*args, **kwargs, callback=stop)

    monkeypatch.setattr(run_module, "fit", interrupted)
    assert main(["train", *flags, "--seeds", "0-2", "--out", str(out)]) == 130
    assert f"Continue with: jaxode train --resume {out}" in capsys.readouterr().out
    monkeypatch.setattr(run_module, "fit", original)
    assert main(["train", "--resume", str(out), "--no-progress"]) == 0
    # Three trained seeds are an ensemble too: calibrated on validation when they end.
    assert sorted(p.name for p in out.iterdir()) == [
        "calibration.png",
        "cohort.json",
        "ensemble.json",
        "seed-0",
        "seed-1",
        "seed-2",
        "summary.json",
    ]
    metrics = [_strict_json(out / f"seed-{s}" / "metrics.json") for s in range(3)]
    summary = _strict_json(out / "summary.json")
    values = [m["test_physical_global"] for m in metrics]
    assert summary["test_physical_global"] == {
        "mean": pytest.approx(np.mean(values), rel=1e-12),
        "std": pytest.approx(np.std(values, ddof=1), rel=1e-12),
        "n": 3,
    }
    assert len(set(values)) == 3  # three seeds, three models
    # each member is the run `jaxode train --seed s` makes alone, resumed or not (to rounding)
    alone = tmp_path / "alone"
    assert main(["train", *flags, "--seed", "1", "--out", str(alone)]) == 0
    for a, b in zip(_leaves(load(alone).model), _leaves(load(out / "seed-1").model)):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-13)
    assert (out / "seed-1" / "config.toml").read_text() == (alone / "config.toml").read_text()
    assert main(["train", *flags, "--seeds", "2-1", "--out", str(tmp_path / "bad")]) == 2
    assert "--seeds '2-1'" in capsys.readouterr().err and not (tmp_path / "bad").exists()


def test_basis_window_gives_raw_time_monomials():
    """`model.basis_window = 1` with `t1 = 10`: the study's monomials $t^k$ in raw time; by
    default the window is $[0, t_1]$ and the monomials are $(t / t_1)^k$."""
    config = RunConfig.from_dict(
        {
            "model": dict(
                model="resnet",
                field="layer",
                basis="monomial",
                degree=3,
                t1=10.0,
                width=4,
            ),
            "train": {"precision": "float64"},
        }
    )
    t = 7.5
    for window, tau in ((None, t / 10.0), (1.0, t)):
        model = jaxode.build_model(
            config.replace("model", basis_window=window), 3, 2, key=jax.random.PRNGKey(0)
        )
        bases = [
            leaf
            for leaf in jax.tree_util.tree_leaves(
                model, is_leaf=lambda x: isinstance(x, jaxode.AbstractTimeBasis)
            )
            if isinstance(leaf, jaxode.AbstractTimeBasis)
        ]
        assert bases and model.dynamics.t1 == 10.0
        for basis in bases:
            np.testing.assert_allclose(basis(t), tau ** np.arange(4), rtol=1e-14)
    with pytest.raises(ValueError, match="model.basis_window"):
        config.replace("model", basis_window=0.0)
    with pytest.raises(ValueError, match="model.basis_window applies to surrogates"):
        jaxode.preset("study-spiral").replace("model", basis_window=16.0)
