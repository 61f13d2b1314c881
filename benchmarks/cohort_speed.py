"""Training K models of one structure as one program (`jaxode.fit_cohort`, members under
`jax.vmap`) against K sequential `jaxode.fit` calls, on the study's ELM data.

Structures (`jaxode.preset("study-node")` with the model section changed): the study's
discrete nets, `resnet` (ResNet, layer field, width 15, 12 steps) and `hamiltonian`
(HamiltonianNet, Hamiltonian field, width 15, 12 steps), and the adaptive neural ODE `node`
(the preset itself: MLP field hidden 50, Dopri5 rtol 1e-7 / atol 1e-9); float32, Adam, MSE,
batch 20 drawn with replacement as in the study (`--sampling epochs` for fit's default), members
differing in their initialisation and minibatch key.

Parts:

- `fixed`: K (8) fixed-step members as one `fit_cohort` against K sequential `fit` calls, each
  a fresh call as a user would run them (compilation included), also compared with
  compilation excluded (fit's `wall_time`) and in the steady state (steps 2C..N from the
  history wall times, C = `--chunk`, which leaves out the first chunk and the first
  evaluation, whose bookkeeping program fit compiles inside its `wall_time`).
- `adaptive`: the same for the neural ODE: cohort vmapped (default) and with
  `shared_solve=True` (one adaptive solve over all members' batches) when this jaxode has it.
- `scale`: larger cohorts (`--resnet-members`, `--node-members`): time per step per member
  and compilation time.

No persistent compilation cache is used (every `fit` call compiles, as in a fresh Python
session). Cohort and sequential runs are interleaved, order alternating over `--repeats`, and
ratios are medians over repeats of ratios measured within one repeat. Prints tables, writes JSON.

    python benchmarks/cohort_speed.py [--parts fixed adaptive scale] [--members 8]
        [--steps 300] [--chunk 100] [--repeats 2] [--adaptive-steps 150] [--adaptive-chunk 50]
        [--scale-steps 30] [--scale-chunk 10] [--resnet-members 64 256] [--node-members 64]
        [--out benchmarks/results/cohort_speed.json]
"""

import argparse
import dataclasses
import inspect
import os
import time

import jax
import numpy as np
import optax
from _results import run_context, write_json

import jaxode

STRUCTURES = {
    "resnet": dict(model="resnet", field="layer", width=15, steps=12),
    "hamiltonian": dict(model="hamiltonian", field="hamiltonian", width=15, steps=12),
    "node": {},
}
# Releases with the SharedSolve placement take shared_solve as a keyword of fit_cohort's keyword
# form; earlier ones named it in the signature.
HAS_SHARED_SOLVE = (
    hasattr(jaxode, "SharedSolve")
    or "shared_solve" in inspect.signature(jaxode.fit_cohort).parameters
)


def setup(structure: str):
    cfg = jaxode.preset("study-node")
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, **STRUCTURES[structure]))
    d = cfg.data
    data = jaxode.load_dataset(
        d.dataset, seed=d.split_seed, protocol=d.protocol, num_outputs=d.num_outputs
    )
    x, y = data.arrays("train")
    return cfg, data, (np.asarray(x, np.float32), np.asarray(y, np.float32))


def models_of(cfg, data, count: int, offset: int = 0):
    return [
        jaxode.build_model(cfg, data.in_size, data.out_size, key=jax.random.PRNGKey(offset + k))
        for k in range(count)
    ]


def keys_of(count: int, offset: int = 0):
    return [jax.random.PRNGKey(10_000 + offset + k) for k in range(count)]


def check(result, steps):
    if result.steps != steps or result.status != "completed":
        raise RuntimeError(f"{result.status} after {result.steps} steps: {result.message}")


def walls(result) -> dict:
    return {row["step"]: row["wall_time"] for row in result.history}


class Runner:
    def __init__(self, args, x, y, steps, chunk):
        if steps % chunk or steps < 3 * chunk:
            raise SystemExit(
                f"steps ({steps}) must be a multiple of the chunk ({chunk}) and at least 3 chunks"
            )
        self.train, self.steps, self.chunk = (x, y), steps, chunk
        self.steady_steps = steps - 2 * chunk
        self.optimiser = optax.adam(args.learning_rate)
        self.common = dict(
            steps=steps,
            batch_size=args.batch_size,
            eval_every=chunk,
            sampling=args.sampling,
            count_evaluations=False,
        )

    def timings(self, results, wall):
        """End-to-end seconds, fit's training seconds and steady-state seconds."""
        steps, begin = self.steps, 2 * self.chunk
        for r in results:
            check(r, steps)
        w = walls(results[0])
        return dict(
            end_to_end_s=wall,
            train_s=w[steps],
            steady_s=w[steps] - w[begin],
            compile_s=results[0].compile_time,
            num_traces=results[0].num_traces,
        )

    def cohort(self, models, keys, **options):
        tic = time.perf_counter()
        results = jaxode.fit_cohort(
            models, self.train, self.optimiser, keys=keys, **self.common, **options
        )
        return self.timings(results, time.perf_counter() - tic)

    def sequential(self, models, keys):
        parts = []
        for model, key in zip(models, keys):
            tic = time.perf_counter()
            result = jaxode.fit(model, self.train, self.optimiser, key=key, **self.common)
            parts.append(self.timings([result], time.perf_counter() - tic))
        total = {
            name: float(sum(p[name] for p in parts))
            for name in ("end_to_end_s", "train_s", "steady_s", "compile_s")
        }
        total["num_traces"] = [p["num_traces"] for p in parts]
        total["compile_each_s"] = [round(p["compile_s"], 2) for p in parts]
        return total


def compare(runner, cfg, data, structure, count, repeats, shared):
    """Cohort variants against sequential fits, interleaved; returns rows."""
    models, keys = models_of(cfg, data, count), keys_of(count)
    variants = {"cohort (vmap)": lambda: runner.cohort(models, keys)}
    if shared:
        variants["cohort (shared_solve)"] = lambda: runner.cohort(models, keys, shared_solve=True)
    variants[f"{count} sequential fits"] = lambda: runner.sequential(models, keys)
    names = list(variants)
    samples = {name: [] for name in names}
    for repeat in range(repeats):
        order = names if repeat % 2 == 0 else names[::-1]
        for name in order:
            samples[name].append(variants[name]())
            s = samples[name][-1]
            print(
                f"  {structure} K={count} repeat {repeat + 1}/{repeats} {name}: end-to-end "
                f"{s['end_to_end_s']:.2f} s, train {s['train_s']:.2f} s, steady "
                f"{s['steady_s']:.3f} s, compile {s['compile_s']:.2f} s",
                flush=True,
            )
    sequential = names[-1]
    rows = []
    for name in names:
        med = {
            m: float(np.median([s[m] for s in samples[name]]))
            for m in ("end_to_end_s", "train_s", "steady_s", "compile_s")
        }
        row = dict(
            structure=structure,
            members=count,
            variant=name,
            repeats=repeats,
            steps=runner.steps,
            steady_steps=runner.steady_steps,
            **med,
            num_traces=samples[name][-1]["num_traces"],
            samples=samples[name],
        )
        if name != sequential:
            for m in ("end_to_end_s", "train_s", "steady_s"):
                row[f"speedup_{m[:-2]}"] = float(
                    np.median([b[m] / a[m] for a, b in zip(samples[name], samples[sequential])])
                )
        rows.append(row)
    return rows


def print_comparison(rows):
    print(
        f"{'structure':12s} {'K':>3s} {'variant':22s} {'end-to-end s':>12s} {'train s':>8s} "
        f"{'steady s':>9s} {'compile s':>9s} {'speed-up e2e/train/steady':>26s} traces"
    )
    for r in rows:
        speedup = (
            ""
            if "speedup_end_to_end" not in r
            else f"{r['speedup_end_to_end']:.2f}x/{r['speedup_train']:.2f}x/"
            f"{r['speedup_steady']:.2f}x"
        )
        print(
            f"{r['structure']:12s} {r['members']:3d} {r['variant']:22s} {r['end_to_end_s']:12.2f} "
            f"{r['train_s']:8.2f} {r['steady_s']:9.3f} {r['compile_s']:9.2f} {speedup:>26s} "
            f"{r['num_traces']}"
        )


def scale(runner, cfg, data, structure, counts, shared):
    rows = []
    steady_steps = runner.steady_steps
    for count in counts:
        models, keys = models_of(cfg, data, count), keys_of(count)
        modes = [("vmap", {})] + ([("shared_solve", dict(shared_solve=True))] if shared else [])
        for mode, options in modes:
            s = runner.cohort(models, keys, **options)
            per_step = s["steady_s"] / steady_steps
            row = dict(
                structure=structure,
                members=count,
                mode=mode,
                steps=runner.steps,
                steady_steps=steady_steps,
                **s,
                ms_per_step=1e3 * per_step,
                us_per_step_per_member=1e6 * per_step / count,
                member_steps_per_s=count / per_step,
            )
            print(
                f"  {structure} K={count} {mode}: {row['ms_per_step']:.2f} ms/step, "
                f"{row['us_per_step_per_member']:.1f} us/step/member, compile "
                f"{s['compile_s']:.2f} s",
                flush=True,
            )
            rows.append(row)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--parts",
        nargs="+",
        default=["fixed", "adaptive", "scale"],
        choices=["fixed", "adaptive", "scale"],
    )
    parser.add_argument("--members", type=int, default=8, help="cohort size of fixed/adaptive")
    parser.add_argument(
        "--fixed-structures",
        nargs="+",
        default=["resnet", "hamiltonian"],
        choices=["resnet", "hamiltonian"],
    )
    parser.add_argument("--steps", type=int, default=300, help="steps of the fixed part")
    parser.add_argument("--chunk", type=int, default=100, help="eval_every (steps per chunk)")
    parser.add_argument("--repeats", type=int, default=2, help="repeats of the fixed part")
    parser.add_argument("--adaptive-steps", type=int, default=150)
    parser.add_argument("--adaptive-chunk", type=int, default=50)
    parser.add_argument("--adaptive-repeats", type=int, default=1)
    parser.add_argument("--scale-steps", type=int, default=30)
    parser.add_argument("--scale-chunk", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=20)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument(
        "--sampling",
        default="replacement",
        choices=["replacement", "epochs"],
        help="fit's minibatch sampling (the study draws with replacement; "
        "'epochs' computes a permutation of the training set every step)",
    )
    parser.add_argument("--resnet-members", type=int, nargs="*", default=[64, 256])
    parser.add_argument("--node-members", type=int, nargs="*", default=[64])
    parser.add_argument(
        "--no-shared-solve",
        action="store_true",
        help="leave shared_solve out even where fit_cohort has it",
    )
    parser.add_argument("--out", default="benchmarks/results/cohort_speed.json")
    args = parser.parse_args()
    shared = HAS_SHARED_SOLVE and not args.no_shared_solve
    load_before = os.getloadavg()
    print(
        f"fit_cohort shared_solve: {'available' if HAS_SHARED_SOLVE else 'not available'}; "
        f"{jax.default_backend()} {jax.devices()}; load average {load_before}",
        flush=True,
    )
    result = {
        **run_context("cohort_speed", load_before),
        "steps": {"fixed": args.steps, "adaptive": args.adaptive_steps, "scale": args.scale_steps},
        "chunk": {"fixed": args.chunk, "adaptive": args.adaptive_chunk, "scale": args.scale_chunk},
        "batch_size": args.batch_size,
        "sampling": args.sampling,
        "learning_rate": args.learning_rate,
        "shared_solve": "available" if HAS_SHARED_SOLVE else "not available in this jaxode",
        "structures": {name: dataclasses.asdict(setup(name)[0].model) for name in STRUCTURES},
    }
    started = time.perf_counter()
    if "fixed" in args.parts:
        rows = []
        for structure in args.fixed_structures:
            cfg, data, (x, y) = setup(structure)
            runner = Runner(args, x, y, args.steps, args.chunk)
            rows += compare(runner, cfg, data, structure, args.members, args.repeats, False)
        print(
            f"\nfixed-step cohorts, {args.steps} steps (steady: the last "
            f"{args.steps - 2 * args.chunk}), medians of {args.repeats} repeats:"
        )
        print_comparison(rows)
        result["fixed"] = rows
    if "adaptive" in args.parts:
        cfg, data, (x, y) = setup("node")
        runner = Runner(args, x, y, args.adaptive_steps, args.adaptive_chunk)
        rows = compare(runner, cfg, data, "node", args.members, args.adaptive_repeats, shared)
        print(
            f"\nadaptive neural ODE cohort, {args.adaptive_steps} steps (steady: the last "
            f"{runner.steady_steps}), medians of "
            f"{args.adaptive_repeats} repeats (shared_solve "
            f"{'included' if shared else 'not available'}):"
        )
        print_comparison(rows)
        result["adaptive"] = rows
    if "scale" in args.parts:
        rows = []
        for structure, counts in (("resnet", args.resnet_members), ("node", args.node_members)):
            if counts:
                cfg, data, (x, y) = setup(structure)
                runner = Runner(args, x, y, args.scale_steps, args.scale_chunk)
                rows += scale(runner, cfg, data, structure, counts, shared and structure == "node")
        print(
            f"\nlarger cohorts, {args.scale_steps} steps, steady state over the last "
            f"{args.scale_steps - 2 * args.scale_chunk}:"
        )
        print(
            f"{'structure':10s} {'K':>5s} {'mode':13s} {'ms/step':>9s} {'us/step/member':>15s} "
            f"{'member-steps/s':>15s} {'compile s':>10s} traces"
        )
        for r in rows:
            print(
                f"{r['structure']:10s} {r['members']:5d} {r['mode']:13s} {r['ms_per_step']:9.2f} "
                f"{r['us_per_step_per_member']:15.1f} {r['member_steps_per_s']:15.0f} "
                f"{r['compile_s']:10.2f} {r['num_traces']}"
            )
        result["scale"] = rows
    goals = {}
    for row in result.get("fixed", []):
        if "speedup_end_to_end" in row:
            goals[
                f"{row['structure']} K={row['members']} cohort >= 4x faster than sequential "
                "(end to end)"
            ] = row["speedup_end_to_end"] >= 4
            goals[
                f"{row['structure']} K={row['members']} cohort >= 4x faster than sequential "
                "(compilation excluded)"
            ] = row["speedup_train"] >= 4
    traced = [r for part in ("fixed", "adaptive", "scale") for r in result.get(part, [])]
    goals["one compilation per structure and cohort (num_traces == 1)"] = all(
        (r["num_traces"] == 1)
        if isinstance(r["num_traces"], int)
        else all(t == 1 for t in r["num_traces"])
        for r in traced
    )
    for name, met in goals.items():
        print(f"goal {name}: {'met' if met else 'missed'}")
    result.update(goals=goals, total_s=time.perf_counter() - started, load_average=os.getloadavg())
    write_json(args.out, result)


if __name__ == "__main__":
    main()
