"""probe_report: the JSON holds the probes' closed-form answers; plots show what they claim (one
panel per output, units, legend, the training window) or are listed as skipped."""

import json
import sys

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxode
from jaxode import probes
from jaxode._probes import _report


class TanhNet(eqx.Module):
    w1: jax.Array
    b1: jax.Array
    a: jax.Array
    c: jax.Array

    def __call__(self, x):
        return self.a @ jnp.tanh(self.w1 @ x + self.b1) + self.c


def _net(seed, out_size):
    k1, k2, k3, k4 = jax.random.split(jax.random.PRNGKey(seed), 4)
    return TanhNet(
        jax.random.normal(k1, (3, 2)),
        jax.random.normal(k2, (3,)),
        jax.random.normal(k3, (out_size, 3)),
        jax.random.normal(k4, (out_size,)),
    )


@pytest.fixture
def figures(monkeypatch):
    """The figures `probe_report` saves, by file name, captured before they are closed."""
    captured = {}
    save = _report._save

    def capture(figure, plt, path, report):
        captured[path.name] = figure
        save(figure, plt, path, report)

    monkeypatch.setattr(_report, "_save", capture)
    return captured


def test_report_for_an_input_space_model(tmp_path, figures):
    net = _net(0, 5)
    inputs = np.asarray(jax.random.normal(jax.random.PRNGKey(1), (40, 2)))
    targets = np.asarray(jax.vmap(net)(jnp.asarray(inputs)))
    report = probes.probe_report(
        net, tmp_path, inputs_train=inputs, targets_train=targets, num_directions=16, num_radii=300
    )
    on_disk = json.loads((tmp_path / "report.json").read_text())
    assert on_disk == json.loads(json.dumps(report))
    assert on_disk["plots"] == ["rays.png", "limit_map.png"] and on_disk["plots_skipped"] == []
    assert on_disk["notes"] == []
    for name in on_disk["plots"]:
        assert (tmp_path / name).stat().st_size > 1000
    # The limits in the report follow the sign-pattern formula along each direction. The
    # geometric grid reaches 1e5 data radii: every unit with |alpha| > 1e-3 saturates on it, and
    # these 16 directions all have min |alpha| > 1e-3, so every ray output is CONSTANT_EXP.
    directions = np.asarray(on_disk["limit_map"]["directions"])
    limits = np.array(on_disk["limit_map"]["limit"], dtype=float)
    alphas = directions @ np.asarray(net.w1).T
    assert np.min(np.abs(alphas)) > 1e-3
    expected = np.asarray(net.c) + np.sign(alphas) @ np.asarray(net.a).T
    np.testing.assert_allclose(limits, expected, atol=1e-9)
    assert report["ray_limit_summary"] == {"CONSTANT_EXP": 16 * 5}

    # rays.png: one panel per output (5 outputs in a 2 x 4 grid, the 3 empty cells removed),
    # each with the 8 shown rays and the data radius, a legend and labels in normalised units.
    figure = figures["rays.png"]
    assert len(figure.axes) == 5
    radius = on_disk["data_radius"]
    center = inputs.mean(axis=0)
    for output, axis in enumerate(figure.axes):
        lines = axis.get_lines()
        assert len(lines) == 9 and axis.get_title() == f"output {output}"
        np.testing.assert_allclose(lines[-1].get_xdata(), [radius, radius])
        # The curves are the model's outputs along the rays (the first shown direction here).
        r = lines[0].get_xdata()
        along = jax.vmap(net)(jnp.asarray(center + r[:, None] * directions[0]))
        np.testing.assert_allclose(
            lines[0].get_ydata(), np.asarray(along)[:, output], rtol=1e-12, atol=1e-12
        )
    (legend,) = figure.legends
    assert [t.get_text() for t in legend.get_texts()] == [f"direction {k}" for k in range(8)] + [
        "data radius"
    ]
    assert (
        "normalised units" in figure.get_supxlabel()
        and "normalised units" in figure.get_supylabel()
    )
    assert len(figures["limit_map.png"].axes) == 1


def test_report_for_a_neural_ode_with_a_law(tmp_path, figures):
    basis = jaxode.LegendreBasis(degree=2, t0=0.0, t1=1.0)
    field = jaxode.MLPField(2, 4, basis, key=jax.random.PRNGKey(3))
    field = eqx.tree_at(lambda f: f.outer.weight, field, field.outer.weight.at[2].set(0.5))
    dynamics = jaxode.NeuralODE(field, t1=1.0)
    report = probes.probe_report(dynamics, tmp_path, law=probes.HarmonicOscillator())
    assert (
        report["plots"] == ["weight_norms.png", "extrapolation_error.png"]
        and report["plots_skipped"] == []
    )
    weights = report["weight_asymptotics"]
    # Only the edited outer weight has a degree-2 coefficient: it alone grows like t^2.
    verdicts = dict(zip(weights["names"], weights["verdicts"]))
    assert (
        verdicts["field.outer.weight"] == "POLY(2)"
        and verdicts["field.inner.weight"] == "CONSTANT_EXP"
    )
    extrapolation = report["trajectory_extrapolation"]
    assert extrapolation["t_train"] == 1.0 and extrapolation["t_ext"] == 5.0
    assert extrapolation["bound_holds"] == [True]

    # weight_norms.png: one panel, a curve per weight and bias, the window [0, 1] shaded and
    # its ends marked, the norm named on the axis.
    (axis,) = figures["weight_norms.png"].axes
    assert "spectral norm" in axis.get_ylabel() and "Euclidean norm" in axis.get_ylabel()
    lines = axis.get_lines()
    curves = {line.get_label(): line for line in lines[:4]}
    assert list(curves) == [
        "field.inner.weight",
        "field.inner.bias",
        "field.outer.weight",
        "field.outer.bias",
    ]
    assert [tuple(line.get_xdata()) for line in lines[4:]] == [(0.0, 0.0), (1.0, 1.0)]
    (window,) = axis.patches
    x_min, x_max = window.get_x(), window.get_x() + window.get_width()
    assert (x_min, x_max) == (0.0, 1.0) and "training window" in window.get_label()
    # The outer weight's curve is ||sum_k P_k(2t - 1) W_k||_2, computed here with NumPy.
    times = curves["field.outer.weight"].get_xdata()
    assert times[0] == 0.0 and times[-1] == pytest.approx(1e4 + 1.0)
    coefficients = np.asarray(field.outer.weight)
    tau = 2.0 * times - 1.0
    legendre = np.stack([np.ones_like(tau), tau, 0.5 * (3 * tau**2 - 1)], axis=1)
    expected = [np.linalg.norm(np.tensordot(p, coefficients, axes=1), 2) for p in legendre]
    np.testing.assert_allclose(curves["field.outer.weight"].get_ydata(), expected, rtol=1e-10)


def test_report_without_matplotlib_skips_plots(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    # Same sizes as the first test, so the compiled probes are reused.
    report = probes.probe_report(_net(0, 5), tmp_path, in_size=2, num_directions=16, num_radii=300)
    assert report["plots"] == [] and report["plots_skipped"] == ["rays.png", "limit_map.png"]
    assert report["notes"] == [
        "matplotlib is not installed: plots skipped (rays.png, limit_map.png); "
        "pip install matplotlib to get them."
    ]
    assert not list(tmp_path.glob("*.png"))
    assert json.loads((tmp_path / "report.json").read_text())["plots_skipped"] == [
        "rays.png",
        "limit_map.png",
    ]


def test_report_rejects_rays_that_stop_inside_the_data(tmp_path):
    with pytest.raises(ValueError, match="radius_factor"):
        probes.probe_report(lambda x: jnp.tanh(x), tmp_path, in_size=1, radius_factor=0.5)


def test_report_needs_an_input_size(tmp_path):
    with pytest.raises(ValueError, match="in_size"):
        probes.probe_report(lambda x: jnp.tanh(x), tmp_path)
