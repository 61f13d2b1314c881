"""Ensembles of a sweep's seeds, as a user would use a cohort: the mean of the members'
predictions, with its test errors beside the members' mean and best.

Run after a sweep: `python experiments/study/ensembles.py SWEEP_DIR [SWEEP_DIR ...]`; writes
`ensembles.json` into each sweep folder, one row per configuration with at least 2 seeds that
succeeded.
"""

import json
import pathlib
import sys
import tomllib

import numpy as np

import jaxode

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _configuration(config: dict) -> str:
    """The configuration without its seed, as a key."""
    rest = {section: dict(values) for section, values in config.items()}
    rest["train"].pop("seed", None)
    return json.dumps(rest, sort_keys=True)


def ensemble_rows(sweep: pathlib.Path) -> list[dict]:
    groups: dict[str, list[pathlib.Path]] = {}
    for cell in sorted((sweep / "cells").iterdir()):
        if ".attempt-" in cell.name:  # an earlier attempt of a retried cell
            continue
        if (cell / "metrics.json").is_file() and not (cell / "model.eqx").is_file():
            # model.eqx is not committed: a fresh clone cannot rebuild this cell's ensemble.
            print(f"skipped {cell}: no model.eqx (trained in another checkout?)", file=sys.stderr)
        if (cell / "model.eqx").is_file() and (cell / "metrics.json").is_file():
            config = tomllib.loads((cell / "config.toml").read_text())
            groups.setdefault(_configuration(config), []).append(cell)
    rows = []
    for cells in groups.values():
        if len(cells) < 2:
            continue
        members = [jaxode.load(cell) for cell in cells]
        d = members[0].config.data
        if d.dataset == "spiral":
            continue  # a trajectory: the members' mean is no prediction of a surrogate
        data = jaxode.load_dataset(
            d.dataset, seed=d.split_seed, protocol=d.protocol, num_outputs=d.num_outputs
        )
        x, y = data.arrays("test", normalised=False)
        predictions = np.stack([member.predict(x) for member in members])
        mean = predictions.mean(axis=0)
        normalise = data.y_norm.apply
        metrics = [json.loads((cell / "metrics.json").read_text()) for cell in cells]
        m = members[0].config.model
        rows.append(
            dict(
                dataset=d.dataset,
                model=m.model,
                basis=m.basis,
                degree=m.degree,
                members=len(cells),
                epochs=members[0].config.train.epochs,
                tikhonov=members[0].config.train.tikhonov,
                seeds=[member.config.train.seed for member in members],
                ensemble_test_global=jaxode.global_relative_error(normalise(mean), normalise(y)),
                ensemble_test_per_sample=jaxode.mean_relative_error(normalise(mean), normalise(y)),
                ensemble_test_physical_global=jaxode.global_relative_error(mean, y),
                members_test_global=[row["test_global"] for row in metrics],
                members_test_global_mean=float(np.mean([row["test_global"] for row in metrics])),
                members_test_global_std=float(
                    np.std([row["test_global"] for row in metrics], ddof=1)
                ),
                members_test_per_sample=[row["test_per_sample"] for row in metrics],
                members_test_physical_global=[row["test_physical_global"] for row in metrics],
                members_test_physical_global_mean=float(
                    np.mean([row["test_physical_global"] for row in metrics])
                ),
                members_test_physical_global_std=float(
                    np.std([row["test_physical_global"] for row in metrics], ddof=1)
                ),
            )
        )
    return rows


def main(sweeps: list[pathlib.Path]) -> None:
    for sweep in sweeps:
        rows = ensemble_rows(sweep)
        out = sweep / "ensembles.json"
        out.write_text(json.dumps(rows, indent=1))
        for row in rows:
            print(
                f"{row['dataset']} {row['model']} {row['basis']} d{row['degree']} "
                f"({row['epochs']} epochs, tikhonov {row['tikhonov']:g}): ensemble of "
                f"{row['members']} test global {row['ensemble_test_global']:.4f} "
                f"(members {row['members_test_global_mean']:.4f} +- "
                f"{row['members_test_global_std']:.4f}, "
                f"{np.min(row['members_test_global']):.4f} best); physical units "
                f"{row['ensemble_test_physical_global']:.4f} (members "
                f"{row['members_test_physical_global_mean']:.4f} +- "
                f"{row['members_test_physical_global_std']:.4f})"
            )
        print(f"{len(rows)} ensembles -> {out}")


if __name__ == "__main__":
    main([pathlib.Path(p) for p in sys.argv[1:]])
