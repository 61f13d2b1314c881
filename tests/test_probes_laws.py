"""The physical-law zoo: closed forms against the tight reference solve, invariants, Lyapunov."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxode import probes
from jaxode._probes._laws import reference_solve

CLOSED_FORM_LAWS = [
    probes.ExponentialGrowth(rate=0.7),
    probes.ExponentialDecay(rate=0.4),
    probes.HarmonicOscillator(omega=1.5),
    probes.DampedOscillator(omega=2.0, gamma=0.3),
    probes.FreeFall(gravity=9.81),
    probes.LogisticGrowth(rate=1.3, capacity=2.0),
]


@pytest.mark.parametrize("law", CLOSED_FORM_LAWS, ids=lambda law: type(law).__name__)
def test_closed_form_satisfies_its_ode(law):
    ts = jnp.linspace(0.5, 6.0, 23)
    y0 = law.default_initial_state() * 1.3 + 0.1
    closed = law.trajectory(y0, ts)
    np.testing.assert_allclose(closed[0], y0, rtol=1e-14)
    # The closed form's time derivative equals the vector field along the whole trajectory.
    rates = jax.vmap(jax.jacfwd(lambda t: law.trajectory(y0, jnp.stack([ts[0], t]))[1]))(ts)
    fields = jax.vmap(law.vector_field)(ts, closed)
    np.testing.assert_allclose(rates, fields, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("law", [CLOSED_FORM_LAWS[3], CLOSED_FORM_LAWS[5]], ids=lambda law: type(law).__name__)
def test_closed_form_matches_reference_solve(law):
    ts = jnp.linspace(0.5, 6.0, 23)
    y0 = law.default_initial_state() * 1.3 + 0.1
    np.testing.assert_allclose(law.trajectory(y0, ts), reference_solve(law, y0, ts), rtol=1e-8, atol=1e-8)


def test_characteristic_roots():
    assert probes.DampedOscillator(omega=2.0, gamma=0.3).characteristic_roots == (-0.3 + 2j, -0.3 - 2j)
    assert probes.HarmonicOscillator(omega=1.5).characteristic_roots == (1.5j, -1.5j)
    assert probes.ExponentialGrowth(rate=0.7).characteristic_roots == (0.7 + 0j,)


def test_lotka_volterra_conserves_its_invariant():
    law = probes.LotkaVolterra()
    states = law.trajectory(law.default_initial_state(), jnp.linspace(0.0, 30.0, 61))
    invariant = law.invariant(states)
    np.testing.assert_allclose(invariant, invariant[0], rtol=1e-9)
    assert float(jnp.max(states[:, 0]) - jnp.min(states[:, 0])) > 0.5  # it oscillates


def test_chaotic_laws_know_their_lyapunov_exponents():
    assert probes.Lorenz63().lyapunov_exponent == pytest.approx(0.906, abs=1e-3)
    assert probes.Roessler().lyapunov_exponent == pytest.approx(0.0714, abs=1e-4)
    assert probes.Lorenz63(rho=20.0).lyapunov_exponent is None


def test_lorenz_lyapunov_exponent_by_benettin():
    law = probes.Lorenz63()
    estimate = probes.largest_lyapunov_exponent(law, law.default_initial_state(), duration=60.0)
    # A 60-time-unit Benettin estimate scatters by a few hundredths around 0.906.
    assert abs(float(estimate) - 0.906) < 0.1


@pytest.mark.slow
def test_roessler_reference_solve_is_converged():
    law = probes.Roessler()
    ts = jnp.linspace(0.0, 20.0, 11)
    tight = law.trajectory(law.default_initial_state(), ts)
    looser = reference_solve(law, law.default_initial_state(), ts, 1e-9, 1e-10)
    np.testing.assert_allclose(tight, looser, rtol=1e-6, atol=1e-6)
