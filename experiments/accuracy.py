"""Accuracy sweep: static, monomial and Legendre neural-ODE surrogates on ELM and CDR, several
seeds, with the defaults of `jaxode train` (CDR: the overrides below). Writes a JSON file of
every run and a Markdown table; a failed run is recorded, not fatal.

    python experiments/accuracy.py --seeds 5 --out experiments/results
"""

import argparse
import json
import pathlib
import shutil
import tempfile
import time
import traceback

import numpy as np

import jaxode

# Settings per data set on top of jaxode.RunConfig() defaults (documented in docs/training.md).
OVERRIDES = {
    "elm": {},
    "cdr": {"train": {"epochs": 300}},
}
BASES = {"static": 0, "monomial": 3, "legendre": 3}


def config_for(dataset: str, basis: str, seed: int, epochs: int | None) -> jaxode.RunConfig:
    d = jaxode.RunConfig().to_dict()
    for section, values in OVERRIDES[dataset].items():
        d[section].update(values)
    d["data"]["dataset"] = dataset
    d["model"].update(basis=basis, degree=BASES[basis])
    d["train"]["seed"] = seed
    if epochs is not None:
        d["train"]["epochs"] = epochs
    return jaxode.RunConfig.from_dict(d)


def run_one(config: jaxode.RunConfig) -> dict:
    directory = pathlib.Path(tempfile.mkdtemp(prefix="jaxode-accuracy-"))
    start = time.perf_counter()
    try:
        _, _, metrics = jaxode.train(config, directory / "run", progress=False)
        physical = config.data.dataset == "cdr"  # the study reports CDR in physical units
        metrics["test_global"] = metrics["test_physical_global" if physical else "test_global"]
        metrics["test_per_sample"] = metrics[
            "test_physical_per_sample" if physical else "test_per_sample"
        ]
        keep = (
            "test_global",
            "test_per_sample",
            "val_global",
            "train_global",
            "forward_evaluations",
            "backward_evaluations",
            "compile_time",
            "train_time",
            "steps",
            "best_step",
            "solver_failures",
            "status",
            "parameters",
        )
        row = {k: metrics[k] for k in keep}
    except Exception as error:  # a failed run is data
        row = {
            "status": "failed",
            "error": f"{type(error).__name__}: {error}",
            "traceback": traceback.format_exc(limit=3),
        }
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    row["wall_time"] = time.perf_counter() - start
    return row


def table(rows: list) -> str:
    lines = [
        "| data | basis | seeds | global test error | per-sample test error | "
        "forward evals / solve | backward evals / solve | train time (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for dataset in OVERRIDES:
        for basis in BASES:
            done = [
                r
                for r in rows
                if r["dataset"] == dataset and r["basis"] == basis and r["status"] != "failed"
            ]
            failed = sum(
                1
                for r in rows
                if r["dataset"] == dataset and r["basis"] == basis and r["status"] == "failed"
            )
            if not done:
                continue

            def stat(key, fmt, done=done):
                values = np.array([r[key] for r in done], dtype=float)
                return f"{values.mean():{fmt}} ± {values.std():{fmt}}"

            lines.append(
                f"| {dataset}{' (physical)' if dataset == 'cdr' else ''} | {basis} | {len(done)}{f' (+{failed} failed)' if failed else ''} | "
                f"{stat('test_global', '.4f')} | {stat('test_per_sample', '.4f')} | "
                f"{stat('forward_evaluations', '.0f')} | {stat('backward_evaluations', '.0f')} | "
                f"{stat('train_time', '.0f')} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument(
        "--merge",
        nargs="+",
        type=pathlib.Path,
        default=None,
        help="only merge the accuracy.json files of these directories into --out",
    )
    parser.add_argument("--datasets", nargs="+", default=list(OVERRIDES), choices=list(OVERRIDES))
    parser.add_argument("--bases", nargs="+", default=list(BASES), choices=list(BASES))
    parser.add_argument("--epochs", type=int, default=None, help="override (for quick checks)")
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("experiments/results"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.merge:
        rows = [row for d in args.merge for row in json.loads((d / "accuracy.json").read_text())]
        (args.out / "accuracy.json").write_text(json.dumps(rows, indent=1))
        (args.out / "accuracy.md").write_text(table(rows))
        print(table(rows))
        return
    rows = []
    for dataset in args.datasets:
        for basis in args.bases:
            for seed in range(args.first_seed, args.first_seed + args.seeds):
                row = run_one(config_for(dataset, basis, seed, args.epochs))
                row.update(dataset=dataset, basis=basis, seed=seed)
                rows.append(row)
                print(
                    json.dumps(
                        {
                            k: row.get(k)
                            for k in (
                                "dataset",
                                "basis",
                                "seed",
                                "status",
                                "test_global",
                                "forward_evaluations",
                                "wall_time",
                            )
                        }
                    ),
                    flush=True,
                )
                (args.out / "accuracy.json").write_text(json.dumps(rows, indent=1))
                (args.out / "accuracy.md").write_text(table(rows))
    print(table(rows))


if __name__ == "__main__":
    main()
