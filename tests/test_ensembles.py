"""Ensembles with calibrated uncertainty (issue 28): the variance model floor^2 + scale^2 spread^2
fitted by maximum likelihood on validation data, the Gaussian scores, and an ensemble trained,
calibrated, loaded and used from the command line, checked against its members' own
predictions."""

import json

import numpy as np
import pytest
import scipy.stats

import jaxode
from jaxode import coverage, fit_calibration, gaussian_nll
from jaxode._cli import main
from jaxode._uncertainty import half_width


def _synthetic(n: int, floors, scales, seed: int = 0):
    rng = np.random.default_rng(seed)
    outputs = len(floors)
    mean = rng.normal(size=(n, outputs))
    spread = rng.lognormal(mean=0.0, sigma=0.7, size=(n, outputs))
    std = np.sqrt(np.square(floors) + np.square(scales) * spread**2)
    return mean, spread, mean + std * rng.normal(size=(n, outputs)), std


def test_the_calibration_recovers_the_floor_and_scale_that_drew_the_data():
    floors, scales = np.array([0.3, 0.0, 1.5]), np.array([2.0, 0.5, 0.2])
    mean, spread, y, _ = _synthetic(40000, floors, scales)
    found_floors, found_scales = fit_calibration(mean, spread, y)
    np.testing.assert_allclose(found_scales, scales, rtol=0.05)
    np.testing.assert_allclose(found_floors[[0, 2]], floors[[0, 2]], rtol=0.05)
    assert found_floors[1] < 0.05


def test_the_calibration_is_the_maximum_of_the_likelihood_on_a_grid():
    mean, spread, y, _ = _synthetic(500, np.array([0.4]), np.array([1.3]), seed=1)
    (a,), (s,) = fit_calibration(mean, spread, y)
    r, v = (y - mean)[:, 0], spread[:, 0] ** 2

    def nll(a, s):
        var = a**2 + s**2 * v
        return -np.mean(scipy.stats.norm.logpdf(r, scale=np.sqrt(var)))

    grid = [nll(ga, gs) for ga in np.linspace(0.01, 1.5, 150) for gs in np.linspace(0.01, 3, 150)]
    assert nll(a, s) <= min(grid) + 1e-9
    assert nll(a, s) <= nll(a * 1.01, s) and nll(a, s) <= nll(a, s * 0.99)


def test_scores_agree_with_scipy_and_a_calibrated_normal_covers_its_levels():
    mean, _, y, std = _synthetic(20000, np.array([0.5, 0.1]), np.array([1.0, 3.0]), seed=2)
    expected = -np.mean(scipy.stats.norm.logpdf(y, loc=mean, scale=std), axis=0)
    np.testing.assert_allclose(gaussian_nll(mean, std, y), expected, rtol=1e-12)
    assert half_width(0.9) == pytest.approx(scipy.stats.norm.ppf(0.95), rel=1e-12)
    for level in (0.5, 0.9, 0.95):
        # Within four binomial standard deviations of the nominal level.
        tolerance = 4 * np.sqrt(level * (1 - level) / len(y))
        np.testing.assert_allclose(coverage(mean, std, y, level), level, atol=tolerance)


def test_scores_refuse_bad_input():
    mean = np.zeros((3, 2))
    with pytest.raises(ValueError, match="one shape"):
        gaussian_nll(mean, np.ones((3, 1)), mean)
    with pytest.raises(ValueError, match="`std` must be positive"):
        gaussian_nll(mean, np.zeros((3, 2)), mean)
    with pytest.raises(ValueError, match="finite"):
        fit_calibration(mean, np.ones((3, 2)), np.full((3, 2), np.nan))
    with pytest.raises(ValueError, match="level"):
        half_width(1.0)


TINY = {
    "data": {"dataset": "elm"},
    "model": {"model": "resnet", "field": "layer", "width": 4, "steps": 2, "degree": 1},
    "train": {"iterations": 30, "batch_size": 32, "eval_every_iterations": 10},
}


@pytest.fixture(scope="module")
def ensemble(tmp_path_factory):
    """Three members of the float32 default, trained as one cohort and calibrated."""
    folder = tmp_path_factory.mktemp("ensemble") / "ens"
    trained, metrics = jaxode.train_ensemble(
        jaxode.RunConfig.from_dict(TINY), folder, size=3, progress=False
    )
    return folder, trained, metrics


def _member_predictions(folder, x) -> np.ndarray:
    """Each member loaded on its own from its run directory."""
    return np.stack([jaxode.load(folder / f"seed-{s}").predict(x) for s in range(3)])


def test_an_ensemble_predicts_its_members_mean_and_calibrated_spread(ensemble):
    folder, trained, metrics = ensemble
    data = jaxode.load_dataset("elm")
    x, y = data.arrays("test", normalised=False)
    members = _member_predictions(folder, x)
    mean, std = trained.predict(x, return_std=True)
    np.testing.assert_allclose(mean, members.mean(axis=0), rtol=1e-12)
    spread = members.std(axis=0, ddof=1)
    assert trained.floors is not None and trained.scales is not None
    np.testing.assert_allclose(
        std, np.sqrt(trained.floors**2 + trained.scales**2 * spread**2), rtol=1e-12
    )
    error = np.linalg.norm(members.mean(axis=0) - y) / np.linalg.norm(y)
    assert metrics["test_physical_global"] == pytest.approx(error, rel=1e-10)
    alone = [np.linalg.norm(p - y) / np.linalg.norm(y) for p in members]
    assert metrics["test_members_physical_global_mean"] == pytest.approx(np.mean(alone))
    assert metrics["test_members_physical_global_std"] == pytest.approx(np.std(alone, ddof=1))
    lower, upper = trained.interval(x, 0.9)
    np.testing.assert_allclose(upper - lower, 2 * 1.6448536269514722 * std, rtol=1e-9)


def test_the_calibration_is_fitted_on_validation_and_stored(ensemble):
    folder, trained, metrics = ensemble
    data = jaxode.load_dataset("elm")
    fits = {}
    for split in ("val", "test"):
        x, y = data.arrays(split, normalised=False)
        members = _member_predictions(folder, x)
        fits[split] = fit_calibration(members.mean(axis=0), members.std(axis=0, ddof=1), y)
    assert trained.floors is not None and trained.scales is not None
    np.testing.assert_allclose(trained.floors, fits["val"][0], rtol=1e-6)
    np.testing.assert_allclose(trained.scales, fits["val"][1], rtol=1e-6)
    assert not np.allclose(trained.scales, fits["test"][1], rtol=1e-3)
    stored = json.loads((folder / "ensemble.json").read_text())
    assert stored["scales"] == pytest.approx(trained.scales.tolist(), rel=1e-12)
    loaded = jaxode.load(folder)
    assert isinstance(loaded, jaxode.Ensemble) and loaded.floors is not None
    np.testing.assert_allclose(loaded.floors, trained.floors, rtol=1e-12)
    assert (folder / "calibration.png").stat().st_size > 0
    # The scores of validation are those of its own fit: NLL at the likelihood's maximum.
    x, y = data.arrays("val", normalised=False)
    mean, std = trained.predict(x, return_std=True)
    scale = trained.y_norm.scale
    expected = float(np.mean(gaussian_nll(mean / scale, std / scale, y / scale)))
    assert metrics["val_nll"] == pytest.approx(expected, rel=1e-9)


def test_predict_writes_the_spread_and_intervals_of_an_ensemble(ensemble, tmp_path, capsys):
    folder, trained, _ = ensemble
    x = jaxode.load_dataset("elm").arrays("test", normalised=False)[0][:4]
    inputs = tmp_path / "in.csv"
    np.savetxt(inputs, x, delimiter=",")
    out = tmp_path / "out.csv"
    assert (
        main(["predict", str(folder), str(inputs), "--std", "--level", "0.8", "--output", str(out)])
        == 0
    )
    header = out.read_text().splitlines()[0].split(",")
    table = np.loadtxt(out, delimiter=",", skiprows=1)
    outputs = trained.model.out_size
    assert header[outputs] == "std0" and header[2 * outputs] == "lower0"
    mean, std = trained.predict(x, return_std=True)
    lower, upper = trained.interval(x, 0.8)
    np.testing.assert_allclose(table, np.concatenate([mean, std, lower, upper], axis=1), rtol=1e-12)
    assert main(["predict", str(folder), str(inputs), "--level", "1.5", "--force"]) == 2
    assert "--level must lie between 0 and 1" in capsys.readouterr().err
    other = ["evaluate", str(folder), "--data", "elm", "--output", str(tmp_path / "d.json")]
    assert main(other) == 0  # other data, as calibrated: here the same split and protocol
    on_data = json.loads((tmp_path / "d.json").read_text())
    assert on_data["test_physical_global"] == pytest.approx(
        json.loads((folder / "ensemble.json").read_text())["test_physical_global"], rel=1e-12
    )
    assert main(["evaluate", str(folder), "--output", str(tmp_path / "e.json")]) == 0
    evaluated = json.loads((tmp_path / "e.json").read_text())
    stored = json.loads((folder / "ensemble.json").read_text())
    assert evaluated["test_coverage_90"] == stored["test_coverage_90"]
    assert evaluated["scales"] == pytest.approx(stored["scales"], rel=1e-12)
    single = folder / "seed-0"
    assert main(["predict", str(single), str(inputs), "--std", "--force"]) == 2
    assert "a single run has no predictive spread" in capsys.readouterr().err


def test_an_ensemble_needs_two_members_of_one_data_set(ensemble):
    folder, trained, _ = ensemble
    with pytest.raises(ValueError, match="at least two members"):
        jaxode.Ensemble(trained.members[:1])
    with pytest.raises(ValueError, match="both `floors` and `scales`"):
        jaxode.Ensemble(trained.members, floors=trained.floors)
    with pytest.raises(ValueError, match="size"):
        jaxode.train_ensemble(jaxode.RunConfig.from_dict(TINY), folder.parent / "one", size=1)
