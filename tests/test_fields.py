import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import randomize

import jaxode


def test_time_varying_linear_init_is_constant_in_time(getkey):
    basis = jaxode.LegendreBasis(3)
    key = getkey()
    layer = jaxode.TimeVaryingLinear(4, 3, basis, key=key)
    assert layer.weight.shape == (4, 3, 4) and layer.bias.shape == (4, 3)
    # W_0, b_0 uniform on +-1/sqrt(in_size) = +-0.5 from the split key; the rest zero.
    wkey, bkey = jax.random.split(key)
    np.testing.assert_array_equal(
        layer.weight[0], jax.random.uniform(wkey, (1, 3, 4), minval=-0.5, maxval=0.5)[0]
    )
    np.testing.assert_array_equal(
        layer.bias[0], jax.random.uniform(bkey, (1, 3), minval=-0.5, maxval=0.5)[0]
    )
    np.testing.assert_array_equal(layer.weight[1:], 0.0)
    np.testing.assert_array_equal(layer.bias[1:], 0.0)
    for t in (0.0, 0.1, 0.9, 1.0):
        np.testing.assert_array_equal(layer.weight_at(t), layer.weight[0])
        np.testing.assert_array_equal(layer.bias_at(t), layer.bias[0])


def test_time_varying_linear_matches_numpy(getkey):
    basis = jaxode.ChebyshevBasis(2, t0=0.0, t1=3.0)
    layer = randomize(jaxode.TimeVaryingLinear(4, 3, basis, key=getkey()), getkey())
    x = np.asarray(jax.random.normal(getkey(), (4,)))
    t = 2.2
    tau = t / 3.0
    phi = np.array([1.0, 2 * tau - 1, 2 * (2 * tau - 1) ** 2 - 1])
    w = np.einsum("k,koi->oi", phi, np.asarray(layer.weight))
    b = phi @ np.asarray(layer.bias)
    np.testing.assert_allclose(layer(t, x), w @ x + b, rtol=1e-12)


def test_fields_match_their_formulas(getkey):
    basis = jaxode.LegendreBasis(2)
    t, width = 0.37, 5
    z = np.asarray(jax.random.normal(getkey(), (width,)))
    phi = np.array([1.0, 2 * t - 1, 6 * t**2 - 6 * t + 1])

    def wb(layer):
        return np.einsum("k,koi->oi", phi, layer.weight), phi @ np.asarray(layer.bias)

    layer_field = randomize(jaxode.LayerField(width, basis, key=getkey()), getkey())
    k, b = wb(layer_field.layer)
    np.testing.assert_allclose(layer_field(t, z), np.tanh(k @ z + b), rtol=1e-12)

    mlp = randomize(jaxode.MLPField(width, 7, basis, key=getkey()), getkey())
    w1, b1 = wb(mlp.inner)
    w2, b2 = wb(mlp.outer)
    np.testing.assert_allclose(mlp(t, z), w2 @ np.tanh(w1 @ z + b1) + b2, rtol=1e-12)

    anti = randomize(jaxode.AntisymmetricField(width, basis, gamma=0.3, key=getkey()), getkey())
    k, b = wb(anti.layer)
    a = k - k.T - 0.3 * np.eye(width)
    np.testing.assert_allclose(anti(t, z), np.tanh(a @ z + b), rtol=1e-12)

    ham = randomize(jaxode.HamiltonianField(width, basis, key=getkey()), getkey())
    k, b = wb(ham.layer)
    state = np.asarray(jax.random.normal(getkey(), (2 * width,)))
    y, aux = state[:width], state[width:]
    expect = np.concatenate([np.tanh(k @ aux + b), -np.tanh(k.T @ y + b)])
    np.testing.assert_allclose(ham(t, state), expect, rtol=1e-12)
    np.testing.assert_array_equal(ham.lift(z), np.concatenate([z, np.zeros(width)]))


def test_antisymmetric_linear_part_has_eigenvalues_with_real_part_minus_gamma(getkey):
    field = randomize(
        jaxode.AntisymmetricField(
            6, jaxode.MonomialBasis(2), gamma=0.25, activation=lambda x: x, key=getkey()
        ),
        getkey(),
    )
    jac = jax.jacfwd(lambda z: field(0.7, z))(jnp.zeros(6))
    np.testing.assert_allclose(np.linalg.eigvals(np.asarray(jac)).real, -0.25, atol=1e-12)


@pytest.mark.parametrize("degree", [0, 1, 3, 6])
def test_parameter_counts_match_the_study(degree, getkey):
    basis = jaxode.LegendreBasis(degree)
    layer = jaxode.LayerField(15, basis, key=getkey())
    assert jaxode.count_parameters(layer) == 240 * (degree + 1)
    ham = jaxode.HamiltonianField(15, basis, key=getkey())
    assert jaxode.count_parameters(ham) == 240 * (degree + 1)
    mlp = jaxode.MLPField(15, 50, basis, key=getkey())
    assert jaxode.count_parameters(mlp) == 1565 * (degree + 1)
    model = jaxode.Surrogate(15, 10, jaxode.NeuralODE(mlp, 1.0), key=getkey())
    assert jaxode.count_dynamics_parameters(model) == 1565 * (degree + 1)
    assert jaxode.count_parameters(model) == 1565 * (degree + 1) + (15 * 15 + 15) + (15 * 10 + 10)


def test_unconstrained_per_step_weights_count(getkey):
    field = jaxode.LayerField(15, jaxode.PiecewiseConstantBasis(12, t1=10.0), key=getkey())
    assert jaxode.count_parameters(field) == 2880


def test_field_errors(getkey):
    with pytest.raises(ValueError, match="`width` must be an integer >= 1"):
        jaxode.LayerField(0, jaxode.ConstantBasis(), key=getkey())
    with pytest.raises(ValueError, match="`hidden` must be an integer >= 1"):
        jaxode.MLPField(3, -4, jaxode.ConstantBasis(), key=getkey())
    with pytest.raises(TypeError, match="`basis` must be an AbstractTimeBasis"):
        jaxode.TimeVaryingLinear(3, 3, "legendre", key=getkey())
    with pytest.raises(ValueError, match="`gamma` must be >= 0"):
        jaxode.AntisymmetricField(3, jaxode.ConstantBasis(), gamma=-1.0, key=getkey())
