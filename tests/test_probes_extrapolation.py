"""Trajectory extrapolation against exact solutions, the bounded-field bound and solver failure
(fixed seeds)."""

import json
import math

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxode
from jaxode import probes

TIGHT = diffrax.PIDController(rtol=1e-10, atol=1e-12)


def _linear_field(matrix, key):
    """A LayerField with identity activation and constant weights: dz/dt = A z."""
    basis = jaxode.ConstantBasis()
    field = jaxode.LayerField(len(matrix), basis, activation=lambda u: u, key=key)
    field = eqx.tree_at(lambda f: f.layer.weight, field, jnp.asarray(matrix)[None])
    return eqx.tree_at(lambda f: f.layer.bias, field, jnp.zeros((1, len(matrix))))


def test_detuned_oscillator_valid_prediction_time_is_closed_form():
    omega = 1.1
    field = _linear_field([[0.0, omega], [-omega, 0.0]], jax.random.PRNGKey(0))
    dynamics = jaxode.NeuralODE(field, t1=1.0, stepsize_controller=TIGHT)
    result = probes.trajectory_extrapolation(
        dynamics,
        np.array([[1.0, 0.0]]),
        probes.HarmonicOscillator(omega=1.0),
        t_train=1.0,
        t_ext=20.0,
        num_times=2001,
    )
    # Both rotate at unit radius: the relative error is 2 |sin((omega - 1) t / 2)|.
    expected_errors = 2 * np.abs(np.sin((omega - 1.0) * result.ts / 2))
    np.testing.assert_allclose(result.errors[0], expected_errors, atol=1e-8)
    crossing = 2 * math.asin(0.15) / (omega - 1.0)
    assert crossing - 1.0 <= result.valid_prediction_time[0] <= crossing - 1.0 + 0.01
    assert np.isnan(result.in_lyapunov_times[0])
    assert result.succeeded.all()
    data = json.loads(result.to_json())
    assert data["valid_prediction_time"][0] == pytest.approx(result.valid_prediction_time[0])
    assert data["in_lyapunov_times"] == ["nan"]


def test_exact_model_never_leaves_and_growth_rates_match():
    field = _linear_field([[0.5]], jax.random.PRNGKey(1))
    dynamics = jaxode.NeuralODE(field, t1=2.0, stepsize_controller=TIGHT)
    result = probes.trajectory_extrapolation(
        dynamics,
        np.array([[1.0], [2.0]]),
        probes.ExponentialGrowth(rate=0.5),
        t_train=2.0,
        t_ext=10.0,
    )
    assert np.all(result.errors < 1e-8)
    np.testing.assert_allclose(result.valid_prediction_time, 8.0)
    np.testing.assert_allclose(result.model_rate, 0.5, rtol=1e-8)
    np.testing.assert_allclose(result.truth_rate, 0.5, rtol=1e-8)
    # Not a tanh field: the bounded-field check does not apply and says so.
    assert not result.bound_holds.any() and "not applicable" in result.notes[0]


def test_tanh_field_is_bounded_and_cannot_follow_exponential_growth():
    # h' = tanh(2 h), h(0) = 1: d/dt sinh(2h) = 2 sinh(2h), so h(t) = asinh(sinh(2) e^{2t}) / 2,
    # which grows like t + const (speed <= 1), against the truth e^t.
    field = jaxode.LayerField(1, jaxode.ConstantBasis(), key=jax.random.PRNGKey(2))
    field = eqx.tree_at(
        lambda f: (f.layer.weight, f.layer.bias), field, (jnp.array([[[2.0]]]), jnp.zeros((1, 1)))
    )
    dynamics = jaxode.NeuralODE(field, t1=1.0, stepsize_controller=TIGHT)
    result = probes.trajectory_extrapolation(
        dynamics, np.array([[1.0]]), probes.ExponentialGrowth(rate=1.0), t_train=1.0, t_ext=8.0
    )
    ts = result.ts
    exact = np.arcsinh(np.sinh(2.0) * np.exp(2.0 * ts)) / 2.0
    np.testing.assert_allclose(result.model_states[0, :, 0], exact, rtol=1e-9)
    errors = np.abs(exact - np.exp(ts)) / np.exp(ts)
    np.testing.assert_allclose(result.errors[0], errors, atol=1e-9)
    # The error first exceeds 30 % at the first save time past t_train = 1 where the closed form
    # does (0.268 at t = 1, rising; no save time lies within 1e-3 of the crossing).
    first = ts[np.argmax((errors > 0.3) & (ts >= 1.0))]
    assert np.min(np.abs(errors[ts >= 1.0] - 0.3)) > 1e-3
    assert result.valid_prediction_time[0] == pytest.approx(first - 1.0, abs=1e-12)
    # |h'| <= 1: the displacement is at most t, so growth is at most linear.
    np.testing.assert_allclose(result.displacement_bound, ts)
    np.testing.assert_allclose(result.displacement[0], exact - 1.0, atol=1e-8)
    assert result.bound_holds.all()
    # Growth exponents: slopes of log|y| past t_train in log t (model) and in t (truth).
    late = ts >= 1.0
    np.testing.assert_allclose(
        result.model_power[0], np.polyfit(np.log(ts[late]), np.log(exact[late]), 1)[0], rtol=1e-8
    )
    assert result.truth_rate[0] == pytest.approx(1.0, rel=1e-9)


def test_mlp_field_bound_saturation_and_jacobian():
    basis = jaxode.LegendreBasis(degree=2, t0=0.0, t1=1.0)
    field = jaxode.MLPField(2, 6, basis, key=jax.random.PRNGKey(3))
    field = eqx.tree_at(lambda f: f.inner.weight, field, 2.5 * field.inner.weight)
    field = eqx.tree_at(lambda f: f.outer.weight, field, field.outer.weight.at[2].set(0.3))
    dynamics = jaxode.NeuralODE(field, t1=1.0)
    result = probes.trajectory_extrapolation(
        dynamics,
        np.array([[0.5, -0.5]]),
        probes.HarmonicOscillator(),
        t_train=1.0,
        t_ext=4.0,
        num_times=21,
    )
    assert result.bound_holds.all()

    # The bound is the upper Riemann sum, on the save grid, of
    # M(t) = ||W_o(t)||_inf + ||b_o(t)||_inf.
    def speed(ts):
        weights = np.asarray(jax.vmap(field.outer.weight_at)(ts))
        biases = np.asarray(jax.vmap(field.outer.bias_at)(ts))
        return np.abs(weights).sum(axis=2).max(axis=1) + np.abs(biases).max(axis=1)

    grid = result.ts
    on_grid = speed(grid)
    upper = np.concatenate(
        [[0.0], np.cumsum(np.maximum(on_grid[1:], on_grid[:-1]) * np.diff(grid))]
    )
    np.testing.assert_allclose(result.displacement_bound, upper, rtol=1e-12)
    # It lies above the integral of M by at most sum |M(t_i+1) - M(t_i)| h (M is monotone between
    # save times here).
    fine = np.linspace(0.0, 4.0, 4001)
    integral = np.trapezoid(speed(fine), fine)
    slack = np.sum(np.abs(np.diff(on_grid)) * np.diff(grid))
    assert integral <= result.displacement_bound[-1] <= integral + slack
    # Saturation and Jacobian norm recomputed from the returned states.
    for i in (0, 10, 20):
        t, z = result.ts[i], result.model_states[0, i]
        pre = np.asarray(field.inner.weight_at(t)) @ z + np.asarray(field.inner.bias_at(t))
        np.testing.assert_allclose(
            result.saturated_fraction[0, i], np.mean(np.abs(np.tanh(pre)) > 0.99)
        )
        jac = (
            np.asarray(field.outer.weight_at(t))
            @ np.diag(1 - np.tanh(pre) ** 2)
            @ np.asarray(field.inner.weight_at(t))
        )
        np.testing.assert_allclose(
            result.jacobian_norm[0, i], np.linalg.norm(jac, 2), rtol=1e-7, atol=1e-12
        )


class _Quadratic(jaxode.AbstractField):
    width: int = 1

    def __call__(self, t, z, args=None):
        return z**2

    def bases(self):
        return ()


def test_failing_solve_is_reported_not_raised():
    # z' = z^2 from z = 1 blows up at t = 1: the long solve must fail and say so.
    dynamics = jaxode.NeuralODE(_Quadratic(), t1=0.5)
    truth = np.ones((1, 41, 1))
    result = probes.trajectory_extrapolation(
        dynamics, np.array([[1.0]]), truth, t_train=0.5, t_ext=2.0, num_times=41, max_steps=2000
    )
    assert not result.succeeded[0] and result.solver_result[0] != 0
    assert np.isinf(result.errors[0, -1])
    # z = 1 / (1 - t) is already 2 at t_train = 0.5 (relative error 1 > 30 %): no valid time.
    np.testing.assert_allclose(result.errors[0, 10], 1.0, rtol=1e-5)
    assert result.valid_prediction_time[0] == 0.0
    assert any("failed" in note for note in result.notes)
    assert "failed" in str(result)


@pytest.mark.slow
def test_lorenz_valid_time_in_lyapunov_times():
    from scipy.integrate import solve_ivp

    law = probes.Lorenz63()

    class Detuned(jaxode.AbstractField):
        width: int = 3

        def __call__(self, t, z, args=None):
            return probes.Lorenz63(rho=28.05).vector_field(t, z)

        def bases(self):
            return ()

    dynamics = jaxode.NeuralODE(Detuned(), t1=1.0, stepsize_controller=TIGHT)
    result = probes.trajectory_extrapolation(
        dynamics,
        law.default_initial_state()[None],
        law,
        t_train=1.0,
        t_ext=15.0,
        num_times=301,
        max_steps=200000,
    )

    # Reference: both systems solved by SciPy's DOP853 at rtol 1e-12 on the same save grid.
    def lorenz(rho):
        return lambda t, y: [
            10.0 * (y[1] - y[0]),
            y[0] * (rho - y[2]) - y[1],
            y[0] * y[1] - 8.0 / 3.0 * y[2],
        ]

    y0, ts = np.asarray(law.default_initial_state()), result.ts
    model, truth = (
        solve_ivp(
            lorenz(rho), (0.0, 15.0), y0, method="DOP853", t_eval=ts, rtol=1e-12, atol=1e-12
        ).y.T
        for rho in (28.05, 28.0)
    )
    errors = np.linalg.norm(model - truth, axis=1) / np.linalg.norm(truth, axis=1)
    # Chaos amplifies the solvers' tolerances by e^{0.9 t}: a few 1e-3 relative by t = 15.
    np.testing.assert_allclose(result.errors[0], errors, rtol=5e-3, atol=1e-8)
    first = ts[np.argmax((errors > 0.3) & (ts >= 1.0))]
    up_to = (ts >= 1.0) & (ts <= first)
    assert np.min(np.abs(errors[up_to] - 0.3)) > 1e-3  # no near tie before the crossing
    assert result.valid_prediction_time[0] == pytest.approx(first - 1.0, abs=1e-12)
    np.testing.assert_allclose(
        result.in_lyapunov_times[0], result.valid_prediction_time[0] * law.lyapunov_exponent
    )


def test_bad_input():
    field = _linear_field([[0.5]], jax.random.PRNGKey(4))
    dynamics = jaxode.NeuralODE(field, t1=1.0)
    with pytest.raises(ValueError, match="t_train"):
        probes.trajectory_extrapolation(
            dynamics, np.ones((1, 1)), probes.ExponentialGrowth(), t_train=2.0, t_ext=1.0
        )
    with pytest.raises(ValueError, match="columns"):
        probes.trajectory_extrapolation(
            dynamics, np.ones((1, 2)), probes.ExponentialGrowth(), t_train=1.0, t_ext=2.0
        )
    with pytest.raises(ValueError, match="state size"):
        probes.trajectory_extrapolation(
            dynamics, np.ones((1, 1)), probes.Lorenz63(), t_train=1.0, t_ext=2.0
        )
    with pytest.raises(ValueError, match="truth"):
        probes.trajectory_extrapolation(
            dynamics, np.ones((1, 1)), np.ones((1, 5, 1)), t_train=1.0, t_ext=2.0
        )
