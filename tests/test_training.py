"""The training engine: losses, metrics, regularisers and ridge against NumPy; fit behaviour."""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxode
from jaxode._training import (
    GramRegulariser,
    L1Loss,
    MSELoss,
    RelativeL2Loss,
    TikhonovRegulariser,
    fit,
    global_relative_error,
    mean_relative_error,
    ridge_readout,
    ridge_warm_start,
)


def tiny_model(key, basis=None, max_steps=4096, rtol=1e-6):
    k1, k2 = jax.random.split(key)
    field = jaxode.MLPField(3, 5, basis or jaxode.LegendreBasis(2), key=k1)
    dynamics = jaxode.NeuralODE(
        field,
        1.0,
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=rtol * 1e-2),
        max_steps=max_steps,
    )
    return jaxode.Surrogate(2, 2, dynamics, key=k2)


def tiny_resnet(key, basis=None):
    """A discrete model: compiles in a fraction of the neural ODE's time."""
    k1, k2 = jax.random.split(key)
    field = jaxode.MLPField(3, 5, basis or jaxode.LegendreBasis(2), key=k1)
    return jaxode.Surrogate(2, 2, jaxode.ResNet(field, 1.0, 4), key=k2)


def tiny_data(n=48, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, size=(n, 2))
    y = np.stack([np.sin(2 * x[:, 0]) * x[:, 1], np.cos(x[:, 0] + x[:, 1])], axis=1)
    return x, y


def test_metrics_match_loops():
    rng = np.random.default_rng(0)
    p, y = rng.normal(size=(7, 3)), rng.normal(size=(7, 3))
    frob = np.sqrt(sum((p[i, j] - y[i, j]) ** 2 for i in range(7) for j in range(3)))
    assert global_relative_error(p, y) == pytest.approx(frob / np.sqrt(np.sum(y**2)), rel=1e-14)
    per = [np.sqrt(np.sum((p[i] - y[i]) ** 2)) / np.sqrt(np.sum(y[i] ** 2)) for i in range(7)]
    assert mean_relative_error(p, y) == pytest.approx(np.mean(per), rel=1e-14)


def test_losses_closed_form():
    p, y = jnp.array([[1.0, 2.0], [3.0, -1.0]]), jnp.array([[0.0, 2.0], [1.0, 1.0]])
    assert float(MSELoss()(p, y)) == pytest.approx((1 + 0 + 4 + 4) / 4)
    assert float(L1Loss()(p, y)) == pytest.approx((1 + 0 + 2 + 2) / 4)
    assert float(RelativeL2Loss(eps=0.0)(p, y)) == pytest.approx((1 / 4 + 8 / 2) / 2)


def test_gram_regulariser_is_the_time_integral(getkey):
    model = tiny_resnet(getkey(), basis=jaxode.MonomialBasis(2))
    # give every coefficient a non-zero value so the off-diagonal Gram terms matter
    params, static = eqx.partition(model, eqx.is_inexact_array)
    leaves, tree = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(getkey(), len(leaves))
    leaves = [jax.random.normal(k, leaf.shape, leaf.dtype) for k, leaf in zip(keys, leaves)]
    model = eqx.combine(jax.tree_util.tree_unflatten(tree, leaves), static)
    nodes, weights = np.polynomial.legendre.leggauss(10)
    taus = (nodes + 1) / 2
    phi = np.stack([taus**0, taus, taus**2], axis=1)  # the monomials, independently of jaxode
    integral = 0.0
    for layer in (model.dynamics.field.inner, model.dynamics.field.outer):
        w_t = np.einsum("qk,koi->qoi", phi, np.asarray(layer.weight))
        b_t = np.einsum("qk,ko->qo", phi, np.asarray(layer.bias))
        integral += 0.5 * np.sum(weights * (np.sum(w_t**2, (1, 2)) + np.sum(b_t**2, 1)))
    assert float(GramRegulariser(0.3)(model)) == pytest.approx(0.5 * 0.3 * integral, rel=1e-12)


def test_tikhonov_splits_readout(getkey):
    model = tiny_model(getkey())
    inner = sum(
        float(np.sum(np.asarray(a) ** 2))
        for a in jax.tree_util.tree_leaves(
            eqx.filter((model.opening, model.dynamics), eqx.is_inexact_array)
        )
    )
    readout = float(
        np.sum(np.asarray(model.readout.weight) ** 2) + np.sum(np.asarray(model.readout.bias) ** 2)
    )
    value = float(TikhonovRegulariser(weights=0.2, readout=3.0)(model))
    assert value == pytest.approx(0.1 * inner + 1.5 * readout, rel=1e-12)
    with pytest.raises(ValueError, match="`readout` must be a number >= 0"):
        TikhonovRegulariser(readout=-1.0)


def test_ridge_readout_matches_lstsq():
    rng = np.random.default_rng(2)
    z, y, lam = rng.normal(size=(40, 5)), rng.normal(size=(40, 3)), 0.7
    weight, bias = ridge_readout(z, y, lam)
    # augmented least squares: [Z 1; sqrt(lam) I 0] [W^T; w^T] = [Y; 0]
    a = np.block([[z, np.ones((40, 1))], [np.sqrt(lam) * np.eye(5), np.zeros((5, 1))]])
    b = np.vstack([y, np.zeros((5, 3))])
    solution = np.linalg.lstsq(a, b, rcond=None)[0]
    np.testing.assert_allclose(weight, solution[:5].T, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(bias, solution[5], rtol=1e-10, atol=1e-12)


def test_ridge_warm_start_sets_readout(getkey):
    model = tiny_resnet(getkey())  # features independent of the batch they are computed in
    x, y = tiny_data()
    warm = ridge_warm_start(model, x, y, 1e-3)
    z = np.asarray(model.dynamics.solve_batch(jax.vmap(model.features)(jnp.asarray(x))).final)
    weight, bias = ridge_readout(z, y, 1e-3)
    np.testing.assert_allclose(np.asarray(warm.readout.weight), weight, rtol=1e-8)
    np.testing.assert_allclose(np.asarray(warm.readout.bias), bias, rtol=1e-8, atol=1e-12)


def test_fit_compiles_once_and_improves(getkey):
    x, y = tiny_data()
    model = tiny_model(getkey())
    before = global_relative_error(np.asarray(model.predict(jnp.asarray(x))), y)
    result = fit(
        model,
        (x[:32], y[:32]),
        optax.adam(1e-2),
        key=getkey(),
        val=(x[32:], y[32:]),
        epochs=6,
        batch_size=8,
        clip_norm=1.0,
        count_evaluations=False,
    )
    assert result.num_traces == 1
    assert result.steps == 24 and len(result.history) == 6
    after = global_relative_error(np.asarray(result.model.predict(jnp.asarray(x))), y)
    assert after < before
    assert result.model.dynamics.throw  # the user's setting comes back


def test_the_minibatches_do_not_depend_on_the_evaluation_cadence(getkey):
    """23 steps over epochs of 5 batches, evaluated after every step, every 2 steps or only
    at the end (sample-order tables that serve 5, 2 and 1 chunks), equal a hand-written Adam
    loop over the documented batches: epoch e visits `permutation(fold_in(key, e))` in
    consecutive batches."""
    x, y = tiny_data(40)
    model, key, optimiser = tiny_resnet(getkey()), getkey(), optax.adam(1e-2)
    params, static = eqx.partition(model, eqx.is_inexact_array)

    @jax.jit
    def step(params, opt_state, xb, yb):
        loss = lambda p: jnp.mean((eqx.combine(p, static).predict(xb) - yb) ** 2)
        updates, opt_state = optimiser.update(jax.grad(loss)(params), opt_state, params)
        return eqx.apply_updates(params, updates), opt_state

    opt_state = optimiser.init(params)
    for s in range(23):
        order = np.asarray(jax.random.permutation(jax.random.fold_in(key, s // 5), 40))
        index = order[(s % 5) * 8 : (s % 5 + 1) * 8]
        params, opt_state = step(params, opt_state, jnp.asarray(x[index]), jnp.asarray(y[index]))
    expected = jax.tree_util.tree_leaves(params)
    for eval_every in (1, 2, 23):
        result = fit(
            model,
            (x, y),
            optimiser,
            key=key,
            steps=23,
            batch_size=8,
            eval_every=eval_every,
            count_evaluations=False,
            divergence_factor=None,
        )
        assert result.steps == 23 and len(result.history) == -(-23 // eval_every)
        got = jax.tree_util.tree_leaves(eqx.filter(result.model, eqx.is_inexact_array))
        for a, b in zip(got, expected, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_early_stopping_restores_best(getkey):
    x, y = tiny_data()
    result = fit(
        tiny_resnet(getkey()),
        (x[:32], y[:32]),
        optax.sgd(0.3),
        key=getkey(),
        val=(x[32:], y[32:]),
        steps=40,
        batch_size=8,
        eval_every=2,
        patience=2,
        count_evaluations=False,
    )
    values = [row["val_global"] for row in result.history]
    best = int(np.argmin(values))
    assert result.best_step == result.history[best]["step"]
    p = np.asarray(result.model.predict(jnp.asarray(x[32:])))
    assert global_relative_error(p, y[32:]) == pytest.approx(values[best], rel=1e-9)
    # sgd at 0.3 overshoots on this problem: the validation error stops improving early
    assert result.status == "early_stopped" and result.steps < 40
    assert len(values) - 1 - best == 2 and result.steps == result.history[-1]["step"]


def test_divergence_stops_and_names_the_step(getkey, tmp_path):
    x, y = tiny_data()
    calls = []

    # a finite first epoch, then an infinite step size makes the parameters infinite
    def explode(step):
        return jnp.where(step < 4, -1e-2, -jnp.inf)

    optimiser = optax.chain(optax.scale_by_schedule(explode))
    result = fit(
        tiny_resnet(getkey()),
        (x, y),
        optimiser,
        key=getkey(),
        epochs=3,
        batch_size=12,
        checkpoint_dir=tmp_path,
        callback=calls.append,
        count_evaluations=False,
    )
    assert result.status == "diverged"
    assert "step 5" in result.message
    assert all(
        np.all(np.isfinite(np.asarray(a)))
        for a in jax.tree_util.tree_leaves(eqx.filter(result.model, eqx.is_inexact_array))
    )
    assert len(calls) == 1 and (tmp_path / "checkpoint.eqx").is_file()


def test_solver_failures_are_counted(getkey):
    x, y = tiny_data()
    model = tiny_model(getkey(), max_steps=2, rtol=1e-12)
    params = eqx.filter(model, eqx.is_inexact_array)
    result = fit(
        model,
        (x, y),
        optax.adam(1e-2),
        key=getkey(),
        steps=3,
        batch_size=8,
        count_evaluations=False,
    )
    assert result.solver_failures == 24 and result.failed_batches == 3
    assert "24 solver failures" in result.message
    same = jax.tree_util.tree_map(
        lambda a, b: bool(jnp.all(a == b)), params, eqx.filter(result.model, eqx.is_inexact_array)
    )
    assert all(jax.tree_util.tree_leaves(same))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(epochs=1, steps=1), "exactly one of `epochs` and `steps`"),
        (dict(epochs=1, batch_size=100), "`batch_size`=100 exceeds the 48"),
        (dict(epochs=0), "`epochs` must be an integer >= 1"),
    ],
)
def test_fit_rejects_bad_arguments(getkey, kwargs, message):
    x, y = tiny_data()
    with pytest.raises(ValueError, match=message):
        fit(tiny_resnet(getkey()), (x, y), optax.adam(1e-2), key=getkey(), **kwargs)


def test_fit_rejects_mismatched_data(getkey):
    x, y = tiny_data()
    with pytest.raises(ValueError, match=r"shapes \(n, 2\) and \(n, 2\)"):
        fit(tiny_resnet(getkey()), (x, y[:, :1]), optax.adam(1e-2), key=getkey(), epochs=1)


def test_progress_without_tqdm(monkeypatch, capsys):
    import sys

    from jaxode._training._progress import progress_bar

    monkeypatch.setitem(sys.modules, "tqdm.auto", None)  # makes `import tqdm.auto` fail
    bar = progress_bar(10, 0, True)
    bar.update(4)
    bar.set_postfix_str("loss 0.5")
    bar.close()
    assert "step 4/10" in capsys.readouterr().err and "loss 0.5" in bar.postfix


def test_history_counts_evaluations_at_the_documented_cadence(getkey):
    x, y = tiny_data()
    result = fit(
        tiny_resnet(getkey()),
        (x, y),
        optax.adam(1e-2),
        key=getkey(),
        epochs=12,
        batch_size=16,
        count_evaluations=True,
        count_every=5,
    )
    counted = [i for i, row in enumerate(result.history) if "forward_evaluations" in row]
    assert counted == [0, 5, 10, 11]
    # forward Euler with 4 steps: exactly 4 field evaluations per solve
    assert all(result.history[i]["forward_evaluations"] == 4 for i in counted)
    times = [row["wall_time"] for row in result.history]
    assert times[0] > 0 and all(b > a for a, b in zip(times, times[1:]))


def test_prediction_reports_a_failed_solve_from_the_host_without_a_callback(getkey):
    from jaxode._training._metrics import evaluation_predictions, predict_in_chunks

    x, _ = tiny_data()
    failing = tiny_model(getkey(), max_steps=2, rtol=1e-12)
    with pytest.raises(RuntimeError, match="solve failed for 48 of 48 inputs"):
        predict_in_chunks(failing, x)
    import dataclasses

    quiet = eqx.tree_at(
        lambda m: m.dynamics, failing, dataclasses.replace(failing.dynamics, throw=False)
    )
    lowered = evaluation_predictions.lower(quiet, jnp.asarray(x))
    assert "callback" not in lowered.as_text().lower()
