"""Minimal polynomial ODE against relations known in closed form."""

import json

import jax.numpy as jnp
import numpy as np
import pytest

from jaxode import probes
from jaxode._probes._minimal_ode import derivatives, monomial_exponents


def _coefficient_vector(result, terms):
    """The closed-form relation as a vector over `result.exponents`, scaled like the result."""
    vector = np.array([terms.get(e, 0.0) for e in result.exponents])
    assert set(terms) <= set(result.exponents)
    return vector / vector[np.argmax(np.abs(vector))]


def _same_up_to_sign(actual, expected, atol):
    sign = np.sign(actual @ expected)
    np.testing.assert_allclose(sign * actual, expected, atol=atol)


def test_monomials_are_all_degrees_up_to_d():
    exponents = monomial_exponents(2, 2)
    assert exponents == [(0, 0), (0, 1), (1, 0), (0, 2), (1, 1), (2, 0)]


def test_nested_derivatives_match_closed_form():
    values = derivatives(lambda r: jnp.sin(2.0 * r), 0.3, 3)
    expected = [np.sin(0.6), 2 * np.cos(0.6), -4 * np.sin(0.6), -8 * np.cos(0.6)]
    np.testing.assert_allclose(values, expected, rtol=1e-12)


def test_tanh_neuron_satisfies_riccati_pooled_over_hidden_biases():
    a, alpha, c = 1.7, 0.8, 0.3
    biases = jnp.linspace(-2.0, 2.0, 9)

    def neuron(beta, r):
        return a * jnp.tanh(alpha * r + beta) + c

    result = probes.minimal_ode(
        neuron, biases, np.linspace(-3.0, 3.0, 40) + 3.0, max_order=2, max_degree=3
    )
    assert result.found and (result.order, result.degree) == (1, 2)
    # y' = alpha a (1 - ((y - c)/a)^2)  <=>  y' - alpha a + (alpha / a)(y^2 - 2 c y + c^2) = 0.
    k = alpha / a
    expected = _coefficient_vector(
        result, {(0, 1): 1.0, (0, 0): -alpha * a + k * c**2, (1, 0): -2 * k * c, (2, 0): k}
    )
    _same_up_to_sign(result.coefficients, expected, atol=1e-7)
    assert "y1" in result.relation()
    data = json.loads(result.to_json())
    assert (data["order"], data["degree"]) == (1, 2) and data["relation"] == result.relation()
    assert "minimal relation: order 1, degree 2" in str(result)


def test_sine_has_an_implicit_order_one_relation():
    omega = 1.3
    phases = jnp.linspace(0.0, 3.0, 7)
    result = probes.minimal_ode(
        lambda phi, r: jnp.sin(omega * r + phi),
        phases,
        np.linspace(0.0, 6.0, 30),
        max_order=2,
        max_degree=2,
    )
    assert (result.order, result.degree) == (1, 2)
    expected = _coefficient_vector(result, {(0, 2): 1.0, (2, 0): omega**2, (0, 0): -(omega**2)})
    _same_up_to_sign(result.coefficients, expected, atol=1e-7)


def test_exponential_is_linear_order_one():
    shifts = jnp.linspace(-1.0, 1.0, 5)
    result = probes.minimal_ode(
        lambda s, r: jnp.exp(0.4 * r + s),
        shifts,
        np.linspace(0.0, 5.0, 20),
        max_order=1,
        max_degree=2,
    )
    assert (result.order, result.degree) == (1, 1)
    expected = _coefficient_vector(result, {(0, 1): 1.0, (1, 0): -0.4})
    _same_up_to_sign(result.coefficients, expected, atol=1e-8)


def test_damped_oscillator_is_linear_order_two():
    gamma, omega = 0.3, 2.0
    members = {"phase": jnp.linspace(0.0, 2.0, 6), "amplitude": jnp.linspace(0.5, 2.0, 6)}

    def curve(m, r):
        return m["amplitude"] * jnp.exp(-gamma * r) * jnp.cos(omega * r + m["phase"])

    result = probes.minimal_ode(
        curve, members, np.linspace(0.0, 4.0, 40), max_order=2, max_degree=2
    )
    assert (result.order, result.degree) == (2, 1)
    # y'' + 2 gamma y' + (gamma^2 + omega^2) y = 0.
    expected = _coefficient_vector(
        result, {(0, 0, 1): 1.0, (0, 1, 0): 2 * gamma, (1, 0, 0): gamma**2 + omega**2}
    )
    _same_up_to_sign(result.coefficients, expected, atol=1e-7)
    assert result.residual_table[0].min() > 1e-6  # no order-1 relation of degree <= 2


def test_parallel_rays_of_a_tanh_neuron_in_two_dimensions():
    w, b, a, c = np.array([0.6, -0.8]), 0.2, 1.1, -0.4

    def model(x):
        return a * jnp.tanh(w @ x + b) + c

    direction = np.array([1.0, 0.0])
    base_points = np.stack([np.zeros(8), np.linspace(-2.0, 2.0, 8)], axis=1)
    result = probes.minimal_ode_along_rays(
        model, base_points, direction, np.linspace(0.0, 6.0, 30), max_order=2, max_degree=2
    )
    assert (result.order, result.degree) == (1, 2)
    alpha, k = w @ direction, w @ direction / a
    expected = _coefficient_vector(
        result, {(0, 1): 1.0, (0, 0): -alpha * a + k * c**2, (1, 0): -2 * k * c, (2, 0): k}
    )
    _same_up_to_sign(result.coefficients, expected, atol=1e-7)


def test_nothing_found_reports_so():
    # |r| sin(r)-like growth with a varying frequency has no low-order polynomial relation.
    shifts = jnp.linspace(0.0, 1.0, 5)
    result = probes.minimal_ode(
        lambda s, r: jnp.sin(r * r + s) * r,
        shifts,
        np.linspace(1.0, 3.0, 40),
        max_order=1,
        max_degree=2,
    )
    assert not result.found and result.relation() == "none found"


def test_bad_input():
    with pytest.raises(ValueError, match="members"):
        probes.minimal_ode(lambda m, r: r, 1.0, np.linspace(0, 1, 10))
    with pytest.raises(ValueError, match="at least 2 rows"):
        probes.minimal_ode_along_rays(
            lambda x: x[0], np.zeros((1, 2)), np.ones(2), np.linspace(0, 1, 10)
        )
