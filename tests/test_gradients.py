import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import randomize

import jaxode


def _surrogate(dynamics, key):
    return randomize(jaxode.Surrogate(3, 2, dynamics, key=key), jax.random.fold_in(key, 1), 0.6)


def _loss(model, xs, ys):
    return jnp.mean((model.predict(xs) - ys) ** 2)


def _directional_check(model, xs, ys, key):
    params, static = eqx.partition(model, eqx.is_inexact_array)
    grad = eqx.filter_grad(_loss)(model, xs, ys)
    leaves, treedef = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(key, len(leaves))
    direction = jax.tree_util.tree_unflatten(
        treedef, [jax.random.normal(k, x.shape) for k, x in zip(keys, leaves)]
    )
    analytic = sum(
        jnp.vdot(g, d)
        for g, d in zip(jax.tree_util.tree_leaves(grad), jax.tree_util.tree_leaves(direction))
    )
    eps = 1e-6

    def at(s):
        shifted = jax.tree_util.tree_map(lambda p, d: p + s * d, params, direction)
        return _loss(eqx.combine(shifted, static), xs, ys)

    numeric = (at(eps) - at(-eps)) / (2 * eps)
    return float(analytic), float(numeric)


def _dynamics_catalogue(key):
    basis = jaxode.LegendreBasis(2)
    mlp = jaxode.MLPField(4, 6, basis, key=key)
    ham = jaxode.HamiltonianField(4, jaxode.MonomialBasis(2), key=key)
    fixed = dict(stepsize_controller=diffrax.ConstantStepSize(), dt0=1.0 / 8)
    return [
        jaxode.NeuralODE(mlp, 1.0, solver=diffrax.Dopri5(), **fixed),
        jaxode.NeuralODE(ham, 1.0, solver=diffrax.Tsit5(), **fixed),
        jaxode.ResNet(jaxode.LayerField(4, jaxode.PiecewiseConstantBasis(6), key=key), 1.0, 6),
        jaxode.HamiltonianNet(ham, 1.0, 6),
    ]


@pytest.mark.parametrize("index", range(4))
def test_discretize_then_optimize_equals_finite_differences(index, getkey):
    dynamics = _dynamics_catalogue(getkey())[index]
    model = _surrogate(dynamics, getkey())
    xs, ys = jax.random.normal(getkey(), (5, 3)), jax.random.normal(getkey(), (5, 2))
    analytic, numeric = _directional_check(model, xs, ys, getkey())
    assert abs(analytic - numeric) <= 1e-8 * abs(numeric)


def test_adaptive_discretize_then_optimize_equals_finite_differences(getkey):
    # Tight tolerances make the accepted step sequence locally constant in the parameters.
    field = jaxode.MLPField(4, 6, jaxode.LegendreBasis(2), key=getkey())
    dynamics = jaxode.NeuralODE(
        field, 1.0, stepsize_controller=diffrax.PIDController(rtol=1e-10, atol=1e-10)
    )
    model = _surrogate(dynamics, getkey())
    xs, ys = jax.random.normal(getkey(), (5, 3)), jax.random.normal(getkey(), (5, 2))
    analytic, numeric = _directional_check(model, xs, ys, getkey())
    assert abs(analytic - numeric) <= 1e-8 * abs(numeric)


def test_continuous_adjoint_converges_to_discrete_gradient(getkey):
    field = jaxode.MLPField(4, 6, jaxode.LegendreBasis(2), key=getkey())
    xs, ys = jax.random.normal(getkey(), (5, 3)), jax.random.normal(getkey(), (5, 2))
    base = _surrogate(jaxode.NeuralODE(field, 1.0), getkey())

    def gradient(tol, paradigm):
        model = eqx.tree_at(
            lambda m: (m.dynamics.stepsize_controller, m.dynamics.paradigm),
            base,
            (diffrax.PIDController(rtol=tol, atol=tol), paradigm),
        )
        flat, _ = jax.flatten_util.ravel_pytree(
            eqx.filter(eqx.filter_grad(_loss)(model, xs, ys), eqx.is_inexact_array)
        )
        return np.asarray(flat)

    reference = gradient(1e-12, jaxode.DiscretizeThenOptimize())
    tolerances = (1e-3, 1e-5, 1e-7, 1e-9)  # Python floats: NumPy scalars would be differentiated
    errors = [
        np.linalg.norm(gradient(tol, jaxode.OptimizeThenDiscretize()) - reference)
        / np.linalg.norm(reference)
        for tol in tolerances
    ]
    assert all(later < earlier for earlier, later in zip(errors, errors[1:])), errors
    assert errors[-1] < 1e-8
    # The gap closes like the solver tolerance: slope of log error on log tolerance near 1
    # (measured 1.18; 4/5 is the rate of a fifth-order solver's per-step error control).
    slope = np.polyfit(np.log(tolerances), np.log(errors), 1)[0]
    assert 0.8 < slope < 1.5, (slope, errors)
    # OptimizeThenDiscretize is Diffrax's backsolve adjoint: the same numbers.
    diffrax_direct = gradient(1e-9, diffrax.BacksolveAdjoint())
    np.testing.assert_array_equal(diffrax_direct, gradient(1e-9, jaxode.OptimizeThenDiscretize()))
