"""Predictive uncertainty of jaxode ensembles against the ARD Gaussian process, on ELM, CDR and
the DCR analogue, on the same splits.

Per data set: an ensemble of 5 members (seeds 0-4, one cohort, `jaxode.train_ensemble`) of a
recipe (ELM: the defaults of `jaxode train`; CDR: the defaults at 300 epochs, as
`experiments/accuracy.py`; DCR: the ResNet of `experiments/results/study/best`, protocol
"study", with its ridge warm start of the readout and evaluations every 50 epochs), calibrated
on the validation split (variance floor^2 + scale^2 spread^2 by maximum likelihood,
`fit_calibration`); and the ARD Gaussian process of `experiments/baselines.py`
(`C * RBF(ARD) + White`, seed 0, fitted on the training split) with its own predictive
variance, and with the same calibration on validation applied to its standard deviation.
Scores on the test split: the global relative error of the mean (ELM normalised, CDR physical,
DCR centred units, as the study reports them), the Gaussian negative log-likelihood per output
in normalised units (lower is better), and the coverage of the central 50/90/95 % intervals.

Writes uncertainty.json (every number, timings, versions) and uncertainty.md, and the
ensembles' calibration plots as uncertainty-<data>.png.

    python experiments/uncertainty.py --out experiments/results          # about 40 min, CPU
    python experiments/uncertainty.py --quick --out /tmp/uncertainty      # about 3 min

Needs scikit-learn (`pip install jaxode[baselines]`).
"""

import argparse
import json
import os
import pathlib
import platform
import shutil
import sys
import tempfile
import time

import numpy as np
from baselines import Split, fit_gp  # experiments/baselines.py, beside this script

import jaxode
from jaxode._uncertainty import LEVELS, scores

GP = {"start_scale": 1.0, "jitter": 0.3, "start_noise": 0.1, "maxiter": 500}
# The units each data set's error is reported in (the study's and experiments/RESULTS.md's).
UNITS = {"elm": "normalised", "cdr": "physical", "dcr": "centred"}
RECIPES = {
    "elm": {"data": {"dataset": "elm"}},
    "cdr": {"data": {"dataset": "cdr"}, "train": {"epochs": 300}},
    "dcr": {
        "data": {"dataset": "dcr", "protocol": "study"},
        "model": {
            "model": "resnet",
            "field": "layer",
            "width": 15,
            "steps": 12,
            "basis": "legendre",
            "degree": 3,
            "t1": 5.0,
        },
        "train": {"epochs": 3000, "learning_rate": 3e-3, "ridge": 0.4, "eval_every": 50},
    },
}
MEMBERS = 5


def _error(mean, y, data, units: str) -> float:
    """Global relative test error in the data set's reporting units (`mean`, `y` physical)."""
    if units == "normalised":
        mean, y = data.y_norm.apply(mean), data.y_norm.apply(y)
    elif units == "centred":
        centre = data.arrays("train", normalised=False)[1].mean(axis=0)
        mean, y = mean - centre, y - centre
    return float(np.linalg.norm(mean - y) / np.linalg.norm(y))


def _scored(name: str, mean, std, y, data, units: str, extra: dict | None = None) -> dict:
    """A row: the error of `mean` and the scores of N(mean, std^2) in normalised units."""
    scale = data.y_norm.scale
    row = {"model": name, "test_global": _error(mean, y, data, units)}
    row.update(scores(mean / scale, std / scale, y / scale))
    return row | (extra or {})


def _ensemble_rows(dataset: str, config, folder: pathlib.Path, data) -> tuple[list, dict]:
    tic = time.perf_counter()
    ensemble, metrics = jaxode.train_ensemble(config, folder, size=MEMBERS, progress=False)
    seconds = time.perf_counter() - tic
    units = UNITS[dataset]
    x, y = data.arrays("test", normalised=False)
    predictions = ensemble.member_predictions(x)
    mean, spread = predictions.mean(axis=0), predictions.std(axis=0, ddof=1)
    members = [_error(p, y, data, units) for p in predictions]
    rows = [
        _scored(
            f"ensemble of {MEMBERS}, calibrated on val",
            mean,
            ensemble.predict_std_of(spread),
            y,
            data,
            units,
            {
                "members_test_global_mean": float(np.mean(members)),
                "members_test_global_std": float(np.std(members, ddof=1)),
                "members_test_global": members,
            },
        ),
        _scored(f"ensemble of {MEMBERS}, members' spread", mean, spread, y, data, units),
    ]
    assert ensemble.floors is not None and ensemble.scales is not None
    info = {
        "seconds": seconds,
        "floors": ensemble.floors.tolist(),
        "scales": ensemble.scales.tolist(),
        "val_nll": metrics.get("val_nll"),
    }
    return rows, info


def _gp_rows(dataset: str, data, params: dict) -> tuple[list, dict]:
    tic = time.perf_counter()
    split = Split(*data.arrays("train"), *data.arrays("val"))
    fit = fit_gp(split, params, seed=0)
    seconds = time.perf_counter() - tic
    units = UNITS[dataset]
    x_val, y_val = data.arrays("val", normalised=False)
    x, y = data.arrays("test", normalised=False)
    norm, x_norm = data.y_norm, data.x_norm

    def physical(xs):
        mean, std = fit.predict(x_norm.apply(xs), return_std=True)
        std = np.broadcast_to(np.asarray(std).reshape(len(xs), -1), mean.shape)
        return norm.invert(mean), std * norm.scale

    mean_val, std_val = physical(x_val)
    floors, scales = jaxode.fit_calibration(mean_val, std_val, y_val)
    mean, std = physical(x)
    calibrated = jaxode._uncertainty.predictive_std(std, floors, scales)
    rows = [
        _scored("ARD Gaussian process, its own variance", mean, std, y, data, units),
        _scored("ARD Gaussian process, calibrated on val", mean, calibrated, y, data, units),
    ]
    info = {"seconds": seconds, "floors": floors.tolist(), "scales": scales.tolist(), **fit.info}
    return rows, info


def _table(results: dict) -> str:
    covers = " | ".join(f"coverage {round(100 * p)} %" for p in LEVELS)
    lines = [
        "Generated by experiments/uncertainty.py. Test split; error: global relative error of "
        "the predictive mean (ELM normalised, CDR physical, DCR centred units); NLL: Gaussian "
        "negative log-likelihood per output in normalised units, mean over outputs (lower is "
        "better); coverage: fraction of test values inside the central interval of each "
        "nominal level, over every sample and output. Calibration: variance floor^2 + "
        "scale^2 spread^2 per output, maximum likelihood on the validation split.",
        "",
    ]
    for dataset, entry in results.items():
        lines += [
            f"## {dataset}",
            "",
            f"| model | error ({UNITS[dataset]}) | NLL | {covers} |",
            "|---|---|---|" + "---|" * len(LEVELS),
        ]
        for row in entry["rows"]:
            error = f"{row['test_global']:.4f}"
            if "members_test_global_mean" in row:
                error += (
                    f" (members {row['members_test_global_mean']:.4f} ± "
                    f"{row['members_test_global_std']:.4f})"
                )
            cells = " | ".join(f"{row[f'coverage_{round(100 * p)}']:.3f}" for p in LEVELS)
            lines.append(f"| {row['model']} | {error} | {row['nll']:.3f} | {cells} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, required=True)
    parser.add_argument("--quick", action="store_true", help="few epochs: a smoke run")
    parser.add_argument("--datasets", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    results = {}
    with tempfile.TemporaryDirectory(prefix="jaxode-uncertainty-") as folder:
        for dataset in args.datasets:
            recipe = RECIPES[dataset]
            config = jaxode.RunConfig.from_dict(recipe)
            params = dict(GP)
            if args.quick:
                config = config.replace("train", epochs=3)
                params["maxiter"] = 15
            data = jaxode.load_dataset(dataset, protocol=config.data.protocol)
            print(f"{dataset}: ensemble of {MEMBERS} ...", flush=True)
            ensemble_rows, ensemble_info = _ensemble_rows(
                dataset, config, pathlib.Path(folder) / dataset, data
            )
            plot = pathlib.Path(folder) / dataset / "calibration.png"
            if plot.is_file():
                shutil.copy(plot, args.out / f"uncertainty-{dataset}.png")
            print(f"{dataset}: Gaussian process ...", flush=True)
            gp_rows, gp_info = _gp_rows(dataset, data, params)
            results[dataset] = {
                "config": recipe,
                "rows": ensemble_rows + gp_rows,
                "ensemble": ensemble_info,
                "gp": gp_info,
            }
            for row in results[dataset]["rows"]:
                print(
                    f"  {row['model']:45s} error {row['test_global']:.4f}  NLL {row['nll']:.3f}"
                    f"  coverage 90 % {row['coverage_90']:.3f}"
                )
    meta = {
        "command": " ".join([pathlib.Path(sys.executable).name, *sys.argv]),
        "quick": args.quick,
        "members": MEMBERS,
        "gp": GP,
        "load_average_before": load_before,
        "load_average": os.getloadavg(),
        "python": platform.python_version(),
        "jaxode": jaxode.__version__,
        "machine": platform.platform(),
    }
    (args.out / "uncertainty.json").write_text(
        json.dumps({"meta": meta, "results": results}, indent=2)
    )
    (args.out / "uncertainty.md").write_text(_table(results))
    print(f"wrote {args.out / 'uncertainty.json'} and uncertainty.md")


if __name__ == "__main__":
    main()
