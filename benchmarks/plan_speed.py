"""How long planning a sweep takes: `jaxode.make_plan` (expanding the spec into validated cells,
loading the data, building each cohort's trainer, grouping the cells into cohorts) for
10^3, 10^4 and 10^5 cells.

The spec is built in Python: the ELM data, a ResNet surrogate (layer field, width 15, 12 steps,
Legendre basis), and a grid of `train.seed` (10 values) x `model.degree` (1-10) x
`train.learning_rate` (cells / 100 values): cohorts of 10 seeds each. Each size is planned
once, in this process, after a warm-up plan of 100 cells (imports, the data set's first load);
the wall time, the time per cell and the cells and cohorts planned are reported.

`--source DIR` times the jaxode package found in DIR instead of this checkout's (e.g. a
`git worktree add /tmp/before HEAD` of an earlier commit), and `--label` names the run; the
JSON file keeps one entry per label, so that runs of two versions sit side by side.

    python benchmarks/plan_speed.py [--sizes 1000,10000,100000] [--label after]
        [--source DIR] [--out benchmarks/results/plan_speed.json]
"""

import argparse
import inspect
import json
import os
import pathlib
import subprocess
import sys
import time


def _spec(jaxode, cells: int):
    rates = [1e-4 * (1 + k) for k in range(max(cells // 100, 1))]
    return jaxode.SweepSpec(
        base=dict(
            data=dict(dataset="elm"),
            model=dict(model="resnet", field="layer", width=15, steps=12, basis="legendre"),
        ),
        grid={
            "train.seed": list(range(10)),
            "model.degree": list(range(1, 11)),
            "train.learning_rate": rates,
        },
        name=f"plan-speed-{cells}",
    )


def _plan(jaxode, spec):
    # Earlier versions of make_plan take no `progress`.
    if "progress" in inspect.signature(jaxode.make_plan).parameters:
        return jaxode.make_plan(spec, progress=False)
    return jaxode.make_plan(spec)


def _commit(folder: str) -> str:
    """The commit the package in `folder` was checked out at, `+` when it has changes."""

    def git(*args):
        done = subprocess.run(["git", "-C", folder, *args], capture_output=True, text=True)
        return done.stdout.strip()

    changed = git("status", "--porcelain", "--", ".")
    return git("rev-parse", "--short", "HEAD") + ("+" if changed else "")


def _merge(path: str, label: str, result: dict) -> dict:
    """The results file with this run's entry (by label) replaced, the others kept."""
    runs = {}
    if os.path.isfile(path):
        with open(path) as f:
            runs = json.load(f).get("runs", {})
    runs[label] = result
    return dict(benchmark="plan_speed", runs=runs)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--label", default="this checkout")
    parser.add_argument("--source", help="a folder holding the jaxode package to time")
    parser.add_argument("--out", default="benchmarks/results/plan_speed.json")
    args = parser.parse_args()
    if args.source:
        sys.path.insert(0, str(pathlib.Path(args.source).resolve()))
    from _results import run_context, write_json

    import jaxode

    load_before = os.getloadavg()
    _plan(jaxode, _spec(jaxode, 100))  # warm-up: imports, the data set's first load
    rows = []
    for cells in (int(s) for s in args.sizes.split(",")):
        spec = _spec(jaxode, cells)
        tic = time.perf_counter()
        plan = _plan(jaxode, spec)
        wall = time.perf_counter() - tic
        rows.append(
            dict(
                cells=len(plan.cells),
                cohorts=len(plan.cohorts),
                seconds=wall,
                ms_per_cell=1e3 * wall / len(plan.cells),
            )
        )
        print(f"{len(plan.cells)} cells: {wall:.2f} s", flush=True)
    folder = os.path.dirname(jaxode.__file__)
    print(f"\njaxode from {folder} at {_commit(folder)} ({args.label})")
    print(f"{'cells':>8s} {'cohorts':>8s} {'seconds':>9s} {'ms/cell':>8s}")
    for r in rows:
        print(f"{r['cells']:8d} {r['cohorts']:8d} {r['seconds']:9.2f} {r['ms_per_cell']:8.3f}")
    result = dict(
        run_context("plan_speed", load_before),
        label=args.label,
        jaxode=folder,
        commit=_commit(folder),
        spec="ELM, ResNet (layer field, width 15, 12 steps, Legendre); grid train.seed (10) x "
        "model.degree (1-10) x train.learning_rate (cells / 100)",
        rows=rows,
    )
    write_json(args.out, _merge(args.out, args.label, result))


if __name__ == "__main__":
    main()
