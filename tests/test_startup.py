"""What a short run costs before its first step (issue 26, item 10): parameters drawn by one
compiled program with the numbers of eager drawing, and evaluation counting (a program no
compilation cache keeps) only where asked for, which changes neither a sweep cell's identity
nor what a resume must match."""

import dataclasses

import equinox as eqx
import jax
import numpy as np
import pytest

from jaxode._sweeps._spec import config_hash
from jaxode._training import RunConfig, _metrics, _steps, train
from jaxode._training._build import _draw, _is_layer, _scaled_weights, build_model
from jaxode._training._config import ModelConfig
from jaxode._training._metrics import forward

TINY = {
    "data": {"dataset": "elm"},
    "model": {"model": "resnet", "field": "layer", "width": 4, "steps": 2},
    "train": {"iterations": 4, "batch_size": 16, "eval_every_iterations": 2},
}


def _eager(config: RunConfig, in_size: int, out_size: int, key):
    """The model as drawn before: every parameter by its own call (jax.random's own
    compiled programs, one per shape), outside any program of jaxode's."""
    m = config.model
    dtype = jax.numpy.dtype(config.train.precision)
    model = _draw(m, False, dtype, in_size, out_size, None, key)
    return _scaled_weights(model, m.field_init_std) if m.field_init == "normal" else model


def _leaves(model) -> list[np.ndarray]:
    return [np.asarray(a) for a in jax.tree_util.tree_leaves(eqx.filter(model, eqx.is_array))]


@pytest.mark.parametrize(
    "changes",
    [
        dict(model="node", field="mlp", basis="legendre", field_init="default"),
        # The study's initialisation: a scale fused into the draw would change it by an ulp.
        dict(model="node", field="mlp", basis="legendre", field_init="normal", field_init_std=0.1),
        dict(model="hamiltonian", field="hamiltonian", basis="monomial", field_init="normal"),
        dict(model="resnet", field="layer", basis="static"),
        # A discrete net's horizon is set after the draw, its windows following.
        dict(model="resnet", field="layer", basis="chebyshev", t1=5.0, field_init="normal"),
        dict(model="hamiltonian", field="hamiltonian", basis="legendre", t1=0.5),
        # Polynomial bases are drawn in the Legendre basis of their size, then put in place.
        dict(model="node", field="mlp", basis="monomial", degree=3, field_init="normal"),
        dict(model="node", field="layer", basis="chebyshev", degree=1),
        dict(model="node", field="layer", basis="fourier", degree=2),
    ],
)
def test_the_compiled_draw_gives_the_eager_numbers_bit_for_bit(changes):
    config = RunConfig(model=dataclasses.replace(ModelConfig(), width=5, hidden=7, **changes))
    key = jax.random.PRNGKey(11)
    eager = _eager(config, 6, 3, key)
    compiled = build_model(config, 6, 3, key=key)
    assert eqx.tree_equal(
        eqx.filter(eager, eqx.is_array, inverse=True),
        eqx.filter(compiled, eqx.is_array, inverse=True),
    )
    for a, b in zip(_leaves(eager), _leaves(compiled), strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert np.array_equal(a, b)


def test_normal_weights_have_the_requested_scale_and_zero_biases():
    m = dataclasses.replace(ModelConfig(), width=40, hidden=50, field_init="normal")
    model = build_model(RunConfig(model=m), 6, 3, key=jax.random.PRNGKey(0))
    field = model.dynamics.field
    layers = [n for n in jax.tree_util.tree_leaves(field, is_leaf=_is_layer) if _is_layer(n)]
    drawn = np.concatenate([np.asarray(layer.weight).ravel() for layer in layers])
    assert all(not np.any(np.asarray(layer.bias)) for layer in layers if layer.bias is not None)
    # 16000 draws of N(0, 0.1^2): the sample std within 3 % of 0.1.
    assert drawn.size == 4 * 2 * 40 * 50
    assert np.std(drawn) == pytest.approx(m.field_init_std, rel=0.03)


def test_counts_are_recorded_only_when_asked_for(tmp_path):
    config = RunConfig.from_dict(TINY)
    _, _, quiet = train(config, tmp_path / "quiet", progress=False)
    counting = config.replace("train", count_evaluations=True)
    _, result, counted = train(counting, tmp_path / "counted", progress=False)
    assert quiet["forward_evaluations"] is None and quiet["backward_evaluations"] is None
    # A ResNet of 2 steps: one field evaluation per step, none more for the gradient.
    assert counted["forward_evaluations"] == 2 and counted["backward_evaluations"] == 0
    assert result.history[0]["forward_evaluations"] == 2
    # The same trained model either way.
    assert counted["test_global"] == quiet["test_global"]


def test_counting_is_no_part_of_a_cells_identity_or_of_what_a_resume_must_match(tmp_path):
    config = RunConfig.from_dict(TINY)
    counting = config.replace("train", count_evaluations=True)
    assert config_hash(counting) == config_hash(config)
    assert config_hash(config.replace("train", seed=1)) != config_hash(config)
    # An interrupted run (its last files gone) whose config.toml turns counting on resumes.
    run = tmp_path / "run"
    train(config, run, progress=False)
    (run / "model.eqx").unlink()
    (run / "metrics.json").unlink()
    (run / "config.toml").write_text(counting.to_toml())
    _, result, _ = train(None, run, resume=True, progress=False)
    assert result.status == "completed" and result.steps == 4


def test_count_evaluations_must_be_a_boolean():
    with pytest.raises(ValueError, match=r"train.count_evaluations must be true or false, got 1"):
        RunConfig.from_dict(TINY).replace("train", count_evaluations=1)


def test_a_run_compiles_one_prediction_program(tmp_path, monkeypatch):
    """Validation during training and the final evaluation of the run predict with one
    program: the model's forward pass is traced twice in all, once by the training step and
    once by that program (a width no other test uses, so that no earlier tracing in this
    process serves it)."""
    traced = []

    def counted(model, xs):
        traced.append(xs.shape[0])
        return forward(model, xs)

    monkeypatch.setattr(_metrics, "forward", counted)
    monkeypatch.setattr(_steps, "forward", counted)
    train(RunConfig.from_dict(TINY).replace("model", width=9, hidden=13), tmp_path / "run")
    # The training step's batch of 16, and prediction chunks of 256 rows.
    assert sorted(traced) == [16, 256]


def test_initial_scales_share_one_compiled_draw(caplog):
    """A cohort's members (a search's trials) differ in `model.field_init_std`: the scale is
    applied outside the draw, so their models come from one compilation (a width no other test
    uses), each with its own scale."""
    base = dataclasses.replace(ModelConfig(), width=11, hidden=7, field_init="normal")
    scales = (0.05, 0.1, 0.3)
    with jax.log_compiles(), caplog.at_level("WARNING"):
        models = [
            build_model(
                RunConfig(model=dataclasses.replace(base, field_init_std=std)),
                6,
                3,
                key=jax.random.PRNGKey(2),
            )
            for std in scales
        ]
    draws = [r for r in caplog.records if "Finished XLA compilation of jit(_draw)" in r.message]
    assert len(draws) == 1
    first = [np.asarray(layer.weight) for layer in _layers(models[0])]
    for model, std in zip(models[1:], scales[1:]):
        for a, b in zip(first, (np.asarray(layer.weight) for layer in _layers(model))):
            np.testing.assert_allclose(b, a * np.float32(std / scales[0]), rtol=1e-6)


def _layers(model):
    field = model.dynamics.field
    return [n for n in jax.tree_util.tree_leaves(field, is_leaf=_is_layer) if _is_layer(n)]


def test_horizons_of_a_discrete_net_share_one_compiled_draw(caplog):
    base = dataclasses.replace(ModelConfig(), model="resnet", field="layer", width=13)
    with jax.log_compiles(), caplog.at_level("WARNING"):
        models = [
            build_model(
                RunConfig(model=dataclasses.replace(base, t1=t1)), 6, 3, key=jax.random.PRNGKey(4)
            )
            for t1 in (0.5, 1.0, 3.0)
        ]
    draws = [r for r in caplog.records if "Finished XLA compilation of jit(_draw)" in r.message]
    assert len(draws) == 1
    assert [m.dynamics.t1 for m in models] == [0.5, 1.0, 3.0]
    assert [_layers(m)[0].basis.t1 for m in models] == [0.5, 1.0, 3.0]
    for a, b in zip(_leaves(models[0]), _leaves(models[2])):
        assert np.array_equal(a, b)


def test_polynomial_bases_of_one_size_share_one_compiled_draw(caplog):
    base = dataclasses.replace(ModelConfig(), model="resnet", field="layer", width=9)
    bases = [("monomial", 2), ("legendre", 2), ("chebyshev", 2), ("static", 0), ("legendre", 0)]
    with jax.log_compiles(), caplog.at_level("WARNING"):
        models = [
            build_model(
                RunConfig(model=dataclasses.replace(base, basis=b, degree=d)),
                6,
                3,
                key=jax.random.PRNGKey(5),
            )
            for b, d in bases
        ]
    draws = [r for r in caplog.records if "Finished XLA compilation of jit(_draw)" in r.message]
    assert len(draws) == 2
    names = [type(layer.basis).__name__ for m in models for layer in _layers(m)[:1]]
    assert names == [
        "MonomialBasis",
        "LegendreBasis",
        "ChebyshevBasis",
        "ConstantBasis",
        "LegendreBasis",
    ]
