"""Limit map, asymptotic slope of ReLU nets and tail oscillation counts against closed forms
(fixed seeds)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxode import probes
from jaxode._probes._maps import count_distinct


def _tanh_layer(key, in_size, hidden, out_size):
    k1, k2, k3, k4 = jax.random.split(key, 4)
    w1 = np.asarray(jax.random.normal(k1, (hidden, in_size)))
    b1 = np.asarray(jax.random.normal(k2, (hidden,)))
    a = np.asarray(jax.random.normal(k3, (out_size, hidden)))
    c = np.asarray(jax.random.normal(k4, (out_size,)))
    return w1, b1, a, c


def test_limit_map_matches_sign_pattern_formula():
    w1, b1, a, c = _tanh_layer(jax.random.PRNGKey(0), 2, 3, 2)

    def model(x):
        return a @ jnp.tanh(w1 @ x + b1) + c

    angles = np.linspace(0.0, 2 * np.pi, 360, endpoint=False) + 0.0123
    directions = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    # Keep directions not too close to a hyperplane w_i . d = 0 (there convergence is slow).
    alphas = directions @ w1.T
    keep = np.min(np.abs(alphas), axis=1) > 0.1
    directions, alphas = directions[keep], alphas[keep]
    expected = c + np.sign(alphas) @ a.T
    targets = np.asarray(jax.random.normal(jax.random.PRNGKey(1), (50, 2)))
    result = probes.limit_map(
        model, directions, np.linspace(0.0, 300.0, 600), targets_train=targets
    )
    # Tail-corrected limits; directions near a hyperplane converge slowly, hence 1e-6.
    np.testing.assert_allclose(result.limit, expected, atol=1e-6)
    assert result.fraction_converging == 1.0
    # Three lines through the origin cut the circle into six cells, one limit each: all six
    # hold kept directions here, and their limits differ.
    cells = np.unique(np.sign(alphas), axis=0)
    assert len(cells) == 6 and count_distinct(c + cells @ a.T, 1e-6) == 6
    assert result.num_distinct == 6
    np.testing.assert_allclose(result.asymptotic_range[:, 0], expected.min(axis=0), atol=1e-6)
    np.testing.assert_allclose(result.asymptotic_range[:, 1], expected.max(axis=0), atol=1e-6)
    target_width = targets.max(axis=0) - targets.min(axis=0)
    np.testing.assert_allclose(
        result.range_ratio, np.ptp(expected, axis=0) / target_width, rtol=1e-5
    )
    outside = (expected < targets.min(axis=0)) | (expected > targets.max(axis=0))
    assert result.fraction_outside_targets == pytest.approx(outside.mean())
    assert "distinct limit vectors" in str(result)


def test_count_distinct_clusters_within_tolerance():
    values = np.array([[0.0], [1e-9], [1.0], [1.0 + 5e-7], [2.0], [np.nan]])
    assert count_distinct(values, 1e-6) == 3
    assert count_distinct(values, 1e-10) == 5


def test_count_distinct_of_no_converging_direction_is_zero():
    # A limit map where no direction converges in every output passes an empty (0, out) array.
    assert count_distinct(np.empty((0, 10)), 1e-3) == 0
    assert count_distinct(np.array([[np.nan, 1.0], [2.0, 2.0]]), 1e-3) == 1


def test_limit_map_rejects_targets_with_wrong_columns():
    with pytest.raises(ValueError, match="targets_train"):
        probes.limit_map(
            lambda x: jnp.tanh(x), np.eye(2), np.linspace(0, 10, 10), targets_train=np.zeros((5, 3))
        )


def test_relu_slope_and_last_kink():
    key1, key2, key3, key4 = jax.random.split(jax.random.PRNGKey(2), 4)
    w1 = np.asarray(jax.random.normal(key1, (5, 2)))
    a = np.asarray(jax.random.normal(key2, (1, 5)))
    direction = np.asarray(jax.random.normal(key3, (2,)))
    direction = direction / np.linalg.norm(direction)
    alphas = w1 @ direction
    # Put the kinks r_i = -b_i / alpha_i at known radii in (1, 40), at least one grid step apart.
    gaps = np.asarray(jax.random.uniform(key4, (5,), minval=1.0, maxval=7.0))
    kinks = np.asarray(jax.random.permutation(key4, 1.0 + np.cumsum(gaps)))
    b1 = -kinks * alphas

    def model(x):
        return a @ jax.nn.relu(w1 @ x + b1) + 0.25

    result = probes.asymptotic_slope(model, np.zeros(2), direction, np.linspace(0.0, 60.0, 241))
    np.testing.assert_allclose(
        result.slope[0, 0, 0], np.sum(a[0] * alphas * (alphas > 0)), atol=1e-12
    )
    np.testing.assert_allclose(result.last_kink[0, 0, 0], kinks.max(), atol=1e-8)
    assert result.linearity_residual[0, 0, 0] < 1e-12
    assert "last kink" in str(result)


def test_smooth_model_has_its_last_kink_in_the_last_grid_interval():
    radii = np.linspace(0.0, 10.0, 50)
    result = probes.asymptotic_slope(lambda x: x[0] ** 2, [0.0], [1.0], radii)
    # No straight tail: g' = 2 r changes at every radius, so the last "kink" is where the
    # tangents at the last two radii a, b meet, (a + b) / 2 for a parabola; the slope is 2 r at 10.
    np.testing.assert_allclose(result.slope[0, 0, 0], 20.0)
    np.testing.assert_allclose(result.last_kink[0, 0, 0], 0.5 * (radii[-2] + radii[-1]), rtol=1e-12)
    # Only the last radius lies past that kink, on the final line: nothing to deviate.
    assert result.linearity_residual[0, 0, 0] == 0.0


def test_oscillation_count_of_sine_matches_zeros_of_cosine():
    omega, start, radii = 1.3, 10.0, np.linspace(0.0, 40.0, 4001)
    result = probes.tail_oscillations(
        lambda x: jnp.sin(omega * x[0]), [0.0], [1.0], radii, start_radius=start
    )
    # g' = omega cos(omega r) vanishes at (k + 1/2) pi / omega.
    zeros = [(k + 0.5) * math.pi / omega for k in range(100)]
    expected = sum(start < z < radii[-1] for z in zeros)
    assert result.sign_changes[0, 0, 0] == expected
    np.testing.assert_allclose(result.mean_spacing[0, 0, 0], (40.0 - start) / expected)


def test_oscillation_count_of_tanh_net_matches_dense_reference():
    w1, b1, a, c = _tanh_layer(jax.random.PRNGKey(0), 1, 4, 1)

    def model(x):
        return a @ jnp.tanh(w1 @ x + b1) + c

    radii = np.linspace(0.0, 30.0, 3001)
    result = probes.tail_oscillations(model, [0.0], [1.0], radii, start_radius=0.0)
    slope = (a * w1[:, 0] / np.cosh(w1[:, 0] * radii[:, None] + b1) ** 2).sum(axis=1)
    signs = np.sign(slope[np.abs(slope) > 1e-300])
    expected = int(np.sum(signs[1:] != signs[:-1]))
    assert expected == 2  # this net's g' changes sign twice on [0, 30]
    assert result.sign_changes[0, 0, 0] == expected
    np.testing.assert_allclose(result.mean_spacing[0, 0, 0], 30.0 / 2)


def test_oscillation_rejects_start_past_the_grid():
    with pytest.raises(ValueError, match="start_radius"):
        probes.tail_oscillations(jnp.sin, [0.0], [1.0], np.linspace(0, 1, 10), start_radius=5.0)
