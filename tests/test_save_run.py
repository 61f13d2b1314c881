"""A model built and trained by hand joins the tools: `save_run` writes a run directory that
`load`, `jaxode evaluate`, `predict` and `runs` take (issue 26, item 7)."""

import json

import diffrax
import jax
import numpy as np
import optax
import pytest

import jaxode
from jaxode._cli import main
from jaxode._runs_table import runs_table


def _by_hand(key, **basis):
    keys = jax.random.split(key, 2)
    field = jaxode.MLPField(4, 6, jaxode.LegendreBasis(2, **basis), key=keys[0])
    dynamics = jaxode.NeuralODE(
        field,
        1.0,
        solver=diffrax.Tsit5(),
        stepsize_controller=diffrax.PIDController(rtol=1e-4, atol=1e-6),
    )
    return jaxode.Surrogate(55, 72, dynamics, key=keys[1])


def test_a_model_trained_by_hand_is_a_run_the_tools_take(tmp_path, capsys):
    data = jaxode.load_dataset("cdr")
    model = jaxode.fit(
        _by_hand(jax.random.PRNGKey(0)),
        data.arrays("train"),
        optax.adam(1e-3),
        key=jax.random.PRNGKey(1),
        steps=20,
        batch_size=100,
    ).model
    run = tmp_path / "run"
    metrics = jaxode.save_run(model, run, data="cdr")
    config = jaxode.RunConfig.from_toml((run / "config.toml").read_text())
    assert (config.model.solver, config.model.rtol, config.model.hidden) == ("tsit5", 1e-4, 6)
    x, y = data.arrays("test", normalised=False)
    loaded = jaxode.load(run)
    by_hand = data.y_norm.invert(np.asarray(model.predict(data.x_norm.apply(x))))
    # Loading predicts in chunks, whose shared adaptive steps differ from one whole batch's.
    np.testing.assert_allclose(loaded.predict(x), by_hand, rtol=1e-6)
    relative = np.linalg.norm(by_hand - y) / np.linalg.norm(y)
    assert metrics["test_physical_global"] == pytest.approx(relative, rel=1e-6)
    assert main(["evaluate", str(run)]) == 0
    evaluated = json.loads((run / "evaluation.json").read_text())
    assert evaluated["test_physical_global"] == pytest.approx(relative, rel=1e-6)
    rows, _ = runs_table(tmp_path)
    assert [(row["status"], row["notes"]) for row in rows] == [("completed", [])]
    capsys.readouterr()


def test_a_model_no_run_configuration_describes_is_refused(tmp_path):
    model = _by_hand(jax.random.PRNGKey(0), orthonormal=True)
    with pytest.raises(ValueError, match="differs from every model a run configuration builds"):
        jaxode.save_run(model, tmp_path / "run", data="cdr")
    assert not (tmp_path / "run").exists()
    with pytest.raises(ValueError, match="`data` has 15 inputs and 10 outputs; the model has 55"):
        jaxode.save_run(_by_hand(jax.random.PRNGKey(0)), tmp_path / "run", data="elm")
