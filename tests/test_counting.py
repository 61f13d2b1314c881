import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp

import jaxode
from jaxode._counting import _instrument, _Tally


def _loss(model, xs):
    return jnp.sum(model.predict(xs) ** 2)


def test_dopri5_forward_evaluations_follow_its_tableau(getkey):
    # Dopri5 is FSAL: one evaluation at t0, then six new stages per attempted step.
    field = jaxode.MLPField(4, 6, jaxode.LegendreBasis(2), key=getkey())
    dynamics = jaxode.NeuralODE(
        field, 3.0, stepsize_controller=diffrax.PIDController(rtol=1e-7, atol=1e-9)
    )
    model = jaxode.Surrogate(3, 2, dynamics, key=getkey())
    xs = jax.random.normal(getkey(), (1, 3))
    counts = jaxode.EvaluationCounter(_loss)(model, xs)
    trajectory = dynamics.solve(model.features(xs[0]))
    steps = int(trajectory.num_accepted_steps) + int(trajectory.num_rejected_steps)
    assert counts.solves == 1
    assert counts.accepted_steps == int(trajectory.num_accepted_steps)
    assert counts.rejected_steps == int(trajectory.num_rejected_steps)
    assert counts.forward_evaluations == 1 + 6 * steps
    # Recursive checkpointing (every step checkpointed at this length) recomputes each stage
    # from its checkpoint and linearises it for the VJP: two evaluations per forward one.
    assert counts.backward_evaluations == 2 * counts.forward_evaluations


def test_fixed_step_euler_and_resnet_counts(getkey):
    field = jaxode.LayerField(3, jaxode.MonomialBasis(1), key=getkey())
    xs = jax.random.normal(getkey(), (4, 3))
    euler = jaxode.NeuralODE(
        field, 1.0, solver=diffrax.Euler(), stepsize_controller=diffrax.ConstantStepSize(), dt0=0.1
    )
    counts = jaxode.EvaluationCounter(_loss)(jaxode.Surrogate(3, 2, euler, key=getkey()), xs)
    assert (
        counts.forward_evaluations == 10
        and counts.accepted_steps == 10
        and counts.rejected_steps == 0
    )
    resnet = jaxode.Surrogate(3, 2, jaxode.ResNet(field, 1.0, 12), key=getkey())
    counts = jaxode.EvaluationCounter(_loss)(resnet, xs)
    assert counts.forward_evaluations == 12 and counts.accepted_steps == 12
    ham = jaxode.HamiltonianField(3, jaxode.MonomialBasis(1), key=getkey())
    hamnet = jaxode.Surrogate(3, 2, jaxode.HamiltonianNet(ham, 1.0, 7), key=getkey())
    assert jaxode.EvaluationCounter(_loss)(hamnet, xs).forward_evaluations == 7


def test_continuous_adjoint_backward_evaluations_come_from_its_own_solve(getkey):
    field = jaxode.MLPField(4, 6, jaxode.LegendreBasis(2), key=getkey())
    controller = diffrax.PIDController(rtol=1e-8, atol=1e-8)
    xs = jax.random.normal(getkey(), (1, 3))
    key = getkey()
    dto = jaxode.Surrogate(
        3, 2, jaxode.NeuralODE(field, 2.0, stepsize_controller=controller), key=key
    )
    otd = jaxode.Surrogate(
        3,
        2,
        jaxode.NeuralODE(
            field, 2.0, stepsize_controller=controller, paradigm=jaxode.OptimizeThenDiscretize()
        ),
        key=key,
    )
    a = jaxode.EvaluationCounter(_loss)(dto, xs)
    b = jaxode.EvaluationCounter(_loss)(otd, xs)
    assert (
        a.forward_evaluations
        == b.forward_evaluations
        == 1 + 6 * (a.accepted_steps + a.rejected_steps)
    )
    assert a.backward_evaluations == 2 * a.forward_evaluations
    # The backward adjoint solve has its own adaptive steps: one FSAL start and six stages per
    # attempted step (one vector-Jacobian product each), not the forward pass's count.
    assert b.backward_evaluations % 6 == 1 and b.backward_evaluations >= 7
    assert b.backward_evaluations != a.backward_evaluations


def test_constant_step_counts_of_both_paradigms_in_closed_form(getkey):
    # With n constant Dopri5 steps both paradigms take n steps each way: the forward pass
    # costs 1 + 6n evaluations; the continuous adjoint's backward solve 1 + 6n more, and
    # discretize-then-optimize recomputes and linearises every stage, 2 (1 + 6n).
    field = jaxode.MLPField(4, 6, jaxode.LegendreBasis(2), key=getkey())
    xs = jax.random.normal(getkey(), (1, 3))
    key = getkey()
    for n in (4, 10):
        fixed = {"stepsize_controller": diffrax.ConstantStepSize(), "dt0": 2.0 / n}
        dto = jaxode.Surrogate(3, 2, jaxode.NeuralODE(field, 2.0, **fixed), key=key)
        otd = jaxode.Surrogate(
            3,
            2,
            jaxode.NeuralODE(field, 2.0, paradigm=jaxode.OptimizeThenDiscretize(), **fixed),
            key=key,
        )
        a = jaxode.EvaluationCounter(_loss)(dto, xs)
        b = jaxode.EvaluationCounter(_loss)(otd, xs)
        assert (
            a.accepted_steps == b.accepted_steps == n and a.rejected_steps == b.rejected_steps == 0
        )
        assert a.forward_evaluations == b.forward_evaluations == 1 + 6 * n
        assert b.backward_evaluations == 1 + 6 * n
        assert a.backward_evaluations == 2 * (1 + 6 * n)


def _callbacks(jaxpr):
    # Callback equations of a jaxpr and of all the jaxprs nested in its equations' parameters
    # (loop bodies, branches, custom rules).
    count = 0
    for eqn in jaxpr.eqns:
        count += eqn.primitive.name == "debug_callback"
        for param in eqn.params.values():
            for sub in param if isinstance(param, (tuple, list)) else (param,):
                if isinstance(sub, jax.extend.core.ClosedJaxpr):
                    count += _callbacks(sub.jaxpr)
                elif isinstance(sub, jax.extend.core.Jaxpr):
                    count += _callbacks(sub)
    return count


def test_callbacks_do_not_multiply_with_the_batch(getkey):
    # Under vmap a jax.debug.callback unrolls into one per sample, which at batch 4096 took
    # minutes to compile; the counter's callbacks must be as many at any batch size.
    field = jaxode.MLPField(4, 6, jaxode.LegendreBasis(2), key=getkey())
    layer = jaxode.LayerField(3, jaxode.MonomialBasis(1), key=getkey())
    ham = jaxode.HamiltonianField(3, jaxode.MonomialBasis(1), key=getkey())
    # Own steps under the continuous adjoint: vmapped solves forward and backward (a constant
    # step keeps the tracing short); shared steps: the default, as the training loop counts.
    otd = {"paradigm": jaxode.OptimizeThenDiscretize(), "shared_steps": False}
    heun = {
        "solver": diffrax.Heun(),
        "stepsize_controller": diffrax.ConstantStepSize(),
        "dt0": 0.25,
    }
    dynamics = {
        "shared steps": jaxode.NeuralODE(field, 1.0),
        "own steps, continuous adjoint": jaxode.NeuralODE(field, 1.0, **otd, **heun),
        "resnet": jaxode.ResNet(layer, 1.0, 5),
        "hamiltonian": jaxode.HamiltonianNet(ham, 1.0, 4),
    }
    key = getkey()
    for name, dyn in dynamics.items():
        model = jaxode.Surrogate(3, 2, dyn, key=key)
        gradient = eqx.filter_grad(lambda m, xs: _loss(_instrument(m, _Tally()), xs))
        counts = [
            _callbacks(eqx.filter_make_jaxpr(gradient)(model, jnp.zeros((batch, 3)))[0].jaxpr)
            for batch in (4, 64)
        ]
        assert counts[0] == counts[1] and counts[0] > 0, (name, counts)


def test_own_steps_count_every_lane_for_the_slowest_lane(getkey):
    # Vmapped solves run as many steps as their slowest lane, each lane evaluating the field
    # every time: the batched callback must count all lanes of every step.
    field = jaxode.MLPField(4, 6, jaxode.LegendreBasis(2), key=getkey())
    controller = diffrax.PIDController(rtol=1e-6, atol=1e-8)
    dynamics = jaxode.NeuralODE(field, 2.0, stepsize_controller=controller, shared_steps=False)
    model = jaxode.Surrogate(3, 2, dynamics, key=getkey())
    xs = jax.random.normal(getkey(), (5, 3)) * jnp.array([0.1, 0.5, 1.0, 3.0, 10.0])[:, None]
    counts = jaxode.EvaluationCounter(_loss)(model, xs)
    trajectory = dynamics.solve_batch(jax.vmap(model.features)(xs))
    steps = trajectory.num_accepted_steps + trajectory.num_rejected_steps
    assert len(set(steps.tolist())) > 1
    assert counts.solves == 5
    assert counts.accepted_steps == int(jnp.sum(trajectory.num_accepted_steps)) / 5
    assert counts.forward_evaluations == 1 + 6 * int(jnp.max(steps))


def test_stepped_models_counts_in_closed_form_equal_the_measured_ones(getkey):
    from jaxode._counting import stepped_counts

    xs = jax.random.normal(getkey(), (5, 3))
    layer = jaxode.LayerField(3, jaxode.LegendreBasis(2), key=getkey())
    ham = jaxode.HamiltonianField(3, jaxode.MonomialBasis(1), key=getkey())
    for dynamics in (jaxode.ResNet(layer, 1.0, 9), jaxode.HamiltonianNet(ham, 2.0, 4)):
        model = jaxode.Surrogate(3, 2, dynamics, key=getkey())
        assert stepped_counts(dynamics, len(xs)) == jaxode.EvaluationCounter(_loss)(model, xs)
    node = jaxode.NeuralODE(layer, 1.0)
    assert stepped_counts(node, len(xs)) is None
