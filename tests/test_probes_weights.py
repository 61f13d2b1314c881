"""Weight asymptotics against the leading coefficients of every basis (fixed seeds)."""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxode
from jaxode import probes


def _only_last(basis, matrix):
    coefficients = np.zeros((basis.num_basis,) + matrix.shape)
    coefficients[-1] = matrix
    return jnp.asarray(coefficients)


def test_legendre_identity_example_from_the_spec():
    basis = jaxode.LegendreBasis(degree=2)
    result = probes.coefficient_asymptotics(basis, _only_last(basis, np.eye(3)))
    # ||W(t)||_2 = |6 t^2 - 6 t + 1|.
    assert result.exponent[0] == 2.0
    np.testing.assert_allclose(result.leading_coefficient[0], 6.0, rtol=1e-6)
    np.testing.assert_allclose(
        result.norms[0], np.abs(6 * result.times[0] ** 2 - 6 * result.times[0] + 1), rtol=1e-10
    )
    assert result.verdicts == ["POLY(2)"]
    data = json.loads(result.to_json())
    assert data["verdicts"] == ["POLY(2)"] and data["leading_coefficient"][0] == pytest.approx(
        6.0, rel=1e-6
    )
    assert "POLY(2)" in str(result)


@pytest.mark.parametrize("degree", [1, 2, 3, 4])
def test_legendre_leading_coefficient_is_central_binomial_over_width(degree):
    t0, t1 = 1.0, 3.0
    basis = jaxode.LegendreBasis(degree=degree, t0=t0, t1=t1)
    matrix = np.asarray(jax.random.normal(jax.random.PRNGKey(degree), (3, 2)))
    result = probes.coefficient_asymptotics(basis, _only_last(basis, matrix))
    expected = math.comb(2 * degree, degree) * np.linalg.norm(matrix, 2) / (t1 - t0) ** degree
    assert result.exponent[0] == degree
    np.testing.assert_allclose(result.leading_coefficient[0], expected, rtol=1e-6)


def test_monomial_and_chebyshev_leading_coefficients():
    matrix = np.asarray(jax.random.normal(jax.random.PRNGKey(10), (2, 2)))
    monomial = jaxode.MonomialBasis(degree=3, t0=0.0, t1=2.0)
    result = probes.coefficient_asymptotics(monomial, _only_last(monomial, matrix))
    assert result.exponent[0] == 3.0
    np.testing.assert_allclose(
        result.leading_coefficient[0], np.linalg.norm(matrix, 2) / 8.0, rtol=1e-6
    )
    chebyshev = jaxode.ChebyshevBasis(degree=3)
    result = probes.coefficient_asymptotics(chebyshev, _only_last(chebyshev, matrix))
    # T_3(x) = 4 x^3 - 3 x with x = 2 tau - 1: leading coefficient 4 * 2^3 = 32.
    np.testing.assert_allclose(
        result.leading_coefficient[0], 32 * np.linalg.norm(matrix, 2), rtol=1e-6
    )


def test_mixed_coefficients_grow_with_the_highest_nonzero_degree():
    basis = jaxode.MonomialBasis(degree=3)
    coefficients = jax.random.normal(jax.random.PRNGKey(11), (4, 3))
    coefficients = coefficients.at[3].set(0.0)
    result = probes.coefficient_asymptotics(basis, coefficients)
    assert result.verdicts == ["POLY(2)"]
    np.testing.assert_allclose(
        result.leading_coefficient[0], np.linalg.norm(coefficients[2]), rtol=1e-6
    )


def test_bounded_bases():
    matrix = np.asarray(jax.random.normal(jax.random.PRNGKey(12), (2, 3)))
    constant = jaxode.ConstantBasis()
    result = probes.coefficient_asymptotics(constant, matrix[None])
    assert result.verdicts == ["CONSTANT_EXP"]
    np.testing.assert_allclose(result.limit[0], np.linalg.norm(matrix, 2), rtol=1e-12)

    coefficients = jax.random.normal(jax.random.PRNGKey(13), (4, 2, 3))
    clamped = jaxode.LegendreBasis(degree=3, t0=0.0, t1=2.0, clamp=True)
    result = probes.coefficient_asymptotics(clamped, coefficients)
    frozen = np.tensordot(np.asarray(clamped(2.0)), np.asarray(coefficients), axes=1)
    assert result.verdicts == ["CONSTANT_EXP"] and result.exponent[0] == 0.0
    np.testing.assert_allclose(result.limit[0], np.linalg.norm(frozen, 2), rtol=1e-12)

    pieces = jaxode.PiecewiseConstantBasis(pieces=3)
    result = probes.coefficient_asymptotics(pieces, coefficients[:3])
    np.testing.assert_allclose(
        result.limit[0], np.linalg.norm(np.asarray(coefficients[2]), 2), rtol=1e-12
    )

    fourier = jaxode.FourierBasis(num_frequencies=1)
    result = probes.coefficient_asymptotics(fourier, coefficients[:3], num_times=200)
    assert result.verdicts == ["OSCILLATORY"] and result.exponent[0] == 0.0
    # ||C_0 + C_1 cos(2 pi t) + C_2 sin(2 pi t)||_2 on the far-time grid, with NumPy.
    c0, c1, c2 = np.asarray(coefficients[:3])
    angle = 2 * np.pi * result.times[0]
    expected = [np.linalg.norm(c0 + c1 * np.cos(a) + c2 * np.sin(a), 2) for a in angle]
    np.testing.assert_allclose(result.norms[0], expected, rtol=1e-9)


def test_every_layer_of_a_field():
    basis = jaxode.LegendreBasis(degree=2)
    field = jaxode.MLPField(3, 5, basis, key=jax.random.PRNGKey(14))
    inner_weight = np.zeros((3, 5, 3))
    inner_weight[1] = np.asarray(jax.random.normal(jax.random.PRNGKey(15), (5, 3)))
    field = jax.tree_util.tree_map(lambda x: x, field)
    import equinox as eqx

    field = eqx.tree_at(lambda f: f.inner.weight, field, jnp.asarray(inner_weight))
    result = probes.weight_asymptotics(field)
    assert result.names == ("inner.weight", "inner.bias", "outer.weight", "outer.bias")
    # Fresh layers are constant in time; the edited inner weight is linear: 2 ||W_1|| t.
    assert result.verdicts == ["LINEAR", "CONSTANT_EXP", "CONSTANT_EXP", "CONSTANT_EXP"]
    np.testing.assert_allclose(
        result.leading_coefficient[0], 2 * np.linalg.norm(inner_weight[1], 2), rtol=1e-6
    )
    assert "inner.weight" in str(result)


def test_bad_input():
    basis = jaxode.LegendreBasis(degree=2)
    with pytest.raises(ValueError, match="num_basis"):
        probes.coefficient_asymptotics(basis, jnp.zeros((2, 3)))
    with pytest.raises(ValueError, match="TimeVaryingLinear"):
        probes.weight_asymptotics(lambda x: x)
    with pytest.raises(ValueError, match="far"):
        probes.coefficient_asymptotics(basis, jnp.zeros((3, 1)), far=(10.0, 1.0))
