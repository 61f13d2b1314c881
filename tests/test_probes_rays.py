"""Ray limit and rate against closed forms: one-hidden-layer tanh and sigmoid nets, deeper nets,
negative controls (sin, x^2, exp), float32 resolution, bad input."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxode import probes


def example(x):
    return 0.3 + 2.0 * jnp.tanh(0.5 * x[0] + 1.0) - jnp.tanh(3.0 * x[0])


def test_closed_form_example_both_directions():
    result = probes.ray_limit(example, [0.0], [[1.0], [-1.0]], np.linspace(0.0, 60.0, 241))
    assert result.limit.shape == (1, 2, 1)
    # Direction +1: 0.3 + 2 - 1; direction -1: 0.3 - 2 + 1; rate 2 min|alpha| = 1.
    np.testing.assert_allclose(result.limit[0, :, 0], [1.3, -0.7], atol=1e-10)
    # Local rates are secants of log|g'|; near the resolution floor 1 - tanh has lost digits.
    np.testing.assert_allclose(result.rate[0, :, 0], [1.0, 1.0], rtol=1e-5)
    assert list(result.verdicts.ravel()) == ["CONSTANT_EXP", "CONSTANT_EXP"]
    # The onset lies where the tanh(3x) term (rate 6) has died out against the rate-1 term.
    assert 0.5 <= result.onset[0, 0, 0] <= 8.0
    assert result.fit_residual[0, 0, 0] < 0.05
    assert result.precision == "float64" and result.notes == ()


class OneHiddenLayer(eqx.Module):
    """$x \\mapsto a\\,\\sigma(W_1 x + b_1) + c$; a Module so that seeds share one compilation."""

    w1: jax.Array
    b1: jax.Array
    a: jax.Array
    c: jax.Array
    activation: object = eqx.field(static=True)

    def __call__(self, x):
        return self.a @ self.activation(self.w1 @ x + self.b1) + self.c


def _net_with_separated_alphas(key, in_size, hidden, out_size, activation):
    """A one-hidden-layer net and a ray along which the slopes alpha_i = w_i . d are prescribed
    and well separated (so the slowest exponential dominates the resolvable tail)."""
    keys = jax.random.split(key, 8)
    direction = jax.random.normal(keys[0], (in_size,))
    direction = direction / jnp.linalg.norm(direction)
    magnitudes = 0.4 * 1.7 ** jnp.arange(hidden)
    signs = jnp.where(jax.random.bernoulli(keys[1], 0.5, (hidden,)), 1.0, -1.0)
    alphas = jax.random.permutation(keys[2], magnitudes * signs)
    other = jax.random.normal(keys[3], (hidden, in_size))
    other = other - (other @ direction)[:, None] * direction[None, :]
    w1 = alphas[:, None] * direction[None, :] + other
    # Every neuron starts unsaturated at r = 0 (|beta| ~ 1) with an amplitude of order one, so
    # that the slowest exponential rises above float64 rounding before the tail ends.
    b1 = jax.random.normal(keys[4], (hidden,)) - w1 @ jax.random.normal(keys[7], (in_size,))
    magnitude = jax.random.uniform(keys[5], (out_size, hidden), minval=0.5, maxval=2.0)
    a = magnitude * jnp.where(jax.random.bernoulli(keys[6], 0.5, (out_size, hidden)), 1.0, -1.0)
    c = jax.random.normal(jax.random.fold_in(key, 99), (out_size,))
    x0 = jax.random.normal(keys[7], (in_size,))

    model = OneHiddenLayer(w1, b1, a, c, activation)
    return model, direction, x0, np.asarray(alphas), np.asarray(w1 @ x0 + b1), np.asarray(a), np.asarray(c)


@pytest.mark.parametrize("repeat", range(3))
def test_tanh_net_limits_and_rates_over_seeds(getkey, repeat):
    model, direction, x0, alphas, betas, a, c = _net_with_separated_alphas(getkey(), 3, 4, 2, jnp.tanh)
    result = probes.ray_limit(model, x0, direction, np.linspace(0.0, 150.0, 400))
    expected_limit = c + a @ np.sign(alphas)
    np.testing.assert_allclose(result.limit[0, 0], expected_limit, rtol=1e-9, atol=1e-9)
    # The next exponential (rate >= 1.36 kappa_min here) leaves a small bias within the float64-
    # resolvable tail, hence a relative tolerance of 5e-3 on random nets.
    np.testing.assert_allclose(result.rate[0, 0], 2 * np.min(np.abs(alphas)), rtol=5e-3)
    assert np.all(result.verdict_code == probes.CONSTANT_EXP)


@pytest.mark.parametrize("repeat", range(2))
def test_sigmoid_net_limits_and_rates_over_seeds(getkey, repeat):
    model, direction, x0, alphas, betas, a, c = _net_with_separated_alphas(
        getkey(), 2, 3, 2, jax.nn.sigmoid
    )
    result = probes.ray_limit(model, x0, direction, np.linspace(0.0, 250.0, 400))
    expected_limit = c + a @ (alphas > 0).astype(float)
    np.testing.assert_allclose(result.limit[0, 0], expected_limit, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(result.rate[0, 0], np.min(np.abs(alphas)), rtol=5e-3)


def test_geometric_grid_gives_the_same_limits_and_rates():
    result = probes.ray_limit(example, [0.0], [[1.0], [-1.0]], np.geomspace(0.01, 1e4, 400))
    np.testing.assert_allclose(result.limit[0, :, 0], [1.3, -0.7], atol=1e-10)
    np.testing.assert_allclose(result.rate[0, :, 0], [1.0, 1.0], rtol=1e-4)
    assert list(result.verdicts.ravel()) == ["CONSTANT_EXP", "CONSTANT_EXP"]


def test_crossing_exponentials_are_not_oscillatory():
    # g' = -sum k_i c_i e^{-k_i r} with alternating signs changes sign three times (near
    # r = 0.75, 1.5 and 3), then keeps one sign: a deep saturating net's tail, not an oscillation.
    rates = jnp.array([8.0, 4.0, 2.0, 1.0])
    amplitudes = jnp.array([math.exp(9.0), -math.exp(6.0), math.exp(3.0), -1.0])

    def crossing(x):
        return 1.0 + jnp.sum(amplitudes * jnp.exp(-rates * x[0]))

    result = probes.ray_limit(crossing, [0.0], [1.0], np.geomspace(0.01, 1e4, 400))
    assert result.tail_sign_changes[0, 0, 0] == 3
    assert result.verdicts[0, 0, 0] == "CONSTANT_EXP"
    np.testing.assert_allclose(result.limit[0, 0, 0], 1.0, atol=1e-12)
    np.testing.assert_allclose(result.rate[0, 0, 0], 1.0, rtol=1e-3)


def test_slowly_drifting_rate_is_unresolved_until_the_grid_reaches_saturation():
    # The slow unit's local rate 2 * 0.001 * tanh(0.001 r + 0.3) drifts for thousands of units of
    # r: on [0, 100] it is 0.0007-0.0008, nowhere near its limit 0.002, and |g'| has not decayed.
    def slow(x):
        return 0.5 * jnp.tanh(0.001 * x[0] + 0.3) + 2.0 * jnp.tanh(0.8 * x[0] - 1.0)

    short = probes.ray_limit(slow, [0.0], [1.0], np.linspace(0.0, 100.0, 400))
    assert short.verdicts[0, 0, 0] == "UNRESOLVED"
    assert any("extend the radii" in note for note in short.notes)
    far = probes.ray_limit(slow, [0.0], [1.0], np.geomspace(0.01, 1e5, 400))
    assert far.verdicts[0, 0, 0] == "CONSTANT_EXP" and far.notes == ()
    np.testing.assert_allclose(far.limit[0, 0, 0], 2.5, atol=1e-12)
    np.testing.assert_allclose(far.rate[0, 0, 0], 0.002, rtol=2e-3)


def test_zero_alpha_neuron_keeps_its_value():
    # A neuron whose weight is orthogonal to the direction contributes a tanh(beta) forever.
    def model(x):
        return 1.5 * jnp.tanh(x[1] + 0.7) - 0.5 * jnp.tanh(2.0 * x[0] - 1.0)

    result = probes.ray_limit(model, [0.0, 0.0], [1.0, 0.0], np.linspace(0.0, 40.0, 200))
    np.testing.assert_allclose(result.limit[0, 0, 0], 1.5 * math.tanh(0.7) - 0.5, atol=1e-12)
    np.testing.assert_allclose(result.rate[0, 0, 0], 4.0, rtol=1e-4)


def test_deeper_tanh_net_limit_is_rest_of_net_at_saturated_signs(getkey):
    model1, direction, x0, alphas, betas, a, c = _net_with_separated_alphas(getkey(), 2, 3, 3, jnp.tanh)
    w2 = np.asarray(jax.random.normal(getkey(), (2, 3)))
    b2 = np.asarray(jax.random.normal(getkey(), (2,)))

    def deep(x):
        return jnp.tanh(w2 @ model1(x) + b2)

    result = probes.ray_limit(deep, x0, direction, np.linspace(0.0, 150.0, 400))
    expected = np.tanh(w2 @ (c + a @ np.sign(alphas)) + b2)
    np.testing.assert_allclose(result.limit[0, 0], expected, rtol=1e-9, atol=1e-9)
    # Deeper nets converge at least as fast as their first layer saturates.
    assert np.all(result.rate[0, 0] >= 2 * np.min(np.abs(alphas)) * (1 - 1e-3))


def test_negative_controls():
    # Six laws as six outputs of one model: one compilation for all of them.
    def controls(x):
        r = x[0]
        return jnp.stack([
            jnp.sin(r),
            r**2 + 1.0,
            r**3,
            jnp.exp(0.5 * r),
            3.0 * r - 2.0 + jnp.exp(-r),
            3.0 + 2.0 * jnp.exp(-0.5 * r) * jnp.cos(2.0 * r),
        ])

    result = probes.ray_limit(controls, [0.0], [1.0], np.linspace(1.0, 60.0, 300))
    expected = ["OSCILLATORY", "POLY(2)", "POLY(3)", "EXP_GROWTH", "LINEAR", "OSCILLATORY"]
    assert list(result.verdicts[0, 0]) == expected
    nan = math.nan
    np.testing.assert_allclose(result.rate[0, 0], [nan, nan, nan, -0.5, nan, nan], rtol=1e-6)
    np.testing.assert_allclose(result.power[0, 0], [nan, 2.0, 3.0, nan, 1.0, nan], rtol=1e-3)
    assert np.all(result.limit[0, 0, 1:5] == np.inf)


def test_float32_run_reports_its_resolution_radius():
    def model32(x):
        return example(x.astype(jnp.float32))

    radii = np.linspace(0.0, 60.0, 241)
    result = probes.ray_limit(model32, [0.0], [1.0], radii)
    assert result.precision == "float32"
    assert len(result.notes) == 1 and "float32" in result.notes[0]
    # |g'(r)| ~ 4 e^{-2} e^{-r} falls below 1e3 eps32 max|g'|, max|g'| = |g'(0)| = 3 - sech(1)^2.
    max_slope = 3.0 - 1.0 / math.cosh(1.0) ** 2
    expected = math.log(4 * math.exp(-2.0) / (1e3 * np.finfo(np.float32).eps * max_slope))
    assert abs(result.float32_radius[0, 0, 0] - expected) < 0.2
    np.testing.assert_allclose(result.limit[0, 0, 0], 1.3, atol=1e-5)


def test_result_prints_table_and_round_trips_json():
    import json

    result = probes.ray_limit(example, [0.0], [1.0], np.linspace(0.0, 40.0, 100))
    text = str(result)
    assert "CONSTANT_EXP" in text and "limit" in text
    data = json.loads(result.to_json())
    np.testing.assert_allclose(data["limit"][0][0][0], 1.3, atol=1e-10)
    assert data["verdicts"] == [[["CONSTANT_EXP"]]]


def test_chunked_evaluation_matches_full():
    directions = np.array([[1.0], [-1.0], [2.0], [-0.5]])
    radii = np.linspace(0.0, 40.0, 20)
    full = probes.ray_limit(example, [0.0], directions, radii)
    chunked = probes.ray_limit(example, [0.0], directions, radii, chunk_size=2)
    np.testing.assert_array_equal(full.limit, chunked.limit)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(radii=np.array([0.0, 1.0, 0.5, 2, 3, 4, 5, 6])), "strictly increasing"),
        (dict(radii=np.linspace(-1.0, 1.0, 10)), ">= 0"),
        (dict(radii=np.linspace(0.0, 1.0, 3)), "at least 8"),
        (dict(directions=np.array([[0.0]])), "zero vector"),
        (dict(base_points=np.array([np.nan])), "NaN"),
        (dict(base_points=np.zeros((1, 2))), "columns"),
        (dict(settle_rtol=-1.0), "settle_rtol"),
    ],
)
def test_bad_input_names_the_argument(kwargs, match):
    arguments = dict(base_points=[0.0], directions=[[1.0]], radii=np.linspace(0.0, 10.0, 20))
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=match):
        probes.ray_limit(example, **arguments)


def test_surrogate_limit_is_the_network_at_the_saturated_opening(getkey):
    # Surrogate: z0 = tanh(W x + b) -> ODE -> readout. Along x0 + r d, z0 -> sign(W d), so the
    # limit is readout(dynamics(sign(W d))) and the rate 2 min_i |(W d)_i| (the rest is smooth).
    import diffrax

    import jaxode
    from helpers import randomize

    basis = jaxode.LegendreBasis(degree=2)
    field = randomize(jaxode.MLPField(3, 8, basis, key=getkey()), getkey())
    dynamics = jaxode.NeuralODE(
        field, t1=1.0, solver=diffrax.Tsit5(), stepsize_controller=diffrax.ConstantStepSize(), dt0=0.25
    )
    model = jaxode.Surrogate(2, 2, dynamics, key=getkey())
    # From the origin with a zero opening bias every unit starts at its steepest (beta_i = 0), so
    # the slowest one is not hidden under float64 rounding from the start.
    # Unit-norm opening rows keep |alpha_i| = |cos| of an angle: most directions are well inside.
    rows = jax.random.normal(getkey(), model.opening.weight.shape)
    rows = rows / jnp.linalg.norm(rows, axis=1, keepdims=True)
    model = eqx.tree_at(lambda m: (m.opening.weight, m.opening.bias), model, (rows, jnp.zeros_like(model.opening.bias)))
    angles = np.linspace(0.1, 2 * np.pi, 24, endpoint=False)
    directions = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    alphas = directions @ np.asarray(model.opening.weight).T
    keep = np.min(np.abs(alphas), axis=1) > 0.05
    directions, alphas = directions[keep], alphas[keep]
    result = probes.ray_limit(model, [0.0, 0.0], directions, np.geomspace(0.01, 1e4, 400))
    expected = np.stack([np.asarray(model.readout(dynamics(jnp.sign(jnp.asarray(a))))) for a in alphas])
    assert np.all(result.verdict_code == probes.CONSTANT_EXP)
    np.testing.assert_allclose(result.limit[0], expected, atol=1e-10)
    # Near the limit g - g_inf ~ sum_i J_oi (z0_i - sign alpha_i), J the Jacobian of the rest of
    # the net at sign(alpha), z0_i - sign alpha_i ~ -2 sign(alpha_i) e^{-2|alpha_i| r}. Check the
    # rate where the slowest unit's term is not negligible (|J_oj alpha_j| >= 0.1 max_i) and the
    # next unit is well apart: otherwise float64 sees only a faster term before its floor.
    rest = lambda z: model.readout(dynamics(z))  # noqa: E731
    checked = 0
    for d, a in enumerate(alphas):
        jacobian = np.asarray(jax.jacobian(rest)(jnp.sign(jnp.asarray(a))))
        order = np.argsort(np.abs(a))
        weights = np.abs(jacobian * a)
        for o in range(2):
            if np.abs(a[order[1]]) > 1.5 * np.abs(a[order[0]]) and weights[o, order[0]] >= 0.1 * weights[o].max():
                np.testing.assert_allclose(result.rate[0, d, o], 2 * np.abs(a[order[0]]), rtol=1e-2)
                checked += 1
    assert checked >= 3


def test_output_constant_along_the_ray_is_converged_with_unknown_rate():
    # The output ignores x[0]: g' = 0 exactly along d = (1, 0), so the limit is g itself.
    def ignores_first(x):
        return jnp.stack([jnp.tanh(x[1] - 0.2), jnp.tanh(x[0] + x[1])])

    result = probes.ray_limit(ignores_first, [0.0, 0.5], [1.0, 0.0], np.linspace(0.0, 40.0, 200))
    assert list(result.verdicts[0, 0]) == ["CONSTANT_EXP", "CONSTANT_EXP"]
    np.testing.assert_allclose(result.limit[0, 0], [math.tanh(0.3), 1.0], atol=1e-12)
    assert math.isnan(result.rate[0, 0, 0]) and result.rate[0, 0, 1] == pytest.approx(2.0, rel=1e-5)
    assert result.notes == ()
