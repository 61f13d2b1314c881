"""What padding costs per step: the cells of a sweep over polynomial bases trained as one padded
cohort (every member's basis padded to the largest degree, one compiled program) against the
same cells in one cohort per basis and degree (one program each, nothing padded).

The cells are those of `--spec` (default: the example sweep, 39 ResNet cells: static weights
and monomial, Legendre and Chebyshev weights of degree 1-4, 3 seeds each), each trained for
`--steps` optimisation steps with an evaluation every `--every` steps, through
`jaxode.train_cohort` in this process (no persistent compilation cache: every cohort compiles).
The sides alternate over `--repeats`; member-steps per second divide the members' steps by the
training time (compilation excluded: the members' `wall_time`), summed over a side's cohorts.

    python benchmarks/padding_cost.py [--spec experiments/sweeps/elm-bases.toml] [--steps 300]
        [--every 100] [--repeats 2] [--out benchmarks/results/padding_cost.json]
"""

import argparse
import os
import statistics
import tempfile
import time

from _results import run_context, write_json

import jaxode


def _train(cohorts: list[list]) -> dict:
    """Trains `cohorts` (lists of configurations) one after another."""
    compile_s = train_s = 0.0
    member_steps = 0
    tic = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="jaxode-padding-") as folder:
        for number, configs in enumerate(cohorts):
            dirs = [os.path.join(folder, f"{number}-{k}") for k in range(len(configs))]
            outcomes = jaxode.train_cohort(configs, dirs, progress=False)
            results = [result for _, result, _ in outcomes]
            compile_s += results[0].compile_time
            train_s += max(r.history[-1]["wall_time"] for r in results)
            member_steps += sum(r.steps for r in results)
    return dict(
        cohorts=len(cohorts),
        wall_s=time.perf_counter() - tic,
        compile_s=compile_s,
        train_s=train_s,
        member_steps=member_steps,
        member_steps_per_s=member_steps / train_s,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default="experiments/sweeps/elm-bases.toml")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default="benchmarks/results/padding_cost.json")
    args = parser.parse_args()
    load_before = os.getloadavg()
    spec = jaxode.SweepSpec.from_file(args.spec)
    configs = [
        cell.config.replace(
            "train",
            iterations=args.steps,
            eval_every_iterations=args.every,
            count_evaluations=False,
            patience=None,
        )
        for cell in spec.cells()
    ]
    padded = [configs]
    structures: dict[tuple, list] = {}
    for config in configs:
        m = config.model
        structures.setdefault((m.basis, 0 if m.basis == "static" else m.degree), []).append(config)
    sides = {"padded": padded, "per_structure": list(structures.values())}
    sizes = [1 if c.model.basis == "static" else c.model.degree + 1 for c in configs]
    degree, own = max(sizes) - 1, sum(sizes)
    runs = {name: [] for name in sides}
    for repeat in range(args.repeats):
        order = list(sides) if repeat % 2 == 0 else list(reversed(sides))
        for name in order:
            runs[name].append(_train(sides[name]))
            print(f"repeat {repeat + 1}, {name}: {runs[name][-1]}", flush=True)
    medians = {
        name: {key: statistics.median(r[key] for r in rows) for key in rows[0]}
        for name, rows in runs.items()
    }
    ratios = [
        p["member_steps_per_s"] / s["member_steps_per_s"]
        for p, s in zip(runs["padded"], runs["per_structure"])
    ]
    result = run_context("padding_cost", load_before) | dict(
        spec=args.spec,
        cells=len(configs),
        steps=args.steps,
        every=args.every,
        padded_degree=degree,
        basis_functions_padded=(degree + 1) * len(configs),
        basis_functions_own=own,
        medians=medians,
        runs=runs,
        throughput_ratio_per_repeat=ratios,
        throughput_ratio=statistics.median(ratios),
    )
    print()
    print(f"{len(configs)} cells, {args.steps} steps each; bases padded to degree {degree}: ")
    print(f"{(degree + 1) * len(configs)} basis functions against {own} of the members' own")
    print(f"{'side':<14}{'cohorts':>8}{'compile s':>11}{'train s':>9}{'member-steps/s':>16}")
    for name, m in medians.items():
        print(
            f"{name:<14}{m['cohorts']:>8.0f}{m['compile_s']:>11.1f}{m['train_s']:>9.1f}"
            f"{m['member_steps_per_s']:>16.0f}"
        )
    print(f"padded / per structure, member-steps per second: {result['throughput_ratio']:.2f}")
    write_json(args.out, result)


if __name__ == "__main__":
    main()
