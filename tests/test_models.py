import dataclasses

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpy.polynomial as npoly
import pytest
from helpers import all_fields, randomize

import jaxode

T1 = 1.5


def _tight(field, **kwargs):
    return jaxode.NeuralODE(
        field,
        T1,
        solver=diffrax.Tsit5(),
        stepsize_controller=diffrax.PIDController(rtol=1e-12, atol=1e-12),
        max_steps=100_000,
        **kwargs,
    )


@pytest.mark.parametrize("index", range(4))
def test_resnet_equals_diffrax_euler(index, getkey):
    field = randomize(all_fields(4, jaxode.LegendreBasis(2, t1=T1), getkey())[index], getkey())
    z0 = jax.random.normal(getkey(), (4,))
    for steps in (1, 7, 20):
        resnet = jaxode.ResNet(field, T1, steps)
        euler = jaxode.NeuralODE(
            field,
            T1,
            solver=diffrax.Euler(),
            stepsize_controller=diffrax.ConstantStepSize(),
            dt0=T1 / steps,
        )
        np.testing.assert_allclose(resnet(z0), euler(z0), rtol=1e-10, atol=1e-10)
        trajectory = resnet.solve(z0)
        assert trajectory.states.shape == (steps + 1, field.state_size)
        np.testing.assert_allclose(trajectory.ts[-1], T1, rtol=1e-14)


def _order(step_sizes, errors):
    return np.polyfit(np.log(step_sizes), np.log(errors), 1)[0]


@pytest.mark.parametrize("index", range(4))
def test_resnet_converges_to_neural_ode_at_first_order(index, getkey):
    field = randomize(all_fields(3, jaxode.LegendreBasis(2, t1=T1), getkey())[index], getkey(), 0.4)
    z0 = jax.random.normal(getkey(), (3,))
    exact = _tight(field)(z0)
    steps = np.array([40, 80, 160, 320])
    errors = [float(jnp.max(jnp.abs(jaxode.ResNet(field, T1, int(n))(z0) - exact))) for n in steps]
    assert 0.9 < _order(T1 / steps, errors) < 1.1


def test_hamiltonian_net_matches_its_scheme_and_converges(getkey):
    width, steps = 3, 9
    field = randomize(
        jaxode.HamiltonianField(width, jaxode.MonomialBasis(2, t1=T1), key=getkey()), getkey()
    )
    start = jax.random.normal(getkey(), (width,))
    y, z, h = np.asarray(start), np.zeros(width), T1 / steps
    for j in range(steps):
        t = j * h
        k, b = np.asarray(field.layer.weight_at(t)), np.asarray(field.layer.bias_at(t))
        z = z - h * np.tanh(k.T @ y + b)
        y = y + h * np.tanh(k @ z + b)
    trajectory = jaxode.HamiltonianNet(field, T1, steps).solve(start)
    np.testing.assert_allclose(trajectory.final, y, rtol=1e-12)
    np.testing.assert_allclose(trajectory.states[-1, width:], z, rtol=1e-12)
    exact = _tight(field)(start)
    counts = np.array([50, 100, 200, 400])
    errors = [
        float(jnp.max(jnp.abs(jaxode.HamiltonianNet(field, T1, int(n))(start) - exact)))
        for n in counts
    ]
    assert 0.9 < _order(T1 / counts, errors) < 1.1


def test_linear_time_varying_ode_with_known_solution(getkey):
    # dz/dt = a(t) z with a(t) = sum_k c_k P_k(2t/T - 1): z(t) = z0 exp(int_0^t a).
    basis = jaxode.LegendreBasis(3, t1=T1)
    field = jaxode.LayerField(2, basis, activation=lambda x: x, key=getkey())
    c = np.array([0.3, -0.8, 0.5, 0.4])
    field = eqx.tree_at(
        lambda f: (f.layer.weight, f.layer.bias),
        field,
        (jnp.asarray(c[:, None, None] * np.eye(2)), jnp.zeros((4, 2))),
    )
    ts = np.linspace(0.0, T1, 7)[1:]
    z0 = jnp.array([1.0, -2.0])
    trajectory = _tight(field, ts=ts).solve(z0)
    a = npoly.Legendre(c, domain=[0.0, T1])
    exponent = a.integ(lbnd=0.0)(ts)
    np.testing.assert_allclose(
        trajectory.states, np.exp(exponent)[:, None] * np.asarray(z0), rtol=1e-9
    )
    np.testing.assert_allclose(trajectory.ts, ts, rtol=1e-14)
    assert bool(trajectory.succeeded)


def test_max_steps_raises_or_returns_status(getkey):
    field = randomize(jaxode.MLPField(3, 5, jaxode.LegendreBasis(2), key=getkey()), getkey())
    z0 = jnp.ones(3)
    strict = jaxode.NeuralODE(
        field, 1.0, stepsize_controller=diffrax.PIDController(rtol=1e-12, atol=1e-12), max_steps=3
    )
    with pytest.raises(Exception, match="increase `max_steps`"):
        jax.block_until_ready(strict(z0))
    lenient = dataclasses.replace(strict, throw=False)
    trajectory = lenient.solve(z0)
    assert not bool(trajectory.succeeded)
    assert trajectory.result == diffrax.RESULTS.max_steps_reached
    assert int(trajectory.num_steps) == 3


def test_dynamics_argument_errors(getkey):
    field = jaxode.LayerField(3, jaxode.ConstantBasis(), key=getkey())
    with pytest.raises(ValueError, match="`t1` must be greater than `t0`"):
        jaxode.NeuralODE(field, 0.0)
    with pytest.raises(ValueError, match="`t1` must be greater than `t0`"):
        jaxode.ResNet(field, 1.0, 4, t0=2.0)
    with pytest.raises(ValueError, match="`steps` must be an integer >= 1"):
        jaxode.ResNet(field, 1.0, 0)
    with pytest.raises(TypeError, match="HamiltonianField"):
        jaxode.HamiltonianNet(field, 1.0, 4)
    with pytest.raises(ValueError, match="`dt0` is required"):
        jaxode.NeuralODE(field, 1.0, stepsize_controller=diffrax.ConstantStepSize())
    with pytest.raises(ValueError, match="`ts` must lie in"):
        jaxode.NeuralODE(field, 1.0, ts=[0.5, 2.0])
    with pytest.raises(TypeError, match="`paradigm` must be"):
        jaxode.NeuralODE(field, 1.0, paradigm="adjoint")
    with pytest.raises(ValueError, match="`features` must have shape \\(3,\\)"):
        jaxode.ResNet(field, 1.0, 2)(jnp.ones(4))


def test_surrogate_shapes_and_input_errors(getkey):
    dynamics = jaxode.NeuralODE(jaxode.LayerField(4, jaxode.LegendreBasis(1), key=getkey()), 1.0)
    model = jaxode.Surrogate(3, 2, dynamics, key=getkey())
    xs = jax.random.normal(getkey(), (5, 3))
    out = model.predict(xs)
    assert out.shape == (5, 2)
    # Shared steps: the batch is one ODE, equal to per-sample solves up to the tolerance.
    np.testing.assert_allclose(out[2], model(xs[2]), rtol=1e-5, atol=1e-6)
    per_sample = dataclasses.replace(dynamics, shared_steps=False)
    separate = eqx.tree_at(lambda m: m.dynamics, model, per_sample)
    np.testing.assert_allclose(separate.predict(xs)[2], model(xs[2]), rtol=1e-13)
    z0 = np.tanh(
        np.asarray(model.opening.weight) @ np.asarray(xs[2]) + np.asarray(model.opening.bias)
    )
    np.testing.assert_allclose(model.features(xs[2]), z0, rtol=1e-12)
    with pytest.raises(ValueError, match="`x` must have shape \\(3,\\)"):
        model(jnp.ones(4))
    with pytest.raises(ValueError, match="`xs` must have shape \\(batch, 3\\)"):
        model.predict(jnp.ones((5, 2)))
    with pytest.raises(Exception, match="`x` contains NaN or infinite values"):
        jax.block_until_ready(model(jnp.array([1.0, jnp.nan, 0.0])))
    with pytest.raises(Exception, match="`x` contains NaN or infinite values"):
        jax.block_until_ready(
            eqx.filter_jit(lambda m, x: m.predict(x))(model, xs.at[1, 1].set(jnp.inf))
        )
    with pytest.raises(TypeError, match="`dynamics` must be"):
        jaxode.Surrogate(3, 2, dynamics.field, key=getkey())
    with pytest.raises(ValueError, match="`in_size` must be an integer >= 1"):
        jaxode.Surrogate(0, 2, dynamics, key=getkey())


def test_library_defaults_to_float32_without_x64():
    # conftest enables x64 for this process; the library's own default is checked in a fresh one.
    import subprocess
    import sys

    code = (
        "import jax, jax.numpy as jnp, jaxode\n"
        "k = jax.random.PRNGKey(0)\n"
        "m = jaxode.Surrogate(3, 2, jaxode.NeuralODE("
        "jaxode.MLPField(4, 5, jaxode.LegendreBasis(2), key=k), 1.0), key=k)\n"
        "out = m.predict(jnp.ones((2, 3)))\n"
        "assert not jax.config.jax_enable_x64\n"
        "print(out.dtype, m.dynamics.field.inner.weight.dtype, jaxode.project_coefficients("
        "jnp.ones(3), jaxode.LegendreBasis(2), jaxode.MonomialBasis(2)).dtype)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["float32", "float32", "float32"]


def test_shared_step_batch_solve_agrees_with_separate_solves(getkey):
    field = randomize(jaxode.MLPField(4, 6, jaxode.LegendreBasis(3), key=getkey()), getkey())
    z0 = jax.random.normal(getkey(), (6, 4))
    for field_ in (
        field,
        randomize(jaxode.HamiltonianField(4, jaxode.LegendreBasis(1), key=getkey()), getkey()),
    ):
        ode = _tight(field_, ts=[0.5, 1.0, T1])
        shared = ode.solve_batch(z0)
        separate = dataclasses.replace(ode, shared_steps=False).solve_batch(z0)
        assert shared.states.shape == separate.states.shape == (6, 3, field_.state_size)
        np.testing.assert_allclose(shared.states, separate.states, rtol=1e-9, atol=1e-10)
        np.testing.assert_allclose(shared.final, jax.vmap(ode)(z0), rtol=1e-9, atol=1e-10)
        assert shared.num_steps.shape == () and separate.num_steps.shape == (6,)


@pytest.mark.parametrize(
    "x64",
    [
        pytest.param(False, id="float32", marks=pytest.mark.float32),
        pytest.param(True, id="float64"),
    ],
)
@pytest.mark.parametrize("window", [(0.0, 1.0), (-0.5, 2.0)])
def test_step_j_of_resnet_and_hamiltonian_net_uses_piece_j(x64, window, getkey):
    # With one piece per step and weights 0, piece j has bias (-1)^j: the state moves by
    # +h or -h at step j, and a step that used a neighbouring piece would move the other way.
    jax.config.update("jax_enable_x64", x64)
    dtype = jnp.float64 if x64 else jnp.float32
    t0, t1 = window
    identity = lambda x: x
    for steps in (100, 1000):
        basis = jaxode.PiecewiseConstantBasis(steps, t0=t0, t1=t1)
        sign = (-1.0) ** np.arange(steps)
        h = (t1 - t0) / steps

        def with_signs(field, sign=sign):
            weights = (jnp.zeros_like(field.layer.weight), jnp.asarray(sign[:, None], dtype))
            return eqx.tree_at(lambda f: (f.layer.weight, f.layer.bias), field, weights)

        resnet = jaxode.ResNet(
            with_signs(jaxode.LayerField(1, basis, activation=identity, key=getkey())),
            t1,
            steps,
            t0=t0,
        )
        hamnet = jaxode.HamiltonianNet(
            with_signs(jaxode.HamiltonianField(1, basis, activation=identity, key=getkey())),
            t1,
            steps,
            t0=t0,
        )
        # ResNet: dz = +h b_j. HamiltonianNet: dZ = -h b_j, then dY = +h b_j.
        for dynamics, directions in ((resnet, [1.0]), (hamnet, [1.0, -1.0])):
            states = dynamics.solve(jnp.zeros(1, dtype)).states
            assert states.dtype == dtype and states.shape == (steps + 1, len(directions))
            moves = np.diff(np.asarray(states, np.float64), axis=0) / h
            wrong = np.flatnonzero(
                np.any(np.abs(moves - sign[:, None] * directions) > 1e-2, axis=1)
            )
            assert wrong.size == 0, (
                f"{type(dynamics).__name__}, {steps} steps: steps {wrong[:5]} use another piece"
            )
