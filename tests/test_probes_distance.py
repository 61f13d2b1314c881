"""Error versus distance outside the training box, against closed-form errors (exact where the
shell is deterministic, expectations within 5 standard errors where points are sampled; fixed
seeds)."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxode import probes
from jaxode._probes._distance import shell_points


def zero(x):
    return jnp.zeros(())


def test_shell_points_lie_at_the_requested_max_norm_distance():
    lower, upper = jnp.array([-1.0, 0.0, 2.0]), jnp.array([1.0, 3.0, 2.5])
    points = np.asarray(shell_points(jax.random.PRNGKey(0), lower, upper, 0.7, 500))
    outside = np.maximum(np.maximum(np.asarray(lower) - points, points - np.asarray(upper)), 0.0)
    np.testing.assert_allclose(outside.max(axis=1), 0.7, atol=1e-12)


def test_quadratic_law_against_a_constant_model():
    distances = np.geomspace(10.0, 1000.0, 12)
    result = probes.error_vs_distance(
        zero,
        lambda x: x[0] ** 2,
        [-1.0],
        [1.0],
        distances,
        num_points=4096,
        key=jax.random.PRNGKey(1),
    )
    # In 1-D the shell at distance d is {-(1 + d), 1 + d}: the error is exactly (1 + d)^2.
    np.testing.assert_allclose(result.shell_error, (1 + distances) ** 2, rtol=1e-12)
    np.testing.assert_allclose(result.gap_ratio, result.shell_error / result.in_domain_error)
    # Inside, x is uniform on [-1, 1]: the mean square error is E[x^4] = 1/5, and its 4096-point
    # estimate has the standard error sqrt((E[x^8] - E[x^4]^2) / 4096) = 0.0042.
    standard_error = np.sqrt((1 / 9 - 1 / 25) / 4096)
    assert abs(result.in_domain_error**2 - 0.2) < 5 * standard_error
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
def test_growth_classes(truth, verdict):
    distances = (
        np.linspace(5.0, 40.0, 12) if verdict == "EXP_GROWTH" else np.geomspace(10.0, 1000.0, 12)
    )
    result = probes.error_vs_distance(
        lambda x: jnp.tanh(x[0]), truth, [0.0], [1.0], distances, key=jax.random.PRNGKey(2)
    )
    assert result.verdict == verdict
    if verdict == "EXP_GROWTH":
        # About half the points sit at 1 + d (error ~ e^{1+d}), which dominates the RMS: rate 1
        # (the random share of points on that face perturbs log RMS slightly).
        np.testing.assert_allclose(result.rate, 1.0, rtol=1e-2)


def test_bounded_truth_gives_a_levelled_error():
    distances = np.geomspace(10.0, 1000.0, 10)
    result = probes.error_vs_distance(
        zero,
        lambda x: jnp.sin(x[0]) * jnp.cos(x[1]),
        [-1.0, -1.0],
        [1.0, 1.0],
        distances,
        num_points=2048,
        key=jax.random.PRNGKey(3),
    )
    assert result.verdict == "CONSTANT_EXP"
    # On the shell at distance d (L = 1 + d) half the points have x = +-L and y uniform on
    # [-L, L], half y = +-L and x uniform: E[(sin x cos y)^2] =
    # (sin^2 L (1/2 + s) + cos^2 L (1/2 - s)) / 2 with s = sin(2L) / (4L). The 2048-point mean of
    # f^2 <= 1 with E f^4 <= 3/16 has a standard error below 0.0096.
    L = 1.0 + distances
    s = np.sin(2 * L) / (4 * L)
    expected = 0.5 * (np.sin(L) ** 2 * (0.5 + s) + np.cos(L) ** 2 * (0.5 - s))
    np.testing.assert_allclose(result.shell_error**2, expected, atol=5 * np.sqrt(3 / 16 / 2048))
    assert "growth" in str(result)


def test_bad_input():
    key = jax.random.PRNGKey(4)
    with pytest.raises(ValueError, match="lower"):
        probes.error_vs_distance(zero, zero, [1.0], [0.0], [1.0, 2, 3, 4], key=key)
    with pytest.raises(ValueError, match="distances"):
        probes.error_vs_distance(zero, zero, [0.0], [1.0], [1.0, 0.5, 3, 4], key=key)
