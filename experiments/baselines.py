"""Standard baselines on the splits and units jaxode uses: training mean, linear least squares,
ridge, a tanh MLP, RBF kernel ridge, an ARD Gaussian process and gradient boosting, on ELM and
CDR. Models fit the normalised training arrays of `jaxode.load_dataset`; hyperparameters are
chosen on the validation split (global relative error, normalised units); errors are reported on
the test split, global and per-sample, in normalised and physical units. Writes baselines.json
(every number, settings, choices, seeds, timings, versions) and baselines.md.

    python experiments/baselines.py --out experiments/results           # about 20 min, 1 core
    python experiments/baselines.py --quick --out /tmp/baselines        # about 2 min

Needs scikit-learn (`pip install jaxode[baselines]`).
"""

# ruff: noqa: E402  (the thread variables below must be set before NumPy loads its BLAS)

import os

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")  # one core: before NumPy loads its BLAS

import argparse
import dataclasses
import itertools
import json
import pathlib
import platform
import sys
import time
import warnings
from collections.abc import Callable

import numpy as np
import scipy
import scipy.linalg
import scipy.optimize
import sklearn
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel
from sklearn.kernel_ridge import KernelRidge
from sklearn.neural_network import MLPRegressor

import jaxode

DATASETS = {"elm": {}, "cdr": {"seed": 0}}
# The units the data README (and experiments/results/accuracy.md) quotes each data set in.
README_UNITS = {"elm": "normalised", "cdr": "physical"}
UNITS = ("normalised", "physical")
SEEDS = 5


@dataclasses.dataclass(frozen=True)
class Split:
    """Normalised arrays of one data set's train/val/test splits."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray


@dataclasses.dataclass(frozen=True)
class Fit:
    """A fitted predictor (normalised inputs -> normalised outputs) and what the fit chose."""

    predict: Callable[[np.ndarray], np.ndarray]
    info: dict


# ----------------------------------------------------------------------------- linear models


def fit_mean(split: Split, params: dict, seed: int) -> Fit:
    mean = split.y_train.mean(axis=0)
    return Fit(lambda x: np.broadcast_to(mean, (len(x), mean.size)).copy(), {})


def fit_least_squares(split: Split, params: dict, seed: int) -> Fit:
    """Affine least squares, `np.linalg.lstsq` on `[X, 1]`."""
    design = np.c_[split.x_train, np.ones(len(split.x_train))]
    coef = np.linalg.lstsq(design, split.y_train, rcond=None)[0]
    return Fit(lambda x: np.c_[x, np.ones(len(x))] @ coef, {})


def ridge_coefficients(x, y, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """`(W, b)` minimising $\\|X W + 1 b^T - Y\\|_F^2 + \\alpha \\|W\\|_F^2$ (intercept
    unpenalised), by the SVD of the centred inputs, so that `alpha = 0` is the minimum-norm
    least-squares solution."""
    x_mean, y_mean = x.mean(axis=0), y.mean(axis=0)
    u, s, vt = np.linalg.svd(x - x_mean, full_matrices=False)
    shrink = np.divide(s, s**2 + alpha, out=np.zeros_like(s), where=s**2 + alpha > 0)
    weight = vt.T @ (shrink[:, None] * (u.T @ (y - y_mean)))
    return weight, y_mean - x_mean @ weight


def fit_ridge(split: Split, params: dict, seed: int) -> Fit:
    weight, bias = ridge_coefficients(split.x_train, split.y_train, params["alpha"])
    return Fit(lambda x: x @ weight + bias, {})


# ----------------------------------------------------------------------------- kernel models


def fit_kernel_ridge(split: Split, params: dict, seed: int) -> Fit:
    """RBF kernel ridge on the centred outputs; `gamma = scale / median squared distance`."""
    diff = split.x_train[:, None, :] - split.x_train[None, :, :]
    squared = np.einsum("ijk,ijk->ij", diff, diff)
    gamma = params["gamma_scale"] / np.median(squared[squared > 0])
    mean = split.y_train.mean(axis=0)
    model = KernelRidge(kernel="rbf", gamma=gamma, alpha=params["alpha"])
    model.fit(split.x_train, split.y_train - mean)
    return Fit(lambda x: model.predict(x) + mean, {"gamma": float(gamma)})


def gp_objective(theta, x, y, jitter: float = 1e-10) -> tuple[float, np.ndarray]:
    """Negative log marginal likelihood and its gradient in `theta` (sklearn's log
    parameters of `C * RBF(ARD) + White`) for outputs `y` sharing one kernel: the quantity
    sklearn's `GaussianProcessRegressor` minimises, with the length-scale gradient in
    $O(n^2 d)$ through $\\sum_{ij} M_{ij}(x_{ik} - x_{jk})^2 = 2\\sum_i x_{ik}^2 (M1)_i
    - 2 x_k^T M x_k$ instead of sklearn's $(n, n, d)$ tensors (100x faster on CDR)."""
    n, m = y.shape
    amplitude, scales, noise = np.exp(theta[0]), np.exp(theta[1:-1]), np.exp(theta[-1])
    z = x / scales
    sq = np.sum(z**2, axis=1)
    signal = amplitude * np.exp(-0.5 * np.maximum(sq[:, None] + sq[None, :] - 2 * z @ z.T, 0))
    try:
        chol = scipy.linalg.cholesky(signal + (noise + jitter) * np.eye(n), lower=True)
    except np.linalg.LinAlgError:
        return np.inf, np.zeros_like(theta)
    alpha = scipy.linalg.cho_solve((chol, True), y)
    lml = (
        -0.5 * np.sum(y * alpha)
        - m * np.sum(np.log(np.diag(chol)))
        - 0.5 * m * n * np.log(2 * np.pi)
    )
    inner = alpha @ alpha.T - m * scipy.linalg.cho_solve((chol, True), np.eye(n))
    weighted = inner * signal
    grad = np.empty_like(theta)
    grad[0] = 0.5 * weighted.sum()
    grad[1:-1] = (z**2).T @ weighted.sum(axis=1) - np.sum(z * (weighted @ z), axis=0)
    grad[-1] = 0.5 * noise * np.trace(inner)
    return -lml, -grad


def standardise(y):
    """What `normalize_y=True` does to the targets (zero spread -> 1)."""
    std = y.std(axis=0)
    return (y - y.mean(axis=0)) / np.where(std > 0, std, 1.0)


def fit_gp(split: Split, params: dict, seed: int) -> Fit:
    """sklearn `GaussianProcessRegressor` with `C * RBF(ARD) + White`, `normalize_y`, one
    L-BFGS-B run of `gp_objective` from length scales `start * exp(jitter * N(0, 1))` (seeded).
    """
    x, y = split.x_train, split.y_train
    d = x.shape[1]
    rng = np.random.default_rng(seed)
    start = params["start_scale"] * np.sqrt(d) * np.exp(params["jitter"] * rng.standard_normal(d))
    kernel = ConstantKernel(1.0, (1e-3, 1e3)) * RBF(start, (1e-2, 1e4)) + WhiteKernel(
        params["start_noise"], (1e-8, 1.0)
    )
    y_std = standardise(y)
    result = {}

    def optimizer(obj_func, initial_theta, bounds):
        r = scipy.optimize.minimize(
            gp_objective,
            initial_theta,
            args=(x, y_std),
            jac=True,
            method="L-BFGS-B",
            bounds=bounds,
            options={"maxiter": params["maxiter"]},
        )
        result.update(iterations=int(r.nit), message=str(r.message))
        return r.x, r.fun

    model = GaussianProcessRegressor(kernel, normalize_y=True, optimizer=optimizer)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(x, y)
    fitted = model.kernel_
    scales = np.atleast_1d(fitted.k1.k2.length_scale)
    info = {
        "start_length_scales": start.tolist(),
        "amplitude": float(fitted.k1.k1.constant_value),
        "length_scales": scales.tolist(),
        "noise": float(fitted.k2.noise_level),
        "log_marginal_likelihood": float(model.log_marginal_likelihood_value_),
        **result,
    }
    return Fit(model.predict, info)


# ----------------------------------------------------------------------------- stochastic fits


def fit_mlp(split: Split, params: dict, seed: int) -> Fit:
    """sklearn `MLPRegressor`, tanh, full-batch L-BFGS for a fixed iteration budget."""
    model = MLPRegressor(
        hidden_layer_sizes=(params["width"],) * params["depth"],
        activation="tanh",
        solver="lbfgs",
        alpha=params["alpha"],
        max_iter=params["max_iter"],
        max_fun=10 * params["max_iter"],
        tol=0.0,
        random_state=seed,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(split.x_train, split.y_train)
    return Fit(model.predict, {"iterations": int(model.n_iter_)})


def fit_boosting(split: Split, params: dict, seed: int) -> Fit:
    """One `HistGradientBoostingRegressor` per output, early-stopped on the validation split."""
    models = []
    for j in range(split.y_train.shape[1]):
        model = HistGradientBoostingRegressor(
            learning_rate=params["learning_rate"],
            max_leaf_nodes=params["max_leaf_nodes"],
            max_features=params["max_features"],
            max_iter=params["max_iter"],
            early_stopping=True,
            n_iter_no_change=20,
            random_state=seed,
        )
        models.append(
            model.fit(
                split.x_train, split.y_train[:, j], X_val=split.x_val, y_val=split.y_val[:, j]
            )
        )

    def predict(x):
        return np.stack([model.predict(x) for model in models], axis=1)

    return Fit(predict, {"mean_iterations": float(np.mean([m.n_iter_ for m in models]))})


# ----------------------------------------------------------------------------- the study


def grid(**axes) -> list[dict]:
    keys = list(axes)
    return [dict(zip(keys, values)) for values in itertools.product(*axes.values())]


@dataclasses.dataclass(frozen=True)
class Baseline:
    """A predictor family: its fit, the validation grid (full and `--quick`), and whether
    its fit depends on the seed."""

    name: str
    fit: Callable[[Split, dict, int], Fit]
    full: list
    quick: list
    stochastic: bool = False


BASELINES = (
    Baseline("training mean", fit_mean, [{}], [{}]),
    Baseline("linear least squares", fit_least_squares, [{}], [{}]),
    Baseline("ridge", fit_ridge, grid(alpha=10.0 ** np.arange(-6, 4)), grid(alpha=[1e-3, 1.0])),
    Baseline(
        "kernel ridge (RBF)",
        fit_kernel_ridge,
        grid(gamma_scale=2.0 ** np.arange(-4, 4), alpha=10.0 ** np.arange(-7, 1)),
        grid(gamma_scale=[0.25, 1.0], alpha=[1e-4, 1e-2]),
    ),
    Baseline(
        "Gaussian process (ARD RBF)",
        fit_gp,
        grid(start_scale=[1.0], jitter=[0.3], start_noise=[0.1], maxiter=[500]),
        grid(start_scale=[1.0], jitter=[0.3], start_noise=[0.1], maxiter=[15]),
        stochastic=True,
    ),
    Baseline(
        "MLP (tanh, L-BFGS)",
        fit_mlp,
        grid(
            width=[16, 32, 64],
            depth=[2, 3, 4],
            alpha=[1e-4, 1e-2, 1.0, 10.0, 100.0],
            max_iter=[3000],
        ),
        grid(width=[32], depth=[2], alpha=[1e-2, 1.0], max_iter=[200]),
        stochastic=True,
    ),
    Baseline(
        "gradient boosting (per output)",
        fit_boosting,
        grid(learning_rate=[0.1], max_leaf_nodes=[7, 31, 63], max_features=[0.5], max_iter=[1000]),
        grid(learning_rate=[0.2], max_leaf_nodes=[7], max_features=[0.5], max_iter=[30]),
        stochastic=True,
    ),
)


def errors(dataset, split: str, prediction) -> dict:
    """Global and per-sample relative errors of a normalised `prediction` of `split`, in
    normalised and physical units."""
    _, target = dataset.arrays(split, normalised=True)
    _, physical = dataset.arrays(split, normalised=False)
    pairs = {
        "normalised": (prediction, target),
        "physical": (dataset.y_norm.invert(prediction), physical),
    }
    return {
        unit: {
            "global": jaxode.global_relative_error(p, t),
            "per_sample": jaxode.mean_relative_error(p, t),
        }
        for unit, (p, t) in pairs.items()
    }


def split_of(dataset) -> Split:
    return Split(*dataset.arrays("train"), *dataset.arrays("val"))


def timed_fit(fit, split: Split, params: dict, seed: int) -> tuple[Fit, float]:
    start = time.perf_counter()
    fitted = fit(split, params, seed)
    return fitted, time.perf_counter() - start


def select(fit, candidates: list, split: Split) -> tuple[int, Fit, list]:
    """Every candidate fitted with seed 0; the index and fit of the one with the least
    validation global relative error (normalised units), and the table of all tried. Uses the
    training and validation arrays only."""
    tried = []
    for params in candidates:
        fitted, fit_time = timed_fit(fit, split, params, 0)
        prediction = fitted.predict(split.x_val)
        val = {
            "global": jaxode.global_relative_error(prediction, split.y_val),
            "per_sample": jaxode.mean_relative_error(prediction, split.y_val),
        }
        tried.append({"params": params, "val_normalised": val, "fit_time": fit_time, "fit": fitted})
    best = min(range(len(tried)), key=lambda i: tried[i]["val_normalised"]["global"])
    return best, tried[best]["fit"], [{k: v for k, v in t.items() if k != "fit"} for t in tried]


def record(dataset, split: Split, fitted: Fit, params: dict, seed: int, fit_time: float) -> dict:
    return {
        "seed": seed,
        "params": params,
        "fit_time": fit_time,
        "info": fitted.info,
        "val": errors(dataset, "val", fitted.predict(split.x_val)),
        "test": errors(dataset, "test", fitted.predict(dataset.arrays("test")[0])),
    }


def run_baseline(baseline: Baseline, dataset, *, quick: bool, seeds: int) -> dict:
    """Grid search on the validation split (seed 0), then the chosen setting refitted for
    every further seed (stochastic fits only); test errors of the chosen setting only."""
    split = split_of(dataset)
    candidates = baseline.quick if quick else baseline.full
    index, fitted, tried = select(baseline.fit, candidates, split)
    params = candidates[index]
    runs = [record(dataset, split, fitted, params, 0, tried[index]["fit_time"])]
    for seed in range(1, seeds if baseline.stochastic else 1):
        refit, fit_time = timed_fit(baseline.fit, split, params, seed)
        runs.append(record(dataset, split, refit, params, seed, fit_time))
    edges = {
        key: params[key] in (min(values), max(values))
        for key in params
        if len(values := sorted({c[key] for c in candidates})) > 1
    }
    return {
        "dataset": dataset.name,
        "predictor": baseline.name,
        "stochastic": baseline.stochastic,
        "chosen": params,
        "chosen_at_grid_edge": edges,
        "selection": tried,
        "runs": runs,
        "summary": summarise(runs),
        "wall_time": sum(t["fit_time"] for t in tried) + sum(r["fit_time"] for r in runs[1:]),
    }


def mean_std(values) -> dict:
    """Mean, sample standard deviation (ddof=1; None for one value) and count."""
    v = np.asarray(values, dtype=float)
    return {
        "mean": float(v.mean()),
        "std": float(v.std(ddof=1)) if v.size > 1 else None,
        "n": int(v.size),
    }


def summarise(runs: list) -> dict:
    return {
        split: {
            unit: {m: mean_std([r[split][unit][m] for r in runs]) for m in ("global", "per_sample")}
            for unit in UNITS
        }
        for split in ("val", "test")
    }


# ----------------------------------------------------------------------------- reporting


def cell(stat: dict) -> str:
    if stat["std"] is None:
        return f"{stat['mean']:.4f}"
    return f"{stat['mean']:.4f} ± {stat['std']:.4f}"


def short(params: dict, edges: dict | None = None) -> str:
    """The chosen setting, `(edge)` after a value at the end of its grid."""
    edges = edges or {}
    shown = {k: v for k, v in params.items() if k not in ("max_iter", "maxiter", "jitter")}
    return ", ".join(
        (f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}") + (" (edge)" if edges.get(k) else "")
        for k, v in shown.items()
    )


def jaxode_rows(directory: pathlib.Path, dataset: str) -> list[str]:
    """jaxode's own test errors (every `accuracy*.json` of experiments/accuracy.py in
    `directory`, already in README units) for comparison; rows it cannot read are left out."""
    lines = []
    for path in sorted(directory.glob("accuracy*.json")):
        try:
            rows = json.loads(path.read_text())
            rows = [
                r
                for r in rows
                if r.get("dataset") == dataset
                and r.get("status") != "failed"
                and "test_global" in r
                and "test_per_sample" in r
            ]
        except (ValueError, AttributeError, TypeError):
            continue
        for basis in dict.fromkeys(r.get("basis") for r in rows):
            done = [r for r in rows if r.get("basis") == basis]
            g = mean_std([r["test_global"] for r in done])
            p = mean_std([r["test_per_sample"] for r in done])
            lines.append(f"| {path.name} | {basis} | {g['n']} | {cell(g)} | {cell(p)} |")
    return lines


def markdown(results: list, meta: dict, accuracy: pathlib.Path) -> str:
    """The tables of baselines.md; `accuracy` is the folder of jaxode's accuracy*.json."""
    out = [
        "# Standard baselines on jaxode's splits",
        "",
        (
            f"`{meta['command']}` ({meta['mode']}, {meta['wall_time']:.0f} s on one core). "
            "Test-split relative L2 errors: global = ||P - Y||_F / ||Y||_F, per-sample = "
            "mean_i ||p_i - y_i|| / ||y_i||. Models fit the normalised training arrays "
            "(`Dataset.arrays`); hyperparameters are chosen by the validation global error in "
            "normalised units; the GP's kernel by its marginal likelihood on the training split. "
            "Stochastic fits: mean ± sample std (ddof=1) over n seeds. ELM normalised = min-max "
            "scaled outputs; CDR normalised = z-scored outputs."
        ),
        "",
    ]
    for dataset in DATASETS:
        rows = [r for r in results if r["dataset"] == dataset]
        if not rows:
            continue
        first = README_UNITS[dataset]
        other = next(u for u in UNITS if u != first)
        out += [
            f"## {dataset.upper()} (README units: {first})",
            "",
            (
                f"| predictor | n | test global ({first}) | test per-sample ({first}) | "
                f"test global ({other}) | test per-sample ({other}) | val global (normalised) | "
                "chosen on validation | fit time per seed (s) |"
            ),
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            s = r["summary"]
            fit_time = np.mean([run["fit_time"] for run in r["runs"]])
            out.append(
                f"| {r['predictor']} | {s['test'][first]['global']['n']} | "
                f"{cell(s['test'][first]['global'])} | {cell(s['test'][first]['per_sample'])} | "
                f"{cell(s['test'][other]['global'])} | {cell(s['test'][other]['per_sample'])} | "
                f"{cell(s['val']['normalised']['global'])} | "
                f"{short(r['chosen'], r['chosen_at_grid_edge']) or '-'} | "
                f"{fit_time:.1f} |"
            )
        comparison = jaxode_rows(accuracy, dataset)
        if comparison:
            out += [
                "",
                (
                    f"For comparison, jaxode's neural ODEs (experiments/accuracy.py; {first} "
                    "units; mean ± sample std):"
                ),
                "",
                f"| file | weights | n | test global ({first}) | test per-sample ({first}) |",
                "|---|---|---|---|---|",
                *comparison,
            ]
        out.append("")
    out += [
        (
            "Settings: ridge on the centred inputs (intercept unpenalised); kernel ridge on the "
            "centred outputs with gamma = scale / median squared training distance; GP = sklearn "
            "`GaussianProcessRegressor(C * RBF(length_scale=ones(d)) + WhiteKernel, "
            "normalize_y=True)` sharing one kernel across outputs, length scales started at "
            "sqrt(d) times a seeded exp(0.3 N(0, 1)) jitter, noise at 0.1, one L-BFGS-B run of the "
            "same marginal likelihood with an O(n^2 d) gradient; MLP = "
            "`MLPRegressor(activation='tanh', solver='lbfgs')` for a fixed iteration budget; "
            "gradient boosting = one `HistGradientBoostingRegressor` per output, early-stopped on "
            "the validation split. (edge): the chosen value is at the end of its grid. Every grid "
            "point, seed and timing is in baselines.json."
        ),
        "",
    ]
    return "\n".join(out)


def versions() -> dict:
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "scikit-learn": sklearn.__version__,
        "jaxode": getattr(jaxode, "__version__", "unknown"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("experiments/results"))
    parser.add_argument("--quick", action="store_true", help="small grids, 2 seeds, short fits")
    parser.add_argument("--seeds", type=int, default=None, help=f"default {SEEDS} (quick: 2)")
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument(
        "--accuracy",
        type=pathlib.Path,
        default=pathlib.Path(__file__).resolve().parent / "results",
        help="folder of jaxode's accuracy*.json to quote for comparison",
    )
    args = parser.parse_args()
    seeds = args.seeds or (2 if args.quick else SEEDS)
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {
        "command": "python experiments/baselines.py " + " ".join(sys.argv[1:]),
        "mode": "quick" if args.quick else "full",
        "seeds": list(range(seeds)),
        "selection": "validation global relative error, normalised units, seed 0",
        "readme_units": README_UNITS,
        "grids": {b.name: (b.quick if args.quick else b.full) for b in BASELINES},
        "versions": versions(),
        "threads": {
            k: os.environ.get(k)
            for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
        },
    }
    start = time.perf_counter()
    results = []
    for name in args.datasets:
        dataset = jaxode.load_dataset(name, **DATASETS[name])
        meta.setdefault("sizes", {})[name] = dataset.sizes()
        for baseline in BASELINES:
            row = run_baseline(baseline, dataset, quick=args.quick, seeds=seeds)
            results.append(row)
            unit = README_UNITS[name]
            test = row["summary"]["test"][unit]
            print(
                f"{name} | {baseline.name} | "
                f"{short(row['chosen'], row['chosen_at_grid_edge']) or '-'} | test {unit} "
                f"global {cell(test['global'])} per-sample {cell(test['per_sample'])} | "
                f"{row['wall_time']:.0f} s",
                flush=True,
            )
            meta["wall_time"] = time.perf_counter() - start
            (args.out / "baselines.json").write_text(
                json.dumps({"meta": meta, "results": results}, indent=1)
            )
    meta["wall_time"] = time.perf_counter() - start
    (args.out / "baselines.json").write_text(
        json.dumps({"meta": meta, "results": results}, indent=1)
    )
    (args.out / "baselines.md").write_text(markdown(results, meta, args.accuracy))
    print(markdown(results, meta, args.accuracy))


if __name__ == "__main__":
    main()
