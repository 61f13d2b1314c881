"""Accuracy sweep: static, monomial and Legendre neural-ODE surrogates on ELM and CDR, several
seeds, under one of two protocols, next to the figures of the study's revised code.

- `--protocol jaxode`: the defaults of `jaxode train` (CDR: 300 epochs).
- `--protocol study`: the preset `study-node`, the study's own protocol (3 basis functions,
  so degree 2; static weights degree 0).

Writes every run to `accuracy-<protocol>.json` and the tables of all protocols found to
`accuracy.md`; a failed run is recorded, not fatal. `--table` only rebuilds `accuracy.md`.

    python experiments/accuracy.py --protocol study --seeds 5 --out experiments/results
"""

import argparse
import json
import pathlib
import shutil
import tempfile
import time
import traceback

import jax
import numpy as np
from published import PUBLISHED  # experiments/published.py, beside this script

import jaxode

DATASETS = ("elm", "cdr")
PROTOCOLS = ("jaxode", "study")
# Degrees per basis: the study's "degree 3" had 3 basis functions (an off-by-one).
DEGREES = {
    "jaxode": {"static": 0, "monomial": 3, "legendre": 3},
    "study": {"static": 0, "monomial": 2, "legendre": 2},
}
KEEP = (
    "status",
    "message",
    "steps",
    "best_step",
    "solver_failures",
    "forward_evaluations",
    "backward_evaluations",
    "compile_time",
    "train_time",
    "parameters",
    "dynamics_parameters",
)


def config_for(protocol: str, dataset: str, basis: str, seed: int) -> jaxode.RunConfig:
    base = jaxode.preset("study-node") if protocol == "study" else jaxode.RunConfig()
    config = base.replace("data", dataset=dataset)
    config = config.replace("model", basis=basis, degree=DEGREES[protocol][basis])
    # Evaluations per solve are part of the report (the preset counts them already).
    config = config.replace("train", seed=seed, count_evaluations=True)
    if protocol == "jaxode" and dataset == "cdr":
        config = config.replace("train", epochs=300)
    return config


def run_one(config: jaxode.RunConfig) -> dict:
    """One training run; errors in the units the study reports (ELM normalised, CDR
    physical), both metrics, and the other units too."""
    directory = pathlib.Path(tempfile.mkdtemp(prefix="jaxode-accuracy-"))
    start = time.perf_counter()
    try:
        _, _, metrics = jaxode.train(config, directory / "run", progress=False)
        row = {k: metrics.get(k) for k in KEEP}
        for split in ("train", "val", "test"):
            for metric in ("global", "per_sample"):
                row[f"{split}_normalised_{metric}"] = metrics.get(f"{split}_{metric}")
                row[f"{split}_physical_{metric}"] = metrics.get(f"{split}_physical_{metric}")
        units = "physical" if config.data.dataset == "cdr" else "normalised"
        row["test_global"] = row[f"test_{units}_global"]
        row["test_per_sample"] = row[f"test_{units}_per_sample"]
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


def dynamics_parameters(config: jaxode.RunConfig) -> int:
    """Parameters of the vector field, counted on the model the configuration builds."""
    data = jaxode.load_dataset(config.data.dataset)
    model = jaxode.build_model(config, data.in_size, data.out_size, key=jax.random.PRNGKey(0))
    return jaxode.count_dynamics_parameters(model)


def mean_std(values) -> str:
    """Mean ± sample standard deviation (ddof = 1)."""
    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return f"{values.mean():.4g}"
    return f"{values.mean():.4f} ± {values.std(ddof=1):.4f}"


def table(rows: list, protocol: str) -> str:
    lines = [
        "| data | basis (degree) | n | global test error | per-sample test error "
        "| study's revised code (global) | forward / backward evals per solve "
        "| dynamics parameters | steps (best) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for dataset in DATASETS:
        for basis, degree in DEGREES[protocol].items():
            mine = [r for r in rows if (r["dataset"], r["basis"]) == (dataset, basis)]
            done = [r for r in mine if r.get("test_global") is not None]
            if not mine:
                continue
            other = len(mine) - len(done)
            count = f"{len(done)}" + (f" (+{other} stopped without a model)" if other else "")
            counted = [r for r in done if r.get("forward_evaluations") is not None]
            evals = (
                f"{np.mean([r['forward_evaluations'] for r in counted]):.0f} / "
                f"{np.mean([r['backward_evaluations'] for r in counted]):.0f}"
                if counted
                else "n/a"
            )
            params = sorted({r.get("dynamics_parameters") for r in done} - {None}) or [
                dynamics_parameters(config_for(protocol, dataset, basis, 0))
            ]
            steps = (
                f"{np.mean([r['steps'] for r in done]):.0f} "
                f"({np.mean([r['best_step'] for r in done]):.0f})"
                if done
                else "n/a"
            )
            unit = "physical" if dataset == "cdr" else "normalised"
            lines.append(
                f"| {dataset} ({unit}) | {basis} ({degree}) | {count} | "
                f"{mean_std([r['test_global'] for r in done]) if done else 'n/a'} | "
                f"{mean_std([r['test_per_sample'] for r in done]) if done else 'n/a'} | "
                f"{PUBLISHED[(dataset, basis)]} | {evals} | "
                f"{', '.join(map(str, params)) or 'n/a'} | {steps} |"
            )
    return "\n".join(lines) + "\n"


def write_tables(out: pathlib.Path) -> str:
    parts = []
    for protocol in PROTOCOLS:
        path = out / f"accuracy-{protocol}.json"
        if path.is_file():
            rows = json.loads(path.read_text())
            parts.append(f"## protocol: {protocol}\n\n{table(rows, protocol)}")
    text = (
        "Generated by experiments/accuracy.py. Mean ± sample std (ddof = 1) over n seeds; ELM "
        "errors in min-max normalised outputs, CDR in physical outputs (the study's units). "
        "Evaluation counts at the end of training on one batch; steps are optimisation steps "
        "done, with the step of the returned (best-on-validation) parameters.\n\n"
        + "\n".join(parts)
    )
    (out / "accuracy.md").write_text(text)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocol", choices=PROTOCOLS, default="jaxode")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    parser.add_argument("--bases", nargs="+", default=["static", "monomial", "legendre"])
    parser.add_argument("--table", action="store_true", help="only rebuild accuracy.md")
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("experiments/results"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.table:
        print(write_tables(args.out))
        return
    path = args.out / f"accuracy-{args.protocol}.json"
    rows = json.loads(path.read_text()) if path.is_file() else []
    for dataset in args.datasets:
        for basis in args.bases:
            for seed in range(args.first_seed, args.first_seed + args.seeds):
                rows = [
                    r
                    for r in rows
                    if (r["dataset"], r["basis"], r["seed"]) != (dataset, basis, seed)
                ]
                row = run_one(config_for(args.protocol, dataset, basis, seed))
                row.update(protocol=args.protocol, dataset=dataset, basis=basis, seed=seed)
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
                                "steps",
                                "wall_time",
                            )
                        }
                    ),
                    flush=True,
                )
                path.write_text(json.dumps(rows, indent=1))
    print(write_tables(args.out))


if __name__ == "__main__":
    main()
