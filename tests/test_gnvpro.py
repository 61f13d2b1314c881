"""GNvpro: the reduced (variable-projection) objective, its gradient and readout against
finite differences and closed forms, the Gauss-Newton-Krylov loop on a linear problem, and
the comparison with Adam on ELM at equal work."""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import optax
import optimistix as optx
import pytest
from helpers import randomize
from jax.flatten_util import ravel_pytree

import jaxode
from jaxode._training._gnvpro import (
    GaussNewtonKrylov,
    TruncatedCGDescent,
    VarProObjective,
    _check_dynamics,
    fit_gnvpro,
    gauss_newton_krylov,
    split_readout,
)


def small_surrogate(key, kind="resnet", width=3, steps=4):
    k1, k2 = jax.random.split(key)
    basis = jaxode.LegendreBasis(2)
    if kind == "resnet":
        dynamics = jaxode.ResNet(jaxode.LayerField(width, basis, key=k1), 1.0, steps)
    else:
        dynamics = jaxode.HamiltonianNet(jaxode.HamiltonianField(width, basis, key=k1), 1.0, steps)
    return jaxode.Surrogate(2, 2, dynamics, key=k2)


def random_data(n=20, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, size=(n, 2))
    y = np.stack([np.sin(2 * x[:, 0]) * x[:, 1], np.cos(x[:, 0] + x[:, 1])], axis=1)
    return x, y + 0.05 * rng.normal(size=y.shape)


@pytest.mark.parametrize("kind", ["resnet", "hamiltonian"])
def test_reduced_gradient_matches_central_differences(getkey, kind):
    model = randomize(small_surrogate(getkey(), kind), getkey(), scale=0.5)
    x, y = (jnp.asarray(a) for a in random_data())
    theta, rest = split_readout(model)
    objective = VarProObjective(rest, ridge=1e-3, tikhonov=1e-2)
    flat, unravel = ravel_pytree(theta)
    phi = jax.jit(lambda v: objective.objective(unravel(v), x, y))
    eps = 1e-6
    basis = np.eye(flat.size)
    fd = np.array([(phi(flat + eps * e) - phi(flat - eps * e)) / (2 * eps) for e in basis])
    gradient = ravel_pytree(eqx.filter_jit(objective.gradient)(theta, x, y))[0]
    assert np.linalg.norm(gradient - fd) <= 1e-7 * np.linalg.norm(fd)

    # J^T r of the reduced residual (differentiated through the solve) is the same gradient.
    @eqx.filter_jit
    def jacobian_transpose_residual(theta):
        residual, vjp = jax.vjp(lambda t: objective.residual(t, (x, y))[0], theta)
        return vjp(residual)[0]

    jtr = jacobian_transpose_residual(theta)
    np.testing.assert_allclose(ravel_pytree(jtr)[0], gradient, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("penalise_bias", [True, False])
def test_readout_is_the_closed_form_ridge_solution(penalise_bias):
    rng = np.random.default_rng(1)
    n, width, ridge = 30, 4, 1e-2
    z, c = rng.normal(size=(n, width)), rng.normal(size=(n, 3))
    objective = VarProObjective(None, ridge=ridge, tikhonov=0.0, penalise_bias=penalise_bias)
    weight, bias = objective.readout(jnp.asarray(z), jnp.asarray(c))
    if penalise_bias:
        # min (1/2n)||A W^T - C||^2 + (ridge/2)||W||^2 as one augmented least-squares system.
        a = np.concatenate([z, np.ones((n, 1))], axis=1)
        system = np.concatenate([a, np.sqrt(n * ridge) * np.eye(width + 1)])
        rhs = np.concatenate([c, np.zeros((width + 1, 3))])
        full = np.linalg.lstsq(system, rhs, rcond=None)[0].T
        expected = full[:, :width], full[:, width]
    else:
        expected = jaxode.ridge_readout(z, c, n * ridge)
    np.testing.assert_allclose(weight, expected[0], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(bias, expected[1], rtol=1e-10, atol=1e-12)


def test_gauss_newton_solves_a_linear_problem_in_one_iteration():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(40, 6)), rng.normal(size=40)
    args = (jnp.asarray(a), jnp.asarray(b))

    def fn(y, args):
        matrix, rhs = args
        return matrix @ jnp.concatenate([y["first"], y["second"]]) - rhs, None

    y0 = {"first": jnp.zeros(2), "second": jnp.ones(4)}
    result = gauss_newton_krylov(fn, y0, args, max_iterations=2, max_inner=6, inner_rtol=1e-12)
    solution = np.linalg.lstsq(a, b, rcond=None)[0]
    first = result.history[1]
    assert first["accepted"]
    assert first["objective"] == pytest.approx(0.5 * np.sum((a @ solution - b) ** 2), rel=1e-12)
    assert first["gradient_norm"] < 1e-10
    y = np.concatenate([result.model["first"], result.model["second"]])
    np.testing.assert_allclose(y, solution, rtol=1e-10, atol=1e-12)
    # The start: one linearisation, one predicted reduction, J^T r and 6 CG iterations.
    assert result.history[0]["evaluations"] == 1 + 1 + 1 + 2 * 6
    # The same solver object through optimistix's own driver.
    solver = GaussNewtonKrylov(1e-10, 1e-10, max_inner=6, inner_rtol=1e-12)
    out = optx.least_squares(lambda y, args: fn(y, args)[0], solver, y0, args, max_steps=8)
    value = np.concatenate([out.value["first"], out.value["second"]])
    np.testing.assert_allclose(value, solution, rtol=1e-10, atol=1e-12)


def test_truncated_cg_step_follows_the_steihaug_path():
    rng = np.random.default_rng(4)
    jac = lx.MatrixLinearOperator(jnp.asarray(rng.normal(size=(20, 5))))
    residual = jnp.asarray(rng.normal(size=20))
    f_info = optx.FunctionInfo.ResidualJac(residual, jac)
    descent = TruncatedCGDescent(max_steps=5, rtol=0.0)
    state = descent.query(jnp.zeros(5), f_info, descent.init(jnp.zeros(5), None))
    j, g = jac.as_matrix(), jac.as_matrix().T @ residual
    full = -np.linalg.solve(j.T @ j, g)
    np.testing.assert_allclose(descent.step(jnp.asarray(2.0), state)[0], full, rtol=1e-9)
    assert np.all(np.diff(state.norms) >= -1e-12)  # Steihaug: the iterates' norms increase

    def model(p):
        return g @ p + 0.5 * np.sum((j @ p) ** 2)

    for fraction in (0.05, 0.3, 0.8):
        step = np.asarray(descent.step(jnp.asarray(fraction), state)[0])
        radius = fraction * np.linalg.norm(full)
        assert np.linalg.norm(step) == pytest.approx(radius, rel=1e-10)
        cauchy = -radius * g / np.linalg.norm(g)  # at least as good as the Cauchy step
        if g @ (j.T @ (j @ g)) > 0:
            length = min(radius, (g @ g) / (g @ (j.T @ (j @ g))) * np.linalg.norm(g))
            cauchy = -length * g / np.linalg.norm(g)
        assert model(step) <= model(cauchy) + 1e-12


def test_fit_gnvpro_descends_compiles_once_and_returns_the_ridge_readout(getkey):
    model = small_surrogate(getkey())
    x, y = random_data(n=40)
    xv, yv = random_data(n=10, seed=3)
    result = fit_gnvpro(model, (x, y), val=(xv, yv), max_iterations=6, max_inner=5)
    assert result.num_traces == 1
    objectives = [row["objective"] for row in result.history]
    assert all(b <= a for a, b in zip(objectives, objectives[1:]))
    assert objectives[-1] < 0.5 * objectives[0]
    assert {"val_global", "val_per_sample"} <= set(result.history[-1])
    passes = [row["evaluations"] for row in result.history]
    assert passes[-1] == result.evaluations["total"] and all(np.diff(passes) > 0)
    theta, rest = split_readout(result.model)
    objective = VarProObjective(rest, ridge=1e-3, tikhonov=1e-5)
    weight, bias = objective.readout(objective.features(theta, jnp.asarray(x)), jnp.asarray(y))
    np.testing.assert_allclose(result.model.readout.weight, weight, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(result.model.readout.bias, bias, rtol=1e-9, atol=1e-12)
    assert objectives[-1] == pytest.approx(float(objective.objective(theta, x, y)), rel=1e-10)


def test_fit_gnvpro_runs_in_float32(float32, getkey):
    model = small_surrogate(getkey())
    x, y = random_data(n=40)
    result = fit_gnvpro(model, (x, y), max_iterations=3, max_inner=4)
    assert result.model.readout.weight.dtype == jnp.float32
    objectives = [row["objective"] for row in result.history]
    assert np.all(np.isfinite(objectives)) and objectives[-1] < objectives[0]


def test_bad_arguments_are_named(getkey):
    model = small_surrogate(getkey())
    data = random_data()
    for kwargs, name in [
        (dict(ridge=0.0), "`ridge`"),
        (dict(tikhonov=-1.0), "`tikhonov`"),
        (dict(max_iterations=0), "`max_iterations`"),
        (dict(max_inner=0), "`max_inner`"),
        (dict(max_evaluations=-5), "`max_evaluations`"),
        (dict(inner_rtol=-1.0), "`inner_rtol`"),
        (dict(val=(data[0][:, :1], data[1])), "`val`"),
    ]:
        with pytest.raises(ValueError, match=name):
            fit_gnvpro(model, data, **kwargs)
    with pytest.raises(ValueError, match="`train`"):
        fit_gnvpro(model, (data[0], data[1][:5]))
    with pytest.raises(TypeError, match="`penalise_bias`"):
        fit_gnvpro(model, data, penalise_bias=1)
    field = jaxode.MLPField(3, 4, jaxode.LegendreBasis(1), key=getkey())
    node = jaxode.Surrogate(2, 2, jaxode.NeuralODE(field, 1.0), key=getkey())
    with pytest.raises(TypeError, match="forward mode"):
        fit_gnvpro(node, data)
    direct = eqx.tree_at(lambda m: m.dynamics.paradigm, node, diffrax.DirectAdjoint())
    _check_dynamics(direct)  # accepted (not trained here: slow to compile)


class HalfSquaredError(jaxode.AbstractLoss):
    """The study's misfit: mean over samples of half the squared error summed over outputs."""

    def __call__(self, predictions, targets):
        return 0.5 * jnp.mean(jnp.sum((predictions - targets) ** 2, axis=-1))


def test_gnvpro_beats_adam_at_equal_work_on_elm():
    """The study's ResNet (width 15, 12 steps) on 256 ELM training samples: GNvpro and Adam
    at the study's settings (learning rate 1e-3, batches of 32, the same regularised
    objective) from one start, with the same number of passes over the training set (Adam: 2
    per epoch). Compared by the reduced objective, that is with Adam's readout replaced by
    its best ridge readout. Measured: GNvpro ends at 0.22 to 0.25 times Adam's objective
    (three data subsets and initialisations); the test asserts half. Adam at learning rate
    1e-2 does about as well as GNvpro (see benchmarks/gnvpro_vs_adam.py): no claim here."""
    data = jaxode.load_dataset("elm")
    x, y = data.arrays("train")
    x, y = x[:256], y[:256]
    config = (
        jaxode.RunConfig()
        .replace("model", model="resnet", field="layer", width=15, steps=12)
        .replace("train", precision="float64")
    )
    model = jaxode.build_model(config, data.in_size, data.out_size, key=jax.random.PRNGKey(0))
    gn = fit_gnvpro(model, (x, y), max_iterations=40, max_inner=10, max_evaluations=200)
    passes = gn.evaluations["total"]
    adam = jaxode.fit(
        model,
        (x, y),
        optax.adam(1e-3),
        key=jax.random.PRNGKey(1),
        epochs=passes // 2,
        batch_size=32,
        loss=HalfSquaredError(),
        regularisers=(jaxode.TikhonovRegulariser(weights=1e-5, readout=1e-3),),
        count_evaluations=False,
        divergence_factor=None,
    )
    theta, rest = split_readout(adam.model)
    adam_phi = float(VarProObjective(rest, 1e-3, 1e-5).objective(theta, x, y))
    gn_phi = gn.history[-1]["objective"]
    print(f"passes {passes}: GNvpro {gn_phi:.5f}, Adam (ridge readout) {adam_phi:.5f}")
    assert gn_phi < 0.5 * adam_phi
