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


@pytest.mark.parametrize(
    "law", [CLOSED_FORM_LAWS[3], CLOSED_FORM_LAWS[5]], ids=lambda law: type(law).__name__
)
def test_closed_form_matches_reference_solve(law):
    ts = jnp.linspace(0.5, 6.0, 23)
    y0 = law.default_initial_state() * 1.3 + 0.1
    np.testing.assert_allclose(
        law.trajectory(y0, ts), reference_solve(law, y0, ts), rtol=1e-8, atol=1e-8
    )


def test_characteristic_roots():
    assert probes.DampedOscillator(omega=2.0, gamma=0.3).characteristic_roots == (
        -0.3 + 2j,
        -0.3 - 2j,
    )
    assert probes.HarmonicOscillator(omega=1.5).characteristic_roots == (1.5j, -1.5j)
    assert probes.ExponentialGrowth(rate=0.7).characteristic_roots == (0.7 + 0j,)


def test_lotka_volterra_conserves_its_invariant_and_reaches_its_extremes():
    from scipy.optimize import brentq

    law = probes.LotkaVolterra()
    states = law.trajectory(law.default_initial_state(), jnp.linspace(0.0, 30.0, 3001))
    invariant = law.invariant(states)
    np.testing.assert_allclose(invariant, invariant[0], rtol=1e-9)
    # On the level set V = V(1, 1) the prey x is extreme where x' = 0 (y = alpha / beta) and the
    # predator y where y' = 0 (x = gamma / delta): roots of one-variable equations. About four
    # periods (small-amplitude period 2 pi / sqrt(alpha gamma) = 7.7) sampled every 0.01 reach them.
    level = float(invariant[0])
    a, b, g, d = law.alpha, law.beta, law.gamma, law.delta
    rest_y = b * (a / b) - a * np.log(a / b)
    rest_x = d * (g / d) - g * np.log(g / d)
    x_roots = [
        brentq(lambda x: d * x - g * np.log(x) + rest_y - level, lo, hi)
        for lo, hi in ((1e-6, g / d), (g / d, 50.0))
    ]
    y_roots = [
        brentq(lambda y: b * y - a * np.log(y) + rest_x - level, lo, hi)
        for lo, hi in ((1e-6, a / b), (a / b, 50.0))
    ]
    np.testing.assert_allclose([states[:, 0].min(), states[:, 0].max()], x_roots, rtol=1e-4)
    np.testing.assert_allclose([states[:, 1].min(), states[:, 1].max()], y_roots, rtol=1e-4)


def test_chaotic_laws_lyapunov_exponents_match_benettin_estimates():
    # Finite-time Benettin estimates from the default states scatter by a few per cent around
    # the stored exponents (0.906 for Lorenz-63, 0.0714 for Roessler).
    lorenz = probes.Lorenz63()
    estimate = probes.largest_lyapunov_exponent(
        lorenz, lorenz.default_initial_state(), duration=60.0
    )
    assert float(estimate) == pytest.approx(lorenz.lyapunov_exponent, rel=0.05)
    roessler = probes.Roessler()
    estimate = probes.largest_lyapunov_exponent(
        roessler, roessler.default_initial_state(), duration=300.0, renormalise_every=5.0
    )
    assert float(estimate) == pytest.approx(roessler.lyapunov_exponent, rel=0.03)
    # Away from the classic parameters no exponent is stored.
    assert probes.Lorenz63(rho=20.0).lyapunov_exponent is None


@pytest.mark.slow
def test_roessler_reference_solve_is_converged():
    law = probes.Roessler()
    ts = jnp.linspace(0.0, 20.0, 11)
    tight = law.trajectory(law.default_initial_state(), ts)
    looser = reference_solve(law, law.default_initial_state(), ts, 1e-9, 1e-10)
    np.testing.assert_allclose(tight, looser, rtol=1e-6, atol=1e-6)
