"""Atomic checkpoints, exact resumption, and run directories that load back."""

import os

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxode
from jaxode._files import atomic_write_text, load_checkpoint, save_checkpoint
from jaxode._training import RunConfig, fit, load, train


def _tiny(key):
    k1, k2 = jax.random.split(key)
    field = jaxode.MLPField(3, 4, jaxode.LegendreBasis(1), key=k1)
    return jaxode.Surrogate(2, 2, jaxode.ResNet(field, 1.0, 3), key=k2)


def _data(n=40):
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (n, 2))
    return x, np.stack([x[:, 0] * x[:, 1], np.sin(x[:, 0])], axis=1)


def _leaves(model):
    return jax.tree_util.tree_leaves(eqx.filter(model, eqx.is_inexact_array))


def test_atomic_write_survives_a_crash(tmp_path, monkeypatch):
    path = tmp_path / "file.txt"
    atomic_write_text(path, "old")

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_text(path, "new")
    monkeypatch.undo()
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt"]


def test_checkpoint_round_trip_and_mismatch(tmp_path, getkey):
    model = _tiny(getkey())
    save_checkpoint(tmp_path / "c.eqx", {"step": 7}, model)
    meta, back = load_checkpoint(tmp_path / "c.eqx", _tiny(getkey()))
    assert meta == {"step": 7}
    for a, b in zip(_leaves(model), _leaves(back)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    other = jaxode.Surrogate(
        2,
        2,
        jaxode.ResNet(jaxode.MLPField(5, 4, jaxode.LegendreBasis(1), key=getkey()), 1.0, 3),
        key=getkey(),
    )
    with pytest.raises(ValueError, match="does not match"):
        load_checkpoint(tmp_path / "c.eqx", other)
    (tmp_path / "junk.eqx").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a jaxode checkpoint"):
        load_checkpoint(tmp_path / "junk.eqx", model)


class _Stop(Exception):
    pass


def test_interrupted_fit_resumes_to_identical_parameters(tmp_path, getkey):
    x, y = _data()
    model, key = _tiny(getkey()), getkey()
    optimiser = optax.adam(optax.cosine_decay_schedule(1e-2, 30))

    def run(directory, callback=None, resume=False):
        return fit(
            model,
            (x[:32], y[:32]),
            optimiser,
            key=key,
            val=(x[32:], y[32:]),
            epochs=6,
            batch_size=5,
            clip_norm=1.0,
            checkpoint_dir=directory,
            resume=resume,
            callback=callback,
            count_evaluations=False,
        )

    straight = run(tmp_path / "a")

    def interrupt(row):
        if row["step"] == 12:
            raise _Stop

    with pytest.raises(_Stop):
        run(tmp_path / "b", callback=interrupt)
    resumed = run(tmp_path / "b", resume=True)
    assert resumed.steps == straight.steps == 36
    for a, b in zip(_leaves(straight.model), _leaves(resumed.model)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert [r["val_global"] for r in resumed.history] == [r["val_global"] for r in straight.history]


def test_interrupted_run_resumes_to_the_uninterrupted_run(tmp_path, monkeypatch):
    import jaxode._training._run as run_module

    config = RunConfig.from_dict(
        {
            "data": {"dataset": "cdr"},
            "model": {"model": "resnet", "field": "layer", "width": 3, "steps": 2, "degree": 1},
            "train": {"epochs": 3, "batch_size": 100, "precision": "float64"},
        }
    )
    straight, _, metrics = train(config, tmp_path / "a", progress=False)
    _check_run_directory(tmp_path / "a", config, straight, metrics)
    original_fit = run_module.fit

    def interrupted_fit(*args, **kwargs):
        def stop(row):
            if row["step"] == 8:  # after the second of three epochs (4 steps each)
                raise KeyboardInterrupt

        return original_fit(*args, **kwargs, callback=stop)

    monkeypatch.setattr(run_module, "fit", interrupted_fit)
    _, result, _ = train(config, tmp_path / "b", progress=False)
    assert result.status == "interrupted" and not (tmp_path / "b" / "model.eqx").exists()
    monkeypatch.setattr(run_module, "fit", original_fit)
    _, result, _ = train(None, tmp_path / "b", resume=True, progress=False)
    assert result.steps == 12
    for a, b in zip(_leaves(straight.model), _leaves(load(tmp_path / "b").model)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def _check_run_directory(run, config, trained, metrics):
    """A finished run holds every file and loads back for prediction in physical units."""
    names = {p.name for p in run.iterdir()}
    # Exactly these: atomic writes leave no temporary files behind.
    assert {
        "config.toml",
        "normalisation.json",
        "provenance.json",
        "checkpoint.eqx",
        "model.eqx",
        "history.csv",
        "metrics.json",
        "loss.png",
    } == names
    loaded = load(run)
    assert loaded.config == config
    data = jaxode.load_dataset("cdr")
    x, y = data.arrays("test", normalised=False)
    p = loaded.predict(x)
    # physical predictions from the normalised model, by hand
    xn = (x - data.x_norm.shift) / data.x_norm.scale
    by_hand = (
        np.asarray(trained.model.predict(jnp.asarray(xn))) * data.y_norm.scale + data.y_norm.shift
    )
    np.testing.assert_allclose(p, by_hand, rtol=1e-12, atol=1e-14)
    assert metrics["test_physical_global"] == pytest.approx(
        np.linalg.norm(p - y) / np.linalg.norm(y), rel=1e-10
    )
    with pytest.raises(FileExistsError, match="pass resume=True to continue it"):
        train(config, run, progress=False)
    with pytest.raises(FileNotFoundError, match="not a jaxode run directory"):
        load(run.parent)
