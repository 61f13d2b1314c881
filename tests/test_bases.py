import jax
import jax.numpy as jnp
import numpy as np
import numpy.polynomial as npoly
import pytest
from helpers import all_bases
from scipy import integrate

import jaxode

T0, T1 = -0.5, 2.0


def _values(basis, ts):
    return np.asarray(jax.vmap(basis)(jnp.asarray(ts, dtype=jnp.float64)))


@pytest.mark.parametrize("degree", [0, 1, 2, 5])
@pytest.mark.parametrize("cls", [jaxode.MonomialBasis, jaxode.LegendreBasis, jaxode.ChebyshevBasis])
def test_degree_d_gives_d_plus_one_functions(cls, degree):
    basis = cls(degree)
    assert basis.num_basis == degree + 1
    assert basis(0.3).shape == (degree + 1,)


def test_counts_of_fourier_piecewise_constant():
    assert jaxode.FourierBasis(3).num_basis == 7
    assert jaxode.FourierBasis(3)(0.2).shape == (7,)
    assert jaxode.PiecewiseConstantBasis(12).num_basis == 12
    assert jaxode.ConstantBasis().num_basis == 1


def test_polynomial_values_match_numpy():
    ts = np.linspace(T0 - 1.0, T1 + 1.0, 41)  # inside and outside the window
    tau = (ts - T0) / (T1 - T0)
    x = 2 * tau - 1
    eye = np.eye(6)
    mono = _values(jaxode.MonomialBasis(5, t0=T0, t1=T1), ts)
    np.testing.assert_allclose(mono, np.stack([tau**k for k in range(6)], 1), rtol=1e-13)
    leg = _values(jaxode.LegendreBasis(5, t0=T0, t1=T1), ts)
    ref = np.stack([npoly.legendre.legval(x, eye[k]) for k in range(6)], 1)
    np.testing.assert_allclose(leg, ref, rtol=1e-12, atol=1e-12)
    leg_on = _values(jaxode.LegendreBasis(5, t0=T0, t1=T1, orthonormal=True), ts)
    np.testing.assert_allclose(leg_on, ref * np.sqrt(2 * np.arange(6) + 1), rtol=1e-12, atol=1e-12)
    cheb = _values(jaxode.ChebyshevBasis(5, t0=T0, t1=T1), ts)
    ref = np.stack([npoly.chebyshev.chebval(x, eye[k]) for k in range(6)], 1)
    np.testing.assert_allclose(cheb, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("degree", [64, 150])  # the recurrence unrolled, and as a loop
def test_high_degree_values_match_numpy(degree):
    tau = np.linspace(0.0, 1.0, 17)
    x, eye = 2 * tau - 1, np.eye(degree + 1)
    leg = np.asarray(jax.vmap(jaxode.LegendreBasis(degree))(tau))
    ref = np.stack([npoly.legendre.legval(x, eye[k]) for k in range(degree + 1)], 1)
    np.testing.assert_allclose(leg, ref, rtol=1e-10, atol=1e-10)
    cheb = np.asarray(jax.vmap(jaxode.ChebyshevBasis(degree))(tau))
    ref = np.stack([npoly.chebyshev.chebval(x, eye[k]) for k in range(degree + 1)], 1)
    np.testing.assert_allclose(cheb, ref, rtol=1e-10, atol=1e-10)
    mono = np.asarray(jax.vmap(jaxode.MonomialBasis(degree))(tau))
    np.testing.assert_allclose(mono, tau[:, None] ** np.arange(degree + 1), rtol=1e-12, atol=1e-300)


def test_the_program_of_a_high_degree_basis_does_not_grow_with_the_degree():
    def size(degree):
        return len(jax.make_jaxpr(jaxode.LegendreBasis(degree))(0.3).eqns)

    assert size(100) == size(10_000)
    assert size(10) < size(20)  # below the threshold the recurrence is unrolled


def test_legendre_classical_normalisation_and_fourier_values():
    leg = jaxode.LegendreBasis(4)
    np.testing.assert_allclose(leg(1.0), np.ones(5), rtol=1e-14)
    np.testing.assert_allclose(leg(0.0), (-1.0) ** np.arange(5), rtol=1e-14)
    fourier = jaxode.FourierBasis(2, t0=T0, t1=T1)
    tau = 0.3
    expect = [
        1,
        np.cos(2 * np.pi * tau),
        np.cos(4 * np.pi * tau),
        np.sin(2 * np.pi * tau),
        np.sin(4 * np.pi * tau),
    ]
    np.testing.assert_allclose(fourier(T0 + tau * (T1 - T0)), expect, rtol=1e-12)


def test_piecewise_constant_selects_step_weights_on_a_step_grid():
    basis = jaxode.PiecewiseConstantBasis(12, t0=0.0, t1=10.0)
    h = 10.0 / 12
    for j in range(12):
        np.testing.assert_array_equal(basis(j * h), np.eye(12)[j])
    np.testing.assert_array_equal(basis(10.0), np.eye(12)[11])
    np.testing.assert_array_equal(basis(25.0), np.eye(12)[11])
    np.testing.assert_array_equal(basis(-3.0), np.eye(12)[0])


@pytest.mark.parametrize("basis", all_bases(T0, T1), ids=lambda b: type(b).__name__)
def test_gram_equals_quadrature(basis):
    gram = np.asarray(basis.gram())
    n = basis.num_basis
    points = [T0 + b * (T1 - T0) for b in basis.breakpoints()]
    ref = np.empty((n, n))
    for i in range(n):
        for j in range(n):
            ref[i, j] = integrate.quad(
                lambda t, i=i, j=j: float(basis(t)[i] * basis(t)[j]),
                T0,
                T1,
                points=points[1:-1] or None,
                limit=200,
            )[0]
    np.testing.assert_allclose(gram, ref, rtol=1e-9, atol=1e-11)


def test_gram_closed_forms():
    np.testing.assert_allclose(
        jaxode.MonomialBasis(3).gram(),
        [[1 / (i + j + 1) for j in range(4)] for i in range(4)],
        rtol=1e-15,
    )
    np.testing.assert_allclose(
        jaxode.LegendreBasis(3).gram(), np.diag([1, 1 / 3, 1 / 5, 1 / 7]), rtol=1e-15
    )


def test_evaluate_outside_window_by_default_and_clamp_on_request():
    mono = jaxode.MonomialBasis(3, t0=0.0, t1=2.0)
    np.testing.assert_allclose(mono(6.0), [1, 3, 9, 27], rtol=1e-14)
    frozen = jaxode.MonomialBasis(3, t0=0.0, t1=2.0, clamp=True)
    np.testing.assert_allclose(frozen(6.0), mono(2.0), rtol=1e-14)
    np.testing.assert_allclose(frozen(-1.0), mono(0.0), rtol=1e-14)
    np.testing.assert_allclose(frozen(1.3), mono(1.3), rtol=1e-14)


def test_condition_number_gap_of_the_study():
    grid = jnp.linspace(0.0, 10.0, 12)
    raw_monomial = jaxode.condition_number(jaxode.MonomialBasis(6, t0=0.0, t1=1.0), grid)
    assert 5e6 < raw_monomial < 7e6
    ref = np.linalg.cond(np.vander(np.linspace(0, 10, 12), 7, increasing=True))
    np.testing.assert_allclose(raw_monomial, ref, rtol=1e-8)
    for horizon in (1.0, 5.0, 10.0):
        grid = jnp.linspace(0.0, horizon, 12)
        for degree in (3, 4, 5, 6):
            kappa = jaxode.condition_number(jaxode.LegendreBasis(degree, t0=0.0, t1=horizon), grid)
            # The same grid in x = 2t/T - 1 for every horizon: one Legendre Vandermonde.
            ref = np.linalg.cond(npoly.legendre.legvander(np.linspace(-1.0, 1.0, 12), degree))
            np.testing.assert_allclose(kappa, ref, rtol=1e-10)
            assert 1.5 < kappa < 4.0


@pytest.mark.parametrize(
    "source,target",
    [
        (jaxode.MonomialBasis(3, t0=T0, t1=T1), jaxode.LegendreBasis(5, t0=T0, t1=T1)),
        (jaxode.LegendreBasis(4, t0=T0, t1=T1), jaxode.ChebyshevBasis(4, t0=T0, t1=T1)),
        (jaxode.ChebyshevBasis(2, t0=T0, t1=T1), jaxode.MonomialBasis(6, t0=T0, t1=T1)),
        (jaxode.ConstantBasis(t0=T0, t1=T1), jaxode.PiecewiseConstantBasis(3, t0=T0, t1=T1)),
        (jaxode.LegendreBasis(3, t0=0.0, t1=1.0), jaxode.LegendreBasis(3, t0=-1.0, t1=4.0)),
    ],
)
def test_projection_is_exact_when_target_contains_source(source, target, getkey):
    coeffs = jax.random.normal(getkey(), (source.num_basis, 3, 2))
    projected = jaxode.project_coefficients(coeffs, source, target)
    assert projected.shape == (target.num_basis, 3, 2)
    ts = np.linspace(target.t0, target.t1, 17)
    theta_source = np.einsum("tk,k...->t...", _values(source, ts), coeffs)
    theta_target = np.einsum("tk,k...->t...", _values(target, ts), projected)
    np.testing.assert_allclose(theta_target, theta_source, rtol=1e-9, atol=1e-9)


def test_projection_residual_is_orthogonal_to_target(getkey):
    source = jaxode.MonomialBasis(5, t0=T0, t1=T1)
    target = jaxode.LegendreBasis(2, t0=T0, t1=T1)
    coeffs = np.asarray(jax.random.normal(getkey(), (6,)))
    projected = np.asarray(jaxode.project_coefficients(coeffs, source, target))

    def residual(t):
        return float(source(t) @ coeffs - target(t) @ projected)

    for k in range(3):
        inner = integrate.quad(lambda t, k=k: residual(t) * float(target(t)[k]), T0, T1)[0]
        assert abs(inner) < 1e-10
    # Fourier to a coarse polynomial: same property through a non-polynomial source.
    fourier = jaxode.FourierBasis(2, t0=T0, t1=T1)
    coeffs = np.asarray(jax.random.normal(getkey(), (5,)))
    projected = np.asarray(jaxode.project_coefficients(coeffs, fourier, target))
    for k in range(3):
        inner = integrate.quad(
            lambda t, k=k: float(fourier(t) @ coeffs - target(t) @ projected) * float(target(t)[k]),
            T0,
            T1,
        )[0]
        assert abs(inner) < 1e-10


def test_l2_in_time_equals_integral(getkey):
    basis = jaxode.MonomialBasis(3, t0=T0, t1=T1)
    coeffs = np.asarray(jax.random.normal(getkey(), (4, 2, 3)))
    value = float(jaxode.l2_in_time(coeffs, basis))
    integrand = lambda t: float(np.sum(np.einsum("k,k...->...", np.asarray(basis(t)), coeffs) ** 2))
    ref = integrate.quad(integrand, T0, T1)[0] / (T1 - T0)
    np.testing.assert_allclose(value, ref, rtol=1e-10)


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: jaxode.MonomialBasis(-1), "`degree` must be an integer >= 0, got -1"),
        (lambda: jaxode.LegendreBasis(2.5), "`degree`"),
        (lambda: jaxode.ChebyshevBasis(True), "`degree`"),
        (lambda: jaxode.PiecewiseConstantBasis(0), "`pieces` must be an integer >= 1"),
        (lambda: jaxode.FourierBasis(-2), "`num_frequencies`"),
        (lambda: jaxode.LegendreBasis(3, t0=1.0, t1=1.0), "`t1` must be greater than `t0`"),
        (lambda: jaxode.ConstantBasis(t0=2.0, t1=1.0), "`t1` must be greater than `t0`"),
        (lambda: jaxode.MonomialBasis(2, t1=float("nan")), "finite"),
    ],
)
def test_bad_arguments_name_the_argument(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_projection_rejects_wrong_coefficient_shape():
    with pytest.raises(
        ValueError, match="`coefficients` must have leading axis of length source.num_basis=4"
    ):
        jaxode.project_coefficients(
            np.ones((3, 2)), jaxode.MonomialBasis(3), jaxode.LegendreBasis(3)
        )


def test_change_basis_of_a_trained_model(getkey):
    from helpers import randomize

    legendre = jaxode.LegendreBasis(3, t1=2.0)
    field = jaxode.MLPField(4, 6, legendre, key=getkey())
    model = randomize(
        jaxode.Surrogate(3, 2, jaxode.ResNet(field, 2.0, 10), key=getkey()), getkey(), 0.4
    )
    xs = jax.random.normal(getkey(), (5, 3))
    reference = model.predict(xs)
    for target in (
        jaxode.MonomialBasis(3, t1=2.0),
        jaxode.LegendreBasis(5, t1=2.0),
        jaxode.ChebyshevBasis(4, t1=2.0),
    ):
        moved = jaxode.change_basis(model, target)
        assert moved.dynamics.field.inner.basis == target
        assert moved.dynamics.field.outer.weight.shape[0] == target.num_basis
        np.testing.assert_allclose(moved.predict(xs), reference, rtol=1e-9, atol=1e-10)
    # Down to degree 1: the weights become the L2-closest lines, no longer the same function.
    line = jaxode.LegendreBasis(1, t1=2.0)
    lowered = jaxode.change_basis(model, line)
    ts = np.linspace(0.0, 2.0, 9)
    w_full = np.stack([np.asarray(model.dynamics.field.inner.weight_at(t)) for t in ts])
    w_line = np.stack([np.asarray(lowered.dynamics.field.inner.weight_at(t)) for t in ts])
    coeffs = np.asarray(model.dynamics.field.inner.weight)
    np.testing.assert_allclose(
        np.asarray(lowered.dynamics.field.inner.weight), coeffs[:2], rtol=1e-10, atol=1e-12
    )
    # What is dropped is exactly the Legendre terms of degree 2 and 3.
    legendre = npoly.legendre.legvander(ts - 1.0, 3)  # x = 2t/2 - 1
    dropped = np.einsum("tk,koi->toi", legendre[:, 2:], coeffs[2:])
    np.testing.assert_allclose(w_full - w_line, dropped, rtol=1e-10, atol=1e-12)
    assert np.max(np.abs(dropped)) > 0.1
    with pytest.raises(TypeError, match="`target` must be an AbstractTimeBasis"):
        jaxode.change_basis(model, "legendre")


# Precision of a test: float32 (x64 off, marked) or float64.
PRECISIONS = [
    pytest.param(False, id="float32", marks=pytest.mark.float32),
    pytest.param(True, id="float64"),
]


@pytest.mark.parametrize("x64", PRECISIONS)
@pytest.mark.parametrize("window", [(0.0, 1.0), (-0.5, 2.0), (0.0, 10.0)])
def test_step_j_uses_piece_j_for_every_step_count_up_to_1000(x64, window):
    # Every pair j < n <= 1000 at once. The step time is ResNet's and HamiltonianNet's,
    # t_j = t0 + j h with j and h in the working dtype; the piece index is the basis's own.
    from jaxode._bases import _piece_index

    jax.config.update("jax_enable_x64", x64)
    dtype = jnp.float64 if x64 else jnp.float32
    t0, t1 = window
    j, n = np.triu_indices(1001, 1)
    h = jnp.asarray((t1 - t0) / n, dtype)
    t = t0 + jnp.asarray(j, dtype) * h
    tau = jaxode.PiecewiseConstantBasis(1, t0=t0, t1=t1).tau(t)
    assert tau.dtype == dtype
    index = np.asarray(_piece_index(tau, jnp.asarray(n, dtype), t0, t1))
    wrong = np.flatnonzero(index != j)
    assert wrong.size == 0, (
        f"{wrong.size} steps use another piece, first (n, j) = {n[wrong[0]], j[wrong[0]]}"
    )
    # Points well inside a piece keep it: its middle and 2% below its upper end.
    for offset in (0.5, 0.98):
        tau = jaxode.PiecewiseConstantBasis(1, t0=t0, t1=t1).tau(t0 + (j + offset) * h)
        np.testing.assert_array_equal(_piece_index(tau, jnp.asarray(n, dtype), t0, t1), j)


@pytest.mark.parametrize("x64", PRECISIONS)
def test_piecewise_constant_basis_one_hot_at_step_times(x64):
    jax.config.update("jax_enable_x64", x64)
    dtype = jnp.float64 if x64 else jnp.float32
    for n in (100, 997):
        basis = jaxode.PiecewiseConstantBasis(n)
        t = 0.0 + jnp.arange(n, dtype=dtype) * (1.0 / n)
        values = jax.vmap(basis)(t)
        assert values.dtype == dtype
        np.testing.assert_array_equal(values, np.eye(n))


def _shifted_legendre_to_powers(c):
    """Monomial coefficients in tau of sum_k c_k P_k(2 tau - 1), by numpy.polynomial."""
    in_x = npoly.legendre.leg2poly(c)
    powers = npoly.Polynomial(in_x)(npoly.Polynomial([-1.0, 2.0])).coef
    return np.pad(powers, (0, len(c) - len(powers)))


def _rounding_floor(powers, tau):
    """Float64 rounding bound of a polynomial held by monomial coefficients, at `tau`."""
    eps = np.finfo(np.float64).eps
    return 1e-13 + 4 * eps * np.abs(tau[:, None]) ** np.arange(len(powers)) @ np.abs(powers)


def _exact_polyval(powers, tau):
    """sum_j a_j tau^j in rational arithmetic: the function float64 coefficients hold."""
    from fractions import Fraction

    coefficients = [Fraction(float(a)) for a in powers]
    values = []
    for x in map(Fraction, map(float, tau)):
        value = Fraction(0)
        for a in reversed(coefficients):
            value = value * x + a
        values.append(float(value))
    return np.array(values)


@pytest.mark.parametrize("degree", range(13))
def test_legendre_monomial_projection_is_exact_up_to_degree_12(degree):
    rng = np.random.default_rng(degree)
    c = rng.uniform(-1.0, 1.0, degree + 1)
    legendre = jaxode.LegendreBasis(degree, t0=T0, t1=T1)
    monomial = jaxode.MonomialBasis(degree, t0=T0, t1=T1)
    powers = jaxode.projection_matrix(legendre, monomial) @ c
    reference = _shifted_legendre_to_powers(c)
    np.testing.assert_allclose(powers, reference, rtol=0, atol=1e-14 * np.abs(reference).max())
    # The function the monomial coefficients hold (summed exactly) is the Legendre series.
    tau = np.linspace(0.0, 1.0, 41)
    series = npoly.legendre.legval(2 * tau - 1, c)
    assert np.abs(_exact_polyval(powers, tau) - series).max() <= 1e-8
    # Summed in float64 by the basis, it is within the rounding of the monomial form (whose
    # coefficients reach 6e7 at degree 12, so about 1e-8 there).
    ts = np.linspace(T0, T1, 301)
    error = np.abs(_values(monomial, ts) @ powers - _values(legendre, ts) @ c)
    floor = _rounding_floor(reference, (ts - T0) / (T1 - T0))
    assert np.all(error <= floor), np.max(error / floor)
    # And back to Legendre, carrying only the rounding of the monomial coefficients.
    back = jaxode.projection_matrix(monomial, legendre) @ powers
    np.testing.assert_allclose(back, c, rtol=0, atol=1e-8)
    np.testing.assert_allclose(back, c, rtol=0, atol=1e-14 * max(1.0, np.abs(reference).max()))


@pytest.mark.parametrize("degree", [3, 8, 12])
def test_monomial_to_monomial_projections_are_exact(degree):
    rng = np.random.default_rng(100 + degree)
    monomial = jaxode.MonomialBasis(degree, t0=T0, t1=T1)
    # The same basis: the identity, exactly.
    np.testing.assert_array_equal(jaxode.projection_matrix(monomial, monomial), np.eye(degree + 1))
    # A larger degree on the same window: the identity padded with zeros, exactly.
    larger = jaxode.projection_matrix(monomial, jaxode.MonomialBasis(degree + 3, t0=T0, t1=T1))
    np.testing.assert_array_equal(larger, np.eye(degree + 4, degree + 1))
    # Another window: tau = (t - T0) / (T1 - T0) = 0.2 + 0.4 tau' for tau' on [0, 1], a
    # change of variable numpy.polynomial composes as the reference.
    a = rng.uniform(-1.0, 1.0, degree + 1)
    other = jaxode.MonomialBasis(degree, t0=0.0, t1=1.0)
    moved = jaxode.projection_matrix(monomial, other) @ a
    reference = npoly.Polynomial(a)(npoly.Polynomial([0.2, 0.4])).coef
    np.testing.assert_allclose(
        moved, np.pad(reference, (0, degree + 1 - len(reference))), rtol=1e-13, atol=1e-16
    )
    ts = np.linspace(0.0, 1.0, 101)
    np.testing.assert_allclose(
        _values(other, ts) @ moved, _values(monomial, ts) @ a, rtol=0, atol=1e-13
    )


def test_fourier_onto_degree_12_monomials_equals_the_legendre_projection_by_scipy():
    # A non-polynomial source onto ill-conditioned monomials: the L2 projection's Legendre
    # coefficients (2k + 1) int_0^1 P_k f dtau by scipy are the reference.
    fourier = jaxode.FourierBasis(2, t0=T0, t1=T1)
    monomial = jaxode.MonomialBasis(12, t0=T0, t1=T1)
    c = np.array([0.3, -0.7, 0.5, 0.9, -0.4])
    powers = jaxode.projection_matrix(fourier, monomial) @ c
    f = lambda tau: float(fourier(T0 + tau * (T1 - T0)) @ c)
    legendre = np.array(
        [
            (2 * k + 1)
            * integrate.quad(
                lambda s, k=k: f(s) * npoly.legendre.legval(2 * s - 1, np.eye(13)[k]),
                0,
                1,
                limit=200,
                epsabs=1e-14,
            )[0]
            for k in range(13)
        ]
    )
    reference = _shifted_legendre_to_powers(legendre)
    ts = np.linspace(T0, T1, 201)
    tau = (ts - T0) / (T1 - T0)
    error = np.abs(_values(monomial, ts) @ powers - npoly.polynomial.polyval(tau, reference))
    assert np.all(error <= 10 * _rounding_floor(reference, tau) + 1e-12), error.max()


def _derivative_reference(basis, t):
    """d phi_k / dt at t from numpy.polynomial or closed forms (zero where constant)."""
    t0, t1 = basis.t0, basis.t1
    if basis.clamp and not (t0 <= t <= t1):
        return np.zeros(basis.num_basis)
    n = basis.num_basis
    if isinstance(basis, jaxode.MonomialBasis):
        return np.array(
            [npoly.Polynomial.basis(k, domain=[t0, t1], window=[0, 1]).deriv()(t) for k in range(n)]
        )
    if isinstance(basis, jaxode.LegendreBasis):
        scale = np.sqrt(2 * np.arange(n) + 1) if basis.orthonormal else np.ones(n)
        return scale * np.array(
            [npoly.Legendre.basis(k, domain=[t0, t1]).deriv()(t) for k in range(n)]
        )
    if isinstance(basis, jaxode.ChebyshevBasis):
        return np.array([npoly.Chebyshev.basis(k, domain=[t0, t1]).deriv()(t) for k in range(n)])
    if isinstance(basis, jaxode.FourierBasis):
        omega = 2 * np.pi * np.arange(1, basis.num_frequencies + 1) / (t1 - t0)
        angle = omega * (t - t0)
        return np.concatenate([[0.0], -omega * np.sin(angle), omega * np.cos(angle)])
    return np.zeros(n)  # constant, and piecewise constant inside its pieces


def _basis_id(basis):
    return type(basis).__name__ + ("-orthonormal" if getattr(basis, "orthonormal", False) else "")


def _with_clamp_variants(bases):
    import dataclasses

    return bases + [dataclasses.replace(b, clamp=not b.clamp) for b in bases]


@pytest.mark.parametrize(
    "basis",
    _with_clamp_variants(all_bases(T0, T1)),
    ids=lambda b: _basis_id(b) + f"-clamp={b.clamp}",
)
def test_time_derivative_is_finite_and_exact_at_the_ends_and_inside(basis):
    times = [T0, T1, T0 + 0.37 * (T1 - T0), T0 + 0.81 * (T1 - T0), T0 - 0.6, T1 + 0.9]
    if isinstance(basis, jaxode.PiecewiseConstantBasis):
        times[2:4] = [T0 + 0.1 * (T1 - T0), T0 + 0.5 * (T1 - T0)]  # inside pieces 0 and 2
    jac = jax.jit(jax.jacfwd(basis))
    grad_of_sum = jax.jit(jax.grad(lambda t: jnp.sum(basis(t))))
    for t in times:
        derivative = np.asarray(jac(jnp.float64(t)))
        assert np.all(np.isfinite(derivative)), (t, derivative)
        reference = _derivative_reference(basis, t)
        np.testing.assert_allclose(derivative, reference, rtol=1e-12, atol=1e-12, err_msg=f"t={t}")
        np.testing.assert_allclose(
            float(grad_of_sum(jnp.float64(t))), reference.sum(), rtol=1e-12, atol=1e-12
        )


def test_getkey_draws_from_a_fixed_seed(getkey, monkeypatch):
    import conftest

    expected = jax.random.split(jax.random.PRNGKey(conftest.seed_of_getkey()))[1]
    np.testing.assert_array_equal(getkey(), expected)
    monkeypatch.delenv("JAXODE_TEST_SEED", raising=False)
    assert conftest.seed_of_getkey() == conftest.DEFAULT_SEED
    monkeypatch.setenv("JAXODE_TEST_SEED", "7")
    assert conftest.seed_of_getkey() == 7


def test_projection_of_a_clamped_source_beyond_its_window_equals_scipy():
    # Held constant outside [0, 1], the source is no polynomial on [-1, 2]: quadrature route,
    # split at the kinks, against scipy's integrals of the same L2 projection.
    source = jaxode.LegendreBasis(2, t0=0.0, t1=1.0, clamp=True)
    target = jaxode.MonomialBasis(4, t0=-1.0, t1=2.0)
    c = np.array([0.4, -1.1, 0.8])
    powers = jaxode.projection_matrix(source, target) @ c
    f = lambda s: float(source(-1.0 + 3.0 * s) @ c)
    legendre = np.array(
        [
            (2 * k + 1)
            * integrate.quad(
                lambda s, k=k: f(s) * npoly.legendre.legval(2 * s - 1, np.eye(5)[k]),
                0,
                1,
                points=[1 / 3, 2 / 3],
                epsabs=1e-14,
            )[0]
            for k in range(5)
        ]
    )
    np.testing.assert_allclose(
        powers, _shifted_legendre_to_powers(legendre), rtol=1e-10, atol=1e-12
    )
