"""probe_report: the JSON holds the probes' closed-form answers, plots are written or skipped."""

import json
import sys

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxode
from jaxode import probes


class TanhNet(eqx.Module):
    w1: jax.Array
    b1: jax.Array
    a: jax.Array
    c: jax.Array

    def __call__(self, x):
        return self.a @ jnp.tanh(self.w1 @ x + self.b1) + self.c


def _net(key):
    k1, k2, k3, k4 = jax.random.split(key, 4)
    return TanhNet(
        jax.random.normal(k1, (3, 2)), jax.random.normal(k2, (3,)), jax.random.normal(k3, (1, 3)), jax.random.normal(k4, (1,))
    )


def test_report_for_an_input_space_model(tmp_path, getkey):
    net = _net(getkey())
    inputs = np.asarray(jax.random.normal(getkey(), (40, 2)))
    targets = np.asarray(jax.vmap(net)(jnp.asarray(inputs)))
    report = probes.probe_report(net, tmp_path, inputs_train=inputs, targets_train=targets, num_directions=16, num_radii=300)
    on_disk = json.loads((tmp_path / "report.json").read_text())
    assert on_disk["plots"] == ["rays.png", "limit_map.png"]
    for name in on_disk["plots"]:
        assert (tmp_path / name).stat().st_size > 1000
    # The limits in the report follow the sign-pattern formula along each direction.
    directions = np.asarray(on_disk["limit_map"]["directions"])
    limits = np.array(on_disk["limit_map"]["limit"], dtype=float)
    alphas = directions @ np.asarray(net.w1).T
    expected = np.asarray(net.c) + np.sign(alphas) @ np.asarray(net.a).T
    # The geometric grid reaches 1e5 data radii: every unit with |alpha| > 1e-3 saturates on it.
    well_inside = np.min(np.abs(alphas), axis=1) > 1e-3
    assert well_inside.sum() >= 12
    np.testing.assert_allclose(limits[well_inside], expected[well_inside], atol=1e-9)
    assert report["ray_limit_summary"].get("CONSTANT_EXP", 0) >= well_inside.sum()


def test_report_for_a_neural_ode_with_a_law(tmp_path, getkey):
    basis = jaxode.LegendreBasis(degree=2, t0=0.0, t1=1.0)
    field = jaxode.MLPField(2, 4, basis, key=getkey())
    field = eqx.tree_at(lambda f: f.outer.weight, field, field.outer.weight.at[2].set(0.5))
    dynamics = jaxode.NeuralODE(field, t1=1.0)
    report = probes.probe_report(dynamics, tmp_path, law=probes.HarmonicOscillator())
    assert sorted(report["plots"]) == ["extrapolation_error.png", "weight_norms.png"]
    weights = report["weight_asymptotics"]
    # Only the edited outer weight has a degree-2 coefficient: it alone grows like t^2.
    verdicts = dict(zip(weights["names"], weights["verdicts"]))
    assert verdicts["field.outer.weight"] == "POLY(2)" and verdicts["field.inner.weight"] == "CONSTANT_EXP"
    extrapolation = report["trajectory_extrapolation"]
    assert extrapolation["t_train"] == 1.0 and extrapolation["t_ext"] == 5.0
    assert extrapolation["bound_holds"] == [True]


def test_report_without_matplotlib_skips_plots(tmp_path, getkey, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    # Same sizes as the first test, so the compiled probes are reused.
    report = probes.probe_report(_net(getkey()), tmp_path, in_size=2, num_directions=16, num_radii=300)
    assert report["plots"] == [] and "matplotlib" in report["notes"][0]
    assert not list(tmp_path.glob("*.png")) and (tmp_path / "report.json").exists()


def test_report_rejects_rays_that_stop_inside_the_data(tmp_path):
    with pytest.raises(ValueError, match="radius_factor"):
        probes.probe_report(lambda x: jnp.tanh(x), tmp_path, in_size=1, radius_factor=0.5)


def test_report_needs_an_input_size(tmp_path):
    with pytest.raises(ValueError, match="in_size"):
        probes.probe_report(lambda x: jnp.tanh(x), tmp_path)
