"""The documentation's examples (docs/examples/*.py) at their small size, in-process and in
float64, each checked against an independent reference or an invariant of what it shows; and
their pages, which must include the committed script and outputs they talk about."""

import importlib.util
import math
import pathlib
import re
import sys

import jax.numpy as jnp
import numpy as np
import pytest

import jaxode

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "docs" / "examples"
NAMES = (
    "train_surrogate",
    "change_basis",
    "paradigms",
    "cohort",
    "sweep",
    "probe",
    "lorenz",
    "inverse",
)


def example(name: str):
    """The example script as a module (its `main(small, out)` is what the tests call), which
    imports `_transcript` from its own folder as when run as a script."""
    if str(EXAMPLES) not in sys.path:
        sys.path.insert(0, str(EXAMPLES))
    spec = importlib.util.spec_from_file_location(f"docs_example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_train_surrogate_reloads_exactly_and_its_metrics_are_the_data_errors(tmp_path):
    out = example("train_surrogate").main(small=True, out=tmp_path)
    metrics = out["metrics"]
    assert out["status"] == "completed"
    # The reloaded run predicts exactly what the trained model did.
    np.testing.assert_array_equal(out["predictions"], out["predictions_before"])
    # metrics.json's test error is the relative error of those predictions against the data
    # file's own outputs, computed here from scratch.
    x_test, y_test = jaxode.load_dataset("elm").arrays("test", normalised=False)
    assert out["predictions"].shape == y_test.shape
    independent = np.linalg.norm(out["predictions"] - y_test) / np.linalg.norm(y_test)
    assert metrics["test_physical_global"] == pytest.approx(independent, rel=1e-10)
    assert out["evaluated"]["test_global"] == pytest.approx(metrics["test_global"], rel=1e-10)
    assert 0 < metrics["test_global"] < 1.0  # one epoch already beats predicting zero
    text = (tmp_path / "output.txt").read_text()
    assert f"{metrics['test_physical_global']:.4f}" in text
    assert (tmp_path / "loss_curves.png").stat().st_size > 0


def test_change_basis_keeps_predictions_and_condition_numbers_match_numpy(tmp_path):
    out = example("change_basis").main(small=True, out=tmp_path)
    # Monomial and Legendre polynomials of one degree span the same space: the same function.
    assert out["start_gap"] <= 1e-12
    assert out["prediction_gap"] <= 1e-10
    assert out["elevation_gap"] <= 1e-10
    assert out["round_trip"] <= 1e-10
    # The converted model really is in the Legendre basis.
    bases = {type(b).__name__ for b in out["converted"].dynamics.field.bases()}
    assert bases == {"LegendreBasis"}
    # Condition numbers against NumPy's Vandermonde matrices on the same times (window [0, 1]).
    tau = np.asarray(out["times"])
    for degree, monomial, legendre, chebyshev in out["conditions"]:
        vander = np.polynomial.polynomial.polyvander(tau, degree)
        assert monomial == pytest.approx(np.linalg.cond(vander), rel=1e-8)
        assert legendre == pytest.approx(
            np.linalg.cond(np.polynomial.legendre.legvander(2 * tau - 1, degree)), rel=1e-8
        )
        assert chebyshev == pytest.approx(
            np.linalg.cond(np.polynomial.chebyshev.chebvander(2 * tau - 1, degree)), rel=1e-8
        )
    assert out["conditions"][-1][1] > 1e4 * out["conditions"][-1][2]  # degree 8: monomials lose


def test_paradigms_gradients_agree_with_each_other_and_finite_differences(tmp_path):
    out = example("paradigms").main(small=True, out=tmp_path)
    differences = out["differences"]
    tightest = out["tolerances"][-1]
    assert tightest == 1e-10  # float64 adds the tight tolerances
    # The continuous adjoint's gradient converges to the discrete one as the tolerance tightens.
    assert differences[tightest] < 1e-6
    assert differences[tightest] < 1e-2 * differences[out["tolerances"][0]]
    fd = out["finite_difference"]
    assert abs(out["directional"]["DTO"] - fd) <= 1e-6 * abs(fd)
    assert abs(out["directional"]["OTD"] - fd) <= 1e-5 * abs(fd)
    dto = out["counts"]["discretize-then-optimize"]
    otd = out["counts"]["optimize-then-discretize"]
    # One forward solve, the same in both; Dopri5 (FSAL) evaluates 1 + 6 per attempted step.
    assert dto.forward_evaluations == otd.forward_evaluations
    assert dto.forward_evaluations == 1 + 6 * (dto.accepted_steps + dto.rejected_steps)
    assert dto.backward_evaluations > 0 and otd.backward_evaluations > 0
    for row in out["memory"].values():
        assert all(v is None or v > 0 for v in row.values())


def test_cohort_member_equals_a_single_fit_and_the_ensemble_beats_the_mean(tmp_path):
    out = example("cohort").main(small=True, out=tmp_path)
    errors = out["member_errors"]
    assert np.all(np.isfinite(errors)) and errors.shape == (len(out["seeds"]), 2)
    assert all(r.status == "completed" and r.num_traces == 1 for r in out["results"])
    # A cohort is a vmap: member 0 ends where jaxode.fit ends it alone, to rounding.
    assert out["alone_difference"] <= 1e-10
    # The members are different models ...
    predictions = out["predictions"]
    assert np.abs(predictions[0] - predictions[1]).max() > 1e-3
    # ... and the mean of their predictions cannot be worse than their mean error (the
    # triangle inequality), here recomputed from the predictions themselves.
    _, y_test = jaxode.load_dataset("elm").arrays("test", normalised=False)
    ensemble = np.linalg.norm(predictions.mean(axis=0) - y_test) / np.linalg.norm(y_test)
    assert out["ensemble_error"] == pytest.approx(ensemble, rel=1e-12)
    assert ensemble <= errors[:, 0].mean()
    assert out["std"][0] == pytest.approx(np.std(errors[:, 0], ddof=1))


def test_sweep_report_holds_every_cell_with_its_seed_statistics(tmp_path):
    out = example("sweep").main(small=True, out=tmp_path / "out", sweep_dir=tmp_path / "sweep")
    rows = out["rows"]
    assert len(rows) == len(out["plan"].cells) == 4
    assert all(row["status"] == "completed" for row in rows)
    assert [r["test_global"] for r in out["again"]] == [r["test_global"] for r in rows]
    # table.csv: one row per (basis, degree) group, its mean and sample std over the seeds.
    lines = (tmp_path / "out" / "report" / "table.csv").read_text().strip().splitlines()
    header = lines[0].split(",")
    table = {tuple(line.split(",")[:2]): dict(zip(header, line.split(","))) for line in lines[1:]}
    groups = {}
    for row in rows:
        groups.setdefault((row["model.basis"], str(row["model.degree"])), []).append(
            row["test_global"]
        )
    assert set(table) == set(groups)
    for key, values in groups.items():
        cell = table[key]
        assert int(cell["field=layer n"]) == len(values) == 2
        assert float(cell["field=layer mean"]) == pytest.approx(np.mean(values), rel=1e-9)
        assert float(cell["field=layer std"]) == pytest.approx(np.std(values, ddof=1), rel=1e-9)
    assert "cells: 4, completed 4" in out["report"]["table"]
    assert (tmp_path / "out" / "report" / "error_vs_degree.png").is_file()


def test_probe_verdicts_match_closed_forms_and_the_limit_is_the_far_value(tmp_path):
    example_module = example("probe")
    out = example_module.main(small=True, out=tmp_path)
    check = out["check"]  # 0.3 + 2 tanh(0.5 x + 1) - tanh(3 x)
    assert list(check.verdicts[0, :, 0]) == ["CONSTANT_EXP", "CONSTANT_EXP"]
    np.testing.assert_allclose(check.limit[0, :, 0], [1.3, -0.7], atol=1e-8)
    np.testing.assert_allclose(check.rate[0, :, 0], [1.0, 1.0], rtol=1e-2)
    # The law: height is quadratic in time, velocity linear, along both rays.
    law = out["law_rays"]
    assert [list(v) for v in law.verdicts[0]] == [["POLY(2)", "LINEAR"]] * 2
    np.testing.assert_allclose(law.power[0], [[2.0, 1.0], [2.0, 1.0]], atol=1e-3)
    # A tanh-opened surrogate converges exponentially along every ray, to its far value.
    model = out["model_rays"]
    assert np.all(model.verdicts == "CONSTANT_EXP")
    # The points: the training range, then the future ray, then the past ray.
    count = len(out["radii"])
    far_future, far_past = out["model_values"][-count - 1], out["model_values"][-1]
    assert out["points"][-1, 0] == pytest.approx(2.0 - out["radii"][-1])
    np.testing.assert_allclose(model.limit[0], [far_future, far_past], rtol=1e-6, atol=1e-9)
    # The plotted law is the closed form h = 20 t - g t^2 / 2, v = 20 - g t.
    t = out["points"][:, 0]
    np.testing.assert_allclose(
        out["law_values"],
        np.stack([20 * t - 4.905 * t**2, 20 - 9.81 * t], 1),
        rtol=1e-12,
        atol=1e-9,
    )
    # So its error far out grows like the law: quadratically.
    assert abs(out["far"].power - 2.0) < 0.1
    assert out["far"].shell_error[-1] > out["far"].shell_error[0]


def test_lorenz_data_match_scipy_and_the_extrapolation_starts_on_the_truth(tmp_path):
    from scipy.integrate import solve_ivp

    out = example("lorenz").main(small=True, out=tmp_path)
    ts, ys = out["ts"], out["ys"]

    def lorenz(t, y, sigma=10.0, rho=28.0, beta=8.0 / 3.0):
        return [sigma * (y[1] - y[0]), y[0] * (rho - y[2]) - y[1], y[0] * y[1] - beta * y[2]]

    reference = solve_ivp(
        lorenz, (ts[0], ts[-1]), out["start"], method="DOP853", t_eval=ts, rtol=1e-13, atol=1e-12
    ).y.T
    assert np.max(np.abs(ys - reference)) <= 1e-7 * np.max(np.abs(reference))
    # The extrapolation starts from the true last training state ...
    assert out["errors"][0] <= 1e-12
    assert out["times"][0] == pytest.approx(ts[np.searchsorted(ts, out["times"][0])])
    # ... and its valid prediction time is where its error first passes 30 %.
    beyond = np.nonzero(out["errors"] > 0.3)[0]
    expected = (out["times"][beyond[0]] if beyond.size else out["times"][-1]) - out["times"][0]
    assert out["vpt"] == pytest.approx(expected)
    # So do the runs from later true states, each one on the truth at its start.
    assert np.all(out["run_errors"][:, 0] <= 1e-12)
    for errors, vpt in zip(out["run_errors"], out["vpts"]):
        beyond = np.nonzero(errors > 0.3)[0]
        steps = beyond[0] if beyond.size else len(errors) - 1
        assert vpt == pytest.approx(steps * (ts[1] - ts[0]))
    assert all(math.isfinite(row["train_loss"]) for row in out["history"])


@pytest.mark.parametrize("name", NAMES)
def test_example_pages_include_their_script_and_committed_outputs(name):
    page = (EXAMPLES / f"{name}.md").read_text()
    assert f'--8<-- "docs/examples/{name}.py"' in page
    included = [tuple(ref.partition(":")[::2]) for ref in re.findall(r'--8<-- "([^"]+)"', page)]
    # Prose, code and output interleaved: parts of the script, each followed by what it printed.
    code_parts = [part for path, part in included if path == f"docs/examples/{name}.py" and part]
    printed = [p for path, p in included if path == f"docs/examples/output/{name}/output.txt"]
    assert len(code_parts) >= 3 and len(printed) >= 3 and all(printed)
    root = EXAMPLES.parent.parent
    for path, part in included:
        assert (root / path).is_file(), path
        if part:
            text = (root / path).read_text()
            assert f"--8<-- [start:{part}]" in text and f"--8<-- [end:{part}]" in text, part
    figures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", page)
    assert figures, "every example page shows a figure or its report"
    for figure in figures:
        assert (EXAMPLES / figure).is_file(), figure
    index = (EXAMPLES / "index.md").read_text()
    assert f"({name}.md)" in index


def test_inverse_recovers_the_inputs_the_surrogate_made_and_differentiates_through_it(tmp_path):
    out = example("inverse").main(small=True, out=tmp_path)
    truth, found, again = out["truth"], out["found"], out["again"]
    low, high = np.array([1.0, 0.05]), np.array([3.0, 0.5])
    assert np.all((found >= low) & (found <= high))
    # From the surrogate's own observations the true inputs are the exact minimisers.
    np.testing.assert_allclose(again, truth, atol=1e-3 * (high - low).max())
    # The recovered inputs reproduce those observations through the trained model itself.
    trained = out["trained"]
    own = np.stack([np.asarray(out["function"](jnp.asarray(row))) for row in truth])
    np.testing.assert_allclose(trained.predict(again), own, rtol=1e-3, atol=1e-4)
