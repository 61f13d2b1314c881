"""Time-series training: trajectory samples, the clocked trajectory model against direct Diffrax
solves in absolute time, and a spiral run end to end against an independent integration."""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxode
from jaxode._trajectories import ClockField, cube


@pytest.fixture(scope="module")
def spiral_data():
    return jaxode.spiral(num_times=200, window=6)


def test_trajectory_samples_are_windows_and_whole_regions(spiral_data):
    data = spiral_data
    x, y = data.arrays("train")
    a, b = data.windows["train"]
    assert x.shape == (b - a - 6 + 1, 3) and y.shape == (len(x), 12)
    for i in (0, 7, len(x) - 1):
        np.testing.assert_array_equal(x[i], np.concatenate([[data.ts[a + i]], data.ys[a + i]]))
        np.testing.assert_array_equal(y[i].reshape(6, 2), data.ys[a + i : a + i + 6])
    for split in ("val", "test"):
        xs, ys = data.arrays(split)
        a, b = data.windows[split]
        assert xs.shape == (1, 3)
        np.testing.assert_array_equal(xs[0, 1:], data.ys[a])
        np.testing.assert_array_equal(ys[0].reshape(-1, 2), data.ys[a:b])
    assert data.sizes() == {"train": len(x), "val": 1, "test": 1}
    assert data.dt == pytest.approx(25.0 / 199)


def test_trajectory_data_rejects_bad_input(spiral_data):
    with pytest.raises(ValueError, match="equispaced"):
        jaxode.TrajectoryData("t", np.array([0.0, 1.0, 3.0]), np.zeros((3, 2)), spiral_data.windows)
    with pytest.raises(ValueError, match="`window`"):
        jaxode.spiral(num_times=200, window=1)
    bad = spiral_data.ys.copy()
    bad[5, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        jaxode.TrajectoryData("t", spiral_data.ts, bad, spiral_data.windows)


def _model(key, basis, shared_steps=True):
    field = jaxode.MLPField(2, 8, basis, key=key)
    # Non-zero higher coefficients, so that a wrong time would change the rates.
    field = jax.tree_util.tree_map(
        lambda leaf: (
            leaf + 0.3 * jax.random.normal(key, leaf.shape, leaf.dtype)
            if eqx.is_inexact_array(leaf)
            else leaf
        ),
        field,
    )
    controller = diffrax.PIDController(rtol=1e-10, atol=1e-12)
    return jaxode.TrajectoryModel(
        field, 0.05, 5, cube, stepsize_controller=controller, shared_steps=shared_steps
    )


def _reference(field, t0s, y0s, num_points, dt, solver=None, controller=None, dt0=None):
    """`dy/dt = f(t, y^3)` solved from every `(t0, y0)` in absolute time, at `num_points`
    times (one compiled program for all starts)."""
    solver = diffrax.Tsit5() if solver is None else solver
    if controller is None:
        controller = diffrax.PIDController(rtol=1e-12, atol=1e-13)

    def solve(t0, y0):
        ts = t0 + dt * jnp.arange(num_points)
        return diffrax.diffeqsolve(
            diffrax.ODETerm(lambda t, y, args: field(t, y**3)),
            solver,
            t0,
            ts[-1],
            dt0,
            y0,
            saveat=diffrax.SaveAt(ts=ts),
            stepsize_controller=controller,
        ).ys

    return np.asarray(jax.jit(jax.vmap(solve))(jnp.asarray(t0s), jnp.asarray(y0s)))


@pytest.mark.parametrize("shared_steps", [True, False])
def test_windows_integrate_in_absolute_time(getkey, shared_steps):
    basis = jaxode.LegendreBasis(3, t0=0.0, t1=4.0)
    model = _model(getkey(), basis, shared_steps)
    field = model.dynamics.field.field
    xs = jnp.array([[0.0, 1.0, -0.5], [2.35, 0.3, 0.8], [3.9, -0.7, 0.2]])
    predict = eqx.filter_jit(lambda m, x: m.predict(x))
    predicted = np.asarray(predict(model, xs))
    reference = _reference(field, xs[:, 0], xs[:, 1:], 5, 0.05)
    np.testing.assert_allclose(predicted.reshape(3, 5, 2), reference, atol=1e-8)
    # A longer window through the same parameters continues the same solution.
    longer = np.asarray(predict(model.with_points(9), xs))
    np.testing.assert_allclose(longer[:, :10], predicted, atol=1e-8)
    assert model.for_outputs(18).num_points == 9
    with pytest.raises(ValueError, match="not a window"):
        model.for_outputs(7)


def test_clock_field_rejects_lifted_fields(getkey):
    basis = jaxode.ConstantBasis(t0=0.0, t1=1.0)
    with pytest.raises(ValueError, match="state_size"):
        ClockField(jaxode.HamiltonianField(2, basis, key=getkey()))


def test_time_series_config_errors():
    spiral = {"dataset": "spiral"}
    with pytest.raises(ValueError, match="time series"):
        jaxode.RunConfig.from_dict({"data": spiral, "model": {"model": "resnet", "field": "layer"}})
    with pytest.raises(ValueError, match="field_input"):
        jaxode.RunConfig.from_dict({"model": {"field_input": "cube"}})
    with pytest.raises(ValueError, match="readout"):
        jaxode.RunConfig.from_dict({"data": spiral, "train": {"ridge": 1e-3}})
    with pytest.raises(ValueError, match="data.window"):
        jaxode.RunConfig.from_dict({"data": {"dataset": "spiral", "window": 1}})
    config = jaxode.RunConfig.from_dict({"data": spiral, "model": {"clamp": "true"}})
    assert config.model.clamp is True


def test_spiral_run_metrics_match_an_independent_integration(tmp_path):
    config = jaxode.RunConfig.from_dict(
        {
            "data": {"dataset": "spiral", "window": 10},
            "model": {
                "hidden": 8,
                "basis": "legendre",
                "degree": 2,
                "t1": 16.0,
                "clamp": True,
                "field_input": "cube",
                "solver": "heun",
                "steps": 2,
            },
            "train": {
                "optimiser": "rmsprop",
                "learning_rate": 1e-3,
                "loss": "l1",
                "iterations": 20,
                "batch_size": 20,
                "sampling": "replacement",
                "eval_every_iterations": 10,
                "schedule": "constant",
                "precision": "float64",
            },
        }
    )
    _, result, metrics = jaxode.train(config, tmp_path / "run", progress=False)
    assert result.status == "completed" and result.steps == 20
    model = jaxode.load(tmp_path / "run").model
    assert isinstance(model, jaxode.TrajectoryModel)
    assert model.dynamics.field.bases()[0].clamp
    assert metrics["dynamics_parameters"] == 3 * (2 * 8 + 8 + 8 * 2 + 2)
    data = jaxode.spiral(window=10)
    field = model.dynamics.field.field
    for split in ("val", "test"):
        ts, ys = data.split(split)
        # Heun with half the sample spacing, as the model: the same steps in absolute time.
        [reference] = _reference(
            field,
            ts[:1],
            ys[:1],
            len(ts),
            data.dt,
            diffrax.Heun(),
            diffrax.ConstantStepSize(),
            dt0=data.dt / 2,
        )
        error = np.linalg.norm(reference - ys) / np.linalg.norm(ys)
        np.testing.assert_allclose(metrics[f"{split}_global"], error, rtol=1e-6)
    history_best = min(row["val_global"] for row in result.history)
    assert metrics["val_global"] == pytest.approx(history_best, rel=1e-9)
