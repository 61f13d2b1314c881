"""experiments/baselines.py against independent references: NumPy least squares, the data
README's sanity baselines, ridge's normal equations, sklearn's GP marginal likelihood, and the
noise floor of a synthetic problem with a known function."""

import pathlib
import sys

import numpy as np
import pytest

import jaxode

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "experiments"))
import baselines  # needs scikit-learn: the `jaxode[baselines]` extra


def _relative(p, y):
    return np.linalg.norm(p - y) / np.linalg.norm(y)


def _per_sample(p, y):
    return np.mean(np.linalg.norm(p - y, axis=1) / np.linalg.norm(y, axis=1))


def _test_errors(dataset, fit_function, params=None):
    split = baselines.split_of(dataset)
    fit = fit_function(split, params or {}, 0)
    return baselines.errors(dataset, "test", fit.predict(dataset.arrays("test")[0]))


def test_elm_mean_and_least_squares_equal_numpy_and_the_readme():
    elm = jaxode.load_dataset("elm")
    x_train, y_train = elm.arrays("train")
    x_test, y_test = elm.arrays("test")
    mean_errors = _test_errors(elm, baselines.fit_mean)
    lstsq_errors = _test_errors(elm, baselines.fit_least_squares)

    # Direct NumPy: lstsq with an intercept column, errors by np.linalg.norm.
    coef = np.linalg.lstsq(np.c_[x_train, np.ones(len(x_train))], y_train, rcond=None)[0]
    lstsq = np.c_[x_test, np.ones(len(x_test))] @ coef
    mean = np.tile(y_train.mean(axis=0), (len(x_test), 1))
    for ours, prediction in ((mean_errors, mean), (lstsq_errors, lstsq)):
        assert ours["normalised"]["global"] == pytest.approx(
            _relative(prediction, y_test), rel=1e-10
        )
        assert ours["normalised"]["per_sample"] == pytest.approx(
            _per_sample(prediction, y_test), rel=1e-10
        )
        # Physical units: undo the min-max scaling by hand from the raw training outputs.
        raw_train = elm.y[elm.splits["train"]]
        low, spread = raw_train.min(axis=0), (raw_train - raw_train.min(axis=0)).max(axis=0)
        raw_test = elm.y[elm.splits["test"]]
        assert ours["physical"]["global"] == pytest.approx(
            _relative(prediction * spread + low, raw_test), rel=1e-10
        )

    # /work/shared/data/README.md, ELM in normalised units, to 3 digits.
    assert abs(mean_errors["normalised"]["global"] - 0.530) <= 5e-4
    assert abs(mean_errors["normalised"]["per_sample"] - 0.779) <= 5e-4
    assert abs(lstsq_errors["normalised"]["global"] - 0.259) <= 5e-4
    assert abs(lstsq_errors["normalised"]["per_sample"] - 0.375) <= 5e-4


def test_cdr_mean_and_least_squares_equal_the_readme_in_physical_units():
    cdr = jaxode.load_dataset("cdr", seed=0)
    mean_errors = _test_errors(cdr, baselines.fit_mean)
    lstsq_errors = _test_errors(cdr, baselines.fit_least_squares)
    assert abs(mean_errors["physical"]["global"] - 0.172) <= 5e-4
    assert abs(mean_errors["physical"]["per_sample"] - 0.148) <= 5e-4
    assert abs(lstsq_errors["physical"]["global"] - 0.041) <= 5e-4
    assert abs(lstsq_errors["physical"]["per_sample"] - 0.034) <= 5e-4
    # z-scored outputs: the training mean predicts ~0, so its error relative to ~Y is ~1.
    assert mean_errors["normalised"]["global"] == pytest.approx(1.0, abs=0.05)


def test_ridge_tends_to_least_squares_and_solves_its_normal_equations():
    elm = jaxode.load_dataset("elm")
    split = baselines.split_of(elm)
    x_test = elm.arrays("test")[0]
    lstsq = baselines.fit_least_squares(split, {}, 0).predict(x_test)
    gaps = [
        np.max(np.abs(baselines.fit_ridge(split, {"alpha": a}, 0).predict(x_test) - lstsq))
        for a in (1e-2, 1e-6, 0.0)
    ]
    assert gaps[0] > gaps[1] > gaps[2]
    assert gaps[1] < 1e-6 and gaps[2] < 1e-10

    # alpha > 0: the normal equations of [X 1] with the intercept unpenalised.
    alpha = 3.0
    design = np.c_[split.x_train, np.ones(len(split.x_train))]
    penalty = alpha * np.diag(np.r_[np.ones(split.x_train.shape[1]), 0.0])
    beta = np.linalg.solve(design.T @ design + penalty, design.T @ split.y_train)
    ridge = baselines.fit_ridge(split, {"alpha": alpha}, 0).predict(x_test)
    np.testing.assert_allclose(ridge, np.c_[x_test, np.ones(len(x_test))] @ beta, atol=1e-11)


def test_gp_objective_equals_sklearns_marginal_likelihood_and_gradient():
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel

    rng = np.random.default_rng(3)
    x = rng.uniform(-1, 1, (40, 4))
    y = np.c_[np.sin(3 * x[:, 0]) + x[:, 1], x[:, 2] ** 2 + 5.0] + 0.1 * rng.standard_normal(
        (40, 2)
    )
    kernel = ConstantKernel(1.3) * RBF(np.array([0.5, 1.0, 2.0, 4.0])) + WhiteKernel(0.05)
    gp = GaussianProcessRegressor(kernel, normalize_y=True, optimizer=None).fit(x, y)
    for shift in (0.0, 0.4, -0.7):
        theta = kernel.theta + shift * rng.standard_normal(kernel.theta.shape)
        value, grad = gp.log_marginal_likelihood(theta, eval_gradient=True)
        ours, our_grad = baselines.gp_objective(theta, x, baselines.standardise(y))
        assert -ours == pytest.approx(value, rel=1e-10)
        np.testing.assert_allclose(-our_grad, grad, rtol=1e-8, atol=1e-8 * np.abs(grad).max())


NOISE = 0.05


def _synthetic(seed: int = 0):
    """Two outputs of inputs 0 and 1 in [-1, 1]^3 (input 2 irrelevant), noise std `NOISE`;
    200 / 80 / 300 samples."""
    rng = np.random.default_rng(seed)

    def truth(x):
        return np.c_[np.sin(2 * x[:, 0]) + x[:, 1] ** 2, np.cos(3 * x[:, 1]) * x[:, 0] + 1.0]

    x = rng.uniform(-1, 1, (580, 3))
    y = truth(x) + NOISE * rng.standard_normal((580, 2))
    train, val, test = slice(0, 200), slice(200, 280), slice(280, 580)
    split = baselines.Split(x[train], y[train], x[val], y[val])
    return split, x[test], y[test], truth(x[test])


def test_gp_and_kernel_ridge_approach_the_noise_floor_of_a_known_function():
    split, x_test, y_test, f_test = _synthetic()
    mean_error = _relative(np.tile(split.y_train.mean(axis=0), (len(y_test), 1)), y_test)
    floor = _relative(f_test, y_test)  # the error of the true function: noise only
    best_factor = mean_error / floor  # what a perfect predictor gains over the training mean
    # In expectation sqrt(1 + mean output variance / sigma^2), the variances for x ~ U[-1, 1]:
    # Var[sin 2x0 + x1^2] = 1/2 - sin(4)/8 + 4/45, Var[x0 cos 3x1] = (1/2 + sin(6)/12) / 3.
    variance = (0.5 - np.sin(4) / 8 + 4 / 45 + (0.5 + np.sin(6) / 12) / 3) / 2
    assert best_factor == pytest.approx(np.sqrt(1 + variance / NOISE**2), rel=0.1)  # ~13

    gp = baselines.fit_gp(
        split, {"start_scale": 1.0, "jitter": 0.3, "start_noise": 0.1, "maxiter": 200}, 0
    )
    gp_factor = mean_error / _relative(gp.predict(x_test), y_test)
    assert 0.85 * best_factor <= gp_factor <= 1.05 * best_factor  # measured 0.92
    scales = np.asarray(gp.info["length_scales"])
    assert scales[2] > 10 * scales[:2].max()  # ARD switches the irrelevant input off

    krr_grid = baselines.grid(gamma_scale=2.0 ** np.arange(-4, 4), alpha=10.0 ** np.arange(-7, 1))
    index, krr, tried = baselines.select(baselines.fit_kernel_ridge, krr_grid, split)
    assert tried[index]["val_normalised"]["global"] == min(
        t["val_normalised"]["global"] for t in tried
    )
    krr_factor = mean_error / _relative(krr.predict(x_test), y_test)
    assert 0.65 * best_factor <= krr_factor <= 1.05 * best_factor  # measured 0.86 (isotropic)


def test_mean_std_is_the_sample_statistic():
    stat = baselines.mean_std([1.0, 2.0, 4.0])
    assert stat["mean"] == pytest.approx(7 / 3)
    assert stat["std"] == pytest.approx(np.sqrt(7 / 3))  # ddof = 1: 42/9 / 2
    assert stat["n"] == 3
    assert baselines.mean_std([0.5]) == {"mean": 0.5, "std": None, "n": 1}
