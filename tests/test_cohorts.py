"""The compiled engine and cohorts: member k of a cohort is the single run with its values,
members stop on their own, checkpoints resume bit-identically, the hot program compiles once
and holds no host callback."""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import array_leaves as _leaves, regression_data as _data

import jaxode
from jaxode._training import TikhonovRegulariser, fit, fit_cohort


def _resnet(seed, scale=1.0):
    k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
    field = jaxode.MLPField(3, 5, jaxode.LegendreBasis(2), key=k1)
    model = jaxode.Surrogate(2, 2, jaxode.ResNet(field, 1.0, 4), key=k2)
    return jax.tree_util.tree_map(lambda a: a * scale if eqx.is_inexact_array(a) else a, model)


def _node(seed):
    """The default adaptive neural ODE (Dopri5, PID controller, shared steps)."""
    k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
    field = jaxode.MLPField(3, 5, jaxode.LegendreBasis(2), key=k1)
    controller = diffrax.PIDController(rtol=1e-5, atol=1e-7)
    return jaxode.Surrogate(
        2, 2, jaxode.NeuralODE(field, 1.0, stepsize_controller=controller), key=k2
    )


def _adam(learning_rate):
    return optax.inject_hyperparams(optax.adam)(learning_rate=learning_rate)


_COMMON = dict(steps=12, batch_size=8, eval_every=4, count_evaluations=False, clip_norm=1.0)

# The members' own values (seed, minibatch key, learning rate, Tikhonov weights). The tests
# share their cohorts and member runs through the `runs` fixture (each trained once per
# module): the member test's runs are also the straight-through references of the resume
# tests and the own-solve references of the shared-solve test.
SEEDS, RATES, WEIGHTS = [0, 1, 2], [1e-2, 3e-3, 2e-2], [1e-3, 0.0, 1e-2]


def _split():
    x, y = _data()
    return (x[:32], y[:32]), (x[32:], y[32:])


def _member_values(rates=RATES):
    """`fit_cohort`'s keyword arguments for the members' values, and `_COMMON`."""
    return dict(
        keys=[jax.random.PRNGKey(10 + s) for s in SEEDS],
        val=_split()[1],
        regularisers=[(TikhonovRegulariser(weights=w, readout=w),) for w in WEIGHTS],
        hyperparameters={"learning_rate": list(rates)},
        **_COMMON,
    )


def _alone(build, k, **options):
    """MemberRecord k trained alone by `fit`, with its values (and `options`: checkpoints)."""
    values = _member_values()
    return fit(
        build(SEEDS[k]),
        _split()[0],
        _adam(RATES[k]),
        key=values["keys"][k],
        val=values["val"],
        regularisers=values["regularisers"][k],
        **_COMMON,
        **options,
    )


class _Runs:
    """Cohorts of `SEEDS` (their values `_member_values()`) and their members alone, trained
    on first use and kept."""

    def __init__(self):
        self._cache = {}

    def _get(self, name, train):
        if name not in self._cache:
            self._cache[name] = train()
        return self._cache[name]

    def cohort(self, build):
        return self._get(
            ("cohort", build),
            lambda: fit_cohort(
                [build(s) for s in SEEDS], _split()[0], _adam(1e-2), **_member_values()
            ),
        )

    def alone(self, build, k):
        return self._get(("alone", build, k), lambda: _alone(build, k))


@pytest.fixture(scope="module")
def runs():
    return _Runs()


@pytest.mark.parametrize("build", [_resnet, _node], ids=["resnet", "neural-ode"])
def test_member_k_equals_the_single_run_with_its_values(build, runs):
    cohort = runs.cohort(build)
    for k, result in enumerate(cohort):
        alone = runs.alone(build, k)
        assert result.status == alone.status == "completed"
        assert result.best_step == alone.best_step
        for a, b in zip(_leaves(result.model), _leaves(alone.model)):
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(
            [r["val_global"] for r in result.history],
            [r["val_global"] for r in alone.history],
            rtol=1e-9,
        )
    # the members really differ: the same values give the same run, other values another one
    assert not np.allclose(_leaves(cohort[0].model)[0], _leaves(cohort[1].model)[0])


def test_a_diverging_member_is_frozen_and_reported_while_the_others_go_on():
    x, y = _data()
    # member 1's learning rate overflows its parameters at the first step
    optimiser = optax.inject_hyperparams(optax.sgd)(learning_rate=1e-2)
    results = fit_cohort(
        [_resnet(s) for s in range(3)],
        (x, y),
        optimiser,
        keys=[jax.random.PRNGKey(s) for s in range(3)],
        steps=20,
        batch_size=8,
        count_evaluations=False,
        hyperparameters={"learning_rate": [1e-2, 1e300, 1e-2]},
    )
    assert [r.status for r in results] == ["completed", "diverged", "completed"]
    assert results[1].steps < 20 and "NaN/inf" in results[1].message
    assert results[0].steps == results[2].steps == 20
    assert all(np.all(np.isfinite(a)) for r in results for a in _leaves(r.model))
    alone = fit(
        _resnet(2),
        (x, y),
        optax.inject_hyperparams(optax.sgd)(learning_rate=1e-2),
        key=jax.random.PRNGKey(2),
        steps=20,
        batch_size=8,
        count_evaluations=False,
    )
    for a, b in zip(_leaves(results[2].model), _leaves(alone.model)):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-13)


def test_cohort_checkpoints_resume_bit_identically(tmp_path, runs):
    directories = [tmp_path / f"m{k}" for k in range(len(SEEDS))]

    def run(callback=None, resume=False):
        return fit_cohort(
            [_resnet(s) for s in SEEDS],
            _split()[0],
            _adam(1e-2),
            checkpoint_dirs=directories,
            resume=resume,
            callback=callback,
            **_member_values(),
        )

    # the same cohort trained straight through (without checkpoints)
    straight = runs.cohort(_resnet)

    def interrupt(k, row):
        if row["step"] == 8:
            raise KeyboardInterrupt

    stopped = run(callback=interrupt)
    assert [r.status for r in stopped] == ["interrupted"] * len(SEEDS)
    assert "a resume restarts from the checkpoint at step 8" in stopped[1].message
    resumed = run(resume=True)
    for one, other in zip(straight, resumed, strict=True):
        untimed = lambda rows: [{k: v for k, v in r.items() if k != "wall_time"} for r in rows]
        assert other.steps == 12 and untimed(other.history) == untimed(one.history)
        for a, b in zip(_leaves(one.model), _leaves(other.model)):
            np.testing.assert_array_equal(a, b)
    # a member's directory is an ordinary run: `fit` resumes it alone (to rounding: unbatched)
    alone = _alone(_resnet, 1, checkpoint_dir=directories[1], resume=True)
    assert alone.steps == 12
    for a, b in zip(_leaves(alone.model), _leaves(straight[1].model)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def test_an_adaptive_neural_ode_resumes_bit_identically(tmp_path, runs):
    def run(callback=None, resume=False):
        return _alone(_node, 0, checkpoint_dir=tmp_path, resume=resume, callback=callback)

    # the same run straight through (without checkpoints)
    straight = runs.alone(_node, 0)

    def interrupt(row):
        if row["step"] == 4:
            raise KeyboardInterrupt

    assert run(callback=interrupt).status == "interrupted"
    resumed = run(resume=True)
    assert resumed.steps == straight.steps == 12 and resumed.num_traces == 1
    for a, b in zip(_leaves(straight.model), _leaves(resumed.model)):
        np.testing.assert_array_equal(a, b)
    assert [r["val_global"] for r in resumed.history] == [r["val_global"] for r in straight.history]


def test_the_chunk_compiles_once_and_holds_no_host_callback():
    from jaxode._training._members import MemberRecord
    from jaxode._training._trainer import Problem

    model = jaxode.Surrogate(
        2,
        2,
        jaxode.NeuralODE(
            jaxode.MLPField(3, 5, jaxode.LegendreBasis(2), key=jax.random.PRNGKey(0)),
            1.0,
            throw=False,
        ),
        key=jax.random.PRNGKey(1),
    )
    params, static = eqx.partition(model, eqx.is_inexact_array)
    trainer = jaxode.MinibatchTrainer(optax.adam(1e-3), steps=10, batch_size=8)
    x, y = _data()
    problem = Problem(
        models=(model, model),
        keys=(jax.random.PRNGKey(0),) * 2,
        train=(x, y),
        val=None,
        stopping=jaxode.Stopping(patience=None, divergence_factor=100.0, max_failed_batches=10),
        evaluation=jaxode.Evaluation(every=5),
        placement=jaxode.Vmapped(),
    )
    run = trainer.start(problem, [MemberRecord(None), MemberRecord(None)], resume=False)
    programs, state, a = run.programs, run.state, run.arrays
    args = (state, a.xs, a.ys, a.keys, a.regularisers)
    orders = lambda state: programs.table(state.step, args[3])
    lowered = programs.chunk.lower(*args, orders(state))
    assert "callback" not in lowered.as_text().lower()
    # the model's own checks are callbacks when traced outside the engine
    outside = jax.jit(lambda p, xs: eqx.combine(p, static).predict(xs)).lower(
        params, jnp.asarray(x)
    )
    assert "callback" in outside.as_text().lower()
    compiled = lowered.compile()
    state, before, after = compiled(*args, orders(state))
    # no validation data: the evaluation's bookkeeping ran in the chunk (the loss sums reset)
    assert np.asarray(before[0])[:, 0].tolist() == [5, 5] and np.all(
        np.asarray(after[0])[:, -1] == 0
    )
    state, _, _ = compiled(state, *args[1:], orders(state))
    assert "callback" not in programs.table.lower(state.step, args[3]).as_text().lower()
    assert programs.traces[0] == 1 and np.asarray(state.status).shape == (2,)
    assert np.asarray(state.step).tolist() == [10, 10]
    # past the end no member runs, and the chunk leaves the state as it is
    COMPLETED = jaxode.Status.COMPLETED
    assert [jaxode_code(c).status for c in np.asarray(state.status)] == [COMPLETED, COMPLETED]
    idle, _, _ = compiled(state, *args[1:], orders(state))
    for a, b in zip(jax.tree_util.tree_leaves(idle), jax.tree_util.tree_leaves(state)):
        np.testing.assert_array_equal(a, b)


def jaxode_code(value):
    from jaxode._training._status import Code

    return Code(int(value))


def test_a_shared_solve_cohort_matches_its_members_to_the_tolerance(runs):
    x, y = _data()
    shared = fit_cohort(
        [_node(s) for s in SEEDS], _split()[0], _adam(1e-2), shared_solve=True, **_member_values()
    )
    for k, result in enumerate(shared):
        alone = runs.alone(_node, k)
        assert result.status == "completed" and result.num_traces == 1
        # one step sequence for all: members agree with their own solves to the tolerance
        for a, b in zip(_leaves(result.model), _leaves(alone.model)):
            np.testing.assert_allclose(a, b, rtol=1e-2, atol=1e-3)
        np.testing.assert_allclose(
            [r["val_global"] for r in result.history],
            [r["val_global"] for r in alone.history],
            rtol=1e-3,
        )
        assert not np.allclose(
            _leaves(result.model)[0], _leaves(alone.model)[0], rtol=1e-12, atol=0
        )
    with pytest.raises(ValueError, match="needs neural ODE members"):
        fit_cohort(
            [_resnet(0)],
            (x, y),
            optax.adam(1e-2),
            keys=[jax.random.PRNGKey(10)],
            steps=1,
            shared_solve=True,
        )
