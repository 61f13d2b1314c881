"""Error versus distance outside the training box, against closed-form errors."""

import json

import jax.numpy as jnp
import numpy as np
import pytest

from jaxode import probes
from jaxode._probes._distance import shell_points


def zero(x):
    return jnp.zeros(())


def test_shell_points_lie_at_the_requested_max_norm_distance(getkey):
    lower, upper = jnp.array([-1.0, 0.0, 2.0]), jnp.array([1.0, 3.0, 2.5])
    points = np.asarray(shell_points(getkey(), lower, upper, 0.7, 500))
    outside = np.maximum(np.maximum(np.asarray(lower) - points, points - np.asarray(upper)), 0.0)
    np.testing.assert_allclose(outside.max(axis=1), 0.7, atol=1e-12)


def test_quadratic_law_against_a_constant_model(getkey):
    distances = np.geomspace(10.0, 1000.0, 12)
    result = probes.error_vs_distance(zero, lambda x: x[0] ** 2, [-1.0], [1.0], distances, key=getkey())
    # In 1-D the shell at distance d is {-(1 + d), 1 + d}: the error is exactly (1 + d)^2.
    np.testing.assert_allclose(result.shell_error, (1 + distances) ** 2, rtol=1e-12)
    np.testing.assert_allclose(result.gap_ratio, result.shell_error / result.in_domain_error)
    assert result.in_domain_error < 1.0
    assert result.verdict == "POLY(2)"
    data = json.loads(result.to_json())
    np.testing.assert_allclose(data["shell_error"], (1 + distances) ** 2, rtol=1e-12)
    assert "POLY(2)" in str(result)


@pytest.mark.parametrize(
    "truth, verdict",
    [
        (lambda x: 3.0 * x[0] - 1.0, "LINEAR"),
        (lambda x: jnp.exp(x[0]), "EXP_GROWTH"),
    ],
)
def test_growth_classes(getkey, truth, verdict):
    distances = np.linspace(5.0, 40.0, 12) if verdict == "EXP_GROWTH" else np.geomspace(10.0, 1000.0, 12)
    result = probes.error_vs_distance(lambda x: jnp.tanh(x[0]), truth, [0.0], [1.0], distances, key=getkey())
    assert result.verdict == verdict
    if verdict == "EXP_GROWTH":
        # About half the points sit at 1 + d (error ~ e^{1+d}), which dominates the RMS: rate 1
        # (the random share of points on that face perturbs log RMS slightly).
        np.testing.assert_allclose(result.rate, 1.0, rtol=1e-2)


def test_bounded_truth_gives_a_levelled_error(getkey):
    distances = np.geomspace(10.0, 1000.0, 10)
    result = probes.error_vs_distance(
        zero, lambda x: jnp.sin(x[0]) * jnp.cos(x[1]), [-1.0, -1.0], [1.0, 1.0], distances, num_points=2048, key=getkey()
    )
    assert result.verdict == "CONSTANT_EXP"
    assert np.all(result.shell_error < 1.0)
    assert "growth" in str(result)


def test_bad_input(getkey):
    with pytest.raises(ValueError, match="lower"):
        probes.error_vs_distance(zero, zero, [1.0], [0.0], [1.0, 2, 3, 4], key=getkey())
    with pytest.raises(ValueError, match="distances"):
        probes.error_vs_distance(zero, zero, [0.0], [1.0], [1.0, 0.5, 3, 4], key=getkey())
