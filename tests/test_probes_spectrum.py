"""Tail spectrum (matrix pencil) against known spectra."""

import json
import math

import numpy as np
import pytest

from jaxode import probes


def _sorted(values):
    return np.array(sorted(values, key=lambda z: (round(z.real, 6), round(z.imag, 6))))


def test_damped_oscillation_around_a_constant():
    step = 0.1
    r = step * np.arange(120)
    result = probes.tail_spectrum(3.0 + 2.0 * np.exp(-0.5 * r) * np.cos(2.0 * r), step)
    assert result.rank[0] == 3
    exponents = result.exponents[0][result.valid[0]]
    np.testing.assert_allclose(_sorted(exponents), _sorted([-0.5 - 2j, -0.5 + 2j, 0.0]), atol=1e-8)
    amplitudes = result.amplitudes[0][result.valid[0]]
    # 2 cos(2r) = e^{2ir} + e^{-2ir}: amplitude 1 for each of the pair, 3 for the constant.
    np.testing.assert_allclose(sorted(amplitudes, key=lambda c: c.real), [1.0, 1.0, 3.0], atol=1e-8)
    assert result.verdicts[0] == "OSCILLATORY"
    data = json.loads(result.to_json())
    assert data["rank"] == [3] and data["verdicts"] == ["OSCILLATORY"]
    np.testing.assert_allclose(
        sorted(np.array(data["exponents"]["real"][0][:3], dtype=float)),
        [-0.5, -0.5, 0.0],
        atol=1e-8,
    )


def test_shifted_start_changes_amplitudes_not_exponents():
    step, r0 = 0.05, 2.0
    r = r0 + step * np.arange(90)
    result = probes.tail_spectrum(1.5 * np.exp(0.3 * r) - 2.0 * np.exp(-1.2 * r), step)
    exponents = result.exponents[0][result.valid[0]]
    np.testing.assert_allclose(np.sort(exponents.real), [-1.2, 0.3], atol=1e-7)
    np.testing.assert_allclose(exponents.imag, 0.0, atol=1e-8)
    amplitudes = result.amplitudes[0][result.valid[0]]
    np.testing.assert_allclose(
        sorted(amplitudes.real),
        sorted([1.5 * math.exp(0.3 * r0), -2.0 * math.exp(-1.2 * r0)]),
        rtol=1e-7,
    )
    assert result.verdicts[0] == "EXP_GROWTH"


def test_free_fall_is_a_triple_root_at_zero():
    step = 0.1
    t = step * np.arange(60)
    result = probes.tail_spectrum(10.0 + 2.0 * t - 4.9 * t**2, step)
    assert result.rank[0] == 3
    # Rounding splits the triple root 0 into a cube-root star of radius ~ eps^{1/3} / step
    # (2e-5 here) whose sum, the trace, stays 0 to first order.
    exponents = result.exponents[0][result.valid[0]]
    assert np.all(np.abs(exponents) < 1e-4)
    assert abs(np.sum(exponents)) < 1e-8
    assert result.verdicts[0] == "POLY(2)"


def test_tanh_tail_is_saturating_with_rate_two_alpha():
    step, alpha = 0.2, 0.7
    r = 5.0 + step * np.arange(100)
    result = probes.tail_spectrum(0.4 + 1.3 * np.tanh(alpha * r - 1.0), step)
    exponents = result.exponents[0][result.valid[0]]
    assert result.verdicts[0] == "CONSTANT_EXP"
    # tanh z = 1 - 2 e^{-2z} + 2 e^{-4z} - ...: exponents 0, -2 alpha, -4 alpha, ...
    np.testing.assert_allclose(exponents[0], 0.0, atol=1e-8)
    # The series has infinitely many terms; the truncated rank leaves an error of ~1e-5.
    np.testing.assert_allclose(exponents[1], -2 * alpha, atol=1e-4)
    np.testing.assert_allclose(exponents.imag, 0.0, atol=1e-6)


def test_batch_of_tails_and_table():
    step = 0.1
    r = step * np.arange(80)
    tails = np.stack([np.sin(1.5 * r), 2.0 + 0.5 * r, np.exp(-r)])
    result = probes.tail_spectrum(tails, step)
    assert list(result.verdicts) == ["OSCILLATORY", "LINEAR", "CONSTANT_EXP"]
    np.testing.assert_allclose(
        np.abs(result.exponents[0][result.valid[0]].imag), [1.5, 1.5], atol=1e-8
    )
    assert "OSCILLATORY" in str(result)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(samples=np.ones(5)), "at least 8"),
        (dict(step=0.0), "step"),
        (dict(samples=np.array([np.nan] * 10)), "NaN"),
        (dict(pencil=9), "pencil"),
    ],
)
def test_bad_input(kwargs, match):
    arguments = dict(samples=np.linspace(0.0, 1.0, 12), step=0.1)
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=match):
        probes.tail_spectrum(**arguments)
