"""Ray limit and rate against closed forms: one-hidden-layer tanh and sigmoid nets, deeper nets,
negative controls (sin, x^2, exp), growth up to overflow, rates on any grid, surrogates with fixed
and adaptive steps, float32 resolution, bad input. Random draws use fixed seeds."""

import math

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxode import probes


def example(x):
    return 0.3 + 2.0 * jnp.tanh(0.5 * x[0] + 1.0) - jnp.tanh(3.0 * x[0])


def _example_slope(r, sign):
    """g'(r) of `example` along the direction `sign`, from sech^2 = 4 e^{-2|z|} / (1 + e^{-2|z|})^2
    (accurate to rounding even where tanh has saturated)."""

    def sech2(z):
        e = np.exp(-2.0 * np.abs(z))
        return 4.0 * e / (1.0 + e) ** 2

    return sign * (sech2(0.5 * sign * r + 1.0) - 3.0 * sech2(3.0 * sign * r))


def test_closed_form_example_both_directions():
    radii = np.linspace(0.0, 60.0, 241)
    result = probes.ray_limit(example, [0.0], [[1.0], [-1.0]], radii)
    assert result.limit.shape == (1, 2, 1)
    # Direction +1: 0.3 + 2 - 1; direction -1: 0.3 - 2 + 1; rate 2 min|alpha| = 1.
    np.testing.assert_allclose(result.limit[0, :, 0], [1.3, -0.7], atol=1e-14)
    np.testing.assert_allclose(result.rate[0, :, 0], [1.0, 1.0], rtol=1e-6)
    assert list(result.verdicts.ravel()) == ["CONSTANT_EXP", "CONSTANT_EXP"]
    for d, sign in enumerate([1.0, -1.0]):
        # The onset follows the exact secants of log|g'| on this grid: the first radius after
        # the last one whose secant is more than settle_rtol = 5 % away from the rate 1.
        slope = _example_slope(radii, sign)
        same_sign = np.sign(slope[1:]) == np.sign(slope[:-1])
        secants = -np.diff(np.log(np.abs(slope))) / np.diff(radii)
        resolvable = np.abs(slope) > 1e3 * np.finfo(float).eps * np.abs(slope).max()
        last_change = (
            np.flatnonzero(~same_sign & resolvable[1:] & resolvable[:-1]).max(initial=-1) + 1
        )
        judged = resolvable[1:] & resolvable[:-1] & (np.arange(1, len(radii)) > last_change)
        off = np.flatnonzero(judged & (np.abs(secants - 1.0) > 0.05)).max() + 1
        assert result.onset[0, d, 0] == radii[off + 1]
        # Past the onset log|g'| is a line in r to within the tanh(3x) term and the second
        # harmonic e^{-2r} of the slow unit, measured against the closed form: a tiny residual.
        assert result.fit_residual[0, d, 0] < 1e-5
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
    return (
        model,
        direction,
        x0,
        np.asarray(alphas),
        np.asarray(w1 @ x0 + b1),
        np.asarray(a),
        np.asarray(c),
    )


@pytest.mark.parametrize("seed", range(3))
def test_tanh_net_limits_and_rates_over_seeds(seed):
    model, direction, x0, alphas, betas, a, c = _net_with_separated_alphas(
        jax.random.PRNGKey(seed), 3, 4, 2, jnp.tanh
    )
    result = probes.ray_limit(model, x0, direction, np.linspace(0.0, 150.0, 400))
    expected_limit = c + a @ np.sign(alphas)
    np.testing.assert_allclose(result.limit[0, 0], expected_limit, rtol=1e-12, atol=1e-12)
    # The next exponential (rate 1.7 kappa_min here) has died out over the later half of the
    # settled window, where the rate is fitted.
    np.testing.assert_allclose(result.rate[0, 0], 2 * np.min(np.abs(alphas)), rtol=1e-4)
    assert np.all(result.verdict_code == probes.CONSTANT_EXP)


@pytest.mark.parametrize("seed", range(2))
def test_sigmoid_net_limits_and_rates_over_seeds(seed):
    model, direction, x0, alphas, betas, a, c = _net_with_separated_alphas(
        jax.random.PRNGKey(10 + seed), 2, 3, 2, jax.nn.sigmoid
    )
    result = probes.ray_limit(model, x0, direction, np.linspace(0.0, 250.0, 400))
    expected_limit = c + a @ (alphas > 0).astype(float)
    np.testing.assert_allclose(result.limit[0, 0], expected_limit, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(result.rate[0, 0], np.min(np.abs(alphas)), rtol=1e-4)


# Two 5-neuron tanh nets g(r) = c + sum_i a_i tanh(alpha_i r + beta_i) along the ray x0 = 0,
# d = 1, slopes a factor 2 (1.7) apart: kappa = 2 min|alpha_i| = 0.2 (0.8). The secant-median
# estimator this replaced was 3.5e-3 off on the first over the fine linear grid and 8.6e-4 off on
# the second over the geometric grid, from noisy secants between close radii near the floor.
GRID_NETS = [
    (
        [-1.6, 0.1, -0.4, -0.8, 0.2],
        [0.35, 0.62, 0.23, 0.0, -0.89],
        [1.06, -2.0, 1.08, -0.93, -0.97],
        0.1,
    ),
    (
        [1.97, -0.4, 0.68, -3.34, 1.16],
        [0.4, -0.5, 0.6, 0.4, 0.3],
        [-1.6, -1.3, 1.0, -1.7, -1.0],
        0.3,
    ),
]
GRIDS = {"linear": np.linspace(0.0, 200.0, 4001), "geometric": np.geomspace(0.01, 1e5, 400)}


@pytest.mark.parametrize("grid", sorted(GRIDS))
@pytest.mark.parametrize("net", range(len(GRID_NETS)))
def test_rate_is_the_closed_form_on_fine_linear_and_geometric_grids(net, grid):
    alphas, betas, a, c = (np.asarray(v, dtype=float) for v in GRID_NETS[net])
    model = OneHiddenLayer(
        jnp.asarray(alphas)[:, None],
        jnp.asarray(betas),
        jnp.asarray(a)[None],
        jnp.asarray([c]),
        jnp.tanh,
    )
    result = probes.ray_limit(model, [0.0], [1.0], GRIDS[grid])
    assert result.verdicts[0, 0, 0] == "CONSTANT_EXP"
    np.testing.assert_allclose(result.rate[0, 0, 0], 2 * np.min(np.abs(alphas)), rtol=1e-4)
    np.testing.assert_allclose(result.limit[0, 0, 0], c + a @ np.sign(alphas), atol=1e-14)


@pytest.mark.parametrize("x64", [True, False], ids=["float64", "float32"])
def test_growth_that_overflows_inside_the_grid_is_exponential(x64):
    # exp(0.3 r) overflows at r = log(max float) / 0.3 (2366 in float64, 296 in float32), well
    # inside the geometric grid to 1e5: the verdict comes from the finite part of the ray.
    jax.config.update("jax_enable_x64", x64)
    radii = np.geomspace(0.01, 1e5, 400)
    result = probes.ray_limit(lambda x: jnp.exp(0.3 * x[0]), [0.0], [1.0], radii)
    overflow = math.log(np.finfo(np.float64 if x64 else np.float32).max) / 0.3
    assert np.sum(radii < overflow) > 200  # the finite part alone
    assert result.verdicts[0, 0, 0] == "EXP_GROWTH"
    np.testing.assert_allclose(result.rate[0, 0, 0], -0.3, rtol=1e-12 if x64 else 1e-5)
    assert result.limit[0, 0, 0] == np.inf
    assert not any("UNRESOLVED" in note for note in result.notes)


def test_geometric_grid_gives_the_same_limits_and_rates():
    result = probes.ray_limit(example, [0.0], [[1.0], [-1.0]], np.geomspace(0.01, 1e4, 400))
    np.testing.assert_allclose(result.limit[0, :, 0], [1.3, -0.7], atol=1e-14)
    np.testing.assert_allclose(result.rate[0, :, 0], [1.0, 1.0], rtol=1e-6)
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
    # The rate-2 term, e^{3} times larger at r = 0, leaves a bias of 6e-5 at the floor.
    np.testing.assert_allclose(result.rate[0, 0, 0], 1.0, rtol=1e-4)


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
    np.testing.assert_allclose(far.rate[0, 0, 0], 0.002, rtol=1e-5)


def test_zero_alpha_neuron_keeps_its_value():
    # A neuron whose weight is orthogonal to the direction contributes a tanh(beta) forever.
    def model(x):
        return 1.5 * jnp.tanh(x[1] + 0.7) - 0.5 * jnp.tanh(2.0 * x[0] - 1.0)

    result = probes.ray_limit(model, [0.0, 0.0], [1.0, 0.0], np.linspace(0.0, 40.0, 200))
    np.testing.assert_allclose(result.limit[0, 0, 0], 1.5 * math.tanh(0.7) - 0.5, atol=1e-12)
    np.testing.assert_allclose(result.rate[0, 0, 0], 4.0, rtol=1e-6)


def test_deeper_tanh_net_limit_is_rest_of_net_at_saturated_signs():
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(22), 3)
    model1, direction, x0, alphas, betas, a, c = _net_with_separated_alphas(k1, 2, 3, 3, jnp.tanh)
    w2 = np.asarray(jax.random.normal(k2, (2, 3)))
    b2 = np.asarray(jax.random.normal(k3, (2,)))

    def deep(x):
        return jnp.tanh(w2 @ model1(x) + b2)

    result = probes.ray_limit(deep, x0, direction, np.linspace(0.0, 150.0, 400))
    expected = np.tanh(w2 @ (c + a @ np.sign(alphas)) + b2)
    np.testing.assert_allclose(result.limit[0, 0], expected, rtol=1e-14, atol=1e-14)
    # Near the limit g - g_inf ~ J (h - h_inf), J = diag(sech^2) w2 at the saturated first
    # layer: every output decays with the first layer's slowest term, rate 2 min|alpha|.
    np.testing.assert_allclose(result.rate[0, 0], 2 * np.min(np.abs(alphas)), rtol=1e-5)


def test_negative_controls():
    # Six laws as six outputs of one model: one compilation for all of them.
    def controls(x):
        r = x[0]
        return jnp.stack(
            [
                jnp.sin(r),
                r**2 + 1.0,
                r**3,
                jnp.exp(0.5 * r),
                3.0 * r - 2.0 + jnp.exp(-r),
                3.0 + 2.0 * jnp.exp(-0.5 * r) * jnp.cos(2.0 * r),
            ]
        )

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


def _surrogate(dynamics, rows, readout):
    """A Surrogate 2 -> 2 over `dynamics` (width 3), opening rows `rows` with zero bias, readout
    weights `readout`."""
    import jaxode

    model = jaxode.Surrogate(2, 2, dynamics, key=jax.random.PRNGKey(2))
    return eqx.tree_at(
        lambda m: (m.opening.weight, m.opening.bias, m.readout.weight),
        model,
        (jnp.asarray(rows), jnp.zeros(3), jnp.asarray(readout)),
    )


def test_surrogate_limit_is_the_network_at_the_saturated_opening():
    # Surrogate: z0 = tanh(W x + b) -> ODE -> readout. Along x0 + r d, z0 -> sign(W d), so the
    # limit is readout(dynamics(sign(W d))) and the rate 2 min_i |(W d)_i| (the rest is smooth).
    from helpers import randomize

    import jaxode

    basis = jaxode.LegendreBasis(degree=2)
    field = randomize(
        jaxode.MLPField(3, 8, basis, key=jax.random.PRNGKey(0)), jax.random.PRNGKey(1)
    )
    dynamics = jaxode.NeuralODE(
        field,
        t1=1.0,
        solver=diffrax.Tsit5(),
        stepsize_controller=diffrax.ConstantStepSize(),
        dt0=0.25,
    )
    # Unit opening rows at 0, 65 and 140 degrees and a zero opening bias: from the origin every
    # unit starts at its steepest (beta_i = 0) and alpha_i = cos(angle between d and row i).
    theta = np.deg2rad([0.0, 65.0, 140.0])
    rows = np.stack([np.cos(theta), np.sin(theta)], axis=1)
    model = _surrogate(dynamics, rows, [[1.0, -0.8, 0.6], [0.7, 0.9, -1.1]])
    # The closed form holds where the slowest unit is resolvable and apart from the next one:
    # min|alpha| > 0.05 and the next |alpha| at least 1.5 times larger (14 of these 24 angles).
    angles = np.deg2rad(np.arange(5.0, 360.0, 15.0))
    directions = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    alphas = directions @ rows.T
    magnitudes = np.sort(np.abs(alphas), axis=1)
    keep = (magnitudes[:, 0] > 0.05) & (magnitudes[:, 1] > 1.5 * magnitudes[:, 0])
    assert keep.sum() == 14
    directions, alphas = directions[keep], alphas[keep]
    result = probes.ray_limit(model, [0.0, 0.0], directions, np.geomspace(0.01, 1e4, 400))
    expected = np.stack(
        [np.asarray(model.readout(dynamics(jnp.sign(jnp.asarray(a))))) for a in alphas]
    )
    assert np.all(result.verdict_code == probes.CONSTANT_EXP)
    np.testing.assert_allclose(result.limit[0], expected, atol=1e-13)
    # Near the limit g - g_inf ~ sum_i J_oi (z0_i - sign alpha_i), J the Jacobian of the rest of
    # the net at sign(alpha), z0_i - sign alpha_i ~ -2 sign(alpha_i) e^{-2|alpha_i| r}: every
    # output decays at 2 min|alpha| (the readout has no small weights to hide that term).
    kappa = 2 * magnitudes[keep, 0]
    np.testing.assert_allclose(result.rate[0], np.stack([kappa, kappa], axis=1), rtol=1e-3)
    # Fixed steps: one shared solve per chunk, exact per point, and nothing to say about tolerances.
    assert result.notes == ()


def test_adaptive_surrogate_does_not_depend_on_the_chunking():
    # With an adaptive controller a batch solved as one ODE shares one step sequence (the error
    # norm runs over the batch): at rtol 1e-3 the ray limits moved with the chunk size. Every
    # ray point is solved on its own, so chunks of 2 and all rays at once give identical results,
    # equal to single-point solves, and the notes name the tolerance that bounds their accuracy.
    from helpers import randomize

    import jaxode

    basis = jaxode.LegendreBasis(degree=1)
    field = randomize(
        jaxode.LayerField(3, basis, key=jax.random.PRNGKey(3)), jax.random.PRNGKey(4), scale=1.0
    )
    controller = diffrax.PIDController(rtol=1e-3, atol=1e-6)
    dynamics = jaxode.NeuralODE(
        field, t1=1.0, solver=diffrax.Heun(), stepsize_controller=controller
    )
    assert dynamics.shared_steps  # the default: Surrogate.predict would couple the points
    theta = np.deg2rad([0.0, 65.0, 140.0])
    model = _surrogate(
        dynamics,
        np.stack([np.cos(theta), np.sin(theta)], axis=1),
        [[1.0, -0.8, 0.6], [0.7, 0.9, -1.1]],
    )
    angles = np.deg2rad([20.0, 95.0, 170.0, 250.0, 310.0])
    directions = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    radii = np.geomspace(0.01, 1e3, 48)
    together = probes.ray_limit(model, [0.0, 0.0], directions, radii)
    chunked = probes.ray_limit(model, [0.0, 0.0], directions, radii, chunk_size=2)
    assert np.all(together.verdict_code == probes.CONSTANT_EXP)
    np.testing.assert_allclose(chunked.limit, together.limit, rtol=0, atol=1e-12)
    np.testing.assert_allclose(chunked.rate, together.rate, rtol=1e-12)
    # The same g and g' as one solve per point: the last radius, where every output has
    # converged to rounding (so the limit is g itself). Forward-mode derivatives need Diffrax's
    # ForwardMode adjoint, as inside the probe.
    forward = eqx.tree_at(lambda m: m.dynamics.paradigm, model, diffrax.ForwardMode())
    last = jnp.asarray(radii[-1])
    value_and_slope = jax.jit(
        lambda d: jax.jvp(lambda r: forward(r * d), (last,), (jnp.ones_like(last),))
    )
    for index, d in enumerate(directions):
        g, g1 = value_and_slope(jnp.asarray(d))
        np.testing.assert_allclose(together.limit[0, index], g, rtol=0, atol=1e-12)
        np.testing.assert_allclose(together.final_slope[0, index], g1, rtol=0, atol=1e-12)
    assert len(together.notes) == 1 and "rtol=0.001, atol=1e-06" in together.notes[0]


def test_output_constant_along_the_ray_is_converged_with_unknown_rate():
    # The output ignores x[0]: g' = 0 exactly along d = (1, 0), so the limit is g itself.
    def ignores_first(x):
        return jnp.stack([jnp.tanh(x[1] - 0.2), jnp.tanh(x[0] + x[1])])

    result = probes.ray_limit(ignores_first, [0.0, 0.5], [1.0, 0.0], np.linspace(0.0, 40.0, 200))
    assert list(result.verdicts[0, 0]) == ["CONSTANT_EXP", "CONSTANT_EXP"]
    np.testing.assert_allclose(result.limit[0, 0], [math.tanh(0.3), 1.0], atol=1e-12)
    assert math.isnan(result.rate[0, 0, 0]) and result.rate[0, 0, 1] == pytest.approx(2.0, rel=1e-5)
    assert result.notes == ()


def test_a_function_hiding_a_reverse_mode_neural_ode_is_refused_with_the_fix():
    import jaxode

    key1, key2 = jax.random.split(jax.random.PRNGKey(0))
    field = jaxode.MLPField(2, 4, jaxode.LegendreBasis(1), key=key1)
    model = jaxode.Surrogate(1, 1, jaxode.NeuralODE(field, 1.0), key=key2)
    radii = jnp.geomspace(1.0, 100.0, 8)
    directions = jnp.ones((1, 1))
    with pytest.raises(TypeError, match="pass the model itself"):
        probes.ray_limit(lambda x: model(x), jnp.zeros(1), directions, radii)
