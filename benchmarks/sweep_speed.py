"""A sweep against the same cells trained as one `jaxode train` process each, in one session.

Side "sweep": `jaxode sweep SPEC --out DIR` (one process; cells grouped into cohorts, one
compiled program per cohort). Side "processes": for every cell of the same plan,
`jaxode train --config CELL.toml --out DIR/<cell>` (its full configuration, so the runs are the
same), one after another. Each side starts with an empty JAX compilation cache of its own and
then uses it as the CLI does by default (so the separate processes reuse compiled programs
across processes, as a user's would). Both sides run on the same machine one after the other;
the load average is recorded.

Reports wall times, the ratio, where the time goes (compilation, training, the rest: process
start, imports, data, evaluation, files) and the largest difference in test error between
the two sides (cohort members equal single runs to float32 rounding).

    python benchmarks/sweep_speed.py [--spec experiments/sweeps/elm-bases.toml]
        [--limit CELLS] [--out benchmarks/results/sweep_speed.json]
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

from _results import write_json

import jaxode


def _run(command, cache) -> float:
    env = dict(os.environ, JAXODE_COMPILATION_CACHE=str(cache))
    tic = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - tic
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}")
    return wall


def _metrics(run_dir: pathlib.Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default="experiments/sweeps/elm-bases.toml")
    parser.add_argument("--limit", type=int, help="first N cells of the spec only")
    parser.add_argument("--out", default="benchmarks/results/sweep_speed.json")
    args = parser.parse_args()
    spec = jaxode.SweepSpec.from_file(args.spec)
    plan = jaxode.make_plan(spec)
    cells = list(plan.cells[: args.limit])
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="jaxode-sweep-speed-") as folder:
        folder = pathlib.Path(folder)
        spec_path = pathlib.Path(args.spec).resolve()
        if args.limit:
            # The first N cells as a spec of their own: a zip over their full configurations
            # is not expressible, so write one block per cell.
            lines = [f'name = "{spec.name}-first-{args.limit}"']
            for cell in cells:
                lines.append("[[blocks]]")
                for section, values in cell.config.to_dict().items():
                    for key, value in values.items():
                        value = "none" if value is None else value
                        lines.append(f'"{section}.{key}" = [{json.dumps(value)}]')
            spec_path = folder / "spec.toml"
            spec_path.write_text("\n".join(lines) + "\n")
        cli = [sys.executable, "-m", "jaxode"]
        print(f"sweep: {len(cells)} cells in one process ...", flush=True)
        sweep_wall = _run(
            cli + ["sweep", str(spec_path), "--out", str(folder / "sweep"), "--no-progress"],
            folder / "cache-sweep",
        )
        print(f"sweep: {sweep_wall:.1f} s; now one process per cell ...", flush=True)
        process_walls = []
        for k, cell in enumerate(cells):
            config = folder / "configs" / f"{cell.key}.toml"
            config.parent.mkdir(exist_ok=True)
            config.write_text(cell.config.to_toml())
            out = folder / "processes" / cell.key
            process_walls.append(
                _run(
                    cli + ["train", "--config", str(config), "--out", str(out), "--no-progress"],
                    folder / "cache-processes",
                )
            )
            print(f"  cell {k + 1}/{len(cells)}: {process_walls[-1]:.1f} s", flush=True)
        swept = {c.key: _metrics(folder / "sweep" / "cells" / c.key) for c in cells}
        alone = {c.key: _metrics(folder / "processes" / c.key) for c in cells}
    cohorts = {}
    for cell in cells:
        cohorts.setdefault(swept[cell.key].get("training_started"), swept[cell.key])
    sweep_compile = sum(m["compile_time"] for m in cohorts.values())
    sweep_train = sum(m["train_time"] for m in cohorts.values())
    alone_compile = sum(m["compile_time"] for m in alone.values())
    alone_train = sum(m["train_time"] for m in alone.values())
    differences = [
        abs(swept[k]["test_global"] - alone[k]["test_global"]) / abs(alone[k]["test_global"])
        for k in swept
    ]
    processes_wall = sum(process_walls)
    rows = [
        dict(
            side="sweep",
            wall_s=sweep_wall,
            compile_s=sweep_compile,
            train_s=sweep_train,
            other_s=sweep_wall - sweep_compile - sweep_train,
            compilations=len(cohorts),
        ),
        dict(
            side="processes",
            wall_s=processes_wall,
            compile_s=alone_compile,
            train_s=alone_train,
            other_s=processes_wall - alone_compile - alone_train,
            compilations=len(cells),
        ),
    ]
    ratio = processes_wall / sweep_wall
    print(
        f"\n{len(cells)} cells ({args.spec}{', first ' + str(args.limit) if args.limit else ''})"
        f", load average before {load_before}"
    )
    print(
        f"{'side':10s} {'wall s':>8s} {'compile s':>10s} {'train s':>8s} {'other s':>8s} "
        f"{'programs':>8s}"
    )
    for r in rows:
        print(
            f"{r['side']:10s} {r['wall_s']:8.1f} {r['compile_s']:10.1f} {r['train_s']:8.1f} "
            f"{r['other_s']:8.1f} {r['compilations']:8d}"
        )
    print(f"speed-up of the sweep: {ratio:.2f}x (goal >= 5x)")
    print(f"largest relative difference in test_global, sweep vs processes: {max(differences):.2e}")
    write_json(
        args.out,
        dict(
            benchmark="sweep_speed",
            spec=args.spec,
            cells=len(cells),
            cohorts=len(cohorts),
            load_average_before=load_before,
            load_average=os.getloadavg(),
            rows=rows,
            ratio=ratio,
            goal_met=ratio >= 5,
            process_walls_s=process_walls,
            max_relative_test_global_difference=max(differences),
            note="compile_s/train_s: sums of metrics.json compile_time/train_time (one per cohort "
            "on the sweep side, per cell on the other); other_s: the rest of the wall time "
            "(process start and imports, data, eager initialisation, final evaluation, plots, "
            "files).",
        ),
    )


if __name__ == "__main__":
    main()
