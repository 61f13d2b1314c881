"""A sweep's configurations as ensembles: `jaxode sweep report DIR --ensembles` reads the cells
that agree in every field but `train.seed` (a grid over seeds trains them as one cohort) as one
`Ensemble`, calibrates it on its validation split and scores it on every split."""

import csv
import io
import pathlib

from .._datasets import TrajectoryData
from .._files import atomic_write_text
from .._training import Ensemble, evaluate_ensemble, load_data, load_run
from .._uncertainty import LEVELS
from ._spec import FIELDS
from ._table import SUCCEEDED

SEED = "train.seed"


def ensemble_groups(rows: list[dict]) -> dict[tuple, list[dict]]:
    """The finished cells grouped by every configuration field but the seed, groups of two
    cells or more only."""
    keys = [f for f in FIELDS if f != SEED]
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        if row.get("status") in SUCCEEDED and row.get("run_dir"):
            groups.setdefault(tuple(str(row.get(k)) for k in keys), []).append(row)
    return {key: cells for key, cells in groups.items() if len(cells) > 1}


def _varying(groups: dict) -> list[int]:
    """The positions of the fields in which the groups differ."""
    keys = list(groups)
    return [i for i in range(len(FIELDS) - 1) if len({k[i] for k in keys}) > 1]


def ensemble_report(sweep_dir, rows: list[dict], out) -> list[pathlib.Path]:
    """Writes `ensembles.csv` (every metric of every group's calibrated ensemble) and
    `ensembles.md` (per group: members, the ensemble's and its members' test errors, NLL and
    coverage) to `out`; returns the files written (none without a group of two seeds)."""
    groups = ensemble_groups(rows)
    if not groups:
        return []
    keys = [f for f in FIELDS if f != SEED]
    varying = _varying(groups)
    records = []
    for key, cells in groups.items():
        members = tuple(load_run(pathlib.Path(sweep_dir) / cell["run_dir"]) for cell in cells)
        ensemble = Ensemble(members)
        data = load_data(ensemble.config)
        if isinstance(data, TrajectoryData):
            raise ValueError(
                "--ensembles: the cells are time-series runs, which are not calibrated as "
                "ensembles yet."
            )
        ensemble = ensemble.calibrated(*data.arrays("val", normalised=False))
        metrics = evaluate_ensemble(ensemble, data)
        fields = {keys[i]: key[i] for i in varying}
        seeds = ",".join(str(cell.get(SEED)) for cell in cells)
        records.append({**fields, "members": len(cells), "seeds": seeds, **metrics})
    columns = list(dict.fromkeys(k for r in records for k in r if not isinstance(r[k], list)))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(records)
    out = pathlib.Path(out)
    atomic_write_text(out / "ensembles.csv", buffer.getvalue())
    names = [keys[i] for i in varying]
    covers = " | ".join(f"test cover {round(100 * p)} %" for p in LEVELS)
    lines = [
        "Each configuration's seeds as one ensemble, calibrated on validation (variance floor^2 "
        "+ scale^2 spread^2 per output); test split: global relative error of the ensemble mean "
        "and of its members (mean ± sample std), Gaussian NLL per output (normalised units) "
        "and interval coverage.",
        "",
        "| " + " | ".join([*names, "members", "ensemble", "members", "NLL", covers]) + " |",
        "|" + "---|" * (len(names) + 5),
    ]
    for r in records:
        cells = [str(r[n]) for n in names] + [str(r["members"])]
        cells += [
            f"{r['test_global']:.4f}",
            f"{r['test_members_global_mean']:.4f} ± {r['test_members_global_std']:.4f}",
            f"{r['test_nll']:.3f}",
        ]
        cells += [f"{r[f'test_coverage_{round(100 * p)}']:.3f}" for p in LEVELS]
        lines.append("| " + " | ".join(cells) + " |")
    atomic_write_text(out / "ensembles.md", "\n".join(lines) + "\n")
    return [out / "ensembles.csv", out / "ensembles.md"]
