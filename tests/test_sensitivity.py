"""Sensitivities (issue 28): Sobol' indices through SALib's estimators and derivative measures
through jax.jacfwd, against the Ishigami function's closed forms, and a trained surrogate's
physical-unit function against its own predictions and finite differences."""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxode
from jaxode._cli import main
from jaxode._sensitivity import sobol_indices, surrogate_function, surrogate_sensitivities

A, B = 7.0, 0.1
PI = math.pi


def _ishigami(x: np.ndarray) -> np.ndarray:
    return (np.sin(x[:, 0]) + A * np.sin(x[:, 1]) ** 2 + B * x[:, 2] ** 4 * np.sin(x[:, 0]))[
        :, None
    ]


def _ishigami_jax(x):
    return jnp.stack([jnp.sin(x[0]) + A * jnp.sin(x[1]) ** 2 + B * x[2] ** 4 * jnp.sin(x[0])])


def _closed_forms():
    """Ishigami on [-pi, pi]^3: variances of the Sobol' decomposition (Saltelli et al.)."""
    v1 = 0.5 * (1 + B * PI**4 / 5) ** 2
    v2 = A**2 / 8
    v13 = 8 * B**2 * PI**8 / 225
    total = v1 + v2 + v13
    first = np.array([v1, v2, 0.0]) / total
    totals = np.array([v1 + v13, v2, v13]) / total
    return first, totals


def test_sobol_indices_of_the_ishigami_function_match_their_closed_forms():
    box = (np.full(3, -PI), np.full(3, PI))
    result = sobol_indices(_ishigami, box, samples=2**13, seed=1, gradient=_ishigami_jax)
    first, totals = _closed_forms()
    assert result.samples == 2**13 * 5
    # Within the bootstrap interval of each estimate.
    assert np.all(np.abs(result.first[0] - first) <= result.first_conf[0])
    assert np.all(np.abs(result.total[0] - totals) <= result.total_conf[0])
    # Derivative measures: E|df/dx_i| and E[(df/dx_i)^2] for independent uniform inputs.
    mean_abs = [
        (2 / PI) * (1 + B * PI**4 / 5),
        2 * A / PI,
        2 * B * PI**2,
    ]
    mean_squared = [
        0.5 * (1 + 2 * B * PI**4 / 5 + B**2 * PI**8 / 9),
        A**2 / 2,
        8 * B**2 * PI**6 / 7,
    ]
    assert result.mean_abs_gradient is not None and result.mean_squared_gradient is not None
    np.testing.assert_allclose(result.mean_abs_gradient[0], mean_abs, rtol=0.04)
    np.testing.assert_allclose(result.mean_squared_gradient[0], mean_squared, rtol=0.08)


def test_bad_boxes_and_sample_counts_are_refused():
    with pytest.raises(ValueError, match="low < high"):
        sobol_indices(_ishigami, (np.zeros(3), np.zeros(3)))
    with pytest.raises(ValueError, match="power of two"):
        sobol_indices(_ishigami, (np.zeros(3), np.ones(3)), samples=100)
    with pytest.raises(ValueError, match="`names` has 2 entries"):
        sobol_indices(_ishigami, (np.zeros(3), np.ones(3)), names=("a", "b"))


def test_a_surrogates_function_is_its_prediction_and_differentiates_as_it(tmp_path):
    config = jaxode.RunConfig.from_dict(
        {
            "data": {"dataset": "elm"},
            "model": {"model": "resnet", "field": "layer", "width": 4, "steps": 2},
            "train": {"iterations": 5, "batch_size": 32, "precision": "float64"},
        }
    )
    trained, _, _ = jaxode.train(config, tmp_path / "run", progress=False)
    x = jaxode.load_dataset("elm").arrays("test", normalised=False)[0][:3]
    assert trained.domain is not None
    function = surrogate_function(trained)
    values = np.stack([np.asarray(function(jnp.asarray(row))) for row in x])
    np.testing.assert_allclose(values, trained.predict(x), rtol=1e-10)
    jacobian = np.asarray(jax.jacfwd(function)(jnp.asarray(x[0])))
    step = 1e-6 * (trained.domain.high - trained.domain.low)
    for i in (0, 7):
        up, down = x[:1].copy(), x[:1].copy()
        up[0, i] += step[i]
        down[0, i] -= step[i]
        central = (trained.predict(up) - trained.predict(down))[0] / (2 * step[i])
        np.testing.assert_allclose(jacobian[:, i], central, rtol=1e-5, atol=1e-8)
    result = surrogate_sensitivities(trained, samples=64, resamples=20)
    np.testing.assert_array_equal(result.box[0], trained.domain.low)
    assert result.first.shape == (trained.model.out_size + 1, trained.model.in_size)
    box = ",".join(f"{lo}:{lo + 1}" for lo in trained.domain.low)
    out = tmp_path / "report"
    command = ["sensitivity", str(tmp_path / "run"), "--samples", "16", "--out", str(out)]
    assert main([*command, "--box", box]) == 0
    stored = json.loads((out / "sensitivity.json").read_text())
    np.testing.assert_allclose(stored["box"][1], trained.domain.low + 1)
    assert len(stored["total"]) == trained.model.out_size + 1
    assert main([*command, "--box", "0:1"]) == 2
