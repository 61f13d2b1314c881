"""The horizon T of a ResNet, Hamiltonian net or fixed-step neural ODE as member data (issue
27): nets of several
horizons (and bases) train as one program at horizon 1, each member's field times its own T,
and each equals the single run of its configuration to rounding (float64)."""

import jax
import numpy as np
import pytest

from jaxode._training import RunConfig, cohort_key, train, train_cohort
from jaxode._training._build import build_model
from jaxode._training._horizons import rescale
from jaxode._training._rundir import check_cohort

CELLS = [("static", 0, 0.5), ("legendre", 3, 1.0), ("chebyshev", 2, 5.0)]
NETS = {
    "resnet": {"model": "resnet", "field": "layer", "width": 4, "steps": 3},
    "hamiltonian": {"model": "hamiltonian", "field": "hamiltonian", "width": 3, "steps": 4},
    "heun": {"model": "node", "field": "layer", "width": 3, "solver": "heun", "steps": 3},
}


def _configs(net: str) -> list[RunConfig]:
    base = RunConfig.from_dict(
        {
            "data": {"dataset": "elm"},
            "model": NETS[net],
            "train": {
                "iterations": 8,
                "batch_size": 16,
                "eval_every_iterations": 4,
                "precision": "float64",
                "gram": 1e-3,
            },
        }
    )
    return [base.replace("model", basis=b, degree=d, t1=t) for b, d, t in CELLS]


@pytest.mark.parametrize("net", list(NETS))
def test_each_horizon_of_a_cohort_equals_its_single_run(tmp_path, net):
    configs = _configs(net)
    cohort = train_cohort(configs, [tmp_path / f"member{k}" for k in range(3)], progress=False)
    assert {result.num_traces for _, result, _ in cohort} == {1}
    for k, config in enumerate(configs):
        member, _, m_metrics = cohort[k]
        single, _, s_metrics = train(config, tmp_path / f"single{k}", progress=False)
        assert member.model.dynamics.t1 == config.model.t1
        assert jax.tree_util.tree_structure(member.model) == jax.tree_util.tree_structure(
            single.model
        )
        for a, b in zip(
            jax.tree_util.tree_leaves(member.model), jax.tree_util.tree_leaves(single.model)
        ):
            if hasattr(a, "shape"):
                np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-13)
        assert m_metrics["val_global"] == pytest.approx(s_metrics["val_global"], rel=1e-10)


def test_a_rescaled_net_predicts_as_the_net_of_its_horizon():
    config = _configs("resnet")[2]  # T = 5
    model = build_model(config, 15, 6, key=jax.random.PRNGKey(0))
    x = np.random.default_rng(0).normal(size=(7, 15))
    scaled = rescale(model, 5.0)
    assert scaled.dynamics.t1 == 1.0
    np.testing.assert_allclose(scaled.predict(x), model.predict(x), rtol=1e-12, atol=1e-14)


def test_only_nets_of_fixed_steps_whose_window_follows_t1_share_horizons():
    resnet = RunConfig().replace("model", model="resnet", field="layer")
    assert cohort_key(resnet) == cohort_key(resnet.replace("model", t1=5.0))
    check_cohort([resnet, resnet.replace("model", t1=5.0)])
    node = RunConfig()
    assert cohort_key(node) != cohort_key(node.replace("model", t1=5.0))
    with pytest.raises(ValueError, match="model.t1 of nets of fixed steps whose basis window"):
        check_cohort([node, node.replace("model", t1=5.0)])
    windowed = resnet.replace("model", basis_window=1.0)
    with pytest.raises(ValueError, match="differs from member 0 in model.t1"):
        check_cohort([windowed, windowed.replace("model", t1=5.0)])
    euler = node.replace("model", solver="euler")
    assert cohort_key(euler) == cohort_key(euler.replace("model", t1=5.0))
    with pytest.raises(ValueError, match="only a ResNet, Hamiltonian net or neural ODE of fixed"):
        rescale(build_model(node, 15, 6, key=jax.random.PRNGKey(0)), 1.0)
