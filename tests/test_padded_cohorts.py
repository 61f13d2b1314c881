"""Polynomial bases of different kinds and degrees train as one cohort (issue 27): each member
trains its own coefficients through the Legendre basis of the cohort's largest degree times a
matrix of its own, and equals the single run of its configuration to rounding (float64), for a
ResNet and for an adaptive neural ODE, with the Gram and Tikhonov regularisers."""

import jax
import numpy as np
import pytest
from numpy.polynomial import chebyshev, legendre

from jaxode import ChebyshevBasis, ConstantBasis, LegendreBasis, MonomialBasis
from jaxode._training import RunConfig, cohort_key, train, train_cohort
from jaxode._training._padding import MappedBasis, pad, unpad
from jaxode._training._rundir import check_cohort

CELLS = [("static", 0), ("monomial", 1), ("legendre", 4), ("chebyshev", 2)]
RESNET = {"model": "resnet", "field": "layer", "width": 4, "steps": 3}
NODE = {"model": "node", "field": "mlp", "width": 3, "hidden": 4, "solver": "dopri5"}


def _configs(model: dict, precision: str) -> list[RunConfig]:
    base = RunConfig.from_dict(
        {
            "data": {"dataset": "elm"},
            "model": model,
            "train": {
                "iterations": 8,
                "batch_size": 16,
                "eval_every_iterations": 4,
                "precision": precision,
                "gram": 1e-3,
                "tikhonov": 1e-4,
            },
        }
    )
    return [base.replace("model", basis=b, degree=d) for b, d in CELLS]


def _arrays(model) -> list[np.ndarray]:
    leaves = jax.tree_util.tree_leaves(model)
    return [np.asarray(a) for a in leaves if hasattr(a, "dtype")]


@pytest.mark.parametrize("model", [RESNET, NODE], ids=["resnet", "adaptive-node"])
def test_each_basis_of_a_padded_cohort_equals_its_single_run(tmp_path, model):
    configs = _configs(model, "float64")
    cohort = train_cohort(configs, [tmp_path / f"member{k}" for k in range(4)], progress=False)
    assert {result.num_traces for _, result, _ in cohort} == {1}  # one compiled program
    for k, config in enumerate(configs):
        member, _, m_metrics = cohort[k]
        single, _, s_metrics = train(config, tmp_path / f"single{k}", progress=False)
        # The member's own basis and coefficients: the single run's structure exactly.
        assert jax.tree_util.tree_structure(member.model) == jax.tree_util.tree_structure(
            single.model
        )
        for a, b in zip(_arrays(member.model), _arrays(single.model), strict=True):
            assert a.shape == b.shape
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-13)
        assert m_metrics["parameters"] == s_metrics["parameters"]
        assert m_metrics["val_global"] == pytest.approx(s_metrics["val_global"], rel=1e-10)


def test_a_float32_padded_cohort_follows_its_single_runs(tmp_path):
    """The default precision: the members' basis values differ from their own bases' by
    float32 rounding, which a few steps of Adam keep small."""
    configs = _configs(RESNET, "float32")[1:3]  # monomial degree 1 padded to 4, Legendre 4
    cohort = train_cohort(configs, [tmp_path / f"member{k}" for k in range(2)], progress=False)
    for k, config in enumerate(configs):
        single = train(config, tmp_path / f"single{k}", progress=False)
        for a, b in zip(_arrays(cohort[k][0].model), _arrays(single[0].model), strict=True):
            assert a.dtype == b.dtype == np.float32
            np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)


def _mapped(basis, degree: int) -> MappedBasis:
    from jaxode import TimeVaryingLinear

    layer = TimeVaryingLinear(2, 2, basis, key=jax.random.PRNGKey(0), dtype=np.float64)
    return pad(layer, degree).basis


@pytest.mark.parametrize(
    "basis, reference",
    [
        (ConstantBasis(t0=0.5, t1=2.5), lambda s: np.ones((1, *s.shape))),
        (
            MonomialBasis(2, t0=0.5, t1=2.5),
            lambda s: np.stack([((s + 1) / 2) ** k for k in range(3)]),
        ),
        (LegendreBasis(3, t0=0.5, t1=2.5), lambda s: legendre.legvander(s, 3).T),
        (ChebyshevBasis(2, t0=0.5, t1=2.5), lambda s: chebyshev.chebvander(s, 2).T),
    ],
    ids=["constant", "monomial", "legendre", "chebyshev"],
)
def test_a_mapped_basis_gives_the_members_own_functions_and_gram(basis, reference):
    mapped = _mapped(basis, 5)
    t = np.linspace(-1.0, 4.0, 23)  # past both ends of the window: the formula, not clamped
    s = 2 * (t - 0.5) / 2.0 - 1  # the window's Legendre/Chebyshev variable
    values = np.stack([np.asarray(mapped(ti)) for ti in t], axis=1)
    own = basis.num_basis
    np.testing.assert_allclose(values[:own], reference(s), rtol=1e-12, atol=1e-12)
    assert not np.any(values[own:])  # the padded functions are zero
    gram = np.asarray(mapped.unit_gram())
    np.testing.assert_allclose(gram[:own, :own], basis.unit_gram(), rtol=1e-12, atol=1e-14)
    assert not np.any(gram[own:]) and not np.any(gram[:, own:])


def test_unpad_gives_back_the_models_own_layers():
    from jaxode import TimeVaryingLinear

    layer = TimeVaryingLinear(3, 2, ChebyshevBasis(2), key=jax.random.PRNGKey(3))
    padded = pad(layer, 6)
    assert padded.weight.shape == (7, 2, 3) and not np.any(np.asarray(padded.weight[3:]))
    back = unpad(padded, layer)
    assert back.basis == layer.basis
    np.testing.assert_array_equal(back.weight, layer.weight)
    np.testing.assert_array_equal(back.bias, layer.bias)


def test_polynomial_cells_share_a_cohort_and_others_keep_their_own():
    legendre2 = RunConfig().replace("model", basis="legendre", degree=2)
    chebyshev4 = RunConfig().replace("model", basis="chebyshev", degree=4)
    static = RunConfig().replace("model", basis="static", degree=0)
    fourier = RunConfig().replace("model", basis="fourier", degree=2)
    assert cohort_key(legendre2) == cohort_key(chebyshev4) == cohort_key(static)
    assert cohort_key(fourier) != cohort_key(legendre2)
    check_cohort([legendre2, chebyshev4, static])
    with pytest.raises(ValueError, match=r"model\.basis.*where every basis is polynomial"):
        check_cohort([legendre2, fourier])
    gnvpro = [c.replace("train", optimiser="gnvpro") for c in (legendre2, chebyshev4)]
    assert cohort_key(gnvpro[0]) != cohort_key(gnvpro[1])
    with pytest.raises(ValueError, match="model.basis, model.degree"):
        check_cohort(gnvpro)


PLANNED = """
name = "bases"
[base.model]
model = "resnet"
field = "layer"
width = 3
steps = 2
[base.train]
iterations = 4
[grid]
train.seed = [0, 1]
[[blocks]]
model.basis = ["static"]
model.degree = [0]
[[blocks]]
model.basis = ["monomial", "legendre"]
model.degree = [1, 3]
"""


def test_the_plan_pads_to_the_largest_degree_and_max_padding_keeps_degrees_apart():
    import jaxode

    spec = jaxode.SweepSpec.from_toml(PLANNED)
    [cohort] = jaxode.make_plan(spec).cohorts
    assert len(cohort.cells) == 10 and cohort.padded == 3
    text = jaxode.make_plan(spec).describe()
    # 10 members of 4 functions against 2 x (1 + 2 + 4 + 2 + 4) of their own.
    assert "bases padded to degree 3: 40 basis functions against 26 of the members' own" in text
    assert "54 % more arithmetic" in text and "1 compilation instead of 5" in text
    # Degree 1 (2 functions) padded to 3 (4 functions) is twice its size: apart at 1.9.
    apart = jaxode.make_plan(spec, max_padding=1.9).cohorts
    assert [(c.key.rsplit("-", 1)[-1], c.padded, len(c.cells)) for c in apart] == [
        ("degree0", None, 2),
        ("degree1", 1, 4),  # monomial and Legendre: one degree, two bases
        ("degree3", 3, 4),
    ]
    together = jaxode.make_plan(spec, max_padding=2).cohorts
    assert [(c.padded, len(c.cells)) for c in together] == [(1, 6), (3, 4)]
    with pytest.raises(ValueError, match="--max-padding must be a number >= 1, got 0.5"):
        jaxode.make_plan(spec, max_padding=0.5)
