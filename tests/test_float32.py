"""The float32 tier: float32 is what users run by default (x64 off), so every building block
is checked there too, against float64 or closed-form references with float32 tolerances.

Each test runs with x64 off (the `float32` fixture; the autouse fixture of conftest restores
x64 afterwards) and builds its arrays and models after switching. Run the tier alone with
`pytest -m float32`.
"""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpy.polynomial as npoly
import optax
import pytest
from helpers import all_bases, all_fields, randomize

import jaxode

pytestmark = [pytest.mark.float32, pytest.mark.usefixtures("float32")]

T0, T1 = -0.5, 2.0
RTOL = 4e-6  # a few float32 ulps (eps = 1.2e-7) through a few operations


def _float_leaves(tree):
    return [x for x in jax.tree_util.tree_leaves(tree) if eqx.is_inexact_array(x)]


def _assert_float32(tree):
    leaves = _float_leaves(tree)
    assert leaves and all(leaf.dtype == jnp.float32 for leaf in leaves), [x.dtype for x in leaves]


def _in_float64(function, *trees):
    """`function(*trees)` with x64 on and every float array of `trees` cast to float64: the
    reference for a float32 computation on the same (float32-representable) values."""
    with jax.enable_x64(True):
        cast = jax.tree_util.tree_map(
            lambda x: jnp.asarray(x, jnp.float64) if eqx.is_inexact_array(x) else x, trees
        )
        out = eqx.filter_jit(function)(*cast)
        return jax.tree_util.tree_map(lambda x: np.asarray(x, np.float64), out)


def test_x64_is_off_and_float32_is_the_default_dtype(getkey):
    assert not jax.config.jax_enable_x64
    basis = jaxode.LegendreBasis(2)
    assert basis(0.3).dtype == jnp.float32
    for field in all_fields(3, basis, getkey()):
        _assert_float32(field)
    field = jaxode.HamiltonianField(3, basis, key=getkey())
    for dynamics in (
        jaxode.NeuralODE(jaxode.MLPField(3, 4, basis, key=getkey()), 1.0),
        jaxode.ResNet(jaxode.LayerField(3, basis, key=getkey()), 1.0, 4),
        jaxode.HamiltonianNet(field, 1.0, 4),
    ):
        _assert_float32(jaxode.Surrogate(2, 2, dynamics, key=getkey()))
    model = jaxode.Surrogate(2, 2, dynamics, key=getkey())
    assert model.predict(jnp.ones((3, 2))).dtype == jnp.float32
    moved = jaxode.project_coefficients(jnp.ones(3), basis, jaxode.MonomialBasis(2))
    assert moved.dtype == jnp.float32


def _basis_reference(basis, ts):
    """phi_k(t) in float64 NumPy from closed forms and numpy.polynomial."""
    tau = (ts - basis.t0) / (basis.t1 - basis.t0)
    if basis.clamp:
        tau = np.clip(tau, 0.0, 1.0)
    n, x = basis.num_basis, 2 * tau - 1
    if isinstance(basis, jaxode.ConstantBasis):
        return np.ones((len(ts), 1))
    if isinstance(basis, jaxode.MonomialBasis):
        return tau[:, None] ** np.arange(n)
    if isinstance(basis, jaxode.LegendreBasis):
        scale = np.sqrt(2 * np.arange(n) + 1) if basis.orthonormal else np.ones(n)
        return npoly.legendre.legvander(x, n - 1) * scale
    if isinstance(basis, jaxode.ChebyshevBasis):
        return npoly.chebyshev.chebvander(x, n - 1)
    if isinstance(basis, jaxode.FourierBasis):
        angle = 2 * np.pi * tau[:, None] * np.arange(1, basis.num_frequencies + 1)
        return np.concatenate([np.ones((len(ts), 1)), np.cos(angle), np.sin(angle)], axis=1)
    index = np.clip(np.floor(tau * basis.pieces), 0, basis.pieces - 1).astype(int)
    return np.eye(basis.pieces)[index]


@pytest.mark.parametrize("basis", all_bases(T0, T1), ids=lambda b: type(b).__name__)
def test_basis_values(basis):
    ts = np.linspace(T0 - 0.5, T1 + 0.5, 37, dtype=np.float32)  # no piece boundary among them
    values = jax.vmap(basis)(jnp.asarray(ts))
    assert values.dtype == jnp.float32
    reference = _basis_reference(basis, ts.astype(np.float64))
    np.testing.assert_allclose(values, reference, rtol=RTOL, atol=RTOL * np.abs(reference).max())


def test_time_varying_linear(getkey):
    basis = jaxode.ChebyshevBasis(3, t0=T0, t1=T1)
    layer = randomize(jaxode.TimeVaryingLinear(5, 4, basis, key=getkey()), getkey())
    _assert_float32(layer)
    x = jax.random.normal(getkey(), (5,))
    for t in (T0, 0.3, T1):
        out = layer(t, x)
        assert out.dtype == jnp.float32
        # By hand, in float64, from the same float32 coefficients.
        phi = npoly.chebyshev.chebvander(np.array([2 * (t - T0) / (T1 - T0) - 1]), 3)[0]
        w = np.einsum("k,koi->oi", phi, np.asarray(layer.weight, np.float64))
        b = phi @ np.asarray(layer.bias, np.float64)
        expect = w @ np.asarray(x, np.float64) + b
        np.testing.assert_allclose(out, expect, rtol=RTOL, atol=RTOL * np.abs(expect).max())


@pytest.mark.parametrize("index", range(4))
def test_every_field(index, getkey):
    basis = jaxode.LegendreBasis(2, t0=T0, t1=T1)
    field = randomize(all_fields(4, basis, getkey())[index], getkey())
    _assert_float32(field)
    z = jax.random.normal(getkey(), (field.state_size,))
    for t in (T0, 0.7, T1):
        out = field(t, z)
        assert out.dtype == jnp.float32
        expect = _in_float64(lambda f, t, z: f(t, z), field, jnp.float32(t), z)
        np.testing.assert_allclose(out, expect, rtol=RTOL, atol=RTOL * np.abs(expect).max())


def test_neural_ode_dopri5_adaptive_on_a_linear_time_varying_ode(getkey):
    # dz/dt = a(t) z with a(t) = sum_k c_k P_k(2t/T - 1): z(t) = z0 exp(int_0^t a), solved
    # with the defaults users get (Dopri5, PIDController(1e-6, 1e-8), throw=True).
    horizon = 1.5
    basis = jaxode.LegendreBasis(3, t1=horizon)
    field = jaxode.LayerField(2, basis, activation=lambda x: x, key=getkey())
    c = np.array([0.3, -0.8, 0.5, 0.4])
    weight = jnp.asarray(c[:, None, None] * np.eye(2), jnp.float32)
    field = eqx.tree_at(
        lambda f: (f.layer.weight, f.layer.bias), field, (weight, jnp.zeros((4, 2)))
    )
    ts = np.linspace(0.0, horizon, 7)[1:]
    ode = jaxode.NeuralODE(field, horizon, ts=ts)
    assert isinstance(ode.solver, diffrax.Dopri5) and ode.throw
    trajectory = ode.solve(jnp.array([1.0, -2.0]))
    assert bool(trajectory.succeeded)
    assert trajectory.states.dtype == jnp.float32
    exponent = npoly.Legendre(c, domain=[0.0, horizon]).integ(lbnd=0.0)(ts)
    exact = np.exp(exponent)[:, None] * np.array([1.0, -2.0])
    # The controller's rtol of 1e-6 leaves a global error of a few 1e-6 (measured 4.7e-6).
    np.testing.assert_allclose(trajectory.states, exact, rtol=1e-5)
    np.testing.assert_allclose(trajectory.ts, ts, rtol=1e-6)


def _phi(basis, t):
    return _basis_reference(basis, np.array([t]))[0]


def _numpy_weights(layer, basis, t):
    phi = _phi(basis, t)
    w = np.einsum("k,koi->oi", phi, np.asarray(layer.weight, np.float64))
    return w, phi @ np.asarray(layer.bias, np.float64)


@pytest.mark.parametrize("steps", [10, 100])
@pytest.mark.parametrize("piecewise", [False, True], ids=["legendre", "piecewise"])
def test_resnet_against_a_numpy_float64_loop(steps, piecewise, getkey):
    basis = jaxode.PiecewiseConstantBasis(steps) if piecewise else jaxode.LegendreBasis(2)
    field = randomize(jaxode.LayerField(3, basis, key=getkey()), getkey(), 0.4)
    z0 = jax.random.normal(getkey(), (3,))
    out = jaxode.ResNet(field, 1.0, steps)(z0)
    assert out.dtype == jnp.float32
    z, h = np.asarray(z0, np.float64), 1.0 / steps
    for j in range(steps):
        # Step j uses piece j exactly (the NumPy loop knows the index, not a rounded time).
        k, b = (
            (
                np.asarray(field.layer.weight[j], np.float64),
                np.asarray(field.layer.bias[j], np.float64),
            )
            if piecewise
            else _numpy_weights(field.layer, basis, j * h)
        )
        z = z + h * np.tanh(k @ z + b)
    np.testing.assert_allclose(out, z, rtol=RTOL, atol=RTOL * np.abs(z).max())


@pytest.mark.parametrize("steps", [10, 100])
@pytest.mark.parametrize("piecewise", [False, True], ids=["monomial", "piecewise"])
def test_hamiltonian_net_against_a_numpy_float64_loop(steps, piecewise, getkey):
    basis = jaxode.PiecewiseConstantBasis(steps) if piecewise else jaxode.MonomialBasis(2)
    field = randomize(jaxode.HamiltonianField(3, basis, key=getkey()), getkey(), 0.4)
    start = jax.random.normal(getkey(), (3,))
    trajectory = jaxode.HamiltonianNet(field, 1.0, steps).solve(start)
    assert trajectory.states.dtype == jnp.float32
    y, z, h = np.asarray(start, np.float64), np.zeros(3), 1.0 / steps
    for j in range(steps):
        k, b = (
            (
                np.asarray(field.layer.weight[j], np.float64),
                np.asarray(field.layer.bias[j], np.float64),
            )
            if piecewise
            else _numpy_weights(field.layer, basis, j * h)
        )
        z = z - h * np.tanh(k.T @ y + b)
        y = y + h * np.tanh(k @ z + b)
    np.testing.assert_allclose(trajectory.final, y, rtol=RTOL, atol=RTOL * np.abs(y).max())
    np.testing.assert_allclose(trajectory.states[-1, 3:], z, rtol=RTOL, atol=RTOL * np.abs(z).max())


def test_one_training_step_of_fit_is_one_optax_adam_step(getkey):
    field = jaxode.MLPField(3, 4, jaxode.LegendreBasis(1), key=getkey())
    model = randomize(
        jaxode.Surrogate(2, 2, jaxode.ResNet(field, 1.0, 3), key=getkey()), getkey(), 0.5
    )
    _assert_float32(model)
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (16, 2))
    y = np.stack([x[:, 0] * x[:, 1], np.sin(x[:, 0])], axis=1)
    optimiser = optax.adam(1e-2)
    key = getkey()
    result = jaxode.fit(
        model, (x, y), optimiser, key=key, steps=1, batch_size=8, count_evaluations=False
    )
    assert result.steps == 1 and result.status == "completed"
    _assert_float32(result.model)
    # The same step by hand: the first minibatch of epoch 0, the float32 MSE gradient, Adam.
    index = np.asarray(jaxode.EpochSampler().indices(key, 0, len(x), 8))
    xs, ys = jnp.asarray(x[index], jnp.float32), jnp.asarray(y[index], jnp.float32)
    params, static = eqx.partition(model, eqx.is_inexact_array)
    loss = lambda p: jnp.mean((eqx.combine(p, static).predict(xs) - ys) ** 2)
    grads = jax.jit(jax.grad(loss))(params)
    _assert_float32(grads)
    updates, _ = optimiser.update(grads, optimiser.init(params), params)
    expected = eqx.apply_updates(params, updates)
    got, want = _float_leaves(result.model), _float_leaves(expected)
    assert len(got) == len(want)
    for a, b, p in zip(got, want, _float_leaves(params)):
        assert a.dtype == jnp.float32
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=1e-7)
        # Adam's first step moves every parameter with a nonzero gradient by about the rate.
        assert np.abs(np.asarray(a) - np.asarray(p)).max() == pytest.approx(1e-2, rel=1e-3)


def test_a_float32_cohort_member_is_its_single_run_to_float32_rounding():
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (40, 2)).astype(np.float32)
    y = np.stack([np.sin(2 * x[:, 0]) * x[:, 1], np.cos(x[:, 0] + x[:, 1])], axis=1)

    def model(seed):
        k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
        field = jaxode.MLPField(3, 5, jaxode.LegendreBasis(2), key=k1)
        return jaxode.Surrogate(2, 2, jaxode.ResNet(field, 1.0, 4), key=k2)

    keys = [jax.random.PRNGKey(10 + s) for s in range(2)]
    common = dict(steps=8, batch_size=8, eval_every=4, count_evaluations=False)
    cohort = jaxode.fit_cohort([model(0), model(1)], (x, y), optax.adam(1e-2), keys=keys, **common)
    alone = jaxode.fit(model(1), (x, y), optax.adam(1e-2), key=keys[1], **common)
    ours = jax.tree_util.tree_leaves(eqx.filter(cohort[1].model, eqx.is_inexact_array))
    theirs = jax.tree_util.tree_leaves(eqx.filter(alone.model, eqx.is_inexact_array))
    assert all(a.dtype == jnp.float32 for a in ours)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)


def test_a_float32_ensemble_is_its_members_mean_and_differentiates_in_float32(tmp_path):
    """An ensemble trained and used with x64 off: its mean is its members' (each loaded on
    its own), its surrogate function is float32 and agrees with `predict`, and so is its
    gradient with respect to the inputs (its values: tests/test_sensitivity.py, float64)."""
    config = jaxode.RunConfig.from_dict(
        {
            "data": {"dataset": "elm"},
            "model": {"model": "resnet", "field": "layer", "width": 3, "steps": 2},
            "train": {"iterations": 10, "batch_size": 32},
        }
    )
    ensemble, metrics = jaxode.train_ensemble(config, tmp_path / "ens", size=2, progress=False)
    x, y = jaxode.load_dataset("elm").arrays("test", normalised=False)
    members = [jaxode.load(tmp_path / "ens" / f"seed-{s}").predict(x) for s in (0, 1)]
    np.testing.assert_allclose(ensemble.predict(x), np.mean(members, axis=0), rtol=1e-12)
    error = np.linalg.norm(np.mean(members, axis=0) - y) / np.linalg.norm(y)
    assert metrics["test_physical_global"] == pytest.approx(error, rel=1e-10)
    function = jaxode.surrogate_function(ensemble)
    value = function(jnp.asarray(x[0], jnp.float32))
    assert value.dtype == jnp.float32
    np.testing.assert_allclose(value, ensemble.predict(x[:1])[0], rtol=1e-4, atol=1e-4)
    assert jax.grad(lambda v: function(v)[0])(jnp.asarray(x[0], jnp.float32)).dtype == (jnp.float32)
